<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Ebats\Tests\Lib\EbatsTestCase;
use Ebats\Tests\Lib\Process;

/**
 * Issue 12, fuzzing the PHP value conversion (src/php/convert.rs) through the real extension: random values
 * of every PHP type go through Task::create() (tests/fixtures/convert_fuzz.php, seeded, the seed printed on a
 * failure; EBATS_FUZZ_SEED repeats one). A value JSON can carry is sent and arrives as it was (the task body's
 * params, decoded, equal the value's json_encode); any other value gives an exception with a one-line message,
 * never a crash or a Rust panic.
 */
final class ConvertFuzzTest extends EbatsTestCase
{
    private const COUNT = 400;

    public function testRandomValuesAreSentExactlyOrRefusedClearly(): void
    {
        $seed = (int) (getenv('EBATS_FUZZ_SEED') ?: random_int(1, 1 << 30));
        $run = Process::php(__DIR__ . '/../fixtures/convert_fuzz.php', [(string) $seed, (string) self::COUNT], static::childEnv())->wait(120);
        $context = "seed $seed (EBATS_FUZZ_SEED=$seed repeats it)\n" . $run->describe(3000);
        $this->assertSame(0, $run->exitCode(), "the fuzzing process died\n$context");
        $this->assertStringNotContainsString('panic', $run->stderr(), $context);
        $lines = array_map(static fn (string $l): array => json_decode($l, true), array_filter(explode("\n", $run->stdout())));
        $this->assertSame(['done' => self::COUNT], array_pop($lines), $context);

        $sent = [];
        foreach ($lines as $l) {
            if ($l['ok']) {
                $this->assertNotNull($l['expect'], "a value JSON cannot carry was sent: #{$l['i']}\n$context");
                $sent[$l['id']] = json_decode($l['expect'], true);
            } else {
                $this->assertFalse($l['representable'], "a value JSON can carry was refused: " . json_encode($l) . "\n$context");
                $this->assertStringNotContainsString('panic', $l['message'], $context);
                $this->assertNotSame('', $l['message']);
                $this->assertStringNotContainsString("\n", $l['message'], json_encode($l));
            }
        }
        $this->assertGreaterThan(self::COUNT / 5, count($sent), "most values are sendable\n$context");
        $this->assertGreaterThan(self::COUNT / 10, self::COUNT - count($sent), "garbage is generated too\n$context");
        foreach ($this->broker->waitMessages(static::q('task.fuzz'), count($sent), 30) as [$body]) {
            $task = self::body($body);
            $this->assertArrayHasKey($task['id'], $sent, 'a task nobody sent');
            $this->assertSame($sent[$task['id']], $task['params'], "task {$task['id']} carries its value as it was\n$context");
            unset($sent[$task['id']]);
        }
        $this->assertSame([], $sent, 'every sent task arrived');
    }
}
