<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\EbatsTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * Issue item 10: configuration sources, weakest first: php.ini (ebats.*) < environment (EBATS_*) < legacy
 * constants (AMQ_*, EBATS_DEBUG). Each case runs in a child PHP process with exactly the sources it names.
 */
final class ConfigTest extends EbatsTestCase
{
    private const NO_ENV = [
        'EBATS_AMQP_URL' => null,
        'EBATS_PREFIX' => null,
        'EBATS_CONNECT_TIMEOUT' => null,
        'EBATS_HEARTBEAT' => null,
        'EBATS_CONFIRM_TIMEOUT' => null,
        'EBATS_DEBUG' => null,
    ];

    /** Every php.ini setting, each different from its default (testIniSettings, testEnvironmentOverridesIni). */
    private const INI = [
        'ebats.prefix' => 'a',
        'ebats.amqp_url' => 'amqp://u1:p1secret@h1.example:1111/v1',
        'ebats.connect_timeout' => '1.5',
        'ebats.heartbeat' => '7',
        'ebats.confirm_timeout' => '4',
        'ebats.debug' => '1',
    ];
    private const KEYS = ['amqp_url', 'host', 'port', 'user', 'vhost', 'prefix', 'connect_timeout', 'heartbeat', 'confirm_timeout', 'debug', 'tls', 'version'];

    /** ebats_config() of a child with the given ini settings, environment and PHP code run first (e.g. define()s). */
    private function config(array $ini = [], array $env = [], string $before = ''): array
    {
        $code = "<?php\n$before\necho json_encode(['config' => ebats_config(), 'phpversion' => phpversion('ebats')]), \"\\n\";\n";
        $result = Process::runPhp($code, array_merge(self::NO_ENV, $env), 30, true, $ini);
        $this->assertSame(0, $result->exitCode(), $result->describe());
        $this->assertSame('', trim($result->stderr()), 'no warnings expected: ' . $result->describe());
        $out = $result->json();
        $this->assertIsArray($out['config'], $result->describe());
        foreach (self::KEYS as $key) {
            $this->assertArrayHasKey($key, $out['config'], "ebats_config() key $key");
        }
        $this->assertSame($out['phpversion'], $out['config']['version'], "ebats_config()['version'] = phpversion('ebats')");
        $out['config']['_raw'] = $result->stdout();
        return $out['config'];
    }

    public function testDefaults(): void
    {
        $c = $this->config();
        $this->assertMatchesRegularExpression('~^amqp://guest:\*\*\*@127\.0\.0\.1:5672/%2[fF]$~', $c['amqp_url']);
        $this->assertSame('127.0.0.1', $c['host']);
        $this->assertSame(5672, $c['port']);
        $this->assertSame('guest', $c['user']);
        $this->assertSame('/', $c['vhost']);
        $this->assertSame('ebats', $c['prefix']);
        $this->assertEquals(3, $c['connect_timeout']);
        $this->assertEquals(10, $c['heartbeat']);
        $this->assertEquals(10, $c['confirm_timeout']);
        $this->assertFalse((bool) $c['debug']);
        $this->assertFalse($c['tls']);
        $this->assertMatchesRegularExpression('/^\d+\.\d+\.\d+/', $c['version']);
        $this->assertStringNotContainsString(':guest@', $c['_raw'], 'the password must be masked');
    }

    public function testIniSettings(): void
    {
        $c = $this->config(self::INI);
        $this->assertSame('a', $c['prefix']);
        $this->assertSame('amqp://u1:***@h1.example:1111/v1', $c['amqp_url']);
        $this->assertSame('h1.example', $c['host']);
        $this->assertSame(1111, $c['port']);
        $this->assertSame('u1', $c['user']);
        $this->assertSame('v1', $c['vhost']);
        $this->assertEquals(1.5, $c['connect_timeout']);
        $this->assertEquals(7, $c['heartbeat']);
        $this->assertEquals(4, $c['confirm_timeout']);
        $this->assertTrue((bool) $c['debug']);
        $this->assertStringNotContainsString('p1secret', $c['_raw']);
    }

    public function testEnvironmentOverridesIni(): void
    {
        $c = $this->config(
            self::INI,
            [
                'EBATS_PREFIX' => 'b',
                'EBATS_AMQP_URL' => 'amqp://u2:p2secret@h2.example:2222/v2',
                'EBATS_CONNECT_TIMEOUT' => '2.5',
                'EBATS_HEARTBEAT' => '8',
                'EBATS_CONFIRM_TIMEOUT' => '6',
                'EBATS_DEBUG' => '0',
            ]
        );
        $this->assertSame('b', $c['prefix']);
        $this->assertSame('amqp://u2:***@h2.example:2222/v2', $c['amqp_url']);
        $this->assertSame('h2.example', $c['host']);
        $this->assertSame(2222, $c['port']);
        $this->assertSame('u2', $c['user']);
        $this->assertSame('v2', $c['vhost']);
        $this->assertEquals(2.5, $c['connect_timeout']);
        $this->assertEquals(8, $c['heartbeat']);
        $this->assertEquals(6, $c['confirm_timeout']);
        $this->assertFalse((bool) $c['debug'], 'EBATS_DEBUG=0 overrides ebats.debug=1');
        $this->assertStringNotContainsString('p1secret', $c['_raw']);
        $this->assertStringNotContainsString('p2secret', $c['_raw']);
    }

    public function testEnvironmentAloneAndPrefixOnly(): void
    {
        $c = $this->config(['ebats.prefix' => 'a'], ['EBATS_PREFIX' => 'b']);
        $this->assertSame('b', $c['prefix']);
        $c = $this->config([], ['EBATS_PREFIX' => 'only_env']);
        $this->assertSame('only_env', $c['prefix']);
        $this->assertSame('127.0.0.1', $c['host'], 'other settings keep their defaults');
    }

    public function testLegacyConstantsOverrideUrlParts(): void
    {
        $c = $this->config(
            ['ebats.amqp_url' => 'amqp://u1:p1secret@h1.example:1111/v1'],
            ['EBATS_AMQP_URL' => 'amqp://u2:p2secret@h2.example:2222/v2'],
            "define('AMQ_HOST', 'h3.example'); define('AMQ_PORT', 3333); define('AMQ_USER', 'u3'); define('AMQ_PASS', 'p3secret'); define('AMQ_VHOST', 'v3');"
        );
        $this->assertSame('h3.example', $c['host']);
        $this->assertSame(3333, $c['port']);
        $this->assertSame('u3', $c['user']);
        $this->assertSame('v3', $c['vhost']);
        $this->assertSame('amqp://u3:***@h3.example:3333/v3', $c['amqp_url']);
        foreach (['p1secret', 'p2secret', 'p3secret'] as $secret) {
            $this->assertStringNotContainsString($secret, $c['_raw'], 'passwords must be masked');
        }
    }

    public function testSomeLegacyConstantsReplaceOnlyTheirPart(): void
    {
        $c = $this->config(
            [],
            ['EBATS_AMQP_URL' => 'amqp://u2:p2secret@h2.example:2222/v2'],
            "define('AMQ_HOST', 'h3.example'); define('AMQ_PORT', '4444');"
        );
        $this->assertSame('h3.example', $c['host']);
        $this->assertSame(4444, $c['port'], 'a numeric string AMQ_PORT works');
        $this->assertSame('u2', $c['user']);
        $this->assertSame('v2', $c['vhost']);
        $this->assertSame('amqp://u2:***@h3.example:4444/v2', $c['amqp_url']);
    }

    public function testLegacyDebugConstant(): void
    {
        $c = $this->config(['ebats.debug' => '0'], ['EBATS_DEBUG' => '0'], "define('EBATS_DEBUG', true);");
        $this->assertTrue((bool) $c['debug']);
    }

    /** "Constants are read at each connection attempt": a define() after an earlier ebats_config() call still counts. */
    public function testConstantDefinedLaterIsSeen(): void
    {
        $c = $this->config(
            [],
            ['EBATS_AMQP_URL' => 'amqp://u2:p2secret@h2.example:2222/v2'],
            "\$first = ebats_config(); if (\$first['host'] !== 'h2.example') { fwrite(STDERR, 'first: ' . \$first['host']); exit(1); } define('AMQ_HOST', 'late.example');"
        );
        $this->assertSame('late.example', $c['host']);
    }

    public function testUrlForms(): void
    {
        $c = $this->config(['ebats.amqp_url' => 'amqps://u:p@tls.example/v']);
        $this->assertTrue($c['tls']);
        $this->assertSame(5671, $c['port'], 'amqps default port');
        $this->assertSame('tls.example', $c['host']);
        $this->assertSame('v', $c['vhost']);
        $this->assertStringStartsWith('amqps://u:***@tls.example', $c['amqp_url']);

        $c = $this->config(['ebats.amqp_url' => 'amqp://u:p@plain.example/my%2Fvh']);
        $this->assertFalse($c['tls']);
        $this->assertSame(5672, $c['port'], 'amqp default port');
        $this->assertSame('my/vh', $c['vhost'], 'the vhost is percent-decoded');

        $c = $this->config([], ['EBATS_AMQP_URL' => 'amqp://u:p@plain.example:5673/%2f']);
        $this->assertSame('/', $c['vhost']);
        $this->assertSame(5673, $c['port']);
    }

    /** The constants are really used to connect, not only shown: the environment points at a closed port and a missing vhost. */
    public function testLegacyConstantsAreUsedToConnect(): void
    {
        $code = sprintf(
            '<?php define("AMQ_PORT", %d); define("AMQ_VHOST", %s); echo json_encode(["id" => (new \Asynclib\Ebats\Event("legacy_conn"))->publish()]), "\n";',
            TestEnv::PORT,
            var_export(TestEnv::vhost(), true)
        );
        $result = Process::runPhp($code, static::childEnv(['EBATS_AMQP_URL' => TestEnv::amqpUrl('no_such_vhost_x', 1)]), 30);
        $this->assertSame(0, $result->exitCode(), $result->describe());
        $id = $result->json()['id'];
        $this->assertSame($id, self::body($this->expectMessage(static::q('events'))[0])['id']);
    }

    public function testWrongLegacyPasswordFailsWithoutShowingIt(): void
    {
        $code = '<?php define("AMQ_PASS", "legacy_wrong_pw"); try { (new \Asynclib\Ebats\Event("x"))->publish(); echo json_encode(["class" => null]); } '
            . 'catch (\Throwable $e) { echo json_encode(["class" => get_class($e), "message" => $e->getMessage()]); } echo "\n";';
        $result = Process::runPhp($code, static::childEnv(), 30);
        $this->assertSame(0, $result->exitCode(), $result->describe());
        $out = $result->json();
        $this->assertSame('Asynclib\Exception\ConnectionedException', $out['class'], $result->describe());
        $this->assertStringNotContainsString('legacy_wrong_pw', $result->stdout() . $result->stderr());
        $this->assertQueueEmpty(static::q('events'));
    }

    public function testPhpRiShowsVersionAndMasksPassword(): void
    {
        $version = phpversion('ebats');
        $this->assertIsString($version);

        $cmd = array_merge(TestEnv::phpCommand(true, ['ebats.amqp_url' => 'amqp://guest:ri_ini_secret@127.0.0.1:5672/%2f']), ['--ri', 'ebats']);
        $result = Process::run($cmd, self::NO_ENV, 30);
        $this->assertSame(0, $result->exitCode(), $result->describe());
        $this->assertStringContainsString($version, $result->stdout());
        $this->assertStringContainsString('***', $result->stdout());
        $this->assertStringNotContainsString('ri_ini_secret', $result->stdout() . $result->stderr(), 'php --ri must not show the ini password');

        $result = Process::run($cmd, array_merge(self::NO_ENV, ['EBATS_AMQP_URL' => 'amqp://guest:ri_env_secret@127.0.0.1:5672/%2f']), 30);
        $this->assertSame(0, $result->exitCode(), $result->describe());
        $this->assertStringContainsString($version, $result->stdout());
        $this->assertStringContainsString('***', $result->stdout());
        $this->assertStringNotContainsString('ri_env_secret', $result->stdout() . $result->stderr(), 'php --ri must not show the environment password');
        $this->assertStringNotContainsString('ri_ini_secret', $result->stdout() . $result->stderr(), 'php --ri must not show the ini password');
    }
}
