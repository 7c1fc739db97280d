<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\ProcTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * The files of deploy/: the systemd units pass `systemd-analyze verify` and keep their stop, reload and restart
 * policies; the sysusers file makes the ebats user; the Supervisor configuration, run by a real supervisord
 * against php/examples, starts, recycles and stops the scheduler and the worker without losing a task.
 */
final class DeployTest extends ProcTestCase
{
    private const DEPLOY = __DIR__ . '/../../deploy';
    private const EXAMPLES = __DIR__ . '/../../php/examples';

    /** Publishes virtualShipping tasks s-0, s-1... in batches of 10 until the file $argv[1] exists; prints how many. */
    private const STREAM = <<<'PHP'
        <?php
        $n = 0;
        while (!file_exists($argv[1])) {
            $batch = new Asynclib\Ebats\Batch();
            for ($i = 0; $i < 10; $i++, $n++) {
                $batch->task('demo', 'virtualShipping', ['order_id' => "s-$n"]);
            }
            $batch->publish();
            usleep(20000);
        }
        echo json_encode($n), "\n";
        PHP;

    private ?Process $supervisord = null;
    private string $supervisorConf = '';

    protected function tearDown(): void
    {
        if ($this->supervisord !== null) {
            if (!$this->supervisord->hasExited()) {
                Process::run(['supervisorctl', '-c', $this->supervisorConf, 'shutdown'], [], 60.0);
                $this->supervisord->waitExit(30.0);
            }
            // Its programs lead process groups of their own, in supervisord's session: kill what is left of it.
            foreach (self::sessionPids($this->supervisord->pid()) as $pid) {
                posix_kill($pid, SIGKILL);
            }
            $this->supervisord->kill();
            $this->supervisord = null;
        }
        $this->stopAll();
        // Every test here starts its processes afresh: delete the queues rather than purge them (a scheduler may
        // declare stream queues, which cannot be purged).
        foreach (array_keys(TestEnv::listQueues(static::prefix())) as $queue) {
            TestEnv::broker()->deleteQueue($queue);
        }
        parent::tearDown();
    }

    // ---- systemd -----------------------------------------------------------------------------------------

    public function testSystemdUnitsPassSystemdAnalyzeVerify(): void
    {
        $dir = $this->unitCopies();
        // The template is checked through an instance: verify finds ebats-worker@.service next to it.
        $result = self::verify(["$dir/ebats-scheduler.service", "$dir/ebats-worker@demo.service"]);
        $this->assertSame(0, $result->exitCode(), $result->describe());
        $this->assertSame('', trim($result->stdout() . $result->stderr()), 'systemd-analyze verify reports nothing');

        // The check can fail: a unit with a mistake in it is reported.
        file_put_contents("$dir/ebats-worker@.service", str_replace('KillMode=mixed', 'KillMode=gently', (string) file_get_contents("$dir/ebats-worker@.service")));
        $broken = self::verify(["$dir/ebats-worker@demo.service"]);
        $this->assertStringContainsString('gently', $broken->stdout() . $broken->stderr(), 'a broken unit is reported');
    }

    public function testUnitPolicies(): void
    {
        $worker = self::unit('ebats-worker@.service');
        $scheduler = self::unit('ebats-scheduler.service');
        foreach (['worker' => $worker, 'scheduler' => $scheduler] as $what => $u) {
            $s = $u['Service'];
            $this->assertSame(['always'], $s['Restart'] ?? null, "$what: Restart=always");
            $this->assertNotEmpty($s['RestartSec'] ?? null, "$what: a restart delay");
            $this->assertSame(['SIGTERM'], $s['KillSignal'] ?? null, "$what: SIGTERM stops it");
            $this->assertSame(['mixed'], $s['KillMode'] ?? null, "$what: SIGTERM to the main process, SIGKILL to all");
            $this->assertSame(['ebats'], $s['User'] ?? null, "$what: a dedicated user");
            $this->assertSame(['yes'], $s['NoNewPrivileges'] ?? null, "$what: NoNewPrivileges");
            $this->assertContains('-/etc/ebats/ebats.env', $s['EnvironmentFile'] ?? [], "$what: the environment file");
            $this->assertNotEmpty($s['LimitNOFILE'] ?? null, "$what: a file limit");
            $this->assertArrayNotHasKey('MemoryDenyWriteExecute', $s, "$what: PHP's JITs need W+X memory");
            $this->assertStringStartsWith('/usr/bin/env ${EBATS_PHP} $EBATS_PHP_OPTIONS ', $s['ExecStart'][0] ?? '', $what);
        }
        $this->assertStringEndsWith(' ${EBATS_WORKER_SCRIPT} %i', $worker['Service']['ExecStart'][0], 'the topic is the instance');
        $this->assertContains('-/etc/ebats/worker-%i.env', $worker['Service']['EnvironmentFile']);
        $this->assertSame(['/bin/kill -HUP $MAINPID'], $worker['Service']['ExecReload'] ?? null, 'reload = SIGHUP = rolling recycle');
        $this->assertArrayNotHasKey('ExecReload', $scheduler['Service'], 'SIGHUP would end the scheduler: no reload');
        $this->assertGreaterThanOrEqual(60, (int) $worker['Service']['TimeoutStopSec'][0], 'time for a task to finish');

        // The example environment file sets the variables the units read, and nothing else of the units'.
        $env = (string) file_get_contents(self::DEPLOY . '/systemd/ebats.env');
        foreach (['EBATS_PHP', 'EBATS_SCHEDULER_SCRIPT', 'EBATS_WORKER_SCRIPT'] as $name) {
            $this->assertMatchesRegularExpression("/^$name=\\S+$/m", $env, "ebats.env sets $name");
        }
        $this->assertMatchesRegularExpression('/^#?EBATS_PHP_OPTIONS=/m', $env);
    }

    public function testSchedulerEndsOnSighupSoItsUnitHasNoReload(): void
    {
        $prepend = $this->vhostPrepend();
        $scheduler = Process::start(
            array_merge(TestEnv::phpCommand(true, ['auto_prepend_file' => $prepend]), [self::EXAMPLES . '/scheduler.php']),
            static::childEnv(),
            ['name' => 'scheduler']
        );
        $this->waitConsumers(static::q('events'), 1, 20, [$scheduler], true);
        $scheduler->signal(SIGHUP);
        $this->assertSame(128 + SIGHUP, $scheduler->waitExit(10.0), $scheduler->describe());
        $scheduler->kill();
    }

    public function testSysusersFileMakesTheEbatsUser(): void
    {
        $root = $this->tmp . '/root';
        mkdir("$root/etc", 0755, true);
        try {
            $result = Process::run(['systemd-sysusers', "--root=$root", self::DEPLOY . '/systemd/ebats.sysusers'], [], 60.0);
            $this->assertSame(0, $result->exitCode(), $result->describe());
            $this->assertMatchesRegularExpression('~^ebats:x:\d+:\d+:[^:]*:/srv/ebats:/usr/sbin/nologin$~m', (string) file_get_contents("$root/etc/passwd"));
            $this->assertMatchesRegularExpression('~^ebats:x:\d+:~m', (string) file_get_contents("$root/etc/group"));
        } finally {
            Process::run(['rm', '-rf', $root]);
        }
    }

    // ---- Supervisor --------------------------------------------------------------------------------------

    public function testSupervisorRunsRecyclesAndStopsTheExampleApplication(): void
    {
        $programs = self::supervisorPrograms();
        $this->assertSame(['scheduler', 'worker-demo'], array_keys($programs));
        foreach ($programs as $name => $keys) {
            $this->assertSame('TERM', $keys['stopsignal'] ?? null, "$name: stopsignal");
            $this->assertSame('false', $keys['stopasgroup'] ?? null, "$name: TERM to the main process only");
            $this->assertSame('true', $keys['killasgroup'] ?? null, "$name: KILL to the whole group");
            $this->assertSame('true', $keys['autorestart'] ?? null, "$name: autorestart");
        }
        $this->assertGreaterThanOrEqual(60, (int) $programs['worker-demo']['stopwaitsecs'], 'time for a task to finish');

        $conf = $this->writeSupervisorConf();
        $this->supervisord = Process::start(['supervisord', '-n', '-c', $conf], static::childEnv(), ['name' => 'supervisord']);

        // Both programs RUNNING, and consuming.
        $this->waitFor(fn () => $this->states() === ['ebats:scheduler' => 'RUNNING', 'ebats:worker-demo' => 'RUNNING'], 30, 'both programs RUNNING');
        $this->waitConsumers(static::q('events'), 1, 20, [$this->supervisord], true);
        $this->waitConsumers(static::q('task.demo'), 1, 20, [$this->supervisord], true);

        // An event from the producer runs on the worker.
        $producer = Process::php(self::EXAMPLES . '/producer.php', [], static::childEnv(), true, ['auto_prepend_file' => $this->vhostPrepend()])->wait(30.0);
        $this->assertSame(0, $producer->exitCode(), $producer->describe());
        $this->waitFor(
            fn () => preg_match('/taskname=virtualShipping .*"order_id":"FB138020392193312".*status=SUCC/', $this->workerLog()) === 1,
            20,
            'the worker ran virtualShipping'
        );

        // A restart while tasks keep coming loses none and runs none twice: a producer publishes a steady stream
        // before, during and after it (tasks in hand at the SIGTERM, tasks queued while no worker consumes).
        $workerPid = $this->programPid('worker-demo');
        $stopFile = $this->tmp . '/stop-stream';
        $stream = Process::php(Process::scriptFile(self::STREAM), [$stopFile], static::childEnv(), options: ['name' => 'stream']);
        $this->waitFor(fn () => count($this->done()) >= 100 ? true : ($stream->hasExited() ? $this->fail($stream->describe()) : null), 30, 'the worker runs the stream');
        $restart = Process::run(['supervisorctl', '-c', $conf, 'restart', 'ebats:worker-demo'], [], 120.0);
        $this->assertSame(0, $restart->exitCode(), $restart->describe());
        $this->assertMatchesRegularExpression('/worker-demo: stopped.*worker-demo: started/s', $restart->stdout());
        $this->assertNotSame($workerPid, $this->programPid('worker-demo'), 'a new worker');
        $before = count($this->done());
        $this->waitFor(fn () => count($this->done()) >= $before + 100, 30, 'the new worker runs the stream');
        touch($stopFile);
        $this->assertSame(0, $stream->wait(30.0)->exitCode(), $stream->describe());
        $published = (int) $stream->json();
        $this->assertGreaterThan($before, $published);
        $this->waitFor(fn () => count($this->done()) === $published + 1, 60, "all $published tasks of the stream ran");
        $this->assertSame([], array_keys(array_filter($this->done(), static fn (int $n): bool => $n !== 1)), 'tasks that ran more than once');
        $this->waitQueueDrained(static::q('task.demo'), 10);
        $this->assertQueueEmpty(static::q('failed.demo'), 'failed store');

        // stop all: each program exits 0 (SIGTERM honoured), well within its stopwaitsecs.
        $pids = ['scheduler' => $this->programPid('scheduler'), 'worker-demo' => $this->programPid('worker-demo')];
        $t0 = microtime(true);
        $stop = Process::run(['supervisorctl', '-c', $conf, 'stop', 'all'], [], 120.0);
        $this->assertSame(0, $stop->exitCode(), $stop->describe());
        $this->assertLessThan(30.0, microtime(true) - $t0, 'stop all took too long');
        $this->assertSame(['ebats:scheduler' => 'STOPPED', 'ebats:worker-demo' => 'STOPPED'], $this->states());
        $log = (string) file_get_contents($this->tmp . '/supervisord.log');
        foreach ($pids as $name => $pid) {
            $this->assertMatchesRegularExpression("/stopped: $name \\(exit status 0\\)/", $log, "$name exited 0\n$log");
            $this->assertFalse(file_exists("/proc/$pid"), "$name ($pid) is gone");
        }
        $this->assertSame(2, substr_count($log, 'stopped: worker-demo (exit status 0)'), "the restart and the stop both exited 0\n$log");
        $this->assertStringNotContainsString('SIGKILL', $log);
        $this->assertStringContainsString('SIGTERM received: asking 1 worker children to finish', $this->workerLog());
        $this->assertSame([$this->supervisord->pid()], self::sessionPids($this->supervisord->pid()), 'only supervisord is left');

        // Shut supervisord down: nothing of it is left.
        $shutdown = Process::run(['supervisorctl', '-c', $conf, 'shutdown'], [], 60.0);
        $this->assertSame(0, $shutdown->exitCode(), $shutdown->describe());
        $this->assertSame(0, $this->supervisord->waitExit(30.0), $this->supervisord->describe());
        $this->assertSame([], self::sessionPids($this->supervisord->pid()), 'processes left behind');
        $this->assertFileDoesNotExist($this->tmp . '/supervisor.sock');
    }

    // ---- helpers -----------------------------------------------------------------------------------------

    /** Copies of the unit files (and an instance's name for the template) in this test's directory. */
    private function unitCopies(): string
    {
        foreach (glob(self::DEPLOY . '/systemd/*.service') ?: [] as $unit) {
            copy($unit, $this->tmp . '/' . basename($unit));
        }
        return $this->tmp;
    }

    private static function verify(array $units): Process
    {
        if (!is_executable('/usr/bin/systemd-analyze')) {
            self::fail('systemd-analyze is missing: install the systemd package (scripts/setup does)');
        }
        // No running systemd here: verify works on the files alone, man pages aside.
        return Process::run(array_merge(['systemd-analyze', 'verify', '--man=no'], $units), ['SYSTEMD_LOG_COLOR' => '0'], 60.0);
    }

    /** @return array<string,array<string,list<string>>> section => key => values, in file order */
    private static function unit(string $file): array
    {
        $sections = [];
        $section = '';
        foreach (file(self::DEPLOY . "/systemd/$file", FILE_IGNORE_NEW_LINES) ?: [] as $line) {
            $line = trim($line);
            if ($line === '' || $line[0] === '#' || $line[0] === ';') {
                continue;
            }
            if (preg_match('/^\[(.+)\]$/', $line, $m)) {
                $section = $m[1];
                continue;
            }
            [$key, $value] = array_pad(explode('=', $line, 2), 2, '');
            $sections[$section][trim($key)][] = trim($value);
        }
        return $sections;
    }

    /** @return array<string,array<string,string>> program name => key => value, from deploy/supervisor/ebats.conf */
    private static function supervisorPrograms(): array
    {
        $programs = [];
        $program = null;
        foreach (file(self::DEPLOY . '/supervisor/ebats.conf', FILE_IGNORE_NEW_LINES) ?: [] as $line) {
            if (preg_match('/^\[(.+)\]\s*$/', $line, $m)) {
                $program = str_starts_with($m[1], 'program:') ? substr($m[1], 8) : null;
                continue;
            }
            if ($program !== null && preg_match('/^(\w+)\s*=\s*(.*)$/', $line, $m)) {
                $programs[$program][$m[1]] = trim($m[2]);
            }
        }
        return $programs;
    }

    /** The file that defines AMQ_VHOST before the examples' config.php, which would name the vhost "/". */
    private function vhostPrepend(): string
    {
        $path = $this->tmp . '/vhost.php';
        file_put_contents($path, '<?php define(\'AMQ_VHOST\', ' . var_export(TestEnv::vhost(), true) . ");\n");
        return $path;
    }

    /**
     * supervisord's own sections (socket, pid file and logs in this test's directory) followed by the shipped
     * configuration, where only what ties it to a machine changes: the PHP command and the application's
     * directory (php/examples, with the extension and the test's vhost), the user, the environment, the log files.
     */
    private function writeSupervisorConf(): string
    {
        $esc = static fn (string $s): string => str_replace('%', '%%', $s);
        $php = implode(' ', array_map('escapeshellarg', TestEnv::phpCommand(true, ['auto_prepend_file' => $this->vhostPrepend()])));
        $examples = (string) realpath(self::EXAMPLES);
        $env = sprintf('EBATS_AMQP_URL="%s",EBATS_PREFIX="%s"', TestEnv::amqpUrl(), static::prefix());
        $out = [];
        $inProgram = false;
        foreach (file(self::DEPLOY . '/supervisor/ebats.conf', FILE_IGNORE_NEW_LINES) ?: [] as $line) {
            if (preg_match('/^\[(.+)\]\s*$/', $line, $m)) {
                $inProgram = str_starts_with($m[1], 'program:');
            } elseif ($inProgram && preg_match('/^(\w+)\s*=\s*(.*)$/', $line, $m)) {
                $line = match ($m[1]) {
                    'command' => 'command=' . $esc(str_replace(['/usr/bin/php', '/srv/ebats/'], [$php, "$examples/"], $m[2])),
                    'directory' => 'directory=' . $esc($examples),
                    'user' => '; user: this one',
                    'environment' => 'environment=' . $esc($env),
                    'stdout_logfile' => 'stdout_logfile=' . $esc($this->tmp) . '/%(program_name)s.log',
                    default => $line,
                };
            }
            $out[] = $line;
        }
        $tmp = $esc($this->tmp);
        $head = <<<INI
            [unix_http_server]
            file=$tmp/supervisor.sock

            [supervisord]
            nodaemon=true
            logfile=$tmp/supervisord.log
            pidfile=$tmp/supervisord.pid
            childlogdir=$tmp
            loglevel=info

            [rpcinterface:supervisor]
            supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

            [supervisorctl]
            serverurl=unix://$tmp/supervisor.sock

            INI;
        $this->supervisorConf = $this->tmp . '/supervisord.conf';
        file_put_contents($this->supervisorConf, $head . implode("\n", $out) . "\n");
        return $this->supervisorConf;
    }

    /** @return array<string,string> program => state, from supervisorctl status */
    private function states(): array
    {
        $status = Process::run(['supervisorctl', '-c', $this->supervisorConf, 'status'], [], 60.0);
        $states = [];
        foreach (explode("\n", $status->stdout()) as $line) {
            if (preg_match('/^(\S+)\s+([A-Z]+)/', $line, $m)) {
                $states[$m[1]] = $m[2];
            }
        }
        ksort($states);
        return $states;
    }

    private function programPid(string $program): int
    {
        $result = Process::run(['supervisorctl', '-c', $this->supervisorConf, 'pid', "ebats:$program"], [], 60.0);
        $pid = (int) trim($result->stdout());
        $this->assertGreaterThan(0, $pid, "pid of $program: " . $result->describe());
        return $pid;
    }

    private function workerLog(): string
    {
        return (string) @file_get_contents($this->tmp . '/worker-demo.log');
    }

    /** @return array<string,int> order id => how many times the worker's callback reported it succeeded */
    private function done(): array
    {
        preg_match_all('/taskname=virtualShipping params=\{"order_id":"([^"]+)"\}.* status=SUCC /', $this->workerLog(), $m);
        return array_count_values($m[1]);
    }

    /** Live pids of the session $sid (supervisord and the programs, which lead process groups of their own). */
    private static function sessionPids(int $sid): array
    {
        return Process::scanProc(static fn (array $f): bool => count($f) > 3 && (int) $f[3] === $sid);
    }
}
