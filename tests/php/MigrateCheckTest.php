<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Exception\TaskException;
use Ebats\Tests\Lib\ProcTestCase;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\TestEnv;

/**
 * `ebats migrate:check` (and ebats_migrate_check()): what of the original library is on the broker, what will
 * happen to each part, and a non-zero exit when something needs a hand. It changes nothing.
 */
final class MigrateCheckTest extends ProcTestCase
{
    private function cli(array $args): Process
    {
        return Process::run(array_merge(TestEnv::phpCommand(), [TestEnv::repoRoot() . '/php/bin/ebats'], $args), static::childEnv(), 30);
    }

    /** @return array<string, array<string, mixed>> the rows of ebats_migrate_check() by name */
    private static function rows(array $topics): array
    {
        return array_column(ebats_migrate_check($topics), null, 'name');
    }

    public function testTheOriginalsTopologyAndBacklogAreListedWithWhatHappensAndNothingChanges(): void
    {
        $this->legacy('topology:e1:demo,mail');
        $this->legacy('task:demo:ok', 3);
        $this->legacy('delayed:demo:ok:600000', 2);
        $this->legacy('event:e1', 4);

        $rows = self::rows(['demo', 'mail', 'absent']);
        $this->assertSame('direct', $rows[static::q('core.event')]['found']);
        $this->assertSame('direct', $rows[static::q('task.delay')]['found']);
        $this->assertStringContainsString('converted', $rows[static::q('task.delay')]['action']);
        $this->assertSame(4, $rows[static::q('events')]['messages']);
        $this->assertSame(3, $rows[static::q('demoR')]['messages']);
        $this->assertStringContainsString('once they start', $rows[static::q('demoR')]['action']);
        $this->assertSame(2, $rows[static::q('demoD')]['messages']);
        $this->assertSame(0, $rows[static::q('mailR')]['messages']);
        $this->assertArrayNotHasKey(static::q('absentR'), $rows, 'a queue that does not exist is not listed');
        $this->assertSame([], array_filter(array_column($rows, 'needs_hand')));

        $cli = $this->cli(['migrate:check', '--topics=demo,mail']);
        $this->assertSame(0, $cli->exitCode(), $cli->describe());
        $this->assertMatchesRegularExpression('/queue\s+' . preg_quote(static::q('demoR'), '/') . '\s+queue\s+3\s+0\s+run by the ebats workers/', $cli->stdout());
        $this->assertStringContainsString('nothing needs a hand', $cli->stdout());
        $json = json_decode($this->cli(['migrate:check', '--topics=demo', '--json'])->stdout(), true);
        $this->assertSame(3, array_column($json, null, 'name')[static::q('demoR')]['messages']);

        // Nothing changed: the original's exchange is still direct, its queues still hold their messages.
        $this->assertSame('direct', TestEnv::listExchanges(static::prefix())[static::q('task.delay')]['type']);
        $this->assertSame(3, $this->broker->count(static::q('demoR')));
        $this->assertSame(4, $this->broker->count(static::q('events')));
    }

    public function testAnExchangeOfATypeNeitherLibraryMakesNeedsAHand(): void
    {
        $this->broker->declareExchange(static::q('task.delay'), 'fanout');
        $cli = $this->cli(['migrate:check', '--topics=demo']);
        $this->assertSame(1, $cli->exitCode(), $cli->describe());
        $this->assertStringContainsString('NEEDS A HAND', $cli->stdout());
        $this->assertStringContainsString('delete_exchange ' . static::q('task.delay'), $cli->stdout());
        $this->assertStringContainsString('1 thing(s) need a hand', $cli->stdout());
    }

    public function testBadInputIsAClearError(): void
    {
        $cli = $this->cli(['migrate:check']);
        $this->assertSame(2, $cli->exitCode(), 'a wrong command line');
        $this->assertStringContainsString('needs --topics', $cli->stderr());
        $e = self::thrown(static fn () => ebats_migrate_check(['bad topic']));
        $this->assertInstanceOf(TaskException::class, $e);
        $cli = $this->cli(['migrate:check', '--topics=bad topic']);
        $this->assertSame(2, $cli->exitCode());
        $this->assertStringContainsString('topic', $cli->stderr());
    }
}
