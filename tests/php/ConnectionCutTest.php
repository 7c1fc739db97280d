<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\EbatsTestCase;
use Ebats\Tests\Lib\BrokerProxy;
use Ebats\Tests\Lib\TestEnv;

/**
 * Issue item 5: a child process publishes through a TCP proxy that the test kills (every connection cut)
 * and restarts. A publish is either confirmed or throws ConnectionedException in bounded time; after the
 * broker is reachable again the process reconnects by itself.
 */
final class ConnectionCutTest extends EbatsTestCase
{
    private const CONNECTION_EXCEPTION = 'Asynclib\Exception\ConnectionedException';
    /** Upper bound for a failing publish, in ms (connect timeout 2 s, confirm timeout 4 s in the child). */
    private const BOUND_MS = 8000;

    private BrokerProxy $proxy;
    private Process $agent;

    protected function setUp(): void
    {
        parent::setUp();
        $this->proxy = new BrokerProxy();
        $port = $this->proxy->start();
        $this->agent = Process::php(__DIR__ . '/../fixtures/agent.php', [], static::childEnv([
            'EBATS_AMQP_URL' => TestEnv::amqpUrl(null, $port),
            'EBATS_CONNECT_TIMEOUT' => '2',
            'EBATS_CONFIRM_TIMEOUT' => '4',
        ]));
        $hello = $this->agent->readLine(15);
        $this->assertNotNull($hello, "agent did not start\n" . $this->agent->describe());
    }

    protected function tearDown(): void
    {
        unset($this->agent, $this->proxy); // kills both
        parent::tearDown();
    }

    private function publishOk(string $label): string
    {
        $answer = $this->agent->request(['op' => 'event', 'name' => 'cut_test', 'params' => ['step' => $label]], 30);
        $this->assertTrue($answer['ok'], "$label: publish failed: " . json_encode($answer) . "\n" . $this->agent->stderr());
        self::assertId($answer['id']);
        $message = $this->expectMessage(static::q('events'));
        $this->assertSame($answer['id'], self::body($message[0])['id'], "$label: the confirmed event is in the queue");
        return $answer['id'];
    }

    public function testCutMakesNextPublishThrowAndRestoreReconnects(): void
    {
        $this->publishOk('before cut');

        $this->proxy->cut();
        $answer = $this->agent->request(['op' => 'event', 'name' => 'cut_test', 'params' => ['step' => 'during cut']], 30);
        $this->assertFalse($answer['ok'], 'publish while the broker is unreachable must throw, not report success: ' . json_encode($answer));
        $this->assertSame(self::CONNECTION_EXCEPTION, $answer['class'], json_encode($answer));
        $this->assertNotSame('', $answer['message']);
        $this->assertLessThan(self::BOUND_MS, $answer['ms'], 'the failing publish took too long: ' . json_encode($answer));
        $this->assertQueueEmpty(static::q('events'), 'nothing may land while the connection is cut');

        // still cut: a second attempt fails the same way (no hang, no stale state)
        $again = $this->agent->request(['op' => 'task', 'topic' => 'demo', 'name' => 'x'], 30);
        $this->assertFalse($again['ok'], json_encode($again));
        $this->assertSame(self::CONNECTION_EXCEPTION, $again['class'], json_encode($again));
        $this->assertLessThan(self::BOUND_MS, $again['ms'], json_encode($again));

        $this->proxy->start();
        $this->publishOk('after restore');
        $task = $this->agent->request(['op' => 'task', 'topic' => 'demo', 'name' => 'x', 'params' => ['after' => 'restore']], 30);
        $this->assertTrue($task['ok'], json_encode($task));
        $this->assertSame($task['id'], self::body($this->expectMessage(static::q('task.demo'))[0])['id']);
    }

    /** Cut and restored while the process is idle (like a broker restart): the next publish reconnects and succeeds. */
    public function testCutWhileIdleThenRestoredPublishSucceeds(): void
    {
        $this->publishOk('before cut');
        $this->proxy->cut();
        $this->proxy->start();
        $this->publishOk('first after restore');
        $this->publishOk('second after restore');
    }

    /** Several cuts in a row: each time the failing publish is bounded and the process recovers. */
    public function testRepeatedCuts(): void
    {
        for ($i = 0; $i < 3; $i++) {
            $this->publishOk("round $i");
            $this->proxy->cut();
            $answer = $this->agent->request(['op' => 'event', 'name' => 'cut_test', 'params' => ['round' => $i]], 30);
            $this->assertFalse($answer['ok'], json_encode($answer));
            $this->assertSame(self::CONNECTION_EXCEPTION, $answer['class'], json_encode($answer));
            $this->assertLessThan(self::BOUND_MS, $answer['ms'], json_encode($answer));
            $this->proxy->start();
        }
        $this->publishOk('final');
        $this->assertTrue($this->agent->request(['op' => 'quit'], 10)['ok']);
    }
}
