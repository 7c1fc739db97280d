<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\Event;
use Asynclib\Ebats\Scheduler;
use Asynclib\Ebats\Task;
use Asynclib\Ebats\Worker;
use Asynclib\Exception\TaskException;
use Ebats\Tests\Lib\BrokerProxy;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\ProcTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * Prometheus metrics of workers and schedulers: the counts after known outcomes, read directly and through a
 * real Prometheus server; histograms, a child's memory, queue depths against rabbitmqctl; off by default.
 */
final class MetricsTest extends ProcTestCase
{
    /** The value of the sample $name with exactly $labels, from exposition $text; null when absent. */
    private static function sample(string $text, string $name, array $labels = []): ?float
    {
        foreach (explode("\n", $text) as $line) {
            if (!preg_match('/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/', $line, $m) || $m[1] !== $name) {
                continue;
            }
            preg_match_all('/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\\]|\\\\.)*)"/', $m[3] ?? '', $lm, PREG_SET_ORDER);
            $got = [];
            foreach ($lm as $l) {
                $got[$l[1]] = stripcslashes($l[2]);
            }
            if ($got == $labels) {
                return (float) $m[4];
            }
        }
        return null;
    }

    private function waitMetrics(string $addr, callable $ok, float $timeout, string $what): string
    {
        $last = '';
        $r = Process::until(function () use ($addr, $ok, &$last) {
            [$status, $body] = self::httpGet($addr, '/metrics');
            $last = $body;
            return $status === 200 && $ok($body) ? $body : null;
        }, $timeout, 0.2);
        if ($r === null) {
            $this->fail("timed out waiting for: $what\nlast exposition:\n$last\n" . $this->diagnostics());
        }
        return $r;
    }

    /** Inodes of the TCP sockets listening on this machine (IPv4 and IPv6). */
    private static function listeningInodes(): array
    {
        $inodes = [];
        foreach (['/proc/net/tcp', '/proc/net/tcp6'] as $f) {
            foreach (array_slice(file($f) ?: [], 1) as $line) {
                $c = preg_split('/\s+/', trim($line));
                if (($c[3] ?? '') === '0A') {
                    $inodes[] = $c[9];
                }
            }
        }
        return $inodes;
    }

    /** Socket inodes held open by the given processes. */
    private static function socketInodes(array $pids): array
    {
        $inodes = [];
        foreach ($pids as $pid) {
            foreach (glob("/proc/$pid/fd/*") ?: [] as $fd) {
                if (preg_match('/^socket:\[(\d+)\]$/', (string) @readlink($fd), $m)) {
                    $inodes[] = $m[1];
                }
            }
        }
        return $inodes;
    }

    private function assertPromtoolAccepts(string $text): void
    {
        file_put_contents($f = "{$this->tmp}/exposition.txt", $text);
        $check = Process::run(['sh', '-c', 'promtool check metrics < ' . escapeshellarg($f)]);
        $this->assertSame(0, $check->exitCode(), $check->describe() . "\n" . $text);
    }

    public function testOffByDefault(): void
    {
        $worker = $this->startWorker(['procs' => 2]);
        $pids = $worker->groupPids();
        $this->assertGreaterThanOrEqual(3, count($pids), 'parent and two children');
        $listening = array_intersect(self::socketInodes($pids), self::listeningInodes());
        $this->assertSame([], array_values($listening), 'the worker listens on no socket');
        $this->assertSame([0, ''], self::httpGet('127.0.0.1:9464', '/metrics'));
    }

    public function testBadAddresses(): void
    {
        $w = new Worker(static function (): void {});
        foreach (['nope', '127.0.0.1', '127.0.0.1:99999', 'localhost:9464', ''] as $bad) {
            $e = self::thrown(static fn () => $w->setMetricsAddress($bad));
            $this->assertInstanceOf(TaskException::class, $e, $bad);
            $this->assertStringContainsString('invalid metrics address', $e->getMessage());
        }
        $e = self::thrown(static fn () => (new Scheduler())->setMetricsAddress('1.2.3.4:x'));
        $this->assertInstanceOf(TaskException::class, $e);

        // A bad setting is refused when the worker starts, with the setting's name.
        $p = Process::runPhp(
            '<?php $w = new Asynclib\Ebats\Worker(fn () => null); $w->setQueue("demo");'
            . 'try { $w->run(); } catch (Asynclib\Exception\TaskException $e) { echo get_class($e), ": ", $e->getMessage(); }',
            static::childEnv(['EBATS_METRICS_ADDRESS' => 'somewhere']),
        );
        $this->assertStringContainsString('TaskException: ebats.metrics_address: invalid metrics address', $p->stdout(), $p->describe());

        // An address in use is refused at run().
        $busy = stream_socket_server('tcp://127.0.0.1:0');
        $addr = stream_socket_get_name($busy, false);
        $p = Process::runPhp(
            '<?php $w = new Asynclib\Ebats\Worker(fn () => null); $w->setQueue("demo")->setMetricsAddress("' . $addr . '");'
            . 'try { $w->run(); } catch (Asynclib\Exception\TaskException $e) { echo get_class($e), ": ", $e->getMessage(); }',
            static::childEnv(),
        );
        fclose($busy);
        $this->assertStringContainsString("cannot listen for metrics on $addr", $p->stdout(), $p->describe());
    }

    public function testWorkerCountsThroughPrometheus(): void
    {
        $addr = '127.0.0.1:' . self::freePort();
        $this->startWorker(['procs' => 2, 'debug' => false, 'env' => ['EBATS_T_METRICS' => $addr]]);
        [$status, $body] = self::httpGet($addr, '/healthz');
        $this->assertSame(200, $status, $body);
        $this->assertSame(404, self::httpGet($addr, '/nope')[0]);

        // 200 tasks: 120 succeed, 50 fail, 30 are retried once (interval 0) and then fail.
        $ids = [];
        for ($i = 0; $i < 200; $i++) {
            $ids[] = match (true) {
                $i % 20 < 12 => Task::create('demo', 'ok', ['i' => $i]),
                $i % 20 < 17 => Task::create('demo', 'fail', ['i' => $i]),
                default => Task::create('demo', 'retry', ['i' => $i, 'retry' => 1, 'interval' => 0]),
            };
        }
        $this->waitFor(fn () => count($this->records('cb')) >= 230 ? true : null, 90, '230 callbacks');
        // Two tasks left waiting in a delay level, for the depths.
        Task::create('demo', 'ok', ['late' => 1], 600);
        Task::create('demo', 'ok', ['late' => 2], 600);

        $t = ['topic' => 'demo'];
        $want = [
            ['ok', 'succeeded', 120], ['fail', 'failed', 50], ['retry', 'retried', 30], ['retry', 'failed', 30],
            ['ok', 'failed', 0], ['retry', 'succeeded', 0], ['ok', 'died', 0],
        ];
        $text = $this->waitMetrics($addr, static function (string $m) use ($want): bool {
            foreach ($want as [$task, $outcome, $n]) {
                if (self::sample($m, 'ebats_tasks_total', ['topic' => 'demo', 'task' => $task, 'outcome' => $outcome]) !== (float) $n) {
                    return false;
                }
            }
            return true;
        }, 20, 'the task counts');
        $this->assertSame(120.0, self::sample($text, 'ebats_task_run_seconds_count', $t + ['task' => 'ok']));
        $this->assertSame(50.0, self::sample($text, 'ebats_task_run_seconds_count', $t + ['task' => 'fail']));
        $this->assertSame(60.0, self::sample($text, 'ebats_task_run_seconds_bucket', $t + ['task' => 'retry', 'le' => '+Inf']));
        $this->assertSame(230.0, self::sample($text, 'ebats_task_wait_seconds_count', $t));
        $this->assertSame(0.0, self::sample($text, 'ebats_tasks_in_flight', $t));
        $this->assertSame(2.0, self::sample($text, 'ebats_worker_children', $t));
        $this->assertSame(2.0, self::sample($text, 'ebats_worker_child_starts_total', $t));
        $this->assertSame(1.0, self::sample($text, 'ebats_broker_up'));

        // promtool accepts the exposition.
        $this->assertPromtoolAccepts($text);

        // Queue depths equal what rabbitmqctl reports.
        $text = $this->waitMetrics($addr, static function (string $m): bool {
            foreach (self::queueStats() as $queue => $s) {
                $role = match (true) {
                    $queue === static::q('task.demo') => 'ready',
                    $queue === static::q('failed.demo') => 'failed',
                    str_starts_with($queue, static::q('delay.L')) => 'delay',
                    default => null,
                };
                if ($role === null) {
                    continue;
                }
                if (self::sample($m, 'ebats_queue_messages_ready', ['queue' => $queue, 'role' => $role]) !== (float) $s['ready']) {
                    return false;
                }
            }
            return true;
        }, 20, 'queue depths equal to rabbitmqctl list_queues');
        $stats = self::queueStats();
        $this->assertSame(80, $stats[static::q('failed.demo')]['ready']);
        $this->assertSame(80.0, self::sample($text, 'ebats_queue_messages_ready', ['queue' => static::q('failed.demo'), 'role' => 'failed']));
        $this->assertSame(2.0, self::sample($text, 'ebats_queue_consumers', ['queue' => static::q('task.demo'), 'role' => 'ready']));
        $delayed = 0.0;
        for ($l = 0; $l < 28; $l++) {
            $delayed += self::sample($text, 'ebats_queue_messages_ready', ['queue' => static::q("delay.L$l"), 'role' => 'delay']) ?? 0.0;
        }
        $this->assertSame(2.0, $delayed, 'the two delayed tasks wait in a delay level');

        // A real Prometheus server scraping the worker returns the same counts through its query API.
        $this->withPrometheus($addr, "scrape_interval: 1s", fn (int $promPort) => $this->queryPrometheus($promPort));
        $this->childMemory($addr);
    }

    /** Runs $then(port) while a real Prometheus server (global settings $global) scrapes $addr. */
    private function withPrometheus(string $addr, string $global, callable $then): void
    {
        $promPort = self::freePort();
        file_put_contents("{$this->tmp}/prometheus.yml", "global:\n  " . str_replace("\n", "\n  ", $global) . "\nscrape_configs:\n"
            . "  - job_name: ebats\n    static_configs:\n      - targets: ['$addr']\n");
        $prometheus = Process::start([
            'prometheus', "--config.file={$this->tmp}/prometheus.yml", "--storage.tsdb.path={$this->tmp}/tsdb",
            "--web.listen-address=127.0.0.1:$promPort",
        ], [], ['name' => 'prometheus', 'stdout' => "{$this->tmp}/prometheus.out", 'stderr' => "{$this->tmp}/prometheus.err"]);
        try {
            $then($promPort);
        } finally {
            $prometheus->stop(5.0);
            Process::run(['rm', '-rf', "{$this->tmp}/tsdb"]);
        }
    }

    private function queryPrometheus(int $promPort): void
    {
        $query = static function (string $q) use ($promPort): ?array {
            $raw = @file_get_contents("http://127.0.0.1:$promPort/api/v1/query?query=" . rawurlencode($q));
            $r = is_string($raw) ? json_decode($raw, true) : null;
            return ($r['status'] ?? '') === 'success' ? $r['data']['result'] : null;
        };
        $byLabels = $this->waitFor(static function () use ($query): ?array {
            $res = $query('ebats_tasks_total{job="ebats"} > 0');
            if ($res === null || count($res) < 4) {
                return null;
            }
            $out = [];
            foreach ($res as $r) {
                $out[$r['metric']['task'] . '/' . $r['metric']['outcome']] = (int) $r['value'][1];
            }
            ksort($out);
            return $out;
        }, 60, 'Prometheus to scrape the worker');
        $this->assertSame(['fail/failed' => 50, 'ok/succeeded' => 120, 'retry/failed' => 30, 'retry/retried' => 30], $byLabels);
        $hist = $query('ebats_task_run_seconds_count{job="ebats",task="ok"}');
        $this->assertSame('120', $hist[0]['value'][1] ?? null);

    }

    /** A child's resident memory follows what its handler allocates. */
    private function childMemory(string $addr): void
    {
        $before = [];
        foreach (explode("\n", self::httpGet($addr, '/metrics')[1]) as $line) {
            if (preg_match('/^ebats_process_resident_memory_bytes\{role="child",slot="\d+",pid="(\d+)"\} (\d+)/', $line, $m)) {
                $before[(int) $m[1]] = (int) $m[2];
            }
        }
        $this->assertCount(2, $before);
        Task::create('demo', 'alloc', ['mb' => 64]);
        $run = $this->waitFor(fn () => array_values(array_filter($this->records('run'), static fn ($r) => $r['name'] === 'alloc'))[0] ?? null, 20, 'the allocation');
        $pid = $run['pid'];
        $this->assertArrayHasKey($pid, $before);
        $this->waitMetrics($addr, static function (string $m) use ($pid, $before): bool {
            return preg_match('/^ebats_process_resident_memory_bytes\{role="child",slot="\d+",pid="' . $pid . '"\} (\d+)$/m', $m, $mm) === 1
                && (int) $mm[1] >= $before[$pid] + 60 * 1048576;
        }, 20, "child $pid's resident memory to grow by 64 MB");
    }

    public function testDeathsExitsAndHealth(): void
    {
        $proxy = new BrokerProxy();
        $port = $proxy->start();
        try {
            $this->deathsExitsAndHealth($proxy, $port);
        } finally {
            $this->stopAll();
            $proxy->cut();
        }
    }

    private function deathsExitsAndHealth(BrokerProxy $proxy, int $port): void
    {
        $addr = '127.0.0.1:' . self::freePort();
        $this->startWorker(['debug' => false, 'env' => ['EBATS_T_METRICS' => $addr, 'EBATS_AMQP_URL' => TestEnv::amqpUrl(null, $port)]]);
        $this->assertSame(200, self::httpGet($addr, '/healthz')[0]);

        // A handler that kills its process: the run counts as died, the child's exit as a signal, and the
        // task's next run (in the replacement child) as succeeded.
        Task::create('demo', 'dieOnce', ['flag' => "{$this->tmp}/died"]);
        $t = ['topic' => 'demo'];
        $text = $this->waitMetrics($addr, static fn (string $m): bool => self::sample($m, 'ebats_tasks_total', $t + ['task' => 'dieOnce', 'outcome' => 'succeeded']) === 1.0, 30, 'the task to succeed after its death');
        $this->assertSame(1.0, self::sample($text, 'ebats_tasks_total', $t + ['task' => 'dieOnce', 'outcome' => 'died']));
        $this->assertSame(1.0, self::sample($text, 'ebats_worker_child_exits_total', $t + ['reason' => 'signal']));
        $this->assertSame(0.0, self::sample($text, 'ebats_worker_child_exits_total', $t + ['reason' => 'exit']));
        $this->assertSame(2.0, self::sample($text, 'ebats_worker_child_starts_total', $t));
        $this->assertPromtoolAccepts($text);

        // The broker out of reach: /healthz says 503, and 200 again once it is back.
        $proxy->cut();
        $this->assertNotNull(Process::until(static fn () => self::httpGet($addr, '/healthz')[0] === 503, 20, 0.2), 'healthz 503 while the broker is unreachable');
        $this->assertSame(0.0, self::sample(self::httpGet($addr, '/metrics')[1], 'ebats_broker_up'));
        $proxy->start();
        $this->assertNotNull(Process::until(static fn () => self::httpGet($addr, '/healthz')[0] === 200, 30, 0.2), 'healthz 200 once the broker is back');
    }

    public function testSchedulerCounts(): void
    {
        $addr = '127.0.0.1:' . self::freePort();
        $proc = $this->startFixture('scheduler', 'scheduler.php', [
            'EBATS_T_REGISTER' => json_encode([['paid', 'ok', 'demo', 0], ['paid', 'ping', 'demo', 0]]),
            'EBATS_METRICS_ADDRESS' => $addr,
        ]);
        $this->waitConsumers(static::q('events'), 1, 20, [$proc], true);
        for ($i = 0; $i < 3; $i++) {
            (new Event('paid'))->publish();
        }
        (new Event('nobody_listens'))->publish();
        $text = $this->waitMetrics($addr, static fn (string $m): bool => self::sample($m, 'ebats_scheduler_events_total', ['outcome' => 'unknown']) === 1.0
            && self::sample($m, 'ebats_scheduler_events_total', ['outcome' => 'routed']) === 3.0, 20, 'the scheduler counts');
        $this->assertSame(6.0, self::sample($text, 'ebats_scheduler_tasks_made_total'));
        $this->assertSame(1.0, self::sample($text, 'ebats_queue_consumers', ['queue' => static::q('events'), 'role' => 'events']));
        $this->assertSame(200, self::httpGet($addr, '/healthz')[0]);
        $this->assertPromtoolAccepts($text);
    }

    public function testCronFiringsAndLeadership(): void
    {
        $addr = '127.0.0.1:' . self::freePort();
        $proc = $this->startFixture('scheduler', 'cron_scheduler.php', [
            'EBATS_T_CRON' => json_encode([['* * * * * *', 'metrics_tick', [], ['name' => 'every-second']]]),
            'EBATS_METRICS_ADDRESS' => $addr,
        ]);
        $text = $this->waitMetrics($addr, static fn (string $m): bool => self::sample($m, 'ebats_scheduler_leader') === 1.0
            && (self::sample($m, 'ebats_cron_firings_total', ['schedule' => 'every-second']) ?? 0.0) >= 3.0, 20, 'the leader counting its firings');
        $this->assertPromtoolAccepts($text);
        $proc->signal(SIGTERM);
        $this->assertSame(0, $proc->waitExit(5), $proc->describe());
    }

    public function testConsumerCounts(): void
    {
        $addr = '127.0.0.1:' . self::freePort();
        $queue = static::prefix() . '_orders';
        $exchange = static::prefix() . '_orders_x';
        $proc = $this->startFixture('consumer', 'consumer.php', [
            'EBATS_T_EXCHANGE' => $exchange,
            'EBATS_T_QUEUE' => $queue,
            'EBATS_T_KEYS' => json_encode(['#']),
            'EBATS_METRICS_ADDRESS' => $addr,
        ]);
        $this->waitConsumers($queue, 1, 20, [$proc], true);
        for ($i = 0; $i < 3; $i++) {
            $this->broker->publish($exchange, 'a.b', json_encode(['i' => $i]));
        }
        $this->broker->publish($exchange, 'a.b', json_encode(['throw' => 'no']));
        $text = $this->waitMetrics($addr, static fn (string $m): bool => self::sample($m, 'ebats_consumer_messages_total', ['outcome' => 'handled']) === 3.0
            && self::sample($m, 'ebats_consumer_messages_total', ['outcome' => 'failed']) === 1.0, 20, 'the consumer counts');
        $this->assertSame(1.0, self::sample($text, 'ebats_queue_consumers', ['queue' => $queue, 'role' => 'consumer']));
        $this->assertPromtoolAccepts($text);
    }

    /** Starts tests/fixtures/trickle.php: $n connections to $addr each sending a byte every $every s. */
    private function trickle(string $addr, int $n, float $every = 1.5): Process
    {
        $p = $this->startFixture('trickle', 'trickle.php', [], [$addr, (string) $n, (string) $every]);
        $this->waitFor(static fn () => str_contains($p->stdout(), "open $n\n") && str_contains($p->stdout(), "sent 2\n") ? true : null, 30, "$n trickling connections\n" . $p->describe());
        return $p;
    }

    /** @return array{0:int,1:float} status of GET $path at $addr (0 when no answer within $timeout s), seconds taken */
    public static function timedGet(string $addr, string $path, float $timeout = 3.0, string $headers = ''): array
    {
        $t0 = microtime(true);
        $s = @stream_socket_client("tcp://$addr", $errno, $err, $timeout);
        if ($s === false) {
            return [0, microtime(true) - $t0];
        }
        stream_set_timeout($s, (int) ceil($timeout));
        fwrite($s, "GET $path HTTP/1.1\r\nHost: $addr\r\n{$headers}\r\n");
        $raw = (string) stream_get_contents($s);
        fclose($s);
        return [preg_match('~^HTTP/1\.1 (\d+)~', $raw, $m) ? (int) $m[1] : 0, microtime(true) - $t0];
    }

    /**
     * 100 connections trickling a byte every 1.5 s do not hold a worker's /metrics and /healthz: a real Prometheus
     * scraping every 2 s (timeout 2 s) gets every scrape, and /healthz answers each probe within 3 s (a held
     * endpoint answers none).
     */
    public function testSlowClientsCannotHoldTheEndpoints(): void
    {
        $addr = '127.0.0.1:' . self::freePort();
        $this->startWorker(['procs' => 1, 'debug' => false, 'env' => ['EBATS_T_METRICS' => $addr]]);
        $this->assertNotNull(Process::until(static fn () => self::httpGet($addr, '/healthz')[0] === 200, 20, 0.2), 'healthz 200');
        $this->trickle($addr, 100);

        $this->withPrometheus($addr, "scrape_interval: 2s\nscrape_timeout: 2s", function (int $promPort) use ($addr): void {
            $query = static function (string $q) use ($promPort): ?array {
                $raw = @file_get_contents("http://127.0.0.1:$promPort/api/v1/query?query=" . rawurlencode($q));
                $r = is_string($raw) ? json_decode($raw, true) : null;
                return ($r['status'] ?? '') === 'success' ? $r['data']['result'] : null;
            };
            // Probe /healthz while Prometheus makes its first eight scrapes.
            $probes = [];
            $scrapes = $this->waitFor(static function () use ($query, $addr, &$probes): ?int {
                $probes[] = self::timedGet($addr, '/healthz', 3.0);
                $n = (int) ($query('count_over_time(up{job="ebats"}[5m])')[0]['value'][1] ?? 0);
                return $n >= 8 ? $n : null;
            }, 90, 'eight scrapes by Prometheus', 0.3);
            $ok = (int) ($query('sum_over_time(up{job="ebats"}[5m])')[0]['value'][1] ?? -1);
            $this->assertSame($scrapes, $ok, "every scrape succeeded ($ok of $scrapes)");
            // A held endpoint answers no probe within its 3 s; how fast the others were is the bench's concern.
            $slowest = round(max(array_column($probes, 1)), 3);
            $this->assertSame([200], array_values(array_unique(array_column($probes, 0))), "every /healthz probe answered 200 (the slowest in $slowest s)");
            $this->assertGreaterThanOrEqual(10, count($probes));
        });
    }

    /** A Scheduler given SIGTERM while slow clients hold connections to its metrics exits within a second. */
    public function testSchedulerStopsWithSlowClientsConnected(): void
    {
        $addr = '127.0.0.1:' . self::freePort();
        $proc = $this->startFixture('scheduler', 'scheduler.php', [
            'EBATS_T_REGISTER' => json_encode([['paid', 'ok', 'demo', 0]]),
            'EBATS_METRICS_ADDRESS' => $addr,
        ]);
        $this->waitConsumers(static::q('events'), 1, 20, [$proc], true);
        $this->assertNotNull(Process::until(static fn () => self::httpGet($addr, '/healthz')[0] === 200, 20, 0.2), 'healthz 200');
        $this->trickle($addr, 5);
        $t0 = microtime(true);
        $proc->signal(SIGTERM);
        $code = $proc->waitExit(10);
        $took = microtime(true) - $t0;
        $this->assertSame(0, $code, $proc->describe());
        $this->assertStringContainsString('scheduler run() returned', $proc->stdout());
        $this->assertLessThan(1.5, $took, 'seconds from SIGTERM to exit');
    }

    public function testAlertRulesAndScrapeConfig(): void
    {
        $dir = TestEnv::repoRoot() . '/docs/monitoring';
        $rules = Process::run(['promtool', 'check', 'rules', "$dir/alerts.yml"]);
        $this->assertSame(0, $rules->exitCode(), $rules->describe());
        $config = Process::run(['promtool', 'check', 'config', "$dir/prometheus.yml"]);
        $this->assertSame(0, $config->exitCode(), $config->describe());
    }
}
