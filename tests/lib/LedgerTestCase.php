<?php

declare(strict_types=1);

namespace Ebats\Tests\Lib;

/**
 * Base of the ledger suites (LedgerTest, LedgerBrokerStopTest, SoakTest, ClusterTest's node kill): one Ledger per test in a directory of
 * its own, stopped and removed after the test, and the common end of every scenario: finish(), print the
 * ledger line (on stderr, and appended to $EBATS_LEDGER_REPORT when set), fail on any loss. A ProcTestCase, so
 * a scenario can run other fixtures beside the ledger (a Consumer, a worker of another topic).
 */
abstract class LedgerTestCase extends ProcTestCase
{
    protected ?Ledger $ledger = null;
    protected string $dir;

    protected function setUp(): void
    {
        parent::setUp();
        $this->dir = sys_get_temp_dir() . '/ebats_ledger_' . static::prefix() . '_' . bin2hex(random_bytes(3));
        mkdir($this->dir, 0777, true);
    }

    protected function tearDown(): void
    {
        $this->ledger?->stop();
        $this->ledger = null;
        parent::tearDown();
        if (!$this->hasFailed()) {
            self::removeTree($this->dir);
        } else {
            fwrite(STDERR, "ledger files kept in {$this->dir}\n");
        }
    }

    /** A ledger over this test's prefix and vhost; see Ledger for $opts. */
    protected function ledger(array $opts = []): Ledger
    {
        return $this->ledger = new Ledger($this->dir, static::childEnv(), $opts);
    }

    /**
     * Ends the scenario: stops the producers, waits up to $timeout s for every confirmed number, prints the
     * ledger line, and fails on a loss, or when a supervised process is down or the worker lacks children.
     */
    protected function settle(string $scenario, float $timeout = 60.0): array
    {
        $ledger = $this->ledger;
        $stats = $ledger->finish($timeout);
        $line = Ledger::line($scenario, $stats);
        fwrite(STDERR, "\n" . $line);
        $report = getenv('EBATS_LEDGER_REPORT');
        if (is_string($report) && $report !== '') {
            file_put_contents($report, $line, FILE_APPEND);
        }
        $this->assertSame([], $stats['lost'], "confirmed numbers never executed (lost)\n$line" . $ledger->describe());
        $this->assertGreaterThan(0, $stats['confirmed'], $line);
        if ($stats['recovery'] !== null) {
            $this->assertFalse(is_infinite($stats['recovery']), "the path did not recover after a fault\n$line" . $ledger->describe());
        }
        $this->assertFalse($ledger->worker()->hasExited(), "the worker parent exited\n" . $ledger->describe());
        $this->assertSame(
            $this->expectedChildren,
            count((array) Process::until(fn () => count($c = $ledger->workerChildren()) === $this->expectedChildren ? $c : null, 15.0, 0.1)),
            "the worker parent does not run its children again\n" . $ledger->describe()
        );
        return $stats;
    }

    /** Worker processes settle() expects (the ledger's worker_procs). */
    protected int $expectedChildren = 3;

    private static function removeTree(string $path): void
    {
        if (is_dir($path) && !is_link($path)) {
            foreach (scandir($path) ?: [] as $f) {
                if ($f !== '.' && $f !== '..') {
                    self::removeTree("$path/$f");
                }
            }
            @rmdir($path);
        } else {
            @unlink($path);
        }
    }
}
