<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\FailedStore;
use Asynclib\Ebats\Task;
use Asynclib\Ebats\Worker;
use Asynclib\Exception\TaskException;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\ProcTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * Bodies nobody can run are kept, not run and not dropped: a worker runs only tasks of its own topic (the
 * queue's, never the body's), and keeps anything else in the failed store of its topic with the reason; the
 * scheduler keeps unreadable events in the store FailedStore::EVENTS. Such entries are listed and purged,
 * never replayed. A task that kills its process every time is listed with the runs it had.
 */
final class UnreadableMessagesTest extends ProcTestCase
{
    /** body => what the reason must say */
    private const BAD_TASKS = [
        '{"topic":"other","name":"x","params":{"tag":"other"}}' => "names the topic 'other', not this worker's topic 'demo'",
        '{"topic":"Foo\\\\Bar","name":"x"}' => "topic 'Foo\\\\Bar' is invalid",
        '{"topic":"a.b#","name":"x"}' => "topic 'a.b#' is invalid",
        '{"topic":"../../x","name":"x"}' => "topic '../../x' is invalid",
        '{"topic":"demo","name":"ok;evil"}' => "task name 'ok;evil' is invalid",
        'not json {' => 'task body is not JSON',
        '[1,2]' => 'task body is not a JSON object',
    ];

    private function cli(array $args): Process
    {
        return Process::run(array_merge(TestEnv::phpCommand(), [TestEnv::repoRoot() . '/php/bin/ebats'], $args), static::childEnv(), 30);
    }

    /** @return array<string,array> entries of a store by id */
    private static function byId(string $store): array
    {
        $out = [];
        foreach (FailedStore::list($store) as $entry) {
            $out[$entry['id']] = $entry;
        }
        return $out;
    }

    public function testWorkerRunsOnlyTasksOfItsOwnTopicAndKeepsTheRest(): void
    {
        $this->startWorker();
        $ids = [];
        $i = 0;
        foreach (self::BAD_TASKS as $body => $reason) {
            $ids[$body] = sprintf('bad%029d', $i++);
            $this->broker->publish(static::q('task.ready'), 'demo', $body, ['message_id' => $ids[$body], 'content_type' => 'application/json']);
        }
        // Published behind them on the same queue: once it ran, the worker has been through all of them.
        $good = Task::create('demo', 'ok', ['tag' => 'after-bad']);
        $this->waitCallbacks($good, 1, 20, 'the good task after the bad ones');
        $t = microtime(true);
        $entries = $this->waitFor(fn () => count($e = self::byId('demo')) >= count(self::BAD_TASKS) ? $e : null, 10, 'the bad bodies in the failed store of demo');

        $this->assertEqualsCanonicalizing(array_values($ids), array_keys($entries), 'each kept under the id it came with');
        foreach (self::BAD_TASKS as $body => $reason) {
            $entry = $entries[$ids[$body]];
            $this->assertTrue($entry['unreadable'], $body);
            $this->assertSame('demo', $entry['topic'], "$body is filed under the worker's topic");
            $this->assertSame($body, $entry['body'], 'kept as it came');
            $this->assertStringContainsString($reason, $entry['failed']['message'], $body);
            $this->assertEqualsWithDelta($t, $entry['failed']['failed_at'], 30.0, "$body: a real failed-at time");
        }
        $this->assertSame([], $this->runs('other'), 'TaskOtherModel never ran');
        $this->assertSame([], array_values(array_filter($this->records('cb'), static fn (array $r): bool => $r['taskid'] !== $good)), 'no callback for a body that was not run');
        $asked = array_column($this->records('autoload'), 'class');
        foreach ($asked as $class) {
            $this->assertStringNotContainsString('Foo', $class, 'no class named by a body reached the autoloader');
        }
        foreach (array_keys(TestEnv::listQueues(static::prefix())) as $queue) {
            foreach (['other', 'a.b', '../', 'Foo', 'unknown'] as $word) {
                $this->assertStringNotContainsString($word, $queue, 'no queue is named from a body');
            }
        }

        // Replay never sends them anywhere: refused by id, left alone by "all".
        $e = self::thrown(static fn () => FailedStore::replay('demo', $ids['{"topic":"other","name":"x","params":{"tag":"other"}}']));
        $this->assertInstanceOf(TaskException::class, $e);
        $this->assertStringContainsString('cannot be replayed', $e->getMessage());
        $this->assertSame(0, FailedStore::replay('demo'));
        $this->assertCount(count(self::BAD_TASKS), FailedStore::list('demo'), 'all of them stay in the store');
        $replay = $this->cli(['failed:replay', 'demo', '--all']);
        $this->assertSame(0, $replay->exitCode(), $replay->describe());
        $this->assertStringContainsString(count(self::BAD_TASKS) . ' unreadable entries stay in the store', $replay->stdout());
        $this->assertCount(count(self::BAD_TASKS), FailedStore::list('demo'));
        $this->assertSame([], $this->runs('other'));
        foreach (array_keys(TestEnv::listQueues(static::prefix())) as $queue) {
            $this->assertStringNotContainsString('other', $queue, 'replay created no queue from a body');
        }
        $this->assertSame(count(self::BAD_TASKS), FailedStore::purge('demo'));
    }

    public function testTaskKillingItsProcessIsListedWithItsRuns(): void
    {
        $this->startWorker();
        $id = Task::create('demo', 'dieAlways', ['tag' => 'die-5']);
        $entry = $this->waitFor(fn () => self::byId('demo')[$id] ?? null, 60, 'the killer task in the failed store');
        $this->assertCount(5, $this->runs('die-5'), 'it ran five times');
        $this->assertSame(5, $entry['failed']['attempts'], 'each death was a run');
        $this->assertSame(5, $entry['redeliveries']);
        $this->assertStringContainsString('died running it 5 times', $entry['failed']['message']);
        $this->assertEqualsWithDelta(microtime(true), $entry['failed']['failed_at'], 60.0);
        $this->assertArrayNotHasKey('unreadable', $entry, 'a real task, replayable');
    }

    public function testSchedulerKeepsUnreadableEvents(): void
    {
        $this->startScheduler([['order_paied', 'virtualShipping', 'demo', 0]]);
        $bad = [
            'not json {' => 'event body is not JSON',
            '"just a string"' => 'event body is not a JSON object',
            '{"event":"a\nb"}' => "event name 'a\\nb' is invalid",
            '{"params":[]}' => "no string field 'event'",
        ];
        foreach (array_keys($bad) as $body) {
            $this->broker->publish(static::q('core.event'), 'x', $body, ['content_type' => 'application/json']);
        }
        (new \Asynclib\Ebats\Event('order_paied'))->publish();
        $this->expectMessage(static::q('task.demo'), 10);
        $entries = $this->waitFor(fn () => count($l = FailedStore::list(FailedStore::EVENTS)) >= count($bad) ? $l : null, 10, 'the unreadable events in their store');
        $this->assertCount(count($bad), $entries);
        $this->assertSame(array_keys($bad), array_column($entries, 'body'), 'kept as they came, in order');
        foreach ($entries as $entry) {
            self::assertId($entry['id']);
            $this->assertTrue($entry['unreadable']);
            $this->assertStringContainsString($bad[$entry['body']], $entry['failed']['message']);
            $this->assertEqualsWithDelta(microtime(true), $entry['failed']['failed_at'], 30.0);
        }
        $this->assertSame(count($bad), $this->broker->count(static::q('events.unreadable')), 'the store is the queue P.events.unreadable');
        $this->assertQueueEmpty(static::q('events'), 'the events queue is left empty');

        $e = self::thrown(static fn () => FailedStore::replay(FailedStore::EVENTS));
        $this->assertInstanceOf(TaskException::class, $e);
        $this->assertStringContainsString('unreadable events cannot be replayed', $e->getMessage());

        $list = $this->cli(['failed:list', '--events']);
        $this->assertSame(0, $list->exitCode(), $list->describe());
        foreach ($entries as $entry) {
            $this->assertStringContainsString($entry['id'], $list->stdout());
        }
        $replay = $this->cli(['failed:replay', '--events', '--all']);
        $this->assertSame(2, $replay->exitCode(), $replay->describe());
        $this->assertStringContainsString('cannot be replayed', $replay->stderr());
        $purge = $this->cli(['failed:purge', '--events']);
        $this->assertSame(0, $purge->exitCode(), $purge->describe());
        $this->assertStringContainsString(count($bad) . ' failed entries of the unreadable events deleted', $purge->stdout());
        $this->assertSame([], FailedStore::list(FailedStore::EVENTS));
        $this->assertSame([], FailedStore::list('demo'), 'nothing of it in a topic store');
    }
}
