<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Amq\ExchangeTypes;
use Asynclib\Ebats\Scheduler;
use Asynclib\Ebats\Worker;
use Ebats\Tests\Lib\EbatsTestCase;

/** Issue item 8: class constants keep the documented literal values (independent of the prefix). */
final class ConstantsTest extends EbatsTestCase
{
    protected const USES_BROKER = false;

    public function constants(): array
    {
        return [
            [Scheduler::class, 'EXCHANGE_EVENT', 'ebats.core.event'],
            [Scheduler::class, 'EXCHANGE_TASK', 'ebats.task.ready'],
            [Scheduler::class, 'EXCHANGE_DELAY', 'ebats.task.delay'],
            [Scheduler::class, 'QUEUE_EVENT', 'ebats.events'],
            [Worker::class, 'STATE_ERR', -1],
            [Worker::class, 'STATE_SUCC', 0],
            [Worker::class, 'STATE_FAIL', 1],
            [Worker::class, 'STATE_RETRY', 2],
            [ExchangeTypes::class, 'FANOUT', 'fanout'],
            [ExchangeTypes::class, 'DIRECT', 'direct'],
            [ExchangeTypes::class, 'TOPIC', 'topic'],
            [ExchangeTypes::class, 'HEADERS', 'headers'],
        ];
    }

    /** @dataProvider constants */
    public function testConstant(string $class, string $name, string|int $value): void
    {
        $this->assertTrue(class_exists($class), "class $class missing");
        $this->assertTrue(defined("$class::$name"), "$class::$name missing");
        $this->assertSame($value, constant("$class::$name"));
        $this->assertTrue((new \ReflectionClassConstant($class, $name))->isPublic());
    }

    public function testDirectAccessAndPrefixIndependence(): void
    {
        // setUp exported EBATS_PREFIX=t_...: the constants still carry the default names
        $this->assertSame('ebats.core.event', Scheduler::EXCHANGE_EVENT);
        $this->assertSame('ebats.events', Scheduler::QUEUE_EVENT);
        $this->assertSame(-1, Worker::STATE_ERR);
        $this->assertSame(2, Worker::STATE_RETRY);
        $this->assertSame('topic', ExchangeTypes::TOPIC);
        $this->assertSame(
            [Worker::STATE_ERR, Worker::STATE_SUCC, Worker::STATE_FAIL, Worker::STATE_RETRY],
            array_values(array_unique([Worker::STATE_ERR, Worker::STATE_SUCC, Worker::STATE_FAIL, Worker::STATE_RETRY])),
            'states are distinct'
        );
    }
}
