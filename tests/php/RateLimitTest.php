<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\Task;
use Ebats\Tests\Lib\ProcTestCase;

/**
 * Rate limits (`Worker::setLimit`): starts counted on the broker across every worker process. A topic
 * limit is waited for in place; a key limit holds a task of a full key back (other keys go on) without
 * using an attempt. Starts are counted from the handlers' own timestamps. The topic rate is the issue's
 * check: 20/s (with a burst of 5) over 30 s, 4 processes in 2 parents: never more than limit + burst in any
 * second, at least 95 % of the limit over the time (RATE_SECS; the quorum variant runs it 10 s).
 */
class RateLimitTest extends ProcTestCase
{
    /** How long the topic rate is measured, in s. */
    protected const RATE_SECS = 30;
    /** The topic rate's limit per second and its burst. */
    private const RATE = 20;
    private const BURST = 5;
    /** @return list<array<string,mixed>> the run records of task $name, by time */
    private function runsOf(string $name): array
    {
        $runs = array_values(array_filter($this->records('run'), static fn (array $r): bool => $r['name'] === $name));
        usort($runs, static fn (array $a, array $b): int => $a['t'] <=> $b['t']);
        return $runs;
    }

    /** The most of $times (sorted, s) in any window of $window s. */
    private static function mostInAnyWindow(array $times, float $window): int
    {
        $most = 0;
        $j = 0;
        foreach ($times as $i => $t) {
            while ($times[$j] <= $t - $window) {
                $j++;
            }
            $most = max($most, $i - $j + 1);
        }
        return $most;
    }

    private function assertNoAttemptUsedAndNothingFailed(array $runs): void
    {
        $attempts = array_count_values(array_map(
            fn (array $cb): int => $cb['attempt'],
            array_filter($this->records('cb'), static fn (array $cb): bool => $cb['taskname'] === $runs[0]['name'])
        ));
        $this->assertSame([1], array_keys($attempts), 'a task waiting or held back by a rate uses no attempt');
        $this->assertSame(0, self::queueStats()[static::q('failed.demo')]['ready'] ?? 0, 'nothing in the failed store');
    }

    public function testATopicRateHoldsAcrossTwoWorkersAndIsReached(): void
    {
        $limits = [['rate' => self::RATE . '/s', 'burst' => self::BURST]];
        $this->startWorker(['procs' => 2, 'limits' => $limits, 'debug' => false, 'name' => 'worker-a']);
        $this->startWorker(['procs' => 2, 'limits' => $limits, 'debug' => false, 'name' => 'worker-b']);
        $n = self::RATE * (static::RATE_SECS + 3) + self::BURST;
        for ($i = 0; $i < $n; $i++) {
            Task::create('demo', 'ok', ['i' => $i]);
        }
        $first = $this->waitFor(fn () => $this->runsOf('ok')[0]['t'] ?? null, 20, 'the first task');
        $end = $first + static::RATE_SECS;
        $this->waitFor(fn () => microtime(true) > $end + 0.5 ?: null, static::RATE_SECS + 5, 'the measured time', 0.2);
        $times = array_values(array_filter(
            array_column($this->runsOf('ok'), 't'),
            static fn (float $t): bool => $t < $end
        ));
        $most = self::mostInAnyWindow($times, 1.0);
        $this->assertLessThanOrEqual(self::RATE + self::BURST, $most, 'starts in one second: limit + burst at most');
        // Over any stretch of the run, the burst comes once: the starts of any 10 s are at most the
        // limit's and the burst's.
        $this->assertLessThanOrEqual(10 * self::RATE + self::BURST, self::mostInAnyWindow($times, 10.0), 'starts in 10 s');
        $this->assertGreaterThanOrEqual(
            (int) ceil(0.95 * self::RATE * static::RATE_SECS),
            count($times),
            sprintf('starts in %d s at %d/s (at most %d in any second)', static::RATE_SECS, self::RATE, $most)
        );
        $pids = array_unique(array_column($this->runsOf('ok'), 'pid'));
        $this->assertGreaterThanOrEqual(3, count($pids), 'the starts came from several processes');
        $this->assertNoAttemptUsedAndNothingFailed($this->runsOf('ok'));
    }

    public function testAKeyRateHoldsBackTheTasksOfAFullKeyOnly(): void
    {
        $limits = [['rate' => '2/s', 'key' => 'c:{c}', 'name' => 'ping']];
        $this->startWorker(['procs' => 2, 'limits' => $limits, 'debug' => false, 'name' => 'worker-a']);
        $this->startWorker(['procs' => 2, 'limits' => $limits, 'debug' => false, 'name' => 'worker-b']);
        $keys = 50;
        $per = 4;
        for ($round = 0; $round < $per; $round++) {
            for ($k = 0; $k < $keys; $k++) {
                Task::create('demo', 'ping', ['c' => $k, 'r' => $round]);
            }
        }
        // A task of another name is not limited by the key limit of ping.
        $free = Task::create('demo', 'ok', ['c' => 1, 'tag' => 'free']);
        $runs = $this->waitFor(
            fn () => count($r = $this->runsOf('ping')) >= $keys * $per ? $r : null,
            30,
            'every task of every key'
        );
        $this->waitCallbacks($free, 1, 10, 'the task of another name');
        $byKey = [];
        foreach ($runs as $r) {
            $byKey[$r['params']['c']][] = $r['t'];
        }
        $this->assertCount($keys, $byKey);
        foreach ($byKey as $key => $times) {
            $this->assertCount($per, $times, "key $key: each task ran once");
            $this->assertLessThanOrEqual(2, self::mostInAnyWindow($times, 1.0), "key $key: starts in one second");
        }
        $this->waitFor(fn () => count($this->records('cb')) >= $keys * $per + 1 ?: null, 10, 'every callback');
        $this->assertNoAttemptUsedAndNothingFailed($runs);
    }
}
