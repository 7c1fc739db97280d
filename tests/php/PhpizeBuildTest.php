<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Ebats\Tests\Lib\EbatsTestCase;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\TestEnv;

/**
 * The PECL way, in a copy of the tree (the files git knows, committed or not, in a fresh git repository):
 * phpize, ./configure --enable-ebats, make, make test, make install into a staging root; the installed
 * ebats.so loads in PHP; the build leaves `git status` clean; cargo build still works in the tree.
 *
 * cargo builds in a copy of the repository's target/ made of hard links: it starts warm (only the ebats
 * crate itself is compiled again, for its new path), and the library it links is a new file (the linker
 * and cargo replace an output, they do not write into it), so the repository's own target/release/
 * libebats.so is left as it was.
 */
final class PhpizeBuildTest extends EbatsTestCase
{
    protected const USES_BROKER = false;

    private string $work = '';

    protected function setUp(): void
    {
        parent::setUp();
        foreach (['phpize', 'php-config', 'git', 'make'] as $tool) {
            if (trim((string) shell_exec('command -v ' . escapeshellarg($tool))) === '') {
                $this->fail("$tool is not on the PATH (scripts/setup installs php8.2-dev, git and build-essential)");
            }
        }
        $this->work = sys_get_temp_dir() . '/ebats_phpize_' . bin2hex(random_bytes(4));
        mkdir($this->work, 0755, true);
    }

    protected function tearDown(): void
    {
        if ($this->work !== '' && is_dir($this->work)) {
            Process::run(['rm', '-rf', '--one-file-system', $this->work], [], 120);
        }
        parent::tearDown();
    }

    public function testPhpizeConfigureMakeInstall(): void
    {
        $root = TestEnv::repoRoot();
        $src = $this->work . '/src';
        mkdir($src);
        $files = $this->mustRun(['git', '-C', $root, 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], $root);
        $list = array_values(array_filter(explode("\0", $files->stdout()), static fn (string $f): bool => $f !== '' && is_file("$root/$f")));
        $this->assertContains('config.m4', $list);
        foreach ($list as $file) {
            @mkdir(\dirname("$src/$file"), 0755, true);
            $this->assertTrue(copy("$root/$file", "$src/$file"), "cannot copy $file");
            chmod("$src/$file", fileperms("$root/$file") & 0777);
        }
        $git = ['git', '-c', 'user.name=ebats test', '-c', 'user.email=test@localhost', '-c', 'init.defaultBranch=main'];
        $this->mustRun(array_merge($git, ['init', '-q', '.']), $src);
        $this->mustRun(array_merge($git, ['add', '-A']), $src);
        $this->mustRun(array_merge($git, ['commit', '-q', '-m', 'copy']), $src);

        // A warm target directory of hard links to the repository's (or to CARGO_TARGET_DIR's).
        $env = [];
        $cache = getenv('CARGO_TARGET_DIR') ?: "$root/target";
        if (is_dir("$cache/release")) {
            $this->mustRun(['cp', '-al', $cache, $this->work . '/target'], $this->work, [], 300);
            $env['CARGO_TARGET_DIR'] = $this->work . '/target';
        } else {
            $env['CARGO_TARGET_DIR'] = $this->work . '/target'; // cold: a full build
        }

        $phpConfig = trim((string) shell_exec('command -v php-config'));
        $this->mustRun(['phpize'], $src, $env);
        $help = $this->mustRun(['./configure', '--help'], $src, $env);
        $this->assertMatchesRegularExpression('/^\s*--enable-ebats\b/m', $help->stdout(), 'configure --help does not offer --enable-ebats');
        $configure = $this->mustRun(['./configure', '--enable-ebats', "--with-php-config=$phpConfig"], $src, $env, 300);
        $this->assertMatchesRegularExpression('/whether to enable ebats\.\.\. yes/', $configure->stdout());
        $extDir = trim($this->mustRun([$phpConfig, '--extension-dir'], $src)->stdout());
        $makefile = (string) file_get_contents("$src/Makefile");
        $this->assertMatchesRegularExpression('/^EXTENSION_DIR = ' . preg_quote($extDir, '/') . '$/m', $makefile, 'Makefile installs elsewhere than php-config --extension-dir');

        $this->mustRun(['make'], $src, $env, 1200);
        $this->assertFileExists("$src/modules/ebats.so");

        $test = $this->mustRun(['make', 'test'], $src, $env + ['NO_INTERACTION' => '1'], 300);
        $this->assertMatchesRegularExpression('/Tests passed\s*:\s*[1-9]/', $test->stdout(), $test->describe());
        $this->assertDoesNotMatchRegularExpression('/Tests failed\s*:\s*[1-9]/', $test->stdout(), $test->describe());

        $stage = $this->work . '/stage';
        $this->mustRun(['make', 'install', "INSTALL_ROOT=$stage"], $src, $env, 300);
        $installed = $stage . $extDir . '/ebats.so';
        $this->assertFileExists($installed, 'make install did not put ebats.so in the extension directory');
        $ri = Process::run([PHP_BINARY, '-n', '-d', "extension=$installed", '--ri', 'ebats'], [], 30);
        $this->assertSame(0, $ri->exitCode(), $ri->describe());
        $this->assertStringContainsString('ebats support => enabled', $ri->stdout());
        $this->assertStringContainsString('version => ' . phpversion('ebats'), $ri->stdout());
        $this->assertSame('', trim($ri->stderr()), $ri->describe());

        // The build's files are all ignored, and cargo still builds the tree as it is.
        $status = $this->mustRun(['git', 'status', '--porcelain'], $src);
        $this->assertSame('', $status->stdout(), "the phpize build leaves files git does not ignore:\n" . $status->stdout());
        $this->assertMatchesRegularExpression('/^CARGO = (\S+)$/m', $makefile);
        preg_match('/^CARGO = (\S+)$/m', $makefile, $m);
        $this->mustRun([$m[1], 'build', '--release'], $src, $env, 600);
    }

    /** Runs $command in $cwd and fails the test when it does not exit with 0. */
    private function mustRun(array $command, string $cwd, array $env = [], float $timeout = 60): Process
    {
        $cd = array_merge(['env', '-C', $cwd], array_map(static fn ($k, $v) => "$k=$v", array_keys($env), $env), $command);
        $result = Process::run($cd, [], $timeout);
        $this->assertSame(0, $result->exitCode(), $result->describe());
        return $result;
    }
}
