<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\FailedStore;
use Asynclib\Ebats\History;
use Asynclib\Ebats\Task;
use Asynclib\Ebats\Worker;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\ProcTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * Exception messages of any size never loop a task or a message. A message's headers must fit one AMQP
 * frame (128 KiB by default; a larger one makes the broker close the connection, so the message is never
 * acked and comes back): every header ebats writes is at most 4096 bytes, cut and marked beyond that; the
 * failed store's body keeps the message whole up to 1 MiB; a history record keeps 4096 bytes of it.
 *
 * Worker: tests/fixtures/process/worker.php, whose bigTask throws a TaskException of $params['bytes'] bytes.
 * Consumer: tests/fixtures/consumer.php, whose callback throws a message of $msg['throw_bytes'] bytes.
 */
final class OversizeMessageTest extends ProcTestCase
{
    private const HEADER_MAX = 4096;
    private const BODY_MAX = 1048576;
    private const HISTORY_MAX = 4096;

    protected function setUp(): void
    {
        parent::setUp();
        TestEnv::setEnv('EBATS_HISTORY', null);
    }

    public static function sizes(): array
    {
        return ['1 MiB' => [1 << 20], '20 MiB' => [20 << 20]];
    }

    /** @return list<array> records of $kind whose field $key is $value */
    private function recordsWith(string $kind, string $key, mixed $value): array
    {
        return array_values(array_filter($this->records($kind), static fn (array $r): bool => ($r[$key] ?? null) === $value));
    }

    private static function cutMarker(int $bytes): string
    {
        return " ... [cut: $bytes bytes in all]";
    }

    /**
     * A task whose handler throws a message of $bytes: it runs once, goes to the failed store once (the body keeps
     * the message, whole up to 1 MiB; the header its start), the 5 tasks behind it run, the history record of the
     * run is bounded.
     *
     * @dataProvider sizes
     */
    public function testTaskThrowingAHugeMessageGoesToTheFailedStoreOnce(int $bytes): void
    {
        $worker = $this->startFixture('worker', 'process/worker.php', ['EBATS_P_PROCS' => '1', 'EBATS_HISTORY' => '1']);
        $this->waitConsumers(static::q('task.demo'), 1, 30, [$worker]);
        $big = Task::create('demo', 'big', ['n' => 'big', 'bytes' => $bytes]);
        $after = [];
        for ($i = 0; $i < 5; $i++) {
            $after[] = Task::create('demo', 'ok', ['n' => "after$i"]);
        }

        $this->waitFor(function () use ($after) {
            foreach ($after as $id) {
                if ($this->recordsWith('done', 'id', $id) === []) {
                    return null;
                }
            }
            return true;
        }, 60, 'the 5 tasks queued behind the one that throws a huge message');
        $entry = $this->waitFor(static function () use ($big) {
            foreach (FailedStore::list('demo') as $e) {
                if ($e['id'] === $big) {
                    return $e;
                }
            }
            return null;
        }, 20, 'the task in the failed store');
        $this->waitQueueDrained(static::q('task.demo'), 20);
        $this->assertStays(fn () => count($this->recordsWith('start', 'id', $big)) > 1 ? $this->recordsWith('start', 'id', $big) : null, 1.0, 'the task ran again');
        $this->assertCount(1, $this->recordsWith('start', 'id', $big), 'runs of the task');
        $cb = $this->recordsWith('cb', 'taskid', $big);
        $this->assertCount(1, $cb, 'callbacks of the task');
        $this->assertSame(Worker::STATE_FAIL, $cb[0]['status']);
        $this->assertSame($bytes, $cb[0]['message_len'], 'the callback is told the whole message');

        // The body: the whole message up to 1 MiB, else its start and the marker.
        $message = $entry['failed']['message'];
        if ($bytes <= self::BODY_MAX) {
            $this->assertSame(str_repeat('e', $bytes), $message, 'the failed store keeps the whole message');
        } else {
            $this->assertLessThanOrEqual(self::BODY_MAX, strlen($message));
            $this->assertStringEndsWith(self::cutMarker($bytes), $message);
            $this->assertStringStartsWith(str_repeat('e', self::BODY_MAX - 100), $message);
        }
        $this->assertCount(1, FailedStore::list('demo'), 'one entry');

        // The header: the start of the message, marked, within the bound.
        [$raw, $props] = $this->expectMessage(static::q('failed.demo'), 5);
        $header = (string) ($props['headers']['x-ebats-error'] ?? '');
        $this->assertLessThanOrEqual(self::HEADER_MAX, strlen($header));
        $this->assertStringEndsWith(self::cutMarker($bytes), $header);
        $this->assertStringStartsWith(str_repeat('e', self::HEADER_MAX - 100), $header);
        $this->assertSame($message, self::body($raw)['failed']['message']);

        // The history record of the run.
        TestEnv::setEnv('EBATS_HISTORY', '1');
        $records = $this->waitFor(static fn () => History::read(['id' => $big]) ?: null, 20, 'the history record of the task');
        $this->assertCount(1, $records);
        $this->assertSame('fail', $records[0]['outcome']);
        $this->assertLessThanOrEqual(self::HISTORY_MAX, strlen($records[0]['message']));
        $this->assertStringEndsWith(self::cutMarker($bytes), $records[0]['message']);
        $this->assertFalse($worker->hasExited(), $worker->describe());
    }

    /**
     * A Consumer callback throwing a message of $bytes: the message goes to the Consumer's failed queue once,
     * with the exception message's start in its header, and the 5 messages behind it are handled.
     *
     * @dataProvider sizes
     */
    public function testConsumerCallbackThrowingAHugeMessageFailsTheMessageOnce(int $bytes): void
    {
        $exchange = static::prefix() . '_big_topic';
        $queue = static::prefix() . '_big';
        $failedQueue = static::q('failed.consumer.' . $queue);
        $consumer = $this->startFixture('consumer', 'consumer.php', [
            'EBATS_T_EXCHANGE' => $exchange,
            'EBATS_T_QUEUE' => $queue,
            'EBATS_T_KEYS' => json_encode(['k.#']),
        ]);
        $this->waitConsumers($queue, 1, 20, [$consumer], true);
        $bad = json_encode(['throw_bytes' => $bytes, 'tag' => 'big']);
        $this->broker->publish($exchange, 'k.big', $bad);
        for ($i = 0; $i < 5; $i++) {
            $this->broker->publish($exchange, 'k.ok', json_encode(['tag' => "after$i"]));
        }

        $tags = fn (): array => array_map(static fn (array $r) => $r['msg']['tag'] ?? null, $this->records('consumed'));
        $this->waitFor(fn () => count($this->records('task_created')) >= 5 ? true : null, 60, 'the 5 messages behind the one whose callback throws');
        $this->waitQueueDrained($queue, 20);
        [$raw, $props] = $this->expectMessage($failedQueue, 10);
        $this->assertSame($bad, $raw, 'the failed queue keeps the message as it came');
        $header = (string) ($props['headers']['x-ebats-error'] ?? '');
        $this->assertLessThanOrEqual(self::HEADER_MAX, strlen($header));
        $this->assertStringEndsWith(self::cutMarker($bytes), $header);
        $this->assertStringStartsWith(str_repeat('c', self::HEADER_MAX - 100), $header);
        $this->assertSame('RuntimeException', $props['headers']['x-ebats-error-class'] ?? null);
        $this->assertQueueEmpty($failedQueue, 'one failure gives one message');
        $this->assertStays(fn () => count(array_keys($tags(), 'big', true)) > 1 ? $tags() : null, 1.0, 'the message came back to the callback');
        $this->assertSame(['big', 'after0', 'after1', 'after2', 'after3', 'after4'], $tags(), 'each message handled once');
        $this->assertFalse($consumer->hasExited(), $consumer->describe());
    }
}
