<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Ebats\Tests\Lib\BrokerProxy;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\EbatsTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * amqps:// end to end. The shared broker has no TLS listener (and must not be reconfigured), so a
 * TLS-terminating proxy (BrokerProxy in tls mode) with a self-signed certificate made for this run stands in
 * front of it and relays the decrypted AMQP to 127.0.0.1:5672. The extension verifies the server certificate
 * against OpenSSL's default paths, which honour SSL_CERT_FILE: children that set it to the certificate trust
 * the proxy, children that do not must refuse it.
 */
final class TlsTest extends EbatsTestCase
{
    private const CONNECTION_EXCEPTION = 'Asynclib\Exception\ConnectionedException';
    /** Connect timeout of the children, s: a failure that comes well before it is the TLS error, not a timeout. */
    private const CONNECT_TIMEOUT = 10;
    /** A failing connection must be reported within this, ms. */
    private const FAIL_BOUND_MS = 5000;

    private static ?string $certDir = null;

    private ?BrokerProxy $proxy = null;
    private int $proxyPort = 0;
    /** @var list<Process> */
    private array $agents = [];

    protected function setUp(): void
    {
        parent::setUp();
        $config = ebats_config();
        if (empty($config['tls_available'])) {
            $this->fail('this build of the extension has no TLS (cargo feature "tls" off): amqps:// cannot be tested');
        }
        [$cert, $key] = $this->certificate();
        $this->startProxy($cert, $key);
    }

    protected function tearDown(): void
    {
        $this->agents = [];   // Process::__destruct stops each
        $this->proxy = null;
        parent::tearDown();
    }

    public static function tearDownAfterClass(): void
    {
        if (self::$certDir !== null) {
            foreach (glob(self::$certDir . '/*') ?: [] as $f) {
                @unlink($f);
            }
            @rmdir(self::$certDir);
            self::$certDir = null;
        }
        parent::tearDownAfterClass();
    }

    /** (a) With the certificate trusted, an Event and a Task go through TLS and land in their queues. */
    public function testPublishOverTlsWithTrustedCertificate(): void
    {
        $agent = $this->agent($this->tlsUrl($this->proxyPort), $this->certFile());

        $config = $agent->request(['op' => 'config'], 10);
        $this->assertTrue($config['ok'], json_encode($config));
        $this->assertTrue($config['config']['tls'], 'ebats_config()[\'tls\'] for an amqps:// URL: ' . json_encode($config));
        $this->assertSame('localhost', $config['config']['host'], json_encode($config));
        $this->assertSame($this->proxyPort, $config['config']['port'], json_encode($config));
        $this->assertStringStartsWith('amqps://', $config['config']['amqp_url']);
        $this->assertStringNotContainsString('guest:guest', $config['config']['amqp_url'], 'the password is masked');

        $event = $agent->request(['op' => 'event', 'name' => 'tls_event', 'params' => ['over' => 'tls']], 30);
        $this->assertTrue($event['ok'], 'Event publish over amqps:// failed: ' . json_encode($event) . "\n" . $agent->stderr() . $this->proxyOutput());
        self::assertId($event['id']);

        // the connection really was TLS, through the proxy
        $line = $this->proxyLine(5);
        $this->assertNotNull($line, 'the proxy reported no handshake' . $this->proxyOutput());
        $this->assertMatchesRegularExpression('/^TLS TLSv1\.[23] \S+$/', $line, 'the proxy\'s report of the handshake');

        $message = $this->expectMessage(static::q('events'));
        $body = self::body($message[0]);
        $this->assertSame($event['id'], $body['id'] ?? null, 'the event published over TLS is in ' . static::q('events'));
        $this->assertSame('tls_event', $body['event'] ?? null);
        $this->assertSame(['over' => 'tls'], $body['params'] ?? null);

        $task = $agent->request(['op' => 'task', 'topic' => 'demo', 'name' => 'overTls', 'params' => ['n' => 1]], 30);
        $this->assertTrue($task['ok'], 'Task::create over amqps:// failed: ' . json_encode($task) . "\n" . $agent->stderr());
        self::assertId($task['id']);
        $message = $this->expectMessage(static::q('task.demo'));
        $body = self::body($message[0]);
        $this->assertSame($task['id'], $body['id'] ?? null, 'the task created over TLS is in ' . static::q('task.demo'));
        $this->assertSame('overTls', $body['name'] ?? null);

        $this->assertNull($this->proxyLine(0.2), 'the task reused the TLS connection of the event');
        $this->assertSame(['ok' => true], $agent->request(['op' => 'quit'], 10));
    }

    /** Several clients through the proxy at once, each with its own TLS connection. */
    public function testSeveralClientsAtOnce(): void
    {
        $agents = [];
        for ($i = 0; $i < 3; $i++) {
            $agents[$i] = $this->agent($this->tlsUrl($this->proxyPort), $this->certFile());
        }
        // every agent connects (and stays connected) before any of them publishes its second message
        $ids = [];
        foreach ([1, 2] as $round) {
            foreach ($agents as $i => $agent) {
                $answer = $agent->request(['op' => 'event', 'name' => 'tls_multi', 'params' => ['agent' => $i, 'round' => $round]], 30);
                $this->assertTrue($answer['ok'], "agent $i round $round: " . json_encode($answer) . "\n" . $agent->stderr() . $this->proxyOutput());
                $ids[] = $answer['id'];
            }
        }
        $handshakes = [];
        while (($line = $this->proxyLine(count($handshakes) < 3 ? 5 : 0.2)) !== null) {
            $handshakes[] = $line;
        }
        $this->assertCount(3, $handshakes, 'one TLS handshake per agent: ' . json_encode($handshakes));
        foreach ($handshakes as $line) {
            $this->assertStringStartsWith('TLS ', $line);
        }
        $got = array_map(static fn (array $m): string => self::body($m[0])['id'], $this->broker->waitMessages(static::q('events'), 6, 10));
        sort($ids);
        sort($got);
        $this->assertSame($ids, $got, 'all six events are in the queue');
    }

    /**
     * Messages of megabytes, each way: many TLS records per read and partial writes in the proxy, and frames
     * larger than a TLS record in the extension.
     */
    public function testLargeMessagesBothWays(): void
    {
        // client -> broker: a 3 MB event
        $agent = $this->agent($this->tlsUrl($this->proxyPort), $this->certFile());
        $blob = base64_encode(random_bytes(3 * 1024 * 1024 * 3 / 4));
        $answer = $agent->request(['op' => 'event', 'name' => 'tls_big', 'params' => ['blob' => $blob]], 60);
        $this->assertTrue($answer['ok'], 'a 3 MB event over TLS: ' . json_encode($answer) . "\n" . $agent->stderr() . $this->proxyOutput());
        $body = self::body($this->expectMessage(static::q('events'), 10)[0]);
        $this->assertSame($answer['id'], $body['id'] ?? null);
        $this->assertTrue(($body['params']['blob'] ?? null) === $blob, 'the 3 MB parameter arrived intact');

        // broker -> client: failed-store entries of 1.5 MB each, put there in plain AMQP, read over TLS
        $queue = static::q('failed.demo');
        $this->broker->declareQueue($queue);
        $expected = [];
        for ($i = 0; $i < 3; $i++) {
            $id = bin2hex(random_bytes(16));
            $big = base64_encode(random_bytes(1536 * 1024 * 3 / 4));
            $expected[$id] = md5($big);
            $this->broker->publish('', $queue, json_encode([
                'v' => 1, 'id' => $id, 'topic' => 'demo', 'name' => 'big', 'params' => ['blob' => $big],
                'delay' => 0, 'attempt' => 1, 'created_at' => microtime(true), 'event' => null, 'event_id' => null,
                'failed' => ['message' => 'too big', 'class' => 'RuntimeException', 'attempts' => 1, 'failed_at' => microtime(true), 'status' => 1],
            ], JSON_THROW_ON_ERROR), ['content_type' => 'application/json', 'delivery_mode' => 2]);
        }
        $result = Process::runPhp(<<<'PHP'
<?php
$out = [];
foreach (Asynclib\Ebats\FailedStore::list('demo') as $entry) {
    $out[$entry['id']] = md5((string) ($entry['params']['blob'] ?? ''));
}
echo json_encode(['config_tls' => ebats_config()['tls'], 'entries' => $out]), "\n";
PHP, static::childEnv([
            'EBATS_AMQP_URL' => $this->tlsUrl($this->proxyPort),
            'EBATS_CONNECT_TIMEOUT' => (string) self::CONNECT_TIMEOUT,
            'SSL_CERT_FILE' => $this->certFile(),
            'SSL_CERT_DIR' => null,
        ]), 60);
        $this->assertSame(0, $result->exitCode(), $result->describe() . $this->proxyOutput());
        $json = $result->json();
        $this->assertTrue($json['config_tls']);
        ksort($expected);
        $got = $json['entries'];
        ksort($got);
        $this->assertSame($expected, $got, 'the three 1.5 MB entries arrived intact over TLS');
    }

    /**
     * A worker over amqps:// takes its tasks on its TLS connection (a direct connection of its own serves plain
     * AMQP only): a task published in plain AMQP runs, and one given back while its topic is paused runs once
     * the topic runs again.
     */
    public function testAWorkerTakesItsTasksOverTls(): void
    {
        $ran = sys_get_temp_dir() . '/ebats_tls_ran_' . bin2hex(random_bytes(4));
        $worker = Process::php(Process::scriptFile(<<<'PHP'
            <?php
            use Asynclib\Ebats\Worker;
            final class TaskTlsModel
            {
                public function pingTask($params): void
                {
                    file_put_contents($params['file'], $params['n'] . "\n", FILE_APPEND);
                }
            }
            $worker = new Worker(static function () {}, 1);
            $worker->setQueue('tls');
            $worker->run();
            PHP), [], static::childEnv([
            'EBATS_AMQP_URL' => $this->tlsUrl($this->proxyPort),
            'EBATS_CONNECT_TIMEOUT' => (string) self::CONNECT_TIMEOUT,
            'SSL_CERT_FILE' => $this->certFile(),
            'SSL_CERT_DIR' => null,
        ]));
        try {
            \Asynclib\Ebats\Task::create('tls', 'ping', ['file' => $ran, 'n' => 1]);
            $this->assertSame("1\n", Process::until(static fn () => @file_get_contents($ran) ?: null, 15), $worker->describe() . $this->proxyOutput());
            \Asynclib\Ebats\Topics::pause('tls');
            $this->assertNotNull(Process::until(static fn () => str_contains($worker->stderr(), "topic 'tls' is paused") ? true : null, 15), $worker->describe());
            \Asynclib\Ebats\Task::create('tls', 'ping', ['file' => $ran, 'n' => 2]);
            $this->assertNotNull(Process::until(fn () => $this->broker->count(static::q('task.tls')) === 1 ? true : null, 15), 'the task waits while its topic is paused');
            \Asynclib\Ebats\Topics::resume('tls');
            $this->assertSame("1\n2\n", Process::until(static fn () => @file_get_contents($ran) === "1\n2\n" ? "1\n2\n" : null, 15), $worker->describe());
        } finally {
            $worker->signal(SIGTERM);
            $worker->waitExit(15);
            @unlink($ran);
        }
    }

    /** (b) Without SSL_CERT_FILE the self-signed certificate is not trusted: the publish fails, promptly and clearly. */
    public function testUntrustedCertificateIsRefused(): void
    {
        $agent = $this->agent($this->tlsUrl($this->proxyPort), null);

        $answer = $agent->request(['op' => 'event', 'name' => 'tls_untrusted'], 30);
        $this->assertFalse($answer['ok'], 'a publish to a server whose certificate is not trusted must fail: ' . json_encode($answer));
        $this->assertSame(self::CONNECTION_EXCEPTION, $answer['class'], json_encode($answer));
        $this->assertMatchesRegularExpression('/certificate|verify/i', $answer['message'], 'the message names the certificate verification failure');
        $this->assertStringNotContainsString('guest:guest', $answer['message'], 'the password is masked in the message');
        $this->assertLessThan(self::FAIL_BOUND_MS, $answer['ms'], 'the refusal took too long (a timeout instead of the TLS error?): ' . json_encode($answer));

        // the client, not the proxy, broke off the handshake
        $line = $this->proxyLine(5);
        $this->assertNotNull($line, 'the proxy reported nothing' . $this->proxyOutput());
        $this->assertStringStartsWith('HANDSHAKE_FAILED', $line);

        // and again: no stale state, the same prompt failure
        $again = $agent->request(['op' => 'task', 'topic' => 'demo', 'name' => 'x'], 30);
        $this->assertFalse($again['ok'], json_encode($again));
        $this->assertSame(self::CONNECTION_EXCEPTION, $again['class'], json_encode($again));
        $this->assertMatchesRegularExpression('/certificate|verify/i', $again['message']);
        $this->assertLessThan(self::FAIL_BOUND_MS, $again['ms'], json_encode($again));

        $this->assertQueueEmpty(static::q('events'), 'nothing may be published over an untrusted connection');
        $this->assertQueueEmpty(static::q('task.demo'), 'nothing may be published over an untrusted connection');
    }

    /** (c) amqps:// to the plain AMQP port: the TLS handshake fails at once, with ConnectionedException. */
    public function testTlsToPlainPortFailsFast(): void
    {
        $agent = $this->agent($this->tlsUrl(TestEnv::PORT), $this->certFile());

        $config = $agent->request(['op' => 'config'], 10);
        $this->assertTrue($config['config']['tls'] ?? null, json_encode($config));

        $answer = $agent->request(['op' => 'event', 'name' => 'tls_plain_port'], 30);
        $this->assertFalse($answer['ok'], 'TLS to a plain AMQP port cannot succeed: ' . json_encode($answer));
        $this->assertSame(self::CONNECTION_EXCEPTION, $answer['class'], json_encode($answer));
        $this->assertNotSame('', $answer['message']);
        $this->assertStringNotContainsString('no answer within', $answer['message'], 'a handshake error, not a timeout: ' . json_encode($answer));
        $this->assertLessThan(self::FAIL_BOUND_MS, $answer['ms'], json_encode($answer));
        $this->assertQueueEmpty(static::q('events'));
    }

    // ---------------------------------------------------------------------------------------------------

    private function tlsUrl(int $port, string $host = 'localhost'): string
    {
        return sprintf(
            'amqps://%s:%s@%s:%d/%s',
            rawurlencode(TestEnv::USER),
            rawurlencode(TestEnv::PASS),
            $host,
            $port,
            rawurlencode(TestEnv::vhost())
        );
    }

    /** A child running tests/fixtures/agent.php on $url; $certFile null: SSL_CERT_FILE unset (the certificate is not trusted). */
    private function agent(string $url, ?string $certFile): Process
    {
        $agent = Process::php(__DIR__ . '/../fixtures/agent.php', [], static::childEnv([
            'EBATS_AMQP_URL' => $url,
            'EBATS_CONNECT_TIMEOUT' => (string) self::CONNECT_TIMEOUT,
            'SSL_CERT_FILE' => $certFile,
            'SSL_CERT_DIR' => null,
        ]));
        $hello = $agent->readLine(15);
        $this->assertNotNull($hello, "agent did not start\n" . $agent->describe());
        $this->agents[] = $agent;
        return $agent;
    }

    private function startProxy(string $cert, string $key): void
    {
        $proxy = new BrokerProxy('tls', $cert, $key);
        try {
            $this->proxyPort = $proxy->start();
        } catch (\RuntimeException $e) {
            $this->fail('the TLS proxy did not start: ' . $e->getMessage());
        }
        $this->proxy = $proxy;
    }

    /** The proxy's next report line, or null when none comes within $timeout s. */
    private function proxyLine(float $timeout): ?string
    {
        return $this->proxy->nextReport($timeout);
    }

    private function proxyOutput(): string
    {
        return "\n" . ($this->proxy?->describe() ?? '--- TLS proxy --- (not running)');
    }

    private function certFile(): string
    {
        return self::$certDir . '/cert.pem';
    }

    /**
     * A self-signed certificate for localhost and 127.0.0.1, made once per run with the openssl command.
     * @return array{0:string,1:string} [certificate file, key file]
     */
    private function certificate(): array
    {
        if (self::$certDir === null) {
            $openssl = self::findExecutable('openssl');
            if ($openssl === null) {
                $this->fail(
                    'the openssl command-line tool is needed to make the test certificate and is not on the PATH: '
                    . 'install the Debian package "openssl" (apt-get install openssl)'
                );
            }
            $dir = sys_get_temp_dir() . '/ebats_tls_' . bin2hex(random_bytes(4));
            if (!mkdir($dir, 0700)) {
                $this->fail("cannot create $dir");
            }
            $result = Process::run([
                $openssl, 'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
                '-keyout', "$dir/key.pem", '-out', "$dir/cert.pem",
                '-subj', '/CN=localhost',
                '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
                '-days', '1',
            ], [], 60.0);
            if ($result->exitCode() !== 0 || !is_file("$dir/cert.pem") || !is_file("$dir/key.pem")) {
                @unlink("$dir/key.pem");
                @unlink("$dir/cert.pem");
                @rmdir($dir);
                $this->fail("openssl could not make the test certificate\n" . $result->describe());
            }
            self::$certDir = $dir;
        }
        return [self::$certDir . '/cert.pem', self::$certDir . '/key.pem'];
    }

    private static function findExecutable(string $name): ?string
    {
        foreach (explode(PATH_SEPARATOR, (string) getenv('PATH')) as $dir) {
            if ($dir !== '' && is_file("$dir/$name") && is_executable("$dir/$name")) {
                return "$dir/$name";
            }
        }
        return null;
    }
}
