<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\Event;
use Ebats\Tests\Lib\EbatsTestCase;
use Ebats\Tests\Lib\TestEnv;

/** Issue item 1: Event::publish() puts one confirmed, documented JSON message in <prefix>.events. */
final class EventPublishTest extends EbatsTestCase
{
    private function assertEventMessage(array $message, string $id, string $event, array $params, float $before, float $after): array
    {
        [$raw, $props] = $message;
        $this->assertSame('application/json', $props['content_type']);
        $this->assertSame(2, $props['delivery_mode'], 'events must be persistent (delivery_mode 2)');
        $this->assertSame($id, $props['message_id'], 'message_id must be the id publish() returned');
        $this->assertSame('ebats.event', $props['type']);
        $this->assertSame($event, $props['routing_key'], 'routing key = event name');
        $this->assertSame(static::q('core.event'), $props['exchange']);

        $body = self::body($raw);
        $this->assertSame(1, $body['v'] ?? null, 'body field v');
        $this->assertSame($id, $body['id'] ?? null, 'body field id');
        $this->assertSame($event, $body['event'] ?? null, 'body field event');
        $this->assertArrayHasKey('params', $body);
        $this->assertSame($params, $body['params']);
        $this->assertArrayHasKey('created_at', $body);
        $this->assertTrue(is_float($body['created_at']) || is_int($body['created_at']), 'created_at is a number');
        $this->assertGreaterThanOrEqual($before - 1, $body['created_at'], 'created_at (unix seconds) too early');
        $this->assertLessThanOrEqual($after + 1, $body['created_at'], 'created_at (unix seconds) too late');
        return $body;
    }

    public function testFluentPublishIsConfirmedBeforeReturning(): void
    {
        $before = microtime(true);
        $id = (new Event('order_paied'))->setOptions(['order_id' => 'FB1'])->publish();
        $after = microtime(true);
        self::assertId($id, 'publish() result');

        // publish() returns once the broker confirmed: the message is already in the queue, no waiting.
        $message = $this->broker->get(static::q('events'));
        $this->assertNotNull($message, 'no message in ' . static::q('events') . ' right after publish() returned');
        $this->assertEventMessage($message, $id, 'order_paied', ['order_id' => 'FB1'], $before, $after);
        $this->assertIsObject(json_decode($message[0])->params, 'params with string keys must be a JSON object');
        $this->assertSame(0, $this->broker->count(static::q('events')), 'exactly one message per publish');
    }

    public function testSeedStylePublishWaitsInQueueWithoutScheduler(): void
    {
        // the producer code of seeds/000, verbatim apart from the order id
        $event = new Event('order_paied');
        $event->setOptions(['order_id' => 'FB138020392193312']);
        $before = microtime(true);
        $id = $event->publish();
        $after = microtime(true);
        self::assertId($id);

        $this->assertSame('order_paied', $event->getEvent());
        $this->assertSame(['order_id' => 'FB138020392193312'], $event->getParams());

        // no scheduler runs: the event is kept in a durable queue bound to a durable fanout exchange
        $this->assertSame(1, $this->broker->count(static::q('events')));
        $queues = TestEnv::rabbitmqctl(['list_queues', '-q', '--no-table-headers', '-p', TestEnv::vhost(), 'name', 'durable', 'auto_delete']);
        $this->assertMatchesRegularExpression('/^' . preg_quote(static::q('events'), '/') . "\ttrue\tfalse$/m", $queues, 'events queue must be durable, not auto-delete');
        $exchanges = TestEnv::listExchanges(static::prefix());
        $this->assertSame(['type' => 'fanout', 'durable' => true], $exchanges[static::q('core.event')] ?? null, 'event exchange');

        $this->assertEventMessage($this->expectMessage(static::q('events')), $id, 'order_paied', ['order_id' => 'FB138020392193312'], $before, $after);
    }

    public function testSetOptionsReturnsSameObject(): void
    {
        $event = new Event('e1');
        $this->assertSame($event, $event->setOptions(['a' => 1]));
    }

    public function testEventWithoutParams(): void
    {
        $event = new Event('no_params');
        $this->assertSame([], $event->getParams());
        $before = microtime(true);
        $id = $event->publish();
        $this->assertEventMessage($this->expectMessage(static::q('events')), $id, 'no_params', [], $before, microtime(true));

        $event2 = (new Event('no_params2'))->setOptions();
        $this->assertSame([], $event2->getParams());
        $id2 = $event2->publish();
        [$raw] = $this->expectMessage(static::q('events'));
        $this->assertSame($id2, self::body($raw)['id']);
        $this->assertSame([], json_decode($raw)->params, 'empty params are the JSON list []');
    }

    public function testParamsRoundTripAsJson(): void
    {
        $params = [
            'order_id' => 'FB1',
            'amount' => 12.5,
            'small' => 0.1,
            'count' => 3,
            'big' => PHP_INT_MAX,
            'negative' => -42,
            'paid' => true,
            'refunded' => false,
            'coupon' => null,
            'items' => [['sku' => 'A', 'qty' => 2], ['sku' => 'B', 'qty' => 1]],
            'tags' => ['x', 'y', 'z'],
            'sparse' => [1 => 'a', 2 => 'b'],
            'empty' => [],
            'text' => "héllo 中文 \"quoted\" \\ / \n tab\t",
            'nested' => ['a' => ['b' => ['c' => ['d' => 'deep']]]],
        ];
        $id = (new Event('order_create'))->setOptions($params)->publish();
        [$raw] = $this->expectMessage(static::q('events'));
        $body = self::body($raw);
        $this->assertSame($id, $body['id']);
        $this->assertSame($params, $body['params']);

        $object = json_decode($raw);
        $this->assertIsArray($object->params->tags, 'a PHP list becomes a JSON list');
        $this->assertIsArray($object->params->items, 'a PHP list becomes a JSON list');
        $this->assertIsObject($object->params->sparse, 'keys 1,2 (not 0..n-1) make a JSON object');
        $this->assertIsObject($object->params->nested->a, 'string keys make a JSON object');
        $this->assertIsFloat($object->params->amount);
        $this->assertIsInt($object->params->count);
    }

    public function testJsonSerializableParams(): void
    {
        $value = new class () implements \JsonSerializable {
            public function jsonSerialize(): mixed
            {
                return ['serialized' => true, 'n' => 7];
            }
        };
        $id = (new Event('with_object'))->setOptions(['obj' => $value])->publish();
        [$raw] = $this->expectMessage(static::q('events'));
        $body = self::body($raw);
        $this->assertSame($id, $body['id']);
        $this->assertSame(['obj' => ['serialized' => true, 'n' => 7]], $body['params']);
    }

    public function testManyPublishesKeepOrderAndUniqueIds(): void
    {
        $ids = [];
        for ($i = 0; $i < 25; $i++) {
            $ids[] = (new Event('seq'))->setOptions(['i' => $i])->publish();
        }
        $this->assertCount(25, array_unique($ids), 'ids must be unique');
        $this->assertSame(25, $this->broker->count(static::q('events')));
        $messages = $this->broker->waitMessages(static::q('events'), 25, 5);
        $this->assertCount(25, $messages);
        foreach ($messages as $i => [$raw, $props]) {
            $body = self::body($raw);
            $this->assertSame($ids[$i], $body['id'], "message $i out of order");
            $this->assertSame(['i' => $i], $body['params']);
            $this->assertSame($ids[$i], $props['message_id']);
        }
    }

    public function testEventNameEdgeCases(): void
    {
        $long = str_repeat('e', 255);
        $names = [$long, 'order.paid-ü', 'Ä b c/d:e', '1'];
        foreach ($names as $name) {
            $event = new Event($name);
            $this->assertSame($name, $event->getEvent());
            $id = $event->publish();
            [$raw, $props] = $this->expectMessage(static::q('events'));
            $this->assertSame($name, self::body($raw)['event']);
            $this->assertSame($id, $props['message_id']);
        }
    }
}
