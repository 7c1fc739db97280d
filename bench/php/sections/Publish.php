<?php

declare(strict_types=1);

namespace Ebats\Bench\Sections;

use Ebats\Bench\Context;
use Ebats\Bench\Report;
use Ebats\Bench\Results;
use Ebats\Bench\Section;

/** Publish throughput of one long-lived process: per-message confirms, then confirms per batch. */
final class Publish implements Section
{
    public function name(): string
    {
        return 'publish';
    }

    /** @return array<string,array{0:string,1:callable(int):array,2:string}> key => [label, command for N, N kind] */
    private function rows(Context $ctx): array
    {
        $batch = $ctx->settings['batch'];
        $lapin = fn (string $mode, array $more) => fn (int $n): array => array_merge(
            [$ctx->lapin, $mode, $n],
            $more,
            ['--exchange', "{$ctx->prefix}.core.event", '--routing-key', 'bench_pub']
        );
        $php = fn (string $client, string $mode, array $more = [], bool $ebats = true) => fn (int $n): array => $ctx->phpCmd('publish.php', array_merge([$client, $mode, $n], $more), $ebats);
        return [
            'pub.each.ebats_event' => ['ebats Event::publish()', $php('ebats', 'event'), 'each'],
            'pub.each.ebats_task' => ['ebats Task::create()', $php('ebats', 'task'), 'each'],
            'pub.each.ebats_task_unique' => ["ebats Task::create() with 'unique' (a new key each)", $php('ebats', 'task_unique'), 'each'],
            'pub.each.amqplib' => ['php-amqplib confirm_select + wait_for_pending_acks', $php('amqplib', 'each', [], false), 'each'],
            'pub.each.amqp' => ['php-amqp confirmSelect + waitForConfirm', $php('amqp', 'each', [], false), 'each'],
            'pub.each.lapin' => ['lapin (Rust), await each confirm  [ceiling]', $lapin('publish-each', []), 'each'],
            'pub.batch.ebats_batch' => ['ebats Batch::publish() of 100', $php('ebats', 'batch', [$batch]), 'batch'],
            'pub.batch.ebats_deferred' => ['ebats publish(true) ×100 + ebats_flush()', $php('ebats', 'deferred', [$batch]), 'batch'],
            'pub.batch.amqplib' => ['php-amqplib, wait_for_pending_acks per 100', $php('amqplib', 'batch', [$batch], false), 'batch'],
            'pub.batch.amqp' => ['php-amqp, waitForConfirm per 100', $php('amqp', 'batch', [$batch], false), 'batch'],
            'pub.batch.lapin_b100' => ['lapin (Rust), confirms awaited per 100', $lapin('publish-pipelined', ['--batch', $batch]), 'batch'],
            'pub.batch.lapin' => ['lapin (Rust), all in flight  [ceiling]', $lapin('publish-pipelined', []), 'batch'],
        ];
    }

    public function run(Context $ctx): void
    {
        // Each row starts on an empty queue and a broker done with the row before (the messages purged, the
        // unique keys deleted): a row timed while the broker still cleans up after another runs at half speed.
        $purge = static function () use ($ctx): void {
            $ctx->admin->purge($ctx->qEvents);
            $ctx->admin->purge("{$ctx->prefix}.task.benchpub");
            $ctx->admin->waitQuiet();
        };
        // Declare ebats's topology once (and check the body size) before timing anything.
        $ctx->runJson($ctx->phpCmd('publish.php', ['ebats', 'event', 1]));
        $ctx->runJson($ctx->phpCmd('publish.php', ['ebats', 'task', 1]));
        $purge();
        for ($rep = 1; $rep <= $ctx->settings['reps']; $rep++) {
            foreach (self::turn(array_filter($this->rows($ctx), [$ctx, 'wants'], ARRAY_FILTER_USE_KEY), $rep) as $key => [$label, $cmd, $kind]) {
                $n = $kind === 'each' ? $ctx->settings['pub_each_n'] : $ctx->settings['pub_batch_n'];
                $ctx->attempt($label, function () use ($ctx, $key, $cmd, $n, $rep, $label) {
                    $r = $ctx->runJson($cmd($n));
                    $ctx->results->record($key, ['rate' => (float) $r['rate']]);
                    $ctx->note(sprintf('publish rep %d  %-55s %9.0f msg/s', $rep, $label, $r['rate']));
                });
                $purge();
            }
        }
    }

    /**
     * The rows in the order of repetition $rep: each kind's rows (per message, then in batches) turned by one
     * place a repetition, so that no row always runs right after the same one (what ran before a run can
     * leave the broker slower for it).
     */
    private static function turn(array $rows, int $rep): array
    {
        $turned = [];
        foreach (['each', 'batch'] as $kind) {
            $mine = array_filter($rows, static fn (array $r): bool => $r[2] === $kind);
            $keys = array_keys($mine);
            $k = count($keys) === 0 ? 0 : ($rep - 1) % count($keys);
            foreach (array_merge(array_slice($keys, $k), array_slice($keys, 0, $k)) as $key) {
                $turned[$key] = $mine[$key];
            }
        }
        return $turned;
    }

    public function report(Context $ctx, Report $report): void
    {
        $res = $ctx->results;
        if (!$res->has('pub.each.lapin') && !$res->has('pub.each.ebats_event')) {
            return;
        }
        $report->line(sprintf('1. Publish throughput, one long-lived process, persistent %d B messages, durable queue (msg/s)', BENCH_BODY_BYTES));
        $report->line(sprintf('   a) confirm awaited per message, N=%s', number_format($ctx->settings['pub_each_n'])));
        $this->rowsOf($ctx, $report, 'each');
        $report->line(sprintf('   b) confirms awaited per batch of %d, N=%s', $ctx->settings['batch'], number_format($ctx->settings['pub_batch_n'])));
        $this->rowsOf($ctx, $report, 'batch');
        $report->line();
    }

    private function rowsOf(Context $ctx, Report $report, string $kind): void
    {
        foreach ($this->rows($ctx) as $key => [$label, , $rowKind]) {
            if ($rowKind === $kind) {
                $report->row($label, $ctx->results->cell($key, 'rate'));
            }
        }
    }

    public function targets(Context $ctx, Report $report): void
    {
        $res = $ctx->results;
        if (!$res->has('pub.each.ebats_event')) {
            return;
        }
        $fmt = [Results::class, 'fmt'];
        $ratio = [Results::class, 'ratio'];
        $e = $res->med('pub.each.ebats_event', 'rate');
        $l = $res->med('pub.each.lapin', 'rate');
        $report->target('per-message publish: ebats Event / lapin', $ratio($e, $l), 0.90, '>=', sprintf('%s / %s = %.2f', $fmt($e), $fmt($l), $ratio($e, $l)));
        $t = $res->med('pub.each.ebats_task', 'rate');
        $report->target('per-message publish: ebats Task::create / lapin', $ratio($t, $l), 0.90, '>=', sprintf('%s / %s = %.2f', $fmt($t), $fmt($l), $ratio($t, $l)));
        $a = $res->med('pub.each.amqplib', 'rate');
        $report->target('per-message publish: ebats Event / php-amqplib', $ratio($e, $a), 1.0, '>=', sprintf('%.2f×', $ratio($e, $a)));
        $p = $res->med('pub.each.amqp', 'rate');
        $report->target('per-message publish: ebats Event / php-amqp', $ratio($e, $p), 1.0, '>=', sprintf('%.2f×', $ratio($e, $p)));
        // Confirms awaited per 100 (issue 22): at least php-amqp's, and 0.9 of lapin with every message in flight.
        $lp = $res->med('pub.batch.lapin', 'rate');
        $pb = $res->med('pub.batch.amqp', 'rate');
        foreach (['pub.batch.ebats_batch' => 'batched publish: ebats Batch', 'pub.batch.ebats_deferred' => 'deferred publish + ebats_flush'] as $k => $what) {
            $x = $res->med($k, 'rate');
            $report->target("$what / php-amqp per 100", $ratio($x, $pb), 1.0, '>=', sprintf('%s / %s = %.2f', $fmt($x), $fmt($pb), $ratio($x, $pb)));
            $report->target("$what / lapin all in flight", $ratio($x, $lp), 0.90, '>=', sprintf('%s / %s = %.2f', $fmt($x), $fmt($lp), $ratio($x, $lp)));
        }
    }
}
