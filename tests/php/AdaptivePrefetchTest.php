<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\Task;
use Ebats\Tests\Lib\ProcTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * The worker's prefetch when setPrefetch() is not called: it grows on short tasks, falls back to 1 on a
 * long one, and a task never waits in a busy child's buffer while another child is idle.
 */
final class AdaptivePrefetchTest extends ProcTestCase
{
    private const CHILDREN = 4;

    public function testLongTasksNeverWaitBehindABusyChild(): void
    {
        $this->startWorker(['procs' => self::CHILDREN, 'debug' => false]);
        // One task of 3 s, then 1 s ones: spread round-robin over buffers, the fifth would wait 3 s in
        // the first child's buffer while the others run out of work after 2 s.
        $ms = [3000, 1000, 1000, 1000, 1000, 1000, 1000, 1000];
        foreach ($ms as $i => $m) {
            Task::create('demo', 'slow', ['ms' => $m, 'tag' => 'long', 'i' => $i]);
        }
        $published = microtime(true);
        $runs = $this->waitRuns('long', count($ms), 30);

        $this->assertNoWaitWhileAChildIdles($runs, $published);
        $this->assertCount(self::CHILDREN, array_unique(array_column($runs, 'pid')), 'every child ran some');
    }

    public function testLongTasksAfterShortOnesGoBackToIdleChildren(): void
    {
        $this->startWorker(['procs' => self::CHILDREN, 'debug' => false]);
        $short = 600;
        for ($i = 0; $i < $short; $i++) {
            Task::create('demo', 'ok', ['tag' => 'short', 'i' => $i]);
        }
        $long = 2 * self::CHILDREN;
        for ($i = 0; $i < $long; $i++) {
            Task::create('demo', 'slow', ['ms' => 1000, 'tag' => 'long', 'i' => $i]);
        }
        $runs = $this->waitRuns('long', $long, 60);
        $this->waitQueueDrained(static::q('task.demo'), 20);

        // Every child went back to 1 on its first long task (what its buffer held went back to the queue).
        $this->assertSame(array_fill(0, self::CHILDREN, 1), $this->prefetches(), 'prefetch back to 1: ' . json_encode($this->byChild($runs)));
        $this->assertSame(range(0, $short - 1), $this->ranIndexes('short'), 'every short task ran exactly once');
        $this->assertSame(range(0, $long - 1), $this->ranIndexes('long'), 'every long task ran exactly once');
    }

    public function testShortTasksRaiseThePrefetchAndSetPrefetchFixesIt(): void
    {
        $adaptive = $this->startWorker(['name' => 'adaptive', 'debug' => false]);
        for ($i = 0; $i < 50; $i++) {
            Task::create('demo', 'ok', ['tag' => 'short', 'i' => $i]);
        }
        $this->waitRuns('short', 50, 30);
        // How far it grows depends on the machine (20 ms of tasks, at most 100): more than 1.
        $grown = $this->waitFor(fn () => ($p = $this->prefetches()) !== [] && $p[0] > 1 ? $p : null, 10, 'the consumer past prefetch 1');
        $this->assertCount(1, $grown);
        $this->assertLessThanOrEqual(100, $grown[0]);
        $this->assertSame(range(0, 49), $this->ranIndexes('short'), 'every task ran exactly once across the change');
        $adaptive->stop();
        $this->waitConsumers(static::q('task.demo'), 0, 20, [], true);

        $this->startWorker(['name' => 'fixed', 'prefetch' => 3, 'debug' => false]);
        for ($i = 0; $i < 50; $i++) {
            Task::create('demo', 'ok', ['tag' => 'fixed', 'i' => $i]);
        }
        $this->waitRuns('fixed', 50, 30);
        $this->assertSame([3], $this->prefetches(), 'setPrefetch(3) is kept');
    }

    /**
     * For each run that started later than $slack after the tasks were published: until shortly before it
     * started, every child was busy with another task (a run lasts its params' ms).
     *
     * @param list<array<string,mixed>> $runs
     */
    private function assertNoWaitWhileAChildIdles(array $runs, float $published): void
    {
        $slack = 0.25;
        foreach ($runs as $run) {
            for ($t = $published + $slack; $t < $run['t'] - $slack; $t += 0.05) {
                $busy = [];
                foreach ($runs as $other) {
                    if ($other['t'] - $slack <= $t && $t <= $other['t'] + $other['params']['ms'] / 1000 + $slack) {
                        $busy[$other['pid']] = true;
                    }
                }
                $this->assertCount(
                    self::CHILDREN,
                    $busy,
                    sprintf('task %d waited at +%.2f s while a child was idle: %s', $run['params']['i'], $t - $published, json_encode($this->byChild($runs)))
                );
            }
        }
    }

    /** @return list<array<string,mixed>> */
    private function waitRuns(string $tag, int $n, float $timeout): array
    {
        return $this->waitFor(fn () => count($runs = $this->runs($tag)) >= $n ? $runs : null, $timeout, "$n runs of '$tag'", 0.1);
    }

    /** @param list<array<string,mixed>> $runs @return array<int,list<string>> start times by child, for messages */
    private function byChild(array $runs): array
    {
        $out = [];
        foreach ($runs as $r) {
            $out[$r['pid']][] = sprintf('%d@%.2f', $r['params']['i'], $r['t']);
        }
        return $out;
    }

    /** @return list<int> the prefetch of each consumer of the demo task queue */
    private function prefetches(): array
    {
        $out = TestEnv::rabbitmqctl(['list_consumers', '-q', '--no-table-headers', '-p', TestEnv::vhost(), 'queue_name', 'prefetch_count']);
        $p = [];
        foreach (explode("\n", $out) as $line) {
            $f = explode("\t", trim($line));
            if (count($f) === 2 && $f[0] === static::q('task.demo')) {
                $p[] = (int) $f[1];
            }
        }
        sort($p);
        return $p;
    }
}
