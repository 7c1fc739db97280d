<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\EbatsTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * Issue item 11: stubs/ebats.stub.php declares exactly what the extension registers: the same classes and
 * interfaces (parent, interfaces), constants (names and values), public methods (name, static, parameter names,
 * optional, variadic, by-reference) and functions. The stub is loaded in a PHP without the extension, the
 * extension in a PHP without the stub.
 */
final class StubsTest extends EbatsTestCase
{
    protected const USES_BROKER = false;

    private static ?array $dumps = null;

    /** @return array{0:array,1:array} [stub reflection, extension reflection] */
    private function dumps(): array
    {
        if (self::$dumps !== null) {
            return self::$dumps;
        }
        $stub = TestEnv::repoRoot() . '/stubs/ebats.stub.php';
        $this->assertFileExists($stub, 'the stubs file is missing');
        $reflect = \dirname(__DIR__) . '/fixtures/reflect.php';

        $fromStub = Process::run(array_merge(TestEnv::phpCommand(false), [$reflect, 'stub', $stub]), [], 30);
        $this->assertSame(0, $fromStub->exitCode(), "the stub must load in a PHP without the extension\n" . $fromStub->describe());
        $this->assertSame('', trim($fromStub->stderr()), $fromStub->describe());
        $stubDump = $fromStub->json();
        $this->assertNotEmpty($stubDump['classes'], 'the stub declares no class');

        $names = Process::scriptFile(json_encode(['classes' => array_keys($stubDump['classes']), 'functions' => array_keys($stubDump['functions'])]));
        $fromExt = Process::run(array_merge(TestEnv::phpCommand(true), [$reflect, 'ext', $names]), [], 30);
        $this->assertSame(0, $fromExt->exitCode(), $fromExt->describe());
        $extDump = $fromExt->json();

        return self::$dumps = [$stubDump, $extDump];
    }

    public function testSameClassesAndFunctions(): void
    {
        [$stub, $ext] = $this->dumps();
        $onlyStub = array_values(array_diff(array_keys($stub['classes']), array_keys($ext['classes'])));
        $onlyExt = array_values(array_diff(array_keys($ext['classes']), array_keys($stub['classes'])));
        $this->assertSame([[], []], [$onlyStub, $onlyExt], 'classes only in the stub: ' . json_encode($onlyStub) . '; only in the extension: ' . json_encode($onlyExt));

        $onlyStub = array_values(array_diff(array_keys($stub['functions']), array_keys($ext['functions'])));
        $onlyExt = array_values(array_diff(array_keys($ext['functions']), array_keys($stub['functions'])));
        $this->assertSame([[], []], [$onlyStub, $onlyExt], 'functions only in the stub: ' . json_encode($onlyStub) . '; only in the extension: ' . json_encode($onlyExt));
    }

    public function testExpectedPublicSurfaceIsInTheStub(): void
    {
        [$stub] = $this->dumps();
        $expected = [
            'Asynclib\Ebats\Event', 'Asynclib\Ebats\Task', 'Asynclib\Ebats\EventManager', 'Asynclib\Ebats\Scheduler',
            'Asynclib\Ebats\Worker', 'Asynclib\Core\Consumer', 'Asynclib\Core\Publish', 'Asynclib\Amq\ExchangeTypes',
            'Asynclib\Exception\ExceptionInterface', 'Asynclib\Exception\RetryException', 'Asynclib\Exception\TaskException',
            'Asynclib\Exception\ServiceException', 'Asynclib\Exception\ConnectionedException',
        ];
        foreach ($expected as $class) {
            $this->assertArrayHasKey($class, $stub['classes'], "$class missing from the stub");
        }
        $this->assertArrayHasKey('ebats_config', $stub['functions'], 'ebats_config() missing from the stub');
    }

    /** Asynclib\Ebats\Consumer names the class Asynclib\Core\Consumer, in the extension and in the stub alike. */
    public function testConsumerHasASecondName(): void
    {
        $code = '<?php %s $c = new \Asynclib\Ebats\Consumer(); echo json_encode(['
            . '"class" => get_class($c), "core" => $c instanceof \Asynclib\Core\Consumer, "ebats" => $c instanceof \Asynclib\Ebats\Consumer,'
            . '"reflected" => (new \ReflectionClass("Asynclib\\Ebats\\Consumer"))->getName(), "exists" => class_exists(strtolower(\Asynclib\Ebats\Consumer::class), false)]), "\n";';
        $expected = ['class' => 'Asynclib\Core\Consumer', 'core' => true, 'ebats' => true, 'reflected' => 'Asynclib\Core\Consumer', 'exists' => true];

        $ext = Process::runPhp(sprintf($code, ''), [], 30);
        $this->assertSame(0, $ext->exitCode(), $ext->describe());
        $this->assertSame($expected, $ext->json(), 'with the extension');

        $stub = TestEnv::repoRoot() . '/stubs/ebats.stub.php';
        $fromStub = Process::runPhp(sprintf($code, 'require ' . var_export($stub, true) . ';'), [], 30, false);
        $this->assertSame(0, $fromStub->exitCode(), $fromStub->describe());
        $this->assertSame($expected, $fromStub->json(), 'from the stub');
    }

    public function testEachClassMatches(): void
    {
        [$stub, $ext] = $this->dumps();
        $problems = [];
        $compared = 0;
        foreach ($stub['classes'] as $name => $fromStub) {
            if (!isset($ext['classes'][$name])) {
                continue; // reported by testSameClassesAndFunctions
            }
            $fromExt = $ext['classes'][$name];
            foreach (['kind', 'parent', 'interfaces', 'constants'] as $aspect) {
                if ($fromExt[$aspect] !== $fromStub[$aspect]) {
                    $problems[] = "$name: $aspect differ: extension " . json_encode($fromExt[$aspect]) . ', stub ' . json_encode($fromStub[$aspect]);
                }
            }
            foreach ($fromExt['methods'] as $key => $method) {
                if (!isset($fromStub['methods'][$key])) {
                    $problems[] = "$name::{$method['name']}() is only in the extension";
                } elseif ($method !== $fromStub['methods'][$key]) {
                    $problems[] = "$name::{$method['name']}() differs: extension " . self::signature($method) . ', stub ' . self::signature($fromStub['methods'][$key]);
                }
            }
            foreach ($fromStub['methods'] as $key => $method) {
                if (!isset($fromExt['methods'][$key])) {
                    $problems[] = "$name::{$method['name']}() is only in the stub";
                }
            }
            $compared++;
        }
        $this->assertGreaterThan(0, $compared);
        $this->assertSame([], $problems, "stub and extension differ:\n" . implode("\n", $problems));
    }

    private static function signature(array $f): string
    {
        $params = array_map(
            static fn (array $p): string => ($p['by_ref'] ? '&' : '') . ($p['variadic'] ? '...' : '') . '$' . $p['name'] . ($p['optional'] ? ' = ?' : ''),
            $f['params']
        );
        return (($f['static'] ?? false) ? 'static ' : '') . $f['name'] . '(' . implode(', ', $params) . ')';
    }

    public function testFunctionsMatch(): void
    {
        [$stub, $ext] = $this->dumps();
        foreach ($stub['functions'] as $name => $fromStub) {
            if (isset($ext['functions'][$name])) {
                $this->assertSame($ext['functions'][$name], $fromStub, "function $name differs: extension " . self::signature($ext['functions'][$name]) . ', stub ' . self::signature($fromStub));
            }
        }
        $this->assertNotEmpty($stub['functions']);
    }
}
