<?php

declare(strict_types=1);

namespace Ebats\Tests;


use Asynclib\Ebats\Worker;
use Ebats\Tests\Lib\Broker;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\ProcTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * The generic Consumer (custom scheduler of seeds/000): messages another system publishes with the php-amqp
 * C extension reach the callback, become tasks, and failures go to <prefix>.failed.consumer.<queue>.
 * The Consumer's own exchange and queue names are not prefixed: they are built from the test's prefix here.
 */
final class ConsumerTest extends ProcTestCase
{
    private const KEY = 'a.b.WAIT_SELLER_SEND_GOODS';

    private static function exchange(): string
    {
        return static::prefix() . '_order_fanout';
    }

    private static function queue(): string
    {
        return static::prefix() . '_shzf';
    }

    private static function failedQueue(): string
    {
        return static::q('failed.consumer.' . self::queue());
    }

    private function startConsumer(): Process
    {
        $proc = $this->startFixture('consumer', 'consumer.php', [
            'EBATS_T_EXCHANGE' => self::exchange(),
            'EBATS_T_QUEUE' => self::queue(),
            'EBATS_T_KEYS' => json_encode(['*.*.WAIT_SELLER_SEND_GOODS']),
            'EBATS_DEBUG' => '1',
        ]);
        $this->waitConsumers(self::queue(), 1, 20, [$proc], true);
        return $proc;
    }

    /** Publishes with php-amqp, as a foreign system would. */
    private function publish(string $body, string $key = self::KEY, array $properties = []): void
    {
        $this->broker->publish(self::exchange(), $key, $body, $properties);
    }

    /** @return list<array> consumed records, optionally only those with $field = $value in the message */
    private function consumed(?string $field = null, mixed $value = null): array
    {
        return array_values(array_filter(
            $this->records('consumed'),
            static fn ($r) => $field === null || (is_array($r['msg']) && ($r['msg'][$field] ?? null) === $value)
        ));
    }

    public function testJsonMessageBecomesTaskRunByWorker(): void
    {
        $this->startWorker();
        $this->startConsumer();
        $order = ['order_id' => 'FB9', 'status' => 'WAIT_SELLER_SEND_GOODS', 'items' => [['sku' => 'x', 'qty' => 2]], 'tag' => 'json'];
        $this->publish(json_encode($order));

        $rec = $this->waitFor(fn () => $this->consumed('tag', 'json')[0] ?? null, 10, 'the JSON message in the callback');
        $this->assertSame(self::KEY, $rec['key']);
        $this->assertSame('array', $rec['type'], 'a JSON body arrives decoded');
        $this->assertSame($order, $rec['msg']);

        $cb = $this->waitFor(
            fn () => array_values(array_filter($this->records('cb'), static fn ($r) => $r['taskname'] === 'orderAsync'))[0] ?? null,
            10,
            'the worker running orderAsync'
        );
        $this->assertSame('demo', $cb['topic']);
        $this->assertSame($order, $cb['params'], 'the task gets the message as its params');
        $this->assertSame(Worker::STATE_SUCC, $cb['status']);
        $this->assertSame($order, $this->runs('json')[0]['params']);

        $this->waitQueueDrained(self::queue(), 10);
        $this->waitQueueDrained(static::q('task.demo'), 10);
        $this->assertCount(1, $this->consumed('tag', 'json'));
        $this->assertQueueEmpty(self::failedQueue());
    }

    /**
     * A Consumer whose own consuming connection is refused (a vhost allowing one connection) consumes on the
     * connection it already has, says so in its log, and loses nothing: a message published once the limit is
     * lifted reaches its callback.
     */
    public function testAConsumerRefusedAConnectionOfItsOwnConsumesOnTheSharedOne(): void
    {
        $vhost = TestEnv::vhost() . '_one_conn';
        TestEnv::rabbitmqctl(['add_vhost', $vhost]);
        try {
            TestEnv::rabbitmqctl(['set_permissions', '-p', $vhost, 'guest', '.*', '.*', '.*']);
            TestEnv::rabbitmqctl(['set_vhost_limits', '-p', $vhost, '{"max-connections": 1}']);
            $proc = $this->startFixture('consumer', 'consumer.php', [
                'EBATS_AMQP_URL' => TestEnv::amqpUrl($vhost),
                'EBATS_T_EXCHANGE' => self::exchange(),
                'EBATS_T_QUEUE' => self::queue(),
                'EBATS_T_KEYS' => json_encode(['*.*.WAIT_SELLER_SEND_GOODS']),
            ]);
            $consumers = static fn (): string => TestEnv::rabbitmqctl(['list_consumers', '-q', '--no-table-headers', '-p', $vhost, 'queue_name']);
            $this->waitFor(static fn () => str_contains($consumers(), self::queue()) ? true : null, 20, 'the consumer registered');
            $this->waitFor(static fn () => str_contains($proc->stdout() . $proc->stderr(), 'consuming on the shared connection') ? true : null, 10, 'the fallback logged');
            $this->assertMatchesRegularExpression('/NOT_ALLOWED|connection limit/i', $proc->stdout() . $proc->stderr());
            $conns = TestEnv::rabbitmqctl(['list_connections', '-q', '--no-table-headers', 'vhost']);
            $this->assertSame(1, substr_count($conns, $vhost . "\n"), 'one connection in the limited vhost');

            TestEnv::rabbitmqctl(['clear_vhost_limits', '-p', $vhost]);
            $limited = new Broker(TestEnv::HOST, TestEnv::PORT, TestEnv::USER, TestEnv::PASS, $vhost);
            $limited->publish(self::exchange(), self::KEY, json_encode(['tag' => 'limited']));
            $limited->close();
            $this->waitFor(fn () => $this->consumed('tag', 'limited')[0] ?? null, 10, 'the message in the callback');
            $this->waitFor(fn () => $this->records('task_created')[0] ?? null, 10, 'the task the callback made');
            $proc->signal(SIGTERM);
            $this->assertSame(0, $proc->waitExit(10), $proc->describe());
        } finally {
            TestEnv::rabbitmqctl(['delete_vhost', $vhost]);
        }
    }

    public function testJsonWithContentTypeAndPlainTextBodies(): void
    {
        $this->startConsumer();
        $this->publish(json_encode(['tag' => 'typed', 'n' => 1]), self::KEY, ['content_type' => 'application/json']);
        $this->publish('plain text, not JSON {', 'x.y.WAIT_SELLER_SEND_GOODS');

        $this->waitFor(fn () => count($this->consumed()) >= 2 ? true : null, 10, 'both messages in the callback');
        [$json, $text] = $this->consumed();
        $this->assertSame('array', $json['type']);
        $this->assertSame(['tag' => 'typed', 'n' => 1], $json['msg']);
        $this->assertSame('string', $text['type'], 'a body that is not JSON arrives as a string');
        $this->assertSame('plain text, not JSON {', $text['msg']);
        $this->assertSame('x.y.WAIT_SELLER_SEND_GOODS', $text['key']);
        $this->waitQueueDrained(self::queue(), 10);
    }

    public function testThrowingCallbackMovesMessageToFailedQueue(): void
    {
        $consumer = $this->startConsumer();
        $body = json_encode(['throw' => 'cannot handle FB10', 'tag' => 'bad']);
        $this->publish($body);

        $this->waitFor(fn () => $this->consumed('tag', 'bad') !== [] ? true : null, 10, 'the failing message in the callback');
        $failed = $this->expectMessage(self::failedQueue(), 10);
        [$raw, $props] = $failed;
        $this->assertSame($body, $raw, 'the failed queue keeps the original body');
        $headers = $props['headers'];
        $this->assertIsArray($headers);
        $this->assertArrayHasKey('x-ebats-error', $headers, 'headers: ' . json_encode($headers));
        $this->assertStringContainsString('cannot handle FB10', (string) $headers['x-ebats-error']);
        $this->assertQueueEmpty(self::failedQueue(), 'one failure gives one message');

        $this->waitQueueDrained(self::queue(), 10);
        $this->publish(json_encode(['tag' => 'good-after']));
        $this->waitFor(fn () => $this->consumed('tag', 'good-after') !== [] ? true : null, 10, 'the consumer goes on after a failure');
        $this->assertCount(1, $this->consumed('tag', 'bad'), 'the failed message was not redelivered');
        $this->assertFalse($consumer->hasExited(), $consumer->describe());
    }

    public function testServiceExceptionRequeuesAfterPause(): void
    {
        $flag = $this->tmp . '/service.flag';
        $this->startConsumer();
        $this->publish(json_encode(['service_flag' => $flag, 'tag' => 'svc']));

        $recs = $this->waitFor(fn () => count($r = $this->consumed('tag', 'svc')) >= 2 ? $r : null, 10, 'the message delivered again');
        $this->assertGreaterThanOrEqual(0.8, $recs[1]['t'] - $recs[0]['t'], 'redelivered before the pause');
        $this->waitFor(fn () => array_filter($this->records('task_created')) !== [] ? true : null, 5, 'task created on the second delivery');
        $this->waitQueueDrained(self::queue(), 10);
        $this->assertCount(2, $this->consumed('tag', 'svc'));
        $this->assertQueueEmpty(self::failedQueue(), 'a ServiceException does not fail the message');
    }

    public function testNonMatchingRoutingKeyDoesNotArrive(): void
    {
        $this->startConsumer();
        $this->publish(json_encode(['tag' => 'other-status']), 'a.b.WAIT_BUYER_PAY');
        $this->publish(json_encode(['tag' => 'too-short']), 'WAIT_SELLER_SEND_GOODS');
        $this->publish(json_encode(['tag' => 'too-long']), 'a.b.c.WAIT_SELLER_SEND_GOODS');
        $this->publish(json_encode(['tag' => 'match']));

        // Routed in order: once the matching message (published last) has arrived, the others would have too.
        $this->waitFor(fn () => $this->consumed('tag', 'match') !== [] ? true : null, 10, 'the matching message');
        $this->waitQueueDrained(self::queue(), 10);
        $tags = array_map(static fn ($r) => $r['msg']['tag'], $this->consumed());
        $this->assertSame(['match'], $tags);
    }
}
