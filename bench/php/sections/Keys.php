<?php

declare(strict_types=1);

namespace Ebats\Bench\Sections;

use Ebats\Bench\Context;
use Ebats\Bench\Report;
use Ebats\Bench\Section;
use Ebats\Bench\Workers;
use Ebats\Tests\Lib\Process;

/**
 * What per-key flow control costs the broker: tasks over keys_n distinct keys of a per-key rate limit, of a
 * per-key concurrency limit, and of unique keys; the broker's memory (`rabbitmqctl status`, Erlang total) and
 * the queues of each kind under the bench's prefix (count, and their processes' memory from
 * `rabbitmqctl list_queues name memory`) before, while the keys are held, and after they expire or are
 * released. The broker is shared with whatever else runs: its total moves with that; the queues' own memory
 * is the bench's alone.
 */
final class Keys implements Section
{
    /** Queue name part of each kind (see broker::names). */
    private const KINDS = ['rate' => '.rate.', 'concurrency' => '.slot.', 'unique' => '.unique.'];

    public function name(): string
    {
        return 'keys';
    }

    private static function ctl(string $args): string
    {
        return (string) shell_exec('rabbitmqctl -q ' . $args . ' --formatter json 2>/dev/null');
    }

    /** The broker's memory (bytes) and, by kind, the count and memory of the prefix's queues of that kind. */
    private static function reading(Context $ctx): array
    {
        $status = json_decode(self::ctl('status'), true);
        $total = $status['memory']['total']['erlang'] ?? -1;
        $vhost = bench_broker()['vhost'];
        $queues = json_decode(self::ctl('list_queues -p ' . escapeshellarg($vhost) . ' name memory'), true) ?: [];
        $out = ['broker' => (int) $total, 'at' => microtime(true)];
        foreach (self::KINDS as $kind => $part) {
            $out[$kind] = ['queues' => 0, 'bytes' => 0];
        }
        foreach ($queues as $q) {
            foreach (self::KINDS as $kind => $part) {
                if (str_starts_with($q['name'], $ctx->prefix . $part)) {
                    $out[$kind]['queues']++;
                    $out[$kind]['bytes'] += (int) ($q['memory'] ?? 0);
                }
            }
        }
        return $out;
    }

    /** Waits until no queue of $kind is left, $timeout at most; the reading then (queues left in it, if any). */
    private static function untilGone(Context $ctx, string $kind, float $timeout): array
    {
        $last = null;
        $r = Process::until(static function () use ($ctx, $kind, &$last) {
            $last = self::reading($ctx);
            return $last[$kind]['queues'] === 0 ? $last : null;
        }, $timeout, 2.0);
        if ($r === null) {
            $ctx->note("$kind: {$last[$kind]['queues']} queue(s) still there after $timeout s");
        }
        return $r ?? $last;
    }

    /** Runs keys_n tasks of distinct keys through a worker with $env; the reading with the most queues of $kind. */
    private static function drive(Context $ctx, string $name, array $env, string $kind): array
    {
        $n = $ctx->settings['keys_n'];
        $dir = Workers::progressDir($ctx, "keys-$name");
        $w = Workers::startWorker($ctx, 2, 50, $dir, '', $env);
        try {
            $ctx->admin->waitConsumers($ctx->qTasks, 2);
            $filler = $ctx->spawn($ctx->phpCmd('fill.php', ['keyed', $n]), "{$ctx->tmp}/fill.log");
            $peak = self::reading($ctx);
            $next = microtime(true);
            Workers::waitProgress($dir, $n, 300, static function () use ($ctx, $kind, &$peak, &$next) {
                if (microtime(true) >= $next) {
                    $r = self::reading($ctx);
                    $peak = $r[$kind]['queues'] >= $peak[$kind]['queues'] ? $r : $peak;
                    $next = microtime(true) + 1.0;
                }
            });
            $ctx->stop($filler);
            $end = self::reading($ctx);
            return [$end[$kind]['queues'] >= $peak[$kind]['queues'] ? $end : $peak, microtime(true)];
        } finally {
            $ctx->stop($w);
        }
    }

    public function run(Context $ctx): void
    {
        $n = $ctx->settings['keys_n'];
        $ctx->attempt('keys', function () use ($ctx, $n) {
            $ctx->admin->purge($ctx->qTasks);
            $rows = [];
            // BENCH_KEYS_KINDS (e.g. "unique") runs some kinds only.
            $kinds = explode(',', getenv('BENCH_KEYS_KINDS') ?: 'rate,concurrency,unique');

            // Each kind of per-key limit: the worker's setting, and how long its queues may take to go (s).
            $limits = [
                'rate' => [['EBATS_BENCH_KEY_RATE' => '1/s'], 300],
                'concurrency' => [['EBATS_BENCH_KEY_CONCURRENCY' => '1'], 60],
            ];
            foreach ($limits as $kind => [$env, $goneWithin]) {
                if (!in_array($kind, $kinds, true)) {
                    continue;
                }
                $base = self::reading($ctx);
                [$held, $ended] = self::drive($ctx, $kind, $env, $kind);
                $after = self::untilGone($ctx, $kind, $goneWithin);
                $rows[$kind] = ['base' => $base, 'held' => $held, 'after' => $after, 'gone_s' => $after['at'] - $ended];
                $ctx->note("keys $kind " . json_encode($rows[$kind]));
            }

            if (in_array('unique', $kinds, true)) {
                // Unique keys are held while their tasks wait: made first, then run.
                $base = self::reading($ctx);
                $ctx->runJson($ctx->phpCmd('fill.php', ['unique', $n]), 600);
                $held = self::reading($ctx);
                $dir = Workers::progressDir($ctx, 'keys-unique');
                $w = Workers::startWorker($ctx, 2, 50, $dir);
                try {
                    Workers::waitProgress($dir, $n, 300);
                    $ended = microtime(true);
                    $after = self::untilGone($ctx, 'unique', 60);
                } finally {
                    $ctx->stop($w);
                }
                $rows['unique'] = ['base' => $base, 'held' => $held, 'after' => $after, 'gone_s' => $after['at'] - $ended];
                $ctx->note('keys unique ' . json_encode($rows['unique']));
            }
            $ctx->results->record('keys', ['n' => $n, 'rows' => $rows]);
        });
    }

    public function report(Context $ctx, Report $report): void
    {
        $m = $ctx->results->runs('keys')[0] ?? null;
        if ($m === null) {
            return;
        }
        $n = $m['n'];
        $report->line(sprintf('7. Broker cost of per-key flow control: %s tasks, each of its own key; queues of the kind under the bench prefix, their memory (list_queues memory) and the broker\'s (status, Erlang total, shared broker)', number_format($n)));
        $what = ['rate' => 'rate 1/s per key', 'concurrency' => 'concurrency 1 per key', 'unique' => 'unique key'];
        foreach ($m['rows'] as $kind => $r) {
            $kb = static fn (array $x): string => sprintf('%.1f MB', $x['broker'] / 1048576);
            $report->row(
                $what[$kind],
                sprintf('queues %d -> %d -> %d', $r['base'][$kind]['queues'], $r['held'][$kind]['queues'], $r['after'][$kind]['queues']),
                sprintf('%.0f B a queue', $r['held'][$kind]['bytes'] / max(1, $r['held'][$kind]['queues'])),
                sprintf('broker %s -> %s -> %s', $kb($r['base']), $kb($r['held']), $kb($r['after'])),
                sprintf('%+.0f B a queue (broker)', ($r['held']['broker'] - $r['base']['broker']) / max(1, $r['held'][$kind]['queues'])),
                $r['after'][$kind]['queues'] === 0
                    ? sprintf('gone %.0f s after the last task', $r['gone_s'])
                    : sprintf('%d left %.0f s after the last task', $r['after'][$kind]['queues'], $r['gone_s'])
            );
        }
        $report->line();
    }

    public function targets(Context $ctx, Report $report): void
    {
    }
}
