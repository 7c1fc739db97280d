<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\Batch;
use Asynclib\Ebats\Event;
use Asynclib\Ebats\FailedStore;
use Asynclib\Ebats\Task;
use Asynclib\Ebats\Worker;
use Asynclib\Exception\TaskException;
use Ebats\Tests\Lib\ProcTestCase;

/**
 * Unique tasks: while a task holding a key waits or runs (retries included), no other task with that key is
 * made, on every path (Task::create, Batch, deferred publishes, events through the Scheduler, failed-store
 * replay); the key is released when the task ends for good, and frees itself after its lifetime.
 */
final class UniqueTaskTest extends ProcTestCase
{
    private const UNIQUE = ['unique' => 'order:{order}'];

    private static function ready(): int
    {
        return self::queueStats()[static::q('task.demo')]['ready'] ?? 0;
    }

    private static function keyQueueExists(string $key): bool
    {
        return isset(self::queueStats()[static::q("unique.demo.$key")]);
    }

    public function testEveryProducingPathGetsTheHolderWhileTheTaskWaits(): void
    {
        $a = Task::create('demo', 'ok', ['order' => 1, 'tag' => 'a'], 0, self::UNIQUE);
        $this->assertSame($a, Task::create('demo', 'ok', ['order' => 1, 'tag' => 'again'], 0, self::UNIQUE), 'create: the holder');
        $this->assertSame($a, Task::create('demo', 'count', ['order' => 1], 5, self::UNIQUE), 'another name, the same key');
        $ids = (new Batch())
            ->task('demo', 'ok', ['order' => 1], 0, self::UNIQUE)
            ->task('demo', 'ok', ['order' => 2, 'tag' => 'b'], 0, self::UNIQUE)
            ->task('demo', 'ok', ['order' => 2], 0, self::UNIQUE)
            ->publish();
        $this->assertSame($a, $ids[0], 'batch: the holder in the place of the task not made');
        $this->assertNotSame($a, $ids[1]);
        $this->assertSame($ids[1], $ids[2], 'a key taken earlier in the same batch');
        $deferred = (new Batch())->task('demo', 'ok', ['order' => 3, 'tag' => 'c'], 0, self::UNIQUE)->publish(true);
        $this->assertSame(1, ebats_flush());
        $this->assertSame($deferred[0], Task::create('demo', 'ok', ['order' => 3], 0, self::UNIQUE), 'deferred: the key is held');
        $this->assertNotSame($a, Task::create('demo', 'ok', ['order' => 1, 'tag' => 'plain']), 'without the option: made');
        $this->waitFor(fn () => self::ready() === 4 ? true : null, 10, '4 tasks waiting (a, b, c, plain)');

        $this->startWorker();
        foreach (['a', 'b', 'c'] as $tag) {
            $this->waitFor(fn () => count($this->runs($tag)) === 1 ? true : null, 15, "the task $tag run once");
        }
        $this->waitCallbacks($a, 1, 10, 'a done');
        $this->waitFor(fn () => !self::keyQueueExists('order:1') ? true : null, 10, 'the key of a released, its queue gone');
        $next = Task::create('demo', 'ok', ['order' => 1, 'tag' => 'next'], 0, self::UNIQUE);
        $this->assertNotSame($a, $next, 'after its holder succeeded, the key is free');
        $this->waitCallbacks($next, 1, 10, 'the next task of the key');
        $this->assertCount(0, $this->runs('again'));
    }

    public function testARetryKeepsTheKeyAFinalFailureReleasesItAndReplayTakesItAgain(): void
    {
        $this->startWorker();
        $params = ['order' => 7, 'tag' => 'r', 'retry' => 1, 'interval' => 2];
        $r = Task::create('demo', 'retry', $params, 0, self::UNIQUE);
        [$first] = $this->waitCallbacks($r, 1, 10, 'the first run');
        $this->assertSame(Worker::STATE_RETRY, $first['status']);
        $this->assertSame($r, Task::create('demo', 'ok', ['order' => 7], 0, self::UNIQUE), 'held while it waits for its retry');
        $cbs = $this->waitCallbacks($r, 2, 15, 'the final failure');
        $this->assertSame(Worker::STATE_FAIL, $cbs[1]['status']);
        $this->waitFor(fn () => count(FailedStore::list('demo')) === 1 ? true : null, 10, 'the task in the failed store');
        $this->stopAll();

        $b = Task::create('demo', 'ok', ['order' => 7, 'tag' => 'b'], 0, self::UNIQUE);
        $this->assertNotSame($r, $b, 'released by the final failure');
        try {
            FailedStore::replay('demo', $r);
            $this->fail('a replay while another task holds the key');
        } catch (TaskException $e) {
            $this->assertStringContainsString("held by task $b", $e->getMessage());
        }
        $this->assertSame(0, FailedStore::replay('demo'), 'replaying all leaves it too');
        $this->assertCount(1, FailedStore::list('demo'), 'it stays in the store');

        $this->startWorker();
        $this->waitCallbacks($b, 1, 10, 'b done');
        $this->waitFor(fn () => !self::keyQueueExists('order:7') ? true : null, 10, 'the key of b released');
        $this->assertSame(1, FailedStore::replay('demo', $r));
        $this->assertSame($r, Task::create('demo', 'ok', ['order' => 7], 0, self::UNIQUE), 'the replayed task holds the key');
        $this->waitCallbacks($r, 3, 10, 'the replayed run');
    }

    public function testTheSchedulerDropsAnEventsTaskWhoseKeyIsHeld(): void
    {
        $this->startScheduler([['paid', 'ok', 'demo', 0, self::UNIQUE], ['paid', 'count', 'demo', 0]]);
        (new Event('paid'))->setOptions(['order' => 9, 'tag' => 'e1'])->publish();
        $this->waitFor(fn () => self::ready() === 2 ? true : null, 10, 'the two tasks of the first event');
        (new Event('paid'))->setOptions(['order' => 9, 'tag' => 'e2'])->publish();
        (new Event('paid'))->setOptions(['order' => 10, 'tag' => 'e3'])->publish();
        $this->waitFor(fn () => self::ready() === 5 ? true : null, 10, 'the plain task of e2, both of e3');
        $this->assertStays(fn () => self::ready() !== 5, 1.0, 'the unique task of e2 is not made');

        $this->startWorker();
        $this->waitFor(fn () => count($this->runs('e3')) === 2 ? true : null, 15, 'the tasks of e3');
        $this->waitFor(fn () => count($this->runs('e2')) === 1 ? true : null, 15, 'the plain task of e2');
        $this->assertCount(2, $this->runs('e1'));
        $this->waitFor(fn () => !self::keyQueueExists('order:9') ? true : null, 10, 'the key released after the task ran');
        (new Event('paid'))->setOptions(['order' => 9, 'tag' => 'e4'])->publish();
        $this->waitFor(fn () => count($this->runs('e4')) === 2 ? true : null, 15, 'both tasks of e4 once the key is free');
    }

    public function testCronFiringsMakeOneTaskWhileItsKeyIsHeld(): void
    {
        $scheduler = $this->startFixture('cron', 'cron_scheduler.php', [
            'EBATS_T_CRON' => json_encode([['* * * * * *', 'tick', ['order' => 12, 'tag' => 'tick'], ['name' => 'every-second']]]),
            'EBATS_T_REGISTER' => json_encode([['tick', 'ok', 'demo', 0, self::UNIQUE]]),
            'EBATS_DEBUG' => '1',
        ]);
        $this->waitFor(
            fn () => substr_count($scheduler->stderr(), "not made, its unique key 'order:12'") >= 2 ? true : null,
            20,
            'two firings whose task is not made'
        );
        $this->assertSame(1, self::ready(), 'one task made for all the firings');
    }

    public function testAKeyFreesItselfAfterItsLifetime(): void
    {
        $options = ['unique' => 'order:{order}', 'unique_for' => 1];
        $a = Task::create('demo', 'ok', ['order' => 11], 0, $options);
        $this->assertSame($a, Task::create('demo', 'ok', ['order' => 11], 0, $options));
        $b = $this->waitFor(function () use ($a, $options) {
            $id = Task::create('demo', 'ok', ['order' => 11], 0, $options);
            return $id !== $a ? $id : null;
        }, 10, 'the key to free itself', 0.2);
        $this->assertNotSame($a, $b);
    }

    public function testBadOptionsAreRefusedClearly(): void
    {
        $cases = [
            [['unique' => 'a:{'], 'key template'],
            [['uniq' => 'x'], "unknown option 'uniq'"],
            [['unique_for' => 5], "needs 'unique'"],
            [['unique' => 'x', 'unique_for' => 0], 'unique_for'],
            [['unique' => 'order:{missing}'], 'lack a member'],
        ];
        foreach ($cases as [$options, $want]) {
            try {
                Task::create('demo', 'ok', ['order' => 1], 0, $options);
                $this->fail('accepted ' . json_encode($options));
            } catch (TaskException $e) {
                $this->assertStringContainsString($want, $e->getMessage());
            }
        }
        try {
            (new Batch())->task('demo', 'ok', [], 0, ['unique' => 'order:{order}']);
            $this->fail('a batch task without the key\'s member');
        } catch (TaskException $e) {
            $this->assertStringContainsString('lack a member', $e->getMessage());
        }
        $this->assertSame(0, self::ready());
    }
}
