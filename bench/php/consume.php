<?php
/**
 * The bare consume-and-ack loop of php-amqp or php-amqplib: N messages at PREFETCH, each acked on
 * its own, timed from T0 (when the caller launched this process) to the N-th delivery.
 *
 *   php consume.php amqp|amqplib QUEUE N PREFETCH T0
 */

declare(strict_types=1);
require __DIR__ . '/common.php';

[$client, $queue, $n, $prefetch, $t0] =
    [$argv[1] ?? '', $argv[2] ?? '', (int) ($argv[3] ?? 0), (int) ($argv[4] ?? 1), (float) ($argv[5] ?? 0)];
if ($n < 1 || $queue === '') {
    bench_fail('usage: consume.php amqp|amqplib QUEUE N PREFETCH T0');
}
$t0 = $t0 > 0 ? $t0 : microtime(true);
$seen = 0;

if ($client === 'amqp') {
    $conn = bench_amqp_connect();
    $ch = new AMQPChannel($conn);
    $ch->setPrefetchCount($prefetch);
    $q = new AMQPQueue($ch);
    $q->setName($queue);
    $q->consume(function (AMQPEnvelope $env, AMQPQueue $q) use (&$seen, $n) {
        $q->ack($env->getDeliveryTag());
        return ++$seen < $n;
    });
    $end = microtime(true);
    $conn->disconnect();
} elseif ($client === 'amqplib') {
    bench_amqplib();
    $conn = bench_amqplib_connect();
    $ch = $conn->channel();
    $ch->basic_qos(0, $prefetch, false);
    $ch->basic_consume($queue, '', false, false, false, false, function ($msg) use (&$seen) {
        $msg->ack();
        $seen++;
    });
    while ($seen < $n) {
        $ch->wait(null, false, 30);
    }
    $end = microtime(true);
    $ch->close();
    $conn->close();
} else {
    bench_fail("unknown client $client");
}
bench_result(['n' => $seen, 'secs' => round($end - $t0, 6), 'rate' => round($seen / ($end - $t0), 1)]);
