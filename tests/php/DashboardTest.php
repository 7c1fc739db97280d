<?php

declare(strict_types=1);

namespace Ebats\Tests;

use Asynclib\Ebats\Dashboard;
use Asynclib\Ebats\Group;
use Asynclib\Ebats\History;
use Asynclib\Ebats\Limits;
use Asynclib\Ebats\Task;
use Asynclib\Ebats\Topics;
use Asynclib\Ebats\Worker;
use Asynclib\Exception\ExceptionInterface;
use Ebats\Tests\Lib\Browser;
use Ebats\Tests\Lib\Process;
use Ebats\Tests\Lib\ProcTestCase;
use Ebats\Tests\Lib\TestEnv;

/**
 * The dashboard in a real headless Chromium (WebDriver), against a running worker, a cron scheduler and the
 * broker. Screenshots go to target/screenshots/dashboard-*.png.
 */
final class DashboardTest extends ProcTestCase
{
    private const TOKEN = 'test-token-0123456789';
    private ?Browser $browser = null;

    protected function tearDown(): void
    {
        $this->browser?->close();
        $this->browser = null;
        parent::tearDown();
        $this->broker->deleteQueue(static::q('cron'));
        $this->broker->deleteQueue(static::q('cron.leader'));
    }

    private static function shot(string $name): string
    {
        return TestEnv::repoRoot() . "/target/screenshots/dashboard-$name.png";
    }

    /** Starts `ebats dashboard` with $args; returns its base URL. */
    private function startDashboard(array $args, string $name = 'dashboard'): string
    {
        $bin = TestEnv::repoRoot() . '/php/bin/ebats';
        $proc = $this->startFixture($name, '../../php/bin/ebats', [], array_merge(['dashboard', '--listen', '127.0.0.1:0'], $args));
        $url = $this->waitFor(
            fn () => preg_match('~listening on (http://\S+/)~', $proc->stdout(), $m) ? $m[1] : null,
            15,
            "the dashboard starts\n" . $proc->describe()
        );
        $this->assertFileExists($bin);
        return $url;
    }

    /** @return array{0:int,1:array<string,string>,2:string} status, headers (lower-case names), body */
    private static function http(string $method, string $url, array $headers = [], string $body = ''): array
    {
        $h = '';
        foreach ($headers as $k => $v) {
            $h .= "$k: $v\r\n";
        }
        $ctx = stream_context_create(['http' => ['method' => $method, 'header' => $h, 'content' => $body, 'ignore_errors' => true, 'timeout' => 20]]);
        $out = (string) @file_get_contents($url, false, $ctx);
        $status = 0;
        $hs = [];
        foreach ($http_response_header ?? [] as $line) {
            if (preg_match('~^HTTP/\S+ (\d+)~', $line, $m)) {
                $status = (int) $m[1];
            } elseif (str_contains($line, ':')) {
                [$k, $v] = explode(':', $line, 2);
                $hs[strtolower($k)] = trim($v);
            }
        }
        return [$status, $hs, $out];
    }

    private function browser(): Browser
    {
        return $this->browser ??= new Browser($this->tmp);
    }

    public function testRefusesToStartUnsafelyOrWithBadOptions(): void
    {
        foreach ([
            [['listen' => '0.0.0.0:0', 'topics' => ['demo']], 'not a loopback address'],
            [['listen' => 'nowhere', 'topics' => ['demo']], 'invalid dashboard address'],
            [['listen' => 'no-such-host.invalid:8080', 'topics' => ['demo']], "invalid dashboard address 'no-such-host.invalid:8080': "],
            [['topics' => ['demo'], 'token' => 'short'], 'at least 16'],
            [['topics' => ['bad topic']], 'topic'],
            [['topics' => ['demo'], 'metrics' => ['x']], 'invalid metrics address'],
            [['topics' => ['demo'], 'colour' => 'red'], "unknown dashboard option 'colour'"],
        ] as [$options, $message]) {
            $e = self::thrown(fn () => new Dashboard($options));
            $this->assertInstanceOf(ExceptionInterface::class, $e, json_encode($options));
            $this->assertStringContainsString($message, $e->getMessage());
        }
        $ok = new Dashboard(['listen' => '0.0.0.0:0', 'topics' => ['demo'], 'token' => self::TOKEN]);
        $this->assertMatchesRegularExpression('~^http://0\.0\.0\.0:\d+/$~', $ok->listen(), 'with a token, any address');

        $cli = Process::run(array_merge(TestEnv::phpCommand(), [TestEnv::repoRoot() . '/php/bin/ebats', 'dashboard', '--listen', '0.0.0.0:0', '--topics=demo']), static::childEnv(), 20);
        $this->assertSame(2, $cli->exitCode());
        $this->assertStringContainsString('not a loopback address: give a token', $cli->stderr());
    }

    public function testRequestsAreCheckedAndAnswersSecured(): void
    {
        $url = $this->startDashboard(['--topics=demo']);
        [$status, $h, $page] = self::http('GET', $url);
        $this->assertSame(200, $status);
        $this->assertStringContainsString("script-src 'self'", $h['content-security-policy']);
        $this->assertStringContainsString("frame-ancestors 'none'", $h['content-security-policy']);
        $this->assertSame('DENY', $h['x-frame-options']);
        $this->assertMatchesRegularExpression('~name="csrf-token" content="([0-9a-f]{64})"~', $page);
        preg_match('~name="csrf-token" content="([0-9a-f]{64})"~', $page, $m);
        $csrf = $m[1];

        $purge = $url . 'api/failed/purge';
        $json = ['Content-Type' => 'application/json'];
        $this->assertSame(403, self::http('POST', $purge, $json, '{"topic":"demo"}')[0], 'no CSRF token');
        $this->assertSame(403, self::http('POST', $purge, $json + ['X-CSRF-Token' => str_repeat('0', 64)], '{"topic":"demo"}')[0], 'wrong CSRF token');
        $this->assertSame(403, self::http('POST', $purge, $json + ['X-CSRF-Token' => $csrf, 'Origin' => 'http://evil.example'], '{"topic":"demo"}')[0], 'another origin');
        $this->assertSame(403, self::http('GET', $url . 'api/state', ['Host' => 'rebound.example'])[0], 'a Host that is not loopback');
        [$status, , $body] = self::http('POST', $purge, $json + ['X-CSRF-Token' => $csrf], '{"topic":"other"}');
        $this->assertSame(404, $status, 'only topics the dashboard shows: ' . $body);
        [$status, , $body] = self::http('POST', $purge, $json + ['X-CSRF-Token' => $csrf], '{"topic":"demo"}');
        $this->assertSame(200, $status, $body);
        $this->assertSame(['purged' => 0], json_decode($body, true));
        $this->assertSame(405, self::http('PUT', $url . 'api/state')[0]);
        $this->assertSame(413, self::http('POST', $purge, $json + ['X-CSRF-Token' => $csrf], str_repeat('x', 70000))[0]);

        $this->stopAll();
        $url = $this->startDashboard(['--topics=demo', '--token=' . self::TOKEN], 'dashboard-token');
        $this->assertSame(401, self::http('GET', $url . 'api/state')[0], 'no token');
        $this->assertSame(200, self::http('GET', $url . 'api/state', ['Authorization' => 'Bearer ' . self::TOKEN])[0]);
        $b = $this->browser();
        $b->open($url . '?token=' . self::TOKEN);
        $b->waitFor(fn () => $b->text('#ov-topics tbody tr td'), 15, 'the page loads after the token cookie is set');
        $this->assertSame('demo', $b->text('#ov-topics tbody tr td'));
        $this->assertStringNotContainsString('token', (string) $b->js('return location.href'), 'the token leaves the address bar');
    }

    /** @return array{0:int,1:float,2:string} status (0: no answer within 3 s), seconds taken, raw answer of $request */
    private static function raw(string $url, string $request): array
    {
        $addr = parse_url($url, PHP_URL_HOST) . ':' . parse_url($url, PHP_URL_PORT);
        $t0 = microtime(true);
        $s = @stream_socket_client("tcp://$addr", $errno, $err, 3);
        if ($s === false) {
            return [0, microtime(true) - $t0, ''];
        }
        stream_set_timeout($s, 3);
        fwrite($s, str_replace('{addr}', $addr, $request));
        $raw = (string) stream_get_contents($s);
        fclose($s);
        return [preg_match('~^HTTP/1\.1 (\d+)~', $raw, $m) ? (int) $m[1] : 0, microtime(true) - $t0, $raw];
    }

    /**
     * 100 unauthenticated connections trickling a byte every 1.5 s do not make authorised requests fail: each is
     * answered 200 within 2 s (a held dashboard answers 503 or not at all), again and again while they trickle.
     */
    public function testSlowClientsCannotHoldIt(): void
    {
        $proc = $this->startFixture('dashboard', '../../php/bin/ebats', ['EBATS_DASHBOARD_TOKEN' => self::TOKEN], ['dashboard', '--listen', '127.0.0.1:0', '--topics=demo']);
        $url = $this->waitFor(fn () => preg_match('~listening on (http://\S+/)~', $proc->stdout(), $m) ? $m[1] : null, 15, "the dashboard starts\n" . $proc->describe());
        $addr = parse_url($url, PHP_URL_HOST) . ':' . parse_url($url, PHP_URL_PORT);
        $trickle = $this->startFixture('trickle', 'trickle.php', [], [$addr, '100', '1.5']);
        $this->waitFor(static fn () => str_contains($trickle->stdout(), "open 100\n") && str_contains($trickle->stdout(), "sent 2\n") ? true : null, 30, "100 trickling connections\n" . $trickle->describe());
        $get = "GET /api/state HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer " . self::TOKEN . "\r\n\r\n";
        $answers = [];
        $until = microtime(true) + 8;
        while (microtime(true) < $until) {
            $answers[] = self::raw($url, $get);
            usleep(200000);
        }
        $this->assertStringContainsString("sent 5\n", $trickle->stdout(), 'the slow clients kept trickling meanwhile');
        $this->assertGreaterThanOrEqual(10, count($answers));
        $this->assertSame([200], array_values(array_unique(array_column($answers, 0))), 'every authorised request answered 200');
        $this->assertLessThan(2.0, max(array_column($answers, 1)), 'the slowest authorised request');
        // Without the token, a request is answered 401 at once.
        $this->assertSame(401, self::raw($url, "GET /api/state HTTP/1.1\r\nHost: {addr}\r\n\r\n")[0]);
    }

    /**
     * Tokens: from a file (--token-file) or the environment, never needing the command line; a token with `+`
     * as `?token=`; `Authorization: bearer` in any case; checked on the head before any body is read; a head
     * of 8 KiB accepted and one byte more refused with 431.
     */
    public function testTokens(): void
    {
        $token = 'tok+en/0123456789=';
        file_put_contents("{$this->tmp}/token", "$token\n");
        $url = $this->startDashboard(['--topics=demo', "--token-file={$this->tmp}/token"], 'dashboard-file');
        $state = "GET /api/state HTTP/1.1\r\nHost: {addr}\r\n";
        $this->assertSame(401, self::raw($url, "$state\r\n")[0], 'no token');
        foreach (['Bearer', 'bearer', 'BEARER'] as $scheme) {
            $this->assertSame(200, self::raw($url, "{$state}Authorization: $scheme $token\r\n\r\n")[0], $scheme);
        }
        $this->assertSame(401, self::raw($url, "{$state}Authorization: Basic $token\r\n\r\n")[0]);
        $this->assertSame(401, self::raw($url, "{$state}Authorization: Bearer tok en/0123456789=\r\n\r\n")[0]);
        // As ?token=: typed with its '+', or with %2B; the answer sets the cookie and sends the browser to /.
        foreach (['tok+en/0123456789=', 'tok%2Ben%2F0123456789%3D', rawurlencode($token)] as $typed) {
            [$status, , $raw] = self::raw($url, "GET /?token=$typed HTTP/1.1\r\nHost: {addr}\r\n\r\n");
            $this->assertSame(303, $status, $typed);
            $this->assertStringContainsString("Set-Cookie: ebats_dashboard=$token;", $raw);
        }
        $this->assertSame(200, self::raw($url, "{$state}Cookie: ebats_dashboard=$token\r\n\r\n")[0]);
        $this->assertSame(401, self::raw($url, "GET /?token=tok-en/0123456789= HTTP/1.1\r\nHost: {addr}\r\n\r\n")[0]);

        // The token is checked on the head: a POST without it is answered before its (never sent) body.
        [$status, $took] = self::raw($url, "POST /api/failed/purge HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 1000\r\n\r\n");
        $this->assertSame(401, $status);
        $this->assertLessThan(1.0, $took);

        // A head of exactly 8 KiB is read; one byte more is refused.
        $addr = parse_url($url, PHP_URL_HOST) . ':' . parse_url($url, PHP_URL_PORT);
        $head = static function (int $len) use ($state, $token, $addr): string {
            $h = "{$state}Authorization: Bearer $token\r\nX-Pad: ";
            $h .= str_repeat('a', $len - strlen(str_replace('{addr}', $addr, $h)) - 4) . "\r\n\r\n";
            self::assertSame($len, strlen(str_replace('{addr}', $addr, $h)));
            return $h;
        };
        $this->assertSame(200, self::raw($url, $head(8192))[0], '8192-byte head');
        $this->assertSame(431, self::raw($url, $head(8193))[0], '8193-byte head');
        $this->assertSame(431, self::raw($url, $head(9000))[0], '9000-byte head');

        // The environment.
        $proc = $this->startFixture('dashboard-env', '../../php/bin/ebats', ['EBATS_DASHBOARD_TOKEN' => $token], ['dashboard', '--listen', '127.0.0.1:0', '--topics=demo']);
        $envUrl = $this->waitFor(fn () => preg_match('~listening on (http://\S+/)~', $proc->stdout(), $m) ? $m[1] : null, 15, "the dashboard starts\n" . $proc->describe());
        $this->assertSame(200, self::raw($envUrl, "{$state}Authorization: Bearer $token\r\n\r\n")[0]);
        $this->assertSame(401, self::raw($envUrl, "$state\r\n")[0]);

        // --help says where the token is seen; a bad token file is a clear error.
        $ebats = array_merge(TestEnv::phpCommand(), [TestEnv::repoRoot() . '/php/bin/ebats']);
        $help = Process::run(array_merge($ebats, ['--help']), static::childEnv(), 20);
        $this->assertStringContainsString('/proc/<pid>/cmdline', $help->stdout() . $help->stderr());
        $this->assertStringContainsString('--token-file=F', $help->stdout() . $help->stderr());
        $cli = Process::run(array_merge($ebats, ['dashboard', '--listen', '127.0.0.1:0', '--topics=demo', "--token-file={$this->tmp}/none"]), static::childEnv(), 20);
        $this->assertSame(2, $cli->exitCode(), $cli->describe());
        $this->assertStringContainsString("cannot read the dashboard token file '{$this->tmp}/none'", $cli->stderr());
        file_put_contents("{$this->tmp}/empty", "\n");
        foreach ([
            [['token_file' => "{$this->tmp}/empty"], 'is empty'],
            [['token' => $token, 'token_file' => "{$this->tmp}/token"], "'token' or 'token_file', not both"],
            [['token_file' => 5], "'token_file' must be a string"],
        ] as [$options, $message]) {
            $e = self::thrown(fn () => new Dashboard($options + ['topics' => ['demo']]));
            $this->assertInstanceOf(ExceptionInterface::class, $e, json_encode($options));
            $this->assertStringContainsString($message, $e->getMessage());
        }
        $ok = new Dashboard(['listen' => '0.0.0.0:0', 'topics' => ['demo'], 'token_file' => "{$this->tmp}/token"]);
        $this->assertMatchesRegularExpression('~^http://0\.0\.0\.0:\d+/$~', $ok->listen(), 'a token from a file allows any address');
    }

    public function testBrowserShowsTheFiguresAndReplaysAFailedTaskShowingItsParamsAsText(): void
    {
        $metrics = '127.0.0.1:' . self::freePort();
        $this->startWorker(['env' => ['EBATS_T_METRICS' => $metrics]]);
        $xss = '<img src=x onerror="window.__xss=1">';
        $ids = [];
        foreach (['a', $xss] as $tag) {
            $ids[$tag] = Task::create('demo', 'flaky', ['tag' => $tag, 'flag' => "{$this->tmp}/flag-" . md5($tag)]);
        }
        foreach ($ids as $id) {
            $this->waitCallbacks($id, 1, 15, 'first run');
        }
        for ($i = 0; $i < 4; $i++) {
            Task::create('idle', 'ping', ['n' => $i]);
        }
        $url = $this->startDashboard(['--topics=idle', '--metrics=' . $metrics]);

        $b = $this->browser();
        $b->open($url);
        $ready = TestEnv::listQueues(static::q('task.idle'))[static::q('task.idle')];
        $this->assertSame(4, $ready);
        $b->waitFor(fn () => $b->text('#ov-topics tr[data-topic="idle"] .ready') === (string) $ready, 15, 'the ready figure of topic idle equals the broker\'s');
        $failedQ = TestEnv::listQueues(static::q('failed.demo'))[static::q('failed.demo')];
        $b->waitFor(fn () => $b->text('#ov-topics tr[data-topic="demo"] .failed') === (string) $failedQ, 15, 'topic demo (from the metrics) and its failed figure');
        $this->assertSame('1', $b->text('#ov-topics tr[data-topic="demo"] .consumers'), 'one worker child consumes');
        $b->waitFor(fn () => (int) $b->text('#ov-procs') >= 2, 15, 'the worker parent and its child');
        $b->waitFor(fn () => (int) $b->js('return document.getElementById("chart-throughput").getAttribute("data-points")') >= 1, 20, 'a throughput point');
        $b->screenshot(self::shot('overview'));
        $b->open($url . '#processes');
        $b->waitFor(fn () => $b->js('return document.querySelectorAll("#processes tbody tr").length') >= 2, 10, 'process rows');
        $b->screenshot(self::shot('processes'));
        $b->open($url . '#executions');
        $b->waitFor(fn () => $b->js('return !document.getElementById("history-off").hidden'), 10, 'the history-off note');

        $b->open($url . '#failed');
        $b->waitFor(fn () => $b->js('return document.querySelectorAll("#failed-topic option").length') >= 2, 10, 'topics in the select');
        $b->js('const s = document.getElementById("failed-topic"); s.value = "demo"; s.dispatchEvent(new Event("change"));');
        $b->waitFor(fn () => $b->js('return document.querySelectorAll("#failed tbody tr").length') === 2, 10, 'two failed tasks listed');
        $row = sprintf('#failed tr[data-id="%s"]', $ids[$xss]);
        $this->assertSame("flaky failure $xss", $b->text("$row .error") === null ? null : explode(': ', $b->text("$row .error"), 2)[1]);
        // Clicked from the page's script: the list may be redrawn by a load still in flight (a stale element).
        $b->js('document.querySelector(arguments[0]).click()', ["$row td"]);
        $b->waitFor(fn () => $b->js('return !document.getElementById("failed-detail").hidden'), 5, 'the detail of one');
        $this->assertSame(['tag' => $xss, 'flag' => "{$this->tmp}/flag-" . md5($xss)], json_decode((string) $b->text('#fd-params'), true));
        $this->assertSame(0, $b->js('return document.querySelectorAll("main img").length'), 'the params were not parsed as HTML');
        $this->assertNull($b->js('return window.__xss === undefined ? null : window.__xss'), 'no script of the params ran');
        $b->screenshot(self::shot('failed'));

        touch("{$this->tmp}/flag-" . md5('a'));
        $b->js('document.querySelector(arguments[0]).click()', [sprintf('#failed tr[data-id="%s"] button.replay', $ids['a'])]);
        $b->waitFor(fn () => $b->js('return !document.getElementById("confirm").hidden'), 5, 'the confirmation');
        $this->assertCount(1, $this->callbacks($ids['a']), 'nothing happens before the confirmation');
        $b->click('#confirm-yes');
        $cbs = $this->waitCallbacks($ids['a'], 2, 15, 'the replayed task runs');
        $this->assertSame(Worker::STATE_SUCC, $cbs[1]['status']);
        $b->waitFor(fn () => $b->js('return document.querySelectorAll("#failed tbody tr").length') === 1, 10, 'one failed task left');
        $this->assertStringContainsString('1 task(s) moved back', (string) $b->text('#failed-result'));
    }

    /** The ids of the execution rows shown, top to bottom, and their statuses. */
    private static function executionRows(Browser $b): array
    {
        return $b->js('return [...document.querySelectorAll("#executions tbody tr")].map((r) => [r.dataset.id, r.dataset.status, r.querySelector(".task").textContent])');
    }

    public function testDiscoversTheWorkerAndShowsItsExecutionsFailuresAndTaskInHand(): void
    {
        $metrics = '127.0.0.1:' . self::freePort();
        $this->startWorker(['debug' => false, 'env' => ['EBATS_HISTORY' => '1', 'EBATS_T_METRICS' => $metrics]]);
        $ids = [];
        foreach (['ok', 'fail', 'ok', 'fail', 'ok'] as $i => $name) {
            $ids[] = Task::create('demo', $name, ['i' => $i]);
        }
        foreach ($ids as $id) {
            $this->waitCallbacks($id, 1, 20, 'the tasks run');
        }
        $records = $this->waitFor(fn () => count($r = History::read(['limit' => 100])) >= 5 ? $r : null, 20, 'five history records', 0.5);
        $this->assertCount(5, $records);
        $newestFirst = array_reverse(array_map(fn (array $r) => [$r['id'], $r['outcome'], $r['task']], $records));
        $failed = array_values(array_filter($newestFirst, fn (array $r) => $r[1] === 'fail'));
        $this->assertCount(2, $failed);
        Task::create('demo', 'slow', ['ms' => 12000]);

        // Neither --topics nor --metrics: the worker is found through the broker.
        $url = $this->startDashboard([], 'dashboard-discovery');
        $b = $this->browser();
        $b->open($url);
        $b->waitFor(fn () => $b->text('#ov-failed-7d') === '2', 20, 'the failures of 7 days from the history');
        $this->assertSame('2', $b->text('#ov-failed-1h'), 'the failures of the last hour from the history');
        $this->assertSame('from the execution history', $b->text('#ov-failed-1h-note'));
        $b->waitFor(fn () => $b->text('#ov-topics tr[data-topic="demo"] td') === 'demo', 15, 'topic demo found through the broker');
        $b->screenshot(self::shot('discovery'));
        [$status, , $body] = self::http('GET', $url . 'api/series');
        $series = json_decode($body, true);
        $this->assertSame(200, $status, $body);
        $this->assertSame('history', $series['from'], 'the charts of the hour come from the history');
        $runs = array_sum(array_map(fn (array $p) => $p['per_min'] * $series['step_ms'] / 60000, $series['points']));
        $this->assertEqualsWithDelta(5.0, $runs, 1e-9, 'the five runs in the throughput chart');
        $this->assertSame(2.0, (float) array_sum(array_column($series['points'], 'failed')));

        $b->open($url . '#processes');
        $inHand = fn () => $b->js('return [...document.querySelectorAll("#processes tbody tr")].map((r) => [r.cells[0].textContent, r.cells[2].textContent, r.cells[7].textContent, r.cells[8].textContent])');
        $row = $b->waitFor(function () use ($inHand) {
            foreach ($inHand() as $r) {
                if ($r[2] === 'slow' && $r[3] !== '–') {
                    return $r;
                }
            }
            return null;
        }, 20, 'the child shows its task in hand and for how long');
        $this->assertSame($metrics, $row[0], 'the discovered address');
        $this->assertStringStartsWith('child', $row[1]);
        $this->assertContains('parent', array_map(fn (array $r) => explode(' ', $r[1])[0], $inHand()));
        $b->screenshot(self::shot('processes-task'));

        $b->open($url . '#executions');
        $b->waitFor(fn () => count(self::executionRows($b)) >= 5, 15, 'the executions listed');
        $this->assertSame($newestFirst, self::executionRows($b), 'the executions are the history\'s, newest first');
        $this->assertSame([], $b->js('return document.getElementById("history-off").hidden ? [] : ["shown"]'));
        $b->screenshot(self::shot('executions'));
        $b->js('document.getElementById("exec-status").value = "fail"; document.getElementById("exec-filter").requestSubmit();');
        $b->waitFor(fn () => self::executionRows($b) === $failed, 10, 'only the failed executions');
        $fromHistory = array_reverse(array_map(fn (array $r) => [$r['id'], $r['outcome'], $r['task']], History::read(['status' => 'fail'])));
        $this->assertSame($fromHistory, $failed);
        $b->screenshot(self::shot('executions-failed'));
    }

    public function testPausingAScheduleInTheBrowserStopsItsFirings(): void
    {
        $probe = static::prefix() . '_probe_' . bin2hex(random_bytes(2));
        $this->broker->declareQueue($probe);
        $this->broker->declareExchange(static::q('core.event'), 'fanout');
        $this->broker->bindQueue($probe, static::q('core.event'));
        $count = 0;
        $fired = function () use ($probe, &$count): int {
            while ($this->broker->get($probe) !== null) {
                $count++;
            }
            return $count;
        };
        try {
            $cron = $this->startFixture('cron', 'cron_scheduler.php', [
                'EBATS_T_CRON' => json_encode([['* * * * * *', 'dash.tick', [], ['name' => 'every', 'timezone' => 'UTC']]]),
                'EBATS_HEARTBEAT' => '2',
            ]);
            $this->waitFor(fn () => $fired() >= 2 ?: null, 20, 'the schedule fires');
            $url = $this->startDashboard(['--topics=demo']);
            $b = $this->browser();
            $b->open($url . '#schedules');
            $row = '#schedules tr[data-schedule="every"]';
            $b->waitFor(fn () => $b->text("$row .state") === 'active', 15, 'the schedule listed as active');
            $b->screenshot(self::shot('schedules'));
            $this->afterLeaderReads($cron, 'pause', static function () use ($b, $row): void {
                $b->click("$row button.pause");
                $b->click('#confirm-yes');
            });
            $b->waitFor(fn () => $b->text("$row .state") === 'paused', 15, 'the schedule shown paused');
            $n = $fired();
            $this->assertStays(fn () => $fired() > $n ? 'fired while paused' : null, 2.5, 'a schedule paused in the browser fires nothing');
            $b->screenshot(self::shot('schedules-paused'));
            $b->click("$row button.resume");
            $b->click('#confirm-yes');
            $this->waitFor(fn () => $fired() > $n ?: null, 5, 'resumed in the browser, it fires again');
        } finally {
            $this->broker->deleteQueue($probe);
        }
    }

    public function testTheTopicsViewShowsLimitsAndPausesATopic(): void
    {
        $metrics = '127.0.0.1:' . self::freePort();
        $this->startWorker(['env' => [
            'EBATS_T_METRICS' => $metrics,
            'EBATS_T_LIMITS' => json_encode([['name' => 'ok', 'concurrency' => 3]]),
        ]]);
        try {
            $this->assertTrue(Limits::set('demo', ['rate' => '20/s', 'burst' => 5]));
            $url = $this->startDashboard(['--topics=demo', '--metrics=' . $metrics]);
            $b = $this->browser();
            $b->open($url . '#topics');
            $row = '#topics tr[data-topic="demo"]';
            $limits = fn () => $b->js('return Array.from(document.querySelectorAll(arguments[0])).map((e) => e.textContent)', ["$row .limit"]);
            $b->waitFor(fn () => $limits() === ['demo/ok: 3 at once (code)', 'demo: 20/s +5 (run time)'], 15, 'the limits in force, with their source');
            $this->assertSame('0', $b->text("$row .held-rate"));
            $this->assertSame('0', $b->text("$row .duplicates"));
            $b->screenshot(self::shot('topics-limits'));

            $b->click("$row button.pause");
            $b->click('#confirm-yes');
            $this->waitFor(fn () => Topics::list() === ['demo'] ?: null, 10, 'the topic paused from the browser');
            $b->waitFor(fn () => $b->text("$row .paused") === 'paused' && $b->text("$row button.resume") === 'Resume', 15, 'the topic shown paused, with a resume button');
            $b->click("$row button.resume");
            $b->click('#confirm-yes');
            $this->waitFor(fn () => Topics::list() === [] ?: null, 10, 'the topic resumed from the browser');
            $b->waitFor(fn () => $b->text("$row button.pause") === 'Pause', 15, 'the topic shown running');
            // Every action needs the CSRF token.
            $json = ['Content-Type' => 'application/json'];
            $this->assertSame(403, self::http('POST', $url . 'api/topics/pause', $json, '{"topic":"demo"}')[0], 'no CSRF token');
            $this->assertSame([], Topics::list());
        } finally {
            foreach (Topics::list() as $t) {
                Topics::resume($t);
            }
            Limits::clear('demo');
        }
    }

    public function testTheTopicsViewSetsAndClearsALimit(): void
    {
        $metrics = '127.0.0.1:' . self::freePort();
        $this->startWorker(['env' => ['EBATS_T_METRICS' => $metrics]]);
        try {
            $url = $this->startDashboard(['--topics=demo', '--metrics=' . $metrics]);
            $b = $this->browser();
            $b->open($url . '#topics');
            $row = '#topics tr[data-topic="demo"]';
            $b->waitFor(fn () => $b->text("$row td.limits") !== null, 15, 'the topic shown');
            $limits = fn () => $b->js('return Array.from(document.querySelectorAll(arguments[0])).map((e) => e.textContent)', ["$row .limit"]);
            $fillForm = fn (array $values) => $b->js(
                'const f = document.querySelector(arguments[0]); for (const [k, v] of Object.entries(arguments[1])) f.querySelector("." + k).value = v;',
                ["$row form.limit-form", (object) $values]
            );

            // A bad limit: the parser's message, nothing set.
            $fillForm(['rate' => '', 'burst' => '', 'concurrency' => '']);
            $b->click("$row button.set-limit");
            $b->waitFor(fn () => str_starts_with((string) $b->text('#topics-result'), 'refused: ') ?: null, 10, 'the refusal shown');
            $this->assertSame('refused: a limit needs a rate, a concurrency or both', $b->text('#topics-result'));
            $this->assertSame([], Limits::list('demo'));

            $fillForm(['rate' => '7/s', 'burst' => '2']);
            $b->click("$row button.set-limit");
            $set = $this->waitFor(fn () => Limits::list('demo') ?: null, 10, 'the limit set from the browser');
            $this->assertSame([['id' => 'demo', 'topic' => 'demo', 'name' => null, 'key' => null, 'rate' => '7/s', 'burst' => 2, 'concurrency' => null]], $set);
            $b->waitFor(fn () => $limits() === ['demo: 7/s +2 (run time)'], 15, 'the limit shown in force');
            $b->screenshot(self::shot('topics-limit-set'));

            $b->click("$row button.clear-limit");
            $b->click('#confirm-yes');
            $this->waitFor(fn () => Limits::list('demo') === [] ?: null, 10, 'the limit cleared from the browser');
            $b->waitFor(fn () => $limits() === [], 15, 'the limit no longer shown');

            // Every action needs the CSRF token.
            $json = ['Content-Type' => 'application/json'];
            $this->assertSame(403, self::http('POST', $url . 'api/limits/set', $json, '{"topic":"demo","limit":{"rate":"1/s"}}')[0], 'no CSRF token');
            $this->assertSame(403, self::http('POST', $url . 'api/limits/clear', $json, '{"topic":"demo"}')[0], 'no CSRF token');
            $this->assertSame([], Limits::list('demo'));
        } finally {
            Limits::clear('demo');
        }
    }

    public function testTheGroupsViewShowsPendingMembersAndCancelsAGroup(): void
    {
        // No worker yet: both members wait in their queue.
        $tasks = [['topic' => 'demo', 'name' => 'ok', 'params' => ['n' => 1]], ['topic' => 'demo', 'name' => 'ok', 'id' => 'dash-member-2']];
        $id = Group::create($tasks, ['finally' => 'dash_group_done']);
        $url = $this->startDashboard(['--topics=demo']);
        $b = $this->browser();
        $b->open($url . '#groups');
        $row = "#groups tr[data-group=\"$id\"]";
        $b->waitFor(fn () => $b->text("$row .total") === '2', 15, 'the group listed');
        $this->assertSame(['0', '2', '0', '0'], [$b->text("$row .done"), $b->text("$row .pending"), $b->text("$row .succeeded"), $b->text("$row .cancelled")]);
        $this->assertSame('in flight', $b->text("$row .state"));
        $b->screenshot(self::shot('groups'));

        $b->click($row);
        $member = '#group-members tr[data-member="dash-member-2"]';
        $b->waitFor(fn () => $b->text("$member .state") === 'pending', 15, "the group's page shows its pending member");
        $states = fn () => $b->js('return Array.from(document.querySelectorAll("#group-members .state")).map((e) => e.textContent)');
        $this->assertSame(['pending', 'pending'], $states());
        $this->assertSame('0/2', $b->text('#group-done'));
        $b->screenshot(self::shot('group-pending'));

        // Every action needs the CSRF token.
        $json = ['Content-Type' => 'application/json'];
        $this->assertSame(403, self::http('POST', $url . 'api/groups/cancel', $json, json_encode(['id' => $id]))[0], 'no CSRF token');
        $b->click('#group-cancel');
        $b->click('#confirm-yes');
        $b->waitFor(fn () => str_contains((string) $b->text('#group-result'), 'cancelled:'), 15, 'the cancel accepted');

        // A worker started after the cancel runs neither member: both end as cancelled, counted by the group.
        $this->startWorker();
        $s = $this->waitFor(fn () => (($s = Group::status($id)) !== null && $s['pending'] === 0) ? $s : null, 30, 'the members ended');
        $this->assertSame([2, 0, 2], [$s['cancelled'], $s['succeeded'], $s['done']]);
        $this->assertSame([], $this->records('run'), 'no member ran');
        $b->waitFor(fn () => $states() === ['cancelled', 'cancelled'], 15, 'the page shows the members cancelled');
        $this->assertSame('2', $b->text('#group-cancelled'));
        $b->screenshot(self::shot('group-cancelled'));
    }
}
