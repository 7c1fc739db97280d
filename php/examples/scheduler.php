<?php
/**
 * Scheduler: maps each event to the tasks registered for it and sends them to the queue of their topic.
 * Several schedulers may run at once.
 *
 *     php -d extension=/path/to/ebats.so scheduler.php
 */

require_once __DIR__ . '/config.php';

use Asynclib\Ebats\EventManager;
use Asynclib\Ebats\Scheduler;
use Asynclib\Exception\ExceptionInterface;

// Register the events and their tasks.
EventManager::register('order_create', 'closeOrder', 'demo', 10);  // close an unpaid order (delayed by 10 s)
EventManager::register('order_paied', 'virtualShipping', 'demo');  // ship virtual goods at once

try {

    echo "scheduler: events ", implode(', ', EventManager::getEvents()), "\n";
    $scheduler = new Scheduler();
    $scheduler->run();

} catch (ExceptionInterface $exc) {

    echo $exc->getMessage(), "\n";
    exit(1);

}
