<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\EventManager;
use Asynclib\Ebats\Schedules;
use Asynclib\Exception\TaskException;
use Ebats\Tests\Lib\CronTestCase;
use Ebats\Tests\Lib\Process;

/**
 * Periodic schedules against what an unlucky operator or anyone allowed to publish on the vhost can do: an
 * unreadable first record, a scheduler that declares nothing, writers whose clocks are off, adds that race,
 * forged firing records, a paused leader. Records are written straight to the stream where a test needs a
 * writer's clock or a record that ebats itself would never write.
 */
final class CronHardeningTest extends CronTestCase
{
    private function startCron(string $name, array $schedules, ?string $owner = null, array $env = []): Process
    {
        $env += ['EBATS_T_CRON' => json_encode($schedules), 'EBATS_HEARTBEAT' => '2'];
        if ($owner !== null) {
            $env['EBATS_T_CRON_OWNER'] = $owner;
        }
        return $this->startFixture($name, 'cron_scheduler.php', $env);
    }

    private static function every(string $name, string $event = 'h.tick', int $catchup = 60): array
    {
        return ['* * * * * *', $event, [], ['name' => $name, 'timezone' => 'UTC', 'catchup' => $catchup]];
    }

    /** Declares the stream as ebats does, so a record can be its first message. */
    private function declareStream(): void
    {
        $q = new \AMQPQueue($this->broker->channel());
        $q->setName(static::q('cron'));
        $q->setFlags(AMQP_DURABLE);
        $q->setArguments(['x-queue-type' => 'stream', 'x-max-age' => '7D', 'x-stream-max-segment-size-bytes' => 16 * 1024 * 1024]);
        $q->declareQueue();
    }

    /** Appends a message to the stream as any client allowed to publish could. */
    private function writeStream(string $body, array $headers = []): void
    {
        $this->broker->publish('', static::q('cron'), $body, ['delivery_mode' => 2, 'headers' => $headers]);
    }

    private function writeRecord(string $type, int $atMs, array $fields): void
    {
        $this->writeStream(json_encode(['v' => 1, 'type' => $type, 'at' => $atMs] + $fields));
    }

    private static function nowMs(): int
    {
        return (int) floor(microtime(true) * 1000);
    }

    /** The event id of a firing (UUIDv5 of "<name> <tick>" under ebats's firing namespace, 32 hex digits). */
    private static function eventId(string $schedule, int $tick): string
    {
        $hash = sha1(hex2bin('398d159273bd4a1a953701d739bbe2a1') . "$schedule $tick", true);
        $hash[6] = chr((ord($hash[6]) & 0x0f) | 0x50);
        $hash[8] = chr((ord($hash[8]) & 0x3f) | 0x80);
        return bin2hex(substr($hash, 0, 16));
    }

    public function testEventIdsAgreeWithTheExtension(): void
    {
        // Pinned in src/cron/firing.rs.
        $this->assertSame('dab74d306fae5f9d8486286897e7e3aa', self::eventId('nightly', 1_782_000_000_000));
    }

    /** Issue 18 item 4. */
    public function testAnUnreadableFirstRecordDoesNotStopCron(): void
    {
        $this->declareStream();
        $this->writeStream('this is not a record');
        $this->assertSame([], Schedules::list(), 'the stream is read from its start');

        $proc = $this->startCron('cron', [self::every('after_junk')]);
        $this->waitFor(fn () => self::leads($proc) ?: null, 20, 'the scheduler leads' . "\n" . $proc->describe());
        $this->waitFor(fn () => count($this->firingsOf('after_junk')) >= 3 ?: null, 6, 'firings' . "\n" . $proc->describe());
        $this->assertStringContainsString('skipping a message of the schedule stream at offset 0', $proc->stderr());
        $this->assertArrayHasKey('after_junk', self::list());
        $this->assertSame(1, substr_count($proc->stderr(), 'cron: took over the leadership'), $proc->stderr());

        // Given back on a stop: one token, not one per attempt.
        $this->assertSame(0, $proc->stop(5.0), $proc->describe());
        $this->assertSame(1, $this->broker->count(static::q('cron.leader')), 'tokens waiting');
        // A scheduler that starts while a token waits adds none.
        $again = $this->startCron('again', []);
        $this->waitFor(fn () => self::leads($again) ?: null, 20, 'the second scheduler leads');
        $this->assertSame(0, $again->stop(5.0), $again->describe());
        $this->assertSame(1, $this->broker->count(static::q('cron.leader')), 'tokens waiting after a second scheduler');
    }

    /** Issue 18 item 5: a scheduler that declares nothing does not take the others' schedules away. */
    public function testASchedulerDeclaringNothingLeavesTheOthersSchedules(): void
    {
        $a = $this->startCron('a', [self::every('x')]);
        $this->waitFor(fn () => self::leads($a) ?: null, 20, 'A leads');
        $b = $this->startCron('b', []);
        $this->waitFor(fn () => str_contains($b->stderr(), 'cron: taking part in leadership') ?: null, 20, 'B takes part');
        $this->waitFor(fn () => count($this->firingsOf('x')) >= 2 ?: null, 5, 'x fires');

        // A restarts, as in a deploy: B leads meanwhile.
        $this->assertSame(0, $a->stop(5.0), $a->describe());
        $this->waitFor(fn () => self::leads($b) ?: null, 5, 'B takes over');
        $n = count($this->firingsOf('x'));
        $this->waitFor(fn () => count($this->firingsOf('x')) >= $n + 3 ?: null, 6, 'x fires while B leads' . "\n" . $b->describe());
        $a = $this->startCron('a2', [self::every('x')]);
        $this->waitFor(fn () => str_contains($a->stderr(), 'cron: taking part in leadership') ?: null, 20, 'A is back');
        $n = count($this->firingsOf('x'));
        $this->waitFor(fn () => count($this->firingsOf('x')) >= $n + 3 ?: null, 6, 'x fires after the restart');
        $this->assertSame('code', self::list()['x']['source']);

        $ticks = array_map(static fn (array $f): int => $f['tick'], $this->firingsOf('x'));
        $this->assertSame(count($ticks), count(array_unique($ticks)), 'no tick fired twice');
    }

    /** Issue 18 item 5: with an owner, an application's set replaces its own set only. */
    public function testAnOwnersSetReplacesItsOwnSetOnly(): void
    {
        $this->startCron('app1', [self::every('o1x'), self::every('o1y')], 'app1');
        $this->startCron('app2', [self::every('o2z')], 'app2');
        $this->waitFor(fn () => count(array_intersect(['o1x', 'o1y', 'o2z'], array_keys(self::list()))) === 3 ?: null, 20, 'both sets listed');
        $this->stopAll();

        // app1 deploys a version without o1y; a script without an owner declares nothing.
        $p = $this->startCron('app1v2', [self::every('o1x')], 'app1');
        $this->startCron('script', []);
        $this->waitFor(fn () => !isset(self::list()['o1y']) ?: null, 20, 'o1y is gone with app1\'s new set');
        $this->assertEqualsCanonicalizing(['o1x', 'o2z'], array_keys(self::list()));
        $this->waitFor(fn () => count($this->firingsOf('o2z')) >= 2 ?: null, 20, "app2's schedule fires" . "\n" . $p->describe());

        $e = self::thrown(fn () => EventManager::cronOwner('not valid'));
        $this->assertInstanceOf(TaskException::class, $e);
        $this->assertStringContainsString("cron owner 'not valid' is invalid", $e->getMessage());
    }

    /** Issue 18 item 7: the leader times changes by its own clock. */
    public function testWritersClocksDoNotDelayOrDropChanges(): void
    {
        $proc = $this->startCron('cron', []);
        $this->waitFor(fn () => self::leads($proc) ?: null, 20, 'the scheduler leads');

        // An add from a client 600 s ahead fires at once.
        $def = ['name' => 'ahead', 'expression' => '* * * * * *', 'event' => 'h.ahead', 'options' => [], 'timezone' => 'UTC', 'catchup' => 60];
        $this->writeRecord('add', self::nowMs() + 600_000, ['schedule' => $def]);
        $first = $this->waitFor(fn () => $this->firingsOf('ahead') ?: null, 3, 'the add from a clock ahead fires' . "\n" . $proc->describe());
        $this->assertSame('h.ahead', $first[0]['event']);

        // So does a resume.
        $this->afterLeaderReads($proc, 'pause', static fn () => Schedules::pause('ahead'));
        $n = count($this->firingsOf('ahead'));
        $this->writeRecord('resume', self::nowMs() + 600_000, ['name' => 'ahead']);
        $this->waitFor(fn () => count($this->firingsOf('ahead')) > $n ?: null, 3, 'the resume from a clock ahead fires');

        // A trigger from a client 120 s behind (catch-up 60) fires.
        Schedules::pause('ahead');
        $id = bin2hex(random_bytes(16));
        $this->writeRecord('trigger', self::nowMs() - 120_000, ['name' => 'ahead', 'id' => $id]);
        $this->waitFor(fn () => array_filter($this->firingsOf('ahead'), static fn ($f) => $f['trigger'] === $id) ?: null, 3, 'the trigger from a clock behind fires' . "\n" . $proc->describe());
        $this->assertStringNotContainsString('skipped the trigger', $proc->stderr());
    }

    /** Issue 18 item 8: of concurrent adds of one name, exactly one succeeds; the others are told. */
    public function testConcurrentAddsOfOneNameTellTheTruth(): void
    {
        $start = microtime(true) + 2.0;
        $code = <<<'PHP'
            <?php
            time_sleep_until((float) $argv[1]);
            try {
                \Asynclib\Ebats\Schedules::add('@hourly', 'race.' . $argv[2], [], ['name' => 'race', 'timezone' => 'UTC']);
                echo "ok\n";
            } catch (\Asynclib\Exception\TaskException $e) {
                echo 'refused: ', $e->getMessage(), "\n";
            }
            PHP;
        $file = Process::scriptFile($code);
        $procs = [];
        for ($i = 0; $i < 6; $i++) {
            $procs[$i] = Process::php($file, [sprintf('%.3f', $start), (string) $i], static::childEnv());
        }
        $won = [];
        foreach ($procs as $i => $p) {
            $p->wait(30.0);
            $this->assertSame(0, $p->exitCode(), $p->describe());
            if (trim($p->stdout()) === 'ok') {
                $won[] = $i;
            } else {
                $this->assertStringContainsString("refused: a schedule named 'race' exists already", $p->stdout());
            }
        }
        $this->assertCount(1, $won, 'exactly one add succeeds');
        $this->assertSame('race.' . $won[0], self::list()['race']['event'], 'the one told it succeeded is the one kept');

        // An update after a remove is refused, and a remove of a removed schedule too.
        Schedules::remove('race');
        $e = self::thrown(fn () => Schedules::update('race', ['event' => 'late']));
        $this->assertStringContainsString("no schedule is named 'race'", (string) $e?->getMessage());
        $e = self::thrown(fn () => Schedules::remove('race'));
        $this->assertStringContainsString("no schedule is named 'race'", (string) $e?->getMessage());
    }

    /** Issue 18 item 9: a forged firing record does not stop a schedule; remove forgets. */
    public function testAForgedFiringDoesNotDisableASchedule(): void
    {
        $proc = $this->startCron('cron', []);
        $this->waitFor(fn () => self::leads($proc) ?: null, 20, 'the scheduler leads');
        Schedules::add('* * * * * *', 'h.forged', [], ['name' => 'forged', 'timezone' => 'UTC']);
        $this->waitFor(fn () => $this->firingsOf('forged') ?: null, 3, 'it fires');

        $tick = 4_102_444_800_000; // 2100-01-01
        $record = ['v' => 1, 'schedule' => 'forged', 'tick' => $tick, 'fired_at' => self::nowMs(), 'late' => false, 'event_id' => self::eventId('forged', $tick)];
        $this->writeStream('{}', ['x-ebats-cron' => json_encode($record)]);
        $this->waitFor(fn () => str_contains($proc->stderr(), "ignoring a firing of 'forged'") ?: null, 5, 'the leader reads the forged firing and ignores it' . "\n" . $proc->describe());
        $n = count($this->firingsOf('forged'));
        $this->waitFor(fn () => count($this->firingsOf('forged')) >= $n + 3 ?: null, 5, 'it still fires' . "\n" . $proc->describe());
        $this->assertStringNotContainsString('2100', (string) self::list()['forged']['last_tick']);

        // A new leader reading the stream ignores it too.
        $this->assertSame(0, $proc->stop(5.0));
        $proc = $this->startCron('cron2', []);
        $this->waitFor(fn () => self::leads($proc) ?: null, 20, 'the new scheduler leads');
        $n = count($this->firingsOf('forged'));
        $this->waitFor(fn () => count($this->firingsOf('forged')) >= $n + 2 ?: null, 6, 'it fires after a restart');

        // Removed and added again: nothing of the old one is left.
        Schedules::remove('forged');
        Schedules::add('@yearly', 'h.forged', [], ['name' => 'forged', 'timezone' => 'UTC']);
        $fresh = self::list()['forged'];
        $this->assertNull($fresh['last_tick'], 'a re-added name starts afresh');
    }

    /** Issue 18 item 12: a paused (SIGSTOP) leader is replaced within the bound the README states. */
    public function testAPausedLeaderIsReplacedWithinTheStatedBound(): void
    {
        $a = $this->startCron('a', [self::every('stopped')], null, ['EBATS_HEARTBEAT' => '3']);
        $this->waitFor(fn () => self::leads($a) ?: null, 20, 'A leads');
        $b = $this->startCron('b', [self::every('stopped')], null, ['EBATS_HEARTBEAT' => '3']);
        $this->waitFor(fn () => str_contains($b->stderr(), 'cron: taking part in leadership') ?: null, 20, 'B takes part');
        $this->waitFor(fn () => count($this->firingsOf('stopped')) >= 2 ?: null, 5, 'firings');

        $a->signal(SIGSTOP);
        $stoppedAt = microtime(true);
        try {
            $this->waitFor(fn () => self::leads($b) ?: null, 15, 'B takes over from the paused leader');
            $took = microtime(true) - $stoppedAt;
        } finally {
            $a->signal(SIGCONT);
        }
        fwrite(STDERR, sprintf("\n[cron] takeover after SIGSTOP at a 3 s heartbeat: %.1f s\n", $took));
        // The README: within the heartbeat timeout (3 s here); half a second more for the test's polling
        // and the new leader's reading of the stream.
        $this->assertLessThan(3.5, $took, 'takeover after SIGSTOP');
        $n = count($this->firingsOf('stopped'));
        $this->waitFor(fn () => count($this->firingsOf('stopped')) >= $n + 2 ?: null, 5, 'B fires');
        // A, resumed, finds its connection closed (and says so) and must not fire.
        $this->waitFor(fn () => preg_match('/cron: .*; (trying again in|not trying again)/', $a->stderr()) ?: null, 15, 'A, resumed, sees its connection gone' . "\n" . $a->describe());
        $ticks = array_map(static fn (array $f): int => $f['tick'], $this->firingsOf('stopped'));
        $this->assertSame(count($ticks), count(array_unique($ticks)), 'no tick fired twice');
    }
}
