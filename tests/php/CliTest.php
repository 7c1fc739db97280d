<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\FailedStore;
use Asynclib\Ebats\History;
use Asynclib\Ebats\Task;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\ProcTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * The command line php/bin/ebats reads its arguments strictly (an unknown option, a malformed value or a
 * wrong number of arguments is refused with exit 2, never ignored or guessed), has help, and never lets
 * text from the broker drive the terminal.
 */
final class CliTest extends ProcTestCase
{
    /** What a handler's message may carry to a terminal: a title change, a screen clear, C1 CSI, a bell. */
    private const HOSTILE = "x\e]0;owned\x07\e[2J\u{9b}31m\u{2028}\ry";

    protected function tearDown(): void
    {
        TestEnv::setEnv('EBATS_HISTORY', null);
        parent::tearDown();
    }

    private function cli(array $args, float $timeout = 30): Process
    {
        $bin = TestEnv::repoRoot() . '/php/bin/ebats';
        return Process::run(array_merge(TestEnv::phpCommand(), [$bin], $args), static::childEnv(['EBATS_HISTORY' => '1']), $timeout);
    }

    public function testHelp(): void
    {
        foreach ([['help'], ['--help'], ['-h'], ['history', '--help']] as $args) {
            $p = $this->cli($args);
            $this->assertSame(0, $p->exitCode(), $p->describe());
            $this->assertStringStartsWith('usage: ebats <command>', $p->stdout(), implode(' ', $args));
            $this->assertStringContainsString('failed:list', $p->stdout());
            $this->assertSame('', $p->stderr(), implode(' ', $args));
        }
        $p = $this->cli([]);
        $this->assertSame(2, $p->exitCode(), 'no command at all is a wrong command line');
        $this->assertStringStartsWith('usage: ebats <command>', $p->stderr());
    }

    public function testWrongCommandLinesAreRefusedWithExit2(): void
    {
        foreach ([
            [['history', '--limt=5'], 'unknown option --limt for history'],
            [['history', '--limit=abc'], "--limit must be a whole number from 1 to 1000000, got 'abc'"],
            [['history', '--limit', '0'], "--limit must be a whole number from 1 to 1000000, got '0'"],
            [['history', '--limit=5x'], "got '5x'"],
            [['history', '--limit=5', '--limit=6'], '--limit is given twice'],
            [['history', '--json=yes'], '--json takes no value'],
            [['history', '--topic'], '--topic needs a value'],
            [['history', 'extra'], 'history takes no arguments, got 1'],
            [['failed:list'], 'failed:list takes 1 argument, got 0'],
            [['failed:list', 'a', 'b'], 'failed:list takes 1 argument, got 2'],
            [['failed:list', 'demo', '--all'], 'unknown option --all for failed:list'],
            [['failed:replay', 'demo'], 'failed:replay takes a task id or --all'],
            [['failed:replay', 'demo', 'id1', '--all'], 'failed:replay takes a task id or --all'],
            [['schedules:add', '* * * * *'], 'schedules:add takes 2 arguments, got 1'],
            [['schedules:update', 'n'], 'nothing to change'],
            [['schedules:list', '--name=x'], 'unknown option --name for schedules:list'],
            [['config', '--verbose'], 'unknown option --verbose for config'],
            [['dashboard', '--listen'], '--listen needs a value'],
            [['status', '--watch=0'], '--watch takes a number of seconds'],
            [['-x'], "cannot read the option '-x'"],
            [["no\e[2Jsuch"], "unknown command 'no\\u{1b}[2Jsuch'"],
        ] as [$args, $message]) {
            $p = $this->cli($args);
            $this->assertSame(2, $p->exitCode(), implode(' ', $args) . ': ' . $p->describe());
            $this->assertStringContainsString($message, $p->stderr(), implode(' ', $args));
            $this->assertSame('', $p->stdout(), implode(' ', $args) . ' did nothing else');
        }
        // an option's value may follow it as the next word, or after =; -- ends the options
        $p = $this->cli(['failed:list', '--limit', '3', 'demo']);
        $this->assertSame(0, $p->exitCode(), $p->describe());
        $this->assertStringContainsString("nothing failed for topic 'demo'", $p->stdout());
        $p = $this->cli(['failed:list', '--limit=2', '--', 'demo']);
        $this->assertSame(0, $p->exitCode(), $p->describe());
        $this->assertStringContainsString("nothing failed for topic 'demo'", $p->stdout());
    }

    public function testTextFromTheBrokerCannotDriveTheTerminal(): void
    {
        TestEnv::setEnv('EBATS_HISTORY', '1');
        $this->startWorker(['debug' => false, 'env' => ['EBATS_HISTORY' => '1']]);
        $id = Task::create('demo', 'fail', ['message' => self::HOSTILE]);
        $this->waitFor(fn () => count(FailedStore::list('demo')) >= 1 ? true : null, 15, 'the task in the failed store');
        $this->waitFor(fn () => History::read(['id' => $id]) ?: null, 15, 'its history record');

        $escaped = 'x\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m\u{2028}\ry';
        foreach ([['failed:list', 'demo'], ['history', "--id=$id"]] as $args) {
            $p = $this->cli($args);
            $this->assertSame(0, $p->exitCode(), $p->describe());
            $out = $p->stdout();
            $this->assertStringContainsString($escaped, $out, implode(' ', $args));
            $this->assertDoesNotMatchRegularExpression('/[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xa8\xa9]/', $out, implode(' ', $args) . ' prints no control character but newlines');
        }
        foreach ([['failed:list', 'demo', '--json'], ['history', "--id=$id", '--json']] as $args) {
            $p = $this->cli($args);
            $this->assertSame(0, $p->exitCode(), $p->describe());
            $this->assertDoesNotMatchRegularExpression('/[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xa8\xa9]/', $p->stdout(), implode(' ', $args));
            // still JSON, and the message reads back whole
            $json = str_contains($args[0], 'history') ? json_decode(trim($p->stdout()), true) : json_decode($p->stdout(), true)[0]['failed'];
            $this->assertSame(self::HOSTILE, $json['message'], implode(' ', $args));
        }
    }
}
