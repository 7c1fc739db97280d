<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\Batch;
use Asynclib\Ebats\Event;
use Asynclib\Ebats\Task;
use Asynclib\Exception\ConnectionedException;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\EbatsTestCase;

/** The fast paths for producers: deferred confirms and batches. */
final class DeferredBatchTest extends EbatsTestCase
{
    public function testDeferredPublishesAreAllConfirmedByFlush(): void
    {
        $ids = [];
        for ($i = 0; $i < 50; $i++) {
            $ids[] = (new Event('deferred'))->setOptions(['i' => $i])->publish(true);
        }
        $this->assertSame(50, ebats_flush(), 'ebats_flush() counts the confirmed publishes');
        $this->assertSame(0, ebats_flush(), 'nothing is left to flush');
        $got = array_map(fn ($m) => self::body($m[0])['id'], $this->broker->waitMessages(static::q('events'), 50, 5.0));
        $this->assertSame($ids, $got, 'every deferred event landed, in order');
    }

    public function testEndOfRequestWaitsForDeferredConfirms(): void
    {
        // The script never flushes: the end of the request must.
        $r = Process::runPhp(
            '<?php for ($i = 0; $i < 20; $i++) { (new Asynclib\Ebats\Event("req_end"))->publish(true); } echo "done";',
            static::childEnv()
        );
        $this->assertSame(0, $r->exitCode(), $r->describe());
        $this->assertSame(20, $this->broker->count(static::q('events')), 'all 20 deferred events were confirmed before the process ended');
    }

    public function testIniSettingMakesPublishDeferred(): void
    {
        $r = Process::runPhp(
            '<?php $t = Asynclib\Ebats\Task::create("demo", "x", [1]); echo json_encode([ebats_config()["deferred_confirms"], ebats_flush()]);',
            static::childEnv(),
            30.0,
            true,
            ['ebats.deferred_confirms' => '1']
        );
        $this->assertSame(0, $r->exitCode(), $r->describe());
        $this->assertSame([true, 1], json_decode(trim($r->stdout()), true), 'Task::create was deferred and flushed by ebats_flush()');
        $this->assertSame(1, $this->broker->count(static::q('task.demo')));
    }

    public function testDeferredFailureIsReportedNotSilent(): void
    {
        (new Event('warmup'))->publish(true);
        ebats_flush();
        $this->broker->purgeQueue(static::q('events'));
        // With the events queue gone the fanout exchange routes nowhere: the confirm carries a return.
        $this->broker->deleteQueue(static::q('events'));
        (new Event('lost'))->publish(true);
        try {
            ebats_flush();
            $this->fail('ebats_flush() must throw when a deferred publish was not routed');
        } catch (ConnectionedException $e) {
            $this->assertStringContainsString('unroutable', $e->getMessage());
            $this->assertStringContainsString('1 deferred publish(es) failed', $e->getMessage());
        }
    }

    public function testDeferredFailureAtRequestEndIsLogged(): void
    {
        // The child publishes once (declaring the events queue), deletes that queue with php-amqp, then
        // publishes deferred and ends without flushing: the end of the request must report the return.
        $code = '<?php (new Asynclib\Ebats\Event("w"))->publish(); '
            . '$c = new AMQPConnection(["host" => "127.0.0.1", "vhost" => getenv("TEST_VHOST")]); $c->connect(); '
            . '$q = new AMQPQueue(new AMQPChannel($c)); $q->setName(getenv("EBATS_PREFIX") . ".events"); $q->delete(); '
            . '(new Asynclib\Ebats\Event("lost"))->publish(true); echo "returned";';
        $r = Process::runPhp($code, static::childEnv(['TEST_VHOST' => \Ebats\Tests\Lib\TestEnv::vhost()]));
        $this->assertSame(0, $r->exitCode(), $r->describe());
        $this->assertSame('returned', trim($r->stdout()));
        $this->assertStringContainsString('deferred publish failed', $r->stderr(), 'the failure is logged when the request ends');
        $this->assertStringContainsString('unroutable', $r->stderr());
    }

    public function testBatchPublishesEventsAndTasksInOrder(): void
    {
        $batch = new Batch();
        $batch->event('order_paied', ['order_id' => 'B1'])->task('demo', 'closeOrder', ['n' => 1], 0)->event('order_paied', ['order_id' => 'B2']);
        $batch->task('demo', 'later', [], 30);
        $this->assertSame(4, $batch->count());
        $ids = $batch->publish();
        $this->assertCount(4, $ids);
        foreach ($ids as $id) {
            self::assertId($id);
        }
        $this->assertSame(0, $batch->count(), 'publish() empties the batch');
        $events = $this->broker->waitMessages(static::q('events'), 2, 5.0);
        $this->assertSame([$ids[0], $ids[2]], array_map(fn ($m) => self::body($m[0])['id'], $events));
        $this->assertSame(['order_id' => 'B2'], self::body($events[1][0])['params']);
        $task = self::body($this->expectMessage(static::q('task.demo'))[0]);
        $this->assertSame([$ids[1], 'closeOrder', ['n' => 1]], [$task['id'], $task['name'], $task['params']]);
        $this->assertQueueEmpty(static::q('task.demo'), 'the 30 s task is held by the delay levels');
        $this->assertSame([], (new Batch())->publish(), 'an empty batch publishes nothing');
    }

    public function testBatchRejectsBadItemsBeforeSendingAnything(): void
    {
        $batch = new Batch();
        $batch->event('ok');
        try {
            $batch->task('a.b', 'x');
            $this->fail('a bad topic must throw');
        } catch (\Asynclib\Exception\TaskException $e) {
            $this->assertStringContainsString("topic 'a.b'", $e->getMessage());
        }
        $this->assertSame(1, $batch->count());
        $this->assertQueueEmpty(static::q('events'));
    }
}
