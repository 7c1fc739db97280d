<?php
/**
 * An ebats Scheduler for the bench events: bench_evt -> task "noop", bench_lat -> task "lat", topic "bench".
 * With "grouped", a follow-up is registered on bench_evt: each event's tasks are a group of their own.
 * With "grouped-failure", the same follow-up on failure only: the groups are tracked and completed, and as
 * every task succeeds no follow-up is published (what the groups cost without their follow-up events).
 * FANOUT (1 to 10, default 1): bench_evt makes that many tasks ("noop", then "noop1" .. "noop9").
 *
 *   php -d extension=ebats.so scheduler.php [grouped|grouped-failure|plain [FANOUT]]
 */

declare(strict_types=1);

use Asynclib\Ebats\EventManager;
use Asynclib\Ebats\Scheduler;

EventManager::register('bench_evt', 'noop', 'bench');
for ($i = 1; $i < max(1, min(10, (int) ($argv[2] ?? 1))); $i++) {
    EventManager::register('bench_evt', "noop$i", 'bench');
}
EventManager::register('bench_lat', 'lat', 'bench');
if (($argv[1] ?? '') === 'grouped') {
    EventManager::then('bench_evt', 'bench_evt_done', 'always');
} elseif (($argv[1] ?? '') === 'grouped-failure') {
    EventManager::then('bench_evt', 'bench_evt_done', 'failure');
}
(new Scheduler())->run();
