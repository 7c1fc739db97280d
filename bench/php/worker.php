<?php
/**
 * An ebats Worker for topic "bench" running no-op tasks.
 *
 *   php -d extension=ebats.so worker.php PROCESSES PREFETCH PROGRESS_DIR [METRICS_ADDRESS]
 *
 * PREFETCH 0 leaves the Worker's default (setPrefetch() not called).
 *
 * Each child keeps, in PROGRESS_DIR/<pid>, "<tasks seen> <failures> <unix time of the last one>",
 * rewritten in place after every task, so the bench knows when the callback has seen all N and when.
 * With EBATS_BENCH_EXPECT=N (a worker of one process that will see N tasks), only after every 1000th
 * task, the N-th and any failure: a loop of a peer client (php-amqp's, lapin's) pays for no such write
 * per message, so a row compared with one does not either.
 * Task "lat" appends now - params.t (seconds) to PROGRESS_DIR/lat.<pid>, one line per task.
 * EBATS_BENCH_RATE (e.g. 200/s) sets that rate limit on the topic. EBATS_BENCH_KEY_RATE (e.g. 1/s) and
 * EBATS_BENCH_KEY_CONCURRENCY (e.g. 1) set that limit per key 'k:{k}' of the tasks' params.
 */

declare(strict_types=1);

use Asynclib\Ebats\Worker;

final class TaskBenchModel
{
    private static $lat = null;

    public function noopTask($params): void
    {
    }

    /** The other tasks of an event of the fan-out rows (scheduler.php FANOUT), as "noop". */
    public function noop1Task($params): void
    {
    }

    public function noop2Task($params): void
    {
    }

    public function noop3Task($params): void
    {
    }

    public function noop4Task($params): void
    {
    }

    public function noop5Task($params): void
    {
    }

    public function noop6Task($params): void
    {
    }

    public function noop7Task($params): void
    {
    }

    public function noop8Task($params): void
    {
    }

    public function noop9Task($params): void
    {
    }

    public function latTask($params): void
    {
        $now = microtime(true);
        if (self::$lat === null) {
            self::$lat = fopen($GLOBALS['bench_dir'] . '/lat.' . getmypid(), 'ab');
        }
        fwrite(self::$lat, sprintf("%.6f\n", $now - (float) $params['t']));
    }
}

[$procs, $prefetch, $dir, $metrics] = [(int) ($argv[1] ?? 1), (int) ($argv[2] ?? 1), $argv[3] ?? '', $argv[4] ?? ''];
if ($dir === '' || !is_dir($dir)) {
    fwrite(STDERR, "usage: worker.php PROCESSES PREFETCH PROGRESS_DIR\n");
    exit(2);
}
$GLOBALS['bench_dir'] = $dir;

$expect = (int) getenv('EBATS_BENCH_EXPECT');
$callback = function ($topic, $taskid, $taskname, $params, $timeuse, $message, $status, $attempt) use ($dir, $expect) {
    static $fh = null, $seen = 0, $failed = 0;
    if ($fh === null) {
        $fh = fopen($dir . '/' . getmypid(), 'c');
    }
    $seen++;
    if ($status !== Worker::STATE_SUCC) {
        $failed++;
    } elseif ($expect > 0 && $seen % 1000 !== 0 && $seen !== $expect) {
        return;
    }
    fseek($fh, 0);
    fwrite($fh, sprintf("%12d %12d %.6f\n", $seen, $failed, microtime(true)));
};

$worker = new Worker($callback, $procs);
$worker->setQueue('bench');
if ($prefetch > 0) {
    // 0: the default (adapted to the tasks' durations).
    $worker->setPrefetch($prefetch);
}
if ($metrics !== '') {
    $worker->setMetricsAddress($metrics);
}
if (($rate = getenv('EBATS_BENCH_RATE')) !== false && $rate !== '') {
    $worker->setLimit(['rate' => $rate]);
}
if (($concurrency = getenv('EBATS_BENCH_CONCURRENCY')) !== false && $concurrency !== '') {
    // A topic-wide limit far above what one worker runs: its cost when it does not bind.
    $worker->setLimit(['concurrency' => (int) $concurrency]);
}
if (($rate = getenv('EBATS_BENCH_KEY_RATE')) !== false && $rate !== '') {
    $worker->setLimit(['rate' => $rate, 'key' => 'k:{k}']);
}
if (($concurrency = getenv('EBATS_BENCH_KEY_CONCURRENCY')) !== false && $concurrency !== '') {
    $worker->setLimit(['concurrency' => (int) $concurrency, 'key' => 'k:{k}']);
}
$worker->run();
