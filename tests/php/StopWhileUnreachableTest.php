<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\ProcTestCase;
use Ebats\Tests\Lib\BrokerProxy;
use Ebats\Tests\Lib\TestEnv;

/**
 * Every long-running program (Scheduler, Consumer, Worker with its children) stops on SIGTERM within a
 * second whatever state its link to the broker is in: retrying a port where nothing listens, or in the
 * middle of a connect to a peer that accepts TCP and never answers. And a refused login is retried with
 * a growing pause, logged once per try, not every second.
 */
final class StopWhileUnreachableTest extends ProcTestCase
{
    /** A signalled process must be gone this fast (the loops look at the stop token every 100 ms). */
    private const STOP_BOUND = 1.5;

    /** A local port where nothing listens. */
    private static function closedPort(): int
    {
        $server = stream_socket_server('tcp://127.0.0.1:0', $errno, $errstr);
        self::assertNotFalse($server, $errstr);
        $name = stream_socket_get_name($server, false);
        fclose($server);
        return (int) substr($name, strrpos($name, ':') + 1);
    }

    /** The three programs, each pointed at $url (with $env more), started in that order. */
    private function startAll(string $url, array $env = []): array
    {
        $env = array_merge(['EBATS_AMQP_URL' => $url], $env);
        return [
            $this->startFixture('scheduler', 'scheduler.php', array_merge($env, ['EBATS_T_REGISTER' => '[]'])),
            $this->startFixture('consumer', 'consumer.php', array_merge($env, [
                'EBATS_T_EXCHANGE' => static::prefix() . '_x',
                'EBATS_T_QUEUE' => static::prefix() . '_q',
            ])),
            $this->startWorker(['env' => $env, 'debug' => false], false),
        ];
    }

    private function assertStopsAtOnce(Process $proc, int $signal = SIGTERM): void
    {
        $this->assertFalse($proc->hasExited(), "{$proc->name} ended before it was signalled\n" . $proc->describe());
        $sent = microtime(true);
        $proc->signal($signal);
        $code = $proc->waitExit(self::STOP_BOUND);
        $took = microtime(true) - $sent;
        $this->assertNotNull($code, sprintf("%s still runs %.1f s after the signal\n%s", $proc->name, $took, $proc->describe()));
        $this->assertSame(0, $code, "{$proc->name} exit code\n" . $proc->describe());
    }

    /** Established TCP connections from this machine to 127.0.0.1:$port (read from /proc/net/tcp). */
    private static function connectionsTo(int $port): int
    {
        $n = 0;
        foreach (file('/proc/net/tcp', FILE_IGNORE_NEW_LINES) ?: [] as $line) {
            $f = preg_split('/\s+/', trim($line));
            // local_address rem_address st: "0100007F:1F90 0100007F:1F40 01"
            if (($f[3] ?? '') === '01' && str_ends_with($f[2] ?? '', sprintf(':%04X', $port))) {
                $n++;
            }
        }
        return $n;
    }

    public function testStopsWhileRetryingAPortWhereNothingListens(): void
    {
        $procs = $this->startAll(TestEnv::amqpUrl(null, self::closedPort()));
        foreach ($procs as $proc) {
            $this->waitFor(
                fn () => str_contains($proc->stderr(), 'cannot consume') ? true : null,
                15,
                "{$proc->name} tried to connect and failed"
            );
        }
        // SIGINT for one of them: the same as SIGTERM.
        $this->assertStopsAtOnce($procs[0], SIGINT);
        $this->assertStopsAtOnce($procs[1]);
        $this->assertStopsAtOnce($procs[2]);
    }

    public function testStopsInTheMiddleOfAConnectThatHangs(): void
    {
        $silent = new BrokerProxy('silent');
        $port = $silent->start();
        // The connect would wait 20 s for an answer that never comes.
        $procs = $this->startAll(TestEnv::amqpUrl(null, $port), ['EBATS_CONNECT_TIMEOUT' => '20']);
        $this->waitFor(fn () => self::connectionsTo($port) >= 3 ? true : null, 15, 'the three programs connecting');
        foreach ($procs as $proc) {
            $this->assertStopsAtOnce($proc);
        }
        $this->assertSame('', implode('', array_map(
            static fn (Process $p): string => str_contains($p->stderr(), 'cannot consume') ? $p->name . ' ' : '',
            $procs
        )), 'no connect ran to its timeout');
    }

    public function testRefusedLoginIsRetriedWithBackOffAndStillStopsAtOnce(): void
    {
        $secret = 'wrong_pw_' . bin2hex(random_bytes(3));
        $worker = $this->startWorker(['env' => ['EBATS_AMQP_URL' => TestEnv::amqpUrl(null, null, null, $secret)], 'debug' => false], false);
        $until = microtime(true) + 5.5;
        $this->assertStays(fn () => $worker->hasExited() ? 'exited' : null, $until - microtime(true), 'the worker keeps trying');
        $lines = array_values(array_filter(
            explode("\n", $worker->stderr()),
            static fn (string $l): bool => str_contains($l, 'cannot consume')
        ));
        // Tries at 0, 1 and 3 s (then 7 s): one line each, not one a second.
        $this->assertGreaterThanOrEqual(2, count($lines), $worker->describe());
        $this->assertLessThanOrEqual(3, count($lines), "too many log lines for a refused login\n" . $worker->describe());
        $this->assertStringContainsString('wrong user name or password?', $lines[0]);
        $this->assertStringContainsString('retrying in 1 s', $lines[0]);
        $this->assertStringContainsString('retrying in 2 s', $lines[1]);
        $this->assertStringNotContainsString($secret, $worker->stderr());
        $this->assertStopsAtOnce($worker);
    }
}
