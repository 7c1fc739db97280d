<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Ebats\Tests\Lib\BrokerProxy;
use Ebats\Tests\Lib\Ledger;
use Ebats\Tests\Lib\LedgerTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * Issue 12, the ledger: producers publish numbered events (events -> Scheduler -> tasks -> Worker) while
 * faults are injected; every number whose publish() returned must have been executed at least once. Each
 * test prints its ledger line on stderr. Every process recovers by itself: the worker parent replaces its
 * children; Schedulers killed with -9 are started again by the ledger's supervisor loop, which stands for
 * systemd's Restart=always (the units in the README) and does nothing else.
 * The broker-stop scenarios run alone: LedgerBrokerStopTest.
 */
final class LedgerTest extends LedgerTestCase
{
    /** Every connection cut in turn (producer, scheduler, worker) through a proxy of its own, 3 s each. */
    public function testConnectionCuts(): void
    {
        $proxies = self::proxies();
        $ledger = $this->ledger(['urls' => array_map(static fn (BrokerProxy $p): string => TestEnv::amqpUrl(null, $p->port()), $proxies)]);
        $ledger->start();
        foreach (['producer', 'scheduler', 'worker'] as $role) {
            $ledger->run(1.5);
            $ledger->fault(fn () => $proxies[$role]->cut(), fn () => $proxies[$role]->start(), 3.0);
        }
        $ledger->run(2.0);
        $this->settle('connection cuts (producer, scheduler, worker; 3 s each)');
    }

    /** kill -9 of a random worker child every 0.6 s, 12 times: the parent replaces each one. */
    public function testKillStormOnWorkerChildren(): void
    {
        $ledger = $this->ledger();
        $ledger->start();
        for ($i = 0; $i < 12; $i++) {
            $ledger->fault(fn (Ledger $l) => self::killOne($l->workerChildren()));
            $ledger->run(0.6);
        }
        $ledger->run(2.0);
        $this->settle('kill -9 storm on worker children (12 kills)');
    }

    /** Three Schedulers; kill -9 of a random one every second, 8 times: the supervisor starts each again. */
    public function testKillStormOnSchedulers(): void
    {
        $ledger = $this->ledger(['schedulers' => 3]);
        $ledger->start();
        for ($i = 0; $i < 8; $i++) {
            $ledger->fault(fn (Ledger $l) => self::killOne(array_map(static fn ($p) => $p->pid(), $l->schedulers())));
            $ledger->run(1.0);
        }
        $ledger->run(2.0);
        $stats = $this->settle('kill -9 storm on schedulers (3 schedulers, 8 kills)');
        $this->assertGreaterThanOrEqual(8, $stats['restarts'], 'the killed schedulers were started again');
    }

    /** SIGHUP to the worker parent 3 times, 2.5 s apart: rolling restarts of its children. */
    public function testSighupRollingRestarts(): void
    {
        $ledger = $this->ledger();
        $ledger->start();
        $before = $ledger->workerChildren();
        for ($i = 0; $i < 3; $i++) {
            $ledger->fault(fn (Ledger $l) => $l->worker()->signal(SIGHUP));
            $ledger->run(2.5);
        }
        $ledger->run(1.0);
        $this->settle('SIGHUP rolling restarts of the worker parent (3)');
        $this->assertSame([], array_intersect($before, $ledger->workerChildren()), 'every child was replaced');
    }

    /** All of it at once: cuts, kill -9 of children and schedulers, SIGHUP, overlapping. */
    public function testCombined(): void
    {
        $proxies = self::proxies();
        $ledger = $this->ledger([
            'schedulers' => 2,
            'urls' => array_map(static fn (BrokerProxy $p): string => TestEnv::amqpUrl(null, $p->port()), $proxies),
        ]);
        $ledger->start();
        $killChild = fn (Ledger $l) => self::killOne($l->workerChildren());
        $killScheduler = fn (Ledger $l) => self::killOne(array_map(static fn ($p) => $p->pid(), $l->schedulers()));
        $steps = [
            [fn (Ledger $l) => [$proxies['worker']->cut(), $killScheduler($l)], fn () => $proxies['worker']->start()],
            [fn (Ledger $l) => [$proxies['producer']->cut(), $l->worker()->signal(SIGHUP)], fn () => $proxies['producer']->start()],
            [fn (Ledger $l) => [$proxies['scheduler']->cut(), $killChild($l)], fn () => $proxies['scheduler']->start()],
            [fn (Ledger $l) => [$killChild($l), $killScheduler($l), $l->worker()->signal(SIGHUP)], null],
            [fn (Ledger $l) => [$proxies['worker']->cut(), $proxies['scheduler']->cut(), $killChild($l)], fn () => [$proxies['worker']->start(), $proxies['scheduler']->start()]],
        ];
        foreach ($steps as [$inject, $heal]) {
            $ledger->fault($inject, $heal, 2.0);
            $ledger->run(1.5);
        }
        $ledger->run(2.0);
        $this->settle('combined (cuts, kill -9 of children and schedulers, SIGHUP)');
    }

    /** @return array<string,BrokerProxy> a started proxy per role */
    private static function proxies(): array
    {
        $proxies = ['producer' => new BrokerProxy(), 'scheduler' => new BrokerProxy(), 'worker' => new BrokerProxy()];
        foreach ($proxies as $p) {
            $p->start();
        }
        return $proxies;
    }

    /** kill -9 of one of $pids, chosen at random (none when the list is empty). */
    private static function killOne(array $pids): void
    {
        if ($pids !== []) {
            posix_kill($pids[array_rand($pids)], SIGKILL);
        }
    }
}
