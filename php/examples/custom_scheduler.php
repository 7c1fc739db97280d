<?php
/**
 * Custom scheduler: turns messages of another system into tasks. Here every message on the topic
 * exchange order_fanout whose routing key matches *.*.WAIT_SELLER_SEND_GOODS becomes a task orderAsync
 * of topic demo, with the message as its parameters; a worker of topic demo runs it.
 *
 *     php -d extension=/path/to/ebats.so custom_scheduler.php
 */

require_once __DIR__ . '/config.php';

use Asynclib\Ebats\Task;
use Asynclib\Core\Consumer;
use Asynclib\Amq\ExchangeTypes;
use Asynclib\Exception\ExceptionInterface;

try {

    $worker = new Consumer();
    $worker->setExchange('order_fanout', ExchangeTypes::TOPIC);
    $worker->setQueue('shzf_order_paied', ['*.*.WAIT_SELLER_SEND_GOODS']);
    $worker->run(function ($key, $msg) {
        $order_data = json_encode($msg);
        echo " [$key] $order_data \n";
        Task::create('demo', 'orderAsync', $msg);  // the message becomes the task's parameters
    });

} catch (ExceptionInterface $exc) {

    echo $exc->getMessage(), "\n";
    exit(1);

}
