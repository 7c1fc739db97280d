<?php

declare(strict_types=1);

namespace Ebats\Tests\Php;

use Ebats\Tests\Lib\LedgerTestCase;
use Ebats\Tests\Lib\Process;

/**
 * A real 3-node RabbitMQ cluster (scripts/cluster, nodes on 5681-5683 beside the usual broker), started once
 * for the class and removed after it: quorum queues (delay levels included), a URL list with a dead first
 * entry, a type mismatch, the poison count across two worker parents, and the ledger of numbered events
 * (producers -> Schedulers -> Worker) while the node every process is connected to is killed (kill -9) and
 * brought back, with a Consumer and the cron leadership (one leader, each tick fired once) going on too.
 *
 * @group cluster
 */
final class ClusterTest extends LedgerTestCase
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

    /** Publishes $n tasks demo/ping tagged $tag in one process; returns [exit code, ids, stderr]. */
    private function publish(int $n, string $tag, array $env = []): array
    {
        $code = <<<'PHP'
            <?php
            $ids = [];
            for ($i = 0; $i < (int) $argv[1]; $i++) {
                $ids[] = \Asynclib\Ebats\Task::create('demo', 'ping', ['tag' => $argv[2], 'n' => $i]);
            }
            echo json_encode($ids);
            PHP;
        $p = Process::runPhp($code, static::childEnv($this->env($env)), 60.0, args: [(string) $n, $tag]);
        return [$p->exitCode(), json_decode($p->stdout(), true) ?? [], $p->stderr()];
    }

    /** Node 1, or node 2 while node 1 is down: where rabbitmqctl asks. */
    private static int $ask = 1;

    /** name => [type, consumers, messages] of the cluster's queues under this class's prefix. */
    private function clusterQueues(): array
    {
        $p = self::cluster(['ctl', (string) self::$ask, '-q', 'list_queues', '--no-table-headers', 'name', 'type', 'consumers', 'messages']);
        $out = [];
        foreach (preg_split('/\n/', trim($p->stdout())) as $line) {
            $f = preg_split('/\s+/', trim($line));
            if (count($f) === 4 && str_starts_with($f[0], static::prefix() . '.')) {
                $out[$f[0]] = [$f[1], (int) $f[2], (int) $f[3]];
            }
        }
        return $out;
    }

    private function waitClusterConsumers(string $queue, int $n, array $procs): void
    {
        $this->waitFor(function () use ($queue, $n, $procs): bool {
            foreach ($procs as $p) {
                if ($p->hasExited()) {
                    $this->fail("{$p->name} exited\n" . $p->describe());
                }
            }
            return ($this->clusterQueues()[$queue][1] ?? 0) >= $n;
        }, 30, "$n consumer(s) on $queue", 0.3);
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
        [$code, , $err] = $this->publishDelayed();
        $this->assertSame(0, $code, $err);
        $queues = $this->clusterQueues();
        $this->assertSame('quorum', $queues[$this->readyQueue()][0] ?? null, json_encode($queues));
        $levels = array_filter($queues, static fn (string $q): bool => str_contains($q, '.delay.L'), ARRAY_FILTER_USE_KEY);
        $this->assertCount(28, $levels, json_encode($queues));
        $this->assertSame(['quorum'], array_values(array_unique(array_column($levels, 0))), 'every delay level is quorum');
        $this->assertSame('quorum', $queues[static::q('unroutable')][0] ?? null);
        $this->waitFor(fn () => ($this->clusterQueues()[$this->readyQueue()][2] ?? 0) >= 2, 20, 'the delayed task reaching the ready queue', 0.3);
    }

    /** Publishes one task demo/ping delayed 3 s (levels 1 then 0). */
    private function publishDelayed(): array
    {
        $code = '<?php echo \\Asynclib\\Ebats\\Task::create("demo", "ping", ["tag" => "delayed"], 3);';
        $p = Process::runPhp($code, static::childEnv($this->env()), 30.0);
        return [$p->exitCode(), $p->stdout(), $p->stderr()];
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

    public function testAPoisonTaskIsCountedAcrossTwoWorkerParents(): void
    {
        $a = $this->startWorker(['env' => $this->env(), 'debug' => false, 'name' => 'worker-a'], false);
        $b = $this->startWorker(['env' => $this->env(), 'debug' => false, 'name' => 'worker-b'], false);
        $this->waitClusterConsumers($this->readyQueue(), 2, [$a, $b]);
        $code = '<?php echo \Asynclib\Ebats\Task::create("demo", "dieAlways", ["tag" => "poison"]);';
        $p = Process::runPhp($code, static::childEnv($this->env()), 30.0);
        $this->assertSame(0, $p->exitCode(), $p->stderr());
        $failed = static::q('failed.demo');
        $this->waitFor(fn () => ($this->clusterQueues()[$failed][2] ?? 0) >= 1, 60, 'the poison task in the failed store', 0.3);
        $runs = $this->runs('poison');
        // x-delivery-count is the broker's, so the count holds whichever parent's child ran it: 5 deliveries
        // died, the 6th went to the failed store. Counted per parent, up to 2 x 5 would run.
        $this->assertCount(5, $runs, json_encode($runs));
        $parents = array_unique(array_column($runs, 'ppid'));
        $this->assertCount(2, $parents, 'both worker parents ran it: ' . json_encode($runs));
        $this->assertFalse($a->hasExited() || $b->hasExited(), 'both workers go on');
    }

    /**
     * The ledger (tests/lib/Ledger.php) while node 1, where every process is connected, is killed (kill -9)
     * and brought back: a producer publishes an event every 50 ms through EventManager, three alike
     * Schedulers turn each into a task and also lead a schedule ticking every second (its ticks run as tasks
     * of a second worker), a 2-process worker runs the numbers, and a Consumer goes on beside them. Every
     * number whose publish() returned must run; the path must work again soon after the kill (node 1 still
     * down) and after its return; the Consumer takes a message published after the kill; ticks go on and
     * none fires twice; no process exits; publish() throws only in the moment of the kill.
     */
    public function testNothingConfirmedIsLostWhileANodeIsKilledAndBroughtBack(): void
    {
        $exchange = static::prefix() . '_x';
        $consumerQueue = static::prefix() . '.consumed';
        $every = ['* * * * * *', 'cluster.tick', ['tag' => 'tick'], ['name' => 'every', 'timezone' => 'UTC', 'catchup' => 10]];
        $ticker = $this->startWorker(['env' => $this->env(), 'debug' => false], false);
        $consumer = $this->startFixture('consumer', 'consumer.php', $this->env([
            'EBATS_T_EXCHANGE' => $exchange, 'EBATS_T_QUEUE' => $consumerQueue, 'EBATS_T_KEYS' => json_encode(['#']),
        ]));
        $this->waitClusterConsumers($this->readyQueue(), 1, [$ticker, $consumer]);
        $this->waitClusterConsumers($consumerQueue, 1, [$ticker, $consumer]);
        $this->expectedChildren = 2;
        $ledger = $this->ledger([
            'urls' => ['producer' => self::$urls, 'scheduler' => self::$urls, 'worker' => self::$urls],
            'producers' => 1,
            'rate' => 20,
            'schedulers' => 3,
            'worker_procs' => 2,
            'events' => [['ledger.n', 'record', 0]],
            'register' => [['cluster.tick', 'ping', 'demo', 0]],
            'cron' => [$every],
            'env' => ['EBATS_QUEUE_TYPE' => 'quorum', 'EBATS_HEARTBEAT' => '2'],
        ]);
        $ledger->start(60.0);
        $this->waitFor(fn () => count($this->runs('tick')) >= 2, 30, 'cron ticks running as tasks');
        $this->waitFor(fn () => $ledger->stats()['executed'] >= 20, 30, '20 numbers executed before the kill');

        // The first fault ends at the kill: its recovery is the path working again with node 1 down.
        $killedAt = microtime(true);
        $ledger->fault(fn () => $this->assertSame(0, self::cluster(['kill', '1'])->exitCode()));
        self::$ask = 2;
        $this->waitFor(function () use ($ledger): bool {
            $ledger->supervise();
            return is_finite($ledger->stats()['recoveries'][0]);
        }, 60, 'a number published after the kill executed');
        $p = Process::runPhp(
            '<?php (new \Asynclib\Core\Publish())->setExchange($argv[1], "topic")->send(["tag" => "after-kill"], "k");',
            static::childEnv($this->env()),
            30.0,
            args: [$exchange]
        );
        $this->assertSame(0, $p->exitCode(), $p->stderr());
        $this->waitFor(
            fn () => array_filter($this->records('consumed'), static fn (array $r): bool => ($r['msg']['tag'] ?? null) === 'after-kill'),
            30,
            'the Consumer taking a message published after the kill'
        );
        $ticksAfterKill = fn (): array => array_filter($this->runs('tick'), static fn (array $r): bool => $r['t'] > $killedAt + 1);
        $this->waitFor(fn () => count($ticksAfterKill()) >= 3, 30, 'cron ticks after the kill');

        // The second ends when node 1 is back: its recovery is the path working after it rejoined.
        $ledger->fault(fn () => $this->assertSame(0, self::cluster(['restart', '1'], 120.0)->exitCode()));
        self::$ask = 1;
        $ledger->run(3.0);
        $stats = $this->settle('cluster node killed (kill -9) and brought back', 90.0);
        $this->assertGreaterThan(100, $stats['confirmed']);
        $this->assertLessThan(0.1 * $stats['published'], $stats['threw'], 'publish() threw only in the moment of the kill');
        $this->assertSame(0, $ledger->restarts(), "a process exited\n" . $ledger->describe());
        $schedulers = $ledger->schedulers();
        $this->assertCount(3, $schedulers, 'every Scheduler recovered by itself');
        foreach ([$ticker, $consumer] as $proc) {
            $this->assertFalse($proc->hasExited(), "{$proc->name} recovered by itself");
        }
        foreach ($schedulers as $c) {
            $c->stop(5.0);
        }
        $ticks = [];
        foreach ($schedulers as $c) {
            preg_match_all("/cron: fired 'every' (?:late: )?tick (\S+)/", $c->stderr(), $m);
            $ticks = array_merge($ticks, $m[1]);
        }
        $this->assertNotSame([], $ticks, 'the Schedulers log the ticks they fire');
        $twice = array_keys(array_filter(array_count_values($ticks), static fn (int $k): bool => $k > 1));
        $this->assertSame([], $twice, 'ticks fired more than once');
    }
}
