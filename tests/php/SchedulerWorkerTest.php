<?php

declare(strict_types=1);

namespace Ebats\Tests;


use Asynclib\Ebats\Event;
use Asynclib\Ebats\Task;
use Asynclib\Ebats\Worker;
use Ebats\Tests\Lib\ProcTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * The seeds/000 flow end to end: producer -> scheduler -> worker -> callback, with real processes and broker.
 */
final class SchedulerWorkerTest extends ProcTestCase
{
    public function testPaidOrderEventRunsVirtualShippingOnce(): void
    {
        $worker = $this->startWorker();
        $this->startScheduler([['order_paied', 'virtualShipping', 'demo', 0]]);

        $t0 = microtime(true);
        $eventId = (new Event('order_paied'))->setOptions(['order_id' => 'FB1'])->publish();
        self::assertId($eventId, 'event id');

        $cb = $this->waitFor(
            fn () => array_values(array_filter($this->records('cb'), static fn ($r) => $r['taskname'] === 'virtualShipping'))[0] ?? null,
            15,
            'callback of virtualShipping'
        );
        self::assertId($cb['taskid'], 'task id');
        $this->assertNotSame($eventId, $cb['taskid'], 'the task has an id of its own');
        $this->assertSame(8, $cb['argc'], 'callback gets 8 arguments');
        $this->assertSame('demo', $cb['topic']);
        $this->assertSame('virtualShipping', $cb['taskname']);
        $this->assertSame(['order_id' => 'FB1'], $cb['params']);
        $this->assertSame('float', $cb['timeuse_type'], 'timeuse is a float');
        $this->assertGreaterThan(0.0, $cb['timeuse'], 'the handler\'s run was measured');
        $this->assertLessThan(5000.0, $cb['timeuse'], 'timeuse is in milliseconds');
        $this->assertSame('ok.', $cb['message']);
        $this->assertSame(Worker::STATE_SUCC, $cb['status']);
        $this->assertSame(1, $cb['attempt']);
        $this->assertLessThan(10, $cb['t'] - $t0);

        $runs = $this->records('run');
        $this->assertCount(1, $runs, 'the handler ran once');
        $this->assertSame(['order_id' => 'FB1'], $runs[0]['params']);
        $this->assertNotSame($worker->pid(), $runs[0]['pid'], 'the task runs in a forked child, not the parent');

        $this->waitQueueDrained(static::q('events'), 10);
        $this->waitQueueDrained(static::q('task.demo'), 10);
        $this->assertStays(fn () => count($this->records('run')) > 1 ? $this->records('run') : null, 1.0, 'the task ran more than once');
    }

    public function testSixParameterCallback(): void
    {
        $this->startWorker(['callback' => 'six']);
        $id = Task::create('demo', 'ok', ['tag' => 'six']);
        $cb = $this->waitCallbacks($id, 1, 15)[0];
        $this->assertSame('six', $cb['cb']);
        $this->assertSame('demo', $cb['topic']);
        $this->assertSame('ok', $cb['taskname']);
        $this->assertSame(['tag' => 'six'], $cb['params']);
        $this->assertSame('float', $cb['timeuse_type']);
        $this->assertSame('ok.', $cb['message']);
        $this->assertCount(1, $this->runs('six'));
        $this->waitQueueDrained(static::q('task.demo'), 10);
    }

    public function testThrowingCallbackChangesNothing(): void
    {
        $worker = $this->startWorker(['callback' => 'throw']);
        $first = Task::create('demo', 'ok', ['tag' => 'first']);
        $this->waitCallbacks($first, 1, 15, 'first task');
        $second = Task::create('demo', 'ok', ['tag' => 'second']);
        $cb = $this->waitCallbacks($second, 1, 15, 'second task after a throwing callback')[0];
        $this->assertSame(Worker::STATE_SUCC, $cb['status']);

        $this->waitQueueDrained(static::q('task.demo'), 10);
        $this->assertStays(
            fn () => count($this->runs('first')) > 1 || count($this->runs('second')) > 1 ? $this->records('run') : null,
            1.5,
            'a task whose callback threw was run again'
        );
        $this->assertCount(1, $this->runs('first'));
        $this->assertCount(1, $this->runs('second'));
        $this->assertCount(1, $this->callbacks($first));
        $this->assertFalse($worker->hasExited(), "worker exited\n" . $worker->describe());
        $this->assertStringContainsString("callback boom for $first", $worker->stderr(), 'the callback exception is logged');
        $this->assertQueueEmpty(static::q('failed.demo'), 'a throwing callback does not fail the task');
    }

    public function testEventWithoutTaskIsAcked(): void
    {
        $scheduler = $this->startScheduler([['order_paied', 'virtualShipping', 'demo', 0]]);
        $id = (new Event('nobody_listens'))->setOptions(['x' => 1])->publish();
        $this->waitFor(fn () => str_contains($scheduler->stderr(), 'nobody_listens'), 10, 'scheduler logs the event without task');
        $this->waitQueueDrained(static::q('events'), 10);
        $this->assertStringContainsString($id, $scheduler->stderr(), 'the log line names the event id');
        $this->assertFalse($scheduler->hasExited(), $scheduler->describe());
    }

    /** Two schedulers, a worker of 2 processes, 1000 events: every task runs exactly once. */
    public function testThousandEventsTwoSchedulersTwoProcesses(): void
    {
        $n = 1000;
        $this->startWorker(['procs' => 2, 'debug' => false]);
        $s1 = $this->startScheduler([['counted', 'count', 'demo', 0]], false, 'scheduler-1');
        $s2 = $this->startScheduler([['counted', 'count', 'demo', 0]], false, 'scheduler-2');
        $this->waitConsumers(static::q('events'), 2, 20, [$s1, $s2], true);

        $t0 = microtime(true);
        $producer = $this->startFixture('producer', 'producer.php', [], ['counted', (string) $n, 'bulk']);
        $code = $producer->waitExit(120);
        $this->assertSame(0, $code, $producer->describe());
        $published = json_decode(trim($producer->stdout()), true);
        $this->assertSame($n, $published['published'] ?? null, $producer->describe());
        $this->assertCount($n, array_unique($published['ids']), 'event ids are unique');

        $this->waitFor(fn () => count($this->records('cb')) >= $n, 180, "$n callbacks", 0.25);
        $elapsed = microtime(true) - $t0;
        $this->waitQueueDrained(static::q('events'), 20);
        $this->waitQueueDrained(static::q('task.demo'), 20);

        $runs = $this->runs('bulk');
        $ns = array_map(static fn ($r) => $r['params']['n'], $runs);
        $dupes = array_keys(array_filter(array_count_values($ns), static fn ($c) => $c > 1));
        $this->assertSame([], $dupes, 'events whose task ran more than once');
        $this->assertCount($n, array_unique($ns), 'distinct events whose task ran');
        $this->assertCount($n, $runs, 'total runs');
        $cbs = $this->records('cb');
        $this->assertCount($n, $cbs, 'total callbacks');
        $this->assertCount($n, array_unique(array_column($cbs, 'taskid')), 'distinct task ids');
        $this->assertSame([Worker::STATE_SUCC], array_values(array_unique(array_column($cbs, 'status'))));
        $this->assertCount(2, array_unique(array_column($runs, 'pid')), 'both worker processes ran tasks');

        $routed1 = substr_count($s1->stderr(), "event 'counted'");
        $routed2 = substr_count($s2->stderr(), "event 'counted'");
        $this->assertSame($n, $routed1 + $routed2, "scheduler debug lines: $routed1 + $routed2");
        $this->assertGreaterThan(0, $routed1, 'scheduler 1 routed events');
        $this->assertGreaterThan(0, $routed2, 'scheduler 2 routed events');
        fwrite(STDERR, sprintf("\n[%s] %d events published in %.1f s, all tasks done in %.1f s\n", __FUNCTION__, $n, $published['seconds'], $elapsed));
    }

    /** SIGTERM: the task in hand finishes and is acked, no new one is taken, the parent exits 0. */
    public function testSigtermFinishesTaskInHandAndExitsZero(): void
    {
        $worker = $this->startWorker();
        $slow = Task::create('demo', 'slow', ['tag' => 'slow1', 'ms' => 1500]);
        $next = Task::create('demo', 'slow', ['tag' => 'slow2', 'ms' => 1500]);
        $this->waitFor(fn () => $this->runs('slow1') !== [], 15, 'slow task started');
        $children = array_diff($worker->groupPids(), [$worker->pid()]);
        $this->assertNotEmpty($children, 'the worker has forked a child');

        $worker->signal(SIGTERM);
        $code = $worker->waitExit(15);
        $this->assertSame(0, $code, "worker parent exit code\n" . $worker->describe());
        $this->assertSame([], array_intersect($worker->groupPids(), $children), 'worker children still alive after the parent exited');

        $cb = $this->callbacks($slow);
        $this->assertCount(1, $cb, 'the task in hand was finished');
        $this->assertSame(Worker::STATE_SUCC, $cb[0]['status']);
        $this->assertCount(1, $this->records('slow_end'));
        $this->assertSame([], $this->runs('slow2'), 'no task is taken after SIGTERM');
        $stats = self::queueStats()[static::q('task.demo')];
        $this->assertSame(['ready' => 1, 'unacked' => 0, 'consumers' => 0], $stats, 'the finished task is acked, the other one waits');
        $this->assertQueueEmpty(static::q('failed.demo'));
        self::assertId($next);
    }

    /**
     * setMaxRequests(1): each child is replaced after one task; every task still runs exactly once, in its own
     * child, and nothing ends in the failed store. (Order is not asserted: the spec does not promise it.)
     */
    public function testChildRecycledAfterMaxRequests(): void
    {
        $worker = $this->startWorker(['max_requests' => 1]);
        $ids = [];
        for ($i = 0; $i < 5; $i++) {
            $ids[] = Task::create('demo', 'ok', ['tag' => 'recycle', 'i' => $i]);
        }
        $this->waitFor(
            fn () => count($this->records('cb')) >= 5 || ($this->broker->count(static::q('failed.demo')) ?? 0) > 0,
            20,
            '5 callbacks (or a task in the failed store)'
        );
        $this->assertQueueEmpty(static::q('failed.demo'), "recycling a child must fail no task\n" . $this->diagnostics());
        $this->waitQueueDrained(static::q('task.demo'), 10);
        $runs = $this->runs('recycle');
        $is = array_map(static fn ($r) => $r['params']['i'], $runs);
        sort($is);
        $this->assertSame(range(0, 4), $is, 'each task ran once');
        foreach ($ids as $id) {
            $cbs = $this->callbacks($id);
            $this->assertCount(1, $cbs);
            $this->assertSame(Worker::STATE_SUCC, $cbs[0]['status']);
        }
        $perPid = array_count_values(array_column($runs, 'pid'));
        $this->assertCount(5, $perPid, 'one child per task: ' . json_encode($perPid));
        $this->assertFalse($worker->hasExited());
    }

    /**
     * Graceful restarts (deploys) lose nothing: a task waiting behind a running one, while the worker is stopped
     * with SIGTERM five times in a row, still runs once in the end and is not taken for a task that kills its
     * worker (5 deliveries => failed store).
     */
    public function testRepeatedGracefulRestartsDoNotFailWaitingTask(): void
    {
        $waiting = null;
        for ($round = 1; $round <= 5; $round++) {
            Task::create('demo', 'slow', ['tag' => "busy$round", 'ms' => 600]);
            if ($waiting === null) {
                $waiting = Task::create('demo', 'ok', ['tag' => 'waiting']);
            }
            $worker = $this->startWorker(['name' => "worker-$round"]);
            $this->waitFor(fn () => $this->runs("busy$round") !== [], 15, "round $round: the slow task started");
            $worker->signal(SIGTERM);
            $this->assertSame(0, $worker->waitExit(15), "round $round: worker exit code\n" . $worker->describe());
            if ($this->runs('waiting') !== []) {
                break; // it ran: nothing more to show
            }
        }
        $this->startWorker(['name' => 'worker-last']);
        $this->waitFor(
            fn () => $this->callbacks($waiting) !== [] || ($this->broker->count(static::q('failed.demo')) ?? 0) > 0,
            15,
            'the waiting task ran (or was failed)'
        );
        $this->assertQueueEmpty(static::q('failed.demo'), "graceful stops must not count as deaths of the worker\n" . $this->diagnostics());
        $cbs = $this->callbacks($waiting);
        $this->assertCount(1, $cbs);
        $this->assertSame(Worker::STATE_SUCC, $cbs[0]['status']);
        $this->assertCount(1, $this->runs('waiting'));
    }
}
