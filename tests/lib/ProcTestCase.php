<?php

declare(strict_types=1);

namespace Ebats\Tests\Lib;

/**
 * Base class of the end-to-end tests: long-running fixtures (scheduler, worker, consumer) as child processes
 * (Process: a session of their own, stdout and stderr in files of this test's directory), a JSON-lines record
 * file they append to, polling with deadlines, and clean-up of every child in tearDown.
 *
 * Records (one JSON object a line, in $this->logFile) written by tests/fixtures/*.php:
 *   kind=run       a task handler ran: topic, name, params, t (unix time), pid, ppid (every record has t, pid, ppid)
 *   kind=cb        the worker callback: topic, taskid, taskname, params, timeuse, timeuse_type, message, status,
 *                  attempt, argc, t, pid
 *   kind=consumed  the Consumer callback: key, msg, type, t, pid
 */
abstract class ProcTestCase extends EbatsTestCase
{
    protected const FIXTURES = __DIR__ . '/../fixtures';

    protected string $tmp;
    protected string $logFile;
    /** @var list<Process> */
    private array $procs = [];

    protected function setUp(): void
    {
        parent::setUp();
        $this->tmp = sys_get_temp_dir() . '/ebats_e2e_' . static::prefix() . '_' . bin2hex(random_bytes(3));
        mkdir($this->tmp, 0777, true);
        $this->logFile = $this->tmp . '/records.jsonl';
        touch($this->logFile);
    }

    protected function tearDown(): void
    {
        $this->stopAll();
        parent::tearDown();
        if (isset($this->tmp) && is_dir($this->tmp)) {
            foreach (glob($this->tmp . '/*') ?: [] as $f) {
                @unlink($f);
            }
            @rmdir($this->tmp);
        }
    }

    /** Stops every child this test started (SIGTERM, then SIGKILL of its process group). */
    protected function stopAll(): void
    {
        foreach (array_reverse($this->procs) as $proc) {
            $proc->stop(5.0);
        }
        $this->procs = [];
    }

    /** Starts tests/fixtures/$script with the test's prefix and the record file in its environment. */
    protected function startFixture(string $name, string $script, array $env = [], array $args = []): Process
    {
        $n = count($this->procs);
        $proc = Process::php(
            self::FIXTURES . '/' . $script,
            $args,
            static::childEnv(array_merge(['EBATS_T_LOG' => $this->logFile], $env)),
            options: ['name' => $name, 'stdout' => "{$this->tmp}/$n-$name.out", 'stderr' => "{$this->tmp}/$n-$name.err"]
        );
        $this->procs[] = $proc;
        return $proc;
    }

    /**
     * Starts tests/fixtures/worker.php. Options (all optional):
     *   topic (default demo), procs (default 1), callback ('full' | 'six' | 'throw'), retry_intervals (list of s),
     *   service_retry ([max, pause]), prefetch, max_requests, limits (list of setLimit() arrays), debug (bool),
     *   env (more environment)
     * With $waitReady, returns once the broker shows the worker's consumers on the topic's ready queue.
     */
    protected function startWorker(array $opts = [], bool $waitReady = true): Process
    {
        $topic = $opts['topic'] ?? 'demo';
        $procs = $opts['procs'] ?? 1;
        $env = [
            'EBATS_T_TOPIC' => $topic,
            'EBATS_T_PROCS' => (string) $procs,
            'EBATS_T_CALLBACK' => $opts['callback'] ?? 'full',
            'EBATS_T_RETRY_INTERVALS' => isset($opts['retry_intervals']) ? json_encode($opts['retry_intervals']) : null,
            'EBATS_T_SERVICE_RETRY' => isset($opts['service_retry']) ? json_encode($opts['service_retry']) : null,
            'EBATS_T_PREFETCH' => isset($opts['prefetch']) ? (string) $opts['prefetch'] : null,
            'EBATS_T_MAX_REQUESTS' => isset($opts['max_requests']) ? (string) $opts['max_requests'] : null,
            'EBATS_T_LIMITS' => isset($opts['limits']) ? json_encode($opts['limits']) : null,
            'EBATS_DEBUG' => ($opts['debug'] ?? true) ? '1' : null,
        ];
        $proc = $this->startFixture($opts['name'] ?? "worker-$topic", 'worker.php', array_merge($env, $opts['env'] ?? []));
        if ($waitReady) {
            $this->waitConsumers(static::q("task.$topic"), $procs, 20, [$proc]);
        }
        return $proc;
    }

    /**
     * Starts tests/fixtures/scheduler.php with the given registrations: list of [event, task, topic, delay], and
     * follow-ups: list of [event, follow-up, when].
     */
    protected function startScheduler(array $registrations, bool $waitReady = true, string $name = 'scheduler', array $then = []): Process
    {
        $proc = $this->startFixture($name, 'scheduler.php', [
            'EBATS_T_REGISTER' => json_encode($registrations),
            'EBATS_T_THEN' => json_encode($then),
            'EBATS_DEBUG' => '1',
        ]);
        if ($waitReady) {
            $this->waitConsumers(static::q('events'), 1, 20, [$proc], true);
        }
        return $proc;
    }

    // ---- HTTP (metrics, status) ---------------------------------------------------------------------------

    /** A TCP port free on 127.0.0.1 right now. */
    protected static function freePort(): int
    {
        $s = stream_socket_server('tcp://127.0.0.1:0');
        $name = stream_socket_get_name($s, false);
        fclose($s);
        return (int) substr($name, strrpos($name, ':') + 1);
    }

    /** @return array{0:int,1:string} status and body of GET $path at $addr, or [0, ''] when nothing answers */
    protected static function httpGet(string $addr, string $path): array
    {
        $s = @stream_socket_client("tcp://$addr", $errno, $err, 2);
        if ($s === false) {
            return [0, ''];
        }
        stream_set_timeout($s, 10);
        fwrite($s, "GET $path HTTP/1.1\r\nHost: $addr\r\n\r\n");
        $raw = stream_get_contents($s);
        fclose($s);
        [$head, $body] = explode("\r\n\r\n", (string) $raw, 2) + [1 => ''];
        return [(int) (explode(' ', $head)[1] ?? 0), $body];
    }

    // ---- records -----------------------------------------------------------------------------------------

    /** @return list<array<string,mixed>> the records of the given kind (all when null), in file order */
    protected function records(?string $kind = null): array
    {
        $out = [];
        $raw = (string) @file_get_contents($this->logFile);
        foreach (explode("\n", $raw) as $line) {
            if ($line === '') {
                continue;
            }
            $rec = json_decode($line, true);
            if (!is_array($rec)) {
                continue; // a line being written right now
            }
            if ($kind === null || ($rec['kind'] ?? null) === $kind) {
                $out[] = $rec;
            }
        }
        return $out;
    }

    /** @return list<array<string,mixed>> callback records of one task id */
    protected function callbacks(string $taskId): array
    {
        return array_values(array_filter($this->records('cb'), static fn (array $r): bool => $r['taskid'] === $taskId));
    }

    /** @return list<array<string,mixed>> handler-run records whose params contain $tag under key 'tag' */
    protected function runs(string $tag): array
    {
        return array_values(array_filter(
            $this->records('run'),
            static fn (array $r): bool => is_array($r['params'] ?? null) && ($r['params']['tag'] ?? null) === $tag
        ));
    }

    /** @return list<int> the params' `i` of the runs tagged $tag, sorted: range(0, n - 1) when each ran once */
    protected function ranIndexes(string $tag): array
    {
        $i = array_map(static fn (array $r): int => $r['params']['i'], $this->runs($tag));
        sort($i);
        return $i;
    }

    /** Waits until $taskId has at least $n callback records; returns them. */
    protected function waitCallbacks(string $taskId, int $n, float $timeout, string $what = ''): array
    {
        return $this->waitFor(
            fn () => count($cbs = $this->callbacks($taskId)) >= $n ? $cbs : null,
            $timeout,
            ($what !== '' ? "$what: " : '') . "$n callback(s) for task $taskId"
        );
    }

    // ---- waiting -----------------------------------------------------------------------------------------

    /**
     * Polls $condition until it returns something other than null/false, and returns that; fails the test
     * with the record file and the children's output when $timeout s pass first.
     */
    protected function waitFor(callable $condition, float $timeout, string $what, float $interval = 0.05): mixed
    {
        $value = Process::until($condition, $timeout, $interval);
        if ($value === null) {
            $this->fail("timed out after {$timeout} s waiting for: $what\n" . $this->diagnostics());
        }
        return $value;
    }

    /**
     * Makes the schedule change $change (of kind $kind: pause, resume, remove...) and waits until the cron leader
     * $leader has read it from the schedule stream: a firing it made before is in the queues by then, and none
     * after comes from the state before the change. Returns what $change returned.
     */
    protected function afterLeaderReads(Process $leader, string $kind, callable $change): mixed
    {
        $line = "cron: schedule change '$kind' read";
        $before = substr_count($leader->stderr(), $line);
        $result = $change();
        $this->waitFor(static fn () => substr_count($leader->stderr(), $line) > $before ?: null, 10, "the leader reads the $kind\n" . $leader->describe());
        return $result;
    }

    /** Asserts that $condition stays false/null for $seconds (for "nothing more happens" checks). */
    protected function assertStays(callable $condition, float $seconds, string $what): void
    {
        $deadline = microtime(true) + $seconds;
        do {
            $value = $condition();
            if ($value !== null && $value !== false) {
                $this->fail("$what\ngot: " . json_encode($value) . "\n" . $this->diagnostics());
            }
            usleep(50000);
        } while (microtime(true) < $deadline);
    }

    /**
     * Queue statistics from rabbitmqctl: name => [ready, unacked, consumers] for this class's queues
     * (names starting with the prefix, which includes the Consumer's own "<prefix>_..." queues).
     * @return array<string,array{ready:int,unacked:int,consumers:int}>
     */
    protected static function queueStats(): array
    {
        $out = TestEnv::rabbitmqctl(['list_queues', '-q', '--no-table-headers', '-p', TestEnv::vhost(), 'name', 'messages_ready', 'messages_unacknowledged', 'consumers']);
        $stats = [];
        foreach (explode("\n", $out) as $line) {
            $f = explode("\t", trim($line));
            if (count($f) === 4 && str_starts_with($f[0], static::prefix())) {
                $stats[$f[0]] = ['ready' => (int) $f[1], 'unacked' => (int) $f[2], 'consumers' => (int) $f[3]];
            }
        }
        return $stats;
    }

    /**
     * Waits until $queue has at least $n consumers (so the process consuming it is ready). The count is
     * a passive declare's, except for a $stream: the broker answers a stream's declare with 0 consumers,
     * so its count is taken from a listing.
     */
    protected function waitConsumers(string $queue, int $n, float $timeout, array $procs = [], bool $exact = false, bool $stream = false): void
    {
        $c = 0;
        try {
            $ready = Process::until(function () use ($queue, $n, $procs, $exact, $stream, &$c): bool {
                $c = $stream ? (self::queueStats()[$queue]['consumers'] ?? 0) : (TestEnv::broker()->declared($queue)['consumers'] ?? 0);
                if ($exact ? $c === $n : $c >= $n) {
                    return true;
                }
                foreach ($procs as $proc) {
                    if ($proc->hasExited()) {
                        $this->fail("{$proc->name} exited before consuming $queue\n" . $proc->describe());
                    }
                }
                return false;
            }, $timeout, 0.05);
        } finally {
            TestEnv::broker()->closeDeclaring();
        }
        if ($ready === null) {
            $this->fail("$queue has $c consumer(s), not $n, after {$timeout} s\n" . $this->diagnostics());
        }
    }

    /**
     * Waits until $queue holds no message at all, neither ready nor unacked: its ready count by a
     * passive declare first (cheap), then both by a listing (the only one that shows the unacked).
     */
    protected function waitQueueDrained(string $queue, float $timeout): void
    {
        try {
            $this->waitFor(
                static function () use ($queue) {
                    if ((TestEnv::broker()->declared($queue)['ready'] ?? 1) !== 0) {
                        return false;
                    }
                    $s = self::queueStats()[$queue] ?? null;
                    return $s !== null && $s['ready'] === 0 && $s['unacked'] === 0;
                },
                $timeout,
                "queue $queue drained (no ready and no unacked message)",
                0.2
            );
        } finally {
            TestEnv::broker()->closeDeclaring();
        }
    }

    /** Record file and every child's output, for failure messages. */
    protected function diagnostics(): string
    {
        $records = (string) @file_get_contents($this->logFile);
        if (strlen($records) > 6000) {
            $records = '...' . substr($records, -6000);
        }
        $parts = ["--- records ---\n" . $records];
        foreach ($this->procs as $proc) {
            $parts[] = $proc->describe();
        }
        try {
            $parts[] = '--- queues ---' . "\n" . json_encode(self::queueStats());
        } catch (\Throwable $e) {
            $parts[] = '--- queues --- unavailable: ' . $e->getMessage();
        }
        return implode("\n", $parts);
    }

    /**
     * Runs the original library's producer (tests/fixtures/legacy/produce.php, without the extension) to its
     * end: $count messages of $what, $params merged into each; returns what it printed ({published, ids}).
     */
    protected function legacy(string $what, int $count = 1, array $params = [], array $env = []): array
    {
        $p = Process::php(
            self::FIXTURES . '/legacy/produce.php',
            ['-', static::prefix(), $what, (string) $count, '0', json_encode((object) $params)],
            static::childEnv(array_merge(['EBATS_T_LOG' => $this->logFile], $env)),
            withExtension: false
        )->wait(60);
        $this->assertSame(0, $p->exitCode(), "the original's producer failed ($what)\n" . $p->describe());
        $out = json_decode(trim($p->stdout()), true);
        $this->assertIsArray($out, "the original's producer printed no summary ($what)\n" . $p->describe());
        return $out;
    }
}
