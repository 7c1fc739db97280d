<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\ProcTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * The Debian package of scripts/package: it installs with dpkg, enables the module for the CLI and FPM
 * (no `-d extension=` anywhere), runs the demo of php/examples from its installed copy, brings the `ebats`
 * command on the PATH, and `dpkg --purge` takes every file, conf.d link and phpenmod state away again.
 *
 * The package is installed in a private mount namespace when the machine allows one: /etc/php, /usr/bin,
 * /usr/lib/php, /usr/sbin, /usr/share, /var/lib/dpkg, /var/lib/php and /var/log are overlaid there with
 * throw-away layers (and a policy-rc.d there keeps services from being restarted from inside), so dpkg
 * and the maintainer scripts run on the real system as usual, but nothing they write is
 * seen by other processes (a test run beside this one would otherwise load ebats twice, from php.ini and
 * from its `-d extension=`), and everything is gone when the namespace ends, even after a crash. Where no
 * namespace can be made, or with EBATS_TEST_PACKAGE_ON_HOST=1, the package is installed on the machine
 * itself and tearDown purges it.
 * Both ways, the test is skipped when an ebats package or a hand-installed ebats.so is already there.
 */
final class PackageTest extends ProcTestCase
{
    private const PHP_VERSION = '8.2';
    /** Directories the package or its maintainer scripts write to. */
    private const OVERLAID = ['/etc/php', '/usr/bin', '/usr/lib/php', '/usr/sbin', '/usr/share', '/var/lib/dpkg', '/var/lib/php', '/var/log'];

    private string $work = '';
    private string $phpApi = '';
    private string $extDir = '';
    /** Holder of the private mount namespace, when there is one. */
    private ?Process $namespace = null;
    /** True once dpkg was asked to install the package outside a namespace (tearDown then purges it). */
    private bool $installedOnHost = false;
    /** @var list<Process> */
    private array $demo = [];

    protected function setUp(): void
    {
        parent::setUp();
        if (!function_exists('posix_geteuid') || posix_geteuid() !== 0) {
            $this->markTestSkipped('installing a Debian package needs root');
        }
        foreach (['/usr/bin/dpkg', '/usr/bin/dpkg-deb', '/usr/bin/php' . self::PHP_VERSION, '/usr/sbin/php-fpm' . self::PHP_VERSION, '/usr/bin/php-config' . self::PHP_VERSION] as $tool) {
            if (!is_executable($tool)) {
                $this->markTestSkipped("$tool is missing: the package is for Debian's PHP " . self::PHP_VERSION . ' (CLI and FPM)');
            }
        }
        if (realpath(PHP_BINARY) !== realpath('/usr/bin/php' . self::PHP_VERSION)) {
            $this->markTestSkipped('the tests run with ' . PHP_BINARY . ', not the PHP ' . self::PHP_VERSION . ' the package is for');
        }
        $status = $this->packageStatus([]);
        if ($status !== 'not-installed') {
            $this->markTestSkipped("the package ebats is already on this machine (dpkg status '$status'): not disturbing it");
        }
        $this->phpApi = trim($this->mustRun(['php-config' . self::PHP_VERSION, '--phpapi'])->stdout());
        $this->extDir = trim($this->mustRun(['php-config' . self::PHP_VERSION, '--extension-dir'])->stdout());
        foreach ([$this->extDir . '/ebats.so', '/etc/php/' . self::PHP_VERSION . '/mods-available/ebats.ini'] as $path) {
            if (file_exists($path)) {
                $this->markTestSkipped("$path already exists (an ebats installed by hand): not disturbing it");
            }
        }
        $this->work = sys_get_temp_dir() . '/ebats_pkg_' . bin2hex(random_bytes(4));
        mkdir($this->work, 0755, true);
    }

    protected function tearDown(): void
    {
        foreach (array_reverse($this->demo) as $proc) {
            $proc->stop(5.0);
        }
        $this->demo = [];
        if ($this->namespace !== null) {
            // The namespace, its overlays and everything installed in them end with their last process.
            $this->namespace->stop(1.0);
            $this->namespace = null;
        } elseif ($this->installedOnHost && $this->packageStatus([]) !== 'not-installed') {
            $purge = Process::run(['dpkg', '--purge', 'ebats'], [], 120);
            if ($purge->exitCode() !== 0) {
                fwrite(STDERR, "warning: could not purge the package ebats after the test\n" . $purge->describe() . "\n");
            }
        }
        if ($this->work !== '' && is_dir($this->work)) {
            Process::run(['rm', '-rf', '--one-file-system', $this->work], [], 60);
        }
        parent::tearDown();
    }

    public function testPackageInstallsRunsTheDemoAndPurgesCleanly(): void
    {
        $deb = $this->buildPackage();
        $isolated = $this->isolate();
        $version = self::cargoVersion();
        $ini = '/etc/php/' . self::PHP_VERSION . '/mods-available/ebats.ini';

        // Install.
        $this->installedOnHost = !$isolated;
        $this->mustRun(['dpkg', '-i', $deb], [], 300);
        $this->assertSame('installed', $this->packageStatus($this->nsPrefix()));
        $facts = $this->facts();
        $this->assertSame(
            ['so' => true, 'ini' => true, 'bin' => true, 'stub' => true, 'readme' => true, 'examples' => true],
            array_intersect_key($facts, array_flip(['so', 'ini', 'bin', 'stub', 'readme', 'examples'])),
            'installed files: ' . json_encode($facts)
        );
        foreach (['cli', 'fpm'] as $sapi) {
            $link = '/etc/php/' . self::PHP_VERSION . "/$sapi/conf.d/20-ebats.ini";
            $this->assertSame($ini, $facts['links'][$link] ?? null, "postinst did not enable ebats for $sapi: " . json_encode($facts['links']));
        }

        // CLI and FPM load it from their ini files.
        $cli = $this->mustRun([PHP_BINARY, '--ri', 'ebats']);
        $this->assertStringContainsString('ebats support => enabled', $cli->stdout());
        $this->assertStringContainsString("version => $version", $cli->stdout());
        $this->assertSame('', trim($cli->stderr()), 'php --ri ebats warned');
        $fpm = $this->mustRun(['php-fpm' . self::PHP_VERSION, '-i']);
        $this->assertStringContainsString('Server API => FPM/FastCGI', $fpm->stdout());
        $this->assertStringContainsString('ebats support => enabled', $fpm->stdout(), 'php-fpm does not load ebats');
        $this->assertMatchesRegularExpression('/^ebats$/m', $this->mustRun(['php-fpm' . self::PHP_VERSION, '-m'])->stdout());

        // The command line, from the PATH.
        $cmd = $this->mustRun(['ebats', 'config'], static::childEnv());
        $this->assertStringContainsString(static::prefix(), $cmd->stdout(), 'ebats config does not show the prefix in force');

        $this->runDemo('/usr/share/doc/ebats/examples');

        // Purge: nothing left behind.
        $this->mustRun(['dpkg', '--purge', 'ebats'], [], 300);
        $this->assertSame('not-installed', $this->packageStatus($this->nsPrefix()));
        $facts = $this->facts();
        $this->assertSame(
            ['so' => false, 'ini' => false, 'bin' => false, 'stub' => false, 'readme' => false, 'examples' => false, 'links' => [], 'state' => []],
            array_intersect_key($facts, array_flip(['so', 'ini', 'bin', 'stub', 'readme', 'examples', 'links', 'state'])),
            'left behind after dpkg --purge: ' . json_encode($facts)
        );
        $modules = $this->mustRun([PHP_BINARY, '-m']);
        $this->assertDoesNotMatchRegularExpression('/^ebats$/m', $modules->stdout());
        $this->assertSame('', trim($modules->stderr()), 'php warns after the purge');

        if ($isolated) {
            // Nothing of it reached the machine outside the namespace.
            $this->assertSame('not-installed', $this->packageStatus([]));
            $this->assertSame([], glob('/etc/php/' . self::PHP_VERSION . '/*/conf.d/*ebats*') ?: []);
            $this->assertFileDoesNotExist($this->extDir . '/ebats.so');
        }
    }

    /** Builds the package with scripts/package into the work directory; checks its name and control fields. */
    private function buildPackage(): string
    {
        $result = $this->mustRun([TestEnv::repoRoot() . '/scripts/package'], ['EBATS_PACKAGE_DIR' => $this->work . '/dist'], 900);
        $lines = array_values(array_filter(explode("\n", trim($result->stdout()))));
        $deb = (string) end($lines);
        $arch = trim($this->mustRun(['dpkg', '--print-architecture'])->stdout());
        $version = str_replace('-', '~', self::cargoVersion());
        $this->assertSame($this->work . "/dist/ebats_{$version}_$arch.deb", $deb, "scripts/package did not print the package's path\n" . $result->describe());
        $this->assertFileExists($deb);

        $fields = $this->mustRun(['dpkg-deb', '-f', $deb, 'Package', 'Version', 'Architecture', 'Depends'])->stdout();
        $this->assertStringContainsString("Version: $version\n", $fields);
        $depends = preg_match('/^Depends: (.*)$/m', $fields, $m) ? array_map('trim', explode(',', $m[1])) : [];
        $this->assertContains('phpapi-' . $this->phpApi, $depends, $fields);
        $this->assertNotEmpty(preg_grep('/^libssl3\b/', $depends), $fields);
        $files = $this->mustRun(['dpkg-deb', '-c', $deb])->stdout();
        foreach (['.' . $this->extDir . '/ebats.so', './etc/php/' . self::PHP_VERSION . '/mods-available/ebats.ini', './usr/bin/ebats'] as $path) {
            $this->assertStringContainsString(" $path\n", $files);
        }
        return $deb;
    }

    /**
     * Makes the private mount namespace: a process (unshare) that mounts a tmpfs, overlays the directories
     * of OVERLAID with layers on it, then sleeps; commands join it with nsenter. False when the machine
     * does not allow it (no CAP_SYS_ADMIN, no overlayfs): the package then goes on the machine itself.
     */
    private function isolate(): bool
    {
        $layers = $this->work . '/layers';
        mkdir($layers);
        $script = <<<'SH'
            set -e
            layers="$1"; shift
            mount -t tmpfs ebats-package-test "$layers"
            n=0
            for dir in "$@"; do
                n=$((n + 1))
                mkdir "$layers/u$n" "$layers/w$n"
                mount -t overlay ebats-package-test -o "lowerdir=$dir,upperdir=$layers/u$n,workdir=$layers/w$n" "$dir"
            done
            # No service is started or restarted from in here (php8.2-fpm's trigger asks for a restart).
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod 0755 /usr/sbin/policy-rc.d
            echo ready
            exec sleep 86400
            SH;
        if (getenv('EBATS_TEST_PACKAGE_ON_HOST') === '1' || !is_executable('/usr/bin/unshare') || !is_executable('/usr/bin/nsenter')) {
            return false;
        }
        $holder = Process::start(
            array_merge(['unshare', '--mount', '--propagation', 'private', 'sh', '-c', $script, 'sh', $layers], self::OVERLAID),
            [],
            ['name' => 'namespace', 'stdout' => $this->work . '/namespace.out', 'stderr' => $this->work . '/namespace.err']
        );
        $ready = Process::until(static fn () => str_contains($holder->stdout(), 'ready') ?: ($holder->hasExited() ? 'exited' : false), 20, 0.02);
        if ($ready !== true) {
            $holder->stop(1.0);
            return false;
        }
        $this->namespace = $holder;
        return true;
    }

    /** Command prefix that runs a command where the package is installed. */
    private function nsPrefix(): array
    {
        return $this->namespace === null ? [] : ['nsenter', '--target', (string) $this->namespace->pid(), '--mount', '--'];
    }

    /** Runs a command where the package is installed and fails the test when it does not exit with 0. */
    private function mustRun(array $command, array $env = [], float $timeout = 60): Process
    {
        $result = Process::run(array_merge($this->nsPrefix(), $command), $env, $timeout);
        $this->assertSame(0, $result->exitCode(), $result->describe());
        return $result;
    }

    /** dpkg's status of the package ebats ('not-installed' when dpkg does not know it), run with $prefix. */
    private function packageStatus(array $prefix): string
    {
        $result = Process::run(array_merge($prefix, ['dpkg-query', '-W', '-f=${db:Status-Status}', 'ebats']), [], 60);
        return $result->exitCode() === 0 && trim($result->stdout()) !== '' ? trim($result->stdout()) : 'not-installed';
    }

    /** Which of the package's files, conf.d links and phpenmod states exist where it is installed. */
    private function facts(): array
    {
        $v = self::PHP_VERSION;
        $code = sprintf(
            <<<'PHP'
                $links = [];
                foreach (glob('/etc/php/%2$s/*/conf.d/*ebats*') ?: [] as $link) {
                    $links[$link] = is_link($link) ? readlink($link) : 'not a link';
                }
                echo json_encode([
                    'so' => file_exists('%1$s/ebats.so'),
                    'ini' => file_exists('/etc/php/%2$s/mods-available/ebats.ini'),
                    'bin' => is_executable('/usr/bin/ebats'),
                    'stub' => file_exists('/usr/share/ebats/ebats.stub.php'),
                    'readme' => file_exists('/usr/share/doc/ebats/README.md'),
                    'examples' => file_exists('/usr/share/doc/ebats/examples/worker.php'),
                    'links' => $links,
                    'state' => array_merge(glob('/var/lib/php/modules/%2$s/*/*/ebats') ?: [], glob('/var/lib/php/modules/%2$s/registry/ebats') ?: []),
                ]), "\n";
                PHP,
            $this->extDir,
            $v
        );
        return $this->mustRun([PHP_BINARY, '-n', '-r', $code])->json();
    }

    /**
     * The demo of scripts/demo with the installed examples and the installed module: a scheduler and a worker,
     * then the producer; the worker must run virtualShipping. The examples' config.php names the vhost "/":
     * an auto_prepend_file defines AMQ_VHOST first, so that the demo stays in the test's own vhost.
     */
    private function runDemo(string $examples): void
    {
        $prepend = $this->work . '/vhost.php';
        file_put_contents($prepend, '<?php define(\'AMQ_VHOST\', ' . var_export(TestEnv::vhost(), true) . ");\n");
        $php = array_merge($this->nsPrefix(), [PHP_BINARY, '-d', 'auto_prepend_file=' . $prepend]);
        $env = static::childEnv();
        foreach (['scheduler', 'worker'] as $name) {
            $this->demo[] = Process::start(
                array_merge($php, ["$examples/$name.php"]),
                $env,
                ['name' => $name, 'stdout' => "{$this->work}/$name.out", 'stderr' => "{$this->work}/$name.err"]
            );
        }
        [$scheduler, $worker] = $this->demo;
        $this->waitConsumers(static::q('events'), 1, 30, [$scheduler]);
        $this->waitConsumers(static::q('task.demo'), 1, 30, [$worker]);

        $producer = Process::run(array_merge($php, ["$examples/producer.php"]), $env, 60);
        $this->assertSame(0, $producer->exitCode(), $producer->describe());
        $this->assertStringContainsString('published order_paied', $producer->stdout());

        $line = $this->waitFor(
            static fn () => preg_match('/^.*taskname=virtualShipping .*$/m', $worker->stdout(), $m) ? $m[0] : null,
            30,
            'the installed worker running virtualShipping'
        );
        $this->assertStringContainsString('status=SUCC', $line, $worker->describe());
        // Loaded once, from the ini files: PHP warns when a module is loaded twice.
        $this->assertDoesNotMatchRegularExpression('/already loaded|PHP (Warning|Fatal error)/i', $scheduler->stderr() . $worker->stderr(), $scheduler->describe() . "\n" . $worker->describe());
    }

    protected function diagnostics(): string
    {
        $parts = [parent::diagnostics()];
        foreach ($this->demo as $proc) {
            $parts[] = $proc->describe();
        }
        return implode("\n", $parts);
    }

    private static function cargoVersion(): string
    {
        $toml = (string) file_get_contents(TestEnv::repoRoot() . '/Cargo.toml');
        self::assertMatchesRegularExpression('/^version\s*=\s*"([^"]+)"/m', $toml);
        preg_match('/^version\s*=\s*"([^"]+)"/m', $toml, $m);
        return $m[1];
    }
}
