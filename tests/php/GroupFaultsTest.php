<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\Event;
use Asynclib\Ebats\Group;
use Asynclib\Ebats\Task;
use Ebats\Tests\Lib\BrokerProxy;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\ProcTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * Groups under faults of the broker's side (src/group/mod.rs argues why a follow-up is published once):
 * the connections of the workers and of the deciding Scheduler cut mid-group (a TCP relay in front of the
 * broker, killed and started again), and the broker itself restarted mid-group (run alone, with
 * EBATS_TEST_BROKER_RESTART=1). Each follow-up is counted by the runs of the task registered on it; the
 * group's counts are compared with what the handlers recorded.
 */
final class GroupFaultsTest extends ProcTestCase
{
    /** @return list<array> the params of the runs of the handler $name */
    private function ran(string $name): array
    {
        return array_values(array_map(
            static fn (array $r) => $r['params'],
            array_filter($this->records('run'), static fn (array $r): bool => $r['name'] === $name)
        ));
    }

    /** @return list<string> the distinct ids of the steps whose handler ended (succeeded), with the prefix $prefix */
    private function stepsEnded(string $prefix): array
    {
        $ids = array_unique(array_column($this->records('step_end'), 'id'));
        $ids = array_values(array_filter($ids, static fn (string $id): bool => str_starts_with($id, $prefix)));
        sort($ids);
        return $ids;
    }

    private function startLeadingScheduler(array $env, array $regs, array $then): Process
    {
        $s = $this->startFixture('scheduler', 'scheduler.php', $env + [
            'EBATS_T_REGISTER' => json_encode($regs),
            'EBATS_T_THEN' => json_encode($then),
            'EBATS_DEBUG' => '1',
        ]);
        $this->waitConsumers(static::q('events'), 1, 20, [$s], true);
        $this->waitFor(static fn () => str_contains($s->stderr(), 'cron: took over the leadership'), 20, "the Scheduler leads\n" . $s->describe());
        return $s;
    }

    /** $n steps of $ms ms with ids "$prefix$i", and one step that fails for good, id "{$prefix}fail". */
    private static function steps(string $prefix, int $n, int $ms): array
    {
        $tasks = [];
        for ($i = 0; $i < $n; $i++) {
            $tasks[] = ['topic' => 'demo', 'name' => 'step', 'params' => ['tag' => "$prefix$i", 'ms' => $ms], 'id' => "$prefix$i"];
        }
        $tasks[] = ['topic' => 'demo', 'name' => 'step', 'params' => ['tag' => "{$prefix}fail", 'fail' => true], 'id' => "{$prefix}fail"];
        return $tasks;
    }

    /** The follow-ups of the handler $name came exactly once: returns the one run's params. */
    private function followUpOnce(string $name, float $timeout): array
    {
        $this->waitFor(fn () => $this->ran($name) ?: null, $timeout, "the follow-up run by '$name'");
        $this->assertStays(fn () => count($this->ran($name)) > 1 ? $this->ran($name) : null, 3.0, "the follow-up run by '$name' came more than once");
        return $this->ran($name)[0];
    }

    public function testAGroupCompletesOnceWhenItsWorkersAndTheDecidingSchedulerAreCut(): void
    {
        $proxy = new BrokerProxy();
        $env = ['EBATS_AMQP_URL' => TestEnv::amqpUrl(null, $proxy->start()), 'EBATS_CONNECT_TIMEOUT' => '2', 'EBATS_HEARTBEAT' => '2'];
        $this->startWorker(['procs' => 2, 'env' => $env]);
        $this->startLeadingScheduler(
            $env,
            [['cut_job', 'step', 'demo', 0], ['cut_job', 'fail', 'demo', 0], ['cut_done', 'count', 'demo', 0], ['hand_done', 'orderAsync', 'demo', 0]],
            [['cut_job', 'cut_done', 'always']]
        );
        // One group routed by the Scheduler from an event, one made by hand: 7 steps of 400 ms and a failure.
        $event = (new Event('cut_job'))->setOptions(['tag' => 'ev', 'ms' => 400])->publish();
        $hand = Group::create(self::steps('cut-', 7, 400), ['finally' => 'hand_done'], ['order' => 'C1']);

        // Cut while a handler runs and some members have ended: that handler ends while its connection is gone.
        $this->waitFor(
            fn () => count($this->stepsEnded('cut-')) >= 2 && count($this->ran('step')) > count($this->records('step_end')) + count(array_filter($this->ran('step'), static fn ($p) => !empty($p['fail']))),
            30,
            'two members ended and one running'
        );
        $cutAt = microtime(true);
        $proxy->cut();
        $this->waitFor(
            fn () => array_filter($this->records('step_end'), static fn (array $r): bool => $r['t'] > $cutAt) ?: null,
            10,
            'a member ending while every connection is cut'
        );
        $proxy->start();

        $done = $this->followUpOnce('orderAsync', 60);
        $g = $done['_group'];
        $ended = $this->stepsEnded('cut-');
        $this->assertSame('C1', $done['order']);
        $this->assertSame([$hand, 8, 7, 1, 0], [$g['id'], $g['total'], $g['succeeded'], $g['failed'], $g['cancelled']]);
        $this->assertCount($g['succeeded'], $ended, 'the group counts each member the handlers ended once: ' . json_encode($ended));
        $this->assertSame(['cut-fail'], $g['failed_ids']);

        $done = $this->followUpOnce('count', 30);
        $g = $done['_group'];
        $this->assertSame([$event, 2, 1, 1], [$g['id'], $g['total'], $g['succeeded'], $g['failed']]);
        $this->assertSame(["$event.1"], $g['failed_ids']);
        $this->assertNotEmpty(array_filter($this->records('step_end'), static fn (array $r): bool => $r['id'] === "$event.0"));

        foreach ([$hand => 8, $event => 2] as $id => $total) {
            $s = Group::status($id);
            $this->assertSame([$total, $total, 0, true], [$s['total'], $s['done'], $s['pending'], $s['completed']], "group $id");
        }
    }

    public function testAGroupFinishedAfterABrokerRestartCompletesOnceAndACancelMadeBeforeHolds(): void
    {
        if (getenv('EBATS_TEST_BROKER_RESTART') !== '1') {
            $this->markTestSkipped('stops the shared broker: run alone with EBATS_TEST_BROKER_RESTART=1');
        }
        $this->startWorker(['procs' => 2]);
        $this->startLeadingScheduler([], [['rs_done', 'count', 'demo', 0]], []);
        $tasks = self::steps('rs-', 6, 500);
        // A member that waits in the delay levels across the restart, cancelled before it.
        $tasks[] = ['topic' => 'demo', 'name' => 'step', 'params' => ['tag' => 'rs-late'], 'id' => 'rs-late', 'delay' => 12];
        $id = Group::create($tasks, ['finally' => 'rs_done'], ['order' => 'R1']);
        Task::cancel('rs-late');

        $this->waitFor(fn () => count($this->stepsEnded('rs-')) >= 2 ?: null, 30, 'the group half done');
        $this->assertFalse(Group::status($id)['completed']);
        TestEnv::stopBrokerApp();
        TestEnv::startBrokerApp();

        $done = $this->followUpOnce('count', 90);
        $g = $done['_group'];
        $this->assertSame('R1', $done['order']);
        $this->assertSame([$id, 8, 6, 1, 1], [$g['id'], $g['total'], $g['succeeded'], $g['failed'], $g['cancelled']]);
        $this->assertSame(['rs-0', 'rs-1', 'rs-2', 'rs-3', 'rs-4', 'rs-5'], $this->stepsEnded('rs-'));
        $this->assertSame([], array_filter($this->ran('step'), static fn ($p) => $p['tag'] === 'rs-late'), 'the task cancelled before the restart ran');
        $s = Group::status($id);
        $this->assertSame('cancelled', array_column($s['members'], 'state', 'id')['rs-late']);
        $this->assertSame([8, 8, true], [$s['total'], $s['done'], $s['completed']]);
    }
}
