<?php

declare(strict_types=1);

namespace Ebats\Tests\Php;

use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\ProcTestCase;

/**
 * A real 3-node RabbitMQ cluster (scripts/cluster, nodes on 5681-5683 beside the usual broker), started once
 * for the class and removed after it: quorum queues, a URL list with a dead first entry, a type mismatch,
 * and a worker and its producers going on when the node they are connected to is killed (kill -9).
 *
 * @group cluster
 */
final class ClusterTest extends ProcTestCase
{
    private const SCRIPT = __DIR__ . '/../../scripts/cluster';
    /** Nothing listens here: a dead first entry. */
    private const DEAD = 'amqp://guest:guest@127.0.0.1:5689/%2f';

    private static string $urls = '';

    public static function setUpBeforeClass(): void
    {
        parent::setUpBeforeClass();
        self::cluster(['stop']);
        $start = self::cluster(['start'], 180.0);
        self::$urls = trim(self::cluster(['urls'])->stdout());
        if ($start->exitCode() !== 0 || substr_count(self::$urls, ',') !== 2) {
            self::fail("the cluster did not start:\n" . $start->describe());
        }
    }

    public static function tearDownAfterClass(): void
    {
        self::cluster(['stop']);
        parent::tearDownAfterClass();
    }

    private static function cluster(array $args, float $timeout = 120.0): Process
    {
        return Process::run(array_merge(['bash', self::SCRIPT], $args), [], $timeout);
    }

    private function env(array $more = []): array
    {
        return array_merge(
            ['EBATS_AMQP_URL' => self::$urls, 'EBATS_QUEUE_TYPE' => 'quorum', 'EBATS_CONNECT_TIMEOUT' => '2'],
            $more
        );
    }

    /**
     * Publishes $n tasks demo/ping tagged $tag in one process; returns [exit code, ids, stderr]. A publish
     * that throws (a queue whose leader node was just killed refuses messages until a new leader is elected)
     * is published again, within 30 s: publish() either returned or threw, nothing in between.
     */
    private function publish(int $n, string $tag, array $env = []): array
    {
        $code = <<<'PHP'
            <?php
            $ids = [];
            $deadline = microtime(true) + 30;
            for ($i = 0; $i < (int) $argv[1]; $i++) {
                for (;;) {
                    try {
                        $ids[] = \Asynclib\Ebats\Task::create('demo', 'ping', ['tag' => $argv[2], 'n' => $i]);
                        break;
                    } catch (\Asynclib\Exception\ConnectionedException $e) {
                        if (microtime(true) > $deadline) {
                            throw $e;
                        }
                        fwrite(STDERR, 'publish threw, again: ' . $e->getMessage() . "\n");
                        usleep(200000);
                    }
                }
            }
            echo json_encode($ids);
            PHP;
        $p = Process::runPhp($code, static::childEnv($this->env($env)), 60.0, args: [(string) $n, $tag]);
        return [$p->exitCode(), json_decode($p->stdout(), true) ?? [], $p->stderr()];
    }

    /** name => [type, consumers] of the cluster's queues under this class's prefix. */
    private function clusterQueues(): array
    {
        $p = self::cluster(['ctl', '1', '-q', 'list_queues', '--no-table-headers', 'name', 'type', 'consumers']);
        $out = [];
        foreach (preg_split('/\n/', trim($p->stdout())) as $line) {
            $f = preg_split('/\s+/', trim($line));
            if (count($f) === 3 && str_starts_with($f[0], static::prefix() . '.')) {
                $out[$f[0]] = [$f[1], (int) $f[2]];
            }
        }
        return $out;
    }

    private function readyQueue(): string
    {
        return static::prefix() . '.task.demo';
    }

    public function testQuorumQueuesOnTheClusterThroughAListWhoseFirstEntryIsDead(): void
    {
        [$code, $ids, $err] = $this->publish(1, 'first', ['EBATS_AMQP_URL' => self::DEAD . ',' . self::$urls]);
        $this->assertSame(0, $code, $err);
        $this->assertCount(1, $ids);
        $this->assertStringContainsString('cannot connect to the broker at amqp://guest:***@127.0.0.1:5689/%2f', $err);
        $this->assertStringContainsString('connected to broker node amqp://guest:***@127.0.0.1:5681/%2f (2 of 4)', $err);
        $this->assertStringNotContainsString(':guest@', $err, 'no password in the log');
        $queues = $this->clusterQueues();
        $this->assertSame('quorum', $queues[$this->readyQueue()][0] ?? null, json_encode($queues));
    }

    public function testAQueueOfTheOtherTypeIsAClearErrorNamingIt(): void
    {
        [$code] = $this->publish(1, 'q');
        $this->assertSame(0, $code);
        [$code, $ids, $err] = $this->publish(1, 'c', ['EBATS_QUEUE_TYPE' => 'classic']);
        $this->assertNotSame(0, $code);
        $this->assertSame([], $ids);
        $this->assertStringContainsString(
            "queue '{$this->readyQueue()}' exists as a quorum queue but ebats.queue_type is classic",
            $err
        );
        $this->assertStringContainsString('to migrate: stop', $err);
    }

    public function testAWorkerAndItsProducersGoOnWhenTheirNodeIsKilled(): void
    {
        $worker = $this->startWorker(['env' => $this->env(), 'debug' => false], false);
        $this->waitFor(fn () => ($this->clusterQueues()[$this->readyQueue()][1] ?? 0) >= 1, 30, 'the worker consuming');
        [$code, $before, $err] = $this->publish(5, 'before');
        $this->assertSame(0, $code, $err);
        $this->waitFor(fn () => count($this->runs('before')) >= 5, 30, '5 tasks before the kill');

        // Both connected to node 1 (the list in order); kill it.
        $this->assertSame(0, self::cluster(['kill', '1'])->exitCode());
        [$code, $after, $err] = $this->publish(5, 'after');
        $this->assertSame(0, $code, $err);
        $this->assertStringContainsString('connected to broker node amqp://guest:***@127.0.0.1:5682/%2f', $err);
        $this->waitFor(fn () => count($this->runs('after')) >= 5, 60, '5 tasks published after the kill');

        $ran = array_map(fn (array $r): int => $r['params']['n'], $this->runs('after'));
        sort($ran);
        $this->assertSame([0, 1, 2, 3, 4], array_values(array_unique($ran)), 'every task ran');
        $this->assertCount(5, $before);
        $this->assertFalse($worker->hasExited(), 'the worker recovered by itself');
        $this->assertSame(0, self::cluster(['restart', '1'], 120.0)->exitCode());
    }
}
