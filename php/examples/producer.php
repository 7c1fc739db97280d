<?php
/**
 * Producer: publishes events from business code, for instance inside a web request. publish() returns
 * once the broker has stored the event; the scheduler turns it into tasks.
 *
 *     php -d extension=/path/to/ebats.so producer.php
 */

require_once __DIR__ . '/config.php';

use Asynclib\Ebats\Event;

try {

    $event = new Event('order_paied');  // the event
    $event->setOptions(['order_id' => 'FB138020392193312']);  // its parameters
    $id = $event->publish();
    echo "published order_paied ($id)\n";

    $event = new Event('order_create');
    $event->setOptions(['order_id' => 'FB138020392193313']);
    $id = $event->publish();
    echo "published order_create ($id)\n";

} catch (Exception $exc) {

    echo $exc->getMessage(), "\n";
    exit(1);

}
