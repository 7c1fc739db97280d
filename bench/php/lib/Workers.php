<?php

declare(strict_types=1);

namespace Ebats\Bench;

use Ebats\Tests\Lib\Process;

/**
 * The ebats Worker and Scheduler of the worker, latency and memory sections (worker.php, scheduler.php), and
 * the progress files the worker's children keep: "<tasks seen> <failures> <unix time of the last one>".
 */
final class Workers
{
    /** An empty progress directory of that name. */
    public static function progressDir(Context $ctx, string $name): string
    {
        $d = "{$ctx->tmp}/progress/$name";
        if (is_dir($d)) {
            array_map('unlink', glob("$d/*") ?: []);
        } else {
            mkdir($d, 0777, true);
        }
        return $d;
    }

    /** [tasks seen, failures, time of the last one] summed over the worker children's files. */
    public static function progress(string $dir): array
    {
        $seen = $failed = 0;
        $last = 0.0;
        foreach (glob("$dir/[0-9]*") ?: [] as $f) {
            $s = @file_get_contents($f);
            if ($s === false || !preg_match('/^\s*(\d+)\s+(\d+)\s+([\d.]+)/', $s, $m)) {
                continue;
            }
            $seen += (int) $m[1];
            $failed += (int) $m[2];
            $last = max($last, (float) $m[3]);
        }
        return [$seen, $failed, $last];
    }

    /** Waits until the worker saw $n tasks; $tick gets each progress reading. */
    public static function waitProgress(string $dir, int $n, float $timeout, ?callable $tick = null): array
    {
        $seen = 0;
        $done = Process::until(static function () use ($dir, $n, $tick, &$seen): array|false {
            $p = self::progress($dir);
            if ($tick) {
                $tick($p);
            }
            $seen = $p[0];
            return $p[0] >= $n ? $p : false;
        }, $timeout, 0.005);
        if ($done === null) {
            throw new \RuntimeException("the worker saw $seen of $n tasks in $timeout s");
        }
        return $done;
    }

    /**
     * The environment that tells a worker of one process it will see $n tasks, so that it writes its
     * progress every 1000 tasks and at the last instead of after each (worker.php); none for more
     * processes (how the tasks split between them is not known beforehand).
     */
    public static function expecting(int $procs, int $n): array
    {
        return $procs === 1 ? ['EBATS_BENCH_EXPECT' => (string) $n] : [];
    }

    /** $metrics: an address to serve metrics on ('' for none). */
    /** $env: more environment (EBATS_HISTORY=1 turns the execution history on). */
    public static function startWorker(Context $ctx, int $procs, int $prefetch, string $dir, string $metrics = '', array $env = []): Process
    {
        return $ctx->spawn($ctx->phpCmd('worker.php', [$procs, $prefetch, $dir, $metrics]), "{$ctx->tmp}/worker.log", $env);
    }

    /**
     * $groups: '' (none), 'grouped' (each event's tasks a group with a follow-up) or 'grouped-failure' (the same,
     * the follow-up on failure only); $fanout tasks an event (see scheduler.php).
     */
    public static function startScheduler(Context $ctx, string $groups = '', int $fanout = 1): Process
    {
        return $ctx->spawn($ctx->phpCmd('scheduler.php', [$groups ?: 'plain', $fanout]), "{$ctx->tmp}/scheduler.log");
    }
}
