<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Ebats\Tests\Lib\EbatsTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * composer.json describes the extension as PIE (the PHP Installer for Extensions) reads it: `type: php-ext`
 * and a `php-ext` section valid under the rules of PIE's schema (resources/composer-json-php-ext-schema.json
 * of php/pie, written down below), and consistent with the project: the extension name is the one the
 * module registers, the build path holds config.m4, every configure option is one config.m4 declares, and
 * this machine (Linux, non-thread-safe PHP) is among the supported ones. No network is needed.
 */
final class PieComposerTest extends EbatsTestCase
{
    protected const USES_BROKER = false;

    /** Keys of the php-ext section that PIE's schema defines. */
    private const PHP_EXT_KEYS = [
        'extension-name', 'priority', 'support-zts', 'support-nts', 'build-path',
        'download-url-method', 'override-download-url-method', 'os-families', 'os-families-exclude', 'configure-options',
    ];
    private const OS_FAMILIES = ['windows', 'bsd', 'darwin', 'solaris', 'linux', 'unknown'];
    private const DOWNLOAD_METHODS = ['composer-default', 'pre-packaged-source', 'pre-packaged-binary'];

    private static function composer(): array
    {
        $path = TestEnv::repoRoot() . '/composer.json';
        self::assertFileExists($path);
        return json_decode((string) file_get_contents($path), true, 512, JSON_THROW_ON_ERROR);
    }

    /**
     * The violations of PIE's composer.json rules in $doc, as readable messages (empty when it is valid).
     * A key of php-ext that the schema does not define is reported too: PIE would ignore a misspelt one.
     * @return list<string>
     */
    public static function violations(array $doc): array
    {
        $errors = [];
        if (!in_array($doc['type'] ?? null, ['php-ext', 'php-ext-zend'], true)) {
            $errors[] = 'type must be "php-ext" (or "php-ext-zend"), not ' . json_encode($doc['type'] ?? null);
        }
        if (!is_string($doc['name'] ?? null) || !preg_match('{^[a-z0-9]([_.-]?[a-z0-9]+)*/[a-z0-9](([_.]|-{1,2})?[a-z0-9]+)*$}', $doc['name'])) {
            $errors[] = 'name must be a Composer package name vendor/name, not ' . json_encode($doc['name'] ?? null);
        }
        $ext = $doc['php-ext'] ?? null;
        if (!is_array($ext) || ($ext !== [] && array_is_list($ext))) {
            $errors[] = 'php-ext must be an object';
            return $errors;
        }
        foreach (array_diff(array_keys($ext), self::PHP_EXT_KEYS) as $key) {
            $errors[] = "php-ext.$key is not a key of PIE's schema";
        }
        if (array_key_exists('extension-name', $ext)
            && (!is_string($ext['extension-name']) || !preg_match('/^(ext-)?[A-Za-z][A-Za-z0-9_]*$/', $ext['extension-name']))) {
            $errors[] = 'php-ext.extension-name must be an extension name (letters, digits, _), not ' . json_encode($ext['extension-name']);
        }
        if (array_key_exists('priority', $ext) && (!is_int($ext['priority']) || $ext['priority'] < 10 || $ext['priority'] > 99)) {
            $errors[] = 'php-ext.priority must be an integer from 10 to 99, not ' . json_encode($ext['priority']);
        }
        foreach (['support-zts', 'support-nts'] as $key) {
            if (array_key_exists($key, $ext) && !is_bool($ext[$key])) {
                $errors[] = "php-ext.$key must be a boolean, not " . json_encode($ext[$key]);
            }
        }
        if (array_key_exists('build-path', $ext) && $ext['build-path'] !== null && !is_string($ext['build-path'])) {
            $errors[] = 'php-ext.build-path must be a string or null, not ' . json_encode($ext['build-path']);
        }
        foreach (['download-url-method', 'override-download-url-method'] as $key) {
            if (!array_key_exists($key, $ext)) {
                continue;
            }
            $methods = is_array($ext[$key]) && array_is_list($ext[$key]) && $ext[$key] !== [] ? $ext[$key] : [$ext[$key]];
            foreach ($methods as $method) {
                if (!in_array($method, self::DOWNLOAD_METHODS, true)) {
                    $errors[] = "php-ext.$key: unknown method " . json_encode($method);
                }
            }
        }
        foreach (['os-families', 'os-families-exclude'] as $key) {
            if (!array_key_exists($key, $ext)) {
                continue;
            }
            if (!is_array($ext[$key]) || !array_is_list($ext[$key]) || $ext[$key] === []) {
                $errors[] = "php-ext.$key must be a non-empty array";
                continue;
            }
            foreach ($ext[$key] as $family) {
                if (!in_array($family, self::OS_FAMILIES, true)) {
                    $errors[] = "php-ext.$key: unknown OS family " . json_encode($family) . ' (one of ' . implode(', ', self::OS_FAMILIES) . ')';
                }
            }
        }
        if (array_key_exists('os-families', $ext) && array_key_exists('os-families-exclude', $ext)) {
            $errors[] = 'php-ext.os-families and php-ext.os-families-exclude must not both be given';
        }
        if (array_key_exists('configure-options', $ext)) {
            $options = $ext['configure-options'];
            if (!is_array($options) || !array_is_list($options)) {
                $errors[] = 'php-ext.configure-options must be an array';
                $options = [];
            }
            foreach ($options as $i => $option) {
                $where = "php-ext.configure-options[$i]";
                if (!is_array($option) || ($option !== [] && array_is_list($option))) {
                    $errors[] = "$where must be an object";
                    continue;
                }
                if (!is_string($option['name'] ?? null) || !preg_match('/^[a-zA-Z0-9][a-zA-Z0-9-_]*$/', $option['name'])) {
                    $errors[] = "$where.name is required: a flag name without the leading --, not " . json_encode($option['name'] ?? null);
                }
                if (array_key_exists('needs-value', $option) && !is_bool($option['needs-value'])) {
                    $errors[] = "$where.needs-value must be a boolean";
                }
                if (array_key_exists('description', $option) && !is_string($option['description'])) {
                    $errors[] = "$where.description must be a string";
                }
                foreach (array_diff(array_keys($option), ['name', 'needs-value', 'description']) as $key) {
                    $errors[] = "$where.$key is not a key of PIE's schema";
                }
            }
        }
        return $errors;
    }

    public function testComposerJsonFollowsPieSchema(): void
    {
        $this->assertSame([], self::violations(self::composer()), 'composer.json breaks the rules of PIE');
    }

    /** The check itself: each rule catches a broken document (so a passing check means something). */
    public function testTheCheckRejectsBrokenDocuments(): void
    {
        $good = self::composer();
        $cases = [
            'type must be' => ['type' => 'library'],
            'name must be' => ['name' => 'Ebats'],
            'php-ext must be an object' => ['php-ext' => ['ebats']],
            'extension-name must be' => ['php-ext' => ['extension-name' => 'my ext']],
            'priority must be' => ['php-ext' => ['priority' => 5]],
            'support-zts must be a boolean' => ['php-ext' => ['support-zts' => 'no']],
            'build-path must be' => ['php-ext' => ['build-path' => 1]],
            'unknown OS family' => ['php-ext' => ['os-families' => ['gnu']]],
            'os-families must be a non-empty array' => ['php-ext' => ['os-families' => []]],
            'must not both be given' => ['php-ext' => ['os-families-exclude' => ['windows']]],
            'configure-options[0].name is required' => ['php-ext' => ['configure-options' => [['name' => '--enable-ebats']]]],
            'needs-value must be a boolean' => ['php-ext' => ['configure-options' => [['name' => 'enable-ebats', 'needs-value' => 'yes']]]],
            'php-ext.extension_name is not a key' => ['php-ext' => ['extension_name' => 'ebats']],
            'unknown method' => ['php-ext' => ['download-url-method' => 'ftp']],
        ];
        foreach ($cases as $expected => $change) {
            $doc = array_replace_recursive($good, $change);
            if ($expected === 'php-ext must be an object') {
                $doc['php-ext'] = ['ebats'];
            } elseif ($expected === 'os-families must be a non-empty array') {
                $doc['php-ext']['os-families'] = [];
            }
            $found = array_filter(self::violations($doc), static fn (string $e): bool => str_contains($e, $expected));
            $this->assertNotEmpty($found, "a document with " . json_encode($change) . " must be rejected with '$expected'; got: " . json_encode(self::violations($doc)));
        }
    }

    public function testPhpExtMatchesTheProject(): void
    {
        $doc = self::composer();
        $ext = $doc['php-ext'];

        // The name PIE enables and checks after the build is the module's own name.
        $name = preg_replace('/^ext-/', '', $ext['extension-name'] ?? explode('/', $doc['name'])[1]);
        $this->assertContains($name, array_map('strtolower', get_loaded_extensions()), "the loaded extension is not called '$name'");
        $this->assertSame(phpversion('ebats'), phpversion($name));

        // PIE runs phpize in the build path: config.m4 must be there.
        $buildPath = TestEnv::repoRoot() . '/' . ($ext['build-path'] ?? '.');
        $this->assertFileExists($buildPath . '/config.m4', 'php-ext.build-path holds no config.m4');

        // Every configure option PIE may pass is one config.m4 declares.
        $m4 = (string) file_get_contents($buildPath . '/config.m4');
        preg_match_all('/PHP_ARG_(ENABLE|WITH)\(\s*\[?([a-z0-9_-]+)/i', $m4, $m, PREG_SET_ORDER);
        $declared = [];
        foreach ($m as [, $kind, $arg]) {
            $flag = str_replace('_', '-', $arg);
            array_push($declared, ...(strtoupper($kind) === 'ENABLE' ? ["enable-$flag", "disable-$flag"] : ["with-$flag", "without-$flag"]));
        }
        $this->assertContains('enable-ebats', $declared, 'config.m4 declares no --enable-ebats');
        $names = array_column($ext['configure-options'] ?? [], 'name');
        $this->assertContains('enable-ebats', $names, 'php-ext.configure-options lacks enable-ebats');
        foreach ($names as $option) {
            $this->assertContains($option, $declared, "configure option --$option is not declared by config.m4");
        }

        // PIE would install it on this machine: a supported OS family and thread-safety mode.
        $this->assertContains(strtolower(PHP_OS_FAMILY), $ext['os-families'] ?? self::OS_FAMILIES);
        $this->assertTrue($ext[PHP_ZTS ? 'support-zts' : 'support-nts'] ?? true, 'this PHP\'s thread-safety mode is marked unsupported');
        $this->assertMatchesRegularExpression('/^>=\s*8\.2$/', $doc['require']['php'] ?? '', 'require.php');
        $this->assertTrue(version_compare(PHP_VERSION, '8.2', '>='));
    }
}
