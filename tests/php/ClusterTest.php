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
 * brought back, with a Consumer and the cron leadership (one leader, each tick fired once) going on too; a
 * group, a unique key and a pause through the kill of the unique key's node; a concurrency and a rate limit
 * through the kill of the rate counter's node.
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

    /** name => [type, consumers, messages] of the cluster's queues under this test's prefix. */
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
        $a = $this->startWorker(['env' => $this->env(), 'debug' => true, 'name' => 'worker-a'], false);
        $b = $this->startWorker(['env' => $this->env(), 'debug' => true, 'name' => 'worker-b'], false);
        $this->waitClusterConsumers($this->readyQueue(), 2, [$a, $b]);
        $failed = static::q('failed.demo');
        // Which consumer the broker gives a returned message to is its choice: a poison task may die in
        // one parent's children only (the other's child being restarted each time). Each poison task must
        // be counted 5 times; one of (at most) three must have run in both parents to show the count is
        // the broker's, not a parent's.
        $seen = [];
        for ($i = 1; $i <= 3 && count($seen) < 2; $i++) {
            $code = "<?php echo \\Asynclib\\Ebats\\Task::create('demo', 'dieAlways', ['tag' => 'poison$i']);";
            $p = Process::runPhp($code, static::childEnv($this->env()), 30.0);
            $this->assertSame(0, $p->exitCode(), $p->stderr());
            $this->waitFor(fn () => ($this->clusterQueues()[$failed][2] ?? 0) >= $i, 60, "poison task $i in the failed store", 0.3);
            $runs = $this->runs("poison$i");
            // x-delivery-count is the broker's, so the count holds whichever parent's child ran it: 5
            // deliveries died, the 6th went to the failed store. Counted per parent, up to 2 x 5 would run.
            // The 6th runs once more only where its parent never saw it die (the broker also counts tasks
            // returned unstarted): then the 5 deaths were all in the other parent.
            $why = json_encode($runs) . "\n" . $a->describe() . "\n" . $b->describe();
            $this->assertContains(count($runs), [5, 6], $why);
            if (count($runs) === 6) {
                $this->assertNotContains($runs[5]['ppid'], array_column(array_slice($runs, 0, 5), 'ppid'), $why);
            }
            $seen = array_unique(array_column($runs, 'ppid'));
        }
        $this->assertCount(2, $seen, 'both worker parents ran one of the poison tasks: ' . json_encode($seen));
        $this->assertFalse($a->hasExited() || $b->hasExited(), 'both workers go on');
    }

    /** Runs $code in a PHP process on the cluster; returns it. */
    private function onCluster(string $code, array $args = [], array $env = []): Process
    {
        return Process::runPhp($code, static::childEnv($this->env($env)), 60.0, args: $args);
    }

    /** The cluster's URLs with node $first first (a process connects to the first that answers). */
    private static function urlsFrom(int $first): string
    {
        $urls = explode(',', self::$urls);
        return implode(',', array_merge(array_slice($urls, $first - 1), array_slice($urls, 0, $first - 1)));
    }

    /** The node a test killed and has not brought back yet. */
    private static ?int $killed = null;

    /** The node (1 to 3) where the first queue whose name starts with $prefix lives (its leader or home). */
    private function nodeOf(string $prefix): int
    {
        $out = self::cluster(['ctl', (string) self::$ask, '-q', 'list_queues', '--no-table-headers', 'name', 'pid'])->stdout();
        $found = preg_match('/^' . preg_quote($prefix, '/') . '\S*\s+<ebats-c(\d)@/m', $out, $m);
        $this->assertSame(1, $found, "no queue $prefix* in\n$out");
        return (int) $m[1];
    }

    /** Kills node $n (kill -9); returns when: [before the kill, once it is dead]. */
    private function killNode(int $n): array
    {
        $before = microtime(true);
        self::$ask = $n === 1 ? 2 : 1;
        self::$killed = $n;
        $this->assertSame(0, self::cluster(['kill', (string) $n])->exitCode());
        return [$before, microtime(true)];
    }

    private function restartKilled(): void
    {
        $this->assertSame(0, self::cluster(['restart', (string) self::$killed], 120.0)->exitCode());
        self::$killed = null;
        self::$ask = 1;
    }

    /** A node killed by a test is brought back for the next one. */
    protected function tearDown(): void
    {
        try {
            parent::tearDown();
        } finally {
            if (self::$killed !== null) {
                $this->restartKilled();
            }
        }
    }

    /** @return list<array> the params of the runs of the handler $name */
    private function ran(string $name): array
    {
        return array_values(array_map(
            static fn (array $r) => $r['params'],
            array_filter($this->records('run'), static fn (array $r): bool => $r['name'] === $name)
        ));
    }

    /** Task::create of a unique task on topic uq (no worker) with key order:{o}: [exit code, id or '', stderr]. */
    private function createUnique(int $o): array
    {
        $p = $this->onCluster(
            '<?php echo \Asynclib\Ebats\Task::create("uq", "x", ["o" => (int) $argv[1]], 0, ["unique" => "order:{o}"]);',
            [(string) $o]
        );
        return [$p->exitCode(), trim($p->stdout()), $p->stderr()];
    }

    /**
     * The node holding a unique key's queue killed mid-group and brought back: a group made by hand (10 steps
     * of 500 ms and a failure, decided by one of two Schedulers) publishes its follow-up exactly once with the
     * counts the handlers recorded; the key taken before the kill refuses a duplicate during it (README: taking
     * a key whose node is down throws, never a second holder) and after it; a paused topic stays paused through
     * it and runs once resumed.
     */
    public function testAGroupAUniqueKeyAndAPauseHoldThroughANodeKill(): void
    {
        $regs = [['kill_done', 'count', 'demo', 0]];
        $schedulers = [];
        foreach (['scheduler-a', 'scheduler-b'] as $name) {
            $schedulers[] = $this->startFixture($name, 'scheduler.php', $this->env([
                'EBATS_T_REGISTER' => json_encode($regs), 'EBATS_T_THEN' => '[]', 'EBATS_DEBUG' => '1', 'EBATS_HEARTBEAT' => '2',
            ]));
        }
        $worker = $this->startWorker(['env' => $this->env(['EBATS_HEARTBEAT' => '2']), 'procs' => 2, 'debug' => false], false);
        $other = $this->startWorker(['env' => $this->env(['EBATS_HEARTBEAT' => '2']), 'topic' => 'other', 'debug' => false, 'name' => 'worker-other'], false);
        $this->waitClusterConsumers($this->readyQueue(), 2, [$worker, $other]);
        $this->waitClusterConsumers(static::prefix() . '.task.other', 1, [$worker, $other]);
        $this->waitFor(static function () use ($schedulers): bool {
            foreach ($schedulers as $s) {
                if (str_contains($s->stderr(), 'cron: took over the leadership')) {
                    return true;
                }
            }
            return false;
        }, 30, 'a Scheduler leads');

        // The pause, and a task of the paused topic waiting.
        $p = $this->onCluster('<?php var_export(\Asynclib\Ebats\Topics::pause("other")); echo \Asynclib\Ebats\Task::create("other", "x", ["tag" => "paused"]);');
        $this->assertSame(0, $p->exitCode(), $p->stderr());
        // A unique key held, and a duplicate refused with the holder's id.
        [$code, $holder, $err] = $this->createUnique(7);
        $this->assertSame(0, $code, $err);
        self::assertId($holder);
        $this->assertSame([0, $holder], array_slice($this->createUnique(7), 0, 2), 'a duplicate before the kill');

        $tasks = [];
        for ($i = 0; $i < 10; $i++) {
            $tasks[] = ['topic' => 'demo', 'name' => 'step', 'params' => ['tag' => "k$i", 'ms' => 500], 'id' => "kill-$i"];
        }
        $tasks[] = ['topic' => 'demo', 'name' => 'step', 'params' => ['tag' => 'kfail', 'fail' => true], 'id' => 'kill-fail'];
        $p = $this->onCluster(
            '<?php echo \Asynclib\Ebats\Group::create(json_decode($argv[1], true), ["finally" => "kill_done"], ["order" => "K1"]);',
            [json_encode($tasks)]
        );
        $this->assertSame(0, $p->exitCode(), $p->stderr());
        $group = trim($p->stdout());
        $ended = fn (): array => array_values(array_unique(array_column(array_filter(
            $this->records('step_end'),
            static fn (array $r): bool => str_starts_with($r['id'], 'kill-')
        ), 'id')));
        $this->waitFor(fn () => count($ended()) >= 2 ?: null, 30, 'the group under way');
        $this->assertLessThan(10, count($ended()), 'the group is not done before the kill');

        // The node of the key's queue goes (README: taking a key whose node is down throws, never a second holder).
        $node = $this->nodeOf(static::prefix() . '.unique.uq.');
        $this->killNode($node);
        [$code, $id, $err] = $this->createUnique(7);
        $this->assertNotSame(0, $code, "a duplicate while the key's node is down: id '$id' (holder $holder)");
        $this->assertStringContainsString('ConnectionedException', $err);

        $done = $this->waitFor(fn () => $this->ran('count')[0] ?? null, 90, 'the follow-up after the kill');
        $g = $done['_group'];
        $this->assertSame('K1', $done['order']);
        $this->assertSame([$group, 11, 10, 1, 0], [$g['id'], $g['total'], $g['succeeded'], $g['failed'], $g['cancelled']]);
        $this->assertCount(10, $ended(), 'every step the handlers ended, each counted once');
        $this->assertSame(['kill-fail'], $g['failed_ids']);
        $this->assertSame([], $this->ran('x'), "a task of the paused topic ran while node $node was down");

        $this->restartKilled();
        $this->assertStays(fn () => count($this->ran('count')) > 1 ? $this->ran('count') : null, 3.0, 'the follow-up came twice');
        $this->assertSame([0, $holder], array_slice($this->createUnique(7), 0, 2), 'a duplicate after the node came back');
        $this->assertSame(1, $this->clusterQueues()[static::prefix() . '.task.uq'][2] ?? null, 'one task of the key queued');
        $p = $this->onCluster('<?php echo json_encode(\Asynclib\Ebats\Topics::list());');
        $this->assertSame('["other"]', $p->stdout(), 'the pause is still there: ' . $p->stderr());
        $this->assertSame([], $this->ran('x'), 'a task of the paused topic ran');
        $this->assertSame(0, $this->onCluster('<?php \Asynclib\Ebats\Topics::resume("other");')->exitCode());
        $this->waitFor(fn () => $this->ran('x') ?: null, 30, 'the task of the topic once resumed');
        $this->assertFalse($worker->hasExited() || $other->hasExited(), 'the workers went on');
    }

    /**
     * The runs of topic "limited" the handlers recorded ([key, pid, ppid, start, end]); a run whose process
     * never wrote its end ends at INF.
     */
    private function limitedRuns(): array
    {
        $open = [];
        $out = [];
        foreach ($this->records() as $r) {
            if ($r['kind'] === 'lim_start') {
                $open[$r['pid']] = count($out);
                $out[] = ['key' => $r['key'], 'tag' => $r['tag'], 'pid' => $r['pid'], 'ppid' => $r['ppid'], 'start' => $r['t'], 'end' => INF];
            } elseif ($r['kind'] === 'lim_end' && isset($open[$r['pid']])) {
                $out[$open[$r['pid']]]['end'] = $r['t'];
                unset($open[$r['pid']]);
            }
        }
        return $out;
    }

    /** Pairs of $runs (of one key) that ran at once. */
    private static function overlaps(array $runs): array
    {
        $pairs = [];
        foreach ($runs as $i => $a) {
            foreach (array_slice($runs, $i + 1) as $b) {
                if ($a['start'] < $b['end'] && $b['start'] < $a['end']) {
                    $pairs[] = [$a, $b];
                }
            }
        }
        return $pairs;
    }

    /**
     * Limits through a node kill: two workers of 2 children each (one starting at node 1 of the list, one at
     * node 2, so their connections spread over the nodes), a concurrency of 1 per key and a rate of 10/s for
     * the topic; the node holding the rate's counter is killed mid-way (brought back by tearDown). Checked from
     * the times the handlers write: no two runs of a key at once, except with a run under way at the kill
     * (README: a permit lives on the node of its connection and is freed with it; the task comes back to
     * others while its handler may still run); never more than 10 starts in any second, except in a second
     * that holds the kill, where the counter lost with its node lets at most twice the limit (README).
     */
    public function testConcurrencyAndRateLimitsHoldThroughANodeKill(): void
    {
        $limits = [['concurrency' => 1, 'key' => 'c:{c}'], ['rate' => '10/s']];
        $start = fn (int $node, string $name): Process => $this->startWorker([
            'topic' => 'limited', 'procs' => 2, 'name' => $name, 'debug' => false, 'limits' => $limits,
            'env' => $this->env(['EBATS_AMQP_URL' => self::urlsFrom($node), 'EBATS_HEARTBEAT' => '2']),
        ], false);
        $queue = static::prefix() . '.task.limited';
        $workers = ['w1' => $start(1, 'w1'), 'w2' => $start(2, 'w2')];
        $this->waitClusterConsumers($queue, 4, $workers);
        $tasks = [];
        for ($i = 0; $i < 15; $i++) {
            foreach (range('a', 'h') as $key) {
                $tasks[] = [$key, "$key$i"];
            }
        }
        $p = $this->onCluster(
            '<?php foreach (json_decode($argv[1], true) as [$c, $tag]) { \Asynclib\Ebats\Task::create("limited", "work", ["c" => $c, "tag" => $tag, "ms" => 150]); }',
            [json_encode($tasks)]
        );
        $this->assertSame(0, $p->exitCode(), $p->stderr());
        $this->waitFor(fn () => count($this->limitedRuns()) >= 40 ?: null, 30, '40 tasks run before the kill');
        // The node of the rate's counter goes, with the permits and connections it held.
        [$killFrom, $killTo] = $this->killNode($this->nodeOf(static::prefix() . '.rate.limited.'));
        $tags = fn (): array => array_unique(array_column(array_filter($this->limitedRuns(), static fn (array $r): bool => is_finite($r['end'])), 'tag'));
        $this->waitFor(fn () => count($tags()) >= count($tasks) ?: null, 90, 'every task ran to its end');
        $runs = $this->limitedRuns();

        $cut = static fn (array $r): bool => $r['start'] < $killTo && $r['end'] > $killFrom;
        $byKey = [];
        foreach ($runs as $r) {
            $byKey[$r['key']][] = $r;
        }
        $excused = 0;
        foreach ($byKey as $key => $of) {
            foreach (self::overlaps($of) as [$a, $b]) {
                if ($cut($a) || $cut($b)) {
                    $excused++;
                    continue;
                }
                $this->fail(sprintf(
                    "two tasks of key %s ran at once (the kill from %.3f to %.3f): %s",
                    $key,
                    $killFrom,
                    $killTo,
                    json_encode([$a, $b], JSON_PRETTY_PRINT)
                ));
            }
        }
        $cutRuns = count(array_filter($runs, $cut));
        fwrite(STDERR, "ClusterTest: runs under way at the kill: $cutRuns; runs of a key at once with one of them: $excused\n");

        $starts = array_column($runs, 'start');
        sort($starts);
        $most = 0;
        $mostAcross = 0;
        $over = [];
        foreach ($starts as $t) {
            // The window (t - 1 s, t]: does it hold (a moment of) the kill?
            $in = array_values(array_filter($starts, static fn (float $s): bool => $s > $t - 1.0 && $s <= $t));
            if ($t - 1.0 < $killTo && $killFrom <= $t) {
                $mostAcross = max($mostAcross, count($in));
            } else {
                $most = max($most, count($in));
                if (count($in) > 10) {
                    $over[] = array_map(static fn (float $s): string => sprintf('%+.3f', $s - $killFrom), $in);
                }
            }
        }
        fwrite(STDERR, "ClusterTest: most starts in a second: $most, in a second holding the kill: $mostAcross\n");
        $this->assertLessThanOrEqual(10, $most, sprintf(
            "starts in a second away from the kill (kill at +0 to %+.3f s; starts of each window over the limit, from the kill):\n%s",
            $killTo - $killFrom,
            json_encode($over)
        ));
        $this->assertLessThanOrEqual(20, $mostAcross, 'starts in a second holding the kill (a lost counter: twice the limit at most)');
        $this->assertSame(0, $this->clusterQueues()[static::prefix() . '.failed.limited'][2] ?? 0, 'nothing in the failed store');
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
