<?php
/**
 * Publish throughput of one long-lived process.
 *
 *   php publish.php CLIENT MODE N [BATCH]
 *
 * CLIENT MODE: ebats event | ebats task | ebats task_unique | ebats batch | ebats deferred | amqplib each
 *              | amqplib batch | amqp each | amqp batch
 * "task_unique" is "task" with the option 'unique' (a key of its own per task, held 60 s: each call takes
 * a new key, which is the cost a unique task adds).
 * "each" awaits every message's confirm; "batch" and "deferred" await the confirms of every BATCH
 * messages (default 100). All persistent, about 200 bytes, into a durable queue. The connection
 * and declarations are made by one confirmed message before the clock starts.
 */

declare(strict_types=1);
require __DIR__ . '/common.php';

[$client, $mode, $n, $batch] = [$argv[1] ?? '', $argv[2] ?? '', (int) ($argv[3] ?? 0), (int) ($argv[4] ?? 100)];
if ($n < 1 || $batch < 1) {
    bench_fail('usage: publish.php CLIENT MODE N [BATCH]');
}
$rounds = intdiv($n, $batch);
$n_timed = in_array($mode, ['each', 'event', 'task', 'task_unique'], true) ? $n : $rounds * $batch;

switch ("$client $mode") {
    case 'ebats event':
    case 'ebats deferred':
        $e = new Asynclib\Ebats\Event('bench_pub');
        $e->setOptions(bench_params());
        $e->publish(false);
        $t = microtime(true);
        if ($mode === 'event') {
            for ($i = 0; $i < $n; $i++) {
                $e->publish(false);
            }
        } else {
            for ($r = 0; $r < $rounds; $r++) {
                for ($i = 0; $i < $batch; $i++) {
                    $e->publish(true);
                }
                if (ebats_flush() !== $batch) {
                    bench_fail('ebats_flush() did not confirm the whole batch');
                }
            }
        }
        break;

    case 'ebats task':
        $params = bench_task_params();
        Asynclib\Ebats\Task::create('benchpub', 'noop', $params);
        $t = microtime(true);
        for ($i = 0; $i < $n; $i++) {
            Asynclib\Ebats\Task::create('benchpub', 'noop', $params);
        }
        break;

    case 'ebats task_unique':
        $params = bench_task_params();
        $options = ['unique' => 'bench:{run}:{n}', 'unique_for' => 60];
        $run = bin2hex(random_bytes(4));
        Asynclib\Ebats\Task::create('benchpub', 'noop', ['run' => $run, 'n' => -1] + $params, 0, $options);
        $t = microtime(true);
        for ($i = 0; $i < $n; $i++) {
            Asynclib\Ebats\Task::create('benchpub', 'noop', ['run' => $run, 'n' => $i] + $params, 0, $options);
        }
        $d = microtime(true) - $t;
        bench_delete_unique_keys('benchpub', array_map(static fn (int $i): string => "bench:$run:$i", range(-1, $n - 1)));
        break;

    case 'ebats batch':
        $params = bench_params();
        (new Asynclib\Ebats\Event('bench_pub'))->setOptions($params)->publish(false);
        $t = microtime(true);
        for ($r = 0; $r < $rounds; $r++) {
            $b = new Asynclib\Ebats\Batch();
            for ($i = 0; $i < $batch; $i++) {
                $b->event('bench_pub', $params);
            }
            if (count($b->publish(false)) !== $batch) {
                bench_fail('Batch::publish() returned the wrong number of ids');
            }
        }
        break;

    case 'amqplib each':
    case 'amqplib batch':
        bench_amqplib();
        $conn = bench_amqplib_connect();
        $ch = $conn->channel();
        $ch->confirm_select();
        $returned = 0;
        $nacked = 0;
        $ch->set_return_listener(function () use (&$returned) { $returned++; });
        $ch->set_nack_handler(function () use (&$nacked) { $nacked++; });
        $msg = new PhpAmqpLib\Message\AMQPMessage(bench_body(), [
            'content_type' => 'application/json',
            'delivery_mode' => PhpAmqpLib\Message\AMQPMessage::DELIVERY_MODE_PERSISTENT,
        ]);
        $x = bench_event_exchange();
        $ch->basic_publish($msg, $x, 'bench_pub', true);
        $ch->wait_for_pending_acks_returns(10);
        $t = microtime(true);
        if ($mode === 'each') {
            for ($i = 0; $i < $n; $i++) {
                $ch->basic_publish($msg, $x, 'bench_pub', true);
                $ch->wait_for_pending_acks_returns(10);
            }
        } else {
            for ($r = 0; $r < $rounds; $r++) {
                for ($i = 0; $i < $batch; $i++) {
                    $ch->basic_publish($msg, $x, 'bench_pub', true);
                }
                $ch->wait_for_pending_acks_returns(10);
            }
        }
        $d = microtime(true) - $t;
        if ($returned || $nacked) {
            bench_fail("php-amqplib: $returned returned, $nacked nacked");
        }
        $ch->close();
        $conn->close();
        break;

    case 'amqp each':
    case 'amqp batch':
        $conn = bench_amqp_connect();
        $ch = new AMQPChannel($conn);
        $ch->confirmSelect();
        $published = 0;
        $acked = 0;
        $bad = 0;
        $ch->setConfirmCallback(
            function (int $tag, bool $multiple) use (&$acked, &$published) {
                $acked = $tag;
                return $acked < $published;   // false stops waitForConfirm()
            },
            function (int $tag, bool $multiple, bool $requeue) use (&$bad) {
                $bad++;
                return false;
            }
        );
        $ch->setReturnCallback(function () use (&$bad) { $bad++; return false; });
        $x = new AMQPExchange($ch);
        $x->setName(bench_event_exchange());
        $body = bench_body();
        $attrs = ['content_type' => 'application/json', 'delivery_mode' => 2];
        $x->publish($body, 'bench_pub', AMQP_MANDATORY, $attrs);
        $published++;
        $ch->waitForConfirm(10.0);
        $t = microtime(true);
        if ($mode === 'each') {
            for ($i = 0; $i < $n; $i++) {
                $x->publish($body, 'bench_pub', AMQP_MANDATORY, $attrs);
                $published++;
                $ch->waitForConfirm(10.0);
            }
        } else {
            for ($r = 0; $r < $rounds; $r++) {
                for ($i = 0; $i < $batch; $i++) {
                    $x->publish($body, 'bench_pub', AMQP_MANDATORY, $attrs);
                    $published++;
                }
                $ch->waitForConfirm(10.0);
            }
        }
        $d = microtime(true) - $t;
        if ($bad || $acked !== $published) {
            bench_fail("php-amqp: $bad nacked/returned, $acked of $published confirmed");
        }
        $conn->disconnect();
        break;

    default:
        bench_fail("unknown client/mode: $client $mode");
}
$d = $d ?? (microtime(true) - $t);
bench_result(['n' => $n_timed, 'secs' => round($d, 6), 'rate' => round($n_timed / $d, 1)]);
