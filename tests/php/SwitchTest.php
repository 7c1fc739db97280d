<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\Task;
use Asynclib\Ebats\Worker;
use Ebats\Tests\Lib\ProcTestCase;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\TestEnv;

/**
 * The switch from the original library: its topology and backlog are written first, byte for byte as the
 * original writes them (tests/fixtures/legacy, run without the extension), then the same programs start with
 * the extension. Every message runs once, with its params and id; the delayed ones when due; a task the
 * original was retrying keeps its attempt count. Each test prints its counts (left, ran, duplicates, lost).
 */
final class SwitchTest extends ProcTestCase
{
    /**
     * The counts of the switch for the expected task ids: how many are left unrun, ran once, ran more than
     * once; printed for the record.
     *
     * @param list<string> $ids
     * @return array{left:int,ran:int,duplicates:int,lost:int}
     */
    private function counts(string $what, array $ids, bool $print = true): array
    {
        $seen = array_count_values(array_map(static fn (array $r): string => $r['taskid'], $this->records('cb')));
        $c = ['left' => 0, 'ran' => 0, 'duplicates' => 0, 'lost' => 0];
        foreach ($ids as $id) {
            $n = $seen[$id] ?? 0;
            $c['ran'] += $n > 0 ? 1 : 0;
            $c['duplicates'] += max(0, $n - 1);
            $c['left'] += $n === 0 ? 1 : 0;
        }
        // After the waits, a task not run is lost unless it still sits in a queue.
        $waiting = 0;
        foreach (['demoR', 'demoD', 'task.demo'] as $q) {
            $waiting += (int) $this->broker->count(static::q($q));
        }
        $c['lost'] = max(0, $c['left'] - $waiting);
        if ($print) {
            fwrite(STDERR, sprintf("\n[switch] %s: expected=%d left=%d ran=%d duplicates=%d lost=%d\n", $what, count($ids), $c['left'], $c['ran'], $c['duplicates'], $c['lost']));
        }
        return $c;
    }

    public function testTheOriginalsTaskBacklogRunsOnceThroughTheWorker(): void
    {
        $counters = $this->tmp . '/counters';
        $this->legacy('topology::demo');
        $ready = $this->legacy('task:demo:ok', 6, ['tag' => 'ready'])['ids'];
        $t0 = microtime(true);
        $delayed = $this->legacy('delayed:demo:ok:4000', 3, ['tag' => 'delayed'])['ids'];
        $retried = $this->legacy('retry:demo:ok:1000:2', 1, ['tag' => 'retry'], ['EBATS_LEGACY_RETRY_DIR' => $counters])['ids'];
        $this->assertFileExists("$counters/{$retried[0]}");
        $this->assertSame(6, $this->broker->count(static::q('demoR')));
        $this->assertSame(4, $this->broker->count(static::q('demoD')));

        // Three children: each declares the topic, converting the delay exchange at once with the others.
        $this->startWorker(['procs' => 3, 'env' => ['EBATS_LEGACY_COUNTER_DIR' => $counters]]);
        $all = array_merge($ready, $delayed, $retried);
        $this->waitFor(fn () => $this->counts('waiting', $all, false)['left'] === 0 ?: null, 30, 'every task of the original run');

        foreach ($all as $id) {
            $cbs = $this->callbacks($id);
            $this->assertCount(1, $cbs, "task $id ran " . count($cbs) . ' times');
            $this->assertSame('ok', $cbs[0]['taskname']);
            $this->assertSame(Worker::STATE_SUCC, $cbs[0]['status']);
        }
        foreach ($ready as $n => $id) {
            $this->assertSame(['n' => $n, 'tag' => 'ready'], $this->callbacks($id)[0]['params']);
            $this->assertSame(1, $this->callbacks($id)[0]['attempt']);
        }
        foreach ($delayed as $n => $id) {
            $cb = $this->callbacks($id)[0];
            $this->assertSame(['n' => $n, 'tag' => 'delayed'], $cb['params']);
            $this->assertGreaterThanOrEqual(3.9, $cb['t'] - $t0, 'a task delayed 4 s ran before its time');
        }
        $this->assertSame(3, $this->callbacks($retried[0])[0]['attempt'], 'the attempt after the two the counter file counted');
        $this->assertFileDoesNotExist("$counters/{$retried[0]}", 'the counter file is removed once its count travels in the task');

        // Tasks made now go to ebats's queue only (the original's ready queue no longer gets a copy), and a
        // delayed one goes through the converted delay exchange without reaching the original's delay queue.
        $now = Task::create('demo', 'ok', ['tag' => 'after']);
        $later = Task::create('demo', 'ok', ['tag' => 'after-delayed'], 1);
        $this->waitCallbacks($now, 1, 10, 'a task made after the switch');
        $this->waitCallbacks($later, 1, 10, 'a delayed task made after the switch');
        $this->assertStays(fn () => count($this->callbacks($now)) > 1 || count($this->callbacks($later)) > 1, 1.5, 'a task made after the switch ran twice');
        $this->assertSame(0, $this->broker->count(static::q('demoR')));
        $this->assertSame(0, $this->broker->count(static::q('demoD')));
        $c = $this->counts('backlog', array_merge($all, [$now, $later]));
        $this->assertSame(['left' => 0, 'ran' => 12, 'duplicates' => 0, 'lost' => 0], $c);
    }

    public function testTheOriginalsDelayedTasksStillComeDueWhileItsProducersWriteDuringTheSwitch(): void
    {
        $this->legacy('topology::demo');
        $this->startWorker(['procs' => 2]);
        // The worker converted the delay exchange: what the original writes to it still reaches its delay
        // queue (key = topic) and comes due into ebats's ready queue.
        $t0 = microtime(true);
        $delayed = $this->legacy('delayed:demo:ok:2000', 4, ['tag' => 'during'])['ids'];
        $ready = $this->legacy('task:demo:ok', 4, ['tag' => 'during-ready'])['ids'];
        $all = array_merge($delayed, $ready);
        $this->waitFor(fn () => $this->counts('waiting', $all, false)['left'] === 0 ?: null, 20, 'the tasks the original wrote during the switch');
        foreach ($delayed as $id) {
            $this->assertGreaterThanOrEqual(1.9, $this->callbacks($id)[0]['t'] - $t0, 'a task delayed 2 s ran before its time');
        }
        $this->assertStays(fn () => $this->counts('again', $all, false)['duplicates'] > 0, 1.5, 'a task ran twice');
        $this->assertSame(['left' => 0, 'ran' => 8, 'duplicates' => 0, 'lost' => 0], $this->counts('during', $all));
    }

    public function testABodyOfTheOriginalThatTheReaderRefusesGoesToTheFailedStoreWithTheReason(): void
    {
        $this->legacy('topology::demo');
        // A Task of another class: never instantiated, refused with the reason.
        $body = 'a:2:{s:5:"etime";i:1700000000;s:4:"body";O:8:"stdClass":1:{s:1:"x";i:1;}}';
        $this->broker->publish(static::q('task.ready'), 'demo', $body, ['content_type' => 'text/plain']);
        $this->startWorker();
        [$raw, $props] = $this->expectMessage(static::q('failed.demo'), 15);
        $this->assertSame($body, $raw);
        $this->assertStringContainsString("original library's format", (string) ($props['headers']['x-ebats-error'] ?? json_encode($props)));
        $this->assertSame([], $this->records('cb'));
    }

    /** @return list<array{queue:string,messages:int}>|null the original's queues the dashboard shows for demo */
    private static function dashboardLegacy(string $url): ?array
    {
        $body = @file_get_contents($url . 'api/state', false, stream_context_create(['http' => ['timeout' => 10, 'ignore_errors' => true]]));
        $state = is_string($body) ? json_decode($body, true) : null;
        foreach ($state['topics'] ?? [] as $t) {
            if ($t['topic'] === 'demo') {
                return $t['legacy'];
            }
        }
        return null;
    }

    public function testTheDashboardShowsTheOriginalsQueuesWhileTheyHoldMessages(): void
    {
        $this->legacy('topology::demo');
        $this->legacy('task:demo:ok', 3, ['tag' => 'dash']);
        $proc = $this->startFixture('dashboard', '../../php/bin/ebats', [], ['dashboard', '--listen', '127.0.0.1:0', '--topics=demo']);
        $url = $this->waitFor(fn () => preg_match('~listening on (http://\S+/)~', $proc->stdout(), $m) ? $m[1] : null, 15, 'the dashboard starts');
        $this->waitFor(
            fn () => self::dashboardLegacy($url) === [['queue' => static::q('demoR'), 'messages' => 3]] ?: null,
            20,
            "the dashboard shows the original's ready queue with its 3 tasks"
        );
        $this->startWorker();
        $this->waitFor(fn () => self::dashboardLegacy($url) === [] ?: null, 30, "the original's queue gone from the dashboard once empty");
        // The queue is empty once its last task is delivered, maybe before that task's callback.
        $this->waitFor(fn () => count($this->records('cb')) >= 3 ?: null, 10, 'the 3 callbacks');
        $this->assertCount(3, $this->records('cb'));
    }
}
