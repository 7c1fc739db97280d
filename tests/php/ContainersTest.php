<?php

declare(strict_types=1);

namespace Ebats\Tests\Php;

use Ebats\Tests\Lib\Process;
use PHPUnit\Framework\TestCase;

/**
 * The images and the compose file of deploy/containers/, run with podman through scripts/containers: the
 * images built from the cached debootstrap base, the compose file started under a project of its own (its
 * broker in a container, published on a free port of the host's loopback, never the shared one), the demo
 * events published from a container and from the host, tasks run by several executors, an executor killed
 * (restarted by its restart policy), the leading scheduler stopped (the other fires the next tick), the
 * dashboard and a Prometheus query read through the compose network, a Worker with mounted business code
 * stopped with a task in hand, a worker child leaving at the container's memory limit, then `down` with
 * nothing left of the project.
 *
 * Runs as its own step of scripts/test (phpunit --group containers); skipped where podman cannot run.
 *
 * @group containers
 */
final class ContainersTest extends TestCase
{
    private const SCRIPT = __DIR__ . '/../../scripts/containers';
    private const ROOT = __DIR__ . '/../../';
    private const TOKEN = 'containers-test-token-0123456789';

    private static string $project = '';
    private static int $queuePort = 0;
    private static string $skip = '';
    private static string $url = '';
    /** @var list<string> containers started by the test itself (not by the compose file) */
    private static array $own = [];
    private static string $codeDir = '';

    public static function setUpBeforeClass(): void
    {
        $check = Process::run(['bash', self::SCRIPT, 'check'], [], 60.0);
        if ($check->exitCode() !== 0) {
            self::$skip = 'podman cannot run here: ' . trim($check->stdout() . $check->stderr());
            return;
        }
        self::$project = 'ebatsct' . bin2hex(random_bytes(3));
        self::$queuePort = self::freePort();
        self::$url = 'amqp://ebats:ebats@queue:5672/%2f';
        $up = Process::run(['bash', self::SCRIPT, 'up'], self::env(), 900.0);
        if ($up->exitCode() !== 0) {
            self::fail("scripts/containers up failed:\n" . $up->describe(20000));
        }
    }

    public static function tearDownAfterClass(): void
    {
        if (self::$project === '') {
            return;
        }
        foreach (self::$own as $name) {
            Process::run(['podman', 'rm', '-f', '-t', '0', $name], [], 60.0);
        }
        Process::run(['bash', self::SCRIPT, 'down'], self::env(), 300.0);
        if (self::$codeDir !== '') {
            Process::run(['rm', '-rf', self::$codeDir]);
        }
    }

    protected function setUp(): void
    {
        if (self::$skip !== '') {
            $this->markTestSkipped(self::$skip);
        }
    }

    /** @return array<string,string> */
    private static function env(): array
    {
        return [
            'EBATS_COMPOSE_PROJECT' => self::$project,
            'EBATS_QUEUE_PORT' => (string) self::$queuePort,
            'EBATS_DASHBOARD_PORT' => (string) self::freePort(),
            'EBATS_PROMETHEUS_PORT' => (string) self::freePort(),
            'EBATS_DASHBOARD_TOKEN' => self::TOKEN,
        ];
    }

    private static function freePort(): int
    {
        $s = stream_socket_server('tcp://127.0.0.1:0');
        $name = stream_socket_get_name($s, false);
        fclose($s);
        return (int) substr($name, strrpos($name, ':') + 1);
    }

    private static function podman(array $args, float $timeout = 60.0): Process
    {
        // The podman settings of scripts/containers (runc, cgroupfs, ulimits), unless the caller has its own.
        $conf = getenv('CONTAINERS_CONF') ?: realpath(self::ROOT . 'deploy/containers/containers.conf');
        return Process::run(array_merge(['podman'], $args), ['CONTAINERS_CONF' => $conf], $timeout);
    }

    private static function name(string $service, int $n): string
    {
        return self::$project . '_' . $service . '_' . $n;
    }

    /**
     * Runs PHP code in a running container of the compose file; returns its stdout (fails on an error). Its
     * connection may take longer than the default 3 s on a loaded machine (the compose network's name
     * lookup, the broker's container): what is tested is what the code does once connected.
     */
    private function inContainer(string $container, string $code, float $timeout = 60.0): string
    {
        $p = $this->phpIn($container, ['-r', $code], $timeout);
        $this->assertSame(0, $p->exitCode(), "php in $container:\n" . $p->describe());
        return $p->stdout();
    }

    /** Runs php with $args in $container, as inContainer() does: the run that ended (a miss to connect tried again). */
    private function phpIn(string $container, array $args, float $timeout = 60.0): Process
    {
        $run = fn () => self::podman(array_merge(['exec', $container, 'php', '-d', 'ebats.connect_timeout=15'], $args), $timeout);
        $p = $run();
        // Twice more when it could not connect at all (seen in loaded CI runs: no answer from the broker's
        // container within 15 s, twice in a row once); the code's own outcome is what the tests assert. Each
        // miss is told with what the container's name lookup of the broker gives at that moment.
        for ($try = 2; $try <= 3 && $p->exitCode() !== 0 && str_contains($p->stdout() . $p->stderr(), 'cannot connect to the broker'); $try++) {
            $lookup = self::podman(['exec', $container, 'getent', 'hosts', 'queue'], 10.0);
            fwrite(STDERR, "[containers] php in $container could not connect (the name queue: "
                . trim($lookup->stdout() . $lookup->stderr()) . " exit {$lookup->exitCode()}); try $try:\n" . $p->stdout() . $p->stderr());
            $p = $run();
        }
        return $p;
    }

    /** GET $url from inside $container (through the compose network); returns [status, body]. */
    private function fetchIn(string $container, string $url, array $headers = []): array
    {
        $code = sprintf(
            '$c = stream_context_create(["http" => ["timeout" => 5, "ignore_errors" => true, "header" => %s]]);'
            . '$b = @file_get_contents(%s, false, $c);'
            . 'echo isset($http_response_header[0]) ? explode(" ", $http_response_header[0])[1] : 0, "\n",'
            . ' $b === false ? "no answer: " . (error_get_last()["message"] ?? "?") : $b;',
            var_export($headers, true),
            var_export($url, true)
        );
        $p = self::podman(['exec', $container, 'php', '-r', $code]);
        [$status, $body] = explode("\n", $p->stdout(), 2) + [1 => ''];
        return [(int) $status, $body];
    }

    private function logs(string $container): string
    {
        $p = self::podman(['logs', $container]);
        return $p->stdout() . $p->stderr();
    }

    private function inspect(string $container, string $format): string
    {
        return trim(self::podman(['inspect', '--format', $format, $container])->stdout());
    }

    private function waitFor(callable $condition, float $timeout, string $what): mixed
    {
        $value = Process::until($condition, $timeout, 0.5);
        if ($value === null) {
            $ps = self::podman(['ps', '-a', '--filter', 'label=io.podman.compose.project=' . self::$project]);
            $this->fail("timed out after {$timeout} s waiting for: $what\n" . $ps->stdout());
        }
        return $value;
    }

    /** Consumers of the demo topic's queue, read with rabbitmqctl in the queue container. */
    private function demoConsumers(): int
    {
        $p = self::podman(['exec', self::name('queue', 1), 'rabbitmqctl', '-q', 'list_queues', '--no-table-headers', 'name', 'consumers']);
        foreach (explode("\n", $p->stdout()) as $line) {
            $f = preg_split('/\s+/', trim($line));
            if (($f[0] ?? '') === 'ebats.task.demo') {
                return (int) ($f[1] ?? 0);
            }
        }
        return -1;
    }

    /** Which executors printed the shipping of each order of $orders: [order => [container...]]. */
    private function shippedBy(array $orders): array
    {
        $by = [];
        for ($n = 1; $n <= 5; $n++) {
            $log = $this->logs(self::name('executor', $n));
            foreach ($orders as $o) {
                if (str_contains($log, "shipping the virtual goods of order $o\n")) {
                    $by[$o][] = self::name('executor', $n);
                }
            }
        }
        return $by;
    }

    /** One metric's value from a process's /metrics inside its container (null when absent). */
    private function metric(string $container, string $name): ?float
    {
        [$status, $body] = $this->fetchIn($container, 'http://127.0.0.1:9464/metrics');
        if ($status !== 200 || !preg_match('/^' . preg_quote($name, '/') . '(?:\{[^}]*\})? (\S+)$/m', $body, $m)) {
            return null;
        }
        return (float) $m[1];
    }

    public function testTheComposeDeployment(): void
    {
        $started = microtime(true);
        // Every executor consumes the demo topic.
        $this->waitFor(fn () => $this->demoConsumers() === 5 ?: null, 180.0, '5 consumers on ebats.task.demo');
        foreach (['executor' => 5, 'scheduler' => 2, 'queue' => 1, 'monitor' => 1, 'prometheus' => 1] as $service => $n) {
            for ($i = 1; $i <= $n; $i++) {
                // podman runs health checks from systemd timers, absent here: run the check itself.
                $this->waitFor(
                    fn () => self::podman(['healthcheck', 'run', self::name($service, $i)])->exitCode() === 0 ?: null,
                    120.0,
                    "$service $i healthy (its health check)"
                );
            }
        }

        // The demo's producer, as is, from a container, and 20 more events.
        $out = $this->phpIn(self::name('monitor', 1), ['producer.php']);
        $this->assertSame(0, $out->exitCode(), $out->describe());
        $this->assertStringContainsString('published order_paied', $out->stdout());
        $this->inContainer(self::name('monitor', 1), 'for ($i = 0; $i < 20; $i++) {'
            . ' $e = new Asynclib\Ebats\Event("order_paied"); $e->setOptions(["order_id" => "c-$i"]); $e->publish(); }');
        // From the host, through the queue's published port, with the demo's AMQ_* constants of config.php.
        $host = Process::runPhp(
            sprintf("<?php define('AMQ_PORT', %d); define('AMQ_USER', 'ebats'); define('AMQ_PASS', 'ebats');", self::$queuePort)
            . ' require ' . var_export(realpath(self::ROOT . 'php/examples/producer.php'), true) . ';'
            . ' for ($i = 0; $i < 20; $i++) { $e = new Asynclib\Ebats\Event("order_paied");'
            . ' $e->setOptions(["order_id" => "h-$i"]); $e->publish(); }',
            ['EBATS_PREFIX' => 'ebats']
        );
        $this->assertSame(0, $host->exitCode(), $host->describe());
        $orders = ['FB138020392193312'];
        for ($i = 0; $i < 20; $i++) {
            $orders[] = "c-$i";
            $orders[] = "h-$i";
        }
        $by = $this->waitFor(function () use ($orders) {
            $by = $this->shippedBy($orders);
            return count($by) === count($orders) ? $by : null;
        }, 60.0, 'every order shipped');
        foreach ($by as $o => $containers) {
            // The demo's producer.php ran twice (container, host); each of its runs ships the order once.
            $times = substr_count(implode("\n", array_map(fn ($c) => $this->logs($c), $containers)), "order $o\n");
            $this->assertSame($o === 'FB138020392193312' ? 2 : 1, $times, "order $o shipped once per publication");
        }
        $executors = array_unique(array_merge(...array_values($by)));
        $this->assertGreaterThanOrEqual(3, count($executors), 'the tasks ran on several executors: ' . implode(', ', $executors));
        // The delayed closeOrder task of order_create (10 s) too.
        $this->waitFor(function () {
            for ($n = 1; $n <= 5; $n++) {
                if (str_contains($this->logs(self::name('executor', $n)), 'closing order FB138020392193313')) {
                    return true;
                }
            }
            return null;
        }, 60.0, 'the delayed closeOrder task');

        // Kill an executor's processes (as a crash would): its restart policy starts it again.
        $victim = self::name('executor', 2);
        $restarts = (int) $this->inspect($victim, '{{.RestartCount}}');
        $pid = (int) $this->inspect($victim, '{{.State.Pid}}');
        $this->assertGreaterThan(1, $pid);
        posix_kill($pid, SIGKILL);
        $this->waitFor(
            fn () => ((int) $this->inspect($victim, '{{.RestartCount}}') > $restarts
                && $this->inspect($victim, '{{.State.Status}}') === 'running') ?: null,
            60.0,
            "$victim restarted"
        );
        $this->waitFor(fn () => $this->demoConsumers() === 5 ?: null, 60.0, '5 consumers again after the restart');

        // Periodic schedule added with the command line in a container; the leader fires it every 5 s.
        $add = self::podman(['exec', self::name('monitor', 1), 'ebats-run', 'ebats', 'schedules:add', '*/5 * * * * *',
            'order_paied', '--name=tick', '--options={"order_id":"tick"}']);
        $this->assertSame(0, $add->exitCode(), $add->describe());
        $leader = $this->waitFor(function () {
            foreach ([1, 2] as $n) {
                $c = self::name('scheduler', $n);
                if ($this->metric($c, 'ebats_cron_firings_total') > 0 && $this->metric($c, 'ebats_scheduler_leader') === 1.0) {
                    return $c;
                }
            }
            return null;
        }, 60.0, 'a leading scheduler firing the schedule');
        $other = $leader === self::name('scheduler', 1) ? self::name('scheduler', 2) : self::name('scheduler', 1);
        $this->assertNotSame(1.0, $this->metric($other, 'ebats_scheduler_leader'), 'one leader');
        $t = microtime(true);
        $stop = self::podman(['stop', '-t', '60', $leader], 90.0);
        $this->assertSame(0, $stop->exitCode(), $stop->describe());
        $this->assertLessThan(10.0, microtime(true) - $t, 'the scheduler stops within seconds');
        $this->assertSame('0', $this->inspect($leader, '{{.State.ExitCode}}'), 'the scheduler exits 0 on SIGTERM');
        $this->waitFor(
            fn () => ($this->metric($other, 'ebats_scheduler_leader') === 1.0
                && $this->metric($other, 'ebats_cron_firings_total') > 0) ?: null,
            60.0,
            "$other takes the lead and fires the next tick"
        );
        $this->assertSame('exited', $this->inspect($leader, '{{.State.Status}}'), 'a stopped container stays stopped');

        // The dashboard, through the compose network (with its token), finds the processes through the broker.
        $auth = ['Authorization: Bearer ' . self::TOKEN];
        // Asked again for up to 20 s: the compose network may still be settling after the leader's stop. What each
        // try that failed got is told.
        [$misses, $t0] = [[], microtime(true)];
        $page = Process::until(function () use ($auth, &$misses, $t0): ?string {
            [$status, $body] = $this->fetchIn(self::name('executor', 1), 'http://monitor:8080/', $auth);
            if ($status === 200) {
                return $body;
            }
            $misses[] = sprintf('%.1f s: %d %s', microtime(true) - $t0, $status, substr(trim($body), 0, 200));
            return null;
        }, 20.0, 0.5);
        $this->assertNotNull($page, "the dashboard page through the compose network:\n" . implode("\n", $misses) . "\n" . $this->logs(self::name('monitor', 1)));
        if ($misses !== []) {
            fwrite(STDERR, "\n[containers] the dashboard page answered 200 after: " . implode('; ', $misses) . "\n");
        }
        [$status] = $this->fetchIn(self::name('executor', 1), 'http://monitor:8080/');
        $this->assertSame(401, $status, 'no token, no dashboard');
        $state = $this->waitFor(function () use ($auth) {
            [$status, $body] = $this->fetchIn(self::name('executor', 1), 'http://monitor:8080/api/state', $auth);
            return $status === 200 && str_contains($body, '"demo"') ? $body : null;
        }, 60.0, 'the dashboard showing topic demo');

        // Prometheus, through the compose network: every executor scraped, and the tasks counted.
        $query = fn (string $q) => $this->fetchIn(
            self::name('executor', 1),
            'http://prometheus:9090/api/v1/query?query=' . rawurlencode($q)
        );
        $this->waitFor(function () use ($query) {
            [$status, $body] = $query('count(up{job="ebats-executor"} == 1)');
            $v = json_decode($body, true)['data']['result'][0]['value'][1] ?? null;
            return $status === 200 && $v === '5' ? true : null;
        }, 90.0, 'Prometheus scraping 5 executors');
        $succeeded = $this->waitFor(function () use ($query) {
            [, $body] = $query('sum(ebats_tasks_total{outcome="succeeded",topic="demo"})');
            $v = (float) (json_decode($body, true)['data']['result'][0]['value'][1] ?? 0);
            return $v >= 20 ? $v : null;
        }, 60.0, 'the tasks counted in Prometheus');
        $this->assertGreaterThanOrEqual(20.0, $succeeded);
        fwrite(STDERR, sprintf("\n[containers] compose scenario: %.0f s\n", microtime(true) - $started));
    }

    /**
     * Business code mounted into the image: a Worker stopped with a task in hand finishes it and exits 0
     * within the grace period; a child whose container nears its memory limit leaves after its task.
     *
     * @depends testTheComposeDeployment
     */
    public function testMountedWorkerStopsAfterItsTaskAndSeesTheMemoryLimit(): void
    {
        self::$codeDir = sys_get_temp_dir() . '/ebats-ct-' . bin2hex(random_bytes(3));
        mkdir(self::$codeDir, 0755);
        chmod(self::$codeDir, 0755);
        file_put_contents(self::$codeDir . '/worker.php', <<<'PHP'
<?php
class TaskSlowModel
{
    private static array $hold = [];

    public function napTask($params)
    {
        echo "nap start\n";
        sleep((int) $params['seconds']);
        echo "nap end\n";
    }

    /** Holds memory until the container's cgroup is over 93 % of its limit. */
    public function growTask($params)
    {
        $dir = is_file('/sys/fs/cgroup/memory.max') ? '/sys/fs/cgroup' : null;
        if ($dir === null) {
            foreach (explode("\n", file_get_contents('/proc/self/cgroup')) as $line) {
                if (preg_match('/^\d+:(?:[^:]*,)?memory(?:,[^:]*)?:(.*)$/', $line, $m)) {
                    $dir = is_file("/sys/fs/cgroup/memory{$m[1]}/memory.limit_in_bytes")
                        ? "/sys/fs/cgroup/memory{$m[1]}" : '/sys/fs/cgroup/memory';
                }
            }
        }
        $v2 = is_file("$dir/memory.max");
        $limit = (int) file_get_contents($dir . ($v2 ? '/memory.max' : '/memory.limit_in_bytes'));
        $used = function () use ($dir, $v2) {
            $usage = (int) file_get_contents($dir . ($v2 ? '/memory.current' : '/memory.usage_in_bytes'));
            preg_match('/^' . ($v2 ? '' : 'total_') . 'inactive_file (\d+)$/m', file_get_contents("$dir/memory.stat"), $m);
            return $usage - (int) ($m[1] ?? 0);
        };
        while ($used() < $limit * 0.93) {
            self::$hold[] = str_repeat(chr(count(self::$hold) % 256), 2 << 20);
        }
        echo "grown to ", intdiv($used(), 1 << 20), " MB of ", intdiv($limit, 1 << 20), " MB\n";
    }
}
ini_set('memory_limit', '-1');
$worker = new Asynclib\Ebats\Worker(function (...$a) {}, 2);
$worker->setQueue('slow');
$worker->setGracePeriod(30);
$worker->run();
PHP);
        chmod(self::$codeDir . '/worker.php', 0644);
        $name = self::$project . '_slow';
        self::$own[] = $name;
        $run = self::podman(['run', '-d', '--name', $name, '--network', self::$project . '_default',
            '--memory', '384m', '--memory-swap', '384m',
            '-e', 'EBATS_AMQP_URL=' . self::$url, '-e', 'EBATS_DEBUG=1',
            '-v', self::$codeDir . ':/srv/ebats:ro', 'ebats', 'worker']);
        $this->assertSame(0, $run->exitCode(), $run->describe());
        $this->waitFor(fn () => $this->consumersOf('ebats.task.slow') === 2 ?: null, 60.0, 'two children consuming topic slow');

        // Memory: the child that grew past 90 % of the container's limit leaves after its task.
        $this->inContainer(self::name('executor', 1), 'Asynclib\Ebats\Task::create("slow", "grow", []);');
        $this->waitFor(
            fn () => preg_match('/recycling: the memory in use by its control group .* is over 90% of the group\'s limit \(384\.0 MB\)/', $this->logs($name)) ?: null,
            60.0,
            'a child recycled at the cgroup memory limit'
        );
        $this->assertSame('running', $this->inspect($name, '{{.State.Status}}'));
        $this->assertStringNotContainsString('died', $this->logs($name));

        // Stop with a task in hand: it is finished, the worker exits 0 well within the grace period.
        $this->inContainer(self::name('executor', 1), 'Asynclib\Ebats\Task::create("slow", "nap", ["seconds" => 4]);');
        $this->waitFor(fn () => str_contains($this->logs($name), "nap start\n") ?: null, 60.0, 'the nap started');
        $t = microtime(true);
        $stop = self::podman(['stop', '-t', '60', $name], 90.0);
        $took = microtime(true) - $t;
        $this->assertSame(0, $stop->exitCode(), $stop->describe());
        $logs = $this->logs($name);
        $this->assertStringContainsString("nap end\n", $logs, 'the task in hand finished');
        $this->assertSame('0', $this->inspect($name, '{{.State.ExitCode}}'), "exit code 0:\n$logs");
        $this->assertLessThan(30.0, $took, 'stopped within the grace period');
        $this->assertSame(0, $this->consumersOf('ebats.task.slow'));
        $this->assertSame('0', trim($this->messagesOf('ebats.task.slow')), 'the nap was acked, not given back');
    }

    private function consumersOf(string $queue): int
    {
        return (int) $this->columnOf($queue, 'consumers');
    }

    private function messagesOf(string $queue): string
    {
        return $this->columnOf($queue, 'messages');
    }

    private function columnOf(string $queue, string $column): string
    {
        $p = self::podman(['exec', self::name('queue', 1), 'rabbitmqctl', '-q', 'list_queues', '--no-table-headers', 'name', $column]);
        foreach (explode("\n", $p->stdout()) as $line) {
            $f = preg_split('/\s+/', trim($line));
            if (($f[0] ?? '') === $queue) {
                return $f[1] ?? '';
            }
        }
        return '-1';
    }

    /**
     * `down` removes every container, the network and the volume of the project.
     *
     * @depends testTheComposeDeployment
     */
    public function testDownLeavesNothing(): void
    {
        foreach (self::$own as $name) {
            self::podman(['rm', '-f', '-t', '0', $name]);
        }
        self::$own = [];
        $down = Process::run(['bash', self::SCRIPT, 'down'], self::env(), 300.0);
        $this->assertSame(0, $down->exitCode(), $down->describe());
        $ps = self::podman(['ps', '-a', '--format', '{{.Names}}', '--filter', 'name=' . self::$project]);
        $this->assertSame('', trim($ps->stdout()), 'containers left');
        $this->assertNotSame(0, self::podman(['network', 'exists', self::$project . '_default'])->exitCode(), 'network left');
        $vols = self::podman(['volume', 'ls', '--format', '{{.Name}}', '--filter', 'name=' . self::$project]);
        $this->assertSame('', trim($vols->stdout()), 'volumes left');
    }
}
