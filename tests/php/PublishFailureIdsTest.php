<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\Batch;
use Asynclib\Ebats\Event;
use Asynclib\Ebats\Task;
use Asynclib\Exception\ConnectionedException;
use Ebats\Tests\Lib\BrokerProxy;
use Ebats\Tests\Lib\EbatsTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * A failed publish says which messages it was about: ebats_flush() names exactly the deferred publishes
 * that failed (message and getFailures()), and a publish whose confirm came too late names its ids and says
 * they may still have been stored (they were: the broker had them, only its answer was held back).
 */
final class PublishFailureIdsTest extends EbatsTestCase
{
    private ?BrokerProxy $proxy = null;

    protected function setUp(): void
    {
        parent::setUp();
        $this->proxy = new BrokerProxy();
        $port = $this->proxy->start();
        TestEnv::setEnv('EBATS_AMQP_URL', TestEnv::amqpUrl(null, $port));
    }

    protected function tearDown(): void
    {
        $this->proxy?->cut();
        $this->proxy = null;
        TestEnv::setEnv('EBATS_CONFIRM_TIMEOUT', null);
        TestEnv::setEnv('EBATS_AMQP_URL', TestEnv::amqpUrl());
        parent::tearDown();
    }

    /** @return list<string> ids of the events in the events queue, taken from it */
    private function eventIdsInQueue(int $atLeast): array
    {
        $messages = $this->broker->waitMessages(static::q('events'), $atLeast, 10.0);
        while (($m = $this->broker->get(static::q('events'))) !== null) {
            $messages[] = $m;
        }
        return array_map(fn (array $m): string => self::body($m[0])['id'], $messages);
    }

    public function testFlushNamesExactlyTheDeferredPublishesThatFailed(): void
    {
        (new Event('warm'))->publish();  // connected and declared through the proxy
        $stored = [];
        for ($i = 0; $i < 10; $i++) {
            $stored[] = (new Event('deferred_cut'))->setOptions(['i' => $i])->publish(true);
        }
        // A confirmed publish on the same channel: the broker confirms in order, so once its confirm is
        // here, so are those of the ten before it.
        $sync = (new Event('sync'))->publish();
        $this->proxy->hold('up');        // from now on nothing reaches the broker
        $lost = [];
        for ($i = 10; $i < 20; $i++) {
            $lost[] = (new Event('deferred_cut'))->setOptions(['i' => $i])->publish(true);
        }
        $this->proxy->cut();

        $e = self::thrown(static fn () => ebats_flush());
        $this->assertInstanceOf(ConnectionedException::class, $e, 'ebats_flush() must throw after the cut');
        $this->assertStringStartsWith('10 deferred publish(es) failed: ', $e->getMessage());
        foreach ($lost as $id) {
            $this->assertStringContainsString("event 'deferred_cut' id=$id", $e->getMessage());
        }
        foreach ($stored as $id) {
            $this->assertStringNotContainsString($id, $e->getMessage(), 'a confirmed publish is not named');
        }
        $failures = $e->getFailures();
        $this->assertSame($lost, array_column($failures, 'id'), 'getFailures(): exactly the lost publishes, in order');
        foreach ($failures as $f) {
            $this->assertSame('event', $f['kind']);
            $this->assertSame('deferred_cut', $f['event']);
            $this->assertNull($f['topic']);
            $this->assertSame(static::q('core.event'), $f['exchange']);
            $this->assertIsString($f['error']);
            $this->assertNotSame('', $f['error']);
            $this->assertTrue($f['maybe_stored'], 'handed over, no answer: the client cannot know');
        }
        $this->assertSame(0, ebats_flush(), 'nothing is left to flush');

        $arrived = $this->eventIdsInQueue(12);
        $this->assertCount(12, $arrived, 'warm, the ten confirmed ones and sync are stored, nothing else');
        $this->assertSame($stored, array_slice($arrived, 1, 10));
        $this->assertSame($sync, $arrived[11]);
        $this->assertSame([], array_intersect($lost, $arrived), 'the failed ids are exactly those not stored');
    }

    public function testFailuresOfEventsAndTasksSayWhichIsWhich(): void
    {
        // One deferred event and one deferred (delayed) task lost with the connection.
        (new Event('warm'))->publish();
        Task::create('demo', 'warm', [], 5);  // the queues and delay levels are declared
        $this->proxy->hold('up');
        $event = (new Event('late'))->publish(true);
        $task = (new Task('demo', 'closeOrder', 5))->publish(true);
        $this->proxy->cut();
        $e = self::thrown(static fn () => ebats_flush());
        $this->assertInstanceOf(ConnectionedException::class, $e);
        $failures = $e->getFailures();
        $this->assertSame([$event, $task], array_column($failures, 'id'));
        $this->assertSame(['event', 'task'], array_column($failures, 'kind'));
        $this->assertSame(['late', null], array_column($failures, 'event'));
        $this->assertSame([null, 'demo'], array_column($failures, 'topic'), 'a delayed task names its topic too');
        $this->assertStringContainsString("task of topic 'demo' id=$task", $e->getMessage());
        $this->assertSame([], ebats_deferred_errors(), 'failures thrown by ebats_flush() are not kept again');

        // Nothing was handed over when the connection cannot even be made: no "may still have been stored".
        $this->proxy->cut();
        $e = self::thrown(static fn () => (new Event('never'))->publish());
        $this->assertInstanceOf(ConnectionedException::class, $e);
        $this->assertStringNotContainsString('may still have been stored', $e->getMessage());
        [$f] = $e->getFailures();
        $this->assertStringContainsString("event 'never' id={$f['id']}", $e->getMessage());
        $this->assertFalse($f['maybe_stored']);
    }

    public function testLateConfirmNamesTheIdThatMayHaveBeenStored(): void
    {
        TestEnv::setEnv('EBATS_CONFIRM_TIMEOUT', '1');
        (new Event('warm'))->publish();
        $this->proxy->hold('down');       // the broker gets everything, its answers wait in the proxy
        $e = self::thrown(static fn () => (new Event('late_confirm'))->setOptions(['k' => 1])->publish());
        $this->assertInstanceOf(ConnectionedException::class, $e, 'a publish without confirm must throw');
        $this->assertStringContainsString('timed out', $e->getMessage());
        $this->assertStringContainsString('may still have been stored', $e->getMessage());
        [$f] = $e->getFailures();
        $this->assertSame(['event', 'late_confirm', true], [$f['kind'], $f['event'], $f['maybe_stored']]);
        self::assertId($f['id']);
        $this->assertStringContainsString("event 'late_confirm' id={$f['id']}", $e->getMessage());
        $arrived = $this->eventIdsInQueue(2);
        $this->assertContains($f['id'], $arrived, 'the event was stored although its publish threw: the id tells');

        // Task::create and a Batch name every id they carried.
        $this->proxy->release('down');
        Task::create('demo', 'warm');
        $this->proxy->hold('down');
        $e = self::thrown(static fn () => Task::create('demo', 'closeOrder', ['n' => 1]));
        $this->assertInstanceOf(ConnectionedException::class, $e);
        [$f] = $e->getFailures();
        $this->assertSame(['task', 'demo'], [$f['kind'], $f['topic']]);
        $this->assertStringContainsString("task of topic 'demo' id={$f['id']}; it may still have been stored", $e->getMessage());

        $this->proxy->release('down');
        (new Batch())->event('warm')->task('demo', 'warm')->publish();  // a new connection declares again
        $this->proxy->hold('down');
        $batch = (new Batch())->event('b1')->task('demo', 'x')->event('b2');
        $e = self::thrown(static fn () => $batch->publish());
        $this->assertInstanceOf(ConnectionedException::class, $e);
        $failures = $e->getFailures();
        $this->assertSame(['event', 'task', 'event'], array_column($failures, 'kind'));
        foreach ($failures as $f) {
            self::assertId($f['id']);
            $this->assertStringContainsString("id={$f['id']}", $e->getMessage());
        }
        $this->assertStringContainsString('they may still have been stored', $e->getMessage());
    }
}
