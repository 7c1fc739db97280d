<?php

declare(strict_types=1);

namespace Ebats\Tests\Php;

use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\ProcTestCase;

/**
 * The switch from the original library, events side: the original's topology and messages (written by
 * tests/fixtures/legacy/produce.php, in a process without the extension) met by the extension's Scheduler,
 * cron leader, Worker, Consumer and producers on the same vhost and prefix.
 */
final class SwitchEventsTest extends ProcTestCase
{

    /** The legacy producer running in the background (count 0: until stopped). */
    private function legacyInBackground(string $what, float $rate): Process
    {
        return Process::php(
            self::FIXTURES . '/legacy/produce.php',
            ['-', static::prefix(), $what, '0', (string) $rate, '{}'],
            static::childEnv(['EBATS_T_LOG' => $this->logFile]),
            withExtension: false,
            options: ['name' => 'legacy-producer', 'stdout' => "{$this->tmp}/legacy.out", 'stderr' => "{$this->tmp}/legacy.err"]
        );
    }

    /** @return array<int,int> how often each n ran as task $name of topic demo */
    private function ranByN(string $name): array
    {
        $ran = [];
        foreach ($this->records('run') as $r) {
            if ($r['name'] === $name && isset($r['params']['n'])) {
                $ran[$r['params']['n']] = ($ran[$r['params']['n']] ?? 0) + 1;
            }
        }
        return $ran;
    }

    private function startCronScheduler(array $register, array $cron = [], string $name = 'scheduler'): Process
    {
        $p = $this->startFixture($name, 'cron_scheduler.php', [
            'EBATS_T_REGISTER' => json_encode($register),
            'EBATS_T_CRON' => json_encode($cron),
            'EBATS_DEBUG' => '1',
        ]);
        $this->waitConsumers(static::q('events'), 1, 20, [$p]);
        return $p;
    }

    public function testEventsTheOriginalLeftRunOnceWithTheirParamsAndCronStillFires(): void
    {
        $this->legacy('topology:order_paied,cron.tick:');
        $this->legacy('event:order_paied', 40, ['shop' => 'FB', 'lines' => [['sku' => 'a', 'qty' => 2]]]);
        $this->assertSame(40, $this->broker->count(static::q('events')));

        $scheduler = $this->startCronScheduler(
            [['order_paied', 'orderAsync', 'demo', 0], ['cron.tick', 'ping', 'demo', 0]],
            [['* * * * * *', 'cron.tick', ['c' => 1], ['name' => 'tick', 'timezone' => 'UTC']]]
        );
        $this->startWorker();
        $ran = $this->waitFor(fn () => count($r = $this->ranByN('orderAsync')) === 40 ? $r : null, 30, '40 legacy events run');
        $pings = $this->waitFor(
            fn () => ($p = array_filter($this->records('run'), static fn ($r) => $r['name'] === 'ping')) ? $p : null,
            20,
            'a cron firing run as a task'
        );
        $this->assertSame(['c' => 1], array_values($pings)[0]['params']);
        // Every one of the 40 ran, once, with the params the original wrote.
        $this->assertSame(range(0, 39), array_keys($this->sortedKeys($ran)));
        $this->assertSame([1], array_values(array_unique($ran)), 'an event ran twice');
        foreach ($this->records('run') as $r) {
            if ($r['name'] === 'orderAsync') {
                $this->assertSame(['n' => $r['params']['n'], 'shop' => 'FB', 'lines' => [['sku' => 'a', 'qty' => 2]]], $r['params']);
            }
        }
        $this->assertStringContainsString("event exchange '" . static::q('core.event') . "' exists as the original library's direct exchange: adopted", $scheduler->stderr());
        $this->assertQueueEmpty(static::q('events.unreadable'));
        fwrite(STDERR, sprintf("\n[switch] left 40, ran %d, duplicates %d, lost %d; cron firings run %d\n", count($ran), array_sum($ran) - count($ran), 40 - count($ran), count($pings)));
    }

    private function sortedKeys(array $a): array
    {
        ksort($a);
        return $a;
    }

    public function testAnEventTheReaderRefusesGoesToTheUnreadableStoreWithTheReason(): void
    {
        $this->legacy('topology:order_paied:');
        // An object of another class in the params: never instantiated, refused with the reason.
        $this->broker->publish(static::q('core.event'), 'order_paied', 'a:2:{s:5:"etime";i:1;s:4:"body";a:1:{s:1:"x";O:8:"Evil\Gun":0:{}}}', ['content_type' => 'text/plain']);
        $this->startCronScheduler([['order_paied', 'orderAsync', 'demo', 0]]);
        [$body, $props] = $this->expectMessage(static::q('events.unreadable'), 15);
        $this->assertStringStartsWith("event in the original library's format", $props['headers']['x-ebats-error'] ?? json_encode($props));
        $this->assertStringContainsString('Evil', $body);
    }

    public function testSideBySideALegacyProducerPublishesThroughRestartsAndEveryEventRunsOnce(): void
    {
        $this->legacy('topology:order_paied:');
        $producer = $this->legacyInBackground('event:order_paied', 25);
        $scheduler = $this->startCronScheduler([['order_paied', 'orderAsync', 'demo', 0]]);
        $worker = $this->startWorker();
        $this->waitFor(fn () => count($this->ranByN('orderAsync')) >= 20 ?: null, 30, 'events running');
        $scheduler->stop(10);
        $worker->stop(10);
        $this->startCronScheduler([['order_paied', 'orderAsync', 'demo', 0]], [], 'scheduler2');
        $this->startWorker(['name' => 'worker2']);
        $this->waitFor(fn () => count($this->ranByN('orderAsync')) >= 60 ?: null, 30, 'events running after the restarts');
        $producer->stop(10);
        $published = json_decode(trim($producer->stdout()), true)['published'] ?? null;
        $this->assertIsInt($published, 'the legacy producer printed no count: ' . $producer->describe());
        $ran = $this->waitFor(fn () => count($r = $this->ranByN('orderAsync')) >= $published ? $r : null, 30, "all $published events run");
        $duplicates = array_sum($ran) - count($ran);
        $lost = count(array_diff(range(0, $published - 1), array_keys($ran)));
        fwrite(STDERR, sprintf("\n[switch side by side] published %d, ran %d, duplicates %d, lost %d\n", $published, count($ran), $duplicates, $lost));
        $this->assertSame(0, $lost);
        $this->assertSame(0, $duplicates);
        $this->assertSame($published, count($ran));
    }

    public function testAConsumerGetsKeyBodyAndEtimeOfPublishSendBodies(): void
    {
        $exchange = static::q('user.x');
        $queue = static::q('user.q');
        $this->legacy("user:$exchange:$queue:k1");
        $this->legacy("publish:$exchange:k1:30", 3, ['who' => 'legacy']);
        $this->startFixture('consumer', 'legacy_consumer.php', ['EBATS_T_EXCHANGE' => $exchange, 'EBATS_T_QUEUE' => $queue]);
        $got = $this->waitFor(fn () => count($c = $this->records('consumed')) >= 3 ? $c : null, 20, 'three messages consumed');
        $now = time();
        foreach ($got as $i => $rec) {
            [$key, $body, $etime] = $rec['args'] + [null, null, null];
            $this->assertCount(3, $rec['args'], 'the original gave three arguments');
            $this->assertSame('k1', $key);
            $this->assertSame(['n' => $i, 'who' => 'legacy'], $body);
            $this->assertIsInt($etime);
            // Publish::send($data, $key, 30) wrote etime = time() + 30
            $this->assertEqualsWithDelta($now + 30, $etime, 15);
        }
        // A JSON body still gets two arguments.
        $this->broker->publish($exchange, 'k1', '{"a":1}', ['content_type' => 'application/json']);
        $rec = $this->waitFor(fn () => count($c = $this->records('consumed')) >= 4 ? $c[3] : null, 20, 'the JSON message consumed');
        $this->assertSame(['k1', ['a' => 1]], $rec['args']);
    }

    public function testWithTheWriteFormatOriginalProducersWriteWhatTheOriginalReads(): void
    {
        // As before any worker of the extension ran (the tests before this one made ebats's queue of demo).
        $this->broker->deleteQueue(static::q('task.demo'));
        $this->legacy('topology:order_paied:demo');
        $code = <<<'PHP'
            <?php
            $e = (new Asynclib\Ebats\Event('order_paied'))->setOptions(['order' => 'FB1', 'lines' => [1, 2.5, 'x']])->publish();
            $t = Asynclib\Ebats\Task::create('demo', 'orderAsync', ['b' => 2]);
            $d = Asynclib\Ebats\Task::create('demo', 'orderAsync', ['c' => 3], 2);
            $batch = new Asynclib\Ebats\Batch();
            $ids = $batch->event('order_paied', ['batch' => 1])->task('demo', 'ok', ['batch' => 2])->publish(true);
            ebats_flush();
            echo json_encode(['event' => $e, 'task' => $t, 'delayed' => $d, 'batch' => $ids]);
            PHP;
        $p = Process::runPhp($code, static::childEnv(['EBATS_WRITE_FORMAT' => 'original']));
        $this->assertSame(0, $p->exitCode(), $p->describe());
        $ids = json_decode($p->stdout(), true);

        // The original's Scheduler reads its events queue: serialize(['etime' => ..., 'body' => $params]).
        $events = $this->broker->waitMessages(static::q('events'), 2, 10);
        $this->assertCount(2, $events);
        $first = unserialize($events[0][0], ['allowed_classes' => false]);
        $this->assertSame(['order' => 'FB1', 'lines' => [1, 2.5, 'x']], $first['body']);
        $this->assertEqualsWithDelta(time(), $first['etime'], 30);
        $this->assertSame('order_paied', $events[0][1]['routing_key']);
        $this->assertSame('text/plain', $events[0][1]['content_type']);
        $this->assertSame(2, $events[0][1]['delivery_mode']);
        $this->assertSame(['batch' => 1], unserialize($events[1][0], ['allowed_classes' => false])['body']);

        // Its Worker reads the ready queue P.demoR: a Task object with the private properties.
        $task = static function (string $raw): array {
            $o = (array) unserialize($raw, ['allowed_classes' => false])['body'];
            self::assertSame('Asynclib\\Ebats\\Task', $o['__PHP_Incomplete_Class_Name']);
            unset($o['__PHP_Incomplete_Class_Name']);
            $out = [];
            foreach ($o as $k => $v) {
                $out[str_replace("\0Asynclib\\Ebats\\Task\0", '', $k)] = $v;
            }
            return $out;
        };
        $ready = $this->broker->waitMessages(static::q('demoR'), 2, 10);
        $this->assertCount(2, $ready);
        $this->assertSame(['id' => $ids['task'], 'name' => 'orderAsync', 'topic' => 'demo', 'params' => ['b' => 2], 'delay' => 0], $task($ready[0][0]));
        $this->assertSame($ids['batch'][1], $task($ready[1][0])['id']);
        // The delayed one waits in P.demoD, then dead-letters into P.demoR when due.
        [$late] = $this->expectMessage(static::q('demoR'), 15);
        $this->assertSame(['id' => $ids['delayed'], 'name' => 'orderAsync', 'topic' => 'demo', 'params' => ['c' => 3], 'delay' => 2000], $task($late));
        $this->assertNull($this->broker->count(static::q('task.demo')), "ebats's ready queue was not declared beside the original's");

        // The extension's own Scheduler and Worker read that format too: same task id, same params.
        $p = Process::runPhp(
            '<?php (new Asynclib\Ebats\Event("order_paied"))->setOptions(["n" => 7])->publish(); echo Asynclib\Ebats\Task::create("demo", "orderAsync", ["n" => 8]);',
            static::childEnv(['EBATS_WRITE_FORMAT' => 'original'])
        );
        $this->assertSame(0, $p->exitCode(), $p->describe());
        $taskId = trim($p->stdout());
        $this->startCronScheduler([['order_paied', 'orderAsync', 'demo', 0]]);
        $this->startWorker();
        $this->waitFor(fn () => ($this->ranByN('orderAsync')[7] ?? 0) === 1 ?: null, 20, 'the event in the original format run by ebats');
        $this->waitFor(fn () => ($this->ranByN('orderAsync')[8] ?? 0) === 1 ?: null, 20, 'the task in the original format run by ebats');
        // The callback's record is written after the run's: wait for it too.
        $cb = $this->waitFor(
            fn () => array_values(array_filter($this->records('cb'), static fn ($r) => ($r['params']['n'] ?? null) === 8)) ?: null,
            10,
            "the callback of the task in the original format"
        );
        $this->assertSame($taskId, $cb[0]['taskid'] ?? null, 'the task ran with the id its producer returned');
        $this->assertStays(fn () => (count($r = $this->ranByN('orderAsync')) !== 2 || max($r) !== 1) ? $r : null, 2, 'a task ran twice or an unknown one ran');
    }
}
