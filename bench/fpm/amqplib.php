<?php
// One event per request with php-amqplib, as such applications do it: connect, confirm mode,
// publish, wait for the confirm, close.
require '/usr/share/php/PhpAmqpLib/autoload.php';

use PhpAmqpLib\Connection\AMQPStreamConnection;
use PhpAmqpLib\Message\AMQPMessage;

$prefix = getenv('EBATS_PREFIX');   // set by the pool (env[EBATS_PREFIX])
$body = json_encode([
    'v' => 1, 'id' => bin2hex(random_bytes(16)), 'event' => 'bench_web',
    'params' => ['user' => 42, 'path' => $_SERVER['REQUEST_URI'] ?? '/', 'p' => str_repeat('x', 60)],
    'created_at' => microtime(true),
]);
$conn = new AMQPStreamConnection('127.0.0.1', 5672, 'guest', 'guest', '/');
$ch = $conn->channel();
$ch->confirm_select();
$ch->basic_publish(
    new AMQPMessage($body, ['content_type' => 'application/json', 'delivery_mode' => AMQPMessage::DELIVERY_MODE_PERSISTENT]),
    $prefix . '.core.event',
    'bench_web'
);
$ch->wait_for_pending_acks(10);
$ch->close();
$conn->close();
header('Content-Type: text/plain');
echo "OK\n";
