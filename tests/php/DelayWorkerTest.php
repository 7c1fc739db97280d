<?php

declare(strict_types=1);

namespace Ebats\Tests;


use Asynclib\Ebats\Event;
use Asynclib\Ebats\Task;
use Asynclib\Ebats\Worker;
use Ebats\Tests\Lib\ProcTestCase;

/**
 * Delayed tasks as a worker sees them: when they run, across a worker restart, and through the scheduler.
 * (DelayTest covers the arrival of delayed messages in the ready queue without a worker.)
 */
final class DelayWorkerTest extends ProcTestCase
{
    public function testShortDelayAfterLongDelayRunsFirstAndOnTime(): void
    {
        $this->startWorker();
        $long = Task::create('demo', 'ok', ['tag' => 'long'], 30);
        $t0 = microtime(true);
        $short = Task::create('demo', 'ok', ['tag' => 'short'], 1);

        [$cb] = $this->waitCallbacks($short, 1, 10, 'the 1 s task');
        $at = $cb['t'] - $t0;
        $this->assertGreaterThanOrEqual(0.9, $at, 'the 1 s task ran too early');
        $this->assertLessThanOrEqual(3.0, $at, 'the 1 s task ran too late');
        $this->assertSame(Worker::STATE_SUCC, $cb['status']);
        $this->assertSame([], $this->runs('long'), 'the 30 s task ran before its time');
        $this->assertSame([], $this->callbacks($long));
        $this->assertCount(1, $this->runs('short'));
    }

    public function testDelayedTaskSurvivesWorkerRestart(): void
    {
        $first = $this->startWorker(['name' => 'worker-1']);
        $t0 = microtime(true);
        $id = Task::create('demo', 'ok', ['tag' => 'restart'], 4);

        $first->signal(SIGTERM);
        $this->assertSame(0, $first->waitExit(15), "first worker did not exit 0 on SIGTERM\n" . $first->describe());
        $this->assertLessThan(3.5, microtime(true) - $t0, 'the first worker took too long to stop for this test to mean anything');
        $this->assertSame([], $this->callbacks($id));

        $this->startWorker(['name' => 'worker-2']);
        [$cb] = $this->waitCallbacks($id, 1, 15, 'the delayed task after the restart');
        $at = $cb['t'] - $t0;
        $this->assertGreaterThanOrEqual(3.9, $at, 'the 4 s task ran too early');
        $this->assertLessThanOrEqual(6.5, $at, 'the 4 s task ran too late');
        $this->assertSame(Worker::STATE_SUCC, $cb['status']);
        $this->assertSame(1, $cb['attempt']);
        $this->waitQueueDrained(static::q('task.demo'), 10);
        $this->assertStays(fn () => count($this->runs('restart')) > 1, 1.0, 'the delayed task ran twice');
    }

    public function testRegisteredDelayThroughScheduler(): void
    {
        $this->startWorker();
        $this->startScheduler([['e_later', 'ok', 'demo', 2], ['e_now', 'ok', 'demo', 0]]);
        $t0 = microtime(true);
        (new Event('e_later'))->setOptions(['tag' => 'later'])->publish();
        (new Event('e_now'))->setOptions(['tag' => 'now'])->publish();

        $now = $this->waitFor(fn () => $this->runs('now')[0] ?? null, 10, 'the undelayed task');
        $later = $this->waitFor(fn () => $this->runs('later')[0] ?? null, 10, 'the task delayed 2 s');
        $this->assertLessThan(1.5, $now['t'] - $t0, 'the undelayed task waited');
        $this->assertGreaterThanOrEqual(2.0, $later['t'] - $t0, 'the delayed task ran too early');
        $this->assertLessThanOrEqual(5.0, $later['t'] - $t0, 'the delayed task ran too late');
        $this->assertSame(['tag' => 'later'], $later['params']);
        // The callback's record is written after the run's: wait for it too.
        $cbs = $this->waitFor(
            fn () => array_values(array_filter($this->records('cb'), static fn ($r) => $r['params'] === ['tag' => 'later'])) ?: null,
            10,
            "the delayed task's callback"
        );
        $this->assertCount(1, $cbs);
        $this->assertSame(Worker::STATE_SUCC, $cbs[0]['status']);
    }
}
