<?php
/**
 * An ebats Scheduler for the bench events: bench_evt -> task "noop", bench_lat -> task "lat", topic "bench".
 * With "grouped", a follow-up is registered on bench_evt: each event's task is a group of its own.
 *
 *   php -d extension=ebats.so scheduler.php [grouped]
 */

declare(strict_types=1);

use Asynclib\Ebats\EventManager;
use Asynclib\Ebats\Scheduler;

EventManager::register('bench_evt', 'noop', 'bench');
EventManager::register('bench_lat', 'lat', 'bench');
if (($argv[1] ?? '') === 'grouped') {
    EventManager::then('bench_evt', 'bench_evt_done', 'always');
}
(new Scheduler())->run();
