<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\Group;
use Asynclib\Ebats\Status;
use Asynclib\Ebats\Task;
use Asynclib\Ebats\Worker;
use Asynclib\Exception\ConnectionedException;
use Asynclib\Exception\TaskException;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\ProcTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * `/status.json`, `ebats status` and the worker parent's monitor line, against real workers and schedulers:
 * the figures equal the real processes and the broker's own counts; discovery through the broker; --watch.
 */
final class StatusTest extends ProcTestCase
{
    private function cli(array $args, float $timeout = 30, array $env = []): Process
    {
        return Process::run(array_merge(TestEnv::phpCommand(), [TestEnv::repoRoot() . '/php/bin/ebats', 'status'], $args), static::childEnv($env), $timeout);
    }

    private function status(string $addr): array
    {
        [$code, $body] = self::httpGet($addr, '/status.json');
        $this->assertSame(200, $code, $body);
        $doc = json_decode($body, true);
        $this->assertIsArray($doc, $body);
        return $doc;
    }

    /** Polls /status.json until $ok accepts it. */
    private function waitStatus(string $addr, callable $ok, float $timeout, string $what): array
    {
        $last = null;
        $doc = Process::until(function () use ($addr, $ok, &$last) {
            [$code, $body] = self::httpGet($addr, '/status.json');
            $last = $body;
            $d = $code === 200 ? json_decode($body, true) : null;
            return is_array($d) && $ok($d) ? $d : null;
        }, $timeout, 0.2);
        if ($doc === null) {
            $this->fail("timed out waiting for: $what\nlast status: $last\n" . $this->diagnostics());
        }
        return $doc;
    }

    /** @return array<string,array> the processes of a status by role ('child' => list) */
    private static function byRole(array $doc): array
    {
        $out = [];
        foreach ($doc['processes'] as $p) {
            $out[$p['role']][] = $p;
        }
        return $out;
    }

    public function testAWorkersFiguresInJsonAndOnTheCommandLine(): void
    {
        $addr = '127.0.0.1:' . self::freePort();
        $worker = $this->startWorker(['procs' => 2, 'debug' => false, 'env' => ['EBATS_T_METRICS' => $addr]]);

        // 4 succeed, 1 fails; then one delayed task waits in a delay level.
        $ids = [];
        for ($i = 0; $i < 5; $i++) {
            $ids[] = Task::create('demo', $i < 4 ? 'ok' : 'fail', ['i' => $i]);
        }
        $this->waitFor(fn () => count($this->records('cb')) >= 5 ? true : null, 20, '5 callbacks');
        Task::create('demo', 'ok', ['late' => 1], 600);
        // Both children busy with a slow task, three more waiting behind them.
        $published = microtime(true);
        $slow = [Task::create('demo', 'slow', ['ms' => 8000]), Task::create('demo', 'slow', ['ms' => 8000])];
        $this->waitFor(fn () => count(array_filter($this->records('run'), static fn ($r) => $r['name'] === 'slow')) === 2 ? true : null, 20, 'both slow tasks running');
        $seenRunning = microtime(true);
        for ($i = 0; $i < 3; $i++) {
            Task::create('demo', 'ok', ['after' => $i]);
        }

        $doc = $this->waitStatus($addr, static fn (array $d): bool => $d['totals']['in_flight'] === 2 && $d['depths']['ready'] === 3, 10, 'two in flight and three ready');
        $read = microtime(true);
        $this->assertSame(1, $doc['version']);
        $this->assertSame('worker', $doc['role']);
        $this->assertSame(['demo'], $doc['topics']);
        $this->assertSame($addr, $doc['address']);
        $this->assertSame($worker->pid(), $doc['pid']);
        $this->assertSame(['running' => 2, 'expected' => 2], $doc['children']);

        // The pids are the real ones: the parent, and its children (the metrics process and two worker children).
        $roles = self::byRole($doc);
        $this->assertSame($worker->pid(), $roles['parent'][0]['pid']);
        $real = $worker->childPids();
        sort($real);
        $shown = array_merge(array_column($roles['child'], 'pid'), array_column($roles['metrics'], 'pid'));
        sort($shown);
        $this->assertSame($real, $shown);
        $this->assertSame([0, 1], array_column($roles['child'], 'slot'));

        // Tasks done: 5 over the worker and over its children, one failed; both slow tasks in hand.
        $this->assertSame(5, $doc['totals']['done']);
        $this->assertSame(4, $doc['totals']['succeeded']);
        $this->assertSame(1, $doc['totals']['failed']);
        $this->assertSame(5, $doc['totals']['rate_per_minute']);
        $this->assertSame(5, array_sum(array_column($roles['child'], 'done')));
        $this->assertSame(1, array_sum(array_column($roles['child'], 'failed')));
        // Run and wait times, as the /metrics histograms count them: five runs ended, seven tasks begun.
        $this->assertSame(5, $doc['task_times']['run_seconds_count']);
        $this->assertSame(7, $doc['task_times']['wait_seconds_count']);
        $this->assertGreaterThan(0, $doc['task_times']['run_seconds_sum']);
        $inHand = array_column(array_column($roles['child'], 'task'), 'id');
        sort($inHand);
        sort($slow);
        $this->assertSame($slow, $inHand);
        foreach ($roles['child'] as $c) {
            $this->assertSame(1, $c['in_flight']);
            $this->assertSame('slow', $c['task']['name']);
            // Started between its publishing and its being seen running; running from then to when the document
            // was made (after it was seen running, before it was read). 1 ms for the millisecond clock.
            $started = $c['task']['started_ms'] / 1000;
            $this->assertGreaterThanOrEqual($published - 0.001, $started, 'started after it was published');
            $this->assertLessThanOrEqual($seenRunning + 0.001, $started, 'started before it was seen running');
            $this->assertGreaterThanOrEqual($seenRunning - $started - 0.001, $c['task']['running_seconds']);
            $this->assertLessThanOrEqual($read - $started + 0.001, $c['task']['running_seconds']);
            $this->assertGreaterThan(1_000_000, $c['rss_bytes']);
            $this->assertIsNumeric($c['cpu_percent']);
            $this->assertIsNumeric($c['cpu_seconds']);
        }

        // Depths equal what rabbitmqctl says.
        $q = self::queueStats();
        $this->assertSame($q[static::q('task.demo')]['ready'], $doc['depths']['ready']);
        $this->assertSame($q[static::q('task.demo')]['consumers'], $doc['depths']['consumers']);
        $this->assertSame($q[static::q('failed.demo')]['ready'], $doc['depths']['failed']);
        $this->assertSame(1, $doc['depths']['failed']);
        $delayed = 0;
        foreach ($q as $name => $s) {
            $delayed += str_starts_with($name, static::q('delay.L')) ? $s['ready'] : 0;
        }
        $this->assertSame(1, $delayed);
        $this->assertSame($delayed, $doc['depths']['delayed']);
        $this->assertNull($doc['depths']['unacked']);
        $this->assertSame('at most', $doc['depths']['oldest_wait_is']);
        $this->assertGreaterThan(0, $doc['depths']['oldest_wait_seconds']);

        // The command line prints the same figures.
        $p = $this->cli(["--metrics=$addr"]);
        $this->assertSame(0, $p->exitCode(), $p->describe());
        $out = $p->stdout();
        $this->assertStringContainsString("worker demo  $addr", $out);
        $this->assertStringContainsString('children 2/2', $out);
        foreach ($roles['child'] as $c) {
            $this->assertMatchesRegularExpression("/^  {$c['pid']}\\s+child\\s+{$c['slot']}\\s+\\S+\\s+{$c['done']}\\s+{$c['failed']}\\s+.*slow {$c['task']['id']} \\(/m", $out);
        }
        $this->assertMatchesRegularExpression("/^  {$worker->pid()}\\s+parent\\s/m", $out);
        $this->assertStringContainsString('total: 5 done, 4 succeeded, 1 failed, 0 retried, 5 in the last minute, 2 in flight', $out);
        $this->assertMatchesRegularExpression('/queues: ready 3  unacked -  delayed 1  failed 1  consumers 2  oldest wait <= [\d.]+[smhd]/', $out);

        $p = $this->cli(["--metrics=$addr", '--json']);
        $this->assertSame(0, $p->exitCode(), $p->describe());
        $json = json_decode($p->stdout(), true);
        $this->assertTrue($json[0]['up']);
        $this->assertSame($doc['pid'], $json[0]['status']['pid']);
        $this->assertSame(5, $json[0]['status']['totals']['done']);

        // The monitor line is off by default.
        $this->assertStringNotContainsString('monitor:', $worker->stderr());
    }

    public function testDiscoveryFindsWorkersAndSchedulersWithoutAddresses(): void
    {
        [$wAddr, $sAddr] = ['127.0.0.1:' . self::freePort(), '127.0.0.1:' . self::freePort()];
        $worker = $this->startWorker(['debug' => false, 'env' => ['EBATS_T_METRICS' => $wAddr]]);
        $scheduler = $this->startFixture('scheduler', 'scheduler.php', ['EBATS_METRICS_ADDRESS' => $sAddr]);
        $this->waitConsumers(static::q('events'), 1, 20, [$scheduler], true);

        $found = $this->waitFor(static function () use ($wAddr, $sAddr): ?array {
            $by = array_column(Status::discover(), null, 'address');
            return isset($by[$wAddr], $by[$sAddr]) ? $by : null;
        }, 20, 'both processes announced');
        $this->assertSame(['worker', ['demo'], $worker->pid()], [$found[$wAddr]['role'], $found[$wAddr]['topics'], $found[$wAddr]['pid']]);
        $this->assertSame(['scheduler', [], $scheduler->pid()], [$found[$sAddr]['role'], $found[$sAddr]['topics'], $found[$sAddr]['pid']]);
        $this->assertSame($sAddr, $found[$sAddr]['probe']);
        $this->assertArrayHasKey('task_times', $status = Status::fetch($sAddr));
        $this->assertNull($status['task_times'], 'a scheduler has no task times');

        $p = $this->cli([]);
        $this->assertSame(0, $p->exitCode(), $p->describe());
        $this->assertStringContainsString("worker demo  $wAddr", $p->stdout());
        $this->assertMatchesRegularExpression("/^scheduler   $sAddr  host \\S+  pid {$scheduler->pid()}/m", $p->stdout());
        $this->assertMatchesRegularExpression("/^  {$scheduler->pid()}\\s+scheduler\\s/m", $p->stdout());

        // A process that died is shown as down (until it has been silent a minute); nothing answering exits 1.
        $scheduler->kill();
        $p = $this->cli([]);
        $this->assertSame(0, $p->exitCode(), 'the worker still answers: ' . $p->describe());
        $this->assertStringContainsString("$sAddr  DOWN: scheduler  (pid {$scheduler->pid()}", $p->stdout());
        $worker->kill();
        $p = $this->cli(['--json']);
        $this->assertSame(1, $p->exitCode(), $p->describe());
        $this->assertSame([false, false], array_column(json_decode($p->stdout(), true), 'up'));
    }

    public function testTheLeadingSchedulerShowsTheGroups(): void
    {
        $addr = '127.0.0.1:' . self::freePort();
        $scheduler = $this->startFixture('scheduler', 'scheduler.php', [
            'EBATS_METRICS_ADDRESS' => $addr, 'EBATS_T_REGISTER' => '[]', 'EBATS_DEBUG' => '1',
        ]);
        $this->waitFor(static fn () => str_contains($scheduler->stderr(), 'cron: took over the leadership'), 30, "the scheduler leads\n" . $scheduler->describe());
        // No worker yet: the group's members are pending.
        $id = Group::create([['topic' => 'demo', 'name' => 'ok'], ['topic' => 'demo', 'name' => 'ok'], ['topic' => 'demo', 'name' => 'ok']]);
        $row = fn (string $list) => $this->waitFor(static function () use ($addr, $id, $list): ?array {
            $g = Status::fetch($addr)['groups'] ?? null;
            return $g === null ? null : (array_column($g[$list], null, 'id')[$id] ?? null);
        }, 20, "the group in $list");
        $open = $row('in_flight');
        $this->assertSame([3, 0, 3, '', null], [$open['total'], $open['done'], $open['pending'], $open['origin'], $open['completed_at']]);
        $this->assertGreaterThanOrEqual(1, Status::fetch($addr)['groups']['open']);

        $this->startWorker();
        $done = $row('recently_done');
        $this->assertSame([3, 3, 3, 0, 0], [$done['total'], $done['done'], $done['succeeded'], $done['failed'], $done['pending']]);
        $this->assertIsInt($done['completed_at']);
        $groups = Status::fetch($addr)['groups'];
        $this->assertGreaterThanOrEqual(1, $groups['completions']);
        $this->assertNotContains($id, array_column($groups['in_flight'], 'id'));
        $p = $this->cli(["--metrics=$addr"]);
        $this->assertMatchesRegularExpression('/^  groups: 0 in flight, [1-9]\d* completed while leading/m', $p->stdout(), $p->describe());
    }

    public function testWatchRedrawsUntilSigterm(): void
    {
        $addr = '127.0.0.1:' . self::freePort();
        $this->startWorker(['debug' => false, 'env' => ['EBATS_T_METRICS' => $addr]]);
        $watch = Process::start(
            array_merge(TestEnv::phpCommand(), [TestEnv::repoRoot() . '/php/bin/ebats', 'status', "--metrics=$addr", '--watch=0.3']),
            static::childEnv(),
            ['name' => 'watch']
        );
        $clear = "\033[H\033[2J";
        $this->waitFor(static fn () => substr_count($watch->stdout(), $clear) >= 2 ? true : null, 20, 'two redraws');
        $this->assertStringContainsString("worker demo  $addr", $watch->stdout());
        $watch->signal(SIGTERM);
        $this->assertSame(0, $watch->waitExit(10), $watch->describe());
    }

    public function testMonitorLinePerChildAtTheInterval(): void
    {
        $worker = $this->startWorker(['procs' => 2, 'debug' => false, 'env' => ['EBATS_T_MONITOR' => '1']]);
        for ($i = 0; $i < 3; $i++) {
            Task::create('demo', 'ok', ['i' => $i]);
        }
        $this->waitFor(fn () => count($this->records('cb')) >= 3 ? true : null, 20, '3 callbacks');
        $children = $worker->childPids();
        $this->assertCount(2, $children);
        $lines = $this->waitFor(static function () use ($worker, $children): ?array {
            preg_match_all('/^\[ebats (\d\d):(\d\d):(\d\d)\.(\d{3}) INFO pid=(\d+)\] monitor: child (\d+) \(slot (\d)\) cpu ([\d.]+)% rss ([\d.]+) MB tasks (\d+) done$/m', $worker->stderr(), $m, PREG_SET_ORDER);
            $by = [];
            foreach ($m as $l) {
                $by[(int) $l[6]][] = $l;
            }
            foreach ($children as $c) {
                if (count($by[$c] ?? []) < 3) {
                    return null;
                }
            }
            return $by;
        }, 20, 'three monitor lines per child');
        $this->assertEqualsCanonicalizing($children, array_keys($lines));
        $done = 0;
        foreach ($lines as $pid => $ls) {
            $last = end($ls);
            $this->assertSame($worker->pid(), (int) $last[5], 'the parent logs them');
            $this->assertGreaterThan(1.0, (float) $last[9], 'rss in MB');
            $done += (int) $last[10];
            // one line a second: consecutive lines about 1 s apart
            $t = array_map(static fn ($l) => ((int) $l[1] * 3600 + (int) $l[2] * 60 + (int) $l[3]) + (int) $l[4] / 1000, $ls);
            for ($i = 1; $i < count($t); $i++) {
                $gap = fmod($t[$i] - $t[$i - 1] + 86400, 86400);
                $this->assertGreaterThan(0.8, $gap);
                $this->assertLessThan(1.8, $gap);
            }
        }
        $this->assertSame(3, $done, 'the tasks done by the two children');
    }

    public function testBadArguments(): void
    {
        // A wrong command line is refused with exit 2 (CliTest covers the reader itself).
        foreach ([['--metrics=nope'], ['--metrics='], ['--metrics=127.0.0.1:70000'], ['--metrics=127.0.0.1:1,x']] as $args) {
            $p = $this->cli($args);
            $this->assertSame(2, $p->exitCode(), $p->describe());
            $this->assertStringContainsString('invalid metrics address', $p->stderr());
        }
        $p = $this->cli(['--metrics']);
        $this->assertSame(2, $p->exitCode(), $p->describe());
        $this->assertStringContainsString('--metrics needs a value', $p->stderr());
        foreach ([['--watch=0'], ['--watch=abc'], ['--watch=-1']] as $args) {
            $p = $this->cli(array_merge(['--metrics=127.0.0.1:1'], $args));
            $this->assertSame(2, $p->exitCode(), $p->describe());
            $this->assertStringContainsString('--watch takes a number of seconds', $p->stderr());
        }
        $p = $this->cli(['extra']);
        $this->assertSame(2, $p->exitCode());
        $this->assertStringContainsString('status takes no arguments', $p->stderr());
        $p = $this->cli(['--verbose']);
        $this->assertSame(2, $p->exitCode());
        $this->assertStringContainsString('unknown option --verbose for status', $p->stderr());

        // Nothing listening: a clear line, exit 1.
        $closed = '127.0.0.1:' . self::freePort();
        $p = $this->cli(["--metrics=$closed"]);
        $this->assertSame(1, $p->exitCode(), $p->describe());
        $this->assertStringContainsString("$closed  DOWN", $p->stdout());
        $this->assertStringContainsString("cannot connect to $closed", $p->stdout());

        $this->assertInstanceOf(TaskException::class, self::thrown(static fn () => Status::fetch('nope')));
        $this->assertInstanceOf(TaskException::class, self::thrown(static fn () => Status::fetch($closed, 0)));
        $e = self::thrown(static fn () => Status::fetch($closed));
        $this->assertInstanceOf(ConnectionedException::class, $e);
        $this->assertStringContainsString("cannot connect to $closed", $e->getMessage());

        $w = new Worker(static function (): void {});
        foreach ([-1, 86401] as $bad) {
            $e = self::thrown(static fn () => $w->setMonitorInterval($bad));
            $this->assertInstanceOf(TaskException::class, $e);
            $this->assertStringContainsString('monitor interval must be between 0 and 86400 seconds', $e->getMessage());
        }
        $p = Process::runPhp(
            '<?php $w = new Asynclib\Ebats\Worker(fn () => null); $w->setQueue("demo");'
            . 'try { $w->run(); } catch (Asynclib\Exception\TaskException $e) { echo get_class($e), ": ", $e->getMessage(); }',
            static::childEnv(['EBATS_MONITOR_INTERVAL' => 'often']),
        );
        $this->assertStringContainsString("TaskException: ebats.monitor_interval must be a whole number of seconds from 0 to 86400, got 'often'", $p->stdout(), $p->describe());
    }
}
