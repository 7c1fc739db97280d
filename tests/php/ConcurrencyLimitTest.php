<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\Task;
use Asynclib\Ebats\Worker;
use Asynclib\Exception\TaskException;
use Ebats\Tests\Lib\ProcTestCase;

/**
 * Concurrency limits (`Worker::setLimit(['concurrency' => N, ...])`) with real worker processes, two parents
 * of two children each: never more than N tasks of a key (or of the topic) run at once, as the start and end
 * times the handlers write show; a task held back by a limit keeps its attempt and never reaches the failed
 * store; the permit of a child killed mid-task comes back by itself and its task runs again.
 */
final class ConcurrencyLimitTest extends ProcTestCase
{
    /** Starts two worker parents of topic "limited", two children each, with these limits. */
    private function startWorkers(array $limits): void
    {
        foreach (['w1', 'w2'] as $name) {
            $this->startWorker(
                ['topic' => 'limited', 'procs' => 2, 'name' => $name, 'env' => ['EBATS_T_LIMITS' => json_encode($limits)]],
                false
            );
        }
        $this->waitConsumers(static::q('task.limited'), 4, 20);
    }

    /**
     * The runs the handlers recorded, each [key, tag, pid, start, end]; a run whose process died has no end
     * record and ends at $killedAt[pid].
     *
     * @param array<int,float> $killedAt
     * @return list<array{key:?string,tag:?string,pid:int,start:float,end:?float}>
     */
    private function intervals(array $killedAt = []): array
    {
        $open = [];
        $out = [];
        foreach ($this->records() as $r) {
            $kind = $r['kind'] ?? '';
            if ($kind === 'lim_start') {
                $open[$r['pid']] = count($out);
                $out[] = ['key' => $r['key'], 'tag' => $r['tag'], 'pid' => $r['pid'], 'start' => $r['t'], 'end' => null];
            } elseif ($kind === 'lim_end' && isset($open[$r['pid']])) {
                $out[$open[$r['pid']]]['end'] = $r['t'];
                unset($open[$r['pid']]);
            }
        }
        foreach ($out as &$run) {
            if ($run['end'] === null && isset($killedAt[$run['pid']])) {
                $run['end'] = $killedAt[$run['pid']];
            }
        }
        return $out;
    }

    /** The most runs of $runs that were running at one moment. */
    private static function mostAtOnce(array $runs): int
    {
        $events = [];
        foreach ($runs as $r) {
            $events[] = [$r['start'], 1];
            $events[] = [$r['end'] ?? INF, -1];
        }
        // At one instant an end comes before a start: a run that starts as another ends does not overlap it.
        usort($events, static fn (array $a, array $b): int => [$a[0], $a[1]] <=> [$b[0], $b[1]]);
        $now = 0;
        $most = 0;
        foreach ($events as [, $d]) {
            $now += $d;
            $most = max($most, $now);
        }
        return $most;
    }

    /** Creates $n tasks of topic "limited" that take $ms each (tagged t0, t1, ...); their ids. */
    private function work(int $n, int $ms): array
    {
        $ids = [];
        for ($i = 0; $i < $n; $i++) {
            $ids[] = Task::create('limited', 'work', ['ms' => $ms, 'tag' => "t$i"]);
        }
        return $ids;
    }

    /** Every task of $ids ran to its end once, at attempt 1, and nothing is in the failed store. */
    private function assertEachRanOnceAtItsFirstAttempt(array $ids, float $timeout): void
    {
        foreach ($ids as $id) {
            $cbs = $this->waitCallbacks($id, 1, $timeout, 'every task ends');
            $this->assertSame(1, $cbs[0]['attempt'], 'a task held back by a limit keeps its attempt');
            $this->assertSame(Worker::STATE_SUCC, $cbs[0]['status']);
        }
        $this->assertStays(fn () => count($this->records('cb')) > count($ids) ? $this->records('cb') : null, 1.0, 'a task ran twice');
        $this->assertSame(0, self::queueStats()[static::q('failed.limited')]['ready'] ?? 0, 'nothing in the failed store');
    }

    public function testOneTaskAtATimePerKeyAcrossTwoWorkers(): void
    {
        $this->startWorkers([['concurrency' => 1, 'key' => 'customer:{c}']]);
        $ids = [];
        for ($i = 0; $i < 6; $i++) {
            foreach (['a', 'b', 'c', 'd'] as $key) {
                $ids[] = Task::create('limited', 'work', ['c' => $key, 'ms' => 150, 'tag' => "$key$i"]);
            }
        }
        $this->assertEachRanOnceAtItsFirstAttempt($ids, 60);
        $runs = $this->intervals();
        $this->assertCount(24, $runs);
        foreach (['a', 'b', 'c', 'd'] as $key) {
            $of = array_values(array_filter($runs, static fn (array $r): bool => $r['key'] === $key));
            $this->assertSame(1, self::mostAtOnce($of), "two tasks of key $key ran at once: " . json_encode($of));
        }
        $this->assertGreaterThanOrEqual(2, self::mostAtOnce($runs), 'tasks of different keys run side by side');
    }

    public function testATopicConcurrencyOfTwoWithFourChildren(): void
    {
        $this->startWorkers([['concurrency' => 2]]);
        $this->assertEachRanOnceAtItsFirstAttempt($this->work(20, 200), 60);
        $runs = $this->intervals();
        $this->assertCount(20, $runs);
        $this->assertSame(2, self::mostAtOnce($runs), 'at most two at once, and two reached: ' . json_encode($runs));
        $this->assertGreaterThanOrEqual(3, count(array_unique(array_column($runs, 'pid'))), 'the children take turns');
    }

    /**
     * Children waiting in place for the topic's one permit get it in turn: the child that keeps it across its
     * tasks hands it over once it has held it a second (KEEP_MAX) and children wait for it, instead of taking
     * it back before any of them could ask (one child then ran every task while three waited with theirs).
     */
    public function testChildrenWaitingForTheTopicsPermitGetItInTurn(): void
    {
        $this->startWorkers([['concurrency' => 1]]);
        $this->assertEachRanOnceAtItsFirstAttempt($this->work(40, 100), 60);
        $runs = $this->intervals();
        usort($runs, static fn (array $a, array $b): int => $a['start'] <=> $b['start']);
        $this->assertSame(1, self::mostAtOnce($runs), 'one at a time');
        // The runs one child made in a row, while the others waited with a task each.
        $longest = [];
        $streak = [];
        foreach ($runs as $r) {
            if ($streak !== [] && $streak[0]['pid'] !== $r['pid']) {
                $streak = [];
            }
            $streak[] = $r;
            $span = end($streak)['end'] - $streak[0]['start'];
            if ($longest === [] || $span > $longest['span']) {
                $longest = ['span' => $span, 'runs' => count($streak), 'pid' => $r['pid']];
            }
        }
        // A second held, the task it ends, and the hand-over; a child that never handed over would run all 40.
        $this->assertLessThan(1.8, $longest['span'], 'a child kept the permit while others waited: ' . json_encode($longest));
        $this->assertGreaterThanOrEqual(3, count(array_unique(array_column($runs, 'pid'))), 'the children take turns');
    }

    public function testAKilledHolderGivesItsPermitBackAndItsTaskRunsAgain(): void
    {
        $this->startWorkers([['concurrency' => 1, 'key' => '{c}']]);
        $ids = [];
        foreach (['k1', 'k2', 'k3'] as $tag) {
            $ids[$tag] = Task::create('limited', 'work', ['c' => 'k', 'ms' => 2500, 'tag' => $tag]);
        }
        $other = Task::create('limited', 'work', ['c' => 'other', 'ms' => 100, 'tag' => 'o']);
        $first = $this->waitFor(
            fn () => array_values(array_filter($this->records('lim_start'), static fn (array $r): bool => $r['key'] === 'k'))[0] ?? null,
            20,
            'a task of key k starts'
        );
        usleep(300000);
        posix_kill($first['pid'], SIGKILL);
        $killedAt = microtime(true);

        $this->waitCallbacks($other, 1, 20, 'a task of another key runs meanwhile');
        $next = $this->waitFor(
            fn () => array_values(array_filter($this->records('lim_start'), static fn (array $r): bool => $r['key'] === 'k' && $r['t'] > $killedAt))[0] ?? null,
            20,
            'a task of key k starts after the kill'
        );
        $this->assertLessThan(6.0, $next['t'] - $killedAt, 'the permit of the killed child came back within seconds');
        foreach ($ids as $id) {
            $this->waitCallbacks($id, 1, 60, 'every task of key k ends');
        }
        $runs = $this->intervals([$first['pid'] => $killedAt]);
        $k = array_values(array_filter($runs, static fn (array $r): bool => $r['key'] === 'k'));
        $this->assertSame(1, self::mostAtOnce($k), 'two tasks of key k ran at once: ' . json_encode($k));
        $this->assertCount(2, array_filter($k, static fn (array $r): bool => $r['tag'] === $first['tag']), 'the killed task ran again');
        $this->assertCount(4, $k, 'three tasks, one of them twice');
        foreach ($ids as $tag => $id) {
            if ($tag !== $first['tag']) {
                $this->assertSame(1, $this->callbacks($id)[0]['attempt'], "held back, $tag keeps its attempt");
            }
        }
        $this->assertSame(0, self::queueStats()[static::q('failed.limited')]['ready'] ?? 0, 'nothing in the failed store');
    }

    public function testALimitTheTasksCarryHoldsOnWorkersWithoutLimits(): void
    {
        $this->startWorkers([]);
        $this->startScheduler([['order_paid', 'work', 'limited', 0, ['limit' => ['concurrency' => 1, 'key' => 'customer:{c}']]]]);
        $ids = [];
        for ($i = 0; $i < 4; $i++) {
            foreach (['a', 'b', 'c'] as $key) {
                $ids[] = Task::create('limited', 'work', ['c' => $key, 'ms' => 150, 'tag' => "$key$i"], 0, [
                    'limit' => ['concurrency' => 1, 'key' => 'customer:{c}'],
                ]);
            }
        }
        // Made by the Scheduler of an event: the registration's limit, the same key.
        for ($i = 0; $i < 3; $i++) {
            (new \Asynclib\Ebats\Event('order_paid'))->setOptions(['c' => 'a', 'ms' => 150, 'tag' => "e$i"])->publish();
        }
        $this->waitFor(fn () => count(array_filter($this->intervals(), static fn (array $r): bool => $r['end'] !== null)) >= 15 ?: null, 60, 'every task ran');
        foreach ($ids as $id) {
            $this->assertSame(1, $this->waitCallbacks($id, 1, 10, 'its callback')[0]['attempt'], 'a task held back keeps its attempt');
        }
        $this->assertSame(0, self::queueStats()[static::q('failed.limited')]['ready'] ?? 0, 'nothing in the failed store');
        $runs = $this->intervals();
        $this->assertCount(15, $runs);
        foreach (['a', 'b', 'c'] as $key) {
            $of = array_values(array_filter($runs, static fn (array $r): bool => $r['key'] === $key));
            $this->assertSame(1, self::mostAtOnce($of), "two tasks of key $key ran at once: " . json_encode($of));
        }
        $this->assertCount(7, array_filter($runs, static fn (array $r): bool => $r['key'] === 'a'), 'the events\' tasks ran, key a');
        $this->assertGreaterThanOrEqual(2, self::mostAtOnce($runs), 'tasks of different keys run side by side');
    }

    public function testABadLimitToCarryIsRefusedWhereTheTaskIsMade(): void
    {
        $cases = [
            [['limit' => '2/s'], "'limit' must be an array of keys"],
            [['limit' => ['rate' => '2/s', 'name' => 'x']], "takes no 'name'"],
            [['limit' => []], "'limit': a limit needs a rate, a concurrency or both"],
            [['limit' => ['rate' => '2/d']], 'a rate is written'],
            [['limit' => ['concurrency' => 1, 'key' => 'c:{']], "key template 'c:{'"],
            [['limits' => ['rate' => '2/s']], "unknown option 'limits'"],
        ];
        foreach ($cases as [$options, $message]) {
            foreach ([
                fn () => Task::create('limited', 'work', ['c' => 1], 0, $options),
                fn () => \Asynclib\Ebats\EventManager::register('order_paid', 'work', 'limited', 0, $options),
            ] as $make) {
                $e = self::thrown($make);
                $this->assertInstanceOf(TaskException::class, $e, json_encode($options));
                $this->assertStringContainsString($message, $e->getMessage());
            }
        }
        $this->assertSame(0, self::queueStats()[static::q('task.limited')]['ready'] ?? 0, 'nothing was published');
    }

    public function testBadLimitOptionsAreRefused(): void
    {
        $worker = new Worker(static function (): void {
        });
        $this->assertSame($worker, $worker->setLimit(['concurrency' => 2, 'key' => 'c:{customer}', 'name' => 'send']));
        $cases = [
            [[], 'a limit needs a rate, a concurrency or both'],
            [['concurrency' => 0], 'a concurrency limit is 1 to 1000000 tasks at once, not 0'],
            [['concurrency' => 1, 'keys' => 'x'], "a limit has no key 'keys'"],
            [['concurrency' => 1, 'key' => 'c:{'], "key template 'c:{'"],
            [['concurrency' => '1'], "a limit's 'concurrency' is a whole number"],
            [['rate' => 20], "a limit's 'rate' is a string"],
            [['rate' => '10/d'], 'a rate is written'],
            [['burst' => 2, 'concurrency' => 1], 'a burst goes with a rate'],
            [['rate' => '1/s', 'name' => 'bad name'], 'bad name'],
            [[1], 'a limit is an array of keys'],
        ];
        foreach ($cases as [$options, $message]) {
            $e = self::thrown(fn () => $worker->setLimit($options));
            $this->assertInstanceOf(TaskException::class, $e, json_encode($options));
            $this->assertStringContainsString($message, $e->getMessage());
        }
    }
}
