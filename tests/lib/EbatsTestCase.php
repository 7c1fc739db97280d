<?php

declare(strict_types=1);

namespace Ebats\Tests\Lib;

use PHPUnit\Framework\TestCase;

/**
 * Base class: each test gets its own name prefix (EBATS_PREFIX=t_<class>_<n>: the class's random stem and the
 * test's number), so no test sees another's messages, queues, streams or exchanges; everything under the
 * class's stem is deleted after the class. Nothing is listed between two tests: a listing is a `rabbitmqctl`
 * run (about a second), and a purge after each test cost the suite some ten minutes.
 */
abstract class EbatsTestCase extends TestCase
{
    /** @var array<class-string,string> the class's stem, t_<random> */
    private static array $stems = [];

    /** @var array<class-string,string> the prefix of the test running (or about to run) */
    private static array $prefixes = [];

    /** @var array<class-string,int> how many prefixes the class has used */
    private static array $tests = [];

    /** Set to false in classes that never touch the broker (no clean-up needed). */
    protected const USES_BROKER = true;

    protected Broker $broker;

    /** The class's stem: every prefix of its tests starts with it. */
    protected static function stem(): string
    {
        return self::$stems[static::class] ??= 't_' . bin2hex(random_bytes(3));
    }

    /** This test's prefix; a test starts with a new one (see tearDown). */
    protected static function prefix(): string
    {
        if (!isset(self::$prefixes[static::class])) {
            $n = self::$tests[static::class] = (self::$tests[static::class] ?? 0) + 1;
            self::$prefixes[static::class] = static::stem() . '_' . $n;
        }
        return self::$prefixes[static::class];
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
        // The next test names everything anew; what this one left stays until the class ends.
        unset(self::$prefixes[static::class]);
        parent::tearDown();
    }

    public static function tearDownAfterClass(): void
    {
        if (static::USES_BROKER && isset(self::$stems[static::class])) {
            $broker = TestEnv::broker();
            foreach (array_keys(TestEnv::listQueues(static::stem() . '_')) as $queue) {
                $broker->deleteQueue($queue);
            }
            foreach (array_keys(TestEnv::listExchanges(static::stem() . '_')) as $exchange) {
                try {
                    $broker->deleteExchange($exchange);
                } catch (\AMQPException $e) {
                    // already gone
                }
            }
        }
        parent::tearDownAfterClass();
    }

    /** Full broker name under this test's prefix, e.g. q('events') = 't_ab12cd_3.events'. */
    protected static function q(string $name): string
    {
        return static::prefix() . '.' . $name;
    }

    /** Environment for a child process: the test vhost and this test's prefix, other EBATS_* settings removed. */
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
