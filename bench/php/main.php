<?php
/**
 * The benchmark driver, started by bench/run (which sets everything up). It runs every measurement
 * several times, interleaving the clients of a section within each repetition, and prints one table.
 *
 *   php main.php [--quick] [--reps N] [--only publish,fpm,worker,latency,memory]
 *
 * Environment (set by bench/run): EBATS_SO (the extension to load), EBATS_PREFIX (this run's name
 * prefix), BENCH_TMP (a scratch directory), BENCH_LAPIN (the lapin-bench binary), BENCH_ROOT.
 */

declare(strict_types=1);
require __DIR__ . '/common.php';

// ---------------------------------------------------------------------------------------------
// Settings

$opts = getopt('', ['quick', 'reps:', 'only:', 'help']);
if (isset($opts['help'])) {
    echo "usage: bench/run [--quick] [--reps N] [--only publish,fpm,worker,latency,memory]\n";
    exit(0);
}
$quick = isset($opts['quick']);
$C = [
    'reps' => (int) ($opts['reps'] ?? ($quick ? 1 : 5)),
    'pub_each_n' => $quick ? 300 : 2000,
    'pub_batch_n' => $quick ? 2000 : 20000,
    'batch' => 100,
    'fpm_children' => 4,
    'fpm_concurrency' => 4,
    'fpm_secs' => $quick ? 1.0 : 2.0,
    'fpm_warmup' => 0.5,
    'rtt_n' => $quick ? 200 : 1000,
    'worker_n' => $quick ? 2000 : 20000,
    'lat_rate' => 200,
    'lat_secs' => $quick ? 2 : 10,
    'mem_warm' => 1000,
    'mem_n' => $quick ? 10000 : 100000,
];
$sections = isset($opts['only']) ? explode(',', (string) $opts['only']) : ['publish', 'fpm', 'worker', 'latency', 'memory'];

$SO = bench_env('EBATS_SO');
$TMP = bench_env('BENCH_TMP');
$LAPIN = bench_env('BENCH_LAPIN');
$ROOT = bench_env('BENCH_ROOT', dirname(__DIR__, 2));
$PREFIX = bench_prefix();
foreach (['EBATS_SO' => $SO, 'BENCH_TMP' => $TMP, 'BENCH_LAPIN' => $LAPIN] as $k => $v) {
    if ($v === '' || !file_exists($v)) {
        bench_fail("$k is not set or missing ($v): run bench/run, not this file");
    }
}
$PHP = PHP_BINARY;
$HERE = __DIR__;
$Q_EVENTS = "$PREFIX.events";
$Q_TASKS = "$PREFIX.task.bench";
$Q_BARE = "$PREFIX.bare";

// ---------------------------------------------------------------------------------------------
// Processes

/** Every long-running process we started, pid => proc resource, stopped on exit. */
$RUNNING = [];

function note(string $s): void
{
    fwrite(STDERR, '[' . date('H:i:s') . "] $s\n");
}

function php_cmd(string $script, array $args, bool $ebats = true): array
{
    global $PHP, $SO, $HERE;
    $cmd = [$PHP];
    if ($ebats) {
        array_push($cmd, '-d', "extension=$SO");
    }
    $cmd[] = "$HERE/$script";
    foreach ($args as $a) {
        $cmd[] = (string) $a;
    }
    return $cmd;
}

/** Runs a command to its end; returns the JSON object of its last stdout line. */
function run_json(array $cmd, float $timeout = 300.0): array
{
    global $TMP;
    $err = "$TMP/stderr." . getmypid();
    $p = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['file', $err, 'w']], $pipes);
    if (!is_resource($p)) {
        throw new RuntimeException('cannot start ' . implode(' ', $cmd));
    }
    stream_set_blocking($pipes[1], false);
    $out = '';
    $deadline = microtime(true) + $timeout;
    while (true) {
        $r = [$pipes[1]];
        $w = $e = null;
        if (@stream_select($r, $w, $e, 0, 200000) > 0) {
            $chunk = fread($pipes[1], 65536);
            if ($chunk !== false) {
                $out .= $chunk;
            }
        }
        $st = proc_get_status($p);
        if (!$st['running']) {
            $out .= stream_get_contents($pipes[1]);
            break;
        }
        if (microtime(true) > $deadline) {
            posix_kill($st['pid'], SIGKILL);
            proc_close($p);
            throw new RuntimeException('timed out after ' . $timeout . ' s: ' . implode(' ', $cmd));
        }
    }
    fclose($pipes[1]);
    proc_close($p);
    $code = $st['exitcode'];
    $lines = array_values(array_filter(explode("\n", trim($out)), 'strlen'));
    $last = $lines ? json_decode(end($lines), true) : null;
    if ($code !== 0 || !is_array($last)) {
        $msg = trim((string) @file_get_contents($err));
        throw new RuntimeException("failed (exit $code): " . implode(' ', array_slice($cmd, 0, 8)) . "\n$out\n$msg");
    }
    return $last;
}

/** Starts a long-running process with its output going to a log file; returns its pid. */
function spawn(array $cmd, string $log, ?array $env = null): int
{
    global $RUNNING;
    $p = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['file', $log, 'a'], 2 => ['file', $log, 'a']], $pipes, null, $env);
    if (!is_resource($p)) {
        throw new RuntimeException('cannot start ' . implode(' ', $cmd));
    }
    $pid = proc_get_status($p)['pid'];
    $RUNNING[$pid] = $p;
    return $pid;
}

function children_of(int $pid): array
{
    $kids = [];
    foreach (glob('/proc/[0-9]*/stat') ?: [] as $f) {
        $s = @file_get_contents($f);
        if ($s === false) {
            continue;
        }
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        $rest = explode(' ', substr($s, strrpos($s, ')') + 2));
        if ((int) $rest[1] === $pid) {
            $kids[] = (int) basename(dirname($f));
        }
    }
    sort($kids);
    return $kids;
}

/** SIGTERM (or $sig), then waits; SIGKILL for it and its children after $grace seconds. */
function stop(int $pid, int $sig = SIGTERM, float $grace = 15.0): void
{
    global $RUNNING;
    if (!isset($RUNNING[$pid])) {
        return;
    }
    $p = $RUNNING[$pid];
    posix_kill($pid, $sig);
    $deadline = microtime(true) + $grace;
    while (proc_get_status($p)['running']) {
        if (microtime(true) > $deadline) {
            note("process $pid did not stop in {$grace} s: killing it");
            foreach (children_of($pid) as $k) {
                posix_kill($k, SIGKILL);
            }
            posix_kill($pid, SIGKILL);
            usleep(100000);
        }
        usleep(10000);
    }
    proc_close($p);
    unset($RUNNING[$pid]);
}

function stop_all(): void
{
    global $RUNNING;
    foreach (array_keys($RUNNING) as $pid) {
        stop($pid, SIGTERM, 5.0);
    }
}

pcntl_async_signals(true);
foreach ([SIGINT, SIGTERM] as $s) {
    pcntl_signal($s, function () {
        note('interrupted: stopping what the bench started');
        stop_all();
        exit(130);
    });
}
register_shutdown_function('stop_all');

// ---------------------------------------------------------------------------------------------
// Broker administration (php-amqplib, one connection)

bench_amqplib();
$ADMIN = null;
$ADMIN_CH = null;

function admin_ch(): \PhpAmqpLib\Channel\AMQPChannel
{
    global $ADMIN, $ADMIN_CH;
    if ($ADMIN === null || !$ADMIN->isConnected()) {
        $ADMIN = bench_amqplib_connect();
        $ADMIN_CH = null;
    }
    if ($ADMIN_CH === null || !$ADMIN_CH->is_open()) {
        $ADMIN_CH = $ADMIN->channel();
    }
    return $ADMIN_CH;
}

/** [messages ready, consumers] of a queue, or null when it does not exist. */
function queue_info(string $q): ?array
{
    global $ADMIN_CH;
    try {
        [, $messages, $consumers] = admin_ch()->queue_declare($q, true);
        return [(int) $messages, (int) $consumers];
    } catch (\PhpAmqpLib\Exception\AMQPProtocolChannelException $e) {
        $ADMIN_CH = null;
        return null;
    }
}

function purge(string $q): void
{
    if (queue_info($q) !== null) {
        admin_ch()->queue_purge($q);
    }
}

function wait_consumers(string $q, int $n, float $timeout = 20.0): void
{
    $deadline = microtime(true) + $timeout;
    while (true) {
        $i = queue_info($q);
        if ($i !== null && $i[1] >= $n) {
            return;
        }
        if (microtime(true) > $deadline) {
            throw new RuntimeException("queue $q did not get $n consumer(s) in $timeout s");
        }
        usleep(20000);
    }
}

function wait_messages(string $q, int $n, float $timeout = 30.0): void
{
    $deadline = microtime(true) + $timeout;
    while ((queue_info($q)[0] ?? -1) < $n) {
        if (microtime(true) > $deadline) {
            throw new RuntimeException("queue $q did not reach $n messages in $timeout s");
        }
        usleep(20000);
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics and results

function median(array $v): float
{
    sort($v);
    $n = count($v);
    if ($n === 0) {
        return NAN;
    }
    return $n % 2 ? (float) $v[intdiv($n, 2)] : ($v[$n / 2 - 1] + $v[$n / 2]) / 2.0;
}

function pct(array $sorted, float $p): float
{
    if (!$sorted) {
        return NAN;
    }
    $i = (int) round($p / 100 * (count($sorted) - 1));
    return (float) $sorted[min($i, count($sorted) - 1)];
}

/** $R[key] = list of per-repetition results (arrays of metrics). */
$R = [];

function record(string $key, array $metrics): void
{
    global $R;
    $R[$key][] = $metrics;
}

function values(string $key, string $metric): array
{
    global $R;
    return array_map(fn ($r) => $r[$metric], $R[$key] ?? []);
}

function med(string $key, string $metric): float
{
    return median(values($key, $metric));
}

function fmt_num(float $v, int $dec = 0): string
{
    return is_nan($v) ? '—' : number_format($v, $dec, '.', ',');
}

/** "median (min–max)" of a metric, or "median" alone for one repetition. */
function cell(string $key, string $metric, int $dec = 0): string
{
    $v = values($key, $metric);
    if (!$v) {
        return 'not run';
    }
    $s = fmt_num(median($v), $dec);
    if (count($v) > 1) {
        $s .= ' (' . fmt_num(min($v), $dec) . '–' . fmt_num(max($v), $dec) . ')';
    }
    return $s;
}

function attempt(string $what, callable $f): void
{
    try {
        $f();
    } catch (Throwable $e) {
        note("FAILED: $what: " . $e->getMessage());
        global $FAILURES;
        $FAILURES[] = "$what: " . strtok($e->getMessage(), "\n");
    }
}

$FAILURES = [];

// ---------------------------------------------------------------------------------------------
// Machine and versions

function first_line(string $cmd): string
{
    return trim((string) strtok((string) shell_exec($cmd . ' 2>/dev/null'), "\n"));
}

function machine_info(): array
{
    global $SO, $ROOT, $PHP;
    $cpu = '';
    foreach (file('/proc/cpuinfo') ?: [] as $l) {
        if (str_starts_with($l, 'model name')) {
            $cpu = trim(explode(':', $l, 2)[1]);
            break;
        }
    }
    preg_match('/MemTotal:\s+(\d+)/', (string) file_get_contents('/proc/meminfo'), $m);
    $rabbit = '';
    try {
        $conn = bench_amqplib_connect();
        $props = $conn->getServerProperties();
        $rabbit = is_array($props['version'] ?? null) ? (string) $props['version'][1] : (string) ($props['version'] ?? '');
        $conn->close();
    } catch (Throwable $e) {
        $rabbit = '?';
    }
    $ebats = first_line(escapeshellarg($PHP) . ' -d extension=' . escapeshellarg($SO) . ' -r ' . escapeshellarg('echo phpversion("ebats");'));
    $commit = first_line('git -C ' . escapeshellarg($ROOT) . ' rev-parse --short HEAD');
    $dirty = first_line('git -C ' . escapeshellarg($ROOT) . ' status --porcelain -- src Cargo.toml Cargo.lock | head -1') !== '' ? '+changes' : '';
    $origin = bench_env('BENCH_SO_ORIGIN', $SO);
    $built = sprintf('%s built %s UTC, repo at %s%s', $origin, gmdate('Y-m-d H:i', (int) @filemtime($origin)), $commit, $dirty);
    $lapin = '';
    $lock = @file_get_contents("$ROOT/bench/lapin-bench/Cargo.lock") ?: '';
    if (preg_match('/name = "lapin"\nversion = "([^"]+)"/', $lock, $lm)) {
        $lapin = $lm[1];
    }
    return [
        'machine' => sprintf('%d cores (nproc), %s, %.1f GiB RAM, Linux %s', (int) first_line('nproc'), $cpu,
            ((int) ($m[1] ?? 0)) / 1048576, php_uname('r')),
        'versions' => sprintf('PHP %s, RabbitMQ %s, ebats %s, php-amqp %s, php-amqplib %s, lapin %s, %s',
            PHP_VERSION, $rabbit, $ebats, phpversion('amqp') ?: 'not loaded',
            \PhpAmqpLib\Package::VERSION, $lapin, first_line('rustc --version')),
        'ebats' => $built,
    ];
}

// ---------------------------------------------------------------------------------------------
// Section: publish throughput

$PUB_ROWS = [
    // key => [label, command builder, N kind]
    'pub.each.ebats_event' => ['ebats Event::publish()', fn ($n) => php_cmd('publish.php', ['ebats', 'event', $n]), 'each'],
    'pub.each.ebats_task' => ['ebats Task::create()', fn ($n) => php_cmd('publish.php', ['ebats', 'task', $n]), 'each'],
    'pub.each.amqplib' => ['php-amqplib confirm_select + wait_for_pending_acks', fn ($n) => php_cmd('publish.php', ['amqplib', 'each', $n], false), 'each'],
    'pub.each.amqp' => ['php-amqp confirmSelect + waitForConfirm', fn ($n) => php_cmd('publish.php', ['amqp', 'each', $n], false), 'each'],
    'pub.each.lapin' => ['lapin (Rust), await each confirm  [ceiling]', fn ($n) => [$GLOBALS['LAPIN'], 'publish-each', $n, '--exchange', "$PREFIX.core.event", '--routing-key', 'bench_pub'], 'each'],
    'pub.batch.ebats_batch' => ['ebats Batch::publish() of 100', fn ($n) => php_cmd('publish.php', ['ebats', 'batch', $n, $C['batch']]), 'batch'],
    'pub.batch.ebats_deferred' => ['ebats publish(true) ×100 + ebats_flush()', fn ($n) => php_cmd('publish.php', ['ebats', 'deferred', $n, $C['batch']]), 'batch'],
    'pub.batch.amqplib' => ['php-amqplib, wait_for_pending_acks per 100', fn ($n) => php_cmd('publish.php', ['amqplib', 'batch', $n, $C['batch']], false), 'batch'],
    'pub.batch.amqp' => ['php-amqp, waitForConfirm per 100', fn ($n) => php_cmd('publish.php', ['amqp', 'batch', $n, $C['batch']], false), 'batch'],
    'pub.batch.lapin_b100' => ['lapin (Rust), confirms awaited per 100', fn ($n) => [$GLOBALS['LAPIN'], 'publish-pipelined', $n, '--batch', $C['batch'], '--exchange', "$PREFIX.core.event", '--routing-key', 'bench_pub'], 'batch'],
    'pub.batch.lapin' => ['lapin (Rust), all in flight  [ceiling]', fn ($n) => [$GLOBALS['LAPIN'], 'publish-pipelined', $n, '--exchange', "$PREFIX.core.event", '--routing-key', 'bench_pub'], 'batch'],
];

function section_publish(): void
{
    global $C, $PUB_ROWS, $Q_EVENTS;
    // Declare ebats's topology once (and check the body size) before timing anything.
    run_json(php_cmd('publish.php', ['ebats', 'event', 1]));
    run_json(php_cmd('publish.php', ['ebats', 'task', 1]));
    purge($Q_EVENTS);
    purge($GLOBALS['PREFIX'] . '.task.benchpub');
    for ($rep = 1; $rep <= $C['reps']; $rep++) {
        foreach ($PUB_ROWS as $key => [$label, $cmd, $kind]) {
            $n = $kind === 'each' ? $C['pub_each_n'] : $C['pub_batch_n'];
            attempt($label, function () use ($key, $cmd, $n, $rep, $label) {
                $r = run_json($cmd($n));
                record($key, ['rate' => (float) $r['rate']]);
                note(sprintf('publish rep %d  %-55s %9.0f msg/s', $rep, $label, $r['rate']));
            });
            purge($GLOBALS['Q_EVENTS']);
            purge($GLOBALS['PREFIX'] . '.task.benchpub');
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Section: PHP-FPM

function fpm_binary(): string
{
    foreach (['php-fpm8.2', 'php-fpm'] as $b) {
        foreach (['/usr/sbin/', '/usr/local/sbin/', '/usr/bin/'] as $d) {
            if (is_executable($d . $b)) {
                return $d . $b;
            }
        }
    }
    throw new RuntimeException('php-fpm not found (apt-get install php8.2-fpm)');
}

function fpm_start(): array
{
    global $TMP, $SO, $PREFIX, $C;
    $dir = "$TMP/fpm";
    @mkdir($dir, 0777, true);
    $pool = function (string $name, array $extra) use ($dir, $PREFIX, $C): string {
        $lines = [
            "[$name]",
            "listen = $dir/$name.sock",
            'listen.backlog = 1024',
            'listen.mode = 0666',
            'pm = static',
            "pm.max_children = {$C['fpm_children']}",
            'pm.max_requests = 0',
            'catch_workers_output = yes',
            'clear_env = yes',
            "env[EBATS_PREFIX] = $PREFIX",
            "php_admin_value[ebats.prefix] = $PREFIX",
            'php_admin_value[display_errors] = stderr',
        ];
        return implode("\n", array_merge($lines, $extra)) . "\n";
    };
    $conf = "[global]\npid = $dir/fpm.pid\nerror_log = $dir/fpm.log\ndaemonize = no\nlog_level = warning\n\n"
        . $pool('std', []) . "\n"
        . $pool('deferred', ['php_admin_value[ebats.deferred_confirms] = 1']);
    file_put_contents("$dir/fpm.conf", $conf);
    $cmd = [fpm_binary(), '-F', '-y', "$dir/fpm.conf", '-d', "extension=$SO"];
    if (posix_geteuid() === 0) {
        $cmd[] = '-R';
    }
    $pid = spawn($cmd, "$dir/fpm.stdout.log");
    $deadline = microtime(true) + 10;
    while (!file_exists("$dir/std.sock") || !file_exists("$dir/deferred.sock")) {
        if (microtime(true) > $deadline || !proc_get_status($GLOBALS['RUNNING'][$pid])['running']) {
            throw new RuntimeException("php-fpm did not start: see $dir/fpm.log\n" . @file_get_contents("$dir/fpm.log"));
        }
        usleep(20000);
    }
    return ['pid' => $pid, 'dir' => $dir];
}

$FPM_ROWS = [
    'fpm.noop' => ['same page, no publish', 'std', 'noop.php'],
    'fpm.ebats' => ['ebats Event::publish() (confirm awaited)', 'std', 'ebats.php'],
    'fpm.ebats_deferred' => ['ebats, ebats.deferred_confirms=1', 'deferred', 'ebats.php'],
    'fpm.ebats_finish' => ['ebats deferred + fastcgi_finish_request()', 'deferred', 'ebats_finish.php'],
    'fpm.amqplib' => ['php-amqplib connect + publish + confirm', 'std', 'amqplib.php'],
];

function fpm_load(array $fpm, string $pool, string $page, int $concurrency): array
{
    global $LAPIN, $C, $HERE;
    $r = run_json([
        $LAPIN, 'fcgi-load', '--socket', "{$fpm['dir']}/$pool.sock",
        '--script', realpath("$HERE/../fpm/$page"), '--concurrency', $concurrency,
        '--duration', $C['fpm_secs'], '--warmup', $C['fpm_warmup'], '--expect', 'OK',
    ], 120);
    if ($r['errors'] > 0) {
        note("fpm $pool/$page: {$r['errors']} failed requests, last: {$r['last_error']}");
    }
    return $r;
}

function section_fpm(): void
{
    global $C, $FPM_ROWS, $LAPIN, $PREFIX, $Q_EVENTS;
    // The event exchange and queue, declared by ebats, before any client publishes to them.
    run_json(php_cmd('publish.php', ['ebats', 'event', 1]));
    purge($Q_EVENTS);
    $fpm = fpm_start();
    try {
        for ($rep = 1; $rep <= $C['reps']; $rep++) {
            attempt('confirm round trip', function () use ($rep, $LAPIN, $PREFIX, $C) {
                $r = run_json([$LAPIN, 'publish-each', $C['rtt_n'], '--exchange', "$PREFIX.core.event", '--routing-key', 'bench_rtt']);
                record('fpm.rtt', ['ms' => $r['per_msg_us'] / 1000.0]);
                note(sprintf('fpm rep %d  broker confirm round trip (lapin)  %.3f ms', $rep, $r['per_msg_us'] / 1000.0));
            });
            purge($Q_EVENTS);
            foreach ($FPM_ROWS as $key => [$label, $pool, $page]) {
                attempt("fpm $label", function () use ($key, $label, $pool, $page, $fpm, $rep, $C) {
                    // Throughput with as many clients as children, then latency with one client.
                    $t = fpm_load($fpm, $pool, $page, $C['fpm_concurrency']);
                    $l = fpm_load($fpm, $pool, $page, 1);
                    record($key, [
                        'rps' => (float) $t['rps'], 'p50' => (float) $t['p50_ms'], 'p99' => (float) $t['p99_ms'],
                        'p50_1' => (float) $l['p50_ms'], 'p99_1' => (float) $l['p99_ms'], 'first_1' => (float) $l['first_out_p50_ms'],
                        'errors' => (int) $t['errors'] + (int) $l['errors'],
                    ]);
                    note(sprintf('fpm rep %d  %-42s %6.0f req/s  p50 %.2f  p99 %.2f ms | 1 client: p50 %.2f  p99 %.2f ms  errors %d',
                        $rep, $label, $t['rps'], $t['p50_ms'], $t['p99_ms'], $l['p50_ms'], $l['p99_ms'], $t['errors'] + $l['errors']));
                });
                purge($Q_EVENTS);
            }
        }
    } finally {
        stop($fpm['pid'], SIGQUIT, 10.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Section: worker throughput

function progress_dir(string $name): string
{
    global $TMP;
    $d = "$TMP/progress/$name";
    if (is_dir($d)) {
        array_map('unlink', glob("$d/*") ?: []);
    } else {
        mkdir($d, 0777, true);
    }
    return $d;
}

/** [tasks seen, failures, time of the last one] summed over the worker children's files. */
function progress(string $dir): array
{
    $seen = $failed = 0;
    $last = 0.0;
    foreach (glob("$dir/[0-9]*") ?: [] as $f) {
        $s = @file_get_contents($f);
        if ($s === false || !preg_match('/^\s*(\d+)\s+(\d+)\s+([\d.]+)/', $s, $m)) {
            continue;
        }
        $seen += (int) $m[1];
        $failed += (int) $m[2];
        $last = max($last, (float) $m[3]);
    }
    return [$seen, $failed, $last];
}

function wait_progress(string $dir, int $n, float $timeout, ?callable $tick = null): array
{
    $deadline = microtime(true) + $timeout;
    while (true) {
        $p = progress($dir);
        if ($tick) {
            $tick($p);
        }
        if ($p[0] >= $n) {
            return $p;
        }
        if (microtime(true) > $deadline) {
            throw new RuntimeException("the worker saw {$p[0]} of $n tasks in $timeout s");
        }
        usleep(5000);
    }
}

function start_worker(int $procs, int $prefetch, string $dir): int
{
    global $TMP;
    return spawn(php_cmd('worker.php', [$procs, $prefetch, $dir]), "$TMP/worker.log");
}

function start_scheduler(): int
{
    global $TMP;
    return spawn(php_cmd('scheduler.php', []), "$TMP/scheduler.log");
}

/** Events waiting -> Scheduler -> Worker; timed from the scheduler's start to the N-th callback. */
function run_e2e(int $procs, int $prefetch, int $n): float
{
    global $Q_EVENTS, $Q_TASKS;
    purge($Q_EVENTS);
    purge($Q_TASKS);
    run_json(php_cmd('fill.php', ['events', $n]));
    wait_messages($Q_EVENTS, $n);
    $dir = progress_dir("e2e");
    $w = start_worker($procs, $prefetch, $dir);
    $s = null;
    try {
        wait_consumers($Q_TASKS, $procs);
        $t0 = microtime(true);
        $s = start_scheduler();
        [$seen, $failed, $last] = wait_progress($dir, $n, 60 + $n / 100);
        if ($failed) {
            throw new RuntimeException("$failed tasks failed");
        }
        return $n / ($last - $t0);
    } finally {
        if ($s) {
            stop($s);
        }
        stop($w);
    }
}

/** Tasks waiting -> Worker; timed from the worker's start to the N-th callback. */
function run_worker_only(int $procs, int $prefetch, int $n): float
{
    global $Q_TASKS;
    purge($Q_TASKS);
    run_json(php_cmd('fill.php', ['tasks', $n]));
    wait_messages($Q_TASKS, $n);
    $dir = progress_dir("worker");
    $t0 = microtime(true);
    $w = start_worker($procs, $prefetch, $dir);
    try {
        [$seen, $failed, $last] = wait_progress($dir, $n, 60 + $n / 100);
        if ($failed) {
            throw new RuntimeException("$failed tasks failed");
        }
        return $n / ($last - $t0);
    } finally {
        stop($w);
    }
}

/** Raw messages waiting -> a bare consume-and-ack loop; timed from its start to the N-th delivery. */
function run_bare(string $client, int $prefetch, int $n): float
{
    global $Q_BARE, $LAPIN;
    purge($Q_BARE);
    run_json([$LAPIN, 'fill', $n, '--routing-key', $Q_BARE]);
    wait_messages($Q_BARE, $n);
    $t0 = microtime(true);
    if ($client === 'lapin') {
        $r = run_json([$LAPIN, 'consume', $n, $prefetch, '--queue', $Q_BARE, '--t0', sprintf('%.6f', $t0)]);
    } else {
        $r = run_json(php_cmd('consume.php', [$client, $Q_BARE, $n, $prefetch, sprintf('%.6f', $t0)], false));
    }
    return (float) $r['rate'];
}

function worker_rows(): array
{
    $rows = [];
    foreach ([1, 100] as $pf) {
        foreach ([1, 2] as $procs) {
            $rows["wk.e2e.p$pf.w$procs"] = ["events → Scheduler → Worker, $procs process" . ($procs > 1 ? 'es' : ''), 'e2e', $procs, $pf];
        }
        foreach ([1, 2] as $procs) {
            $rows["wk.tasks.p$pf.w$procs"] = ["tasks → Worker, $procs process" . ($procs > 1 ? 'es' : ''), 'worker', $procs, $pf];
        }
        $rows["wk.bare.p$pf.amqp"] = ['php-amqp consume + ack each', 'amqp', 1, $pf];
        $rows["wk.bare.p$pf.amqplib"] = ['php-amqplib basic_consume + ack each', 'amqplib', 1, $pf];
        $rows["wk.bare.p$pf.lapin"] = ['lapin (Rust) consume + pipelined acks', 'lapin', 1, $pf];
    }
    return $rows;
}

function section_worker(): void
{
    global $C, $Q_BARE;
    admin_ch()->queue_declare($Q_BARE, false, true, false, false);
    $n = $C['worker_n'];
    for ($rep = 1; $rep <= $C['reps']; $rep++) {
        foreach (worker_rows() as $key => [$label, $kind, $procs, $pf]) {
            attempt("worker $label prefetch $pf", function () use ($key, $label, $kind, $procs, $pf, $n, $rep) {
                $rate = match ($kind) {
                    'e2e' => run_e2e($procs, $pf, $n),
                    'worker' => run_worker_only($procs, $pf, $n),
                    default => run_bare($kind, $pf, $n),
                };
                record($key, ['rate' => $rate]);
                note(sprintf('worker rep %d  prefetch %-3d %-45s %8.0f /s', $rep, $pf, $label, $rate));
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Section: event-to-handler latency

function section_latency(): void
{
    global $C, $Q_EVENTS, $Q_TASKS;
    $n = (int) round($C['lat_rate'] * $C['lat_secs']);
    for ($rep = 1; $rep <= $C['reps']; $rep++) {
        attempt('latency', function () use ($n, $rep, $C, $Q_EVENTS, $Q_TASKS) {
            purge($Q_EVENTS);
            purge($Q_TASKS);
            $dir = progress_dir('latency');
            $w = start_worker(1, 1, $dir);
            $s = start_scheduler();
            try {
                wait_consumers($Q_TASKS, 1);
                wait_consumers($Q_EVENTS, 1);
                $r = run_json(php_cmd('producer_rate.php', [$C['lat_rate'], $C['lat_secs']]), 60 + $C['lat_secs']);
                wait_progress($dir, $n, 30);
            } finally {
                stop($s);
                stop($w);
            }
            $lat = [];
            foreach (glob("$dir/lat.*") ?: [] as $f) {
                foreach (file($f, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) as $l) {
                    $lat[] = 1000.0 * (float) $l;
                }
            }
            sort($lat);
            record('lat', ['p50' => pct($lat, 50), 'p99' => pct($lat, 99), 'max' => end($lat), 'n' => count($lat), 'late' => $r['late'] ?? 0]);
            note(sprintf('latency rep %d  %d events at %d/s: p50 %.2f ms  p99 %.2f ms  max %.2f ms (producer late %d)',
                $rep, count($lat), $C['lat_rate'], pct($lat, 50), pct($lat, 99), end($lat), $r['late'] ?? 0));
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Section: worker child memory

function rss_kb(int $pid): int
{
    $s = @file_get_contents("/proc/$pid/status");
    return ($s !== false && preg_match('/VmRSS:\s+(\d+)\s+kB/', $s, $m)) ? (int) $m[1] : -1;
}

function section_memory(): void
{
    global $C, $Q_TASKS, $TMP;
    attempt('memory', function () use ($C, $Q_TASKS, $TMP) {
        purge($Q_TASKS);
        $dir = progress_dir('memory');
        $w = start_worker(1, 100, $dir);
        try {
            wait_consumers($Q_TASKS, 1);
            usleep(300000);
            $kids = children_of($w);
            if (count($kids) !== 1) {
                throw new RuntimeException('expected one worker child, found ' . count($kids));
            }
            $child = $kids[0];
            $samples = ['idle' => rss_kb($child)];
            run_json(php_cmd('fill.php', ['tasks', $C['mem_warm']]));
            wait_progress($dir, $C['mem_warm'], 60);
            usleep(200000);
            $samples['after ' . number_format($C['mem_warm'])] = rss_kb($child);
            $total = $C['mem_warm'] + $C['mem_n'];
            $filler = spawn(php_cmd('fill.php', ['tasks', $C['mem_n']]), "$TMP/fill.log");
            $step = intdiv($C['mem_n'], 4);
            $next = $C['mem_warm'] + $step;
            wait_progress($dir, $total, 120 + $C['mem_n'] / 100, function ($p) use (&$next, &$samples, $step, $child, $total) {
                if ($p[0] >= $next && $next < $total) {
                    $samples['after ' . number_format($next)] = rss_kb($child);
                    $next += $step;
                }
            });
            stop($filler);
            usleep(200000);
            $samples['after ' . number_format($total)] = rss_kb($child);
            if (!in_array($child, children_of($w), true)) {
                throw new RuntimeException("worker child $child was replaced during the run");
            }
            $warm = $samples['after ' . number_format($C['mem_warm'])];
            $end = $samples['after ' . number_format($total)];
            record('mem', ['samples' => $samples, 'growth_kb' => $end - $warm, 'from_idle_kb' => $end - $samples['idle']]);
            note('memory ' . json_encode($samples));
        } finally {
            stop($w);
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Run

$info = machine_info();
$load_before = trim(explode(' ', (string) file_get_contents('/proc/loadavg'), 4)[0] ?? '');
$started = microtime(true);
note("ebats bench, prefix $PREFIX, " . ($quick ? 'quick mode' : 'full mode') . ", {$C['reps']} repetition(s)");
note($info['machine']);
note($info['versions']);
note($info['ebats']);
foreach ($sections as $s) {
    $fn = "section_$s";
    if (!function_exists($fn)) {
        bench_fail("unknown section $s");
    }
    note("== $s");
    $fn();
}
$load_after = trim(explode(' ', (string) file_get_contents('/proc/loadavg'), 4)[0] ?? '');
$elapsed = microtime(true) - $started;

// ---------------------------------------------------------------------------------------------
// Table

/** Pads to a width in characters (labels hold multi-byte arrows and dashes). */
function pad(string $s, int $w): string
{
    return $s . str_repeat(' ', max(1, $w - mb_strlen($s)));
}

$out = [];
$row = function (string $label, string ...$cols) use (&$out) {
    $s = '    ' . pad($label, 52);
    foreach ($cols as $i => $c) {
        $s .= pad($c, $i === 0 ? 24 : 20);
    }
    $out[] = rtrim($s);
};
$reps = $C['reps'];
$spread = $reps > 1 ? "median of $reps runs (min–max)" : 'one run';

$out[] = 'ebats benchmark — ' . gmdate('Y-m-d H:i') . ' UTC — ' . ($quick ? 'QUICK MODE (small N, not for comparison)' : 'full mode') . sprintf(', %.0f s', $elapsed);
$out[] = 'machine:  ' . $info['machine'];
$out[] = 'versions: ' . $info['versions'];
$out[] = 'ebats.so: ' . $info['ebats'];
$out[] = "load average (1 min) at start $load_before, at end $load_after; each figure: $spread";
$out[] = '';

if (isset($R['pub.each.lapin']) || isset($R['pub.each.ebats_event'])) {
    $out[] = sprintf('1. Publish throughput, one long-lived process, persistent %d B messages, durable queue (msg/s)', BENCH_BODY_BYTES);
    $out[] = sprintf('   a) confirm awaited per message, N=%s', number_format($C['pub_each_n']));
    foreach ($PUB_ROWS as $key => [$label, , $kind]) {
        if ($kind === 'each') {
            $row($label, cell($key, 'rate'));
        }
    }
    $out[] = sprintf('   b) confirms awaited per batch of %d, N=%s', $C['batch'], number_format($C['pub_batch_n']));
    foreach ($PUB_ROWS as $key => [$label, , $kind]) {
        if ($kind === 'batch') {
            $row($label, cell($key, 'rate'));
        }
    }
    $out[] = '';
}

if (isset($R['fpm.noop'])) {
    $out[] = sprintf('2. Web request publishing one event: PHP-FPM pm=static, %d children; %d concurrent FastCGI clients, then 1; %.0f s each',
        $C['fpm_children'], $C['fpm_concurrency'], $C['fpm_secs']);
    $row('page', sprintf('req/s, %d clients', $C['fpm_concurrency']), 'p50 / p99 ms', '1 client p50/p99', 'output p50 ms');
    foreach ($FPM_ROWS as $key => [$label]) {
        $row($label, cell($key, 'rps'),
            fmt_num(med($key, 'p50'), 2) . ' / ' . fmt_num(med($key, 'p99'), 2),
            fmt_num(med($key, 'p50_1'), 2) . ' / ' . fmt_num(med($key, 'p99_1'), 2),
            fmt_num(med($key, 'first_1'), 2));
    }
    $row('broker confirm round trip (lapin per-message publish)', cell('fpm.rtt', 'ms', 3) . ' ms');
    $errs = 0;
    foreach ($FPM_ROWS as $key => $_) {
        $errs += array_sum(values($key, 'errors'));
    }
    $out[] = "    failed requests: $errs. Latency: request sent → FastCGI END_REQUEST; output: → first STDOUT record (1 client).";
    $out[] = "    Each latency is the median over the runs of each run's percentile.";
    $out[] = '';
}

if (isset($R['wk.bare.p1.lapin']) || isset($R['wk.tasks.p1.w1'])) {
    $out[] = sprintf('3. Worker throughput, no-op tasks, N=%s waiting in the broker, from process start to the N-th callback / ack (per s)', number_format($C['worker_n']));
    $pf_last = null;
    foreach (worker_rows() as $key => [$label, , , $pf]) {
        if ($pf !== $pf_last) {
            $out[] = "   prefetch $pf";
            $pf_last = $pf;
        }
        $row($label, cell($key, 'rate'));
    }
    $out[] = '';
}

if (isset($R['lat'])) {
    $out[] = sprintf('4. Event → handler latency, %d events/s for %d s, one Scheduler, one Worker process (prefetch 1), publish confirmed',
        $C['lat_rate'], $C['lat_secs']);
    $row('', 'p50 ms', 'p99 ms', 'max ms');
    $row('published → handler running', cell('lat', 'p50', 2), cell('lat', 'p99', 2), cell('lat', 'max', 1));
    $out[] = '';
}

if (isset($R['mem'])) {
    $m = $R['mem'][0];
    $out[] = sprintf('5. Worker child resident memory (VmRSS of /proc/<child>/status), one process, prefetch 100, %s no-op tasks', number_format($C['mem_n']));
    foreach ($m['samples'] as $k => $kb) {
        $row($k, sprintf('%.1f MB', $kb / 1024));
    }
    $row(sprintf('growth over the %s tasks after the first %s', number_format($C['mem_n']), number_format($C['mem_warm'])), sprintf('%+.2f MB', $m['growth_kb'] / 1024));
    $out[] = '';
}

// Targets
$T = [];
$target = function (string $what, float $measured, float $goal, string $kind, string $detail) use (&$T) {
    if (is_nan($measured)) {
        $T[] = [$what, 'not run', '', '—'];
        return;
    }
    $ok = $kind === '>=' ? $measured >= $goal : $measured <= $goal;
    $T[] = [$what, $detail, sprintf('%s %s', $kind === '>=' ? '≥' : '≤', rtrim(rtrim(number_format($goal, 2, '.', ''), '0'), '.')), $ok ? 'MET' : 'MISSED'];
};
$ratio = fn (float $a, float $b) => ($b > 0 && !is_nan($a) && !is_nan($b)) ? $a / $b : NAN;

if (isset($R['pub.each.ebats_event'])) {
    $e = med('pub.each.ebats_event', 'rate');
    $l = med('pub.each.lapin', 'rate');
    $target('per-message publish: ebats Event / lapin', $ratio($e, $l), 0.90, '>=', sprintf('%s / %s = %.2f', fmt_num($e), fmt_num($l), $ratio($e, $l)));
    $t = med('pub.each.ebats_task', 'rate');
    $target('per-message publish: ebats Task::create / lapin', $ratio($t, $l), 0.90, '>=', sprintf('%s / %s = %.2f', fmt_num($t), fmt_num($l), $ratio($t, $l)));
    $a = med('pub.each.amqplib', 'rate');
    $target('per-message publish: ebats Event / php-amqplib', $ratio($e, $a), 1.0, '>=', sprintf('%.2f×', $ratio($e, $a)));
    $p = med('pub.each.amqp', 'rate');
    $target('per-message publish: ebats Event / php-amqp', $ratio($e, $p), 1.0, '>=', sprintf('%.2f×', $ratio($e, $p)));
    $lp = med('pub.batch.lapin', 'rate');
    $b = med('pub.batch.ebats_batch', 'rate');
    $target('batched publish: ebats Batch / lapin pipelined', $ratio($b, $lp), 0.80, '>=', sprintf('%s / %s = %.2f', fmt_num($b), fmt_num($lp), $ratio($b, $lp)));
    $d = med('pub.batch.ebats_deferred', 'rate');
    $target('deferred publish + ebats_flush / lapin pipelined', $ratio($d, $lp), 0.80, '>=', sprintf('%s / %s = %.2f', fmt_num($d), fmt_num($lp), $ratio($d, $lp)));
}
if (isset($R['fpm.noop'])) {
    $rtt = med('fpm.rtt', 'ms');
    foreach (['fpm.ebats' => 'FPM, 1 client: p50 added by publish() / confirm RTT', 'fpm.ebats_deferred' => 'FPM, 1 client: p50 added, deferred / confirm RTT'] as $k => $what) {
        $added = med($k, 'p50_1') - med('fpm.noop', 'p50_1');
        $target($what, $ratio($added, $rtt), 1.0, '<=', sprintf('%+.2f / %.2f ms = %.2f', $added, $rtt, $ratio($added, $rtt)));
    }
    $target('FPM: ebats req/s / php-amqplib req/s', $ratio(med('fpm.ebats', 'rps'), med('fpm.amqplib', 'rps')), 5.0, '>=',
        sprintf('%s / %s = %.1f×', fmt_num(med('fpm.ebats', 'rps')), fmt_num(med('fpm.amqplib', 'rps')), $ratio(med('fpm.ebats', 'rps'), med('fpm.amqplib', 'rps'))));
}
foreach ([1, 100] as $pf) {
    if (!isset($R["wk.tasks.p$pf.w1"])) {
        continue;
    }
    $amqp = med("wk.bare.p$pf.amqp", 'rate');
    $lapin = med("wk.bare.p$pf.lapin", 'rate');
    $ceil = max(is_nan($amqp) ? 0 : $amqp, is_nan($lapin) ? 0 : $lapin);
    $ceil_name = (!is_nan($lapin) && $lapin >= $amqp) ? 'lapin' : 'php-amqp';
    $w = med("wk.tasks.p$pf.w1", 'rate');
    $target("worker, prefetch $pf: tasks → Worker (1 proc) / $ceil_name", $ratio($w, $ceil), 0.70, '>=',
        sprintf('%s / %s = %.2f', fmt_num($w), fmt_num($ceil), $ratio($w, $ceil)));
    $e = med("wk.e2e.p$pf.w1", 'rate');
    $target("  the same through the Scheduler (events → 1 proc)", $ratio($e, $ceil), 0.70, '>=',
        sprintf('%s / %s = %.2f', fmt_num($e), fmt_num($ceil), $ratio($e, $ceil)));
}
if (isset($R['mem'])) {
    $g = $R['mem'][0]['growth_kb'] / 1024;
    $target(sprintf('worker child RSS growth over %s tasks (MB)', number_format($C['mem_n'])), $g, 2.0, '<=', sprintf('%+.2f MB', $g));
}
if ($T) {
    $out[] = 'Targets (from medians)';
    foreach ($T as [$what, $detail, $goal, $verdict]) {
        $out[] = rtrim('    ' . pad($what, 58) . pad($detail, 36) . pad($goal, 8) . $verdict);
    }
    $out[] = '';
}
if ($FAILURES) {
    $out[] = 'Failures during the run:';
    foreach ($FAILURES as $f) {
        $out[] = "  - $f";
    }
}
echo implode("\n", $out), "\n";
file_put_contents("$TMP/results.json", json_encode(['config' => $C, 'info' => $info, 'results' => $R], JSON_PRETTY_PRINT));
exit($FAILURES ? 1 : 0);
