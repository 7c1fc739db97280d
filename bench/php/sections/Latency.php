<?php

declare(strict_types=1);

namespace Ebats\Bench\Sections;

use Ebats\Bench\Context;
use Ebats\Bench\Report;
use Ebats\Bench\Results;
use Ebats\Bench\Section;
use Ebats\Bench\Workers;

/** Event → handler latency at a steady rate, through one Scheduler and one Worker process. */
final class Latency implements Section
{
    public function name(): string
    {
        return 'latency';
    }

    public function run(Context $ctx): void
    {
        $c = $ctx->settings;
        $n = (int) round($c['lat_rate'] * $c['lat_secs']);
        for ($rep = 1; $rep <= $c['reps']; $rep++) {
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

    public function report(Context $ctx, Report $report): void
    {
        $res = $ctx->results;
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
