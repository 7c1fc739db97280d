<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\Task;
use Asynclib\Ebats\Topics;
use Asynclib\Exception\TaskException;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\ProcTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * Paused topics (`Topics`, `ebats topics:*`): a pause stops every worker of the topic from starting its
 * tasks within a second, the tasks stay in the broker with their attempts unused, other topics go on, and
 * the pause holds across worker (and broker) restarts until it is resumed.
 */
final class PausedTopicsTest extends ProcTestCase
{
    protected function tearDown(): void
    {
        // The stream of paused topics lives as long as the prefix: leave every topic running.
        foreach (Topics::list() as $topic) {
            Topics::resume($topic);
        }
        parent::tearDown();
    }

    /** @return list<array<string,mixed>> the run records of topic demo */
    private function demoRuns(): array
    {
        return array_values(array_filter($this->records('run'), static fn (array $r): bool => $r['topic'] === 'demo'));
    }

    private function cli(array $args): Process
    {
        $bin = TestEnv::repoRoot() . '/php/bin/ebats';
        return Process::run(array_merge(TestEnv::phpCommand(), [$bin], $args), static::childEnv(), 30);
    }

    /**
     * The pause as the worker at $addr shows it: its gauge `ebats_topic_paused`, its counter of tasks given
     * back, and the `pause` of its /status.json; null until both answer.
     *
     * @return array{gauge:string,given_back:string,status:array}|null
     */
    private function shownPause(string $addr): ?array
    {
        [$code, $text] = self::httpGet($addr, '/metrics');
        [$scode, $body] = self::httpGet($addr, '/status.json');
        $doc = $scode === 200 ? json_decode($body, true) : null;
        if ($code !== 200 || !is_array($doc)
            || !preg_match('/^ebats_topic_paused\{topic="demo"\} (\S+)$/m', $text, $gauge)
            || !preg_match('/^ebats_tasks_given_back_total\{topic="demo",reason="paused"\} (\S+)$/m', $text, $given)) {
            return null;
        }
        return ['gauge' => $gauge[1], 'given_back' => $given[1], 'status' => $doc['pause']];
    }

    /** Waits until the worker at $addr shows the topic paused (or running), in /metrics and /status.json. */
    private function waitShownPause(string $addr, bool $paused, string $what): array
    {
        return $this->waitFor(function () use ($addr, $paused): ?array {
            $shown = $this->shownPause($addr);
            return $shown !== null && $shown['gauge'] === ($paused ? '1' : '0') && ($shown['status']['paused'] ?? null) === $paused
                ? $shown : null;
        }, 15, $what, 0.2);
    }

    public function testAPauseStopsStartingTasksWithinASecondAndResumeRunsThem(): void
    {
        $addr = '127.0.0.1:' . self::freePort();
        $this->startWorker(['topic' => 'demo', 'prefetch' => 5, 'env' => ['EBATS_T_METRICS' => $addr]]);
        $this->waitShownPause($addr, false, 'the worker shows its topic running');
        $this->startWorker(['topic' => 'other']);
        $ids = [];
        for ($i = 0; $i < 30; $i++) {
            $ids[] = Task::create('demo', 'slow', ['ms' => 100, 'tag' => "p$i"]);
        }
        $this->waitFor(fn () => count($this->demoRuns()) >= 2 ?: null, 20, 'demo tasks running');

        $this->assertTrue(Topics::pause('demo'), 'a running topic is paused');
        $paused = microtime(true);
        $this->assertFalse(Topics::pause('demo'), 'a second pause changes nothing');
        $this->assertSame(['demo'], Topics::list());
        $this->waitShownPause($addr, true, 'the worker shows its topic paused');

        // Another topic runs on while demo is paused.
        $other = Task::create('other', 'x', ['tag' => 'o1']);
        $this->waitCallbacks($other, 1, 15, 'a task of another topic during the pause');
        $this->waitConsumers(static::q('task.demo'), 0, 5, [], true);
        $this->assertStays(
            fn () => array_values(array_filter($this->demoRuns(), static fn (array $r): bool => $r['t'] > $paused + 1.0)) ?: null,
            2.0,
            'a task of the paused topic started more than a second after the pause'
        );
        $ran = count($this->demoRuns());
        $this->assertLessThan(30, $ran, 'the pause held tasks back');
        $stats = self::queueStats()[static::q('task.demo')];
        $this->assertSame(0, $stats['unacked'], 'a paused worker holds no task');
        $this->assertSame(30 - $ran, $stats['ready'], 'the tasks not started stay in the broker');
        // Its consumer cancelled, the worker takes no more tasks: what it gave back is counted, the same
        // in both documents. With a prefetch of 5 and tasks waiting, its buffer held some when the pause came.
        $shown = $this->shownPause($addr);
        $this->assertSame('1', $shown['gauge']);
        $this->assertSame((int) $shown['given_back'], $shown['status']['given_back'], 'the same count in /metrics and /status.json');
        $this->assertGreaterThanOrEqual(1, $shown['status']['given_back'], 'the tasks of its buffer were given back');

        $this->assertTrue(Topics::resume('demo'));
        $this->waitShownPause($addr, false, 'the worker shows its topic running again');
        $this->assertFalse(Topics::resume('demo'), 'a second resume changes nothing');
        $this->assertSame([], Topics::list());
        foreach ($ids as $id) {
            $cb = $this->waitCallbacks($id, 1, 30, 'every task after the resume')[0];
            $this->assertSame(1, $cb['attempt'], 'a task held back by a pause has used no attempt');
        }
        $this->assertCount(30, $this->demoRuns(), 'each task ran once');
        $this->waitQueueDrained(static::q('task.demo'), 10);
        $this->assertSame(0, self::queueStats()[static::q('failed.demo')]['ready'] ?? 0, 'nothing in the failed store');
    }

    public function testThePauseHoldsAcrossAWorkerRestartAndTheCommandLine(): void
    {
        $p = $this->cli(['topics:pause', 'demo']);
        $this->assertSame(0, $p->exitCode(), $p->describe());
        $this->assertSame("topic 'demo' paused\n", $p->stdout());
        $p = $this->cli(['topics:list']);
        $this->assertSame("demo\n", $p->stdout(), $p->describe());
        $p = $this->cli(['topics:list', '--json']);
        $this->assertSame(['paused' => ['demo']], json_decode($p->stdout(), true), $p->describe());

        $addr = '127.0.0.1:' . self::freePort();
        $worker = $this->startWorker(['topic' => 'demo', 'procs' => 2, 'env' => ['EBATS_T_METRICS' => $addr]], false);
        $this->waitShownPause($addr, true, 'a worker started while its topic is paused shows it paused');
        $id = Task::create('demo', 'ok', ['tag' => 'held']);
        $this->assertStays(fn () => $this->demoRuns() ?: null, 2.0, 'a task of a paused topic ran');
        $worker->stop(10.0);
        $this->startWorker(['topic' => 'demo', 'procs' => 2], false);
        $this->assertStays(fn () => $this->demoRuns() ?: null, 2.0, 'a task ran after the worker restarted');
        $this->assertSame(1, self::queueStats()[static::q('task.demo')]['ready'] ?? null, 'the task waits in the broker');

        $p = $this->cli(['topics:resume', 'demo']);
        $this->assertSame("topic 'demo' resumed\n", $p->stdout(), $p->describe());
        $cb = $this->waitCallbacks($id, 1, 15, 'the task after the resume')[0];
        $this->assertSame(1, $cb['attempt']);
        $p = $this->cli(['topics:resume', 'demo']);
        $this->assertSame("topic 'demo' resumed (it was not paused)\n", $p->stdout(), $p->describe());
        $this->assertSame("no paused topics\n", $this->cli(['topics:list'])->stdout());
    }

    public function testABadTopicIsRefused(): void
    {
        foreach (['', 'a b', str_repeat('x', 129)] as $bad) {
            $e = self::thrown(static fn () => Topics::pause($bad));
            $this->assertInstanceOf(TaskException::class, $e, "topic '$bad'");
            $this->assertStringContainsString('topic', $e->getMessage());
        }
        $p = $this->cli(['topics:pause']);
        $this->assertSame(2, $p->exitCode(), $p->describe());
    }

    public function testThePauseHoldsAcrossABrokerRestart(): void
    {
        if (getenv('EBATS_TEST_BROKER_RESTART') !== '1') {
            $this->markTestSkipped('stops the shared broker: run alone with EBATS_TEST_BROKER_RESTART=1');
        }
        $this->startWorker(['topic' => 'demo']);
        $this->assertTrue(Topics::pause('demo'));
        $id = Task::create('demo', 'ok', ['tag' => 'across']);
        TestEnv::stopBrokerApp();
        TestEnv::startBrokerApp();
        $list = $this->waitFor(fn () => self::thrown(fn () => Topics::list()) === null ? Topics::list() : null, 30, 'list() after the restart');
        $this->assertSame(['demo'], $list, 'the pause is on the broker');
        $this->assertStays(fn () => $this->demoRuns() ?: null, 3.0, 'a task ran after the broker restart');
        $this->assertTrue(Topics::resume('demo'));
        $this->assertSame(1, $this->waitCallbacks($id, 1, 30, 'the task after the resume')[0]['attempt']);
    }
}
