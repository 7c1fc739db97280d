<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\EventManager;
use Asynclib\Ebats\Schedules;
use Asynclib\Exception\TaskException;
use Ebats\Tests\Lib\BrokerProxy;
use Ebats\Tests\Lib\CronTestCase;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\TestEnv;

/**
 * Periodic schedules with real scheduler processes: one leader fires each tick once across several schedulers,
 * through a kill -9 and a cut connection; run-time changes reach the running leader within a second; bad
 * expressions, zones and settings are refused with the reason.
 *
 * Firings are counted on a probe queue bound to the event exchange: each firing is an event whose header
 * x-ebats-cron holds its record (schedule, tick, late).
 */
final class CronTest extends CronTestCase
{
    private function startCron(string $name, array $schedules, ?int $port = null): Process
    {
        $env = ['EBATS_T_CRON' => json_encode($schedules), 'EBATS_HEARTBEAT' => '2'];
        if ($port !== null) {
            $env['EBATS_AMQP_URL'] = TestEnv::amqpUrl(null, $port);
        }
        return $this->startFixture($name, 'cron_scheduler.php', $env);
    }

    public function testThreeSchedulersFireEveryTickOnceThroughAKillAndACut(): void
    {
        $every = ['* * * * * *', 'cron.tick', ['n' => 1], ['name' => 'every', 'timezone' => 'UTC', 'catchup' => 10]];
        $proxies = [];
        $procs = [];
        for ($i = 0; $i < 3; $i++) {
            $proxies[$i] = new BrokerProxy();
            $procs[$i] = $this->startCron("cron$i", [$every], $proxies[$i]->start());
        }
        $leader = fn (): ?int => ($l = array_keys(array_filter($procs, [self::class, 'leads']))) ? end($l) : null;
        $first = $this->waitFor($leader, 20, 'a scheduler leads');
        $this->waitFor(fn () => count($this->firingsOf('every')) >= 5 ?: null, 10, 'five firings');

        // kill -9 the leader: another takes over.
        $procs[$first]->kill();
        $killedAt = microtime(true);
        $second = $this->waitFor(function () use ($procs, $first): ?int {
            foreach ($procs as $i => $p) {
                if ($i !== $first && self::leads($p)) {
                    return $i;
                }
            }
            return null;
        }, 10, 'a second scheduler takes over after kill -9');
        $this->assertLessThan(5.0, microtime(true) - $killedAt, 'takeover after kill -9');
        $n = count($this->firingsOf('every'));
        $this->waitFor(fn () => count($this->firingsOf('every')) >= $n + 5 ?: null, 10, 'firings from the second leader');

        // Cut the second leader's connection: the third takes over (the second, reconnecting, follows).
        $proxies[$second]->cut();
        $third = 3 - $first - $second;
        $this->waitFor(fn () => self::leads($procs[$third]) ?: null, 10, 'the third scheduler takes over after the cut');
        $proxies[$second]->start();
        $n = count($this->firingsOf('every'));
        $this->waitFor(fn () => count($this->firingsOf('every')) >= max($n + 5, 21) ?: null, 25, 'firings from the third leader, 20 s in all');
        $this->stopAll();

        $fired = $this->firingsOf('every');
        $ticks = array_map(static fn (array $f): int => $f['tick'], $fired);
        $counts = array_count_values($ticks);
        $twice = array_keys(array_filter($counts, static fn (int $c): bool => $c > 1));
        $this->assertSame([], $twice, 'ticks fired more than once');
        sort($ticks);
        $window = range($ticks[0], end($ticks), 1000);
        $missing = array_values(array_diff($window, $ticks));
        foreach ($fired as $f) {
            $this->assertSame('cron.tick', $f['event']);
            $this->assertSame(['n' => 1], $f['params']);
        }
        // Two takeovers, each immediate (a closed connection requeues the token at once): a missed tick is
        // fired late (catch-up 10 s), none is lost.
        $this->assertSame([], $missing, sprintf('%d ticks in the window, %d fired, missing: %s', count($window), count($ticks), json_encode($missing)));
        fwrite(STDERR, sprintf("\n[cron] %d ticks in %d s, each fired once; late: %d\n", count($ticks), count($window), count(array_filter($fired, static fn ($f) => $f['late']))));
    }

    public function testSigtermStopsTheLeaderWithinASecondAndGivesTheLeadershipBack(): void
    {
        $every = ['* * * * * *', 'cron.tick', [], ['name' => 'term', 'timezone' => 'UTC']];
        $a = $this->startCron('a', [$every]);
        $this->waitFor(fn () => self::leads($a) ?: null, 20, 'the first scheduler leads');
        $b = $this->startCron('b', [$every]);
        $this->waitFor(fn () => str_contains($b->stderr(), 'cron: taking part in leadership') ?: null, 20, 'the second scheduler follows');
        $this->waitFor(fn () => count($this->firingsOf('term')) >= 2 ?: null, 5, 'firings');
        $this->assertFalse(self::leads($b), 'only one leads');

        $a->signal(SIGTERM);
        $termAt = microtime(true);
        $this->assertSame(0, $a->waitExit(5.0), $a->describe());
        $this->assertLessThan(1.0, microtime(true) - $termAt, 'stopped within a second');
        $this->assertStringContainsString('cron: stopping; giving the leadership back', $a->stderr());
        $this->waitFor(fn () => self::leads($b) ?: null, 2, 'the second scheduler takes over');
        $n = count($this->firingsOf('term'));
        $this->waitFor(fn () => count($this->firingsOf('term')) >= $n + 2 ?: null, 5, 'the second scheduler fires');
        $ticks = array_map(static fn (array $f): int => $f['tick'], $this->firingsOf('term'));
        $this->assertSame(count($ticks), count(array_unique($ticks)), 'no tick fired twice');
    }

    public function testRunTimeChangesReachTheRunningLeaderWithinASecond(): void
    {
        $proc = $this->startCron('cron', []);
        $this->waitFor(fn () => self::leads($proc) ?: null, 20, 'the scheduler leads');

        $name = Schedules::add('* * * * * *', 'rt.tick', ['k' => 'v'], ['name' => 'rt', 'timezone' => 'UTC']);
        $this->assertSame('rt', $name);
        $added = microtime(true);
        $this->waitFor(fn () => $this->firingsOf('rt') ?: null, 2.5, 'the added schedule fires');
        $this->assertLessThan(2.2, microtime(true) - $added, 'first firing of an every-second schedule');
        $this->assertSame(['k' => 'v'], $this->firingsOf('rt')[0]['params']);

        $this->afterLeaderReads($proc, 'pause', static fn () => Schedules::pause('rt'));
        $n = count($this->firingsOf('rt'));
        $this->assertStays(fn () => count($this->firingsOf('rt')) > $n ? 'fired while paused' : null, 2.5, 'a paused schedule fires nothing');
        $this->assertTrue(self::list()['rt']['paused']);

        Schedules::resume('rt');
        $this->waitFor(fn () => count($this->firingsOf('rt')) > $n ?: null, 2.5, 'the resumed schedule fires again');

        $this->afterLeaderReads($proc, 'pause', static fn () => Schedules::pause('rt'));
        $id = Schedules::trigger('rt');
        $this->waitFor(fn () => array_filter($this->firingsOf('rt'), static fn ($f) => $f['trigger'] === $id) ?: null, 2, 'the trigger fires');
        $trig = array_values(array_filter($this->firingsOf('rt'), static fn ($f) => $f['trigger'] === $id))[0];
        $this->assertSame($id, $trig['id'], 'the event id is the trigger id');
        $this->assertSame(self::list()['rt']['last_trigger_id'], $id);

        Schedules::update('rt', ['event' => 'rt.changed', 'expression' => '*/2 * * * * *']);
        Schedules::resume('rt');
        $this->waitFor(fn () => array_filter($this->firingsOf('rt'), static fn ($f) => $f['event'] === 'rt.changed') ?: null, 3, 'the updated schedule fires its new event');
        foreach (array_filter($this->firingsOf('rt'), static fn ($f) => $f['event'] === 'rt.changed') as $f) {
            $this->assertSame(0, intdiv($f['tick'], 1000) % 2, 'every other second');
        }

        $this->afterLeaderReads($proc, 'remove', static fn () => Schedules::remove('rt'));
        $n = count($this->firingsOf('rt'));
        $this->assertStays(fn () => count($this->firingsOf('rt')) > $n ? 'fired after removal' : null, 2.5, 'a removed schedule fires nothing');
        $this->assertArrayNotHasKey('rt', self::list());
    }

    public function testListShowsCodeAndStoredSchedules(): void
    {
        $proc = $this->startCron('cron', [['0 3 * * *', 'backup', [], ['name' => 'nightly', 'timezone' => 'Europe/Berlin']]]);
        $this->waitFor(fn () => self::leads($proc) ?: null, 20, 'the scheduler leads');
        Schedules::add('@hourly', 'report', [], ['name' => 'hourly', 'timezone' => 'UTC', 'catchup' => 0]);
        $list = $this->waitFor(fn () => isset(self::list()['nightly']) ? self::list() : null, 5, 'the code schedule is listed');
        $this->assertSame('code', $list['nightly']['source']);
        $this->assertSame('stored', $list['hourly']['source']);
        $this->assertSame('Europe/Berlin', $list['nightly']['timezone']);
        $this->assertCount(3, $list['nightly']['next']);
        $this->assertStringEndsWith('T03:00:00+01:00', $list['nightly']['next'][0]);
        $this->assertSame(0, $list['hourly']['catchup']);
        Schedules::pause('nightly');
        $this->assertTrue(self::list()['nightly']['paused']);
        $e = self::thrown(fn () => Schedules::update('nightly', ['catchup' => 5]));
        $this->assertInstanceOf(TaskException::class, $e);
        $this->assertStringContainsString("schedule 'nightly' is declared in code", $e->getMessage());
        $e = self::thrown(fn () => Schedules::add('@hourly', 'report', [], ['name' => 'hourly']));
        $this->assertStringContainsString("a schedule named 'hourly' exists already", $e->getMessage());
        $e = self::thrown(fn () => Schedules::pause('nope'));
        $this->assertStringContainsString("no schedule is named 'nope'", $e->getMessage());
    }

    public function testInvalidExpressionsZonesAndSettingsAreRefusedWithTheReason(): void
    {
        $cases = [
            ['* * *', 'e', [], [], "cron expression '* * *' has 3 fields"],
            ['61 * * * *', 'e', [], [], "cron expression '61 * * * *'"],
            ['* * * * *', '', [], [], "event name '' is invalid"],
            ['* * * * *', 'e', [], ['timezone' => 'Mars/Olympus'], "time zone 'Mars/Olympus' is not an IANA time zone name"],
            ['* * * * *', 'e', [], ['timezone' => 'europe/berlin'], "did you mean 'Europe/Berlin'?"],
            ['* * * * *', 'e', [], ['catchup' => -1], "setting 'catchup' must be a whole number of seconds"],
            ['* * * * *', 'e', [], ['nmae' => 'x'], "unknown schedule setting 'nmae'"],
            ['* * * * *', 'e', [], ['name' => 'a b'], "schedule name 'a b' is invalid"],
            ['* * * * *', 'e', [], ['x', 'y'], 'must be an array with string keys'],
        ];
        foreach ($cases as [$expr, $event, $options, $settings, $want]) {
            foreach (['code' => fn () => EventManager::cron($expr, $event, $options, $settings), 'stored' => fn () => Schedules::add($expr, $event, $options, $settings)] as $where => $call) {
                $e = self::thrown($call);
                $this->assertInstanceOf(TaskException::class, $e, "$where: $expr " . json_encode($settings));
                $this->assertStringContainsString($want, $e->getMessage(), "$where: $expr");
            }
        }
        $e = self::thrown(fn () => Schedules::update('nope', ['nmae' => 1]));
        $this->assertInstanceOf(TaskException::class, $e);
        $this->assertSame([], Schedules::list(), 'nothing was stored');
    }

    /** The two examples of the README's "Periodic tasks" section run as written. */
    public function testReadmeExamplesRunAsWritten(): void
    {
        $readme = (string) file_get_contents(TestEnv::repoRoot() . '/README.md');
        $section = explode('## Periodic tasks', $readme, 2)[1] ?? '';
        $section = explode("\n## ", $section, 2)[0];
        preg_match_all('/```php\n(.*?)```/s', $section, $m);
        $this->assertCount(2, $m[1], 'two PHP examples');
        [$scheduler, $management] = $m[1];

        $file = $this->tmp . '/readme_scheduler.php';
        file_put_contents($file, "<?php\n" . $scheduler);
        $proc = Process::php($file, [], static::childEnv(), options: ['name' => 'readme scheduler']);
        $this->waitFor(fn () => self::leads($proc) ?: null, 20, 'the README scheduler leads' . "\n" . $proc->describe());

        $run = Process::runPhp("<?php\n" . $management, static::childEnv(), 30);
        $this->assertSame(0, $run->exitCode(), $run->describe());
        $this->assertMatchesRegularExpression('/^cache\.warm-[0-9a-f]{12} \*\/10 \* \* \* \* stored next: \S+, \S+, \S+$/m', $run->stdout());
        $this->assertMatchesRegularExpression('/^daily-report 0 7 \* \* \* code next: \S+T07:00:00\+0[12]:00, /m', $run->stdout());
        $this->assertSame(0, $proc->stop(5.0), $proc->describe());
    }

    /**
     * Stops and starts the broker's application (every connection drops, the stream and the token queue are
     * recovered from disk): stored schedules and their last fired ticks survive, and firing goes on without a
     * tick fired twice. It stops the shared broker, so it runs only with EBATS_TEST_BROKER_RESTART=1, alone.
     */
    public function testSchedulesSurviveABrokerRestart(): void
    {
        if (getenv('EBATS_TEST_BROKER_RESTART') !== '1') {
            $this->markTestSkipped('stops the shared broker: run alone with EBATS_TEST_BROKER_RESTART=1');
        }
        $proc = $this->startCron('cron', []);
        $this->waitFor(fn () => self::leads($proc) ?: null, 20, 'the scheduler leads');
        Schedules::add('* * * * * *', 'survivor.tick', [], ['name' => 'survivor', 'timezone' => 'UTC', 'catchup' => 30]);
        $this->waitFor(fn () => count($this->firingsOf('survivor')) >= 3 ?: null, 5, 'firings before the restart');

        TestEnv::stopBrokerApp();
        try {
            usleep(500000);
        } finally {
            TestEnv::startBrokerApp();
        }

        $list = $this->waitFor(fn () => self::thrown(fn () => Schedules::list()) === null ? self::list() : null, 30, 'list() after the restart');
        $this->assertArrayHasKey('survivor', $list, 'the stored schedule survived');
        $this->assertNotNull($list['survivor']['last_tick'], 'its last fired tick survived');
        $n = count($this->firingsOf('survivor'));
        $this->waitFor(fn () => count($this->firingsOf('survivor')) >= $n + 3 ?: null, 30, 'firings after the restart');
        $ticks = array_map(static fn (array $f): int => $f['tick'], $this->firingsOf('survivor'));
        $this->assertSame(count($ticks), count(array_unique($ticks)), 'no tick fired twice across the restart');
    }
}
