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
 *
 * A new leader after many groups (gr.takeover): a leading Scheduler routes N events, each a group of one
 * task with a follow-up, a Worker runs them, the leader writes its next snapshot (a minute after it took
 * the lead; it holds every group, done ones closed); then a second Scheduler starts, the first is killed
 * (-9), and the second takes the lead: how long its read of the groups stream took (its log), its resident
 * memory, and one Group::status call in a new process (seconds, peak resident memory) right after.
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
            'gr.takeover' => [sprintf('a new leader after %d groups of 1 task', $c['takeover_n']), $c['takeover_n'], 1],
        ];
        return array_filter($all, [$ctx, 'wants'], ARRAY_FILTER_USE_KEY);
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
                    $row === 'gr.takeover' ? $this->takeover($ctx, $row, $groups, $rep) : $this->one($ctx, $row, $groups, $size, $rep);
                });
            }
        }
    }

    private function one(Context $ctx, string $row, int $groups, int $size, int $rep): void
    {
        $n = $groups * $size;
        $ctx->admin->purge($ctx->qTasks);
        $addr = Context::freeAddress();
        $log = "{$ctx->tmp}/groups-scheduler-$row-$rep.log";
        $sched = $ctx->spawn($ctx->phpCmd('scheduler.php', []), $log, ['EBATS_METRICS_ADDRESS' => $addr]);
        $probe = "{$ctx->prefix}.groups_probe";
        $w = null;
        try {
            self::waitLog($log, '/cron: took over the leadership/', 30, 'the Scheduler leads');
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

    /** Waits for $what in the log $log (its text matched by $re), up to $timeout s: the match. */
    private static function waitLog(string $log, string $re, float $timeout, string $what): array
    {
        $m = Process::until(static fn () => preg_match($re, (string) @file_get_contents($log), $m) ? $m : null, $timeout, 0.02);
        if ($m === null) {
            throw new \RuntimeException("$what: not in $timeout s:\n" . substr((string) @file_get_contents($log), -2000));
        }
        return $m;
    }

    private function takeover(Context $ctx, string $row, int $n, int $rep): void
    {
        $ctx->admin->purge($ctx->qTasks);
        $ctx->admin->purge($ctx->qEvents);
        $logA = "{$ctx->tmp}/groups-leader-$rep.log";
        $logB = "{$ctx->tmp}/groups-next-leader-$rep.log";
        $addr = Context::freeAddress();
        $a = $ctx->spawn($ctx->phpCmd('scheduler.php', ['grouped']), $logA, ['EBATS_METRICS_ADDRESS' => $addr]);
        $b = $w = null;
        try {
            self::waitLog($logA, '/cron: took over the leadership/', 30, 'the first Scheduler leads');
            $ctx->runJson($ctx->phpCmd('fill.php', ['events', $n]), 600.0);
            $dir = Workers::progressDir($ctx, "groups-$row");
            $w = Workers::startWorker($ctx, 1, 100, $dir);
            Workers::waitProgress($dir, $n, 120 + $n / 20);
            // The groups done, then the leader's next snapshot (a minute after it took the lead, or after the one before).
            // Completions as the leader counts them (its status document): a completion is logged only with EBATS_DEBUG.
            $ended = Process::until(static fn () => (self::status($addr)['groups']['completions'] ?? 0) >= $n ?: null, 120, 0.2);
            if ($ended === null) {
                throw new \RuntimeException("the leader did not complete the $n groups in 120 s");
            }
            $seen = substr_count((string) @file_get_contents($logA), 'groups: snapshot written');
            // A build that does not log its snapshots has written one within these 150 s all the same.
            Process::until(static fn () => substr_count((string) @file_get_contents($logA), 'groups: snapshot written') > $seen ?: null, 150, 0.2);
            $snap = preg_match('/.*groups: snapshot written \(.*; (\d+) KB\)/s', (string) @file_get_contents($logA), $m) ? $m : [1 => NAN];
            [$rssA] = self::rss($a->pid());
            $b = $ctx->spawn($ctx->phpCmd('scheduler.php', ['grouped']), $logB);
            $ctx->admin->waitConsumers($ctx->qEvents, 2);
            [$rssB0] = self::rss($b->pid());
            $ctx->stop($a, SIGKILL);
            $a = null;
            $read = self::waitLog($logB, '/groups: \d+ group\(s\) in flight \(stream read in (\d+) ms\)/', 120, 'the second Scheduler read the groups stream');
            [$rssB, $hwmB] = self::rss($b->pid());
            $status = $ctx->runJson($ctx->phpCmd('group_status.php', []), 120.0);
            $ctx->results->record($row, [
                'snapshot_kb' => (float) $snap[1], 'rss_leader' => $rssA, 'read_ms' => (float) $read[1], 'rss_before' => $rssB0,
                'rss_after' => $rssB, 'rss_peak' => $hwmB, 'status_s' => (float) $status['secs'], 'status_mb' => (float) $status['hwm_mb'],
            ]);
            $ctx->note(sprintf('%s rep %d  %d groups: snapshot %d KB, leader RSS %.1f MB; the next leader read the stream in %d ms, '
                . 'RSS %.1f MB before, %.1f MB after (peak %.1f MB); Group::status %.2f s, peak RSS %.1f MB',
                $row, $rep, $n, $snap[1], $rssA, $read[1], $rssB0, $rssB, $hwmB, $status['secs'], $status['hwm_mb']));
        } finally {
            foreach ([$w, $b, $a] as $p) {
                if ($p) {
                    $ctx->stop($p);
                }
            }
            // The next rows start with a groups stream of their own.
            $ctx->admin->channel()->queue_delete("{$ctx->prefix}.groups");
            $ctx->admin->purge($ctx->qEvents);
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
        if (array_diff(array_keys($rows), ['gr.takeover']) !== []) {
            $report->row('', 'leader RSS MB before', 'in flight', 'peak', 'after', 'last end → last follow-up ms', 'tasks/s');
        }
        foreach ($rows as $k => [$label]) {
            if ($k !== 'gr.takeover') {
                $report->row($label, $res->cell($k, 'rss_before', 1), $res->cell($k, 'rss_in_flight', 1), $res->cell($k, 'rss_peak', 1),
                    $res->cell($k, 'rss_after', 1), $res->cell($k, 'latency_ms'), $res->cell($k, 'tasks_s'));
            }
        }
        if (isset($rows['gr.takeover'])) {
            $k = 'gr.takeover';
            $report->row('', 'snapshot KB', 'leader RSS MB', 'next: read ms', 'next: RSS MB before', 'after', 'peak', 'Group::status s', 'its peak RSS MB');
            $report->row($rows[$k][0], $res->cell($k, 'snapshot_kb'), $res->cell($k, 'rss_leader', 1), $res->cell($k, 'read_ms'),
                $res->cell($k, 'rss_before', 1), $res->cell($k, 'rss_after', 1), $res->cell($k, 'rss_peak', 1), $res->cell($k, 'status_s', 2),
                $res->cell($k, 'status_mb', 1));
        }
        $report->line();
    }

    public function targets(Context $ctx, Report $report): void
    {
    }
}
