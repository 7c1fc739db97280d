<?php

declare(strict_types=1);

namespace Ebats\Tests\Lib;

/**
 * A child process, for the tests and the bench alike.
 *
 * Every child runs in a session (and process group) of its own, so that what it forks can be stopped with it.
 * Its stdout and stderr go to files, never to pipes: a chatty child can never block on a pipe nobody reads,
 * and what it printed stays readable after it died. Its stdin is a pipe, for line dialogues (agent.php) and
 * for children that exit when it closes (relay.php). A child still running when its object goes away is
 * killed with its whole group, so a failing test leaves nothing behind.
 *
 *   $p = Process::start(['cmd', 'arg'], ['VAR' => 'value', 'GONE' => null]);  // environment changes; null removes
 *   $p = Process::php($script, $args, $env, $withExtension, $ini);           // PHP with the extension (TestEnv)
 *   $p = Process::run($command, $env, $timeout);                            // started and waited for
 *   $p = Process::runPhp($code, $env, $timeout);                            // PHP source in a temporary file
 *
 *   $p->wait($timeout)           closes stdin, waits for the exit; past the deadline kills the group (timedOut())
 *   $p->waitExit($timeout)       the exit code, or null while it still runs after $timeout s
 *   $p->exitCode()               exit code (128 + signal when a signal ended it), null while it runs
 *   $p->hasExited(), pid(), elapsed(), timedOut()
 *   $p->signal(SIGHUP)           to the process itself; stop($grace, $signal) then SIGKILL to the group; kill()
 *   $p->groupPids(), childPids() live processes of its group / whose parent it is
 *   $p->writeLine(), readLine($timeout), request([...]) a JSON-lines dialogue over stdin/stdout
 *   $p->stdout(), stderr(), json() (the last stdout line, decoded), describe() (for failure messages)
 *   Process::until($condition, $timeout) polls until $condition returns neither null nor false
 *
 * Options of start() (all optional): name (in describe()), stdout / stderr (files to append to, kept; the same
 * file may take both; by default temporary files removed with the object), cwd.
 */
final class Process
{
    /** @var resource|null */
    private $process;
    /** @var resource|null */
    private $stdin;
    private int $pid;
    private int $ownerPid;
    private ?int $exitCode = null;
    private bool $timedOut = false;
    private float $startedAt;
    private ?float $endedAt = null;
    private string $stdoutFile;
    private string $stderrFile;
    /** @var list<string> temporary output files, removed with the object */
    private array $ownFiles = [];
    /** How far readLine() has read stdout. */
    private int $readOffset = 0;
    private string $lineBuffer = '';
    public readonly string $name;
    /** @var list<string> */
    private static array $scriptFiles = [];

    /**
     * @param list<string> $command
     * @param array<string,string|int|null> $env changes to this process's environment (null removes a variable)
     * @param array{name?:string,stdout?:string,stderr?:string,cwd?:string} $options
     */
    private function __construct(private array $command, array $env, array $options)
    {
        $this->name = $options['name'] ?? basename($command[0] ?? '?');
        $this->stdoutFile = $options['stdout'] ?? $this->tempFile('out');
        $this->stderrFile = $options['stderr'] ?? $this->tempFile('err');
        $fullEnv = getenv();
        foreach ($env as $key => $value) {
            if ($value === null) {
                unset($fullEnv[$key]);
            } else {
                $fullEnv[$key] = (string) $value;
            }
        }
        $this->ownerPid = getmypid();
        $this->startedAt = microtime(true);
        $process = proc_open(
            array_merge(['setsid'], $command),
            [0 => ['pipe', 'r'], 1 => ['file', $this->stdoutFile, 'a'], 2 => ['file', $this->stderrFile, 'a']],
            $pipes,
            $options['cwd'] ?? null,
            $fullEnv
        );
        if (!is_resource($process)) {
            throw new \RuntimeException("cannot start {$this->name}: " . $this->commandLine());
        }
        $this->process = $process;
        $this->stdin = $pipes[0];
        // The child of proc_open is not a group leader, so setsid(1) execs in place: this pid is the command's,
        // and, the command leading a new session, also its process group id.
        $this->pid = (int) proc_get_status($process)['pid'];
    }

    /**
     * @param list<string|int|float> $command
     * @param array<string,string|int|null> $env
     * @param array{name?:string,stdout?:string,stderr?:string,cwd?:string} $options
     */
    public static function start(array $command, array $env = [], array $options = []): self
    {
        return new self(array_map('strval', $command), $env, $options);
    }

    /** Starts a PHP script with the PHP binary of this process, with or without the extension (see TestEnv::phpCommand). */
    public static function php(string $script, array $args = [], array $env = [], bool $withExtension = true, array $ini = [], array $options = []): self
    {
        return self::start(array_merge(TestEnv::phpCommand($withExtension, $ini), [$script], $args), $env, $options + ['name' => basename($script)]);
    }

    /** Runs a command to its end (killed with its group after $timeout s); $stdin is written to it first. */
    public static function run(array $command, array $env = [], float $timeout = 30.0, string $stdin = ''): self
    {
        $process = self::start($command, $env);
        if ($stdin !== '') {
            $process->write($stdin);
        }
        return $process->wait($timeout);
    }

    /** Runs PHP source code (written to a temporary file) in a child and waits for it. */
    public static function runPhp(string $code, array $env = [], float $timeout = 30.0, bool $withExtension = true, array $ini = [], array $args = []): self
    {
        return self::php(self::scriptFile($code), $args, $env, $withExtension, $ini)->wait($timeout);
    }

    /** Writes $code to a temporary .php file, removed when this process exits, and returns its path. */
    public static function scriptFile(string $code): string
    {
        $path = tempnam(sys_get_temp_dir(), 'ebats_t_');
        rename($path, $path .= '.php');
        file_put_contents($path, $code);
        if (self::$scriptFiles === []) {
            $pid = getmypid();
            register_shutdown_function(static function () use ($pid): void {
                if (getmypid() === $pid) {
                    foreach (self::$scriptFiles as $f) {
                        @unlink($f);
                    }
                }
            });
        }
        self::$scriptFiles[] = $path;
        return $path;
    }

    /**
     * Calls $condition until it returns something other than null or false, and returns that; null when $timeout
     * s pass first. Polls quickly at first, then at most every $maxInterval s.
     */
    public static function until(callable $condition, float $timeout, float $maxInterval = 0.05): mixed
    {
        $deadline = microtime(true) + $timeout;
        $interval = 0.001;
        while (true) {
            $value = $condition();
            if ($value !== null && $value !== false) {
                return $value;
            }
            $left = $deadline - microtime(true);
            if ($left <= 0) {
                return null;
            }
            usleep((int) (min($interval, $left) * 1e6));
            $interval = min($interval * 2, $maxInterval);
        }
    }

    // ---- state -------------------------------------------------------------------------------------------

    public function pid(): int
    {
        return $this->pid;
    }

    public function hasExited(): bool
    {
        if ($this->exitCode !== null || $this->process === null) {
            return true;
        }
        // proc_get_status reports the exit status once only (it reaps the child): keep it.
        $status = proc_get_status($this->process);
        if (!$status['running']) {
            $this->exitCode = $status['signaled'] ? 128 + $status['termsig'] : $status['exitcode'];
            $this->endedAt = microtime(true);
        }
        return $this->exitCode !== null;
    }

    /** Exit code (128 + signal when a signal ended it), or null while it runs. */
    public function exitCode(): ?int
    {
        $this->hasExited();
        return $this->exitCode;
    }

    /** True when wait() killed it at its deadline. */
    public function timedOut(): bool
    {
        return $this->timedOut;
    }

    /** Seconds from the start to the exit (or to now while it runs). */
    public function elapsed(): float
    {
        $this->hasExited();
        return ($this->endedAt ?? microtime(true)) - $this->startedAt;
    }

    /** Pids of the live processes of this child's process group (it and what it forked). */
    public function groupPids(): array
    {
        return self::scanProc(fn (array $f): bool => (int) $f[2] === $this->pid);
    }

    /** Pids of the live processes whose parent is this child, like pgrep -P. */
    public function childPids(): array
    {
        return self::scanProc(fn (array $f): bool => (int) $f[1] === $this->pid);
    }

    // ---- waiting and stopping ----------------------------------------------------------------------------

    /** Waits for the exit; returns the exit code, or null when it still runs after $timeout s. */
    public function waitExit(float $timeout): ?int
    {
        self::until(fn (): bool => $this->hasExited(), $timeout, 0.02);
        return $this->exitCode;
    }

    /** Closes stdin and waits for the exit; after $timeout s kills the group (then timedOut() is true). */
    public function wait(float $timeout = 30.0): self
    {
        $this->closeStdin();
        if ($this->waitExit($timeout) === null) {
            $this->timedOut = true;
            $this->kill();
        }
        return $this;
    }

    /** Sends $signal to the process itself (not to its group), while it runs. */
    public function signal(int $signal): void
    {
        if (!$this->hasExited()) {
            posix_kill($this->pid, $signal);
        }
    }

    /**
     * $signal to the process, up to $grace s for it to exit, then SIGKILL to its whole group (also when it exited
     * by itself but left children behind). Returns the exit code.
     */
    public function stop(float $grace = 5.0, int $signal = SIGTERM): ?int
    {
        if (!$this->hasExited()) {
            posix_kill($this->pid, $signal);
            $this->waitExit($grace);
        }
        $this->kill();
        return $this->exitCode;
    }

    /** SIGKILL to the whole group; returns once the group is gone and the process is reaped. */
    public function kill(): void
    {
        if ($this->groupPids() !== []) {
            posix_kill(-$this->pid, SIGKILL);
            self::until(fn (): bool => $this->groupPids() === [], 5.0, 0.02);
        }
        $this->waitExit(5.0);
        $this->release();
    }

    // ---- dialogue ----------------------------------------------------------------------------------------

    public function write(string $data): void
    {
        $written = 0;
        while ($written < strlen($data)) {
            $n = $this->stdin === null ? false : @fwrite($this->stdin, substr($data, $written));
            if ($n === false || $n === 0) {
                throw new \RuntimeException("cannot write to the child\n" . $this->describe());
            }
            $written += $n;
        }
        fflush($this->stdin);
    }

    public function writeLine(string $line): void
    {
        $this->write($line . "\n");
    }

    public function closeStdin(): void
    {
        if ($this->stdin !== null) {
            @fclose($this->stdin);
            $this->stdin = null;
        }
    }

    /** The next stdout line (without "\n"), or null when none comes within $timeout s or the child exited. */
    public function readLine(float $timeout): ?string
    {
        $next = self::until(function (): array|false {
            $this->lineBuffer .= $this->unread();
            $pos = strpos($this->lineBuffer, "\n");
            if ($pos !== false) {
                $line = substr($this->lineBuffer, 0, $pos);
                $this->lineBuffer = substr($this->lineBuffer, $pos + 1);
                return [$line];
            }
            // exited and all read: nothing more will come
            return $this->hasExited() && $this->unread(false) === '' ? [null] : false;
        }, $timeout, 0.01);
        return $next[0] ?? null;
    }

    /** Sends a JSON command line and returns the JSON answer line, decoded; throws with the child's output otherwise. */
    public function request(array $command, float $timeout = 30.0): array
    {
        $this->writeLine(json_encode($command, JSON_THROW_ON_ERROR));
        $line = $this->readLine($timeout);
        if ($line === null) {
            throw new \RuntimeException('no answer to ' . json_encode($command) . " within {$timeout} s\n" . $this->describe());
        }
        $answer = json_decode($line, true);
        if (!is_array($answer)) {
            throw new \RuntimeException('answer is not JSON: ' . $line . "\n" . $this->describe());
        }
        return $answer;
    }

    // ---- output ------------------------------------------------------------------------------------------

    public function stdout(): string
    {
        return (string) @file_get_contents($this->stdoutFile);
    }

    public function stderr(): string
    {
        return (string) @file_get_contents($this->stderrFile);
    }

    /** The last non-empty stdout line, JSON-decoded to arrays; throws with the whole output when it is not JSON. */
    public function json(): mixed
    {
        $lines = array_values(array_filter(explode("\n", $this->stdout()), static fn (string $l): bool => trim($l) !== ''));
        if ($lines === []) {
            throw new \RuntimeException("child printed nothing on stdout\n" . $this->describe());
        }
        try {
            return json_decode(end($lines), true, 512, JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            throw new \RuntimeException("child's last stdout line is not JSON\n" . $this->describe());
        }
    }

    /** Name, command, state and the last $bytes of stdout and stderr, for failure messages. */
    public function describe(int $bytes = 8000): string
    {
        $tail = static fn (string $s): string => strlen($s) > $bytes ? '...' . substr($s, -$bytes) : $s;
        $state = $this->hasExited()
            ? 'exited ' . var_export($this->exitCode, true) . ($this->timedOut ? ' (killed after the time limit)' : '')
            : 'running';
        $out = $tail($this->stdout());
        $err = $this->stderrFile === $this->stdoutFile ? '(in stdout)' : $tail($this->stderr());
        return sprintf(
            "--- %s (pid %d, %s, %.2f s) ---\ncommand: %s\n[stdout]\n%s\n[stderr]\n%s",
            $this->name,
            $this->pid,
            $state,
            $this->elapsed(),
            $this->commandLine(),
            $out,
            $err
        );
    }

    public function __destruct()
    {
        // A copy of this object in a forked test process must not kill the parent's children.
        if (getmypid() !== $this->ownerPid) {
            return;
        }
        if ($this->process !== null) {
            $this->stop(0.5);
        }
        foreach ($this->ownFiles as $f) {
            @unlink($f);
        }
    }

    // ---- internals ---------------------------------------------------------------------------------------

    /** What stdout holds beyond what readLine() has taken; with $advance, marks it as taken. */
    private function unread(bool $advance = true): string
    {
        $data = (string) @file_get_contents($this->stdoutFile, false, null, $this->readOffset);
        if ($advance) {
            $this->readOffset += strlen($data);
        }
        return $data;
    }

    private function release(): void
    {
        $this->closeStdin();
        if ($this->process !== null) {
            proc_close($this->process);
            $this->process = null;
        }
    }

    private function tempFile(string $what): string
    {
        $path = tempnam(sys_get_temp_dir(), "ebats_{$what}_");
        $this->ownFiles[] = $path;
        return $path;
    }

    private function commandLine(): string
    {
        return implode(' ', array_map('escapeshellarg', $this->command));
    }

    /**
     * Live (not zombie) pids whose /proc/<pid>/stat fields after the command name match $filter, which gets
     * [state, ppid, pgrp, session, ...]. The name may hold spaces and parentheses: the fields start after the last ')'.
     * @return list<int>
     */
    public static function scanProc(callable $filter): array
    {
        $pids = [];
        foreach (glob('/proc/[0-9]*/stat') ?: [] as $statFile) {
            $stat = @file_get_contents($statFile);
            if ($stat === false) {
                continue;
            }
            $fields = explode(' ', substr($stat, strrpos($stat, ')') + 2));
            if (count($fields) > 2 && $fields[0] !== 'Z' && $filter($fields)) {
                $pids[] = (int) basename(dirname($statFile));
            }
        }
        sort($pids);
        return $pids;
    }
}
