<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Ebats\Tests\Lib\LedgerTestCase;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\TestEnv;

/**
 * Issue 12, the soak: a steady flow of events through two Schedulers and a Worker of three processes for
 * EBATS_SOAK_SECONDS (default 60), a third of them plain tasks, a third retried once (RetryException, 1 s
 * later), a third delayed by 1 s. At the end the ledger is checked (no confirmed number lost), and nothing
 * grows: sampled every second, per process (producers, Schedulers, the worker parent and its children, by pid)
 * resident memory and open file descriptors (/proc/<pid>/fd), and every 5 s the broker's connections and
 * channels in the test vhost. The second half of the run is compared with the first half: the largest value
 * of the second half may exceed the first half's by at most
 *   resident memory: 10 % + 2 MB;  file descriptors: 2;  connections: 0;  channels: 1.
 */
final class SoakTest extends LedgerTestCase
{
    public function testSoak(): void
    {
        $seconds = max(20, (int) (getenv('EBATS_SOAK_SECONDS') ?: 60));
        $ledger = $this->ledger([
            'schedulers' => 2,
            'producers' => 2,
            'rate' => 30,
            'events' => [['soak.plain', 'record', 0], ['soak.retry', 'retryOnce', 0], ['soak.delay', 'record', 1]],
        ]);
        $ledger->start();

        $procSamples = [];   // pid => list of [t, rss kB, fds]
        $brokerSamples = []; // list of [t, connections, channels]
        $t0 = microtime(true);
        $end = $t0 + $seconds;
        $nextBroker = $t0;
        while (($now = microtime(true)) < $end) {
            $pids = array_merge(
                array_map(static fn (Process $p): int => $p->pid(), $ledger->schedulers()),
                $ledger->worker()->groupPids(),
                $ledger->producerPids()
            );
            foreach ($pids as $pid) {
                $s = self::procSample($pid);
                if ($s !== null) {
                    $procSamples[$pid][] = [$now - $t0, ...$s];
                }
            }
            if ($now >= $nextBroker) {
                $brokerSamples[] = [$now - $t0, self::brokerRows('list_connections'), self::brokerRows('list_channels')];
                $nextBroker = $now + 5.0;
            }
            $ledger->run(1.0);
        }
        $stats = $this->settle(sprintf('soak %d s (plain, retried once, delayed 1 s)', $seconds), 60.0);
        $this->assertGreaterThan(0, $stats['duplicates'] + $stats['executed'], 'the soak ran tasks');

        $half = $seconds / 2;
        $report = [];
        $compared = 0;
        foreach ($procSamples as $pid => $samples) {
            $first = array_filter($samples, static fn (array $s): bool => $s[0] < $half);
            $second = array_filter($samples, static fn (array $s): bool => $s[0] >= $half);
            if (count($first) < 3 || count($second) < 3) {
                continue; // a process that did not live through both halves
            }
            $compared++;
            [$rss1, $rss2] = [max(array_column($first, 1)), max(array_column($second, 1))];
            [$fd1, $fd2] = [max(array_column($first, 2)), max(array_column($second, 2))];
            $report[] = sprintf('pid %d: rss %d -> %d kB, fds %d -> %d', $pid, $rss1, $rss2, $fd1, $fd2);
            $this->assertLessThanOrEqual($rss1 * 1.10 + 2048, $rss2, "resident memory of pid $pid grows\n" . implode("\n", $report));
            $this->assertLessThanOrEqual($fd1 + 2, $fd2, "open files of pid $pid grow\n" . implode("\n", $report));
        }
        // 2 producers, 2 schedulers, the worker parent and 3 children
        $this->assertGreaterThanOrEqual(8, $compared, "processes sampled in both halves\n" . implode("\n", $report));
        $first = array_filter($brokerSamples, static fn (array $s): bool => $s[0] < $half);
        $second = array_filter($brokerSamples, static fn (array $s): bool => $s[0] >= $half);
        $this->assertNotEmpty($first);
        $this->assertNotEmpty($second);
        [$c1, $c2] = [max(array_column($first, 1)), max(array_column($second, 1))];
        [$ch1, $ch2] = [max(array_column($first, 2)), max(array_column($second, 2))];
        $report[] = "broker: connections $c1 -> $c2, channels $ch1 -> $ch2";
        fwrite(STDERR, "soak resources (first half max -> second half max):\n  " . implode("\n  ", $report) . "\n");
        $this->assertLessThanOrEqual($c1, $c2, 'broker connections grow');
        $this->assertLessThanOrEqual($ch1 + 1, $ch2, 'broker channels grow');
    }

    /** [resident kB, open fds] of $pid, or null when it is gone. */
    private static function procSample(int $pid): ?array
    {
        $status = @file_get_contents("/proc/$pid/status");
        $fds = @scandir("/proc/$pid/fd");
        if (!is_string($status) || $fds === false || !preg_match('/^VmRSS:\s+(\d+)\s+kB/m', $status, $m)) {
            return null;
        }
        return [(int) $m[1], count($fds) - 2];
    }

    /** Rows of `rabbitmqctl <what> vhost` in the test vhost (connections or channels). */
    private static function brokerRows(string $what): int
    {
        $out = TestEnv::rabbitmqctl([$what, '-q', '--no-table-headers', 'vhost']);
        return count(array_filter(explode("\n", $out), static fn (string $l): bool => trim($l) === TestEnv::vhost()));
    }
}
