<?php

declare(strict_types=1);

namespace Ebats\Bench\Sections;

use Ebats\Bench\Context;
use Ebats\Bench\Report;
use Ebats\Bench\Section;
use Ebats\Bench\Workers;
use Ebats\Tests\Lib\Process;

/**
 * Groups at scale: many groups of a few tasks in flight at once, and one big group. A Scheduler leads (it
 * folds the groups stream and publishes the follow-ups); the groups are published with no worker running,
 * so all of them are in flight at once; then a Worker (1 process, prefetch 100) runs every member.
 * Measured: the leading Scheduler's resident memory (VmRSS) before the groups, with all of them in flight
 * (its status document says how many it folds) and after they completed, and the time from the last member's
 * end (the worker's last callback) to the last follow-up reaching a queue bound to <prefix>.groups.done.
 */
final class Groups implements Section
{
    public function name(): string
    {
        return 'groups';
    }

    /** @return array<string,array{0:string,1:int,2:int}> row => [label, groups, members each] */
    private function rows(Context $ctx): array
    {
        $c = $ctx->settings;
        $all = [
            'gr.many' => [sprintf('%d groups of %d tasks in flight', $c['groups_n'], $c['groups_size']), $c['groups_n'], $c['groups_size']],
            'gr.big' => [sprintf('one group of %d tasks', $c['group_big']), 1, $c['group_big']],
        ];
        $want = $c['rows'];
        return array_filter($all, static fn (string $k): bool => $want === [] || array_filter($want, static fn ($p) => str_starts_with($k, $p)) !== [], ARRAY_FILTER_USE_KEY);
    }

    private static function rss(int $pid): array
    {
        $s = (string) @file_get_contents("/proc/$pid/status");
        $kb = static fn (string $k): float => preg_match("/^$k:\\s+(\\d+) kB/m", $s, $m) ? (float) $m[1] / 1024.0 : NAN;
        return [$kb('VmRSS'), $kb('VmHWM')];
    }

    private static function status(string $addr): ?array
    {
        $ctx = stream_context_create(['http' => ['timeout' => 5]]);
        $body = @file_get_contents("http://$addr/status.json", false, $ctx);
        $doc = $body === false ? null : json_decode($body, true);
        return is_array($doc) ? $doc : null;
    }

    public function run(Context $ctx): void
    {
        foreach ($this->rows($ctx) as $row => [$label, $groups, $size]) {
            for ($rep = 1; $rep <= $ctx->settings['reps']; $rep++) {
                $ctx->attempt($row, function () use ($ctx, $row, $groups, $size, $rep) {
                    $this->one($ctx, $row, $groups, $size, $rep);
                });
            }
        }
    }

    private function one(Context $ctx, string $row, int $groups, int $size, int $rep): void
    {
        $n = $groups * $size;
        $ctx->admin->purge($ctx->qTasks);
        $s = stream_socket_server('tcp://127.0.0.1:0');
        $addr = stream_socket_get_name($s, false);
        fclose($s);
        $log = "{$ctx->tmp}/groups-scheduler-$row-$rep.log";
        $sched = $ctx->spawn($ctx->phpCmd('scheduler.php', []), $log, ['EBATS_METRICS_ADDRESS' => $addr]);
        $probe = "{$ctx->prefix}.groups_probe";
        $w = null;
        try {
            $leads = Process::until(static fn () => str_contains((string) @file_get_contents($log), 'cron: took over the leadership') ?: null, 30, 0.05);
            if ($leads === null) {
                throw new \RuntimeException("the Scheduler did not lead in 30 s:\n" . @file_get_contents($log));
            }
            // Past what a leader allocates on taking over (its fold of the stream so far).
            Process::until(static fn () => self::status($addr)['groups'] ?? null, 20, 0.1);
            [$before] = self::rss($sched->pid());

            $pub = $ctx->runJson($ctx->phpCmd('groups.php', [$groups, $size]), 600.0 + $n / 50);
            $ch = $ctx->admin->channel();
            $ch->queue_declare($probe, false, false, false, false);
            $ch->queue_bind($probe, "{$ctx->prefix}.groups.done");
            $ch->queue_purge($probe);
            $folded = Process::until(static fn () => (($g = self::status($addr)['groups'] ?? null) && $g['open'] >= $groups) ? $g : null, 300, 0.2);
            if ($folded === null) {
                throw new \RuntimeException("the leader did not fold the $groups groups in 300 s");
            }
            [$inFlight, $peak] = self::rss($sched->pid());

            $dir = Workers::progressDir($ctx, "groups-$row");
            $t0 = microtime(true);
            $w = Workers::startWorker($ctx, 1, 100, $dir);
            [, , $lastEnd] = Workers::waitProgress($dir, $n, 120 + $n / 20);
            $ran = microtime(true) - $t0;
            $allIn = Process::until(fn () => ($ctx->admin->queueInfo($probe)[0] ?? 0) >= $groups ? microtime(true) : null, 120, 0.005);
            if ($allIn === null) {
                throw new \RuntimeException('the follow-ups did not all come: ' . ($ctx->admin->queueInfo($probe)[0] ?? 0) . " of $groups");
            }
            $latency = 1000.0 * ($allIn - $lastEnd);
            // Exactly one follow-up a group: none more a second later.
            usleep(1_000_000);
            $follow = $ctx->admin->queueInfo($probe)[0] ?? 0;
            [$after, $peak] = self::rss($sched->pid());
            $ctx->results->record($row, [
                'rss_before' => $before, 'rss_in_flight' => $inFlight, 'rss_after' => $after, 'rss_peak' => $peak,
                'publish_s' => (float) $pub['secs'], 'run_s' => $ran, 'latency_ms' => $latency, 'follow_ups' => $follow,
                'tasks_s' => $n / $ran,
            ]);
            $ctx->note(sprintf('%s rep %d  %d groups x %d: leader RSS %.1f MB before, %.1f MB with %d in flight (peak %.1f MB), %.1f MB after; '
                . 'published in %.1f s, run in %.1f s (%.0f tasks/s); last member end -> last follow-up %.0f ms; %d follow-ups',
                $row, $rep, $groups, $size, $before, $inFlight, $folded['open'], $peak, $after, $pub['secs'], $ran, $n / $ran, $latency, $follow));
            if ($follow !== $groups) {
                throw new \RuntimeException("$follow follow-ups for $groups groups");
            }
        } finally {
            if ($w) {
                $ctx->stop($w);
            }
            $ctx->stop($sched);
            $ctx->admin->channel()->queue_delete($probe);
        }
    }

    public function report(Context $ctx, Report $report): void
    {
        $res = $ctx->results;
        $rows = array_filter($this->rows($ctx), static fn (string $k): bool => $res->has($k), ARRAY_FILTER_USE_KEY);
        if ($rows === []) {
            return;
        }
        $report->line('7. Groups at scale: a leading Scheduler, the groups published with no worker, then a Worker (1 process, prefetch 100)');
        $report->row('', 'leader RSS MB before', 'in flight', 'peak', 'after', 'last end → last follow-up ms', 'tasks/s');
        foreach ($rows as $k => [$label]) {
            $report->row($label, $res->cell($k, 'rss_before', 1), $res->cell($k, 'rss_in_flight', 1), $res->cell($k, 'rss_peak', 1),
                $res->cell($k, 'rss_after', 1), $res->cell($k, 'latency_ms'), $res->cell($k, 'tasks_s'));
        }
        $report->line();
    }

    public function targets(Context $ctx, Report $report): void
    {
    }
}
