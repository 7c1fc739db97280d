<?php

declare(strict_types=1);

namespace Ebats\Tests\Lib;

/*
 * Long-running child processes (scheduler, worker, consumer) for the end-to-end tests, and a base test case
 * that starts them, reads what they record and stops every one of them in tearDown.
 *
 * Children run the scripts of tests/fixtures/ in a session of their own (setsid), so that the processes a
 * Worker forks can be killed with their parent. Their stdout and stderr go to files, not pipes: a chatty
 * child (EBATS_DEBUG) can never block on a full pipe nobody reads.
 */

/** One long-running child process in its own session (its pid is also its process group id). */
final class Proc
{
    /** @var resource|null */
    private $process;
    private int $pid;
    private ?int $exitCode = null;
    private bool $exited = false;
    public readonly float $startedAt;

    /**
     * @param array<string,string|null> $env changes to this process's environment (null removes a variable)
     */
    public function __construct(
        public readonly string $name,
        private array $command,
        array $env,
        public readonly string $stdoutFile,
        public readonly string $stderrFile
    ) {
        $fullEnv = getenv();
        foreach ($env as $key => $value) {
            if ($value === null) {
                unset($fullEnv[$key]);
            } else {
                $fullEnv[$key] = (string) $value;
            }
        }
        $this->startedAt = microtime(true);
        $process = proc_open(
            array_merge(['setsid'], $command),
            [0 => ['file', '/dev/null', 'r'], 1 => ['file', $stdoutFile, 'a'], 2 => ['file', $stderrFile, 'a']],
            $pipes,
            null,
            $fullEnv
        );
        if (!is_resource($process)) {
            throw new \RuntimeException("cannot start $name: " . implode(' ', $command));
        }
        $this->process = $process;
        // setsid(1) execs in place (the child of proc_open is not a group leader), so this pid is the PHP process.
        $this->pid = (int) proc_get_status($process)['pid'];
    }

    public function pid(): int
    {
        return $this->pid;
    }

    public function hasExited(): bool
    {
        if ($this->exited || $this->process === null) {
            return true;
        }
        $status = proc_get_status($this->process);
        if (!$status['running']) {
            $this->exited = true;
            $this->exitCode = $status['signaled'] ? 128 + $status['termsig'] : $status['exitcode'];
        }
        return $this->exited;
    }

    /** Exit code (128 + signal when killed by a signal), or null while it runs. */
    public function exitCode(): ?int
    {
        $this->hasExited();
        return $this->exitCode;
    }

    /** Sends $signal to the process itself (not to its group). */
    public function signal(int $signal): void
    {
        if (!$this->hasExited()) {
            posix_kill($this->pid, $signal);
        }
    }

    /** Waits for the process to exit; returns its exit code, or null when it still runs after $timeout s. */
    public function waitExit(float $timeout): ?int
    {
        $deadline = microtime(true) + $timeout;
        while (!$this->hasExited()) {
            if (microtime(true) >= $deadline) {
                return null;
            }
            usleep(20000);
        }
        return $this->exitCode;
    }

    /** Pids of the live processes of this child's process group (the parent and what it forked). */
    public function groupPids(): array
    {
        $pids = [];
        foreach (glob('/proc/[0-9]*/stat') ?: [] as $statFile) {
            $stat = @file_get_contents($statFile);
            if ($stat === false) {
                continue;
            }
            // pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses: split after the last ')'
            $rest = substr($stat, strrpos($stat, ')') + 2);
            $fields = explode(' ', $rest);
            if ((int) ($fields[2] ?? -1) === $this->pid && ($fields[0] ?? '') !== 'Z') {
                $pids[] = (int) basename(dirname($statFile));
            }
        }
        return $pids;
    }

    /**
     * SIGTERM to the process, up to $grace s for it to exit, then SIGKILL to its whole process group
     * (also when the parent exited by itself but left children behind).
     */
    public function stop(float $grace = 5.0): ?int
    {
        if (!$this->hasExited()) {
            posix_kill($this->pid, SIGTERM);
            $this->waitExit($grace);
        }
        if ($this->groupPids() !== []) {
            posix_kill(-$this->pid, SIGKILL);
            $deadline = microtime(true) + 5;
            while ($this->groupPids() !== [] && microtime(true) < $deadline) {
                usleep(20000);
            }
        }
        if (!$this->hasExited()) {
            $this->waitExit(5);
        }
        if ($this->process !== null) {
            proc_close($this->process);
            $this->process = null;
            $this->exited = true;
        }
        return $this->exitCode;
    }

    public function stdout(): string
    {
        return (string) @file_get_contents($this->stdoutFile);
    }

    public function stderr(): string
    {
        return (string) @file_get_contents($this->stderrFile);
    }

    /** The last $bytes of stdout and stderr, for failure messages. */
    public function describe(int $bytes = 4000): string
    {
        $tail = static fn (string $s): string => strlen($s) > $bytes ? '...' . substr($s, -$bytes) : $s;
        $this->hasExited();
        return sprintf(
            "--- %s (pid %d, %s) ---\ncommand: %s\n[stdout]\n%s\n[stderr]\n%s",
            $this->name,
            $this->pid,
            $this->exited ? 'exited ' . var_export($this->exitCode, true) : 'running',
            implode(' ', $this->command),
            $tail($this->stdout()),
            $tail($this->stderr())
        );
    }

    public function __destruct()
    {
        $this->stop(0.5);
    }
}

/**
 * Base class of the end-to-end tests: fixtures as child processes, a JSON-lines record file they append to,
 * polling with deadlines, and clean-up of every child in tearDown.
 *
 * Records (one JSON object a line, in $this->logFile) written by tests/fixtures/*.php:
 *   kind=run       a task handler ran: topic, name, params, t (unix time), pid
 *   kind=cb        the worker callback: topic, taskid, taskname, params, timeuse, timeuse_type, message, status,
 *                  attempt, argc, t, pid
 *   kind=consumed  the Consumer callback: key, msg, type, t, pid
 */
abstract class ProcTestCase extends EbatsTestCase
{
    protected const FIXTURES = __DIR__ . '/../fixtures';

    protected string $tmp;
    protected string $logFile;
    /** @var list<Proc> */
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

    /** Starts tests/fixtures/$script with the class's prefix and the record file in its environment. */
    protected function startFixture(string $name, string $script, array $env = [], array $args = []): Proc
    {
        $n = count($this->procs);
        $proc = new Proc(
            $name,
            array_merge(TestEnv::phpCommand(), [self::FIXTURES . '/' . $script], $args),
            static::childEnv(array_merge(['EBATS_T_LOG' => $this->logFile], $env)),
            "{$this->tmp}/$n-$name.out",
            "{$this->tmp}/$n-$name.err"
        );
        $this->procs[] = $proc;
        return $proc;
    }

    /**
     * Starts tests/fixtures/worker.php. Options (all optional):
     *   topic (default demo), procs (default 1), callback ('full' | 'six' | 'throw'), retry_intervals (list of s),
     *   service_retry ([max, pause]), prefetch, max_requests, debug (bool), env (more environment)
     * With $waitReady, returns once the broker shows the worker's consumers on the topic's ready queue.
     */
    protected function startWorker(array $opts = [], bool $waitReady = true): Proc
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
            'EBATS_DEBUG' => ($opts['debug'] ?? true) ? '1' : null,
        ];
        $proc = $this->startFixture($opts['name'] ?? "worker-$topic", 'worker.php', array_merge($env, $opts['env'] ?? []));
        if ($waitReady) {
            $this->waitConsumers(static::q("task.$topic"), $procs, 20, [$proc]);
        }
        return $proc;
    }

    /** Starts tests/fixtures/scheduler.php with the given registrations: list of [event, task, topic, delay]. */
    protected function startScheduler(array $registrations, bool $waitReady = true, string $name = 'scheduler'): Proc
    {
        $proc = $this->startFixture($name, 'scheduler.php', [
            'EBATS_T_REGISTER' => json_encode($registrations),
            'EBATS_DEBUG' => '1',
        ]);
        if ($waitReady) {
            $this->waitConsumers(static::q('events'), 1, 20, [$proc], true);
        }
        return $proc;
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
        $deadline = microtime(true) + $timeout;
        while (true) {
            $value = $condition();
            if ($value !== null && $value !== false) {
                return $value;
            }
            if (microtime(true) >= $deadline) {
                $this->fail("timed out after {$timeout} s waiting for: $what\n" . $this->diagnostics());
            }
            usleep((int) ($interval * 1e6));
        }
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

    /** Waits until $queue has at least $n consumers (so the process consuming it is ready). */
    protected function waitConsumers(string $queue, int $n, float $timeout, array $procs = [], bool $exact = false): void
    {
        $deadline = microtime(true) + $timeout;
        while (true) {
            $c = self::queueStats()[$queue]['consumers'] ?? 0;
            if ($exact ? $c === $n : $c >= $n) {
                return;
            }
            foreach ($procs as $proc) {
                if ($proc->hasExited()) {
                    $this->fail("{$proc->name} exited before consuming $queue\n" . $proc->describe());
                }
            }
            if (microtime(true) >= $deadline) {
                $this->fail("$queue has $c consumer(s), not $n, after {$timeout} s\n" . $this->diagnostics());
            }
            usleep(200000);
        }
    }

    /** Waits until $queue holds no message at all, neither ready nor unacked. */
    protected function waitQueueDrained(string $queue, float $timeout): void
    {
        $this->waitFor(
            static function () use ($queue) {
                $s = self::queueStats()[$queue] ?? null;
                return $s !== null && $s['ready'] === 0 && $s['unacked'] === 0;
            },
            $timeout,
            "queue $queue drained (no ready and no unacked message)",
            0.2
        );
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
}
