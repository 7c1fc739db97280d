<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\Task;
use Ebats\Tests\Lib\EbatsTestCase;
use Ebats\Tests\Lib\TestEnv;

/** Issue item 2: Task::create() and new Task()->publish() put the documented task message in <prefix>.task.<topic>. */
final class TaskPublishTest extends EbatsTestCase
{
    private function assertTaskMessage(array $message, string $id, string $topic, string $name, mixed $params, float $before, float $after): array
    {
        [$raw, $props] = $message;
        $this->assertSame('application/json', $props['content_type']);
        $this->assertSame(2, $props['delivery_mode'], 'tasks must be persistent (delivery_mode 2)');
        $this->assertSame($id, $props['message_id']);
        $this->assertSame('ebats.task', $props['type']);

        $body = self::body($raw);
        $this->assertSame(1, $body['v'] ?? null, 'v');
        $this->assertSame($id, $body['id'] ?? null, 'id');
        $this->assertSame($topic, $body['topic'] ?? null, 'topic');
        $this->assertSame($name, $body['name'] ?? null, 'name');
        $this->assertArrayHasKey('params', $body);
        $this->assertSame($params, $body['params'], 'params');
        $this->assertSame(0, $body['delay'] ?? null, 'delay');
        $this->assertSame(1, $body['attempt'] ?? null, 'attempt');
        $this->assertArrayHasKey('created_at', $body);
        $this->assertTrue(is_float($body['created_at']) || is_int($body['created_at']), 'created_at is a number');
        $this->assertGreaterThanOrEqual($before - 1, $body['created_at']);
        $this->assertLessThanOrEqual($after + 1, $body['created_at']);
        $this->assertArrayHasKey('event', $body, 'event must be present (null for a direct task)');
        $this->assertNull($body['event']);
        $this->assertArrayHasKey('event_id', $body, 'event_id must be present (null for a direct task)');
        $this->assertNull($body['event_id']);
        return $body;
    }

    public function testCreate(): void
    {
        $before = microtime(true);
        $id = Task::create('demo', 'closeOrder', ['a' => 1]);
        $after = microtime(true);
        self::assertId($id, 'Task::create() result');

        $message = $this->broker->get(static::q('task.demo'));
        $this->assertNotNull($message, 'no message in ' . static::q('task.demo') . ' right after Task::create() returned');
        $this->assertTaskMessage($message, $id, 'demo', 'closeOrder', ['a' => 1], $before, $after);
        $this->assertSame('demo', $message[1]['routing_key'], 'routing key = topic');
        $this->assertSame(static::q('task.ready'), $message[1]['exchange']);
        $this->assertSame(0, $this->broker->count(static::q('task.demo')));
    }

    public function testNewTaskSetParamsPublish(): void
    {
        $task = new Task('demo', 'x', 0);
        $id = $task->getId();
        self::assertId($id, 'getId() before publish');
        $this->assertSame($task, $task->setParams([1, 2, 3]), 'setParams returns $this');
        $this->assertSame('x', $task->getName());
        $this->assertSame('demo', $task->getTopic());
        $this->assertSame([1, 2, 3], $task->getParams());
        $this->assertSame(0, $task->getDelay());
        $this->assertSame($id, $task->getId(), 'id is fixed at construction');

        $before = microtime(true);
        $published = $task->publish();
        $this->assertSame($id, $published, 'publish() returns the id getId() gave');
        $this->assertTaskMessage($this->expectMessage(static::q('task.demo')), $id, 'demo', 'x', [1, 2, 3], $before, microtime(true));
    }

    public function testGettersWithDefaults(): void
    {
        $task = new Task('demo', 'x');
        $this->assertSame(0, $task->getDelay());
        $this->assertSame('x', $task->getName());
        $this->assertSame('demo', $task->getTopic());
        $other = new Task('demo', 'x');
        $this->assertNotSame($task->getId(), $other->getId(), 'each task has its own id');
        self::assertId($other->getId());

        $delayed = new Task('demo', 'y', 7);
        $this->assertSame(7, $delayed->getDelay());
    }

    public function testCreateWithDefaultParams(): void
    {
        $before = microtime(true);
        $id = Task::create('demo', 'noParams');
        $message = $this->expectMessage(static::q('task.demo'));
        $this->assertTaskMessage($message, $id, 'demo', 'noParams', [], $before, microtime(true));
        $this->assertSame([], json_decode($message[0])->params, 'default params are the JSON list []');
    }

    /** params is mixed: any JSON value round-trips. */
    public function testScalarAndNestedParams(): void
    {
        $cases = ['plain string', 42, 1.25, true, null, ['list', 2, [3]], ['map' => ['k' => 'v'], 'n' => null]];
        foreach ($cases as $params) {
            $before = microtime(true);
            $id = Task::create('demo', 'mixed', $params);
            $this->assertTaskMessage($this->expectMessage(static::q('task.demo')), $id, 'demo', 'mixed', $params, $before, microtime(true));
        }
    }

    public function testEachTopicHasItsOwnQueue(): void
    {
        $a = Task::create('demo', 'a');
        $b = Task::create('other_topic-2', 'b');
        $this->assertSame(1, $this->broker->count(static::q('task.demo')));
        $this->assertSame(1, $this->broker->count(static::q('task.other_topic-2')));
        $this->assertSame($a, self::body($this->expectMessage(static::q('task.demo'))[0])['id']);
        $this->assertSame($b, self::body($this->expectMessage(static::q('task.other_topic-2'))[0])['id']);
    }

    public function testLongestTopicAndTaskName(): void
    {
        $topic = str_repeat('t', 128);
        $name = str_repeat('N', 128);
        $id = Task::create($topic, $name, ['ok' => 1]);
        [$raw] = $this->expectMessage(static::q('task.' . $topic));
        $body = self::body($raw);
        $this->assertSame($id, $body['id']);
        $this->assertSame($topic, $body['topic']);
        $this->assertSame($name, $body['name']);
    }

    public function testTopicQueueIsDurable(): void
    {
        Task::create('demo', 'x');
        $queues = TestEnv::rabbitmqctl(['list_queues', '-q', '--no-table-headers', '-p', TestEnv::vhost(), 'name', 'durable']);
        $this->assertMatchesRegularExpression('/^' . preg_quote(static::q('task.demo'), '/') . "\ttrue$/m", $queues);
    }
}
