<?php
/*
 * PHPUnit bootstrap. Run from the repository root:
 *   php -d extension=$PWD/target/release/libebats.so /usr/bin/phpunit -c tests/phpunit.xml
 * Needs RabbitMQ on 127.0.0.1:5672 (guest/guest), rabbitmqctl (as root) and the php-amqp extension.
 * Creates a throw-away vhost for the run, exported as EBATS_AMQP_URL, and deletes it at the end.
 * Child processes load the extension from $EBATS_SO, else from the binary this process loaded.
 *
 * tests/lib/ holds the PHPUnit-side classes (Process, BrokerProxy, Broker, TestEnv, the base test cases);
 * tests/fixtures/ holds what the tests load or run as child processes.
 */

declare(strict_types=1);

require_once __DIR__ . '/lib/TestEnv.php';
require_once __DIR__ . '/lib/Process.php';
require_once __DIR__ . '/lib/Broker.php';
require_once __DIR__ . '/lib/BrokerProxy.php';
require_once __DIR__ . '/lib/EbatsTestCase.php';
require_once __DIR__ . '/lib/ProcTestCase.php';
require_once __DIR__ . '/lib/OnQuorumQueues.php';
require_once __DIR__ . '/lib/CronTestCase.php';
require_once __DIR__ . '/lib/Browser.php';
require_once __DIR__ . '/lib/Ledger.php';
require_once __DIR__ . '/lib/LedgerTestCase.php';

use Ebats\Tests\Lib\TestEnv;

if (!extension_loaded('ebats')) {
    fwrite(STDERR, "ebats extension not loaded: run php -d extension=/path/to/libebats.so /usr/bin/phpunit -c tests/phpunit.xml\n");
    exit(2);
}
if (!extension_loaded('amqp')) {
    fwrite(STDERR, "the php-amqp extension (class AMQPConnection) is needed to inspect the broker\n");
    exit(2);
}

// Before any ebats call: the extension reads EBATS_AMQP_URL when it connects.
TestEnv::init();
