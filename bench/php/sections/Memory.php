<?php

declare(strict_types=1);

namespace Ebats\Bench\Sections;

use Ebats\Bench\Context;
use Ebats\Bench\Report;
use Ebats\Bench\Section;
use Ebats\Bench\Workers;

/** Resident memory of one worker child over many no-op tasks. */
final class Memory implements Section
{
    public function name(): string
    {
        return 'memory';
    }

    private static function rssKb(int $pid): int
    {
        $s = @file_get_contents("/proc/$pid/status");
        return ($s !== false && preg_match('/VmRSS:\s+(\d+)\s+kB/', $s, $m)) ? (int) $m[1] : -1;
    }

    public function run(Context $ctx): void
    {
        $c = $ctx->settings;
        $ctx->attempt('memory', function () use ($ctx, $c) {
            $ctx->admin->purge($ctx->qTasks);
            $dir = Workers::progressDir($ctx, 'memory');
            $w = Workers::startWorker($ctx, 1, 100, $dir);
            try {
                $ctx->admin->waitConsumers($ctx->qTasks, 1);
                usleep(300000);
                $kids = $w->childPids();
                if (count($kids) !== 1) {
                    throw new \RuntimeException('expected one worker child, found ' . count($kids));
                }
                $child = $kids[0];
                $samples = ['idle' => self::rssKb($child)];
                $ctx->runJson($ctx->phpCmd('fill.php', ['tasks', $c['mem_warm']]));
                Workers::waitProgress($dir, $c['mem_warm'], 60);
                usleep(200000);
                $samples['after ' . number_format($c['mem_warm'])] = self::rssKb($child);
                $total = $c['mem_warm'] + $c['mem_n'];
                $filler = $ctx->spawn($ctx->phpCmd('fill.php', ['tasks', $c['mem_n']]), "{$ctx->tmp}/fill.log");
                $step = intdiv($c['mem_n'], 4);
                $next = $c['mem_warm'] + $step;
                Workers::waitProgress($dir, $total, 120 + $c['mem_n'] / 100, function ($p) use (&$next, &$samples, $step, $child, $total) {
                    if ($p[0] >= $next && $next < $total) {
                        $samples['after ' . number_format($next)] = self::rssKb($child);
                        $next += $step;
                    }
                });
                $ctx->stop($filler);
                usleep(200000);
                $samples['after ' . number_format($total)] = self::rssKb($child);
                if (!in_array($child, $w->childPids(), true)) {
                    throw new \RuntimeException("worker child $child was replaced during the run");
                }
                $warm = $samples['after ' . number_format($c['mem_warm'])];
                $end = $samples['after ' . number_format($total)];
                $ctx->results->record('mem', ['samples' => $samples, 'growth_kb' => $end - $warm, 'from_idle_kb' => $end - $samples['idle']]);
                $ctx->note('memory ' . json_encode($samples));
            } finally {
                $ctx->stop($w);
            }
        });
    }

    public function report(Context $ctx, Report $report): void
    {
        $m = $ctx->results->runs('mem')[0] ?? null;
        if ($m === null) {
            return;
        }
        $c = $ctx->settings;
        $report->line(sprintf('5. Worker child resident memory (VmRSS of /proc/<child>/status), one process, prefetch 100, %s no-op tasks', number_format($c['mem_n'])));
        foreach ($m['samples'] as $k => $kb) {
            $report->row($k, sprintf('%.1f MB', $kb / 1024));
        }
        $report->row(sprintf('growth over the %s tasks after the first %s', number_format($c['mem_n']), number_format($c['mem_warm'])), sprintf('%+.2f MB', $m['growth_kb'] / 1024));
        $report->line();
    }

    public function targets(Context $ctx, Report $report): void
    {
        $m = $ctx->results->runs('mem')[0] ?? null;
        if ($m === null) {
            return;
        }
        $g = $m['growth_kb'] / 1024;
        $report->target(sprintf('worker child RSS growth over %s tasks (MB)', number_format($ctx->settings['mem_n'])), $g, 2.0, '<=', sprintf('%+.2f MB', $g));
    }
}
