<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\FailedStore;
use Asynclib\Ebats\Task;
use Ebats\Tests\Lib\OnQuorumQueues;
use Ebats\Tests\Lib\ProcTestCase;

/**
 * The adaptive prefetch on quorum queues, where the broker counts every return of a message
 * (`x-delivery-count`) and that count is the poison count: the tasks a child gives back when its prefetch
 * falls (a long task after short ones), or when it is recycled or stopped, were never started: giving them back
 * must not count as a death. Nor may the tasks a child held when a poison task killed it, which the broker
 * returns and counts with it.
 */
final class AdaptivePrefetchQuorumTest extends ProcTestCase
{
    use OnQuorumQueues;

    public function testTasksGivenBackWhenThePrefetchFallsAreNotCountedAsDeaths(): void
    {
        // Rounds of short tasks (the prefetch grows past 1 after 8 of them) each followed by a long one
        // (it falls back to 1 and the buffer goes back to the queue): the tasks queued last are given
        // back once a round, more often than the 5 deaths that make a task poison.
        $rounds = 8;
        $i = 0;
        for ($r = 0; $r < $rounds; $r++) {
            for ($k = 0; $k < 10; $k++) {
                Task::create('demo', 'ok', ['tag' => 'gb', 'i' => $i++]);
            }
            Task::create('demo', 'slow', ['ms' => 40, 'tag' => 'gb', 'i' => $i++]);
        }
        for ($k = 0; $k < 30; $k++) {
            Task::create('demo', 'ok', ['tag' => 'gb', 'i' => $i++]);
        }
        $this->startWorker(['debug' => true]);
        $this->assertEveryTaskRanOnce('gb', $i, 60);
    }

    public function testTasksBufferedByARecycledChildAreNotCountedAsDeaths(): void
    {
        // Each child takes 20 tasks and leaves after 3: what its buffer held goes back to the queue, and
        // the tasks at the end of the queue go back more often than 5 times.
        $n = 60;
        for ($i = 0; $i < $n; $i++) {
            Task::create('demo', 'ok', ['tag' => 'rc', 'i' => $i]);
        }
        $this->startWorker(['prefetch' => 20, 'max_requests' => 3, 'debug' => true]);
        $this->assertEveryTaskRanOnce('rc', $n, 90);
    }

    public function testTasksBufferedByAStoppedWorkerAreNotCountedAsDeaths(): void
    {
        // A worker holding 20 tasks of 200 ms is stopped (SIGTERM) six times while it runs the first.
        $n = 30;
        for ($i = 0; $i < $n; $i++) {
            Task::create('demo', 'slow', ['ms' => 200, 'tag' => 'st', 'i' => $i]);
        }
        for ($k = 0; $k < 6; $k++) {
            $before = count($this->runs('st'));
            $w = $this->startWorker(['name' => "worker-$k", 'prefetch' => 20, 'debug' => true], false);
            $this->waitFor(fn () => count($this->runs('st')) > $before, 20, "a task started under worker $k");
            $this->assertSame(0, $w->stop(20.0), $w->describe());
        }
        $this->startWorker(['name' => 'worker-last', 'debug' => true]);
        $this->assertEveryTaskRanOnce('st', $n, 60);
    }

    public function testTasksBufferedBesideAPoisonTaskAreNotCountedAsDeaths(): void
    {
        // At prefetch 10 a child holds the poison task and the 9 queued behind it. Each time the poison task
        // kills it, the broker takes all 10 back and counts a delivery of each, the 9 that never started too.
        $poison = Task::create('demo', 'segv', ['n' => 'poison']);
        $ok = [];
        for ($i = 0; $i < 9; $i++) {
            $ok[] = Task::create('demo', 'ok', ['n' => "ok$i"]);
        }
        $worker = $this->startFixture('worker', 'process/worker.php', ['EBATS_P_PREFETCH' => '10', 'EBATS_DEBUG' => '1']);
        $done = fn (): array => array_values(array_unique(array_column($this->records('done'), 'id')));
        $failed = fn (): array => array_column(FailedStore::list('demo'), 'id');
        $this->waitFor(
            fn () => (in_array($poison, $failed(), true) && count($done()) >= 9) || count($failed()) > 1,
            60,
            'the poison task failed and the 9 others ran'
        );
        $this->assertSame([$poison], $failed(), "only the poison task is in the failed store\n" . $worker->describe());
        $this->assertEqualsCanonicalizing($ok, $done(), 'each task behind it ran');
        $this->assertCount(9, $this->records('done'), 'once');
        $starts = array_filter($this->records('start'), static fn (array $r): bool => $r['id'] === $poison);
        $this->assertCount(5, $starts, 'the poison task ran 5 times, each time killing its process');
    }

    /** Waits until each of the $n tasks tagged $tag ran or one is in the failed store; then none may be there. */
    private function assertEveryTaskRanOnce(string $tag, int $n, float $timeout): void
    {
        $failed = static::q('failed.demo');
        $this->waitFor(
            fn () => count(array_unique($this->ranIndexes($tag))) >= $n
                || ($this->broker->count($failed) ?? 0) > 0,
            $timeout,
            "$n tasks run, or one failed"
        );
        $this->assertQueueEmpty($failed, "no task was failed as poison\n" . $this->diagnostics());
        $this->waitQueueDrained(static::q('task.demo'), 20);
        $this->assertSame(range(0, $n - 1), $this->ranIndexes($tag), 'every task ran exactly once');
    }
}
