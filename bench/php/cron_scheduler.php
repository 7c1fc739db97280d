<?php
/**
 * An ebats Scheduler with one schedule declared in code, firing the event bench_cron every second.
 *
 *   php -d extension=ebats.so cron_scheduler.php
 */

declare(strict_types=1);

use Asynclib\Ebats\EventManager;
use Asynclib\Ebats\Scheduler;

EventManager::cron('* * * * * *', 'bench_cron', [], ['name' => 'bench-every-second', 'timezone' => 'UTC']);
(new Scheduler())->run();
