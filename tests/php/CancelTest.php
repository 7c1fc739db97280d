<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\History;
use Asynclib\Ebats\Task;
use Asynclib\Exception\TaskException;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\ProcTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * Cancelling tasks (`Task::cancel`, `Task::isCancelled`, `ebats tasks:cancel`): a cancel is a record of the flow
 * stream, so a task cancelled before it starts is not run even when no worker ran as it was cancelled, a worker
 * started later or restarted still knows it, a running task's handler is told, and the cancel ends by itself.
 */
final class CancelTest extends ProcTestCase
{
    private const ON = ['EBATS_HISTORY' => '1'];

    protected function tearDown(): void
    {
        TestEnv::setEnv('EBATS_HISTORY', null);
        parent::tearDown();
    }

    private function cli(array $args): Process
    {
        $bin = TestEnv::repoRoot() . '/php/bin/ebats';
        return Process::run(array_merge(TestEnv::phpCommand(), [$bin], $args), static::childEnv(), 30);
    }

    /** @return list<string> the outcomes the history recorded for task $id */
    private function outcomes(string $id): array
    {
        TestEnv::setEnv('EBATS_HISTORY', '1');
        return array_map(static fn (array $r): string => $r['outcome'], History::read(['id' => $id]));
    }

    private function task(string $tag): Task
    {
        return (new Task('demo', 'ok'))->setParams(['tag' => $tag]);
    }

    public function testATaskCancelledBeforeAnyWorkerRanIsNotRun(): void
    {
        $keep = Task::create('demo', 'ok', ['tag' => 'keep']);
        $gone = Task::create('demo', 'ok', ['tag' => 'gone']);
        $cli = Task::create('demo', 'ok', ['tag' => 'cli']);
        Task::cancel($gone);
        $p = $this->cli(['tasks:cancel', $cli, '--for=3600']);
        $this->assertSame(0, $p->exitCode(), $p->describe());
        $this->assertSame("task '$cli' cancelled for 3600 s\n", $p->stdout());

        $addr = '127.0.0.1:' . self::freePort();
        $this->startWorker(['env' => self::ON + ['EBATS_T_METRICS' => $addr]]);
        $this->waitCallbacks($keep, 1, 20, 'the task not cancelled');
        $this->waitQueueDrained(static::q('task.demo'), 10);
        $this->assertSame([], $this->runs('gone'), 'a cancelled task ran');
        $this->assertSame([], $this->runs('cli'), 'a task cancelled from the command line ran');
        $this->assertSame([], $this->callbacks($gone), 'the callback is not called for a cancelled task');
        $this->assertSame(0, self::queueStats()[static::q('failed.demo')]['ready'] ?? 0, 'nothing in the failed store');
        $this->waitFor(fn () => $this->outcomes($gone) === ['cancelled'] && $this->outcomes($cli) === ['cancelled'] ?: null, 10, 'history records with the status cancelled');
        $this->assertSame(3, History::read(['id' => $gone])[0]['status']);
        $this->waitFor(function () use ($addr): ?bool {
            [$code, $text] = self::httpGet($addr, '/metrics');
            return $code === 200 && str_contains($text, "ebats_tasks_cancelled_total{topic=\"demo\"} 2\n") ?: null;
        }, 10, 'the cancelled tasks counted in the metrics');
    }

    public function testACancelHoldsAcrossAWorkerRestart(): void
    {
        $worker = $this->startWorker();
        $first = Task::create('demo', 'ok', ['tag' => 'first']);
        $this->waitCallbacks($first, 1, 20, 'a task before the cancel');
        // Waiting in the delay queue while the worker restarts.
        $later = Task::create('demo', 'ok', ['tag' => 'later'], 3);
        Task::cancel($later);
        $worker->stop(10.0);
        $this->startWorker(['name' => 'worker-2']);
        $control = Task::create('demo', 'ok', ['tag' => 'control'], 3);
        $this->waitCallbacks($control, 1, 20, 'a task delayed as long');
        $this->waitQueueDrained(static::q('task.demo'), 10);
        $this->assertStays(fn () => $this->runs('later') ?: null, 1.0, 'the task cancelled before the restart ran');
        $this->assertSame([], $this->callbacks($later));
        $this->assertSame(0, self::queueStats()[static::q('task.demo')]['unacked'], 'the cancelled task was acked');
    }

    public function testARunningTaskIsTold(): void
    {
        $this->startWorker();
        $id = Task::create('demo', 'cancellable', ['tag' => 'long', 'ms' => 15000]);
        $this->waitFor(fn () => $this->runs('long') ?: null, 20, 'the task running');
        $this->assertStays(fn () => $this->records('cancellable_end') ?: null, 0.5, 'the task ended before its cancel');
        $cancelled = microtime(true);
        Task::cancel($id);
        $end = $this->waitFor(fn () => $this->records('cancellable_end')[0] ?? null, 5, 'the handler told of the cancel');
        $this->assertTrue($end['told']);
        $this->assertLessThan(3.0, microtime(true) - $cancelled, 'told within a moment');
        $cb = $this->waitCallbacks($id, 1, 10, 'the task settled')[0];
        $this->assertSame(0, $cb['status'], 'the handler returned: the task succeeded');

        $e = self::thrown(static fn () => Task::isCancelled());
        $this->assertInstanceOf(TaskException::class, $e);
        $this->assertStringContainsString('inside a task\'s handler', $e->getMessage());
    }

    public function testACancelEndsByItselfAfterItsDuration(): void
    {
        $this->startWorker();
        $t = $this->task('short');
        Task::cancel($t->getId(), 2);
        $cancelled = microtime(true);
        $t->publish();
        $control = Task::create('demo', 'ok', ['tag' => 'control']);
        $this->waitCallbacks($control, 1, 20, 'a task after the cancelled one');
        $this->waitQueueDrained(static::q('task.demo'), 10);
        $this->assertSame([], $this->runs('short'), "the task ran while cancelled\n" . $this->diagnostics());
        // The same id once the cancel has ended: it runs.
        usleep((int) max(0, (2.2 - (microtime(true) - $cancelled)) * 1e6));
        $t->publish();
        $this->waitCallbacks($t->getId(), 1, 20, 'the task once its cancel ended');
    }

    public function testBadCancelsAreRefused(): void
    {
        foreach ([['', 60], ['a b', 60], [str_repeat('x', 129), 60], ['ok', 0], ['ok', -1], ['ok', 400000000]] as [$id, $for]) {
            $e = self::thrown(static fn () => Task::cancel($id, $for));
            $this->assertInstanceOf(TaskException::class, $e, "cancel '$id' for $for");
        }
        $p = $this->cli(['tasks:cancel']);
        $this->assertSame(2, $p->exitCode(), $p->describe());
    }
}
