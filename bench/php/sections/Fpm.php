<?php

declare(strict_types=1);

namespace Ebats\Bench\Sections;

use Ebats\Bench\Context;
use Ebats\Bench\Report;
use Ebats\Bench\Results;
use Ebats\Bench\Section;
use Ebats\Tests\Lib\Process;

/** A web request publishing one event: PHP-FPM pages (bench/fpm) driven over FastCGI by lapin-bench. */
final class Fpm implements Section
{
    /** key => [label, pool, page] */
    private const ROWS = [
        'fpm.noop' => ['same page, no publish', 'std', 'noop.php'],
        'fpm.ebats' => ['ebats Event::publish() (confirm awaited)', 'std', 'ebats.php'],
        'fpm.ebats_deferred' => ['ebats, ebats.deferred_confirms=1', 'deferred', 'ebats.php'],
        'fpm.ebats_finish' => ['ebats deferred + fastcgi_finish_request()', 'deferred', 'ebats_finish.php'],
        'fpm.amqplib' => ['php-amqplib connect + publish + confirm', 'std', 'amqplib.php'],
    ];

    public function name(): string
    {
        return 'fpm';
    }

    public function run(Context $ctx): void
    {
        $c = $ctx->settings;
        // The event exchange and queue, declared by ebats, before any client publishes to them.
        $ctx->runJson($ctx->phpCmd('publish.php', ['ebats', 'event', 1]));
        $ctx->admin->purge($ctx->qEvents);
        [$fpm, $dir] = $this->start($ctx);
        try {
            for ($rep = 1; $rep <= $c['reps']; $rep++) {
                $ctx->attempt('confirm round trip', function () use ($ctx, $rep, $c) {
                    $r = $ctx->runJson([$ctx->lapin, 'publish-each', $c['rtt_n'], '--exchange', "{$ctx->prefix}.core.event", '--routing-key', 'bench_rtt']);
                    $ctx->results->record('fpm.rtt', ['ms' => $r['per_msg_us'] / 1000.0]);
                    $ctx->note(sprintf('fpm rep %d  broker confirm round trip (lapin)  %.3f ms', $rep, $r['per_msg_us'] / 1000.0));
                });
                $ctx->admin->purge($ctx->qEvents);
                foreach (self::ROWS as $key => [$label, $pool, $page]) {
                    $ctx->attempt("fpm $label", function () use ($ctx, $key, $label, $pool, $page, $dir, $rep, $c) {
                        // Throughput with as many clients as children, then latency with one client.
                        $t = $this->load($ctx, $dir, $pool, $page, $c['fpm_concurrency']);
                        $l = $this->load($ctx, $dir, $pool, $page, 1);
                        $ctx->results->record($key, [
                            'rps' => (float) $t['rps'], 'p50' => (float) $t['p50_ms'], 'p99' => (float) $t['p99_ms'],
                            'p50_1' => (float) $l['p50_ms'], 'p99_1' => (float) $l['p99_ms'], 'first_1' => (float) $l['first_out_p50_ms'],
                            'errors' => (int) $t['errors'] + (int) $l['errors'],
                        ]);
                        $ctx->note(sprintf('fpm rep %d  %-42s %6.0f req/s  p50 %.2f  p99 %.2f ms | 1 client: p50 %.2f  p99 %.2f ms  errors %d',
                            $rep, $label, $t['rps'], $t['p50_ms'], $t['p99_ms'], $l['p50_ms'], $l['p99_ms'], $t['errors'] + $l['errors']));
                    });
                    $ctx->admin->purge($ctx->qEvents);
                }
            }
        } finally {
            $ctx->stop($fpm, SIGQUIT, 10.0);
        }
    }

    private static function binary(): string
    {
        foreach (['php-fpm8.2', 'php-fpm'] as $b) {
            foreach (['/usr/sbin/', '/usr/local/sbin/', '/usr/bin/'] as $d) {
                if (is_executable($d . $b)) {
                    return $d . $b;
                }
            }
        }
        throw new \RuntimeException('php-fpm not found (apt-get install php8.2-fpm)');
    }

    /** Starts php-fpm with two static pools (std, deferred) on sockets in its directory; returns [process, directory]. */
    private function start(Context $ctx): array
    {
        $dir = "{$ctx->tmp}/fpm";
        @mkdir($dir, 0777, true);
        $pool = static function (string $name, array $extra) use ($dir, $ctx): string {
            $lines = [
                "[$name]",
                "listen = $dir/$name.sock",
                'listen.backlog = 1024',
                'listen.mode = 0666',
                'pm = static',
                "pm.max_children = {$ctx->settings['fpm_children']}",
                'pm.max_requests = 0',
                'catch_workers_output = yes',
                'clear_env = yes',
                "env[EBATS_PREFIX] = {$ctx->prefix}",
                "php_admin_value[ebats.prefix] = {$ctx->prefix}",
                'php_admin_value[display_errors] = stderr',
            ];
            return implode("\n", array_merge($lines, $extra)) . "\n";
        };
        $conf = "[global]\npid = $dir/fpm.pid\nerror_log = $dir/fpm.log\ndaemonize = no\nlog_level = warning\n\n"
            . $pool('std', []) . "\n"
            . $pool('deferred', ['php_admin_value[ebats.deferred_confirms] = 1']);
        file_put_contents("$dir/fpm.conf", $conf);
        $cmd = [self::binary(), '-F', '-y', "$dir/fpm.conf", '-d', "extension={$ctx->so}"];
        if (posix_geteuid() === 0) {
            $cmd[] = '-R';
        }
        $fpm = $ctx->spawn($cmd, "$dir/fpm.stdout.log");
        $state = Process::until(
            static fn (): ?string => $fpm->hasExited() ? 'exited' : (file_exists("$dir/std.sock") && file_exists("$dir/deferred.sock") ? 'up' : null),
            10.0,
            0.02
        );
        if ($state !== 'up') {
            throw new \RuntimeException("php-fpm did not start: see $dir/fpm.log\n" . @file_get_contents("$dir/fpm.log"));
        }
        return [$fpm, $dir];
    }

    private function load(Context $ctx, string $dir, string $pool, string $page, int $concurrency): array
    {
        $r = $ctx->runJson([
            $ctx->lapin, 'fcgi-load', '--socket', "$dir/$pool.sock",
            '--script', realpath("{$ctx->scripts}/../fpm/$page"), '--concurrency', $concurrency,
            '--duration', $ctx->settings['fpm_secs'], '--warmup', $ctx->settings['fpm_warmup'], '--expect', 'OK',
        ], 120);
        if ($r['errors'] > 0) {
            $ctx->note("fpm $pool/$page: {$r['errors']} failed requests, last: {$r['last_error']}");
        }
        return $r;
    }

    public function report(Context $ctx, Report $report): void
    {
        $res = $ctx->results;
        if (!$res->has('fpm.noop')) {
            return;
        }
        $c = $ctx->settings;
        $fmt = [Results::class, 'fmt'];
        $report->line(sprintf('2. Web request publishing one event: PHP-FPM pm=static, %d children; %d concurrent FastCGI clients, then 1; %.0f s each',
            $c['fpm_children'], $c['fpm_concurrency'], $c['fpm_secs']));
        $report->row('page', sprintf('req/s, %d clients', $c['fpm_concurrency']), 'p50 / p99 ms', '1 client p50/p99', 'output p50 ms');
        $errs = 0;
        foreach (self::ROWS as $key => [$label]) {
            $report->row($label, $res->cell($key, 'rps'),
                $fmt($res->med($key, 'p50'), 2) . ' / ' . $fmt($res->med($key, 'p99'), 2),
                $fmt($res->med($key, 'p50_1'), 2) . ' / ' . $fmt($res->med($key, 'p99_1'), 2),
                $fmt($res->med($key, 'first_1'), 2));
            $errs += array_sum($res->values($key, 'errors'));
        }
        $report->row('broker confirm round trip (lapin per-message publish)', $res->cell('fpm.rtt', 'ms', 3) . ' ms');
        $report->line("    failed requests: $errs. Latency: request sent → FastCGI END_REQUEST; output: → first STDOUT record (1 client).");
        $report->line('    Each latency is the median over the runs of each run\'s percentile.');
        $report->line();
    }

    public function targets(Context $ctx, Report $report): void
    {
        $res = $ctx->results;
        if (!$res->has('fpm.noop')) {
            return;
        }
        $ratio = [Results::class, 'ratio'];
        $rtt = $res->med('fpm.rtt', 'ms');
        foreach (['fpm.ebats' => 'FPM, 1 client: p50 added by publish() / confirm RTT', 'fpm.ebats_deferred' => 'FPM, 1 client: p50 added, deferred / confirm RTT'] as $k => $what) {
            $added = $res->med($k, 'p50_1') - $res->med('fpm.noop', 'p50_1');
            $report->target($what, $ratio($added, $rtt), 1.1, '<=', sprintf('%+.2f / %.2f ms = %.2f', $added, $rtt, $ratio($added, $rtt)));
        }
        $e = $res->med('fpm.ebats', 'rps');
        $a = $res->med('fpm.amqplib', 'rps');
        $report->target('FPM: ebats req/s / php-amqplib req/s', $ratio($e, $a), 5.0, '>=',
            sprintf('%s / %s = %.1f×', Results::fmt($e), Results::fmt($a), $ratio($e, $a)));
    }
}
