<?php

declare(strict_types=1);

namespace Ebats\Tests\Lib;

/** Outcome of a finished (or killed) child process. */
final class ChildResult
{
    public function __construct(
        public string $stdout,
        public string $stderr,
        public ?int $exitCode,
        public bool $timedOut,
        public float $elapsed,
        public array $command
    ) {
    }

    /** The last non-empty stdout line, JSON-decoded to arrays; throws with the whole output when it is not JSON. */
    public function json(): mixed
    {
        $lines = array_values(array_filter(explode("\n", $this->stdout), static fn (string $l): bool => trim($l) !== ''));
        if ($lines === []) {
            throw new \RuntimeException("child printed nothing on stdout\n" . $this->describe());
        }
        try {
            return json_decode(end($lines), true, 512, JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            throw new \RuntimeException("child's last stdout line is not JSON\n" . $this->describe());
        }
    }

    public function describe(): string
    {
        return sprintf(
            "command: %s\nexit code: %s%s, %.2f s\n--- stdout ---\n%s\n--- stderr ---\n%s",
            implode(' ', array_map('escapeshellarg', $this->command)),
            var_export($this->exitCode, true),
            $this->timedOut ? ' (killed after the time limit)' : '',
            $this->elapsed,
            $this->stdout,
            $this->stderr
        );
    }
}

/**
 * A child process with pipes, for one-shot runs (run/runPhp) or line-by-line dialogue (start/writeLine/readLine).
 * Every child is killed when its object goes away, so a failing test leaves nothing running.
 */
final class ChildProcess
{
    /** @var resource|null */
    private $process;
    /** @var array<int,resource> */
    private array $pipes = [];
    private string $stdoutBuf = '';
    private string $stdoutAll = '';
    private string $stderrAll = '';
    private ?int $exitCode = null;
    private bool $exited = false;
    private float $started;
    private array $command;
    private static array $tempFiles = [];

    /** @param array<string,string|null> $env changes to this process's environment (null removes a variable) */
    public function __construct(array $command, array $env = [])
    {
        $fullEnv = getenv();
        foreach ($env as $name => $value) {
            if ($value === null) {
                unset($fullEnv[$name]);
            } else {
                $fullEnv[$name] = (string) $value;
            }
        }
        $this->command = $command;
        $this->started = microtime(true);
        $process = proc_open($command, [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes, null, $fullEnv);
        if (!is_resource($process)) {
            throw new \RuntimeException('cannot start ' . implode(' ', $command));
        }
        $this->process = $process;
        $this->pipes = $pipes;
        stream_set_blocking($pipes[1], false);
        stream_set_blocking($pipes[2], false);
    }

    /** Starts a PHP script (file) as a child. */
    public static function php(string $script, array $args = [], array $env = [], bool $withExtension = true, array $ini = []): self
    {
        return new self(array_merge(TestEnv::phpCommand($withExtension, $ini), [$script], $args), $env);
    }

    /** Runs a command to its end (or kills it after $timeout seconds). */
    public static function run(array $command, array $env = [], float $timeout = 30.0, string $stdin = ''): ChildResult
    {
        $child = new self($command, $env);
        if ($stdin !== '') {
            $child->write($stdin);
        }
        return $child->wait($timeout);
    }

    /** Runs PHP source code (written to a temporary file) in a child and waits for it. */
    public static function runPhp(string $code, array $env = [], float $timeout = 30.0, bool $withExtension = true, array $ini = [], array $args = []): ChildResult
    {
        return self::php(self::scriptFile($code), $args, $env, $withExtension, $ini)->wait($timeout);
    }

    /** Writes $code to a temporary .php file, removed at exit, and returns its path. */
    public static function scriptFile(string $code): string
    {
        $path = tempnam(sys_get_temp_dir(), 'ebats_t_');
        rename($path, $path .= '.php');
        file_put_contents($path, $code);
        if (self::$tempFiles === []) {
            $pid = getmypid();
            register_shutdown_function(static function () use ($pid): void {
                if (getmypid() === $pid) {
                    foreach (self::$tempFiles as $f) {
                        @unlink($f);
                    }
                }
            });
        }
        self::$tempFiles[] = $path;
        return $path;
    }

    public function write(string $data): void
    {
        $written = 0;
        while ($written < strlen($data)) {
            $n = fwrite($this->pipes[0], substr($data, $written));
            if ($n === false || $n === 0) {
                throw new \RuntimeException("cannot write to the child\n" . $this->snapshot());
            }
            $written += $n;
        }
        fflush($this->pipes[0]);
    }

    public function writeLine(string $line): void
    {
        $this->write($line . "\n");
    }

    /** Next stdout line (without "\n"), or null when the child closed stdout or $timeout passed. */
    public function readLine(float $timeout): ?string
    {
        $deadline = microtime(true) + $timeout;
        while (true) {
            $pos = strpos($this->stdoutBuf, "\n");
            if ($pos !== false) {
                $line = substr($this->stdoutBuf, 0, $pos);
                $this->stdoutBuf = substr($this->stdoutBuf, $pos + 1);
                return $line;
            }
            $left = $deadline - microtime(true);
            if ($left <= 0 || !$this->pump($left)) {
                return null;
            }
        }
    }

    /** Sends a JSON command line and returns the JSON answer line, decoded; throws with the child's output otherwise. */
    public function request(array $command, float $timeout = 30.0): array
    {
        $this->writeLine(json_encode($command, JSON_THROW_ON_ERROR));
        $line = $this->readLine($timeout);
        if ($line === null) {
            throw new \RuntimeException('no answer to ' . json_encode($command) . " within {$timeout} s\n" . $this->snapshot());
        }
        $answer = json_decode($line, true);
        if (!is_array($answer)) {
            throw new \RuntimeException('answer is not JSON: ' . $line . "\n" . $this->snapshot());
        }
        return $answer;
    }

    /** Closes stdin, collects the output until the child exits; kills it (SIGKILL) after $timeout seconds. */
    public function wait(float $timeout = 30.0): ChildResult
    {
        if (isset($this->pipes[0])) {
            fclose($this->pipes[0]);
            unset($this->pipes[0]);
        }
        $deadline = microtime(true) + $timeout;
        $timedOut = false;
        while (!$this->hasExited()) {
            $left = $deadline - microtime(true);
            if ($left <= 0) {
                $timedOut = true;
                $this->kill();
                break;
            }
            if (!$this->pump(min($left, 0.05))) {
                usleep(10000); // pipes closed, process not yet reaped
            }
        }
        $this->drain();
        $this->closePipes();
        return new ChildResult($this->stdoutAll, $this->stderrAll, $this->exitCode, $timedOut, microtime(true) - $this->started, $this->command);
    }

    /** SIGKILL and reap. */
    public function kill(): void
    {
        if ($this->process === null || $this->hasExited()) {
            return;
        }
        proc_terminate($this->process, 9);
        $deadline = microtime(true) + 10;
        while (!$this->hasExited() && microtime(true) < $deadline) {
            usleep(5000);
        }
    }

    public function pid(): int
    {
        return (int) proc_get_status($this->process)['pid'];
    }

    public function hasExited(): bool
    {
        if ($this->exited) {
            return true;
        }
        if ($this->process === null) {
            return true;
        }
        $status = proc_get_status($this->process);
        if (!$status['running']) {
            $this->exited = true;
            $this->exitCode = $status['signaled'] ? 128 + $status['termsig'] : $status['exitcode'];
        }
        return $this->exited;
    }

    /** What the child printed so far, for failure messages. */
    public function snapshot(): string
    {
        $this->pump(0.0);
        return sprintf(
            "command: %s\n--- stdout ---\n%s\n--- stderr ---\n%s",
            implode(' ', array_map('escapeshellarg', $this->command)),
            $this->stdoutAll,
            $this->stderrAll
        );
    }

    public function stderr(): string
    {
        $this->pump(0.0);
        return $this->stderrAll;
    }

    public function __destruct()
    {
        if ($this->process !== null) {
            $this->kill();
            $this->closePipes();
            proc_close($this->process);
            $this->process = null;
        }
    }

    /** Reads what is available on stdout/stderr, waiting up to $timeout; false once both are closed. */
    private function pump(float $timeout): bool
    {
        $read = [];
        foreach ([1, 2] as $i) {
            if (isset($this->pipes[$i])) {
                $read[$i] = $this->pipes[$i];
            }
        }
        if ($read === []) {
            return false;
        }
        $write = $except = null;
        $sec = (int) floor($timeout);
        $usec = (int) (($timeout - $sec) * 1e6);
        $n = @stream_select($read, $write, $except, $sec, $usec);
        if ($n === false) {
            return true; // interrupted by a signal
        }
        foreach ($read as $stream) {
            $i = $stream === ($this->pipes[1] ?? null) ? 1 : 2;
            $data = fread($stream, 65536);
            if ($data === '' || $data === false) {
                if (feof($stream)) {
                    fclose($stream);
                    unset($this->pipes[$i]);
                }
                continue;
            }
            if ($i === 1) {
                $this->stdoutBuf .= $data;
                $this->stdoutAll .= $data;
            } else {
                $this->stderrAll .= $data;
            }
        }
        return true;
    }

    private function drain(): void
    {
        $deadline = microtime(true) + 2;
        while ((isset($this->pipes[1]) || isset($this->pipes[2])) && microtime(true) < $deadline) {
            // a grandchild may still hold the pipes open: do not wait for it beyond the deadline
            if (!$this->pump(0.05)) {
                break;
            }
        }
    }

    private function closePipes(): void
    {
        foreach ($this->pipes as $i => $pipe) {
            if (is_resource($pipe)) {
                fclose($pipe);
            }
            unset($this->pipes[$i]);
        }
    }
}
