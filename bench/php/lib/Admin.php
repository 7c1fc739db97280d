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

    public function waitMessages(string $q, int $n, float $timeout = 30.0): void
    {
        if (Process::until(fn (): bool => ($this->queueInfo($q)[0] ?? -1) >= $n, $timeout, 0.02) === null) {
            throw new \RuntimeException("queue $q did not reach $n messages in $timeout s");
        }
    }
}
