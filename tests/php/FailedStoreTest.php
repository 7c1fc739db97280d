<?php

declare(strict_types=1);

namespace Ebats\Tests;


use Asynclib\Ebats\FailedStore;
use Asynclib\Ebats\Task;
use Asynclib\Ebats\Worker;
use Asynclib\Exception\TaskException;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\ProcTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * The failed store: tasks that failed for good are listed with their error, can be replayed (by id or all)
 * and purged, from PHP (FailedStore) and from the command line (php/bin/ebats).
 */
final class FailedStoreTest extends ProcTestCase
{
    /** Creates $n flaky tasks (failing until their flag file exists) and waits for all to be in the store. */
    private function failFlaky(array $tags): array
    {
        $ids = [];
        foreach ($tags as $tag) {
            $ids[$tag] = Task::create('demo', 'flaky', ['tag' => $tag, 'flag' => $this->flag($tag)]);
        }
        foreach ($ids as $tag => $id) {
            [$cb] = $this->waitCallbacks($id, 1, 15, "first run of $tag");
            $this->assertSame(Worker::STATE_FAIL, $cb['status']);
            $this->assertSame("flaky failure $tag", $cb['message']);
        }
        $this->waitFor(fn () => count(FailedStore::list('demo')) >= count($tags) ? true : null, 10, count($tags) . ' tasks in the failed store');
        return $ids;
    }

    private function flag(string $tag): string
    {
        return "{$this->tmp}/flag-$tag";
    }

    /** @return array<string,array> failed-store entries by id */
    private static function listById(string $topic = 'demo', int $limit = 100): array
    {
        $out = [];
        foreach (FailedStore::list($topic, $limit) as $entry) {
            $out[$entry['id']] = $entry;
        }
        return $out;
    }

    private function cli(array $args, float $timeout = 30): Process
    {
        $bin = TestEnv::repoRoot() . '/php/bin/ebats';
        $this->assertFileExists($bin, 'the command php/bin/ebats is missing');
        return Process::run(array_merge(TestEnv::phpCommand(), [$bin], $args), static::childEnv(), $timeout);
    }

    public function testListShowsFailedTasksWithTheirErrors(): void
    {
        $this->startWorker();
        $ids = $this->failFlaky(['a', 'b', 'c']);
        $list = FailedStore::list('demo');
        $this->assertCount(3, $list);
        $byId = self::listById();
        $this->assertEqualsCanonicalizing(array_values($ids), array_keys($byId));
        $t = microtime(true);
        foreach ($ids as $tag => $id) {
            $entry = $byId[$id];
            $this->assertSame(1, $entry['v']);
            $this->assertSame('demo', $entry['topic']);
            $this->assertSame('flaky', $entry['name']);
            $this->assertSame(['tag' => $tag, 'flag' => $this->flag($tag)], $entry['params']);
            $this->assertSame(1, $entry['attempt']);
            $this->assertNull($entry['event']);
            $f = $entry['failed'];
            $this->assertSame("flaky failure $tag", $f['message']);
            $this->assertSame(TaskException::class, ltrim($f['class'], '\\'));
            $this->assertSame(1, $f['attempts']);
            $this->assertSame(Worker::STATE_FAIL, $f['status']);
            $this->assertEqualsWithDelta($t, (float) $f['failed_at'], 30.0, 'failed_at is a unix time');
        }
        $this->assertCount(2, FailedStore::list('demo', 2), 'limit');
        $this->assertCount(3, FailedStore::list('demo'), 'listing does not remove anything');
        $this->assertSame([], FailedStore::list('nothing_failed_here'), 'a topic without failures lists nothing');
    }

    public function testReplayOneByIdThenAll(): void
    {
        $this->startWorker();
        $ids = $this->failFlaky(['a', 'b', 'c']);

        touch($this->flag('a'));
        $this->assertSame(0, FailedStore::replay('demo', str_repeat('0', 32)), 'replaying an unknown id moves nothing');
        $this->assertSame(1, FailedStore::replay('demo', $ids['a']));
        $cbs = $this->waitCallbacks($ids['a'], 2, 15, 'replayed task a');
        $this->assertSame(Worker::STATE_SUCC, $cbs[1]['status']);
        $this->assertSame('ok.', $cbs[1]['message']);
        $this->assertSame(1, $cbs[1]['attempt'], 'a replayed task starts again at attempt 1');
        $this->assertSame(['tag' => 'a', 'flag' => $this->flag('a')], $cbs[1]['params']);
        $left = self::listById();
        $this->assertEqualsCanonicalizing([$ids['b'], $ids['c']], array_keys($left), 'the replayed task left the store');
        $this->assertCount(1, $this->callbacks($ids['b']), 'b was not replayed');

        touch($this->flag('b'));
        touch($this->flag('c'));
        $this->assertSame(2, FailedStore::replay('demo'));
        foreach (['b', 'c'] as $tag) {
            $cbs = $this->waitCallbacks($ids[$tag], 2, 15, "replayed task $tag");
            $this->assertSame(Worker::STATE_SUCC, $cbs[1]['status']);
        }
        $this->assertSame([], FailedStore::list('demo'));
        $this->waitQueueDrained(static::q('task.demo'), 10);
        $this->assertCount(2, $this->runs('a'));
        $this->assertCount(2, $this->runs('b'));
        $this->assertCount(2, $this->runs('c'));
        $this->assertSame(0, FailedStore::replay('demo'), 'nothing left to replay');
    }

    public function testReplayedTaskThatFailsAgainReturnsToTheStore(): void
    {
        $this->startWorker();
        $ids = $this->failFlaky(['again']);
        $this->assertSame(1, FailedStore::replay('demo', $ids['again']));
        $cbs = $this->waitCallbacks($ids['again'], 2, 15, 'replayed task');
        $this->assertSame(Worker::STATE_FAIL, $cbs[1]['status']);
        $entry = $this->waitFor(fn () => self::listById()[$ids['again']] ?? null, 10, 'the task back in the store');
        $this->assertSame('flaky failure again', $entry['failed']['message']);
        $this->assertCount(1, FailedStore::list('demo'));
    }

    public function testPurge(): void
    {
        $this->startWorker();
        $this->failFlaky(['p1', 'p2', 'p3']);
        $this->assertSame(3, FailedStore::purge('demo'));
        $this->assertSame([], FailedStore::list('demo'));
        $this->assertSame(0, FailedStore::purge('demo'));
    }

    public function testCommandLine(): void
    {
        $this->startWorker();
        $ids = $this->failFlaky(['cli1', 'cli2', 'cli3']);

        $list = $this->cli(['failed:list', 'demo']);
        $this->assertSame(0, $list->exitCode(), $list->describe());
        foreach ($ids as $tag => $id) {
            $this->assertStringContainsString($id, $list->stdout(), "failed:list shows the id of $tag\n" . $list->describe());
            $this->assertStringContainsString("flaky failure $tag", $list->stdout(), "failed:list shows the error of $tag\n" . $list->describe());
        }

        touch($this->flag('cli1'));
        $replay = $this->cli(['failed:replay', 'demo', $ids['cli1']]);
        $this->assertSame(0, $replay->exitCode(), $replay->describe());
        $cbs = $this->waitCallbacks($ids['cli1'], 2, 15, 'task replayed from the command line');
        $this->assertSame(Worker::STATE_SUCC, $cbs[1]['status']);
        $this->assertEqualsCanonicalizing([$ids['cli2'], $ids['cli3']], array_keys(self::listById()));

        touch($this->flag('cli2'));
        $all = $this->cli(['failed:replay', 'demo', '--all']);
        $this->assertSame(0, $all->exitCode(), $all->describe());
        $this->waitCallbacks($ids['cli2'], 2, 15, 'cli2 replayed with --all');
        $this->waitCallbacks($ids['cli3'], 2, 15, 'cli3 replayed with --all');
        // cli3's flag is missing: it fails again and is back in the store
        $this->waitFor(fn () => array_keys(self::listById()) === [$ids['cli3']] ? true : null, 10, 'only cli3 in the store');

        $purge = $this->cli(['failed:purge', 'demo']);
        $this->assertSame(0, $purge->exitCode(), $purge->describe());
        $this->assertSame([], FailedStore::list('demo'));

        $empty = $this->cli(['failed:list', 'demo']);
        $this->assertSame(0, $empty->exitCode(), $empty->describe());
        foreach ($ids as $id) {
            $this->assertStringNotContainsString($id, $empty->stdout(), 'failed:list after purge');
        }
    }
}
