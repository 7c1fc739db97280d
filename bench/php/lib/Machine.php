<?php

declare(strict_types=1);

namespace Ebats\Bench;

/** The machine, the versions and the extension build, for the head of the table. */
final class Machine
{
    /** @return array{machine:string,versions:string,ebats:string} */
    public static function info(Context $ctx): array
    {
        $cpu = '';
        foreach (file('/proc/cpuinfo') ?: [] as $l) {
            if (str_starts_with($l, 'model name')) {
                $cpu = trim(explode(':', $l, 2)[1]);
                break;
            }
        }
        preg_match('/MemTotal:\s+(\d+)/', (string) file_get_contents('/proc/meminfo'), $m);
        try {
            $conn = bench_amqplib_connect();
            $props = $conn->getServerProperties();
            $rabbit = is_array($props['version'] ?? null) ? (string) $props['version'][1] : (string) ($props['version'] ?? '');
            $conn->close();
        } catch (\Throwable $e) {
            $rabbit = '?';
        }
        $ebats = self::firstLine(escapeshellarg(PHP_BINARY) . ' -d extension=' . escapeshellarg($ctx->so) . ' -r ' . escapeshellarg('echo phpversion("ebats");'));
        $git = 'git -C ' . escapeshellarg($ctx->root);
        $commit = self::firstLine("$git rev-parse --short HEAD");
        $dirty = self::firstLine("$git status --porcelain -- src Cargo.toml Cargo.lock | head -1") !== '' ? '+changes' : '';
        $origin = bench_env('BENCH_SO_ORIGIN', $ctx->so);
        $lapin = '';
        $lock = @file_get_contents("{$ctx->root}/bench/lapin-bench/Cargo.lock") ?: '';
        if (preg_match('/name = "lapin"\nversion = "([^"]+)"/', $lock, $lm)) {
            $lapin = $lm[1];
        }
        return [
            'machine' => sprintf('%d cores (nproc), %s, %.1f GiB RAM, Linux %s', (int) self::firstLine('nproc'), $cpu,
                ((int) ($m[1] ?? 0)) / 1048576, php_uname('r')),
            'versions' => sprintf('PHP %s, RabbitMQ %s, ebats %s, php-amqp %s, php-amqplib %s, lapin %s, %s',
                PHP_VERSION, $rabbit, $ebats, phpversion('amqp') ?: 'not loaded',
                \PhpAmqpLib\Package::VERSION, $lapin, self::firstLine('rustc --version')),
            'ebats' => sprintf('%s built %s UTC, repo at %s%s', $origin, gmdate('Y-m-d H:i', (int) @filemtime($origin)), $commit, $dirty),
        ];
    }

    /** The 1-minute load average. */
    public static function load(): string
    {
        return trim(explode(' ', (string) file_get_contents('/proc/loadavg'), 4)[0] ?? '');
    }

    private static function firstLine(string $cmd): string
    {
        return trim((string) strtok((string) shell_exec($cmd . ' 2>/dev/null'), "\n"));
    }
}
