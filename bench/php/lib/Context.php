<?php

declare(strict_types=1);

namespace Ebats\Bench;

use Ebats\Tests\Lib\Process;

/**
 * What every section of the bench needs: the settings of the run, its paths and names, the processes it
 * started (through the tests' Process helper), the broker administration connection, the results and the
 * failures. Made once by main.php and handed to each section.
 */
final class Context
{
    /** Broker queues of this run's prefix. */
    public readonly string $qEvents;
    public readonly string $qTasks;
    public readonly string $qBare;
    /** Directory of the child scripts (publish.php, worker.php, ...). */
    public readonly string $scripts;
    public readonly Admin $admin;
    public readonly Results $results;
    /** @var list<string> one line per failed measurement */
    public array $failures = [];
    /** @var array<int,Process> long-running processes still to stop, by pid */
    private array $running = [];

    /**
     * @param array<string,int|float> $settings sizes and repetitions (see main.php)
     */
    public function __construct(
        public readonly array $settings,
        public readonly bool $quick,
        public readonly string $so,
        public readonly string $tmp,
        public readonly string $lapin,
        public readonly string $root,
        public readonly string $prefix,
    ) {
        $this->qEvents = "$prefix.events";
        $this->qTasks = "$prefix.task.bench";
        $this->qBare = "$prefix.bare";
        $this->scripts = \dirname(__DIR__);
        $this->admin = new Admin();
        $this->results = new Results();
    }

    public function note(string $s): void
    {
        fwrite(STDERR, '[' . date('H:i:s') . "] $s\n");
    }

    /** Whether `--rows` (when given) keeps the row $key: one of its prefixes starts the key. */
    public function wants(string $key): bool
    {
        $rows = $this->settings['rows'] ?? [];
        return $rows === [] || array_filter($rows, static fn (string $p): bool => str_starts_with($key, $p)) !== [];
    }

    /** A local TCP address no one listens on now (`127.0.0.1:<port>`), for a child's metrics server. */
    public static function freeAddress(): string
    {
        $s = stream_socket_server('tcp://127.0.0.1:0');
        $addr = stream_socket_get_name($s, false);
        fclose($s);
        return $addr;
    }

    /** Command line of a child script of bench/php, with or without the extension. */
    public function phpCmd(string $script, array $args, bool $ebats = true): array
    {
        $cmd = [PHP_BINARY];
        if ($ebats) {
            array_push($cmd, '-d', "extension={$this->so}");
        }
        $cmd[] = "{$this->scripts}/$script";
        foreach ($args as $a) {
            $cmd[] = (string) $a;
        }
        return $cmd;
    }

    /** Runs a command to its end; returns the JSON object of its last stdout line. */
    public function runJson(array $cmd, float $timeout = 300.0): array
    {
        $p = Process::start($cmd)->wait($timeout);
        if ($p->timedOut()) {
            throw new \RuntimeException('timed out after ' . $timeout . ' s: ' . implode(' ', $cmd));
        }
        $last = null;
        try {
            $last = $p->json();
        } catch (\RuntimeException $e) {
            // reported below with the output
        }
        if ($p->exitCode() !== 0 || !is_array($last)) {
            throw new \RuntimeException("failed (exit {$p->exitCode()}): " . implode(' ', array_slice($cmd, 0, 8)) . "\n"
                . trim($p->stdout()) . "\n" . trim($p->stderr()));
        }
        return $last;
    }

    /** Starts a long-running process, its stdout and stderr appended to $log; stopAll() stops it at the latest. */
    public function spawn(array $cmd, string $log, array $env = []): Process
    {
        $p = Process::start($cmd, $env, ['stdout' => $log, 'stderr' => $log]);
        $this->running[$p->pid()] = $p;
        return $p;
    }

    /** $sig (SIGTERM by default), up to $grace s to exit, then SIGKILL to it and what it forked. */
    public function stop(Process $p, int $sig = SIGTERM, float $grace = 15.0): void
    {
        if (!isset($this->running[$p->pid()])) {
            return;
        }
        unset($this->running[$p->pid()]);
        if ($p->stop($grace, $sig) === 128 + SIGKILL && $sig !== SIGKILL) {
            $this->note("process {$p->pid()} did not stop in {$grace} s: killed it");
        }
    }

    public function stopAll(): void
    {
        foreach ($this->running as $p) {
            $this->stop($p, SIGTERM, 5.0);
        }
    }

    /** Runs one measurement; a failure is noted and listed under the table, and the run goes on. */
    public function attempt(string $what, callable $f): void
    {
        try {
            $f();
        } catch (\Throwable $e) {
            $this->note("FAILED: $what: " . $e->getMessage());
            $this->failures[] = "$what: " . strtok($e->getMessage(), "\n");
        }
    }
}
