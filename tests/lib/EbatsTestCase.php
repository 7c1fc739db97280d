<?php

declare(strict_types=1);

namespace Ebats\Tests\Lib;

use PHPUnit\Framework\TestCase;

/**
 * Base class: each test class gets its own name prefix (EBATS_PREFIX=t_<random>), so no test sees another
 * class's messages; the queues under that prefix are purged after each test and deleted after the class.
 */
abstract class EbatsTestCase extends TestCase
{
    /** @var array<class-string,string> */
    private static array $prefixes = [];

    /** Set to false in classes that never touch the broker (no clean-up needed). */
    protected const USES_BROKER = true;

    protected Broker $broker;

    protected static function prefix(): string
    {
        return self::$prefixes[static::class] ??= 't_' . bin2hex(random_bytes(3));
    }

    protected function setUp(): void
    {
        parent::setUp();
        if (!extension_loaded('ebats')) {
            $this->fail('the ebats extension is not loaded in the test process');
        }
        TestEnv::setEnv('EBATS_PREFIX', static::prefix());
        TestEnv::setEnv('EBATS_AMQP_URL', TestEnv::amqpUrl());
        $this->broker = TestEnv::broker();
    }

    protected function tearDown(): void
    {
        if (static::USES_BROKER) {
            // A stream cannot be purged: it is deleted (the schedules of one test are not the next one's).
            $streams = TestEnv::listStreams(static::prefix());
            foreach (array_keys(TestEnv::listQueues(static::prefix())) as $queue) {
                if (in_array($queue, $streams, true)) {
                    TestEnv::broker()->deleteQueue($queue);
                } else {
                    TestEnv::broker()->purgeQueue($queue);
                }
            }
        }
        parent::tearDown();
    }

    public static function tearDownAfterClass(): void
    {
        if (static::USES_BROKER && isset(self::$prefixes[static::class])) {
            $broker = TestEnv::broker();
            foreach (array_keys(TestEnv::listQueues(static::prefix())) as $queue) {
                $broker->deleteQueue($queue);
            }
            foreach (array_keys(TestEnv::listExchanges(static::prefix())) as $exchange) {
                try {
                    $broker->deleteExchange($exchange);
                } catch (\AMQPException $e) {
                    // already gone
                }
            }
        }
        parent::tearDownAfterClass();
    }

    /** Full broker name under this class's prefix, e.g. q('events') = 't_ab12cd.events'. */
    protected static function q(string $name): string
    {
        return static::prefix() . '.' . $name;
    }

    /** Environment for a child process: the test vhost and this class's prefix, other EBATS_* settings removed. */
    protected static function childEnv(array $overrides = []): array
    {
        return array_merge([
            'EBATS_AMQP_URL' => TestEnv::amqpUrl(),
            'EBATS_PREFIX' => static::prefix(),
            'EBATS_CONNECT_TIMEOUT' => null,
            'EBATS_HEARTBEAT' => null,
            'EBATS_CONFIRM_TIMEOUT' => null,
            'EBATS_DEBUG' => null,
            'EBATS_HISTORY' => null,
            'EBATS_HISTORY_MAX_AGE' => null,
            'EBATS_HISTORY_MAX_BYTES' => null,
            'EBATS_HISTORY_PARAMS_BYTES' => null,
        ], $overrides);
    }

    /** What $call throws, or null when it returns. */
    protected static function thrown(callable $call): ?\Throwable
    {
        try {
            $call();
        } catch (\Throwable $e) {
            return $e;
        }
        return null;
    }

    protected static function assertId(mixed $id, string $what = 'id'): void
    {
        self::assertIsString($id, "$what is not a string");
        self::assertMatchesRegularExpression('/^[0-9a-f]{32}$/', $id, "$what is not 32 lowercase hex chars");
    }

    /** Decodes a message body as JSON objects-to-arrays; fails the test when it is not JSON. */
    protected static function body(string $raw): array
    {
        $decoded = json_decode($raw, true);
        self::assertIsArray($decoded, 'message body is not a JSON object: ' . $raw);
        return $decoded;
    }

    /** Takes the next message of $queue, failing with the queue's state when nothing arrives in $timeout s. */
    protected function expectMessage(string $queue, float $timeout = 5.0): array
    {
        $message = $this->broker->waitMessage($queue, $timeout);
        if ($message === null) {
            $this->fail("no message in queue $queue within {$timeout} s; queues now: " . json_encode(TestEnv::listQueues(static::prefix())));
        }
        return $message;
    }

    /** Asserts that $queue holds no ready message (a queue that does not exist holds none either). */
    protected function assertQueueEmpty(string $queue, string $message = ''): void
    {
        $count = $this->broker->count($queue);
        $this->assertTrue($count === null || $count === 0, ($message !== '' ? "$message: " : '') . "queue $queue holds $count message(s)");
    }
}
