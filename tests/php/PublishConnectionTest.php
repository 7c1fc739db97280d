<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Ebats\Tests\Lib\EbatsTestCase;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\TestEnv;

/**
 * A process that only publishes holds one connection: its publishing connection (`ebats pid <pid>
 * (publishing)`, whose socket the PHP thread writes and reads itself). The connection it declares on is closed
 * once it published; a kind of message it has not sent yet is declared on a new one, closed again after. The
 * messages arrive, and what was published is confirmed.
 */
final class PublishConnectionTest extends EbatsTestCase
{
    /** Connection names of process $pid in the test vhost, as the broker lists them. */
    private static function connectionsOf(int $pid): array
    {
        return array_keys(TestEnv::connectionsOf($pid));
    }

    /**
     * The connections of $pid once they are $expected (the one a process declared on is closed in the
     * background after its publish returned: the broker lists it a moment longer), or as they are after 10 s.
     */
    private static function settledConnectionsOf(int $pid, array $expected): array
    {
        return Process::until(static fn () => self::connectionsOf($pid) === $expected ? $expected : null, 10) ?? self::connectionsOf($pid);
    }

    /**
     * Timers of the TCP sockets process $pid holds to the broker, from /proc/net/tcp: "<timer>:<jiffies>"
     * each (timer 02 is the kernel's keepalive).
     */
    private static function brokerSocketTimers(int $pid): array
    {
        $inodes = [];
        foreach (glob("/proc/$pid/fd/*") ?: [] as $fd) {
            if (preg_match('/^socket:\[(\d+)\]$/', (string) @readlink($fd), $m)) {
                $inodes[$m[1]] = true;
            }
        }
        $port = sprintf(':%04X', (int) (parse_url(TestEnv::amqpUrl(), PHP_URL_PORT) ?: 5672));
        $timers = [];
        foreach (@file('/proc/net/tcp') ?: [] as $line) {
            $f = preg_split('/\s+/', trim($line));
            if (isset($f[9], $inodes[$f[9]]) && str_ends_with($f[2], $port)) {
                $timers[] = $f[5];
            }
        }
        return $timers;
    }

    public function testAProcessThatOnlyPublishesHoldsOneConnection(): void
    {
        $exchange = static::prefix() . '_published';
        $queue = $exchange . '_q';
        $this->broker->declareExchange($exchange, 'fanout');
        $this->broker->declareQueue($queue);
        $this->broker->bindQueue($queue, $exchange, '');
        $agent = Process::php(Process::scriptFile(<<<'PHP'
            <?php
            use Asynclib\Core\Publish;
            use Asynclib\Ebats\Event;
            $exchange = $argv[1];
            echo getmypid(), "\n";
            while (($line = fgets(STDIN)) !== false) {
                $n = 0;
                switch (trim($line)) {
                    case 'events':
                        foreach (['conn_a', 'conn_b', 'conn_a'] as $name) {
                            (new Event($name))->setOptions(['k' => 1])->publish(false);
                            $n++;
                        }
                        break;
                    case 'new':
                        (new Event('conn_c'))->setOptions(['k' => 2])->publish(false);
                        $n++;
                        break;
                    case 'send':
                        (new Publish())->setExchange($exchange, 'fanout')->send(['n' => 1]);
                        (new Event('conn_a'))->setOptions(['k' => 3])->publish(true);
                        $n = 1 + ebats_flush();
                        break;
                }
                echo "done $n\n";
            }
            PHP), [$exchange]);
        $pid = (int) $agent->readLine(15);
        $this->assertGreaterThan(0, $pid, $agent->describe());
        $expected = ["ebats pid $pid (publishing)"];

        $agent->writeLine('events');
        $this->assertSame('done 3', $agent->readLine(15), $agent->describe());
        $this->assertSame($expected, self::settledConnectionsOf($pid, $expected), 'after publishing events of two names');
        // It exchanges no heartbeats: the kernel probes it once idle for the heartbeat (10 s by default).
        // (The connection it declared on is closed once the direct one publishes: the broker stops listing it
        // at its close-ok, and its socket is closed a moment later by the thread that reads it.)
        $timers = Process::until(static fn () => count($t = self::brokerSocketTimers($pid)) === 1 ? $t : null, 10)
            ?? self::brokerSocketTimers($pid);
        $this->assertCount(1, $timers, 'one socket to the broker: ' . json_encode($timers));
        $this->assertStringStartsWith('02:', $timers[0], 'the keepalive timer is armed on the publishing socket');
        $this->assertLessThanOrEqual(10 * 100, hexdec(substr($timers[0], 3)), 'within the heartbeat (clock ticks, 100 a second)');

        $agent->writeLine('new');
        $this->assertSame('done 1', $agent->readLine(15), $agent->describe());
        $this->assertSame($expected, self::settledConnectionsOf($pid, $expected), 'after an event of a name not published before');

        $agent->writeLine('send');
        $this->assertSame('done 2', $agent->readLine(15), $agent->describe());
        $this->assertSame($expected, self::settledConnectionsOf($pid, $expected), 'after Publish::send() and a deferred publish');
        $this->assertSame(['n' => 1], json_decode($this->expectMessage($queue)[0], true));
        $this->assertSame(5, $this->broker->count(static::prefix() . '.events') ?? -1, 'the events published are in the events queue');

        $agent->closeStdin();
        $this->assertSame(0, $agent->waitExit(15), $agent->describe());
        $this->assertSame([], self::settledConnectionsOf($pid, []), 'the connection is closed when the process ends');
    }

    /**
     * A worker process takes its tasks on a connection of its own (`ebats pid <pid> (consuming)`, whose socket
     * the PHP thread reads and writes itself, kept alive by the kernel's keepalive) and publishes on another
     * (`(publishing)`), beside the connections it does everything else on; all go when it stops.
     */
    public function testAWorkerProcessTakesItsTasksOnAConnectionOfItsOwn(): void
    {
        $ran = sys_get_temp_dir() . '/ebats_conn_' . bin2hex(random_bytes(4));
        $worker = Process::php(Process::scriptFile(<<<'PHP'
            <?php
            use Asynclib\Ebats\Worker;
            final class TaskConnModel
            {
                public function pingTask($params): void
                {
                    \Asynclib\Ebats\Task::create('conn', 'pong', $params);
                }

                public function pongTask($params): void
                {
                    file_put_contents($params['file'], (string) getmypid());
                }
            }
            $worker = new Worker(static function () {}, 1);
            $worker->setQueue('conn');
            $worker->run();
            PHP));
        $child = Process::until(static fn () => $worker->childPids()[0] ?? null, 15);
        $this->assertNotNull($child, $worker->describe());
        $consuming = static fn (): array => array_values(array_filter(self::connectionsOf($child), static fn (string $n): bool => str_ends_with($n, '(consuming)')));
        $this->assertSame(["ebats pid $child (consuming)"], Process::until(static fn () => $consuming() ?: null, 10) ?? [], $worker->describe());
        $timers = self::brokerSocketTimers($child);
        $this->assertContains(true, array_map(static fn (string $t): bool => str_starts_with($t, '02:'), $timers), 'a keepalive timer armed: ' . json_encode($timers));

        \Asynclib\Ebats\Task::create('conn', 'ping', ['file' => $ran]);
        $this->assertSame((string) $child, Process::until(static fn () => @file_get_contents($ran) ?: null, 15), $worker->describe());
        // What it publishes (here a task from a task) goes on its publishing connection, kept beside.
        $this->assertContains("ebats pid $child (publishing)", self::connectionsOf($child));
        $this->assertContains("ebats pid $child (consuming)", self::connectionsOf($child));

        $worker->signal(SIGTERM);
        $this->assertSame(0, $worker->waitExit(15), $worker->describe());
        $this->assertSame([], self::settledConnectionsOf($child, []), 'the connections are closed when the process ends');
        @unlink($ran);
    }

    /**
     * The publishing connection is opened again while the name server has stopped answering: the publish
     * takes the shared connection after the connect timeout, where the C library's resolver alone would
     * wait 30 s. The agent runs in a mount namespace of its own whose /etc/resolv.conf names the test's
     * name server (tests/fixtures/name_server.php on 127.0.0.54:53), which answers the shared connection's
     * lookup and never the publishing connection's.
     */
    public function testAPublishingConnectionOpenedWhileNamesAreNotResolvedGivesWayWithinTheConnectTimeout(): void
    {
        $dir = sys_get_temp_dir() . '/ebats_names_' . bin2hex(random_bytes(4));
        mkdir($dir);
        file_put_contents("$dir/hosts", "127.0.0.1 localhost\n");
        file_put_contents("$dir/resolv.conf", "nameserver 127.0.0.54\noptions timeout:10 attempts:3\n");
        file_put_contents("$dir/mode", "all\n");
        $server = Process::php(__DIR__ . '/../fixtures/name_server.php', ['127.0.0.54', "$dir/mode"], [], false);
        $name = 'ebats-broker-' . bin2hex(random_bytes(3));
        $url = str_replace('@' . parse_url(TestEnv::amqpUrl(), PHP_URL_HOST) . ':', "@$name:", TestEnv::amqpUrl());
        $script = Process::scriptFile(<<<'PHP'
            <?php
            use Asynclib\Ebats\Event;
            echo getmypid(), "\n";
            while (fgets(STDIN) !== false) {
                $t = microtime(true);
                try {
                    (new Event('names_probe'))->setOptions(['k' => 1])->publish(false);
                    $what = 'published';
                } catch (Throwable $e) {
                    $what = get_class($e) . ': ' . $e->getMessage();
                }
                printf("%.2f %s\n", microtime(true) - $t, $what);
            }
            PHP);
        $php = implode(' ', array_map('escapeshellarg', array_merge(TestEnv::phpCommand(), [$script])));
        $mounts = sprintf('mount --bind %s /etc/hosts && mount --bind %s /etc/resolv.conf', escapeshellarg("$dir/hosts"), escapeshellarg("$dir/resolv.conf"));
        $agent = null;
        try {
            $this->assertSame('ready', $server->readLine(15), $server->describe());
            $agent = Process::start(
                ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', "$mounts && exec $php"],
                ['EBATS_AMQP_URL' => $url, 'EBATS_CONNECT_TIMEOUT' => '2'],
                ['name' => 'names agent']
            );
            $pid = (int) $agent->readLine(15);
            $this->assertGreaterThan(0, $pid, $agent->describe());
            $agent->writeLine('publish');
            $this->assertMatchesRegularExpression('/^[\d.]+ published$/', (string) $agent->readLine(15), $agent->describe());
            $expected = ["ebats pid $pid (publishing)"];
            $this->assertSame($expected, self::settledConnectionsOf($pid, $expected));

            // From now on the name server answers one lookup more; the broker closes the publishing
            // connection (the agent reads the close at its next publish).
            file_put_contents("$dir/mode", "one\n");
            $conn = null;
            foreach (explode("\n", TestEnv::rabbitmqctl(['list_connections', '-q', '--no-table-headers', 'pid', 'client_properties'])) as $line) {
                if (str_contains($line, "\"ebats pid $pid (publishing)\"")) {
                    $conn = strtok($line, "\t");
                }
            }
            $this->assertNotNull($conn, 'the publishing connection is listed');
            TestEnv::rabbitmqctl(['close_connection', $conn, 'closed by the test']);

            $agent->writeLine('publish');
            $line = (string) $agent->readLine(60);
            $this->assertMatchesRegularExpression('/^[\d.]+ published$/', $line, $agent->describe());
            $this->assertLessThan(8.0, (float) $line, "the connect timeout (2 s) for the publishing connection, then the shared one: $line");
            $this->assertStringContainsString("publishing on the shared connection: cannot connect to the broker at amqp://guest:***@$name", $agent->stderr());
            $this->assertStringContainsString("the name '$name' was not resolved within", $agent->stderr());
            $this->assertSame(2, $this->broker->count(static::prefix() . '.events') ?? -1, 'both events are in the events queue');
        } finally {
            $agent?->kill();
            $server->kill();
            array_map('unlink', glob("$dir/*") ?: []);
            rmdir($dir);
        }
    }
}
