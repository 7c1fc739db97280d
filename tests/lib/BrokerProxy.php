<?php

declare(strict_types=1);

namespace Ebats\Tests\Lib;

/**
 * Runs tests/fixtures/relay.php as a child: a TCP relay in front of the test broker that a test can cut
 * (kill: every connection through it drops at once) and restore (start again on the same port).
 *
 *   $proxy = new BrokerProxy();                        // forward: relays to the broker
 *   $proxy = new BrokerProxy('silent');                // accepts and never answers
 *   $proxy = new BrokerProxy('tls', $cert, $key);      // TLS-terminating, relays plain AMQP to the broker
 *   $port = $proxy->start(); $proxy->cut(); $proxy->start();
 *   $proxy->hold('down'); $proxy->release('down')   stop / resume relaying one direction of every connection
 *                                  (up: client -> broker, down: broker -> client: the broker's answers are late)
 *   $proxy->nextReport($timeout)   the relay's next report line (TLS ..., HANDSHAKE_FAILED ..., UPSTREAM_FAILED ...)
 *   $proxy->describe()             its output, for failure messages
 */
final class BrokerProxy
{
    private const RELAY = __DIR__ . '/../fixtures/relay.php';

    private ?Process $relay = null;
    private ?int $port = null;

    public function __construct(private string $mode = 'forward', private ?string $certFile = null, private ?string $keyFile = null)
    {
        if (!in_array($mode, ['forward', 'silent', 'tls'], true)) {
            throw new \InvalidArgumentException("unknown proxy mode $mode (forward, silent or tls)");
        }
        if ($mode === 'tls' && ($certFile === null || $keyFile === null)) {
            throw new \InvalidArgumentException('the tls mode needs a certificate and a key file');
        }
    }

    /** Starts listening (on a free port the first time, then on the same port again); returns the port. */
    public function start(): int
    {
        if ($this->relay !== null && !$this->relay->hasExited()) {
            throw new \LogicException('proxy already running');
        }
        $args = [$this->mode, (string) ($this->port ?? 0), TestEnv::HOST, (string) TestEnv::PORT];
        if ($this->mode === 'tls') {
            array_push($args, $this->certFile, $this->keyFile);
        }
        $relay = Process::php(self::RELAY, $args, [], false, [], ['name' => "relay ({$this->mode})"]);
        $line = $relay->readLine(15);
        if ($line === null || !preg_match('/^READY (\d+)$/', $line, $m)) {
            throw new \RuntimeException("proxy did not start\n" . $relay->describe());
        }
        $this->relay = $relay;
        $this->port = (int) $m[1];
        return $this->port;
    }

    /** Kills the relay: every connection through it is cut at once, new ones are refused. */
    public function cut(): void
    {
        if ($this->relay !== null) {
            $this->relay->kill();
            $this->relay = null;
        }
        if ($this->port === null) {
            return;
        }
        // make sure the port no longer accepts connections before returning
        $port = $this->port;
        Process::until(static function () use ($port): bool {
            $s = @stream_socket_client('tcp://127.0.0.1:' . $port, $errno, $errstr, 0.2);
            if ($s === false) {
                return true;
            }
            fclose($s);
            return false;
        }, 5.0, 0.02);
    }

    /** Stops relaying one direction ('up': client -> broker, 'down': broker -> client) until release(). */
    public function hold(string $direction): void
    {
        $this->command("hold $direction", "HELD $direction");
    }

    public function release(string $direction): void
    {
        $this->command("release $direction", "RELEASED $direction");
    }

    private function command(string $command, string $expect): void
    {
        if ($this->relay === null || $this->mode === 'silent') {
            throw new \LogicException("the proxy cannot '$command' now (not running, or silent)");
        }
        $this->relay->writeLine($command);
        $line = $this->relay->readLine(10);
        if ($line !== $expect) {
            throw new \RuntimeException("proxy answered " . json_encode($line) . " to '$command'\n" . $this->relay->describe());
        }
    }

    public function port(): int
    {
        if ($this->port === null) {
            throw new \LogicException('proxy never started');
        }
        return $this->port;
    }

    /** The relay's next report line, or null when none comes within $timeout s. */
    public function nextReport(float $timeout): ?string
    {
        return $this->relay?->readLine($timeout);
    }

    public function describe(): string
    {
        return $this->relay?->describe() ?? '--- relay --- (not running)';
    }
}
