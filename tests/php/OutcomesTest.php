<?php

declare(strict_types=1);

namespace Ebats\Tests;


use Asynclib\Ebats\FailedStore;
use Asynclib\Ebats\Task;
use Asynclib\Ebats\Worker;
use Asynclib\Exception\RetryException;
use Asynclib\Exception\ServiceException;
use Asynclib\Exception\TaskException;
use Ebats\Tests\Lib\ProcTestCase;

/**
 * The table "Task outcomes": for each way a handler can end, the callback's arguments, how many times the task
 * runs and when, and whether it ends in the failed store.
 */
final class OutcomesTest extends ProcTestCase
{
    /** Callback records of $id, waiting until $n are there and then checking no more come. */
    private function runsOf(string $id, int $n, float $timeout): array
    {
        $cbs = $this->waitCallbacks($id, $n, $timeout);
        $this->waitQueueDrained(static::q('task.demo'), 10);
        $this->assertCount($n, $this->callbacks($id), "task $id ran more than $n times");
        return $cbs;
    }

    /** The failed-store entry of $id, waiting for it to be there. */
    private function failedEntry(string $id, string $topic = 'demo', float $timeout = 10): array
    {
        return $this->waitFor(static function () use ($id, $topic) {
            foreach (FailedStore::list($topic) as $entry) {
                if (($entry['id'] ?? null) === $id) {
                    return $entry;
                }
            }
            return null;
        }, $timeout, "task $id in the failed store of $topic");
    }

    private static function column(array $cbs, string $key): array
    {
        return array_column($cbs, $key);
    }

    /** Gaps between consecutive callback records, in seconds. */
    private static function gaps(array $cbs): array
    {
        $gaps = [];
        for ($i = 1; $i < count($cbs); $i++) {
            $gaps[] = round($cbs[$i]['t'] - $cbs[$i - 1]['t'], 3);
        }
        return $gaps;
    }

    private function assertGaps(array $cbs, float $min, float $max): void
    {
        foreach (self::gaps($cbs) as $gap) {
            $this->assertGreaterThanOrEqual($min, $gap, 'runs too close: ' . json_encode(self::gaps($cbs)));
            $this->assertLessThan($max, $gap, 'runs too far apart: ' . json_encode(self::gaps($cbs)));
        }
    }

    public function testSuccess(): void
    {
        $this->startWorker();
        $id = Task::create('demo', 'ok', ['tag' => 'succ', 'list' => [1, 2]]);
        [$cb] = $this->runsOf($id, 1, 15);
        $this->assertSame(Worker::STATE_SUCC, $cb['status']);
        $this->assertSame('ok.', $cb['message']);
        $this->assertSame(1, $cb['attempt']);
        $this->assertSame(['tag' => 'succ', 'list' => [1, 2]], $cb['params']);
        $this->assertSame('float', $cb['timeuse_type']);
        $this->assertSame([], FailedStore::list('demo'));
    }

    public function testRetryExceptionWithCountAndInterval(): void
    {
        $this->startWorker();
        $id = Task::create('demo', 'retry', ['tag' => 'r21', 'message' => 'x', 'retry' => 2, 'interval' => 1]);
        $cbs = $this->runsOf($id, 3, 20);
        $this->assertSame([Worker::STATE_RETRY, Worker::STATE_RETRY, Worker::STATE_FAIL], self::column($cbs, 'status'));
        $this->assertSame([1, 2, 3], self::column($cbs, 'attempt'));
        $this->assertSame(['x', 'x', 'x'], self::column($cbs, 'message'));
        $this->assertSame([$id, $id, $id], self::column($cbs, 'taskid'), 'the id stays the same over retries');
        $this->assertSame(array_fill(0, 3, ['tag' => 'r21', 'message' => 'x', 'retry' => 2, 'interval' => 1]), self::column($cbs, 'params'));
        $this->assertGaps($cbs, 0.8, 3.0);

        $entry = $this->failedEntry($id);
        $this->assertSame('retry', $entry['name']);
        $this->assertSame('x', $entry['failed']['message']);
        $this->assertSame(RetryException::class, ltrim($entry['failed']['class'], '\\'));
        $this->assertSame(3, $entry['failed']['attempts']);
        $this->assertSame(Worker::STATE_FAIL, $entry['failed']['status']);
        $this->assertEqualsWithDelta(end($cbs)['t'], $entry['failed']['failed_at'], 2.0);
        $this->assertCount(1, FailedStore::list('demo'), 'one failed-store entry for one task');
    }

    public function testRetryExceptionWithoutArgumentsUsesWorkerIntervals(): void
    {
        $this->startWorker(['retry_intervals' => [1, 1]]);
        $id = Task::create('demo', 'retryDefault', ['tag' => 'rdef']);
        $cbs = $this->runsOf($id, 3, 20);
        $this->assertSame([Worker::STATE_RETRY, Worker::STATE_RETRY, Worker::STATE_FAIL], self::column($cbs, 'status'));
        $this->assertSame([1, 2, 3], self::column($cbs, 'attempt'));
        $this->assertSame(array_fill(0, 3, 'retry with defaults'), self::column($cbs, 'message'));
        $this->assertGaps($cbs, 0.8, 3.0);
        $entry = $this->failedEntry($id);
        $this->assertSame('retry with defaults', $entry['failed']['message']);
        $this->assertSame(3, $entry['failed']['attempts']);
    }

    public function testTaskExceptionFailsAtOnce(): void
    {
        $this->startWorker();
        $id = Task::create('demo', 'fail', ['tag' => 'tex', 'message' => 'order FB2 is broken']);
        [$cb] = $this->runsOf($id, 1, 15);
        $this->assertSame(Worker::STATE_FAIL, $cb['status']);
        $this->assertSame('order FB2 is broken', $cb['message']);
        $this->assertSame(1, $cb['attempt']);

        $entry = $this->failedEntry($id);
        $this->assertSame('order FB2 is broken', $entry['failed']['message']);
        $this->assertSame(TaskException::class, ltrim($entry['failed']['class'], '\\'));
        $this->assertSame(1, $entry['failed']['attempts']);
        $this->assertSame(Worker::STATE_FAIL, $entry['failed']['status']);
        $this->assertSame(['tag' => 'tex', 'message' => 'order FB2 is broken'], $entry['params'], 'the store keeps the params');
        $this->assertSame('demo', $entry['topic']);
        $this->assertIsFloat($entry['failed']['failed_at'] + 0.0);
        $this->assertStays(fn () => count($this->runs('tex')) > 1, 1.5, 'a TaskException is not retried');
    }

    public function testPlainErrorAndExceptionFail(): void
    {
        $this->startWorker();
        $error = Task::create('demo', 'error', ['tag' => 'err']);
        $exception = Task::create('demo', 'exception', ['tag' => 'exc']);
        [$cbError] = $this->runsOf($error, 1, 15);
        [$cbException] = $this->runsOf($exception, 1, 15);
        $this->assertSame(Worker::STATE_FAIL, $cbError['status']);
        $this->assertSame('plain error thrown', $cbError['message']);
        $this->assertSame(Worker::STATE_FAIL, $cbException['status']);
        $this->assertSame('plain exception thrown', $cbException['message']);
        $this->assertSame('Error', ltrim($this->failedEntry($error)['failed']['class'], '\\'));
        $this->assertSame('Exception', ltrim($this->failedEntry($exception)['failed']['class'], '\\'));
        $this->assertStays(fn () => count($this->runs('err')) > 1 || count($this->runs('exc')) > 1, 1.0, 'a Throwable is not retried');
    }

    public function testServiceExceptionIsRetriedAfterPauseThenFails(): void
    {
        $this->startWorker(['service_retry' => [2, 1]]);
        $id = Task::create('demo', 'service', ['tag' => 'svc']);
        $cbs = $this->runsOf($id, 3, 20);
        $this->assertSame([Worker::STATE_ERR, Worker::STATE_ERR, Worker::STATE_FAIL], self::column($cbs, 'status'));
        $this->assertSame(array_fill(0, 3, 'service is down'), self::column($cbs, 'message'));
        $this->assertSame(1, $cbs[0]['attempt']);
        $this->assertGaps($cbs, 0.8, 4.0);
        $entry = $this->failedEntry($id);
        $this->assertSame(ServiceException::class, ltrim($entry['failed']['class'], '\\'));
        $this->assertSame('service is down', $entry['failed']['message']);
        $this->assertStays(fn () => count($this->runs('svc')) > 3, 1.5, 'a ServiceException is retried at most max times');
    }

    public function testMissingMethodFailsAndWorkerGoesOn(): void
    {
        $worker = $this->startWorker();
        $missing = Task::create('demo', 'nosuch', ['tag' => 'nomethod']);
        [$cb] = $this->runsOf($missing, 1, 15);
        $this->assertSame(Worker::STATE_FAIL, $cb['status']);
        $this->assertStringContainsString('TaskDemoModel::nosuchTask()', $cb['message']);
        $entry = $this->failedEntry($missing);
        $this->assertStringContainsString('TaskDemoModel::nosuchTask()', $entry['failed']['message']);

        $good = Task::create('demo', 'ok', ['tag' => 'after-missing']);
        [$cbGood] = $this->runsOf($good, 1, 15);
        $this->assertSame(Worker::STATE_SUCC, $cbGood['status']);
        $this->assertSame($cb['pid'], $cbGood['pid'], 'the same worker process goes on');
        $this->assertFalse($worker->hasExited());
    }

    /** TaskGhostModel is missing until the flag file exists; then its autoloader finds it. */
    public function testMissingClassFailsAndWorkerGoesOn(): void
    {
        $flag = $this->tmp . '/ghost.flag';
        $worker = $this->startWorker(['topic' => 'ghost', 'env' => ['EBATS_T_GHOST_FLAG' => $flag]]);
        $missing = Task::create('ghost', 'ok', ['tag' => 'noclass']);
        [$cb] = $this->waitCallbacks($missing, 1, 15);
        $this->assertSame(Worker::STATE_FAIL, $cb['status']);
        $this->assertStringContainsString('TaskGhostModel', $cb['message']);
        $entry = $this->failedEntry($missing, 'ghost');
        $this->assertStringContainsString('TaskGhostModel', $entry['failed']['message']);
        $this->assertSame([], $this->runs('noclass'));

        touch($flag);
        $good = Task::create('ghost', 'ok', ['tag' => 'class-appeared']);
        [$cbGood] = $this->waitCallbacks($good, 1, 15);
        $this->assertSame(Worker::STATE_SUCC, $cbGood['status'], 'the class is found through the autoloader now');
        $this->assertCount(1, $this->runs('class-appeared'));
        $this->assertSame($cb['pid'], $cbGood['pid'], 'the same worker process goes on');
        $this->assertFalse($worker->hasExited());
        $this->waitQueueDrained(static::q('task.ghost'), 10);
    }

    /** The process dies mid-task: the task is not acked, so it runs again in a new child. */
    public function testProcessKilledMidTaskRunsAgain(): void
    {
        $worker = $this->startWorker();
        $id = Task::create('demo', 'dieOnce', ['tag' => 'die1', 'flag' => $this->tmp . '/die1.flag']);
        [$cb] = $this->waitCallbacks($id, 1, 30, 'the task after its process was killed');
        $runs = $this->runs('die1');
        $this->assertCount(2, $runs, 'one run killed, one run completed');
        $this->assertNotSame($runs[0]['pid'], $runs[1]['pid'], 'the second run is in a new child');
        $this->assertSame(Worker::STATE_SUCC, $cb['status']);
        $this->assertCount(1, $this->callbacks($id), 'no callback for the killed run');
        $this->waitQueueDrained(static::q('task.demo'), 10);
        $this->assertQueueEmpty(static::q('failed.demo'));
        $this->assertFalse($worker->hasExited());
    }

    /** A task that kills every process that runs it ends in the failed store; the worker goes on. */
    public function testTaskKillingItsProcessEveryTimeIsFailedEventually(): void
    {
        $worker = $this->startWorker();
        $id = Task::create('demo', 'dieAlways', ['tag' => 'die-always']);
        $entry = $this->failedEntry($id, 'demo', 60);
        $this->assertStringContainsString('died', $entry['failed']['message']);
        $runs = count($this->runs('die-always'));
        $this->assertGreaterThanOrEqual(2, $runs);
        $this->assertLessThanOrEqual(10, $runs);
        $good = Task::create('demo', 'ok', ['tag' => 'after-deaths']);
        [$cb] = $this->waitCallbacks($good, 1, 30, 'a good task after the killer task');
        $this->assertSame(Worker::STATE_SUCC, $cb['status']);
        $this->assertFalse($worker->hasExited());
    }
}
