<?php

declare(strict_types=1);

namespace Ebats\Tests\Lib;

/** Runs tests/lib/proxy.php as a child: a TCP relay to the broker that a test can cut (kill) and restore (start again). */
final class Proxy
{
    private ?ChildProcess $child = null;
    private ?int $port = null;

    public function __construct(private string $mode = 'forward')
    {
    }

    /** Starts listening (on a free port the first time, then on the same port again); returns the port. */
    public function start(): int
    {
        if ($this->child !== null && !$this->child->hasExited()) {
            throw new \LogicException('proxy already running');
        }
        $child = ChildProcess::php(__DIR__ . '/proxy.php', [(string) ($this->port ?? 0), TestEnv::HOST, (string) TestEnv::PORT, $this->mode], [], false);
        $line = $child->readLine(15);
        if ($line === null || !preg_match('/^READY (\d+)$/', $line, $m)) {
            throw new \RuntimeException("proxy did not start\n" . $child->snapshot());
        }
        $this->child = $child;
        $this->port = (int) $m[1];
        return $this->port;
    }

    /** Kills the proxy: every connection through it is cut at once, new ones are refused. */
    public function cut(): void
    {
        if ($this->child !== null) {
            $this->child->kill();
            $this->child = null;
        }
        // make sure the port no longer accepts connections before returning
        $deadline = microtime(true) + 5;
        while ($this->port !== null && microtime(true) < $deadline) {
            $s = @stream_socket_client('tcp://127.0.0.1:' . $this->port, $errno, $errstr, 0.2);
            if ($s === false) {
                return;
            }
            fclose($s);
            usleep(20000);
        }
    }

    public function port(): int
    {
        if ($this->port === null) {
            throw new \LogicException('proxy never started');
        }
        return $this->port;
    }

    public function __destruct()
    {
        if ($this->child !== null) {
            $this->child->kill();
        }
    }
}
