<?php

declare(strict_types=1);

namespace Ebats\Bench;

use Ebats\Tests\Lib\Process;
use PhpAmqpLib\Channel\AMQPChannel;
use PhpAmqpLib\Connection\AMQPStreamConnection;
use PhpAmqpLib\Exception\AMQPProtocolChannelException;

/** Broker administration for the bench: one php-amqplib connection, reopened when the broker closed it. */
final class Admin
{
    private ?AMQPStreamConnection $connection = null;
    private ?AMQPChannel $channel = null;

    public function channel(): AMQPChannel
    {
        if ($this->connection === null || !$this->connection->isConnected()) {
            $this->connection = bench_amqplib_connect();
            $this->channel = null;
        }
        if ($this->channel === null || !$this->channel->is_open()) {
            $this->channel = $this->connection->channel();
        }
        return $this->channel;
    }

    /** [messages ready, consumers] of a queue, or null when it does not exist. */
    public function queueInfo(string $q): ?array
    {
        try {
            [, $messages, $consumers] = $this->channel()->queue_declare($q, true);
            return [(int) $messages, (int) $consumers];
        } catch (AMQPProtocolChannelException $e) {
            $this->channel = null; // the broker closed the channel (404)
            return null;
        }
    }

    public function purge(string $q): void
    {
        if ($this->queueInfo($q) !== null) {
            $this->channel()->queue_purge($q);
        }
    }

    public function waitConsumers(string $q, int $n, float $timeout = 20.0): void
    {
        if (Process::until(fn (): bool => ($this->queueInfo($q)[1] ?? -1) >= $n, $timeout, 0.02) === null) {
            throw new \RuntimeException("queue $q did not get $n consumer(s) in $timeout s");
        }
    }

    /**
     * Waits (at most $timeout s) until the local broker uses less than $share of a core over a window of
     * 0.25 s: what a row left it to do (deleting the messages of a purge, the queues of a run) is done
     * before the next row is timed. Returns at once when no broker runs on this machine.
     */
    public function waitQuiet(float $share = 0.15, float $timeout = 60.0): void
    {
        $pid = self::brokerPid();
        if ($pid === null) {
            return;
        }
        $cpu = static function () use ($pid): ?float {
            $stat = @file_get_contents("/proc/$pid/stat");
            if ($stat === false) {
                return null;
            }
            $f = explode(' ', substr($stat, strrpos($stat, ')') + 2));
            return ((int) $f[11] + (int) $f[12]) / 100.0; // utime + stime, in clock ticks of 10 ms
        };
        $deadline = microtime(true) + $timeout;
        do {
            [$c0, $t0] = [$cpu(), microtime(true)];
            usleep(250_000); // the window the share is measured over
            [$c1, $t1] = [$cpu(), microtime(true)];
            if ($c0 === null || $c1 === null || ($c1 - $c0) / ($t1 - $t0) < $share) {
                return;
            }
        } while (microtime(true) < $deadline);
    }

    /** The pid of the broker's Erlang VM on this machine, if one runs. */
    private static function brokerPid(): ?int
    {
        foreach (glob('/proc/[0-9]*/cmdline') ?: [] as $f) {
            $cmd = @file_get_contents($f);
            if ($cmd !== false && str_contains(strtok($cmd, "\0") ?: '', 'beam.smp')) {
                return (int) basename(dirname($f));
            }
        }
        return null;
    }

    public function waitMessages(string $q, int $n, float $timeout = 30.0): void
    {
        if (Process::until(fn (): bool => ($this->queueInfo($q)[0] ?? -1) >= $n, $timeout, 0.02) === null) {
            throw new \RuntimeException("queue $q did not reach $n messages in $timeout s");
        }
    }
}
