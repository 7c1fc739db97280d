<?php

declare(strict_types=1);

namespace Ebats\Tests\Lib;

/**
 * Looks at the broker through php-amqp, independently of the extension under test.
 * A channel error (e.g. a passive declare of a missing queue) closes only the channel; the next call opens a new one.
 */
final class Broker
{
    private ?\AMQPConnection $connection = null;
    private ?\AMQPChannel $channel = null;
    /** A php-amqplib connection, for what php-amqp does not return: a queue's consumer count. */
    private ?\PhpAmqpLib\Connection\AMQPStreamConnection $lib = null;
    private ?\PhpAmqpLib\Channel\AMQPChannel $libChannel = null;

    public function __construct(
        private string $host,
        private int $port,
        private string $user,
        private string $password,
        private string $vhost
    ) {
    }

    public function channel(): \AMQPChannel
    {
        if ($this->connection === null || !$this->connection->isConnected()) {
            $this->connection = new \AMQPConnection([
                'host' => $this->host,
                'port' => $this->port,
                'login' => $this->user,
                'password' => $this->password,
                'vhost' => $this->vhost,
                'connect_timeout' => 5,
                'read_timeout' => 10,
                'write_timeout' => 10,
            ]);
            $this->connection->connect();
            $this->channel = null;
        }
        if ($this->channel === null || !$this->channel->isConnected()) {
            $this->channel = new \AMQPChannel($this->connection);
        }
        return $this->channel;
    }

    /** Drops the connection without speaking to the broker: the next call connects again. */
    public function forget(): void
    {
        $this->channel = null;
        $this->connection = null;
        $this->libChannel = null;
        $this->lib = null;
    }

    /**
     * A queue's ready messages and consumers, by a passive declare (one round trip, where a listing by
     * rabbitmqctl takes most of a second), or null when the queue does not exist. Unacked messages are
     * not in a declare's answer: see ProcTestCase::queueStats for those. Close its connection with
     * closeDeclaring() when done: php-amqplib's socket is not close-on-exec, and a process started
     * meanwhile would hold it too.
     * @return array{ready:int,consumers:int}|null
     */
    public function declared(string $queue): ?array
    {
        if ($this->lib === null || !$this->lib->isConnected()) {
            require_once '/usr/share/php/PhpAmqpLib/autoload.php';
            $this->lib = new \PhpAmqpLib\Connection\AMQPStreamConnection(
                $this->host, $this->port, $this->user, $this->password, $this->vhost,
                false, 'AMQPLAIN', null, 'en_US', 5.0, 10.0
            );
            $this->libChannel = null;
        }
        if ($this->libChannel === null || !$this->libChannel->is_open()) {
            $this->libChannel = $this->lib->channel();
        }
        try {
            [, $ready, $consumers] = $this->libChannel->queue_declare($queue, true);
        } catch (\PhpAmqpLib\Exception\AMQPProtocolChannelException $e) {
            $this->libChannel = null;
            if ($e->getCode() === 404) {
                return null;
            }
            throw $e;
        }
        return ['ready' => (int) $ready, 'consumers' => (int) $consumers];
    }

    /** Closes the connection declared() opened, if any. */
    public function closeDeclaring(): void
    {
        try {
            if ($this->lib !== null && $this->lib->isConnected()) {
                $this->lib->close();
            }
        } finally {
            $this->libChannel = null;
            $this->lib = null;
        }
    }

    public function close(): void
    {
        if ($this->connection !== null && $this->connection->isConnected()) {
            $this->connection->disconnect();
        }
        $this->channel = null;
        $this->connection = null;
        $this->closeDeclaring();
    }

    /**
     * Takes the next message of $queue (basic.get, acked).
     * @return array{0:string,1:array<string,mixed>}|null [body, properties] or null when the queue is empty or missing
     */
    public function get(string $queue): ?array
    {
        $q = new \AMQPQueue($this->channel());
        $q->setName($queue);
        try {
            $envelope = $q->get(AMQP_AUTOACK);
        } catch (\AMQPQueueException $e) {
            if (str_contains($e->getMessage(), 'NOT_FOUND')) {
                return null;
            }
            throw $e;
        }
        if ($envelope === false || $envelope === null) {
            return null;
        }
        return [$envelope->getBody(), self::properties($envelope)];
    }

    /** Polls $queue until a message is there or $timeout seconds have passed. */
    public function waitMessage(string $queue, float $timeout): ?array
    {
        return Process::until(fn () => $this->get($queue), $timeout, 0.02);
    }

    /**
     * Takes up to $n messages of $queue, waiting at most $timeout seconds for all of them.
     * @return list<array{0:string,1:array<string,mixed>}>
     */
    public function waitMessages(string $queue, int $n, float $timeout): array
    {
        $messages = [];
        Process::until(function () use ($queue, $n, &$messages): bool {
            while (count($messages) < $n && ($message = $this->get($queue)) !== null) {
                $messages[] = $message;
            }
            return count($messages) >= $n;
        }, $timeout, 0.02);
        return $messages;
    }

    /** Ready messages in $queue (passive declare), or null when the queue does not exist. */
    public function count(string $queue): ?int
    {
        $q = new \AMQPQueue($this->channel());
        $q->setName($queue);
        $q->setFlags(AMQP_PASSIVE);
        try {
            return (int) $q->declareQueue();
        } catch (\AMQPQueueException $e) {
            if (str_contains($e->getMessage(), 'NOT_FOUND')) {
                return null;
            }
            throw $e;
        }
    }

    public function exists(string $queue): bool
    {
        return $this->count($queue) !== null;
    }

    public function publish(string $exchange, string $routingKey, string $body, array $properties = []): void
    {
        $ex = new \AMQPExchange($this->channel());
        $ex->setName($exchange);
        $ex->publish($body, $routingKey, AMQP_NOPARAM, $properties);
    }

    public function declareExchange(string $name, string $type, bool $durable = true): void
    {
        $ex = new \AMQPExchange($this->channel());
        $ex->setName($name);
        $ex->setType($type);
        $ex->setFlags($durable ? AMQP_DURABLE : AMQP_NOPARAM);
        $ex->declareExchange();
    }

    public function deleteExchange(string $name): void
    {
        $ex = new \AMQPExchange($this->channel());
        $ex->setName($name);
        $ex->delete();
    }

    public function declareQueue(string $name, bool $durable = true): void
    {
        $q = new \AMQPQueue($this->channel());
        $q->setName($name);
        $q->setFlags($durable ? AMQP_DURABLE : AMQP_NOPARAM);
        $q->declareQueue();
    }

    public function bindQueue(string $queue, string $exchange, string $routingKey = ''): void
    {
        $q = new \AMQPQueue($this->channel());
        $q->setName($queue);
        $q->bind($exchange, $routingKey);
    }

    public function purgeQueue(string $name): void
    {
        $q = new \AMQPQueue($this->channel());
        $q->setName($name);
        try {
            $q->purge();
        } catch (\AMQPQueueException $e) {
            if (!str_contains($e->getMessage(), 'NOT_FOUND')) {
                throw $e;
            }
        }
    }

    public function deleteQueue(string $name): void
    {
        $q = new \AMQPQueue($this->channel());
        $q->setName($name);
        try {
            $q->delete();
        } catch (\AMQPQueueException $e) {
            if (!str_contains($e->getMessage(), 'NOT_FOUND')) {
                throw $e;
            }
        }
    }

    /** @return array<string,mixed> */
    private static function properties(\AMQPEnvelope $e): array
    {
        return [
            'content_type' => $e->getContentType(),
            'content_encoding' => $e->getContentEncoding(),
            'delivery_mode' => $e->getDeliveryMode(),
            'message_id' => $e->getMessageId(),
            'type' => $e->getType(),
            'headers' => $e->getHeaders(),
            'priority' => $e->getPriority(),
            'correlation_id' => $e->getCorrelationId(),
            'expiration' => $e->getExpiration(),
            'timestamp' => $e->getTimestamp(),
            'app_id' => $e->getAppId(),
            'routing_key' => $e->getRoutingKey(),
            'exchange' => $e->getExchangeName(),
            'redelivered' => $e->isRedelivery(),
        ];
    }
}
