<?php

declare(strict_types=1);

namespace Ebats\Tests\Php;

use Asynclib\Ebats\Event;
use Asynclib\Ebats\Task;
use Asynclib\Exception\ConnectionedException;
use Ebats\Tests\Lib\ProcTestCase;

/**
 * A declaration the broker refuses as inequivalent (an exchange of ebats's pre-declared by hand with another
 * type) stops the process at once with a message naming the object, what exists, what ebats wants and the fix;
 * a producer call throws it. Never a retry loop.
 */
final class SwitchClashTest extends ProcTestCase
{
    public function testAClashStopsTheSchedulerAtOnceAndFailsProducerCallsWithWhatToDo(): void
    {
        $this->broker->declareExchange(static::q('core.event'), 'topic');
        $this->broker->declareExchange(static::q('task.ready'), 'topic');
        $eventClash = "exchange '" . static::q('core.event') . "' exists as a topic exchange, but ebats declares a durable fanout exchange";
        $taskClash = "exchange '" . static::q('task.ready') . "' exists as a topic exchange, but ebats declares a durable direct exchange";

        // The Scheduler (and its cron leader) stop at once, non-zero, with the message.
        $scheduler = $this->startScheduler([['order_paied', 'orderAsync', 'demo', 0]], false);
        $code = $scheduler->waitExit(15);
        $this->assertNotNull($code, 'the Scheduler kept running: ' . $scheduler->describe());
        $this->assertNotSame(0, $code);
        $this->assertLessThan(10, $scheduler->elapsed());
        $err = $scheduler->stderr() . $scheduler->stdout();
        $this->assertStringContainsString($eventClash, $err);
        $this->assertStringContainsString('give ebats a prefix of its own (ebats.prefix)', $err);
        $this->assertStringContainsString('rabbitmqadmin delete exchange name=' . static::q('core.event'), $err);
        $this->assertStringNotContainsString('retrying', $err);

        // A producer call throws it.
        $e = self::thrown(static fn () => (new Event('order_paied'))->publish());
        $this->assertInstanceOf(ConnectionedException::class, $e);
        $this->assertStringContainsString($eventClash, $e->getMessage());
        $e = self::thrown(static fn () => Task::create('demo', 'orderAsync', ['a' => 1]));
        $this->assertInstanceOf(ConnectionedException::class, $e);
        $this->assertStringContainsString($taskClash, $e->getMessage());

        // So does a worker, before it forks a child.
        $worker = $this->startWorker(['procs' => 2], false);
        $code = $worker->waitExit(15);
        $this->assertNotNull($code, 'the worker kept running: ' . $worker->describe());
        $this->assertNotSame(0, $code);
        $this->assertStringContainsString($taskClash, $worker->stderr() . $worker->stdout());
        $this->assertStringNotContainsString('retrying', $worker->stderr());

        // A Scheduler that starts fine and meets the clash routing an event stops too; the event goes back.
        $this->broker->deleteExchange(static::q('core.event'));
        $scheduler = $this->startScheduler([['order_paied', 'orderAsync', 'demo', 0]], true, 'scheduler2');
        (new Event('order_paied'))->setOptions(['a' => 1])->publish();
        $code = $scheduler->waitExit(15);
        $this->assertNotNull($code, 'the Scheduler kept running: ' . $scheduler->describe());
        $this->assertNotSame(0, $code);
        $this->assertStringContainsString($taskClash, $scheduler->stderr() . $scheduler->stdout());
        $this->waitFor(fn () => $this->broker->count(static::q('events')) === 1 ?: null, 10, 'the event back in its queue');
    }
}
