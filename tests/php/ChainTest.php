<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\Chain;
use Asynclib\Ebats\FailedStore;
use Asynclib\Ebats\History;
use Asynclib\Ebats\Task;
use Asynclib\Exception\TaskException;
use Ebats\Tests\Lib\ProcTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * Chains (`Chain::create`): each step is published by the worker of the step before once that one succeeded, so
 * steps run in order even on several processes; a failure for good stops the chain and names the step; a worker
 * killed mid-chain leaves the step to run again and the chain completes.
 */
final class ChainTest extends ProcTestCase
{
    protected function tearDown(): void
    {
        TestEnv::setEnv('EBATS_HISTORY', null);
        parent::tearDown();
    }

    private static function steps(array $tags, array $more = []): array
    {
        return array_map(static fn (string $t): array => ['demo', 'step', ['tag' => $t] + ($more[$t] ?? [])], $tags);
    }

    /** @return list<string> the tags of the step records of $kind ('run' or 'step_end'), in the order written */
    private function tags(string $kind): array
    {
        $recs = array_filter($this->records($kind), static fn (array $r): bool => ($kind !== 'run' || $r['name'] === 'step'));
        return array_values(array_map(static fn (array $r): string => $r['params']['tag'], $recs));
    }

    public function testStepsRunInOrderEachOnceTheOneBeforeSucceeded(): void
    {
        $this->startWorker(['procs' => 3]);
        $chain = Chain::create(self::steps(['A', 'B', 'C', 'D'], ['A' => ['ms' => 300]]));
        $this->assertMatchesRegularExpression('/^[0-9a-f]{32}$/', $chain);
        $this->waitFor(fn () => count($this->tags('step_end')) === 4 ?: null, 20, 'the four steps ended');
        $this->assertSame(['A', 'B', 'C', 'D'], $this->tags('run'), 'each step started after the one before ended');
        $this->assertSame(['A', 'B', 'C', 'D'], $this->tags('step_end'));
        $ids = array_map(static fn (array $r): string => $r['id'], $this->records('step_end'));
        $this->assertSame(["$chain-1", "$chain-2", "$chain-3", "$chain-4"], $ids, 'step n runs under <chain>-n');
        $this->waitQueueDrained(static::q('task.demo'), 10);
        // Other forms of steps, and bad ones.
        $mixed = Chain::create([['topic' => 'demo', 'name' => 'step', 'params' => ['tag' => 'M1']], ['demo', 'step', ['tag' => 'M2'], 1]]);
        $this->waitCallbacks("$mixed-2", 1, 20, 'a chain given as maps and with a delay');
        foreach ([[], [['demo']], [['bad topic', 'x']], [['demo', 'x', [], -1]], array_fill(0, 101, ['demo', 'x'])] as $bad) {
            $this->assertInstanceOf(TaskException::class, self::thrown(static fn () => Chain::create($bad)), json_encode($bad));
        }
        $this->assertInstanceOf(\TypeError::class, self::thrown(static fn () => Chain::create('x')));
    }

    public function testAFailureForGoodStopsTheChainAndSaysWhere(): void
    {
        $this->startWorker(['env' => ['EBATS_HISTORY' => '1']]);
        $chain = Chain::create(self::steps(['A', 'B', 'C'], ['B' => ['fail' => true]]));
        $this->waitFor(fn () => FailedStore::list('demo') ?: null, 20, 'the failed step in the failed store');
        $entry = FailedStore::list('demo')[0];
        $this->assertSame("$chain-2", $entry['id']);
        $this->assertSame(['id' => $chain, 'step' => 2, 'steps' => 3], array_diff_key($entry['chain'], ['rest' => 1]));
        $this->assertSame('step B failed', $entry['failed']['message']);
        $this->assertStays(fn () => array_intersect(['C'], $this->tags('run')) ?: null, 1.5, 'the step after a failed one ran');
        TestEnv::setEnv('EBATS_HISTORY', '1');
        $rec = $this->waitFor(fn () => History::read(['id' => "$chain-2"])[0] ?? null, 10, 'the history record of the failed step');
        $this->assertSame('fail', $rec['outcome']);
        $this->assertSame(['id' => $chain, 'step' => 2, 'steps' => 3], $rec['chain']);
    }

    public function testAChainCancelledByItsIdStopsAtTheNextStep(): void
    {
        $this->startWorker();
        $chain = Chain::create(self::steps(['A', 'B', 'C'], ['A' => ['ms' => 1500]]));
        $this->waitFor(fn () => $this->tags('run') ?: null, 20, 'the first step running');
        Task::cancel($chain);
        $this->waitFor(fn () => $this->tags('step_end') ?: null, 10, 'the running step ended');
        $this->waitQueueDrained(static::q('task.demo'), 10);
        $this->assertStays(fn () => array_diff($this->tags('run'), ['A']) ?: null, 1.0, 'a step of a cancelled chain ran');
        $this->assertSame(['A'], $this->tags('step_end'), 'the step running when the chain was cancelled ended as usual');
        $this->assertSame([], $this->callbacks("$chain-2"), 'the next step was not run');
    }

    public function testAWorkerKilledMidChainLeavesTheChainToComplete(): void
    {
        $worker = $this->startWorker();
        $chain = Chain::create(self::steps(['A', 'B', 'C'], ['B' => ['ms' => 3000]]));
        $this->waitFor(fn () => in_array('B', $this->tags('run'), true) ?: null, 20, 'step B running');
        $kids = $worker->childPids();
        $this->assertCount(1, $kids);
        posix_kill($kids[0], SIGKILL);
        $this->waitFor(fn () => count($this->tags('step_end')) === 3 ?: null, 30, 'the chain completed after the kill');
        $this->assertSame(['A', 'B', 'C'], $this->tags('step_end'), 'each step ended once, in order');
        $this->assertSame(['A', 'B', 'B', 'C'], $this->tags('run'), 'the step killed ran again');
        $this->waitQueueDrained(static::q('task.demo'), 10);
        $this->assertSame([], FailedStore::list('demo'));
        $this->waitCallbacks("$chain-3", 1, 10, 'the last step reported');
    }
}
