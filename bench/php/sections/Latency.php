<?php

declare(strict_types=1);

namespace Ebats\Bench\Sections;

use Ebats\Bench\Context;
use Ebats\Bench\Report;
use Ebats\Bench\Results;
use Ebats\Bench\Section;
use Ebats\Bench\Workers;

/**
 * Event → handler latency at a steady rate, through one Scheduler and one Worker process; and a group's
 * completion latency: its last member's end to its follow-up published (each event's task a group).
 */
final class Latency implements Section
{
    /** The groups of the completion latency row, and the rate their events are published at (per second). */
    private const GROUPS = 200;
    private const GROUP_RATE = 50;

    public function name(): string
    {
        return 'latency';
    }

    public function run(Context $ctx): void
    {
        $c = $ctx->settings;
        $n = (int) round($c['lat_rate'] * $c['lat_secs']);
        for ($rep = 1; $rep <= $c['reps']; $rep++) {
            if ($ctx->wants('lat.group')) {
                $ctx->attempt('group completion latency', fn () => $this->groupCompletion($ctx, $rep));
            }
            if (!$ctx->wants('lat.event')) {
                continue;
            }
            $ctx->attempt('latency', function () use ($ctx, $c, $n, $rep) {
                $ctx->admin->purge($ctx->qEvents);
                $ctx->admin->purge($ctx->qTasks);
                $dir = Workers::progressDir($ctx, 'latency');
                $w = Workers::startWorker($ctx, 1, 1, $dir);
                $s = Workers::startScheduler($ctx);
                try {
                    $ctx->admin->waitConsumers($ctx->qTasks, 1);
                    $ctx->admin->waitConsumers($ctx->qEvents, 1);
                    $r = $ctx->runJson($ctx->phpCmd('producer_rate.php', [$c['lat_rate'], $c['lat_secs']]), 60 + $c['lat_secs']);
                    Workers::waitProgress($dir, $n, 30);
                } finally {
                    $ctx->stop($s);
                    $ctx->stop($w);
                }
                $lat = [];
                foreach (glob("$dir/lat.*") ?: [] as $f) {
                    foreach (file($f, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) as $l) {
                        $lat[] = 1000.0 * (float) $l;
                    }
                }
                sort($lat);
                $p50 = Results::pct($lat, 50);
                $p99 = Results::pct($lat, 99);
                $ctx->results->record('lat', ['p50' => $p50, 'p99' => $p99, 'max' => end($lat), 'n' => count($lat), 'late' => $r['late'] ?? 0]);
                $ctx->note(sprintf('latency rep %d  %d events at %d/s: p50 %.2f ms  p99 %.2f ms  max %.2f ms (producer late %d)',
                    $rep, count($lat), $c['lat_rate'], $p50, $p99, end($lat), $r['late'] ?? 0));
            });
        }
    }

    /**
     * GROUPS events of a follow-up (each event's task a group of one, see scheduler.php) at GROUP_RATE/s
     * through one Scheduler (the deciding leader) and one Worker process (prefetch 1); then, from the groups
     * stream (group_latency.php), each group's last member end (the time its end record carries) to its
     * follow-up published (the time in the follow-up's header).
     */
    private function groupCompletion(Context $ctx, int $rep): void
    {
        $ctx->admin->purge($ctx->qEvents);
        $ctx->admin->purge($ctx->qTasks);
        $dir = Workers::progressDir($ctx, 'latency-group');
        $since = (int) floor(microtime(true) * 1000);
        $w = Workers::startWorker($ctx, 1, 1, $dir);
        $s = Workers::startScheduler($ctx, 'grouped');
        try {
            $ctx->admin->waitConsumers($ctx->qTasks, 1);
            $ctx->admin->waitConsumers($ctx->qEvents, 1);
            $secs = self::GROUPS / self::GROUP_RATE;
            $ctx->runJson($ctx->phpCmd('producer_rate.php', [self::GROUP_RATE, $secs, 'bench_evt']), 60 + $secs);
            Workers::waitProgress($dir, self::GROUPS, 30);
            $r = $ctx->runJson($ctx->phpCmd('group_latency.php', [self::GROUPS, $since, 60], false), 120);
        } finally {
            $ctx->stop($s);
            $ctx->stop($w);
        }
        $lat = $r['lat'];
        if (count($lat) < self::GROUPS) {
            throw new \RuntimeException(sprintf('%d of %d follow-ups seen on the groups stream', count($lat), self::GROUPS));
        }
        $p50 = Results::pct($lat, 50);
        $p99 = Results::pct($lat, 99);
        $ctx->results->record('lat.group', ['p50' => $p50, 'p99' => $p99, 'max' => end($lat), 'n' => count($lat)]);
        $ctx->note(sprintf('group completion latency rep %d  %d groups at %d/s: p50 %.0f ms  p99 %.0f ms  max %.0f ms',
            $rep, count($lat), self::GROUP_RATE, $p50, $p99, end($lat)));
    }

    public function report(Context $ctx, Report $report): void
    {
        $res = $ctx->results;
        if ($res->has('lat.group')) {
            $report->line(sprintf('4b. Group completion latency, %d groups (an event\'s task and a follow-up) at %d/s, one Scheduler (deciding), one Worker process (prefetch 1)',
                self::GROUPS, self::GROUP_RATE));
            $report->row('', 'p50 ms', 'p99 ms', 'max ms');
            $report->row('last member\'s end record sent → follow-up published', $res->cell('lat.group', 'p50'), $res->cell('lat.group', 'p99'), $res->cell('lat.group', 'max'));
            $report->line();
        }
        if (!$res->has('lat')) {
            return;
        }
        $report->line(sprintf('4. Event → handler latency, %d events/s for %d s, one Scheduler, one Worker process (prefetch 1), publish confirmed',
            $ctx->settings['lat_rate'], $ctx->settings['lat_secs']));
        $report->row('', 'p50 ms', 'p99 ms', 'max ms');
        $report->row('published → handler running', $res->cell('lat', 'p50', 2), $res->cell('lat', 'p99', 2), $res->cell('lat', 'max', 1));
        $report->line();
    }

    public function targets(Context $ctx, Report $report): void
    {
        // latency has no target
    }
}
