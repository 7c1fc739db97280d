<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\Limits;
use Asynclib\Ebats\Task;
use Asynclib\Ebats\Worker;
use Asynclib\Exception\TaskException;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\ProcTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * Rate and concurrency limits as configured (`Limits`, `ebats limits:*`, `Worker::setLimit`): set, cleared and
 * listed on the broker, every bad input refused with a message naming it, and a worker child following a
 * run-time change within a second, merged with its code's limits (run time wins per scope).
 */
final class LimitsTest extends ProcTestCase
{
    protected function tearDown(): void
    {
        // The flow stream lives as long as the prefix: leave no limit behind.
        foreach (Limits::list() as $l) {
            Limits::clear($l['topic'], array_filter(['name' => $l['name'], 'key' => $l['key']], static fn ($v) => $v !== null));
        }
        parent::tearDown();
    }

    private function cli(array $args): Process
    {
        $bin = TestEnv::repoRoot() . '/php/bin/ebats';
        return Process::run(array_merge(TestEnv::phpCommand(), [$bin], $args), static::childEnv(), 30);
    }

    public function testSetClearAndListThroughPhp(): void
    {
        $this->assertSame([], Limits::list());
        $this->assertTrue(Limits::set('demo', ['rate' => '20/s', 'burst' => 5]));
        $this->assertFalse(Limits::set('demo', ['rate' => '20/s', 'burst' => 5]), 'the same limit again changes nothing');
        $this->assertTrue(Limits::set('demo', ['name' => 'send', 'concurrency' => 4]));
        $this->assertTrue(Limits::set('demo', ['key' => 'customer:{customer_id}', 'concurrency' => 1, 'rate' => '10/m']));
        $this->assertTrue(Limits::set('other', ['concurrency' => 2]));
        $this->assertTrue(Limits::set('demo', ['rate' => '30/s']), 'a new rate for the same scope replaces it');
        $this->assertSame([
            ['id' => 'demo', 'topic' => 'demo', 'name' => null, 'key' => null, 'rate' => '30/s', 'burst' => 0, 'concurrency' => null],
            ['id' => 'demo/send', 'topic' => 'demo', 'name' => 'send', 'key' => null, 'rate' => null, 'burst' => 0, 'concurrency' => 4],
            ['id' => 'demo/{customer:{customer_id}}', 'topic' => 'demo', 'name' => null, 'key' => 'customer:{customer_id}', 'rate' => '10/m', 'burst' => 0, 'concurrency' => 1],
        ], Limits::list('demo'));
        $this->assertSame(['demo', 'demo/send', 'demo/{customer:{customer_id}}', 'other'], array_column(Limits::list(), 'id'));

        $this->assertTrue(Limits::clear('demo', ['name' => 'send']));
        $this->assertFalse(Limits::clear('demo', ['name' => 'send']), 'cleared already');
        $this->assertTrue(Limits::clear('demo'));
        $this->assertTrue(Limits::clear('demo', ['key' => 'customer:{customer_id}']));
        $this->assertSame([], Limits::list('demo'));
        $this->assertSame(['other'], array_column(Limits::list(), 'id'));
    }

    public function testSetClearAndListThroughTheCommandLine(): void
    {
        $p = $this->cli(['limits:set', 'demo', '--rate=5/10s', '--burst=2', '--concurrency=3']);
        $this->assertSame([0, "limit of 'demo' set\n"], [$p->exitCode(), $p->stdout()], $p->describe());
        $p = $this->cli(['limits:set', 'demo', '--rate=5/10s', '--burst=2', '--concurrency=3']);
        $this->assertSame("limit of 'demo' set (it was set already)\n", $p->stdout(), $p->describe());
        $p = $this->cli(['limits:set', 'demo', '--name=send', '--key=c:{c}', '--concurrency=1']);
        $this->assertSame("limit of 'demo/send per key c:{c}' set\n", $p->stdout(), $p->describe());
        $p = $this->cli(['limits:list']);
        $this->assertSame("demo  rate 5/10s burst 2, concurrency 3\ndemo/send/{c:{c}}  concurrency 1\n", $p->stdout(), $p->describe());
        $p = $this->cli(['limits:list', 'demo', '--json']);
        $this->assertSame(['demo', 'demo/send/{c:{c}}'], array_column(json_decode($p->stdout(), true)['limits'], 'id'), $p->describe());
        $p = $this->cli(['limits:clear', 'demo', '--name=send', '--key=c:{c}']);
        $this->assertSame("limit of 'demo/send per key c:{c}' cleared\n", $p->stdout(), $p->describe());
        $p = $this->cli(['limits:clear', 'demo', '--name=send', '--key=c:{c}']);
        $this->assertSame("no run-time limit of 'demo/send per key c:{c}'\n", $p->stdout(), $p->describe());
        $this->assertSame(0, $this->cli(['limits:clear', 'demo'])->exitCode());
        $this->assertSame("no run-time limits\n", $this->cli(['limits:list'])->stdout());

        // Bad input: a clear message and a failing exit code, nothing written.
        foreach ([
            [['limits:set', 'demo', '--rate=fast'], 'a rate is written'],
            [['limits:set', 'demo', '--concurrency=x'], "'concurrency' is a whole number"],
            [['limits:set', 'demo', '--concurrency=0'], 'a concurrency limit is 1 to'],
            [['limits:set', 'demo'], 'needs a rate, a concurrency'],
            [['limits:set', 'a b', '--rate=1/s'], 'topic'],
            [['limits:clear', 'demo', '--rate=1/s'], 'rate'],
            [['limits:set'], 'limits:set'],
        ] as [$args, $part]) {
            $p = $this->cli($args);
            $this->assertNotSame(0, $p->exitCode(), $p->describe());
            $this->assertStringContainsString($part, $p->stderr(), $p->describe());
        }
        $this->assertSame([], Limits::list());
    }

    public function testBadLimitsAreRefusedWithAReason(): void
    {
        $cases = [
            ['demo', [], 'needs a rate, a concurrency or both'],
            ['demo', ['rate' => '20'], 'a rate is written N/s'],
            ['demo', ['rate' => '0/s'], "a rate's count is 1 to"],
            ['demo', ['rate' => '1/25h'], "a rate's window is 1 ms to 24 h"],
            ['demo', ['rate' => 20], "'rate' is a string"],
            ['demo', ['rate' => '1/s', 'burst' => -1], 'a burst is 0 to'],
            ['demo', ['concurrency' => 2, 'burst' => 1], 'a burst goes with a rate'],
            ['demo', ['concurrency' => 0], 'a concurrency limit is 1 to'],
            ['demo', ['concurrency' => 1.5], "'concurrency' is a whole number"],
            ['demo', ['concurrency' => 1, 'name' => 'bad name'], 'task name'],
            ['demo', ['concurrency' => 1, 'key' => 'c:{'], 'template'],
            ['demo', ['concurrency' => 1, 'keys' => 'c'], "no key 'keys'"],
            ['demo', [3], 'an array of keys'],
            ['', ['concurrency' => 1], 'topic'],
            ['a b', ['concurrency' => 1], 'topic'],
        ];
        foreach ($cases as [$topic, $limit, $part]) {
            $e = self::thrown(static fn () => Limits::set($topic, $limit));
            $this->assertInstanceOf(TaskException::class, $e, json_encode([$topic, $limit]));
            $this->assertStringContainsString($part, $e->getMessage(), json_encode([$topic, $limit]));
        }
        foreach ([['rate' => '1/s'], ['name' => 'a b'], [1]] as $scope) {
            $this->assertInstanceOf(TaskException::class, self::thrown(static fn () => Limits::clear('demo', $scope)), json_encode($scope));
        }
        $this->assertInstanceOf(TaskException::class, self::thrown(static fn () => Limits::list('a b')));
        $this->assertInstanceOf(TaskException::class, self::thrown(static fn () => Limits::list('')));
        // In code, checked when set.
        $w = new Worker(static function (): void {});
        $e = self::thrown(static fn () => $w->setLimit(['rate' => 'often']));
        $this->assertInstanceOf(TaskException::class, $e);
        $this->assertStringContainsString('a rate is written', $e->getMessage());
        $this->assertSame($w, $w->setLimit(['rate' => '1/s']), 'setLimit() returns the worker');
        $this->assertSame([], Limits::list(), 'nothing was written');
    }

    /** The limits in force the worker at $addr shows in /status.json, as "id=what@source"; null until it answers. */
    private function shownLimits(string $addr): ?array
    {
        [$code, $body] = self::httpGet($addr, '/status.json');
        $doc = $code === 200 ? json_decode($body, true) : null;
        if (!is_array($doc) || !isset($doc['limits']['in_force'])) {
            return null;
        }
        return array_map(static fn (array $l): string => sprintf(
            '%s=%s%s@%s',
            $l['id'],
            $l['rate'] ?? '',
            $l['concurrency'] !== null ? 'c' . $l['concurrency'] : '',
            $l['source']
        ), $doc['limits']['in_force']);
    }

    private function waitShownLimits(string $addr, array $want, float $timeout, string $what): void
    {
        $this->waitFor(fn () => $this->shownLimits($addr) === $want ?: null, $timeout, "$what: " . json_encode($want) . ', shown ' . json_encode($this->shownLimits($addr)), 0.05);
    }

    /** The counters of the limits that applied to the task $id when a child started it (its debug line). */
    private function appliedWhenStarted(Process $worker, string $id): ?string
    {
        return preg_match('/task start demo\/ok id=' . preg_quote($id, '/') . ' attempt=\d+ limits=\[([^\]]*)\]/', $worker->stderr(), $m) ? $m[1] : null;
    }

    public function testAWorkerChildFollowsARunTimeChangeWithinASecond(): void
    {
        $addr = '127.0.0.1:' . self::freePort();
        $worker = $this->startWorker(['topic' => 'demo', 'procs' => 2, 'env' => [
            'EBATS_T_METRICS' => $addr,
            'EBATS_T_LIMITS' => json_encode([['name' => 'ok', 'concurrency' => 2], ['name' => 'ok', 'concurrency' => 3]]),
        ]]);
        $this->waitShownLimits($addr, ['demo/ok=c3@code'], 15, 'the code limit (the later of one scope)');
        $id = Task::create('demo', 'ok', ['tag' => 'a']);
        $this->waitCallbacks($id, 1, 15, 'a task under the code limit');
        $this->assertSame('n.ok', $this->appliedWhenStarted($worker, $id), $worker->describe());

        // Run time wins over the code for the same scope, and adds its other scopes; within a second.
        $this->assertTrue(Limits::set('demo', ['name' => 'ok', 'concurrency' => 5]));
        $this->assertTrue(Limits::set('demo', ['rate' => '100/s', 'burst' => 10]));
        $this->waitShownLimits($addr, ['demo/ok=c5@run time', 'demo=100/s@run time'], 1.0, 'the run-time limits within a second');
        $id = Task::create('demo', 'ok', ['tag' => 'b']);
        $this->waitCallbacks($id, 1, 15, 'a task under the run-time limits');
        $this->assertSame('n.ok,t', $this->appliedWhenStarted($worker, $id), 'the child that ran it followed the change');
        $this->assertSame([], array_values(array_filter(Limits::list(), static fn (array $l): bool => $l['topic'] !== 'demo')));

        // Cleared: the code's limit again.
        $this->assertTrue(Limits::clear('demo', ['name' => 'ok']));
        $this->assertTrue(Limits::clear('demo'));
        $this->waitShownLimits($addr, ['demo/ok=c3@code'], 1.0, 'the code limit again within a second');

        // A limit the task carries applies beside the worker's own (and is told in the same line).
        $id = Task::create('demo', 'ok', ['tag' => 'c', 'k' => 'x'], 0, ['limit' => ['concurrency' => 1, 'key' => 'k:{k}']]);
        $this->waitCallbacks($id, 1, 15, 'a task carrying a limit');
        $this->assertMatchesRegularExpression('/^n\.ok,k\.[0-9a-f]+\.k:x$/', (string) $this->appliedWhenStarted($worker, $id));

        // The counters are exposed (held back by the enforcement, duplicates by unique tasks).
        [, $text] = self::httpGet($addr, '/metrics');
        foreach ([
            'ebats_tasks_held_back_total{topic="demo",reason="rate"} 0',
            'ebats_tasks_held_back_total{topic="demo",reason="concurrency"} 0',
            'ebats_tasks_duplicate_total{topic="demo"} 0',
            'ebats_topic_limits{topic="demo"} 1',
            'ebats_topic_limit_concurrency{topic="demo",limit="demo/ok",source="code"} 3',
        ] as $line) {
            $this->assertStringContainsString("$line\n", $text);
        }
        [, $body] = self::httpGet($addr, '/status.json');
        $doc = json_decode($body, true);
        $this->assertSame(['rate' => 0, 'concurrency' => 0], $doc['limits']['held_back']);
        $this->assertSame(0, $doc['limits']['duplicates']);
    }
}
