<?php
/**
 * Puts N messages in the broker with ebats's Batch, 500 a round, each round confirmed.
 *
 *   php -d extension=ebats.so fill.php events|tasks|keyed|unique N
 *
 * events: event bench_evt (into <prefix>.events, for the scheduler); tasks: task bench/noop (into
 * <prefix>.task.bench, for the worker). Parameters pad each document to about 200 bytes. keyed: tasks
 * bench/noop with N distinct keys (params k = 0 .. N-1); unique: the same, each unique by key 'k:{k}' (a
 * batch refused by the broker is sent again, twice at most).
 */

declare(strict_types=1);
require __DIR__ . '/common.php';

[$kind, $n] = [$argv[1] ?? '', (int) ($argv[2] ?? 0)];
$params = $kind === 'tasks' ? bench_task_params() : bench_params('bench_evt');
$done = 0;
while ($done < $n) {
    $b = new Asynclib\Ebats\Batch();
    $k = min(500, $n - $done);
    for ($i = 0; $i < $k; $i++) {
        if ($kind === 'events') {
            $b->event('bench_evt', $params);
        } elseif ($kind === 'tasks') {
            $b->task('bench', 'noop', $params);
        } elseif ($kind === 'keyed') {
            $b->task('bench', 'noop', ['k' => $done + $i]);
        } elseif ($kind === 'unique') {
            $b->task('bench', 'noop', ['k' => $done + $i], 0, ['unique' => 'k:{k}']);
        } else {
            bench_fail('usage: fill.php events|tasks|keyed|unique N');
        }
    }
    // A batch of unique tasks may be sent again after a broker error: keys already taken give the
    // holder's id, nothing is made twice.
    for ($try = 1; ; $try++) {
        try {
            $b->publish(false);
            break;
        } catch (Asynclib\Exception\ConnectionedException $e) {
            if ($kind !== 'unique' || $try >= 3) {
                throw $e;
            }
            fwrite(STDERR, "fill: batch sent again after: {$e->getMessage()}\n");
        }
    }
    $done += $k;
}
bench_result(['n' => $done]);
