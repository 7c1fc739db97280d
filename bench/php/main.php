<?php
/**
 * The benchmark driver, started by bench/run (which sets everything up). It runs every measurement
 * several times, interleaving the clients of a section within each repetition, and prints one table.
 *
 *   php main.php [--quick] [--reps N] [--only publish,fpm,worker,latency,memory,cron,keys,groups] [--rows PREFIX,...]
 *
 * --rows keeps the rows whose key starts with one of the prefixes (keys as in results.json: wk.tasks.p1.w1
 * is the worker section's 1-process rows at prefetch 1, with metrics, with metrics and history).
 *
 * Environment (set by bench/run): EBATS_SO (the extension to load), EBATS_PREFIX (this run's name
 * prefix), BENCH_TMP (a scratch directory), BENCH_LAPIN (the lapin-bench binary), BENCH_ROOT.
 *
 * Each section is a class of sections/ (Ebats\Bench\Section); what they share is in lib/ (Context: settings,
 * processes, notes, failures; Admin: the broker; Results; Report: the table), and the processes are the
 * tests' Process helper (tests/lib/Process.php).
 */

declare(strict_types=1);

namespace Ebats\Bench;

require __DIR__ . '/common.php';
require __DIR__ . '/../../tests/lib/Process.php';
foreach (['Context', 'Admin', 'Results', 'Report', 'Section', 'Machine', 'Workers'] as $class) {
    require __DIR__ . "/lib/$class.php";
}
foreach (glob(__DIR__ . '/sections/*.php') ?: [] as $file) {
    require $file;
}

$opts = getopt('', ['quick', 'reps:', 'only:', 'rows:', 'help']);
if (isset($opts['help'])) {
    echo "usage: bench/run [--quick] [--reps N] [--only publish,fpm,worker,latency,memory,cron,keys,groups] [--rows PREFIX,...]\n";
    exit(0);
}
$quick = isset($opts['quick']);
$settings = [
    'reps' => (int) ($opts['reps'] ?? ($quick ? 1 : 5)),
    'rows' => isset($opts['rows']) ? explode(',', (string) $opts['rows']) : [],
    'pub_each_n' => $quick ? 300 : 2000,
    'pub_batch_n' => $quick ? 2000 : 20000,
    'batch' => 100,
    'fpm_children' => 4,
    'fpm_concurrency' => 4,
    'fpm_secs' => $quick ? 1.0 : 2.0,
    'fpm_warmup' => 0.5,
    'rtt_n' => $quick ? 200 : 1000,
    'worker_n' => (int) (getenv('BENCH_WORKER_N') ?: ($quick ? 2000 : 20000)),
    'lat_rate' => 200,
    'lat_secs' => $quick ? 2 : 10,
    'mem_warm' => 1000,
    'mem_n' => $quick ? 10000 : 100000,
    'cron_secs' => $quick ? 3 : 30,
    'keys_n' => $quick ? 1000 : 10000,
    'groups_n' => $quick ? 1000 : 10000,
    'groups_size' => 3,
    'group_big' => $quick ? 1000 : 10000,
    'takeover_n' => $quick ? 5000 : 100000,
];

/** @var array<string,Section> in the order of the table */
$sections = [];
foreach ([new Sections\Publish(), new Sections\Fpm(), new Sections\Worker(), new Sections\Latency(), new Sections\Memory(), new Sections\Cron(), new Sections\Keys(), new Sections\Groups()] as $section) {
    $sections[$section->name()] = $section;
}
$only = isset($opts['only']) ? explode(',', (string) $opts['only']) : array_keys($sections);
foreach ($only as $name) {
    if (!isset($sections[$name])) {
        bench_fail("unknown section $name");
    }
}

$paths = ['EBATS_SO' => bench_env('EBATS_SO'), 'BENCH_TMP' => bench_env('BENCH_TMP'), 'BENCH_LAPIN' => bench_env('BENCH_LAPIN')];
foreach ($paths as $k => $v) {
    if ($v === '' || !file_exists($v)) {
        bench_fail("$k is not set or missing ($v): run bench/run, not this file");
    }
}
bench_amqplib();
$ctx = new Context(
    $settings,
    $quick,
    $paths['EBATS_SO'],
    $paths['BENCH_TMP'],
    $paths['BENCH_LAPIN'],
    bench_env('BENCH_ROOT', \dirname(__DIR__, 2)),
    bench_prefix(),
);

pcntl_async_signals(true);
foreach ([SIGINT, SIGTERM] as $s) {
    pcntl_signal($s, static function () use ($ctx) {
        $ctx->note('interrupted: stopping what the bench started');
        $ctx->stopAll();
        exit(130);
    });
}
register_shutdown_function([$ctx, 'stopAll']);

$info = Machine::info($ctx);
$loadBefore = Machine::load();
$started = microtime(true);
$ctx->note("ebats bench, prefix {$ctx->prefix}, " . ($quick ? 'quick mode' : 'full mode') . ", {$settings['reps']} repetition(s)");
$ctx->note($info['machine']);
$ctx->note($info['versions']);
$ctx->note($info['ebats']);
foreach ($only as $name) {
    $ctx->note("== $name");
    $sections[$name]->run($ctx);
}
$loadAfter = Machine::load();
$elapsed = microtime(true) - $started;

$report = new Report();
$reps = $settings['reps'];
$report->line('ebats benchmark — ' . gmdate('Y-m-d H:i') . ' UTC — ' . ($quick ? 'QUICK MODE (small N, not for comparison)' : 'full mode') . sprintf(', %.0f s', $elapsed));
$report->line('machine:  ' . $info['machine']);
$report->line('versions: ' . $info['versions']);
$report->line('ebats.so: ' . $info['ebats']);
$report->line("load average (1 min) at start $loadBefore, at end $loadAfter; each figure: " . ($reps > 1 ? "median of $reps runs (min–max)" : 'one run'));
$report->line();
foreach ($sections as $section) {
    $section->report($ctx, $report);
}
foreach ($sections as $section) {
    $section->targets($ctx, $report);
}
echo $report->render($ctx->failures);
file_put_contents("{$ctx->tmp}/results.json", json_encode(['config' => $settings, 'info' => $info, 'results' => $ctx->results->all()], JSON_PRETTY_PRINT));
exit($ctx->failures ? 1 : 0);
