<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\FailedStore;
use Asynclib\Ebats\Task;
use Asynclib\Exception\TaskException;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\ProcTestCase;

/**
 * The task-id rule (1 to 128 printable ASCII characters without spaces) and the poison bound: a task whose
 * handler kills its process runs the bound's number of times (5), then goes to the failed store, whatever the
 * length of its id within the rule; a task whose id breaks the rule is kept in the failed store as it came,
 * with the reason, and never runs.
 *
 * Tasks are published with php-amqp, as another producer would; the handlers of
 * tests/fixtures/process/worker.php record each start with the id the worker gave them.
 */
final class TaskIdRuleTest extends ProcTestCase
{
    private function startProcessWorker(int $procs): Process
    {
        $proc = $this->startFixture('worker', 'process/worker.php', ['EBATS_P_PROCS' => (string) $procs]);
        $this->waitConsumers(static::q('task.demo'), $procs, 30, [$proc]);
        return $proc;
    }

    /** Publishes a task body of topic demo to the ready exchange, as a foreign producer would. */
    private function publishTask(array $body, string $messageId): void
    {
        $this->broker->publish(static::q('task.ready'), 'demo', json_encode($body + ['topic' => 'demo']), [
            'message_id' => $messageId, 'content_type' => 'application/json', 'delivery_mode' => 2,
        ]);
    }

    /** @return list<array> handler starts of task $id */
    private function starts(string $id): array
    {
        return array_values(array_filter($this->records('start'), static fn (array $r): bool => ($r['id'] ?? null) === $id));
    }

    /** @return array<string,array> failed-store entries of demo by id */
    private static function failedById(): array
    {
        $out = [];
        foreach (FailedStore::list('demo') as $entry) {
            $out[$entry['id']] = $entry;
        }
        return $out;
    }

    public function testPoisonBoundHoldsForIdsOfEveryAcceptedLength(): void
    {
        $ids = [
            1 => 'x',
            32 => bin2hex(random_bytes(16)),
            36 => '9b2e7c1d-3f4a-4b5c-8d6e-' . bin2hex(random_bytes(6)),
            128 => 'o:' . str_repeat('0123456789', 12) . '/try#1',
        ];
        foreach ($ids as $len => $id) {
            $this->assertSame($len, strlen($id));
        }
        // One child, as in ProcessModelTest: with two, a task given back by a dying child can reach the other one
        // before the parent has marked it, and that run is not counted (at most one run more).
        $worker = $this->startProcessWorker(1);
        foreach ($ids as $len => $id) {
            $this->publishTask(['id' => $id, 'name' => 'exit', 'params' => ['n' => "len$len"]], $id);
        }

        $entries = $this->waitFor(function () use ($ids) {
            $e = self::failedById();
            return count(array_intersect_key($e, array_flip($ids))) === count($ids) ? $e : null;
        }, 150, 'the four poison tasks in the failed store of demo');
        $this->waitQueueDrained(static::q('task.demo'), 20);

        foreach ($ids as $len => $id) {
            $entry = $entries[$id];
            $this->assertArrayNotHasKey('unreadable', $entry, "id of $len characters");
            $this->assertStringContainsString('died running it 5 times', $entry['failed']['message'], "id of $len characters");
            $this->assertSame(5, $entry['failed']['attempts'], "id of $len characters: each death was a run");
            $this->assertCount(5, $this->starts($id), "id of $len characters: runs before the failed store");
        }
        $this->assertCount(count($ids), FailedStore::list('demo'), 'one entry per poison task');
        $this->assertStays(function () use ($ids) {
            foreach ($ids as $len => $id) {
                if (count($this->starts($id)) > 5) {
                    return "id of $len characters ran again";
                }
            }
            return null;
        }, 1.0, 'a poison task ran again after it went to the failed store');

        // The worker still takes work.
        $ok = Task::create('demo', 'ok', ['n' => 'after']);
        $this->waitFor(fn () => $this->starts($ok) !== [] ? true : null, 20, 'a normal task after the poison ones');
        $this->assertFalse($worker->hasExited(), $worker->describe());
    }

    public function testReplayRefusesAnIdOutsideTheRule(): void
    {
        foreach ([str_repeat('i', 129), 'has space', "a\nb", ''] as $id) {
            $e = self::thrown(static fn () => FailedStore::replay('demo', $id));
            $this->assertInstanceOf(TaskException::class, $e, json_encode($id));
            $this->assertStringContainsString('1 to 128 printable ASCII characters', $e->getMessage());
        }
        $this->assertSame(0, FailedStore::replay('demo', '9b2e7c1d-3f4a-4b5c-8d6e-0f1a2b3c4d5e'), 'a valid id that is not there');
    }

    public function testIdsOutsideTheRuleAreKeptWithTheReasonAndNeverRun(): void
    {
        $this->startProcessWorker(1);
        // message_id => [body id, what the reason says]
        $bad = [
            'bad-too-long' => [str_repeat('i', 129), "id 'iiii"],
            'bad-space' => ['has space', "id 'has space' is invalid"],
            'bad-control' => ["a\nb", "id 'a\\nb' is invalid"],
            'bad-number' => [42, "'id' must be a string, got 42"],
            'bad-empty' => ['', "id '' is invalid"],
        ];
        foreach ($bad as $messageId => [$id, $reason]) {
            $this->publishTask(['id' => $id, 'name' => 'ok', 'params' => ['n' => $messageId]], $messageId);
        }
        // Behind them on the same queue: once it ran, the worker has been through all of them.
        $good = Task::create('demo', 'ok', ['n' => 'after-bad']);
        $this->waitFor(fn () => $this->starts($good) !== [] ? true : null, 20, 'the good task after the bad ones');
        $entries = $this->waitFor(fn () => count($e = self::failedById()) >= count($bad) ? $e : null, 10, 'the bad bodies in the failed store');

        $this->assertEqualsCanonicalizing(array_keys($bad), array_keys($entries), 'each kept under the message id it came with');
        foreach ($bad as $messageId => [$id, $reason]) {
            $entry = $entries[$messageId];
            $this->assertTrue($entry['unreadable'], $messageId);
            $this->assertStringContainsString($reason, $entry['failed']['message'], $messageId);
            $this->assertSame(json_encode(['id' => $id, 'name' => 'ok', 'params' => ['n' => $messageId], 'topic' => 'demo']), $entry['body'], "$messageId: kept as it came");
        }
        $ran = array_column($this->records('start'), 'n');
        $this->assertSame(['after-bad'], $ran, 'no body with a bad id ran');
    }
}
