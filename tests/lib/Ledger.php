<?php

declare(strict_types=1);

namespace Ebats\Tests\Lib;

/**
 * The ledger: proves end to end (from publish() returning to the handler having run) that no confirmed event
 * is lost while faults are injected, and counts what happened.
 *
 * Producers (tests/fixtures/ledger_producer.php) publish numbered events through EventManager's path (events
 * -> Scheduler -> tasks -> Worker) and record for each number whether publish() returned or threw; the task
 * handlers (TaskLedgerModel in tests/fixtures/tasks.php) record each execution. The ledger starts the
 * processes, keeps them alive like systemd's Restart=always would (a Scheduler or a worker parent that exits
 * is started again after RESTART_DELAY s, by supervise()), lets a scenario inject faults, then compares.
 *
 *   $ledger = new Ledger($dir, $childEnv, ['schedulers' => 2, 'worker_procs' => 3]);
 *   $ledger->start();                                          // every process, then waits for the flow
 *   $ledger->fault(fn () => $proxy->cut(), fn () => $proxy->start(), 3.0);
 *   $ledger->run(5.0);                                         // keep going (supervising) for 5 s
 *   $stats = $ledger->finish(60.0);                            // stop producers, wait for every confirmed number
 *   fwrite(STDERR, Ledger::line('cuts', $stats));
 *
 * Options (all optional):
 *   urls          role => broker URL for 'producer', 'scheduler', 'worker' (default: the test broker). A comma-
 *                 separated list of nodes works the same way once ebats.amqp_url takes one: this is where a
 *                 cluster scenario passes its nodes, or a proxy in front of each.
 *   producers     producer processes (default 2), each publishing `rate` events a second (default 40)
 *   schedulers    Scheduler processes (default 1)
 *   worker_procs  processes of the one Worker (default 3)
 *   events        list of [event, task, delay] registered in every Scheduler; producers use the events in turn
 *                 (default one plain event: [['ledger.plain', 'record', 0]]). Tasks: record, retryOnce.
 *   register      more registrations, list of [event, task, topic, delay], in every Scheduler (default none)
 *   cron          periodic schedules, list of [expression, event, options, settings], declared in every
 *                 Scheduler (tests/fixtures/cron_scheduler.php), which then take part in their leadership
 *   work_ms       milliseconds each handler works before it records (default 5), so kills land mid-task
 *   env           more environment for every child
 *
 * A fault is anything a callable does (cut a proxy, stop the broker, kill -9 a node or a process): fault()
 * calls $inject, keeps supervising for $seconds, calls $heal, and notes the end of the fault for the
 * recovery time. Recovery time: from a fault's end to the first execution of a number whose publish
 * started after that end (the whole path works again: producer, scheduler, worker). Reported is the
 * longest over the scenario's faults.
 */
final class Ledger
{
    public const TOPIC = 'ledger';
    /** Seconds a supervised process waits before it is started again (systemd's RestartSec). */
    public const RESTART_DELAY = 0.5;
    private const FIXTURES = __DIR__ . '/../fixtures';

    private array $opts;
    /** @var list<Process> */
    private array $producers = [];
    /** @var list<array{proc:Process,exited:?float,name:string}> */
    private array $supervised = [];
    private int $generation = 0;
    /** @var list<float> fault ends */
    private array $faultEnds = [];
    private int $restarts = 0;

    public function __construct(private string $dir, private array $childEnv, array $opts = [])
    {
        $url = TestEnv::amqpUrl();
        $this->opts = $opts + [
            'urls' => [],
            'producers' => 2,
            'rate' => 40,
            'schedulers' => 1,
            'worker_procs' => 3,
            'events' => [['ledger.plain', 'record', 0]],
            'register' => [],
            'cron' => [],
            'work_ms' => 5,
            'env' => [],
        ];
        $this->opts['urls'] += ['producer' => $url, 'scheduler' => $url, 'worker' => $url];
        if (!is_dir($dir . '/flags')) {
            mkdir($dir . '/flags', 0777, true);
        }
        touch($this->execFile());
    }

    // ---- processes ---------------------------------------------------------------------------------------

    /** Starts the schedulers, the worker and the producers; returns once a first number has been executed. */
    public function start(float $timeout = 30.0): void
    {
        $registrations = array_merge(array_map(
            static fn (array $e): array => [$e[0], $e[1], self::TOPIC, $e[2]],
            $this->opts['events']
        ), $this->opts['register']);
        $cron = $this->opts['cron'];
        for ($i = 0; $i < $this->opts['schedulers']; $i++) {
            $this->superviseStart("scheduler-$i", $cron === [] ? 'scheduler.php' : 'cron_scheduler.php', 'scheduler', [
                'EBATS_T_REGISTER' => json_encode($registrations),
                'EBATS_T_CRON' => $cron === [] ? null : json_encode($cron),
            ]);
        }
        $this->superviseStart('worker', 'worker.php', 'worker', [
            'EBATS_T_TOPIC' => self::TOPIC,
            'EBATS_T_PROCS' => (string) $this->opts['worker_procs'],
        ]);
        $events = json_encode(array_map(static fn (array $e): string => $e[0], $this->opts['events']));
        for ($i = 0; $i < $this->opts['producers']; $i++) {
            $this->producers[] = $this->spawn("producer-$i", 'ledger_producer.php', 'producer', [
                'EBATS_T_LEDGER_EVENTS' => $events,
                'EBATS_T_LEDGER_RATE' => (string) $this->opts['rate'],
            ], [(string) (($i + 1) * 1000000), $this->stopFile()]);
        }
        $flowing = Process::until(function (): bool {
            $this->supervise();
            return $this->executions() !== [];
        }, $timeout, 0.1);
        if ($flowing === null) {
            throw new \RuntimeException("no event went through within {$timeout} s\n" . $this->describe());
        }
    }

    /** Starts again, after RESTART_DELAY s, every supervised process that exited (a Scheduler, the worker parent). */
    public function supervise(): void
    {
        foreach ($this->supervised as $i => $entry) {
            if (!$entry['proc']->hasExited()) {
                continue;
            }
            $now = microtime(true);
            if ($entry['exited'] === null) {
                $this->supervised[$i]['exited'] = $now;
            } elseif ($now - $entry['exited'] >= self::RESTART_DELAY) {
                $entry['proc']->kill(); // what it forked goes with it, as systemd's KillMode=control-group
                $this->supervised[$i] = ['proc' => $this->respawn($entry), 'exited' => null] + $entry;
                $this->restarts++;
            }
        }
    }

    /** Keeps supervising for $seconds. */
    public function run(float $seconds): void
    {
        $deadline = microtime(true) + $seconds;
        while (microtime(true) < $deadline) {
            $this->supervise();
            usleep(50000);
        }
    }

    /** Injects a fault, keeps supervising $seconds, heals it and notes its end. */
    public function fault(callable $inject, ?callable $heal = null, float $seconds = 0.0): void
    {
        $inject($this);
        $this->run($seconds);
        if ($heal !== null) {
            $heal($this);
        }
        $this->faultEnds[] = microtime(true);
    }

    /** The Scheduler processes running now. @return list<Process> */
    public function schedulers(): array
    {
        return array_values(array_map(
            static fn (array $e): Process => $e['proc'],
            array_filter($this->supervised, static fn (array $e): bool => $e['role'] === 'scheduler' && !$e['proc']->hasExited())
        ));
    }

    /** The worker's parent process (the one started last). */
    public function worker(): Process
    {
        foreach ($this->supervised as $e) {
            if ($e['role'] === 'worker') {
                return $e['proc'];
            }
        }
        throw new \LogicException('no worker started');
    }

    /** Pids of the worker's children. @return list<int> */
    public function workerChildren(): array
    {
        return $this->worker()->childPids();
    }

    /** Pids of the producers still running. @return list<int> */
    public function producerPids(): array
    {
        return array_values(array_map(
            static fn (Process $p): int => $p->pid(),
            array_filter($this->producers, static fn (Process $p): bool => !$p->hasExited())
        ));
    }

    /** Times a supervised process was started again. */
    public function restarts(): int
    {
        return $this->restarts;
    }

    /**
     * Stops the producers, then waits until every confirmed number has been executed or $timeout s pass, and
     * returns the counts: published, confirmed, threw, executed, duplicates, lost (list of numbers), recovery
     * (longest, s; null without faults, INF when a path never recovered), recoveries (each fault's).
     */
    public function finish(float $timeout): array
    {
        touch($this->stopFile());
        foreach ($this->producers as $p) {
            if ($p->waitExit(30.0) === null) {
                throw new \RuntimeException("a producer did not stop\n" . $p->describe());
            }
        }
        $stats = null;
        Process::until(function () use (&$stats): bool {
            $this->supervise();
            $stats = $this->stats();
            return $stats['lost'] === [];
        }, $timeout, 0.25);
        return $stats;
    }

    /** Stops every process (SIGTERM, then SIGKILL of its group). */
    public function stop(): void
    {
        touch($this->stopFile());
        foreach (array_merge($this->producers, array_column($this->supervised, 'proc')) as $p) {
            $p->stop(5.0);
        }
    }

    // ---- counting ----------------------------------------------------------------------------------------

    /** The counts as they are now (see finish()). */
    public function stats(): array
    {
        $published = $confirmed = $threw = 0;
        $confirmedSet = [];
        $startedAt = [];
        foreach ($this->lines($this->producerFile()) as $f) {
            if (count($f) < 4) {
                continue;
            }
            $published++;
            $startedAt[(int) $f[1]] = (float) $f[2];
            if ($f[0] === 'ok') {
                $confirmed++;
                $confirmedSet[(int) $f[1]] = true;
            } else {
                $threw++;
            }
        }
        $executions = $this->executions();
        $first = [];
        foreach ($executions as [$n, $t]) {
            $first[$n] = isset($first[$n]) ? min($first[$n], $t) : $t;
        }
        $recoveries = [];
        foreach ($this->faultEnds as $end) {
            $best = INF;
            foreach ($first as $n => $t) {
                if (($startedAt[$n] ?? -INF) >= $end) {
                    $best = min($best, $t - $end);
                }
            }
            $recoveries[] = $best;
        }
        return [
            'published' => $published,
            'confirmed' => $confirmed,
            'threw' => $threw,
            'executed' => count($first),
            'duplicates' => count($executions) - count($first),
            'lost' => array_keys(array_diff_key($confirmedSet, $first)),
            'recovery' => $recoveries === [] ? null : max($recoveries),
            'recoveries' => $recoveries,
            'restarts' => $this->restarts,
        ];
    }

    /** One line: "ledger <scenario>: published .., confirmed .., threw .., executed .., duplicates .., lost .., recovery .. s". */
    public static function line(string $scenario, array $s): string
    {
        $secs = static fn (?float $t): string => $t === null ? '-' : (is_infinite($t) ? 'never' : sprintf('%.2f s', $t));
        return sprintf(
            "ledger %s: published %d, confirmed %d, threw %d, executed %d, duplicates %d, lost %d, recovery %s (faults: %s; restarts by the supervisor: %d)\n",
            $scenario,
            $s['published'],
            $s['confirmed'],
            $s['threw'],
            $s['executed'],
            $s['duplicates'],
            count($s['lost']),
            $secs($s['recovery']),
            $s['recoveries'] === [] ? 'none' : implode(', ', array_map($secs, $s['recoveries'])),
            $s['restarts']
        );
    }

    /** Every child's output, for failure messages. */
    public function describe(int $bytes = 3000): string
    {
        $parts = [];
        foreach (array_merge(array_column($this->supervised, 'proc'), $this->producers) as $p) {
            $parts[] = $p->describe($bytes);
        }
        return implode("\n", $parts);
    }

    // ---- internals ---------------------------------------------------------------------------------------

    /** @return list<array{0:int,1:float}> [number, time] of every execution recorded */
    private function executions(): array
    {
        $out = [];
        foreach ($this->lines($this->execFile()) as $f) {
            if (count($f) === 3) {
                $out[] = [(int) $f[0], (float) $f[2]];
            }
        }
        return $out;
    }

    /** Complete lines of $file, split on spaces (a line being written has no "\n" yet and is left out). */
    private function lines(string $file): array
    {
        $raw = (string) @file_get_contents($file);
        $end = strrpos($raw, "\n");
        if ($end === false) {
            return [];
        }
        return array_map(static fn (string $l): array => explode(' ', $l), explode("\n", substr($raw, 0, $end)));
    }

    private function superviseStart(string $name, string $script, string $role, array $env): void
    {
        $entry = ['name' => $name, 'script' => $script, 'role' => $role, 'env' => $env, 'exited' => null];
        $entry['proc'] = $this->respawn($entry);
        $this->supervised[] = $entry;
    }

    private function respawn(array $entry): Process
    {
        return $this->spawn($entry['name'], $entry['script'], $entry['role'], $entry['env']);
    }

    private function spawn(string $name, string $script, string $role, array $env, array $args = []): Process
    {
        $n = $this->generation++;
        return Process::php(self::FIXTURES . '/' . $script, $args, array_merge($this->childEnv, [
            'EBATS_AMQP_URL' => $this->opts['urls'][$role],
            'EBATS_CONNECT_TIMEOUT' => '2',
            'EBATS_CONFIRM_TIMEOUT' => '4',
            'EBATS_DEBUG' => null,
            'EBATS_T_LOG' => null,
            'EBATS_T_LEDGER_OUT' => $this->producerFile(),
            'EBATS_T_LEDGER_EXEC' => $this->execFile(),
            'EBATS_T_LEDGER_FLAGS' => $this->dir . '/flags',
            'EBATS_T_LEDGER_WORK_MS' => (string) $this->opts['work_ms'],
        ], $this->opts['env'], $env), options: [
            'name' => $name,
            'stdout' => "{$this->dir}/$n-$name.out",
            'stderr' => "{$this->dir}/$n-$name.err",
        ]);
    }

    private function execFile(): string
    {
        return $this->dir . '/executed.txt';
    }

    private function producerFile(): string
    {
        return $this->dir . '/published.txt';
    }

    private function stopFile(): string
    {
        return $this->dir . '/stop';
    }
}
