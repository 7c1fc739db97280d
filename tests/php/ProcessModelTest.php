<?php

declare(strict_types=1);

namespace Ebats\Tests;


use Asynclib\Ebats\FailedStore;
use Asynclib\Ebats\Task;
use Asynclib\Ebats\Worker;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\ProcTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * The worker as a set of processes: children killed mid-task (kill -9, exit(), segfault), SIGTERM and SIGHUP
 * to the parent, recycling after N tasks or past a memory limit, task time limits, the grace period, and a
 * handler that runs far longer than the heartbeat.
 *
 * Everything asserted is observed from outside the extension: the handlers and the callback of
 * tests/fixtures/process/worker.php append JSON lines (kind start / done / cb, with pid and time) to the record
 * file; the broker is read through rabbitmqctl and php-amqp; the processes through /proc.
 */
final class ProcessModelTest extends ProcTestCase
{
    private const TIMEOUT_MESSAGE = 'time limit of 2 s exceeded: the task was stopped';

    // ---- helpers ---------------------------------------------------------------------------------------------

    /** Starts tests/fixtures/process/worker.php with the given EBATS_P_* settings and waits for its consumers. */
    private function startProcessWorker(array $opts = [], string $name = 'worker', bool $waitReady = true): Process
    {
        $procs = $opts['procs'] ?? 1;
        $env = [
            'EBATS_P_PROCS' => (string) $procs,
            'EBATS_P_MAX_REQUESTS' => isset($opts['max_requests']) ? (string) $opts['max_requests'] : null,
            'EBATS_P_MEMORY_LIMIT' => isset($opts['memory_limit']) ? (string) $opts['memory_limit'] : null,
            'EBATS_P_TIME_LIMIT' => isset($opts['time_limit']) ? (string) $opts['time_limit'] : null,
            'EBATS_P_GRACE' => isset($opts['grace']) ? (string) $opts['grace'] : null,
            'EBATS_P_RETRY_INTERVALS' => isset($opts['retry_intervals']) ? json_encode($opts['retry_intervals']) : null,
            'EBATS_P_PREFETCH' => isset($opts['prefetch']) ? (string) $opts['prefetch'] : null,
        ];
        $proc = $this->startFixture($name, 'process/worker.php', array_merge($env, $opts['env'] ?? []));
        if ($waitReady) {
            $this->waitConsumers(static::q('task.demo'), $procs, 30, [$proc]);
        }
        return $proc;
    }

    private static function alive(int $pid): bool
    {
        $stat = @file_get_contents("/proc/$pid/stat");
        return is_string($stat) && substr($stat, strrpos($stat, ')') + 2, 1) !== 'Z';
    }

    /** Records of $kind, optionally only those of task $id (field id, or taskid for callbacks). */
    private function recs(string $kind, ?string $id = null): array
    {
        $all = $this->records($kind);
        if ($id === null) {
            return $all;
        }
        $key = $kind === 'cb' ? 'taskid' : 'id';
        return array_values(array_filter($all, static fn (array $r): bool => ($r[$key] ?? null) === $id));
    }

    /** Task ids with at least one 'done' record. @return array<string,true> */
    private function doneIds(): array
    {
        $ids = [];
        foreach ($this->records('done') as $r) {
            $ids[(string) $r['id']] = true;
        }
        return $ids;
    }

    /** Waits until every id of $ids has a 'done' record. */
    private function waitAllDone(array $ids, float $timeout, string $what): void
    {
        $this->waitFor(function () use ($ids) {
            $done = $this->doneIds();
            foreach ($ids as $id) {
                if (!isset($done[$id])) {
                    return false;
                }
            }
            return true;
        }, $timeout, $what);
    }

    /** The failed-store entry of $id, waiting for it to be there. */
    private function failedEntry(string $id, float $timeout): array
    {
        return $this->waitFor(static function () use ($id) {
            foreach (FailedStore::list('demo') as $entry) {
                if (($entry['id'] ?? null) === $id) {
                    return $entry;
                }
            }
            return null;
        }, $timeout, "task $id in the failed store of demo");
    }

    /** Creates an 'ok' task and waits for its successful run; proves the worker still takes work. */
    private function assertWorkerStillRuns(Process $worker, float $timeout = 20): void
    {
        $this->assertFalse($worker->hasExited(), "the worker parent exited\n" . $worker->describe());
        $id = Task::create('demo', 'ok', ['n' => 'after']);
        $cb = $this->waitFor(fn () => $this->recs('cb', $id)[0] ?? null, $timeout, "a normal task ($id) run by the worker afterwards");
        $this->assertSame(Worker::STATE_SUCC, $cb['status'], 'the normal task after the incident did not succeed');
        $this->assertCount(1, $this->recs('done', $id));
        $this->assertFalse($worker->hasExited(), "the worker parent exited\n" . $worker->describe());
    }

    // ---- tests -----------------------------------------------------------------------------------------------

    /**
     * 500 short tasks, 2 processes, a random child killed with SIGKILL about every 0.5 s for about 5 s: every task
     * completes, the ones killed mid-task run again as redeliveries, nothing is lost or left in a queue.
     */
    public function testKillNineMidTaskRunsTheTaskAgainAndLosesNothing(): void
    {
        $ids = [];
        for ($i = 0; $i < 500; $i++) {
            $ids[Task::create('demo', 'work', ['n' => $i, 'ms' => random_int(5, 20)])] = $i;
        }
        $worker = $this->startProcessWorker(['procs' => 2]);

        $kills = []; // pid => time of the kill
        $end = microtime(true) + 5.0;
        while (microtime(true) < $end && count($this->doneIds()) < 500) {
            usleep(500000);
            $kids = $worker->childPids();
            if ($kids === []) {
                continue;
            }
            $pid = $kids[array_rand($kids)];
            if (posix_kill($pid, SIGKILL)) {
                $kills[$pid] = microtime(true);
            }
        }
        $this->assertNotEmpty($kills, 'no child was killed');

        $this->waitAllDone(array_keys($ids), 90, 'every one of the 500 tasks completed at least once');
        $this->waitQueueDrained(static::q('task.demo'), 20);
        $this->assertSame([], FailedStore::list('demo'), 'a task went to the failed store');
        $this->assertFalse($worker->hasExited(), "the worker parent exited\n" . $worker->describe());

        // A start record of a killed child with no done record of the same task in that child: killed mid-task.
        $starts = $this->records('start');
        $doneBy = [];
        foreach ($this->records('done') as $r) {
            $doneBy[$r['id'] . '/' . $r['pid']] = true;
        }
        $midTask = [];
        foreach ($starts as $s) {
            if (isset($kills[$s['pid']]) && !isset($doneBy[$s['id'] . '/' . $s['pid']])) {
                $midTask[] = $s;
            }
        }
        $this->assertNotEmpty($midTask, 'no kill landed in the middle of a task: the test showed nothing; kills: ' . json_encode($kills));
        foreach ($midTask as $s) {
            $later = array_values(array_filter(
                $starts,
                static fn (array $r): bool => $r['id'] === $s['id'] && $r['t'] > $kills[$s['pid']] && $r['redeliveries'] > 0
            ));
            $this->assertNotEmpty(
                $later,
                "task {$s['id']} (n={$s['n']}) was killed mid-task in child {$s['pid']} but has no later run with redeliveries > 0\n"
                . json_encode($this->recs('start', $s['id']))
            );
            // Worker::currentTask(): "redelivered is true when an earlier run of this task died unsettled".
            $this->assertTrue(
                $later[0]['redelivered'],
                "task {$s['id']} died mid-task in child {$s['pid']}; its next run has redeliveries {$later[0]['redeliveries']} but redelivered false\n"
                . json_encode($this->recs('start', $s['id']))
            );
        }
        // The parent saw and logged each kill.
        $stderr = $worker->stderr();
        foreach (array_keys($kills) as $pid) {
            $this->assertMatchesRegularExpression("/worker child $pid .*SIGKILL/", $stderr, "the parent did not log the death of child $pid");
        }
        $this->waitFor(fn () => count($worker->childPids()) === 2, 15, 'the worker back at 2 children');
    }

    /**
     * SIGTERM to the parent while a child runs a 5 s task: the task completes and is acked, the parent exits 0, and
     * a worker started afterwards does not get the task again.
     */
    public function testSigtermToParentLetsTheTaskInHandFinish(): void
    {
        $worker = $this->startProcessWorker();
        $id = Task::create('demo', 'sleep', ['s' => 5]);
        $start = $this->waitFor(fn () => $this->recs('start', $id)[0] ?? null, 15, 'the 5 s task started');

        $worker->signal(SIGTERM);
        $tTerm = microtime(true);
        $code = $worker->waitExit(25);
        $tExit = microtime(true);
        $this->assertSame(0, $code, "the parent did not exit 0 after SIGTERM\n" . $worker->describe());

        $done = $this->recs('done', $id);
        $this->assertCount(1, $done, "the task in hand did not finish\n" . $this->diagnostics());
        $this->assertGreaterThanOrEqual($start['t'] + 4.9, $done[0]['t'], 'the task was cut short');
        $this->assertLessThan($done[0]['t'], $tTerm, 'SIGTERM was sent after the task finished: the test showed nothing');
        $this->assertGreaterThanOrEqual($done[0]['t'], $tExit, 'the parent exited before the task finished');
        $cbs = $this->recs('cb', $id);
        $this->assertCount(1, $cbs, 'callbacks of the task');
        $this->assertSame(Worker::STATE_SUCC, $cbs[0]['status']);
        $this->assertSame('ok.', $cbs[0]['message']);
        $this->assertSame([], $worker->childPids(), 'children left behind');

        // Acked: nothing ready or unacked, and a new worker does not run it again.
        $stats = self::queueStats()[static::q('task.demo')] ?? null;
        $this->assertSame(['ready' => 0, 'unacked' => 0], $stats === null ? null : ['ready' => $stats['ready'], 'unacked' => $stats['unacked']]);
        $this->startProcessWorker([], 'worker-2');
        $this->assertStays(fn () => count($this->recs('start', $id)) > 1 ? $this->recs('start', $id) : null, 2.0, 'the task ran again in the second worker');
        $this->assertQueueEmpty(static::q('task.demo'));
    }

    /**
     * SIGHUP while tasks keep flowing: every child is replaced, one at a time, no task is lost, the parent stays.
     */
    public function testSighupRecyclesEveryChildWhileTasksFlow(): void
    {
        $worker = $this->startProcessWorker(['procs' => 2]);
        $original = $this->waitFor(fn () => count($k = $worker->childPids()) === 2 ? $k : null, 10, 'two children');
        $producer = $this->startFixture('producer', 'process/producer.php', [], ['300', '6', 'work', '20']);

        // Both original children have run tasks before the HUP.
        $this->waitFor(function () use ($original) {
            $pids = array_unique(array_column($this->records('start'), 'pid'));
            return array_diff($original, $pids) === [];
        }, 20, 'both original children running tasks');
        $worker->signal(SIGHUP);
        $tHup = microtime(true);

        // Watch the children until the stream has ended and both original children are gone.
        $minChildren = PHP_INT_MAX;
        $tGone = null;
        // Sampled often: the fewest children seen while the originals are replaced is what is asserted.
        Process::until(function () use ($worker, $original, $producer, &$minChildren, &$tGone): bool {
            $kids = $worker->childPids();
            $minChildren = min($minChildren, count($kids));
            if ($tGone === null && array_intersect($original, $kids) === [] && !self::alive($original[0]) && !self::alive($original[1])) {
                $tGone = microtime(true);
            }
            return $tGone !== null && $producer->hasExited();
        }, 40, 0.01);
        $this->assertNotNull($tGone, "the original children were not both replaced after SIGHUP\n" . $this->diagnostics());
        $this->assertSame(0, $producer->waitExit(30), "producer failed\n" . $producer->describe());
        $published = json_decode(trim($producer->stdout()), true);
        $this->assertSame(300, $published['published'] ?? null, 'producer output: ' . $producer->stdout());

        $this->waitAllDone(array_keys($published['ids']), 60, 'every one of the 300 streamed tasks completed');
        $this->waitQueueDrained(static::q('task.demo'), 20);
        $this->assertSame([], FailedStore::list('demo'), 'a task went to the failed store');

        $this->assertGreaterThanOrEqual(1, $minChildren, 'at some moment no child was running: not recycled one at a time');
        $this->assertFalse($worker->hasExited(), "the parent exited on SIGHUP\n" . $worker->describe());
        $after = array_values(array_unique(array_column(
            array_filter($this->records('start'), static fn (array $r): bool => $r['t'] > $tGone),
            'pid'
        )));
        $this->assertNotEmpty($after, 'no task ran after the recycling ended (the producer stopped too early for this test)');
        $this->assertSame([], array_values(array_intersect($after, $original)), 'an original child ran tasks after the recycling');
        $current = $worker->childPids();
        $this->assertCount(2, $current, 'the worker is not back at 2 children');
        $this->assertSame([], array_values(array_intersect($current, $original)));
        $this->assertLessThan(30, $tGone - $tHup, 'recycling took too long');
    }

    /** setMaxRequests(10) over 100 tasks with one process: ten children, ten tasks each, each task once. */
    public function testMaxRequestsRecyclesAfterTenTasks(): void
    {
        $ids = [];
        for ($i = 0; $i < 100; $i++) {
            $ids[] = Task::create('demo', 'ok', ['n' => $i]);
        }
        $worker = $this->startProcessWorker(['max_requests' => 10]);
        $this->waitAllDone($ids, 90, 'the 100 tasks completed');
        $this->waitQueueDrained(static::q('task.demo'), 20);
        $this->assertStays(fn () => count($this->records('start')) > 100 ? count($this->records('start')) : null, 1.0, 'a task ran twice');

        $starts = $this->records('start');
        $this->assertCount(100, $starts, 'runs');
        $this->assertCount(100, array_unique(array_column($starts, 'id')), 'distinct tasks run');
        $perPid = array_count_values(array_column($starts, 'pid'));
        $runs = [];
        foreach ($starts as $s) {
            $runs[$s['pid']][] = $s['n'] . ($s['redeliveries'] > 0 ? "(r{$s['redeliveries']})" : '');
        }
        $detail = "\ntasks run by each child (n, (rK) = redeliveries K):\n" . json_encode($runs) . "\n" . $worker->describe(3000);
        $this->assertCount(10, $perPid, 'distinct child pids: ' . json_encode($perPid) . $detail);
        $this->assertSame(array_fill(0, 10, 10), array_values($perPid), 'tasks per child: ' . json_encode($perPid) . $detail);
        $this->assertFalse($worker->hasExited(), "the parent exited\n" . $worker->describe());
        $this->waitFor(fn () => count($worker->childPids()) === 1, 15, 'a fresh child waiting for work');
    }

    /**
     * setMemoryLimit(64): a child that grew past 64 MB by keeping 100 MB is replaced; a lean one is kept. (A fresh
     * child holds some 30 to 40 MB, more on some machines, the parent's pages included: the limit leaves room.)
     */
    public function testMemoryLimitReplacesTheBloatedChild(): void
    {
        $ids = [
            Task::create('demo', 'ok', ['n' => 0]),
            Task::create('demo', 'alloc', ['n' => 1, 'mb' => 100]),
            Task::create('demo', 'ok', ['n' => 2]),
            Task::create('demo', 'ok', ['n' => 3]),
        ];
        $worker = $this->startProcessWorker(['memory_limit' => 64]);
        $this->waitAllDone($ids, 30, 'the 4 tasks completed');
        $this->waitQueueDrained(static::q('task.demo'), 20);
        $this->assertStays(fn () => count($this->records('start')) > 4 ? $this->records('start') : null, 1.0, 'a task ran twice');

        $starts = $this->records('start');
        $byN = array_column($starts, null, 'n');
        ksort($byN);
        $this->assertCount(4, $starts, 'runs: ' . json_encode($starts));
        $this->assertSame([0, 1, 2, 3], array_keys($byN), 'each task once');
        // Tasks 2 and 3 may run in either order (a task prefetched by the recycled child comes back later).
        [$s0, $s1, $s2, $s3] = array_values($byN);
        $this->assertLessThan(64, $s0['rss'], 'a fresh child is already above 64 MB: this test cannot show anything');
        $this->assertGreaterThan(64, $this->recs('done', $ids[1])[0]['rss'], 'the allocation did not raise the resident memory');
        $this->assertSame($s0['pid'], $s1['pid'], 'the child was replaced although it stayed under the limit');
        $this->assertNotSame($s1['pid'], $s2['pid'], 'the child above the memory limit handled the next task');
        $this->assertSame($s2['pid'], $s3['pid'], 'the fresh child was replaced although it stayed under the limit');
        $this->waitFor(fn () => !self::alive($s1['pid']), 10, "the bloated child {$s1['pid']} gone");
        foreach ($ids as $id) {
            $this->assertSame(Worker::STATE_SUCC, $this->recs('cb', $id)[0]['status'] ?? null);
        }
        $this->assertFalse($worker->hasExited(), "the parent exited\n" . $worker->describe());
    }

    /**
     * setTimeLimit(2) on a 10 s task with retry intervals [1, 1]: stopped after about 2 s each time, three runs,
     * then STATE_FAIL and the failed store; the worker goes on.
     */
    public function testTimeLimitStopsTheTaskAndFollowsTheRetryRules(): void
    {
        $worker = $this->startProcessWorker(['time_limit' => 2, 'retry_intervals' => [1, 1]]);
        $id = Task::create('demo', 'sleep', ['s' => 10, 'n' => 'long']);

        $cbs = $this->waitFor(fn () => count($c = $this->recs('cb', $id)) >= 3 ? $c : null, 60, '3 callbacks of the 10 s task');
        $entry = $this->failedEntry($id, 10);
        $this->assertStays(fn () => count($this->recs('start', $id)) > 3 ? $this->recs('start', $id) : null, 2.0, 'the task ran more than 3 times');

        $starts = $this->recs('start', $id);
        $this->assertCount(3, $starts, 'runs');
        $this->assertSame([1, 2, 3], array_column($starts, 'attempt'));
        $this->assertSame([], $this->recs('done', $id), 'a run was not stopped');
        $this->assertCount(3, $cbs);
        $this->assertSame([Worker::STATE_RETRY, Worker::STATE_RETRY, Worker::STATE_FAIL], array_column($cbs, 'status'));
        $this->assertSame([1, 2, 3], array_column($cbs, 'attempt'));
        foreach ($cbs as $i => $cb) {
            $this->assertSame(self::TIMEOUT_MESSAGE, $cb['message'], "callback $i");
            $this->assertSame('sleep', $cb['taskname']);
            $stoppedAfter = $cb['t'] - $starts[$i]['t'];
            $this->assertGreaterThanOrEqual(1.9, $stoppedAfter, "run $i stopped too early");
            $this->assertLessThan(4.0, $stoppedAfter, "run $i not stopped at about 2 s");
            $this->assertEqualsWithDelta(2000, $cb['timeuse'], 1000, "timeuse of run $i");
        }
        // The retries came after about 1 s each.
        for ($i = 1; $i < 3; $i++) {
            $gap = $starts[$i]['t'] - $cbs[$i - 1]['t'];
            $this->assertGreaterThanOrEqual(0.9, $gap, "retry $i came too early");
            $this->assertLessThan(5.0, $gap, "retry $i came too late");
        }
        $this->assertStringContainsString('time limit of 2 s exceeded', $entry['failed']['message']);
        $this->assertSame(3, $entry['failed']['attempts']);
        $this->assertSame(Worker::STATE_FAIL, $entry['failed']['status']);
        $this->assertCount(1, FailedStore::list('demo'));
        $this->assertWorkerStillRuns($worker);
    }

    /** A handler that exit()s on every run ends in the failed store after the redelivery bound. */
    public function testHandlerCallingExitEndsInFailedStore(): void
    {
        $this->assertPoisonTaskEndsInFailedStore('exit');
    }

    /** A handler that segfaults (SIGSEGV to itself) on every run ends in the failed store after the bound. */
    public function testHandlerSegfaultingEndsInFailedStore(): void
    {
        $this->assertPoisonTaskEndsInFailedStore('segv');
    }

    private function assertPoisonTaskEndsInFailedStore(string $name): void
    {
        $worker = $this->startProcessWorker();
        $id = Task::create('demo', $name, ['n' => $name]);
        $entry = $this->failedEntry($id, 40);
        $this->assertStringContainsString('died running it 5 times', $entry['failed']['message']);
        $this->assertSame(5, $entry['failed']['attempts'], 'each death was a run');
        $this->assertCount(1, FailedStore::list('demo'));
        $this->waitQueueDrained(static::q('task.demo'), 10);

        $starts = $this->recs('start', $id);
        $this->assertNotEmpty($starts);
        // Five deliveries, each run and each killing its process; the sixth goes to the failed store unrun.
        $this->assertCount(5, $starts, 'runs of the task: ' . json_encode($starts));
        $this->assertSame([0, 1, 2, 3, 4], array_column($starts, 'redeliveries'), 'redelivery counts seen by the handler');
        $this->assertSame([false, true, true, true, true], array_column($starts, 'redelivered'), 'redelivered flags seen by the handler');
        $this->assertCount(5, array_unique(array_column($starts, 'pid')), 'each run died with its process');
        $this->assertSame([], $this->recs('done', $id));
        $this->assertWorkerStillRuns($worker);
        $this->assertStays(fn () => count($this->recs('start', $id)) > count($starts) ? $this->recs('start', $id) : null, 1.0, 'the task ran again after it went to the failed store');
    }

    /**
     * setGracePeriod(2), then SIGTERM during a 30 s task: the parent exits within about 5 s, its children are
     * gone, the task was not acked and is back in the ready queue.
     */
    public function testGracePeriodKillsBusyChildrenAndLeavesTheTaskUnacked(): void
    {
        $worker = $this->startProcessWorker(['grace' => 2]);
        $id = Task::create('demo', 'sleep', ['s' => 30, 'n' => 'grace']);
        $this->waitFor(fn () => $this->recs('start', $id)[0] ?? null, 15, 'the 30 s task started');
        $kids = $worker->childPids();
        $this->assertCount(1, $kids);

        $tTerm = microtime(true);
        $worker->signal(SIGTERM);
        $code = $worker->waitExit(10);
        $elapsed = microtime(true) - $tTerm;
        $this->assertNotNull($code, "the parent still runs 10 s after SIGTERM with a grace period of 2 s\n" . $worker->describe());
        $this->assertLessThan(5.5, $elapsed, 'the parent took too long to exit');
        $this->assertGreaterThanOrEqual(1.9, $elapsed, 'the parent did not wait the grace period');
        $this->waitFor(fn () => !self::alive($kids[0]), 5, "the busy child {$kids[0]} killed");
        $this->assertSame([], $this->recs('done', $id), 'the task finished: it should have been stopped');
        $this->assertSame([], $this->recs('cb', $id), 'the callback ran for a task that was stopped');

        $this->waitFor(static function () {
            $s = self::queueStats()[static::q('task.demo')] ?? null;
            return $s !== null && $s['ready'] === 1 && $s['unacked'] === 0;
        }, 10, 'the stopped task back in the ready queue (ready 1, unacked 0)', 0.2);
        [$body] = $this->expectMessage(static::q('task.demo'));
        $this->assertSame($id, self::body($body)['id'] ?? null, 'the message back in the queue is not the stopped task');
    }

    /**
     * @group slow
     * A handler running ten heartbeat intervals (20 s with a 2 s heartbeat; the broker drops a connection it hears
     * nothing from for two intervals): the connections stay up (heartbeats on a thread of their own, the consuming
     * connection's TCP keepalive probes), the ack after the handler succeeds, the task runs exactly once.
     */
    public function testAHandlerOfTenHeartbeatIntervalsKeepsItsConnectionAndIsAcked(): void
    {
        $worker = $this->startProcessWorker(['env' => ['EBATS_HEARTBEAT' => '2']]);
        $id = Task::create('demo', 'sleep', ['s' => 20, 'n' => 'long']);
        $start = $this->waitFor(fn () => $this->recs('start', $id)[0] ?? null, 15, 'the 20 s task started');
        // The child's shared connection beats every 2 s; its consuming one asks for no heartbeats (the thread runs
        // the handler) and is kept by TCP keepalive probes at the same interval.
        $child = $worker->childPids()[0] ?? 0;
        $beats = TestEnv::connectionsOf($child, 'timeout');
        $this->assertSame(
            ['2', '0'],
            [$beats["ebats pid $child"] ?? null, $beats["ebats pid $child (consuming)"] ?? null],
            'the heartbeats of the child\'s shared and consuming connections: ' . json_encode($beats)
        );
        $cb = $this->waitFor(fn () => $this->recs('cb', $id)[0] ?? null, 40, 'the callback of the 20 s task');
        $this->assertSame(Worker::STATE_SUCC, $cb['status']);
        $this->assertGreaterThanOrEqual($start['t'] + 19.9, $this->recs('done', $id)[0]['t'] ?? 0.0, 'the handler did not sleep 20 s');

        $this->waitQueueDrained(static::q('task.demo'), 10);
        $this->assertStays(fn () => count($this->recs('start', $id)) > 1 ? $this->recs('start', $id) : null, 3.0, 'the task ran again: the ack was lost');
        $this->assertCount(1, $this->recs('start', $id));
        $this->assertFalse($start['redelivered'], 'the first run was flagged as a redelivery');
        $this->assertSame(1, $worker->hasExited() ? 0 : count($worker->childPids()), "the worker lost its child\n" . $worker->describe());
        $this->assertQueueEmpty(static::q('task.demo'));
    }
}
