<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\Event;
use Asynclib\Ebats\Group;
use Asynclib\Exception\TaskException;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\ProcTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * Groups of tasks (src/group/): an event's tasks as a group with follow-ups registered by
 * EventManager::then(), groups made by hand with Group::create(), and Group::status(). Follow-ups are
 * counted by the runs of a task registered on each follow-up event (the handler records its params).
 */
final class GroupTest extends ProcTestCase
{
    /** @return list<array> the runs of the handler $name (its params) */
    private function ran(string $name): array
    {
        return array_values(array_map(
            static fn (array $r) => $r['params'],
            array_filter($this->records('run'), static fn (array $r): bool => $r['name'] === $name)
        ));
    }

    private static function leads(Process $p): bool
    {
        return str_contains($p->stderr(), 'cron: took over the leadership');
    }

    public function testFollowUpsOfAnEventArePublishedOnceWithTheOutcome(): void
    {
        $this->startWorker();
        $this->startScheduler(
            [
                ['order_paid', 'ok', 'demo', 0],
                ['order_paid', 'retry', 'demo', 0],
                ['order_paid', 'ping', 'demo', 2],
                ['order_done', 'count', 'demo', 0],
                ['order_ok', 'virtualShipping', 'demo', 0],
                ['order_ko', 'orderAsync', 'demo', 0],
            ],
            then: [['order_paid', 'order_done', 'always'], ['order_paid', 'order_ok', 'then'], ['order_paid', 'order_ko', 'catch']]
        );
        $t0 = microtime(true);
        $id = (new Event('order_paid'))->setOptions(['order' => 'G1', 'retry' => 2, 'interval' => 0])->publish();

        $done = $this->waitFor(fn () => $this->ran('count')[0] ?? null, 30, 'the follow-up order_done');
        $this->assertGreaterThan(2.0, microtime(true) - $t0, 'not before the delayed member ended');
        $this->assertSame('G1', $done['order'], 'the follow-up carries the event\'s params');
        $g = $done['_group'];
        $this->assertSame([$id, 'order_paid', 3, 2, 1, 0], [$g['id'], $g['origin'], $g['total'], $g['succeeded'], $g['failed'], $g['cancelled']]);
        $this->assertSame(["$id.1"], $g['failed_ids'], 'the member that failed for good after its retries');
        $this->assertCount(3, array_filter($this->ran('retry'), static fn ($p) => $p['order'] === 'G1'), 'it ran 3 times, counted once');
        $this->waitFor(fn () => $this->ran('orderAsync')[0] ?? null, 10, 'the follow-up order_ko');

        $this->assertStays(
            fn () => count($this->ran('count')) > 1 || count($this->ran('orderAsync')) > 1 || $this->ran('virtualShipping') !== [] ? $this->records('run') : null,
            2.0,
            'a follow-up was published more than once, or order_ok though a member failed'
        );
        $s = Group::status($id);
        $this->assertSame([3, 3, 2, 1, 0, true], [$s['total'], $s['done'], $s['succeeded'], $s['failed'], $s['pending'], $s['completed']]);
        $this->assertSame(
            ["$id.0" => 'succeeded', "$id.1" => 'failed', "$id.2" => 'succeeded'],
            array_column($s['members'], 'state', 'id')
        );
        $this->assertSame([true, false, true], array_column($s['follow_ups'], 'published'));
    }

    public function testAMemberRunAgainAfterItsWorkerWasKilledCountsOnce(): void
    {
        $this->startWorker();
        $this->startScheduler([['job', 'dieOnce', 'demo', 0], ['job', 'ok', 'demo', 0], ['job_done', 'count', 'demo', 0]], then: [['job', 'job_done', 'always']]);
        $id = (new Event('job'))->setOptions(['flag' => "{$this->tmp}/died"])->publish();
        $done = $this->waitFor(fn () => $this->ran('count')[0] ?? null, 40, 'the follow-up after the rerun');
        $this->assertCount(2, $this->ran('dieOnce'), 'killed once (kill -9 of its own process), run again');
        $this->assertSame([2, 2, 0], [$done['_group']['total'], $done['_group']['succeeded'], $done['_group']['failed']]);
        $this->assertSame(2, Group::status($id)['done']);
        $this->assertStays(fn () => count($this->ran('count')) > 1 ? $this->ran('count') : null, 2.0, 'the follow-up came twice');
    }

    public function testTheFollowUpIsPublishedOnceAcrossLeaderKills(): void
    {
        $this->startWorker();
        $regs = [['slow_job', 'slow', 'demo', 0], ['slow_done', 'count', 'demo', 0]];
        $then = [['slow_job', 'slow_done', 'always']];
        $a = $this->startScheduler($regs, name: 'scheduler-a', then: $then);
        $this->waitFor(static fn () => self::leads($a), 20, "scheduler a leads\n" . $a->describe());
        $id = (new Event('slow_job'))->setOptions(['ms' => 1500])->publish();
        $this->waitFor(fn () => $this->ran('slow') !== [] ?: null, 20, 'the member started');
        // The leader dies while the member runs: its end is recorded with no leader, the next one decides.
        $a->kill();
        $b = $this->startScheduler($regs, name: 'scheduler-b', then: $then);
        $this->waitFor(static fn () => self::leads($b), 30, "scheduler b takes over\n" . $b->describe());
        $done = $this->waitFor(fn () => $this->ran('count')[0] ?? null, 30, 'the follow-up, published by the new leader');
        $this->assertSame([1, 1], [$done['_group']['total'], $done['_group']['succeeded']]);
        // The leader that published it dies; the next one reads the stream and publishes nothing again.
        $b->kill();
        $c = $this->startScheduler($regs, name: 'scheduler-c', then: $then);
        $this->waitFor(static fn () => self::leads($c) && str_contains($c->stderr(), 'groups: '), 30, "scheduler c takes over\n" . $c->describe());
        $this->assertStays(fn () => count($this->ran('count')) > 1 ? $this->ran('count') : null, 3.0, 'the follow-up was published again');
        // Killed before its ack reached the broker, the first Scheduler's event is routed again by the next
        // one: the same group, the same member id, run twice and counted once.
        $slow = array_filter($this->records('cb'), static fn (array $r): bool => $r['taskname'] === 'slow');
        $this->assertNotEmpty($slow);
        $this->assertSame(["$id.0"], array_values(array_unique(array_column($slow, 'taskid'))));
    }

    public function testAGroupByHandAndItsProgress(): void
    {
        $this->startWorker();
        $this->startScheduler([['hand_ko', 'count', 'demo', 0], ['hand_fin', 'orderAsync', 'demo', 0], ['hand_ok', 'virtualShipping', 'demo', 0]]);
        $tasks = [
            ['topic' => 'demo', 'name' => 'slow', 'params' => ['ms' => 600, 'tag' => 's1']],
            ['topic' => 'demo', 'name' => 'slow', 'params' => ['ms' => 600, 'tag' => 's2']],
            ['topic' => 'demo', 'name' => 'fail', 'params' => ['tag' => 'f'], 'id' => 'hand-fail-1'],
        ];
        $id = Group::create($tasks, ['then' => 'hand_ok', 'catch' => 'hand_ko', 'finally' => 'hand_fin'], ['order' => 'H1']);
        self::assertId($id, 'group id');

        // Progress as the handlers record it: a member counts as done only once its handler ended.
        $seen = [];
        $final = $this->waitFor(function () use ($id, &$seen) {
            $s = Group::status($id);
            if ($s === null) {
                return null;
            }
            $this->assertLessThanOrEqual(count($this->records('slow_end')) + count($this->ran('fail')), $s['done']);
            $seen[$s['done']] = true;
            return $s['completed'] ? $s : null;
        }, 30, 'the group completes');
        $this->assertSame([3, 2, 1, 0], [$final['total'], $final['succeeded'], $final['failed'], $final['pending']]);
        $this->assertSame('failed', array_column($final['members'], 'state', 'id')['hand-fail-1']);
        $this->assertGreaterThan(1, count($seen), 'progress was seen on the way');

        $ko = $this->waitFor(fn () => $this->ran('count')[0] ?? null, 10, 'catch');
        $this->assertSame('H1', $ko['order']);
        $this->assertSame(['hand-fail-1'], $ko['_group']['failed_ids']);
        $this->waitFor(fn () => $this->ran('orderAsync')[0] ?? null, 10, 'finally');
        $this->assertStays(fn () => $this->ran('virtualShipping') ?: (count($this->ran('count')) > 1 ? 'twice' : null), 1.5, 'then, or catch twice');
        $this->assertContains($id, array_column(Group::list(), 'id'));

        $cli = fn (array $args) => Process::run(array_merge(TestEnv::phpCommand(), [TestEnv::repoRoot() . '/php/bin/ebats'], $args), static::childEnv(), 30);
        $p = $cli(['groups:show', $id]);
        $this->assertSame(0, $p->exitCode(), $p->describe());
        $this->assertStringContainsString("group $id: 3/3 done (2 succeeded, 1 failed, 0 cancelled, 0 pending), completed", $p->stdout());
        $this->assertMatchesRegularExpression('/hand-fail-1 +failed/', $p->stdout());
        $p = $cli(['groups:list', '--json']);
        $this->assertSame(0, $p->exitCode(), $p->describe());
        $this->assertContains($id, array_column(json_decode($p->stdout(), true)['groups'], 'id'));
        $p = $cli(['groups:show', 'nosuchgroup']);
        $this->assertNotSame(0, $p->exitCode());
        $this->assertStringContainsString("no group 'nosuchgroup'", $p->stderr());
    }

    public function testBadGroupsAreRefusedWithAClearMessage(): void
    {
        $cases = [
            [[], [], 'at least one task'],
            [[['topic' => 'demo']], [], "no string 'name'"],
            [[['topic' => 'demo', 'name' => 'ok']], ['later' => 'x'], 'not a follow-up condition'],
            [[['topic' => 'demo', 'name' => 'ok', 'id' => 'a'], ['topic' => 'demo', 'name' => 'ok', 'id' => 'a']], [], 'taken'],
        ];
        foreach ($cases as [$tasks, $on, $says]) {
            $e = self::thrown(static fn () => Group::create($tasks, $on));
            $this->assertInstanceOf(TaskException::class, $e);
            $this->assertStringContainsString($says, $e->getMessage());
        }
        $this->assertInstanceOf(TaskException::class, self::thrown(static fn () => Group::status('bad id')));
        $this->assertInstanceOf(TaskException::class, self::thrown(static fn () => \Asynclib\Ebats\EventManager::then('e', 'f', 'sometimes')));
    }
}
