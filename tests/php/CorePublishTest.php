<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Amq\ExchangeTypes;
use Asynclib\Core\Publish;
use Asynclib\Ebats\Event;
use Asynclib\Exception\ConnectionedException;
use Asynclib\Exception\TaskException;
use Ebats\Tests\Lib\EbatsTestCase;

/**
 * Issue item 9: Core\Publish sends JSON to an exchange the application owns (names are used as given, no prefix);
 * a message no queue would receive is refused with ConnectionedException.
 */
final class CorePublishTest extends EbatsTestCase
{
    private const UNROUTABLE = '/rout|NO_ROUTE|unroutable|return|queue/i';

    /** Declares exchange <prefix>_<name> of $type and, unless $bindKey is null, a queue bound to it with $bindKey. */
    private function exchangeWithQueue(string $name, string $type, ?string $bindKey): array
    {
        $exchange = static::prefix() . '_' . $name;
        $queue = $exchange . '_q';
        $this->broker->declareExchange($exchange, $type);
        if ($bindKey !== null) {
            $this->broker->declareQueue($queue);
            $this->broker->bindQueue($queue, $exchange, $bindKey);
        }
        return [$exchange, $queue];
    }

    public function testSendToFanoutExchange(): void
    {
        [$exchange, $queue] = $this->exchangeWithQueue('fanout', ExchangeTypes::FANOUT, '');
        $publish = new Publish();
        $this->assertSame($publish, $publish->setExchange($exchange, ExchangeTypes::FANOUT));
        $this->assertTrue($publish->send(['k' => 1], 'rk'));

        $message = $this->broker->get($queue);
        $this->assertNotNull($message, 'send() returned before the message was in the bound queue');
        [$raw, $props] = $message;
        $this->assertSame(['k' => 1], json_decode($raw, true), 'body: ' . $raw);
        $this->assertSame('rk', $props['routing_key']);
        $this->assertSame($exchange, $props['exchange']);
        $this->assertSame('application/json', $props['content_type']);

        $this->assertTrue($publish->send([1, 2, 3]));
        $this->assertSame([1, 2, 3], json_decode($this->expectMessage($queue)[0], true));
        $this->assertSame(0, $this->broker->count($queue));
    }

    public function testDirectExchangeRoutesByKey(): void
    {
        [$exchange, $queue] = $this->exchangeWithQueue('direct', ExchangeTypes::DIRECT, 'rk');
        $publish = (new Publish())->setExchange($exchange, ExchangeTypes::DIRECT);
        $this->assertTrue($publish->send(['a' => [1, 2], 'b' => 'x'], 'rk'));
        $this->assertSame(['a' => [1, 2], 'b' => 'x'], json_decode($this->expectMessage($queue)[0], true));

        $e = self::thrown(fn () => $publish->send(['lost' => true], 'other_key'));
        $this->assertInstanceOf(ConnectionedException::class, $e, 'a message no queue receives must be refused');
        $this->assertMatchesRegularExpression(self::UNROUTABLE, $e->getMessage());
        $this->assertSame(0, $this->broker->count($queue));

        $this->assertTrue($publish->send(['again' => 1], 'rk'), 'the same Publish works after a refused message');
        $this->assertSame(['again' => 1], json_decode($this->expectMessage($queue)[0], true));
    }

    public function testDefaultTypeIsDirect(): void
    {
        [$exchange, $queue] = $this->exchangeWithQueue('default', ExchangeTypes::DIRECT, 'key1');
        $publish = (new Publish())->setExchange($exchange);
        $this->assertTrue($publish->send(['d' => 1], 'key1'));
        $this->assertSame(['d' => 1], json_decode($this->expectMessage($queue)[0], true));
    }

    public function testTopicExchange(): void
    {
        [$exchange, $queue] = $this->exchangeWithQueue('topic', ExchangeTypes::TOPIC, '*.*.WAIT_SELLER_SEND_GOODS');
        $publish = (new Publish())->setExchange($exchange, ExchangeTypes::TOPIC);
        $this->assertTrue($publish->send(['order' => 'FB1'], 'shop.order.WAIT_SELLER_SEND_GOODS'));
        [$raw, $props] = $this->expectMessage($queue);
        $this->assertSame(['order' => 'FB1'], json_decode($raw, true));
        $this->assertSame('shop.order.WAIT_SELLER_SEND_GOODS', $props['routing_key']);
    }

    public function testUnroutableFanoutThrows(): void
    {
        [$exchange] = $this->exchangeWithQueue('lonely', ExchangeTypes::FANOUT, null);
        $publish = (new Publish())->setExchange($exchange, ExchangeTypes::FANOUT);
        $t0 = microtime(true);
        $e = self::thrown(fn () => $publish->send(['k' => 1], 'rk'));
        $this->assertInstanceOf(ConnectionedException::class, $e, $e === null ? 'send() to an exchange without queues did not throw' : get_class($e) . ': ' . $e->getMessage());
        $this->assertMatchesRegularExpression(self::UNROUTABLE, $e->getMessage());
        $this->assertLessThan(10, microtime(true) - $t0);

        // the process keeps working
        $id = (new Event('after_unroutable'))->publish();
        $this->assertSame($id, self::body($this->expectMessage(static::q('events'))[0])['id']);
    }

    /** An exchange that does not exist: refused with ConnectionedException (whether the extension declares it or not), and later publishes still work. */
    public function testMissingExchange(): void
    {
        $publish = (new Publish())->setExchange(static::prefix() . '_never_declared', ExchangeTypes::DIRECT);
        $e = self::thrown(fn () => $publish->send(['k' => 1], 'rk'));
        $this->assertInstanceOf(ConnectionedException::class, $e, $e === null ? 'no exception' : get_class($e) . ': ' . $e->getMessage());

        [$exchange, $queue] = $this->exchangeWithQueue('afterwards', ExchangeTypes::FANOUT, '');
        $this->assertTrue((new Publish())->setExchange($exchange, ExchangeTypes::FANOUT)->send(['ok' => 1]));
        $this->assertSame(['ok' => 1], json_decode($this->expectMessage($queue)[0], true));
        $id = (new Event('after_missing_exchange'))->publish();
        $this->assertSame($id, self::body($this->expectMessage(static::q('events'))[0])['id']);
    }

    public function testSetAutoCloseIsAccepted(): void
    {
        [$exchange, $queue] = $this->exchangeWithQueue('autoclose', ExchangeTypes::FANOUT, '');
        $publish = (new Publish())->setExchange($exchange, ExchangeTypes::FANOUT);
        $this->assertSame($publish, $publish->setAutoClose(true));
        $this->assertTrue($publish->send(['n' => 1]));
        $this->assertTrue($publish->send(['n' => 2]));
        $this->assertSame($publish, $publish->setAutoClose(false));
        $this->assertTrue($publish->send(['n' => 3]));
        $bodies = array_map(static fn (array $m) => json_decode($m[0], true), $this->broker->waitMessages($queue, 3, 5));
        $this->assertSame([['n' => 1], ['n' => 2], ['n' => 3]], $bodies);
    }

    public function testDelayIsRefusedWithTaskException(): void
    {
        [$exchange, $queue] = $this->exchangeWithQueue('delay', ExchangeTypes::FANOUT, '');
        $publish = (new Publish())->setExchange($exchange, ExchangeTypes::FANOUT);
        $e = self::thrown(fn () => $publish->send(['k' => 1], 'rk', 5));
        $this->assertInstanceOf(TaskException::class, $e, $e === null ? 'no exception' : get_class($e) . ': ' . $e->getMessage());
        $this->assertMatchesRegularExpression('/delay/i', $e->getMessage());
        $this->assertSame(0, $this->broker->count($queue), 'nothing sent');
        $this->assertTrue($publish->send(['k' => 2], 'rk', 0), 'delay 0 is fine');
        $this->assertSame(['k' => 2], json_decode($this->expectMessage($queue)[0], true));
    }

    public function testUnencodableDataIsRefused(): void
    {
        [$exchange, $queue] = $this->exchangeWithQueue('badjson', ExchangeTypes::FANOUT, '');
        $publish = (new Publish())->setExchange($exchange, ExchangeTypes::FANOUT);
        $e = self::thrown(fn () => $publish->send(['f' => fopen('php://memory', 'r')]));
        $this->assertInstanceOf(TaskException::class, $e, $e === null ? 'no exception' : get_class($e) . ': ' . $e->getMessage());
        $e = self::thrown(fn () => $publish->send(['s' => "\xff"]));
        $this->assertInstanceOf(TaskException::class, $e, $e === null ? 'no exception' : get_class($e) . ': ' . $e->getMessage());
        $this->assertSame(0, $this->broker->count($queue));
    }
}
