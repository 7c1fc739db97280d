<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Ebats\Tests\Lib\LedgerTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * The ledger across a stop of the whole broker (`rabbitmqctl stop_app`, then `start_app`) for 5 s and for 30 s:
 * producers see their publishes throw while it is down (reported, not lost), the Scheduler and the Worker's
 * children reconnect by themselves, and every confirmed number is executed. These stop the shared broker, so
 * they run only with EBATS_TEST_BROKER_RESTART=1, alone (the last step of scripts/test).
 */
final class LedgerBrokerStopTest extends LedgerTestCase
{
    public function testLedgerBrokerStopped5s(): void
    {
        $this->stopBroker(5.0);
    }

    public function testLedgerBrokerStopped30s(): void
    {
        $this->stopBroker(30.0);
    }

    private function stopBroker(float $seconds): void
    {
        if (getenv('EBATS_TEST_BROKER_RESTART') !== '1') {
            $this->markTestSkipped('stops the shared broker: run alone with EBATS_TEST_BROKER_RESTART=1');
        }
        $ledger = $this->ledger();
        $ledger->start();
        $ledger->run(2.0);
        $ledger->fault(
            static fn () => TestEnv::stopBrokerApp(),
            static fn () => TestEnv::startBrokerApp(),
            $seconds
        );
        $ledger->run(3.0);
        $this->settle(sprintf('broker stopped for %d s (stop_app / start_app)', $seconds), 90.0);
    }
}
