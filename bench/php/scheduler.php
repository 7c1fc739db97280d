<?php
/**
 * An ebats Scheduler for the bench events: bench_evt -> task "noop", bench_lat -> task "lat", topic "bench".
 *
 *   php -d extension=ebats.so scheduler.php
 */

declare(strict_types=1);

use Asynclib\Ebats\EventManager;
use Asynclib\Ebats\Scheduler;

EventManager::register('bench_evt', 'noop', 'bench');
EventManager::register('bench_lat', 'lat', 'bench');
(new Scheduler())->run();
