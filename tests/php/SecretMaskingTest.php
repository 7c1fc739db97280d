<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Ebats\Tests\Lib\EbatsTestCase;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\TestEnv;

/**
 * A broker URL that does not parse (or puts its user information in the wrong place) never shows its
 * password: not in exceptions, not in `php --ri ebats`, not on stderr.
 */
final class SecretMaskingTest extends EbatsTestCase
{
    protected const USES_BROKER = false;

    private const SECRET = 'S3cretPw';

    private const NO_ENV = [
        'EBATS_AMQP_URL' => null,
        'EBATS_PREFIX' => null,
        'EBATS_DEBUG' => '1',
    ];

    public function malformed(): array
    {
        $p = self::SECRET;
        return [
            'missing colon' => ["amqp//user:$p@127.0.0.1/v"],
            'one slash' => ["amqp:/user:$p@127.0.0.1/v"],
            'no slash' => ["amqp:user:$p@127.0.0.1/v"],
            'three slashes' => ["amqp:///user:$p@127.0.0.1/v"],
            'slash in the password' => ["amqp://user:pa/$p@127.0.0.1/v"],
            'hash in the password' => ["amqp://user:pa#$p@127.0.0.1/v"],
            'bad port' => ["amqp://user:$p@127.0.0.1:bad/v"],
            'port too large' => ["amqp://user:$p@127.0.0.1:99999/v"],
            'no scheme' => ["user:$p@127.0.0.1"],
            'password first' => ["$p:x@127.0.0.1"],
            'other scheme' => ["http://user:$p@127.0.0.1/"],
            'no at sign' => ["amqp://user:$p"],
            'upper case scheme, missing colon' => ["AMQP//user:$p@host"],
        ];
    }

    /** @dataProvider malformed */
    public function testExceptionsAndConfigNeverShowThePassword(string $url): void
    {
        $code = <<<'PHP'
        <?php
        $out = [];
        foreach (['config' => fn () => ebats_config(), 'publish' => fn () => (new \Asynclib\Ebats\Event('x'))->publish(),
                  'scheduler' => fn () => (new \Asynclib\Ebats\Scheduler())->run()] as $what => $f) {
            try {
                $f();
                $out[$what] = null;
            } catch (\Throwable $e) {
                $out[$what] = [get_class($e), $e->getMessage()];
            }
        }
        echo json_encode($out), "\n";
        PHP;
        foreach (['environment' => [['EBATS_AMQP_URL' => $url], []], 'php.ini' => [[], ['ebats.amqp_url' => $url]]] as $source => [$env, $ini]) {
            $result = Process::runPhp($code, array_merge(self::NO_ENV, $env), 30, true, $ini);
            $this->assertSame(0, $result->exitCode(), $result->describe());
            foreach ($result->json() as $what => $thrown) {
                $this->assertNotNull($thrown, "$what with the URL from the $source must fail\n" . $result->describe());
                $this->assertSame('Asynclib\Exception\ConnectionedException', $thrown[0], "$what ($source)");
                $this->assertStringContainsString('invalid broker URL', $thrown[1], "$what ($source)");
            }
            $this->assertStringNotContainsStringIgnoringCase(self::SECRET, $result->stdout() . $result->stderr(), "from the $source");
        }
    }

    /** @dataProvider malformed */
    public function testPhpRiNeverShowsThePassword(string $url): void
    {
        $cmd = array_merge(TestEnv::phpCommand(true), ['--ri', 'ebats']);
        $result = Process::run($cmd, array_merge(self::NO_ENV, ['EBATS_AMQP_URL' => $url]), 30);
        $this->assertSame(0, $result->exitCode(), $result->describe());
        $this->assertStringContainsString('configuration error', $result->stdout(), $result->describe());
        $this->assertStringNotContainsStringIgnoringCase(self::SECRET, $result->stdout() . $result->stderr());

        $cmd = array_merge(TestEnv::phpCommand(true, ['ebats.amqp_url' => $url]), ['--ri', 'ebats']);
        $result = Process::run($cmd, self::NO_ENV, 30);
        $this->assertSame(0, $result->exitCode(), $result->describe());
        $this->assertStringContainsString('configuration error', $result->stdout(), $result->describe());
        $this->assertStringNotContainsStringIgnoringCase(self::SECRET, $result->stdout() . $result->stderr());
    }

    public function testTheMessageStillSaysWhatIsWrong(): void
    {
        $result = Process::runPhp(
            '<?php try { ebats_config(); } catch (\Throwable $e) { echo json_encode($e->getMessage()), "\n"; }',
            array_merge(self::NO_ENV, ['EBATS_AMQP_URL' => 'amqp//user:' . self::SECRET . '@127.0.0.1/v']),
            30
        );
        $this->assertSame(
            "ebats configuration: invalid broker URL 'amqp//***@127.0.0.1/v': the URL must start with amqp:// or amqps://",
            $result->json(),
            $result->describe()
        );
    }
}
