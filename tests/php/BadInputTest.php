<?php

// No strict_types here on purpose: the calls below are made in PHP's default (coercive) mode, as most apps do.

namespace Ebats\Tests;

use Asynclib\Ebats\Event;
use Asynclib\Ebats\Task;
use Asynclib\Exception\ConnectionedException;
use Asynclib\Exception\TaskException;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\EbatsTestCase;
use Ebats\Tests\Lib\BrokerProxy;
use Ebats\Tests\Lib\TestEnv;

/**
 * Issue item 6: bad input gives a clear exception and publishes nothing; the process keeps working after it.
 * Broker/credential problems -> ConnectionedException (in bounded time); bad names, params or delays ->
 * TaskException; wrong PHP argument types -> \TypeError.
 */
final class BadInputTest extends EbatsTestCase
{
    private function assertNothingLanded(string $context): void
    {
        $this->assertQueueEmpty(static::q('events'), $context);
        $this->assertQueueEmpty(static::q('task.demo'), $context);
    }

    private function assertNormalPublishWorks(string $context): void
    {
        $id = (new Event('after_error'))->setOptions(['ctx' => $context])->publish();
        $this->assertSame($id, self::body($this->expectMessage(static::q('events'))[0])['id'], "event publish after: $context");
        $id = Task::create('demo', 'afterError', ['ctx' => $context]);
        $this->assertSame($id, self::body($this->expectMessage(static::q('task.demo'))[0])['id'], "task publish after: $context");
    }

    public function invalidInput(): array
    {
        $resource = static fn () => fopen('php://memory', 'r');
        $notSerializable = static fn () => new class () {
            public $a = 1;
        };
        return [
            'empty event name' => [static fn () => (new Event(''))->setOptions(['a' => 1])->publish(), '/event/i'],
            'event name with newline' => [static fn () => (new Event("order\npaid"))->publish(), '/event/i'],
            'event name with NUL' => [static fn () => (new Event("order\0paid"))->publish(), '/event/i'],
            'event name of 256 chars' => [static fn () => (new Event(str_repeat('e', 256)))->publish(), '/event/i'],
            'event params with a resource' => [static fn () => (new Event('e'))->setOptions(['f' => $resource()])->publish(), '/resource/i'],
            'event params with a closure' => [static fn () => (new Event('e'))->setOptions(['c' => static function () {
            }])->publish(), '/closure|object|serializ/i'],
            'event params with invalid UTF-8' => [static fn () => (new Event('e'))->setOptions(['s' => "\xff"])->publish(), '/utf-?8/i'],
            'event params with NAN' => [static fn () => (new Event('e'))->setOptions(['n' => NAN])->publish(), '/nan|inf|finite|float|number/i'],
            'empty topic' => [static fn () => Task::create('', 'x'), '/topic/i'],
            'topic with a dot' => [static fn () => Task::create('a.b', 'x'), '/topic/i'],
            'topic with a space' => [static fn () => Task::create('a b', 'x'), '/topic/i'],
            'topic with non-ASCII' => [static fn () => Task::create('dé', 'x'), '/topic/i'],
            'topic of 129 chars' => [static fn () => Task::create(str_repeat('t', 129), 'x'), '/topic/i'],
            'topic with a dot (new Task)' => [static fn () => (new Task('a.b', 'x'))->publish(), '/topic/i'],
            'empty task name' => [static fn () => Task::create('demo', ''), '/name/i'],
            'task name with a dash' => [static fn () => Task::create('demo', 'close-order'), '/name/i'],
            'task name of 129 chars' => [static fn () => Task::create('demo', str_repeat('n', 129)), '/name/i'],
            'task params with a resource' => [static fn () => Task::create('demo', 'x', ['f' => $resource()]), '/resource/i'],
            'task params that are a resource' => [static fn () => Task::create('demo', 'x', $resource()), '/resource/i'],
            'task params with a closure' => [static fn () => Task::create('demo', 'x', ['c' => static fn () => 1]), '/closure|object|serializ/i'],
            'task params with a plain object' => [static fn () => Task::create('demo', 'x', ['o' => $notSerializable()]), '/object|serializ|class/i'],
            'task params with invalid UTF-8' => [static fn () => Task::create('demo', 'x', ['s' => "\xff"]), '/utf-?8/i'],
            'task params with invalid UTF-8 key' => [static fn () => Task::create('demo', 'x', ["\xfe\xff" => 1]), '/utf-?8/i'],
            'task params invalid UTF-8 string' => [static fn () => Task::create('demo', 'x', "ok\xc3"), '/utf-?8/i'],
            'task params with INF' => [static fn () => Task::create('demo', 'x', [INF]), '/nan|inf|finite|float|number/i'],
            'negative delay' => [static fn () => Task::create('demo', 'x', [], -1), '/delay/i'],
            'negative delay (new Task)' => [static fn () => (new Task('demo', 'x', -5))->publish(), '/delay/i'],
            'delay of 2^28 s' => [static fn () => Task::create('demo', 'x', [], 1 << 28), '/delay/i'],
            'setParams with a resource' => [static fn () => (new Task('demo', 'x'))->setParams($resource())->publish(), '/resource/i'],
        ];
    }

    /** @dataProvider invalidInput */
    public function testInvalidInputThrowsTaskException(callable $call, string $fragment): void
    {
        $e = self::thrown($call);
        $this->assertNotNull($e, 'no exception thrown');
        $this->assertInstanceOf(TaskException::class, $e, get_class($e) . ': ' . $e->getMessage());
        $this->assertMatchesRegularExpression($fragment, $e->getMessage(), 'the message should say what is wrong');
        $this->assertNothingLanded('after ' . (string) $this->dataName());
        $this->assertNormalPublishWorks((string) $this->dataName());
    }

    public function wrongTypes(): array
    {
        return [
            'new Event([])' => [static fn () => new Event([])],
            'new Event(new stdClass)' => [static fn () => new Event(new \stdClass())],
            'new Event()' => [static fn () => new Event()],
            'setOptions("str")' => [static fn () => (new Event('e'))->setOptions('str')],
            'setOptions(1)' => [static fn () => (new Event('e'))->setOptions(1)],
            'Task::create([], "x")' => [static fn () => Task::create([], 'x')],
            'Task::create("demo", [])' => [static fn () => Task::create('demo', [])],
            'Task::create delay "soon"' => [static fn () => Task::create('demo', 'x', [], 'soon')],
            'Task::create delay []' => [static fn () => Task::create('demo', 'x', [], [])],
            'new Task delay "abc"' => [static fn () => new Task('demo', 'x', 'abc')],
            'new Task("demo")' => [static fn () => new Task('demo')],
        ];
    }

    /** @dataProvider wrongTypes */
    public function testWrongArgumentTypesThrowTypeError(callable $call): void
    {
        $e = self::thrown($call);
        $this->assertNotNull($e, 'no exception thrown');
        $this->assertInstanceOf(\TypeError::class, $e, get_class($e) . ': ' . $e->getMessage());
        $this->assertNothingLanded('after ' . (string) $this->dataName());
        $this->assertNormalPublishWorks((string) $this->dataName());
    }

    /** In PHP's default mode a declared `int`/`string` parameter accepts numeric strings and ints, as the original (untyped) library did. */
    public function testScalarArgumentsAreCoercedLikeAnyPhpFunction(): void
    {
        $task = new Task('demo', 'x', '3');
        $this->assertSame(3, $task->getDelay());
        $event = new Event(123);
        $this->assertSame('123', $event->getEvent());
        $id = Task::create('demo', 'coerced', ['k' => 1], '0');
        $body = self::body($this->expectMessage(static::q('task.demo'))[0]);
        $this->assertSame($id, $body['id']);
        $this->assertSame(0, $body['delay']);
    }

    public function recursiveInput(): array
    {
        return [
            'array containing a reference to itself' => ['$a = ["x" => 1]; $a["self"] = &$a; $params = $a;'],
            'JsonSerializable returning itself' => ['$params = ["o" => new class () implements \JsonSerializable { public function jsonSerialize(): mixed { return ["me" => $this]; } }];'],
        ];
    }

    /**
     * Recursive params run in a child: a crash (stack overflow) must show as a failure, not kill the test run.
     * @dataProvider recursiveInput
     */
    public function testRecursiveParamsThrowTaskException(string $build): void
    {
        $code = <<<PHP
<?php
use Asynclib\Ebats\Task;
use Asynclib\Ebats\Event;
\$out = [];
$build
foreach (['task' => fn () => Task::create('demo', 'x', \$params), 'event' => fn () => (new Event('e'))->setOptions(\$params)->publish()] as \$kind => \$call) {
    try {
        \$call();
        \$out[\$kind] = ['class' => null];
    } catch (\\Throwable \$e) {
        \$out[\$kind] = ['class' => get_class(\$e), 'message' => \$e->getMessage()];
    }
}
\$out['after'] = Task::create('demo', 'afterRecursion');
echo json_encode(\$out), "\\n";
PHP;
        $result = Process::runPhp($code, static::childEnv(), 60);
        $this->assertSame(0, $result->exitCode(), $result->describe());
        $out = $result->json();
        foreach (['task', 'event'] as $kind) {
            $this->assertSame(TaskException::class, $out[$kind]['class'], "$kind: " . json_encode($out[$kind]));
            $this->assertMatchesRegularExpression('/recurs|circular|cycl|depth|nest|reference/i', $out[$kind]['message']);
        }
        $this->assertQueueEmpty(static::q('events'));
        $this->assertSame($out['after'], self::body($this->expectMessage(static::q('task.demo'))[0])['id']);
        $this->assertQueueEmpty(static::q('task.demo'), 'only the task published after the errors may land');
    }

    /** Very deep (not recursive) params: published or refused with TaskException, never a crash. */
    public function testDeeplyNestedParamsDoNotCrash(): void
    {
        $code = <<<'PHP'
<?php
$params = 'leaf';
for ($i = 0; $i < 20000; $i++) { $params = ['n' => $params]; }
try {
    $id = \Asynclib\Ebats\Task::create('demo', 'deep', $params);
    $out = ['class' => null, 'id' => $id];
} catch (\Throwable $e) {
    $out = ['class' => get_class($e), 'message' => $e->getMessage()];
}
$out['after'] = \Asynclib\Ebats\Task::create('demo', 'afterDeep');
echo json_encode($out), "\n";
PHP;
        $result = Process::runPhp($code, static::childEnv(), 60);
        $this->assertSame(0, $result->exitCode(), $result->describe());
        $out = $result->json();
        $expected = 1;
        if ($out['class'] === null) {
            $expected = 2;
        } else {
            $this->assertSame(TaskException::class, $out['class'], json_encode($out));
        }
        $messages = $this->broker->waitMessages(static::q('task.demo'), $expected, 5);
        $this->assertCount($expected, $messages);
        $this->assertSame($out['after'], self::body(end($messages)[0])['id']);
    }

    // ---- broker and credentials: run in a child process whose environment differs ----

    private function agent(array $env): Process
    {
        $agent = Process::php(__DIR__ . '/../fixtures/agent.php', [], static::childEnv($env));
        $this->assertNotNull($agent->readLine(15), "agent did not start\n" . $agent->describe());
        return $agent;
    }

    /** The failing publishes (event and task), then the same process pointed at the right broker publishes fine. */
    private function assertConnectionFailure(Process $agent, string $fragment, float $boundMs, ?string $secret = null): void
    {
        foreach ([['op' => 'event', 'name' => 'bad_broker'], ['op' => 'task', 'topic' => 'demo', 'name' => 'badBroker']] as $cmd) {
            $answer = $agent->request($cmd, 30);
            $this->assertFalse($answer['ok'], $cmd['op'] . ' publish must fail: ' . json_encode($answer));
            $this->assertSame(ConnectionedException::class, $answer['class'], json_encode($answer));
            $this->assertMatchesRegularExpression($fragment, $answer['message'], 'the message should say what is wrong');
            $this->assertLessThan($boundMs, $answer['ms'], 'took too long: ' . json_encode($answer));
            if ($secret !== null) {
                $this->assertStringNotContainsString($secret, $answer['message'], 'the password must not appear in messages');
            }
        }
        $this->assertNothingLanded('after a connection failure');

        $agent->request(['op' => 'setenv', 'name' => 'EBATS_AMQP_URL', 'value' => TestEnv::amqpUrl()]);
        $ok = $agent->request(['op' => 'event', 'name' => 'good_broker'], 30);
        $this->assertTrue($ok['ok'], 'after fixing EBATS_AMQP_URL the same process must connect: ' . json_encode($ok));
        $this->assertSame($ok['id'], self::body($this->expectMessage(static::q('events'))[0])['id']);
        $ok = $agent->request(['op' => 'task', 'topic' => 'demo', 'name' => 'goodBroker'], 30);
        $this->assertTrue($ok['ok'], json_encode($ok));
        $this->assertSame($ok['id'], self::body($this->expectMessage(static::q('task.demo'))[0])['id']);
    }

    public function testClosedPort(): void
    {
        $agent = $this->agent(['EBATS_AMQP_URL' => TestEnv::amqpUrl(null, 1)]);
        $this->assertConnectionFailure($agent, '/127\.0\.0\.1|refused|connect/i', 10000);
    }

    public function testWrongPassword(): void
    {
        $secret = 'wrong_pw_' . bin2hex(random_bytes(3));
        $agent = $this->agent(['EBATS_AMQP_URL' => TestEnv::amqpUrl(null, null, null, $secret)]);
        $this->assertConnectionFailure($agent, '/ACCESS_REFUSED|auth|login|password|credential|refused|denied/i', 10000, $secret);
    }

    public function testUnknownVhost(): void
    {
        $agent = $this->agent(['EBATS_AMQP_URL' => TestEnv::amqpUrl('ebats_no_such_vhost_' . bin2hex(random_bytes(3)))]);
        $this->assertConnectionFailure($agent, '/vhost|NOT_ALLOWED|ebats_no_such_vhost/i', 10000);
    }

    /** A peer that accepts TCP but never speaks AMQP: the connect timeout bounds the wait. */
    public function testSilentServerTimesOut(): void
    {
        $silent = new BrokerProxy('silent');
        $port = $silent->start();
        $agent = $this->agent(['EBATS_AMQP_URL' => TestEnv::amqpUrl(null, $port), 'EBATS_CONNECT_TIMEOUT' => '2']);
        $this->assertConnectionFailure($agent, '/time|connect/i', 10000);
    }
}
