<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\Event;
use Asynclib\Ebats\Task;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\ProcTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * Log lines: one line per message whatever the values in it (control characters from outside are
 * escaped), and whole lines even when several processes write to the same stderr at once.
 */
final class LogLinesTest extends ProcTestCase
{
    private const LINE = '~^\[ebats \d\d:\d\d:\d\d\.\d{3} (ERROR|INFO|DEBUG) pid=\d+\] \S~';

    /** Every non-empty line of $stderr is an ebats log line; returns them. */
    private function assertWellFormed(string $stderr, string $what): array
    {
        $lines = array_values(array_filter(explode("\n", $stderr), static fn (string $l): bool => $l !== ''));
        $bad = array_values(array_filter($lines, static fn (string $l): bool => preg_match(self::LINE, $l) !== 1));
        $this->assertSame([], array_slice($bad, 0, 5), count($bad) . " of " . count($lines) . " line(s) of the $what are not whole log lines");
        // The forged lines of these tests say pid=1, which no ebats process has.
        $this->assertSame([], array_values(preg_grep('~^\[ebats [^]]* pid=1\] ~', $lines)), "a forged line in the $what");
        return $lines;
    }

    public function testForgedEventNameDoesNotForgeALine(): void
    {
        $scheduler = $this->startScheduler([['order_paied', 'virtualShipping', 'demo', 0]]);
        $forged = "ok\n[ebats 00:00:00.000 ERROR pid=1] forged line";
        $body = json_encode(['v' => 1, 'id' => bin2hex(random_bytes(16)), 'event' => $forged, 'params' => [], 'created_at' => microtime(true)]);
        $this->broker->publish(static::q('core.event'), 'ok', $body, ['content_type' => 'application/json']);
        // Events are routed in order: once the next one is logged, the forged one was handled.
        (new Event('after_forged'))->publish();
        $this->waitFor(fn () => str_contains($scheduler->stderr(), 'after_forged'), 15, 'the scheduler logs the event after the forged one');

        $this->assertWellFormed($scheduler->stderr(), 'scheduler log');
        $this->assertStringContainsString('ok\n[ebats 00:00:00.000 ERROR pid=1] forged line', $scheduler->stderr(), 'the name is logged, escaped');
        $this->assertFalse($scheduler->hasExited(), $scheduler->describe());
    }

    /**
     * Events no task is registered for may come at the rate of events: a line per name a minute at
     * most without EBATS_DEBUG, every one with it.
     */
    public function testEventsNoTaskIsRegisteredForAreLoggedOnceAMinutePerName(): void
    {
        foreach (['0' => 1, '1' => 3] as $debug => $lines) {
            $scheduler = $this->startFixture("scheduler-debug-$debug", 'scheduler.php', [
                'EBATS_T_REGISTER' => json_encode([['order_paied', 'virtualShipping', 'demo', 0]]),
                'EBATS_DEBUG' => (string) $debug,
            ]);
            $this->waitConsumers(static::q('events'), 1, 20, [$scheduler], true);
            for ($i = 0; $i < 3; $i++) {
                (new Event('nobody_listens'))->publish();
            }
            // Events are routed in order: once the next name is logged, the three were handled.
            (new Event('nobody_listens_either'))->publish();
            $this->waitFor(fn () => str_contains($scheduler->stderr(), "event 'nobody_listens_either'") ? true : null, 15, 'the next event is logged');
            $logged = preg_grep("~ INFO pid=\\d+\\] event 'nobody_listens' id=\\w+ has no registered task; acked\$~", explode("\n", $scheduler->stderr()));
            $this->assertCount($lines, $logged, "EBATS_DEBUG=$debug:\n" . $scheduler->stderr());
            $scheduler->stop();
        }
    }

    public function testExceptionMessageWithControlCharactersStaysOnItsLine(): void
    {
        $worker = $this->startWorker();
        $message = "boom\n[ebats 00:00:00.000 INFO pid=1] forged\r\tend\x1b[31m";
        $id = Task::create('demo', 'fail', ['message' => $message]);
        $this->waitCallbacks($id, 1, 15, 'the failing task');
        $this->waitFor(fn () => str_contains($worker->stderr(), "task end demo/fail id=$id"), 10, 'the end of the task is logged');

        $this->assertWellFormed($worker->stderr(), 'worker log');
        $this->assertStringContainsString('boom\n[ebats 00:00:00.000 INFO pid=1] forged\r\tend\u{1b}[31m', $worker->stderr());
        $this->assertStringNotContainsString("\x1b", $worker->stderr());
    }

    /** Four processes log as fast as they can into one pipe: every line arrives whole. */
    public function testLinesOfConcurrentProcessesNeverMix(): void
    {
        $perChild = 1500;
        $children = 4;
        $code = <<<PHP
        <?php
        \$pids = [];
        for (\$c = 0; \$c < $children; \$c++) {
            \$pid = pcntl_fork();
            if (\$pid === 0) {
                for (\$i = 0; \$i < $perChild; \$i++) {
                    (new \\Asynclib\\Ebats\\Event('concurrent_line_' . \$c))->publish(true);
                }
                ebats_flush();
                exit(0);
            }
            \$pids[] = \$pid;
        }
        \$failed = 0;
        foreach (\$pids as \$pid) {
            pcntl_waitpid(\$pid, \$status);
            \$failed += (pcntl_wifexited(\$status) && pcntl_wexitstatus(\$status) === 0) ? 0 : 1;
        }
        echo json_encode(['failed' => \$failed]), "\\n";
        PHP;
        // The children's stderr is a pipe (copied by cat to the file Process reads), their stdout stays apart;
        // with pipefail the exit code is PHP's when it failed.
        $command = array_merge(
            ['bash', '-o', 'pipefail', '-c', '{ "$@" 2>&1 1>&3 3>&- | cat >&2; } 3>&1', 'bash'],
            TestEnv::phpCommand(true),
            [Process::scriptFile($code)]
        );
        $result = Process::run($command, static::childEnv(['EBATS_DEBUG' => '1']), 120);
        $this->assertSame(0, $result->exitCode(), $result->describe());
        $this->assertSame(['failed' => 0], $result->json(), $result->describe());

        $lines = $this->assertWellFormed($result->stderr(), 'output of the forked processes');
        $published = preg_grep('~\] event concurrent_line_\d published id=[0-9a-f]{32}$~', $lines);
        $this->assertCount($children * $perChild, $published, 'one whole line per publish');
        $this->assertCount($children * $perChild, $lines, 'and nothing else');
    }
}
