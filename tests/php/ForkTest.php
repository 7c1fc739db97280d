<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\EbatsTestCase;

/**
 * Issue item 4: after pcntl_fork the child never uses the parent's connection or runtime threads.
 * The forking program runs as a child PHP process, so a hang is bounded and nothing of PHPUnit is forked.
 */
final class ForkTest extends EbatsTestCase
{
    /** Helpers shared by the forking scripts: publish and wait for a child with a deadline. */
    private const PRELUDE = <<<'PHP'
<?php
declare(strict_types=1);
use Asynclib\Ebats\Task;

function publish(string $who): string {
    return Task::create('demo', 'fork', ['who' => $who, 'pid' => getmypid()]);
}

/** waits for $pid at most $seconds; returns its exit status, or kills it and returns -1 */
function reap(int $pid, float $seconds): int {
    $deadline = microtime(true) + $seconds;
    while (microtime(true) < $deadline) {
        $r = pcntl_waitpid($pid, $status, WNOHANG);
        if ($r === $pid) {
            return pcntl_wifexited($status) ? pcntl_wexitstatus($status) : 128 + pcntl_wtermsig($status);
        }
        usleep(10000);
    }
    posix_kill($pid, SIGKILL);
    pcntl_waitpid($pid, $status);
    return -1;
}

PHP;

    /** Runs a forking script in a child PHP process; asserts that it neither hung nor failed. */
    private function runForking(string $script, float $timeout): Process
    {
        $result = Process::runPhp($script, static::childEnv(), $timeout);
        $this->assertFalse($result->timedOut(), 'forking script hung: ' . $result->describe());
        $this->assertSame(0, $result->exitCode(), $result->describe());
        return $result;
    }

    /** @return array<string,array> who => body, for every task message in the demo queue */
    private function collect(int $expected): array
    {
        $byWho = [];
        foreach ($this->broker->waitMessages(static::q('task.demo'), $expected, 5) as [$raw]) {
            $body = self::body($raw);
            $byWho[$body['params']['who']] = $body;
        }
        $this->assertQueueEmpty(static::q('task.demo'), 'more messages than publishes');
        return $byWho;
    }

    public function testParentAndChildBothPublishAfterFork(): void
    {
        $script = self::PRELUDE . <<<'PHP'
$out = ['before' => publish('parent-before')];
$pid = pcntl_fork();
if ($pid === -1) { fwrite(STDERR, "fork failed\n"); exit(3); }
if ($pid === 0) {
    try {
        $id = publish('child');
        fwrite(STDOUT, json_encode(['child' => $id]) . "\n");
        exit(0);
    } catch (\Throwable $e) {
        fwrite(STDERR, 'child: ' . get_class($e) . ': ' . $e->getMessage() . "\n");
        exit(1);
    }
}
$out['during'] = publish('parent-during');
$out['child_status'] = reap($pid, 20);
$out['after'] = publish('parent-after');
echo json_encode($out), "\n";
PHP;
        $result = $this->runForking($script, 60);
        $out = $result->json();
        $this->assertSame(0, $out['child_status'], 'the forked child could not publish (or hung and was killed): ' . $result->describe());
        $this->assertMatchesRegularExpression('/^\{"child":"([0-9a-f]{32})"\}$/m', $result->stdout());
        preg_match('/^\{"child":"([0-9a-f]{32})"\}$/m', $result->stdout(), $m);
        $ids = ['parent-before' => $out['before'], 'child' => $m[1], 'parent-during' => $out['during'], 'parent-after' => $out['after']];
        $this->assertCount(4, array_unique($ids), 'ids must differ: ' . json_encode($ids));

        $byWho = $this->collect(4);
        $this->assertEqualsCanonicalizing(array_keys($ids), array_keys($byWho), 'messages that landed: ' . json_encode(array_keys($byWho)));
        foreach ($ids as $who => $id) {
            $this->assertSame($id, $byWho[$who]['id'], "id of the $who message");
        }
        $this->assertNotSame($byWho['parent-before']['params']['pid'], $byWho['child']['params']['pid']);
    }

    /** A child that never calls ebats (an FPM-like worker exiting) must not disturb the parent's connection when it exits. */
    public function testChildExitingWithoutPublishingLeavesParentWorking(): void
    {
        $script = self::PRELUDE . <<<'PHP'
$out = ['before' => publish('parent-before')];
$pid = pcntl_fork();
if ($pid === -1) { exit(3); }
if ($pid === 0) {
    exit(0); // runs the normal request/module shutdown of the inherited extension
}
$out['child_status'] = reap($pid, 20);
$t0 = microtime(true);
$out['after1'] = publish('parent-after1');
$out['after2'] = publish('parent-after2');
$out['ms'] = (microtime(true) - $t0) * 1000;
echo json_encode($out), "\n";
PHP;
        $result = $this->runForking($script, 60);
        $out = $result->json();
        $this->assertSame(0, $out['child_status'], 'the forked child did not exit cleanly: ' . $result->describe());
        $this->assertLessThan(5000, $out['ms'], 'publishing after the child exited took too long');
        $byWho = $this->collect(3);
        $this->assertSame($out['before'], $byWho['parent-before']['id'] ?? null);
        $this->assertSame($out['after1'], $byWho['parent-after1']['id'] ?? null);
        $this->assertSame($out['after2'], $byWho['parent-after2']['id'] ?? null);
    }

    /** Several children at once, each publishing several times, while the parent publishes too. */
    public function testManyChildrenPublishConcurrently(): void
    {
        $script = self::PRELUDE . <<<'PHP'
publish('parent-0');
$pids = [];
for ($c = 0; $c < 3; $c++) {
    $pid = pcntl_fork();
    if ($pid === -1) { exit(3); }
    if ($pid === 0) {
        try {
            for ($i = 0; $i < 5; $i++) { publish("child{$c}-{$i}"); }
            exit(0);
        } catch (\Throwable $e) {
            fwrite(STDERR, "child $c: " . get_class($e) . ': ' . $e->getMessage() . "\n");
            exit(1);
        }
    }
    $pids[] = $pid;
}
for ($i = 1; $i <= 5; $i++) { publish("parent-$i"); }
$status = array_map(fn ($p) => reap($p, 20), $pids);
publish('parent-6');
echo json_encode(['status' => $status]), "\n";
PHP;
        $result = $this->runForking($script, 90);
        $this->assertSame([0, 0, 0], $result->json()['status'], $result->describe());
        $expected = ['parent-0', 'parent-1', 'parent-2', 'parent-3', 'parent-4', 'parent-5', 'parent-6'];
        for ($c = 0; $c < 3; $c++) {
            for ($i = 0; $i < 5; $i++) {
                $expected[] = "child{$c}-{$i}";
            }
        }
        $byWho = $this->collect(count($expected));
        $this->assertEqualsCanonicalizing($expected, array_keys($byWho));
    }
}
