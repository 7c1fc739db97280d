<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\FailedStore;
use Asynclib\Ebats\History;
use Asynclib\Ebats\Schedules;
use Asynclib\Ebats\Task;
use Asynclib\Ebats\Topics;
use Asynclib\Exception\ConnectionedException;
use Asynclib\Exception\TaskException;
use Ebats\Tests\Lib\BrokerProxy;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\ProcTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * The execution history: real workers append a record of every run to the stream <prefix>.history when
 * ebats.history is on; History::read(), History::follow() and `ebats history` read it back.
 */
final class HistoryTest extends ProcTestCase
{
    private const ON = ['EBATS_HISTORY' => '1'];

    protected function tearDown(): void
    {
        TestEnv::setEnv('EBATS_HISTORY', null);
        parent::tearDown();
    }

    private function cli(array $args, float $timeout = 30, array $env = []): Process
    {
        $bin = TestEnv::repoRoot() . '/php/bin/ebats';
        return Process::run(array_merge(TestEnv::phpCommand(), [$bin], $args), static::childEnv($env), $timeout);
    }

    /** Polls History::read($filter) until it returns $n records; returns them. */
    private function waitRecords(int $n, array $filter = [], float $timeout = 20): array
    {
        $last = [];
        $got = Process::until(function () use ($n, $filter, &$last) {
            $last = History::read($filter + ['limit' => 100000]);
            return count($last) >= $n ? $last : null;
        }, $timeout, 0.2);
        $this->assertNotNull($got, "expected $n history records, got " . count($last) . "\n" . $this->diagnostics());
        return $got;
    }

    /** @return array<string,list<array>> records by task id */
    private static function byId(array $records): array
    {
        $out = [];
        foreach ($records as $r) {
            $out[$r['id']][] = $r;
        }
        return $out;
    }

    public function testRecordsOfKnownOutcomesFiltersTheCliAndAWorkerRestart(): void
    {
        $worker = $this->startWorker(['procs' => 2, 'debug' => false, 'env' => self::ON]);
        $expected = [];
        $t0 = (int) floor(microtime(true) * 1000);
        for ($i = 0; $i < 200; $i++) {
            $name = match (true) {
                $i % 10 < 6 => 'ok',
                $i % 10 < 8 => 'fail',
                default => 'retryOnce',
            };
            $id = Task::create('demo', $name, ['i' => $i]);
            $expected[$id] = $name;
        }
        // 120 ok, 40 fail, 40 retryOnce (a retry, then a success): 240 runs
        $records = $this->waitRecords(240);
        $this->assertCount(240, $records, 'one record per run, none more');
        $byId = self::byId($records);
        $this->assertEqualsCanonicalizing(array_keys($expected), array_keys($byId));
        $host = gethostname();
        foreach ($expected as $id => $name) {
            $runs = $byId[$id];
            // in stream order, which for runs in different children is the order their batches were sent
            usort($runs, static fn (array $a, array $b): int => $a['attempt'] <=> $b['attempt']);
            $outcomes = array_map(static fn (array $r): string => "{$r['attempt']}:{$r['outcome']}", $runs);
            $this->assertSame(
                ['ok' => ['1:succ'], 'fail' => ['1:fail'], 'retryOnce' => ['1:retry', '2:succ']][$name],
                $outcomes,
                "runs of $name $id"
            );
            foreach ($runs as $r) {
                $this->assertSame('demo', $r['topic']);
                $this->assertSame($name, $r['task']);
                $this->assertSame(['i' => $r['params']['i']], $r['params']);
                $this->assertFalse($r['params_truncated']);
                $this->assertSame($host, $r['host']);
                $this->assertGreaterThan(0, $r['pid']);
                $this->assertGreaterThanOrEqual($t0, $r['start_ms']);
                $this->assertGreaterThanOrEqual($r['start_ms'], $r['end_ms']);
                $this->assertIsFloat($r['ms'] + 0.0);
                $this->assertNull($r['event']);
            }
            if ($name === 'fail') {
                $this->assertSame(1, $runs[0]['status']);
                $this->assertSame('Asynclib\Exception\TaskException', $runs[0]['class']);
                $this->assertSame('task failed', $runs[0]['message']);
            }
            if ($name === 'retryOnce') {
                $this->assertSame([2, 0], [$runs[0]['status'], $runs[1]['status']]);
                $this->assertSame('again please', $runs[0]['message']);
            }
        }
        // the same as the callback was told (status, attempt, message), run by run
        foreach ($this->records('cb') as $cb) {
            $match = array_filter($byId[$cb['taskid']], static fn (array $r): bool => $r['attempt'] === $cb['attempt']);
            $this->assertCount(1, $match);
            $r = array_values($match)[0];
            $this->assertSame([$cb['status'], $cb['message'], $cb['pid']], [$r['status'], $r['message'], $r['pid']]);
        }

        // filters
        $this->assertCount(40, History::read(['status' => 'fail']));
        $this->assertCount(40, History::read(['status' => 1]));
        $this->assertCount(160, History::read(['status' => 'succ']));
        $this->assertCount(80, History::read(['task' => 'retryOnce']));
        $this->assertCount(40, History::read(['task' => 'retryOnce', 'status' => 'retry']));
        $this->assertCount(240, History::read(['topic' => 'demo', 'since' => '1h']));
        $this->assertSame([], History::read(['topic' => 'other']));
        $newest = History::read(['limit' => 5]);
        $this->assertSame(array_slice($records, -5), $newest, 'limit keeps the newest, oldest first');

        // a failed-store entry traced to its history records by its id
        $failed = FailedStore::list('demo', 1000);
        $this->assertCount(40, $failed);
        $entry = $failed[0];
        $trace = History::read(['id' => $entry['id']]);
        $this->assertCount(1, $trace);
        $this->assertSame(['fail', 'fail'], [$expected[$entry['id']], $trace[0]['outcome']]);
        $this->assertStringContainsString($entry['id'], $this->cli(['failed:list', 'demo'])->stdout());

        // the command line: a table, JSON lines, --name value and --name=value
        $retried = array_search('retryOnce', $expected, true);
        $table = $this->cli(['history', '--id', $retried]);
        $this->assertSame(0, $table->exitCode(), $table->describe());
        $lines = array_values(array_filter(explode("\n", $table->stdout())));
        $this->assertCount(3, $lines, $table->stdout());
        $this->assertMatchesRegularExpression('/^TIME\s+TOPIC\s+TASK\s+ID\s+STATUS\s+ATTEMPT\s+MS\s+PID\s+MESSAGE$/', $lines[0]);
        // (the two runs may be in either order: each child sends its records in batches of its own)
        $retryLine = "/^\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\.\\d{3}\\s+demo\\s+retryOnce\\s+$retried\\s+retry\\s+1\\s+[\\d.]+\\s+\\d+\\s+Asynclib\\\\Exception\\\\RetryException: again please$/";
        $this->assertCount(1, preg_grep($retryLine, $lines), $table->stdout());
        $this->assertCount(1, preg_grep("/\\s+$retried\\s+succ\\s+2\\s+[\\d.]+\\s+\\d+\\s+ok\\.$/", $lines), $table->stdout());
        $json = $this->cli(['history', '--status=fail', '--limit=1000', '--json']);
        $this->assertSame(0, $json->exitCode(), $json->describe());
        $rows = array_map(static fn (string $l): array => json_decode($l, true, 512, JSON_THROW_ON_ERROR), array_filter(explode("\n", $json->stdout())));
        $this->assertCount(40, $rows);
        $this->assertSame(['fail'], array_values(array_unique(array_column($rows, 'outcome'))));
        $default = $this->cli(['history']);
        $this->assertCount(101, array_filter(explode("\n", $default->stdout())), 'the newest 100 by default, and the header');

        // another worker after a restart: the records stay, new ones follow them
        $worker->stop();
        $this->startWorker(['debug' => false, 'env' => self::ON, 'name' => 'worker-2']);
        $id = Task::create('demo', 'ok', ['i' => 200]);
        $after = $this->waitRecords(241);
        $this->assertSame(array_slice($after, 0, 240), $records);
        $this->assertSame($id, $after[240]['id']);
    }

    public function testTasksHeldBackByALimitOrAPauseAreRecorded(): void
    {
        // A key rate holds the tasks of a full key back through the delay levels (a `held` record each
        // time); a topic concurrency of 1 makes the second child wait in place (its run's record says so).
        $limits = [['rate' => '1/s', 'key' => 'c:{c}', 'name' => 'ping'], ['concurrency' => 1]];
        $this->startWorker(['procs' => 2, 'prefetch' => 1, 'limits' => $limits, 'debug' => false, 'env' => self::ON]);
        // Both children consuming before the tasks come: a child started late under load would leave
        // every slow task to the other, and none would wait for the permit.
        $this->waitConsumers(static::q('task.demo'), 2, 20);
        // The slow tasks first: the first two go one to each child, so one of them waits in place with a
        // task it then runs. (A ping first could leave its child waiting for the permit with a ping,
        // and then hold it back for its key's rate: no run would have waited.)
        $slow = [];
        for ($i = 0; $i < 4; $i++) {
            $slow[] = Task::create('demo', 'slow', ['ms' => 200, 'tag' => "s$i"]);
        }
        $pings = [];
        for ($i = 0; $i < 3; $i++) {
            $pings[] = Task::create('demo', 'ping', ['c' => 'k1', 'i' => $i]);
        }
        foreach (array_merge($pings, $slow) as $id) {
            $this->waitCallbacks($id, 1, 30, 'every task ends');
        }
        $runs = $this->waitRecords(7, ['status' => 'succ']);
        $held = History::read(['status' => 'held']);
        $this->assertGreaterThanOrEqual(2, count($held), 'two tasks of the full key at least were held back');
        foreach ($held as $r) {
            $this->assertSame([4, 'held', 'rate', 1], [$r['status'], $r['outcome'], $r['held'], $r['attempt']]);
            $this->assertContains($r['id'], $pings);
            $this->assertMatchesRegularExpression("/^held back \\d+ s: rate of '/", $r['message']);
        }
        $this->assertSame($held, History::read(['held' => 'rate', 'status' => 4]), 'by status name or number, by hold');
        $waited = History::read(['held' => 'concurrency']);
        $this->assertNotEmpty($waited, 'a run that waited in place for the topic permit');
        foreach ($waited as $r) {
            $this->assertSame('succ', $r['outcome']);
        }
        foreach ($runs as $r) {
            $this->assertSame(1, $r['attempt'], 'a held task keeps its attempt');
        }
        $cli = $this->cli(['history', '--held=rate', '--json']);
        $this->assertSame(0, $cli->exitCode(), $cli->describe());
        $this->assertCount(count($held), array_filter(explode("\n", trim($cli->stdout()))));
        $bad = $this->cli(['history', '--held=slow']);
        $this->assertNotSame(0, $bad->exitCode());
        $this->assertStringContainsString("unknown hold 'slow'", $bad->stdout() . $bad->stderr());
    }

    public function testTasksGivenBackByAPauseAreRecorded(): void
    {
        $this->startWorker(['prefetch' => 5, 'debug' => false, 'env' => self::ON]);
        $ids = [];
        for ($i = 0; $i < 30; $i++) {
            $ids[] = Task::create('demo', 'slow', ['ms' => 100, 'tag' => "p$i"]);
        }
        $this->waitFor(fn () => count($this->records('run')) >= 2 ?: null, 20, 'tasks running');
        $this->assertTrue(Topics::pause('demo'));
        try {
            $held = $this->waitRecords(1, ['held' => 'paused'], 20);
        } finally {
            Topics::resume('demo');
        }
        foreach ($held as $r) {
            $this->assertSame(['held', 1], [$r['outcome'], $r['attempt']]);
            $this->assertStringContainsString("topic 'demo' is paused", $r['message']);
        }
        foreach ($ids as $id) {
            $this->waitCallbacks($id, 1, 30, 'every task after the resume');
        }
        $this->assertCount(30, History::read(['status' => 'succ', 'limit' => 1000]));
    }

    public function testFollowPrintsARecordAppendedAfterItStarted(): void
    {
        $this->startWorker(['debug' => false, 'env' => self::ON]);
        $before = Task::create('demo', 'ok', ['when' => 'before']);
        $this->waitRecords(1);
        $bin = TestEnv::repoRoot() . '/php/bin/ebats';
        $follow = Process::start(
            array_merge(TestEnv::phpCommand(), [$bin, 'history', '--follow', '--json', '--task', 'ok']),
            static::childEnv(),
            ['name' => 'follow', 'stdout' => "{$this->tmp}/follow.out", 'stderr' => "{$this->tmp}/follow.err"]
        );
        $this->waitConsumers(static::q('history'), 1, 20, [$follow], stream: true);
        Task::create('demo', 'fail', ['when' => 'filtered out']);
        $after = Task::create('demo', 'ok', ['when' => 'after']);
        $line = $this->waitFor(
            fn () => str_contains($follow->stdout(), $after) ? $follow->stdout() : null,
            20,
            'the follower prints the new record'
        );
        $rows = array_map(static fn (string $l): array => json_decode($l, true, 512, JSON_THROW_ON_ERROR), array_filter(explode("\n", $line)));
        $this->assertSame([$after], array_column($rows, 'id'), 'only records written after it started, and only those of the filter');
        $this->assertNotContains($before, array_column($rows, 'id'));
        $start = microtime(true);
        $this->assertSame(0, $follow->stop(5.0), 'SIGTERM ends --follow: ' . $follow->describe());
        $this->assertLessThan(3.0, microtime(true) - $start);
    }

    /** Issue 18 item 13: `history --follow` moves to the next URL of the list when its node dies. */
    public function testFollowMovesToTheNextNodeWhenItsNodeDies(): void
    {
        $this->startWorker(['debug' => false, 'env' => self::ON]);
        Task::create('demo', 'ok', ['when' => 'the stream exists']);
        $this->waitRecords(1);
        $proxy = new BrokerProxy();
        $port = $proxy->start();
        $bin = TestEnv::repoRoot() . '/php/bin/ebats';
        $follow = Process::start(
            array_merge(TestEnv::phpCommand(), [$bin, 'history', '--follow', '--json', '--task', 'ok']),
            static::childEnv(['EBATS_AMQP_URL' => TestEnv::amqpUrl(null, $port) . ',' . TestEnv::amqpUrl()]),
            ['name' => 'follow', 'stdout' => "{$this->tmp}/follow.out", 'stderr' => "{$this->tmp}/follow.err"]
        );
        $this->waitConsumers(static::q('history'), 1, 20, [$follow], stream: true);
        $before = Task::create('demo', 'ok', ['when' => 'before the cut']);
        $this->waitFor(fn () => str_contains($follow->stdout(), $before) ? true : null, 20, 'the follower prints a record through the first node');
        $proxy->cut();
        $after = Task::create('demo', 'ok', ['when' => 'after the cut']);
        $out = $this->waitFor(
            fn () => str_contains($follow->stdout(), $after) ? $follow->stdout() : null,
            30,
            'the follower to read on through the next node'
        );
        $rows = array_map(static fn (string $l): array => json_decode($l, true, 512, JSON_THROW_ON_ERROR), array_filter(explode("\n", $out)));
        $this->assertSame([$before, $after], array_column($rows, 'id'), 'nothing lost, nothing printed twice');
        $this->assertFalse($follow->hasExited(), 'still following: ' . $follow->describe());
        $this->assertSame(0, $follow->stop(5.0), 'SIGTERM ends --follow: ' . $follow->describe());
    }

    public function testOffByDefaultNoStreamIsDeclared(): void
    {
        $this->startWorker(['debug' => false]);
        $id = Task::create('demo', 'ok', []);
        $this->waitCallbacks($id, 1, 20);
        $this->assertArrayNotHasKey(static::q('history'), TestEnv::listQueues(static::prefix()));
        $e = self::thrown(static fn () => History::read());
        $this->assertInstanceOf(ConnectionedException::class, $e);
        $this->assertStringContainsString("the stream '" . static::q('history') . "' does not exist", $e->getMessage());
        $cli = $this->cli(['history']);
        $this->assertSame(2, $cli->exitCode());
        $this->assertStringContainsString('ebats.history', $cli->stderr());
    }

    public function testLongParamsAreCutAndMarked(): void
    {
        $this->startWorker(['debug' => false, 'env' => self::ON + ['EBATS_HISTORY_PARAMS_BYTES' => '64']]);
        $small = Task::create('demo', 'ok', ['s' => 'x']);
        $big = Task::create('demo', 'ok', ['s' => str_repeat('é', 200)]);
        $byId = self::byId($this->waitRecords(2));
        $this->assertSame(['s' => 'x'], $byId[$small][0]['params']);
        $this->assertFalse($byId[$small][0]['params_truncated']);
        $cut = $byId[$big][0];
        $this->assertTrue($cut['params_truncated']);
        $this->assertIsString($cut['params']);
        $this->assertLessThanOrEqual(64, strlen($cut['params']));
        $this->assertGreaterThanOrEqual(62, strlen($cut['params']));
        $this->assertStringStartsWith(substr(json_encode(['s' => str_repeat('é', 200)], JSON_UNESCAPED_UNICODE), 0, 60), $cut['params']);
    }

    public function testSchedulesListShowsTheOutcomesOfTheLastFiring(): void
    {
        $this->startWorker(['debug' => false, 'env' => self::ON]);
        $cron = $this->startFixture('cron', 'cron_scheduler.php', [
            'EBATS_T_CRON' => json_encode([['* * * * * *', 'hist_tick', [], ['name' => 'every-second']]]),
            'EBATS_T_REGISTER' => json_encode([['hist_tick', 'ok', 'demo', 0], ['hist_tick', 'fail', 'demo', 0]]),
        ]);
        // some tasks of a firing ran
        $this->waitRecords(2, ['since' => '1m']);
        $cron->stop();
        $this->waitQueueDrained(static::q('task.demo'), 20);
        TestEnv::setEnv('EBATS_HISTORY', '1');
        $list = $this->waitFor(function () {
            $s = Schedules::list()[0] ?? null;
            return $s !== null && count($s['last_tasks']) === 2 ? $s : null;
        }, 20, 'both tasks of the last firing in the list');
        $this->assertSame('every-second', $list['name']);
        $outcomes = array_column($list['last_tasks'], 'outcome', 'task');
        ksort($outcomes);
        $this->assertSame(['fail' => 'fail', 'ok' => 'succ'], $outcomes);
        foreach ($list['last_tasks'] as $t) {
            $trace = History::read(['id' => $t['id']]);
            $this->assertSame($list['last_event_id'], $trace[0]['event_id']);
            $this->assertSame('hist_tick', $trace[0]['event']);
        }
        $cli = $this->cli(['schedules:list'], 30, self::ON);
        $this->assertStringContainsString('LAST TASKS', $cli->stdout());
        $this->assertMatchesRegularExpression('/every-second.*\s1 fail, 1 succ$/m', $cli->stdout());
        TestEnv::setEnv('EBATS_HISTORY', null);
        $this->assertNull(Schedules::list()[0]['last_tasks'], 'nothing looked up with the history off');
    }

    public function testBadSettingsFiltersAndAStreamWithOtherRetentionAreRefused(): void
    {
        $run = static fn (array $env): Process => Process::runPhp(
            '<?php $w = new Asynclib\Ebats\Worker(static function () {}); $w->setQueue("demo");'
            . ' try { $w->run(); echo "ran\n"; } catch (Throwable $e) { echo get_class($e), ": ", $e->getMessage(), "\n"; }',
            static::childEnv($env),
            20
        );
        $p = $run(self::ON + ['EBATS_HISTORY_MAX_AGE' => '7 days']);
        $this->assertStringContainsString("ConnectionedException: ebats configuration: ebats.history_max_age must be like 7D, 12h or 30m", $p->stdout());
        $p = $run(['EBATS_HISTORY' => 'perhaps']);
        $this->assertStringContainsString('ebats.history must be 0 or 1', $p->stdout());
        $p = $run(self::ON + ['EBATS_HISTORY_MAX_BYTES' => 'lots']);
        $this->assertStringContainsString('ebats.history_max_bytes must be a number of bytes', $p->stdout());

        // the stream made with 7D; a worker asking for 2D is refused, naming the stream
        $this->startWorker(['debug' => false, 'env' => self::ON]);
        $this->assertContains(static::q('history'), TestEnv::listStreams(static::prefix()));
        $p = $run(self::ON + ['EBATS_HISTORY_MAX_AGE' => '2D']);
        $this->assertStringContainsString("the history stream '" . static::q('history') . "' exists with other arguments", $p->stdout());
        $this->assertStringNotContainsString('ran', $p->stdout());

        foreach ([
            [['colour' => 'red'], "unknown history filter 'colour'"],
            [['status' => 'weird'], "unknown status 'weird'"],
            [['since' => 'yesterday'], 'since must be seconds or a number with a unit'],
            [['limit' => 0], 'limit must be a whole number'],
            [['topic' => ['x']], "history filter 'topic' must be a string or a number"],
        ] as [$filter, $message]) {
            $e = self::thrown(static fn () => History::read($filter));
            $this->assertInstanceOf(TaskException::class, $e, json_encode($filter));
            $this->assertStringContainsString($message, $e->getMessage());
        }
        $this->assertInstanceOf(\TypeError::class, self::thrown(static fn () => History::follow([], 'no_such_function')));
        $cli = $this->cli(['history', '--since=yesterday']);
        $this->assertSame(2, $cli->exitCode());
        $this->assertStringContainsString('since must be seconds', $cli->stderr());
        $cli = $this->cli(['history', '--topic']);
        $this->assertSame(2, $cli->exitCode());
        $this->assertStringContainsString('--topic needs a value', $cli->stderr());
    }
}
