<?php

declare(strict_types=1);

namespace Ebats\Tests\Lib;

/**
 * Process-wide test environment: the throw-away vhost, the broker URL the extension uses,
 * and the path of the extension binary handed to child PHP processes.
 */
final class TestEnv
{
    public const HOST = '127.0.0.1';
    public const PORT = 5672;
    public const USER = 'guest';
    public const PASS = 'guest';

    private static ?string $vhost = null;
    private static ?int $ownerPid = null;
    private static ?string $soPath = null;
    private static ?bool $extensionInDefaultIni = null;
    private static ?Broker $broker = null;

    public static function repoRoot(): string
    {
        return \dirname(__DIR__, 2);
    }

    /** Creates the vhost, exports EBATS_AMQP_URL, registers the clean-up. Call once, from the bootstrap. */
    public static function init(): void
    {
        if (self::$vhost !== null) {
            return;
        }
        self::$ownerPid = getmypid();
        $vhost = 'ebats_test_' . bin2hex(random_bytes(5));
        self::rabbitmqctl(['add_vhost', $vhost]);
        self::$vhost = $vhost;
        register_shutdown_function(static function (): void {
            // A forked child (pcntl_fork) runs shutdown functions too: only the process that made the vhost removes it.
            if (getmypid() !== self::$ownerPid || self::$vhost === null) {
                return;
            }
            if (self::$broker !== null) {
                self::$broker->close();
                self::$broker = null;
            }
            try {
                self::rabbitmqctl(['delete_vhost', self::$vhost]);
            } catch (\Throwable $e) {
                fwrite(STDERR, "warning: could not delete vhost " . self::$vhost . ": " . $e->getMessage() . "\n");
            }
            self::$vhost = null;
        });
        self::rabbitmqctl(['set_permissions', '-p', $vhost, self::USER, '.*', '.*', '.*']);

        self::setEnv('EBATS_AMQP_URL', self::amqpUrl());
        // Settings inherited from the caller's shell must not leak into the tests.
        foreach (['EBATS_PREFIX', 'EBATS_CONNECT_TIMEOUT', 'EBATS_HEARTBEAT', 'EBATS_CONFIRM_TIMEOUT', 'EBATS_DEBUG'] as $name) {
            self::setEnv($name, null);
        }
    }

    public static function vhost(): string
    {
        if (self::$vhost === null) {
            throw new \LogicException('TestEnv::init() has not run');
        }
        return self::$vhost;
    }

    public static function amqpUrl(?string $vhost = null, ?int $port = null, ?string $user = null, ?string $pass = null): string
    {
        return sprintf(
            'amqp://%s:%s@%s:%d/%s',
            rawurlencode($user ?? self::USER),
            rawurlencode($pass ?? self::PASS),
            self::HOST,
            $port ?? self::PORT,
            rawurlencode($vhost ?? self::vhost())
        );
    }

    /** Sets (or with null removes) an environment variable for this process, in getenv(), $_ENV and $_SERVER. */
    public static function setEnv(string $name, ?string $value): void
    {
        if ($value === null) {
            putenv($name);
            unset($_ENV[$name], $_SERVER[$name]);
        } else {
            putenv("$name=$value");
            $_ENV[$name] = $value;
            $_SERVER[$name] = $value;
        }
    }

    /** Shared inspection connection (php-amqp), independent of the extension. */
    public static function broker(): Broker
    {
        if (self::$broker === null) {
            self::$broker = new Broker(self::HOST, self::PORT, self::USER, self::PASS, self::vhost());
        }
        return self::$broker;
    }

    /**
     * The extension binary for child processes: $EBATS_SO, else the ebats module mapped into this process,
     * else target/release then target/debug of the repository.
     */
    public static function soPath(): string
    {
        if (self::$soPath !== null) {
            return self::$soPath;
        }
        $candidates = [];
        $env = getenv('EBATS_SO');
        if (is_string($env) && $env !== '') {
            $candidates[] = $env;
        }
        $maps = @file_get_contents('/proc/self/maps');
        if (is_string($maps) && preg_match('~\s(/\S*/(?:lib)?ebats\.so)$~m', $maps, $m)) {
            $candidates[] = $m[1];
        }
        $candidates[] = self::repoRoot() . '/target/release/libebats.so';
        $candidates[] = self::repoRoot() . '/target/debug/libebats.so';
        foreach ($candidates as $path) {
            if (is_file($path)) {
                return self::$soPath = (string) realpath($path);
            }
        }
        throw new \RuntimeException('ebats extension binary not found; tried: ' . implode(', ', $candidates));
    }

    /** True when a plain `php` already loads ebats from its ini files (then no -d extension= is passed). */
    public static function extensionInDefaultIni(): bool
    {
        if (self::$extensionInDefaultIni === null) {
            $out = [];
            exec(escapeshellarg(PHP_BINARY) . ' -r ' . escapeshellarg('echo extension_loaded("ebats") ? "yes" : "no";') . ' 2>/dev/null', $out);
            self::$extensionInDefaultIni = trim(implode('', $out)) === 'yes';
        }
        return self::$extensionInDefaultIni;
    }

    /** PHP command prefix (binary and flags) for a child process. */
    public static function phpCommand(bool $withExtension = true, array $ini = []): array
    {
        $cmd = [PHP_BINARY];
        if ($withExtension) {
            if (!self::extensionInDefaultIni()) {
                $cmd[] = '-d';
                $cmd[] = 'extension=' . self::soPath();
            }
        } elseif (self::extensionInDefaultIni()) {
            $cmd[] = '-n'; // no ini files at all, so the extension is certainly absent
        }
        foreach ($ini as $key => $value) {
            $cmd[] = '-d';
            $cmd[] = $key . '=' . $value;
        }
        return $cmd;
    }

    /** Runs rabbitmqctl with the given arguments and returns its stdout; throws when it fails. */
    public static function rabbitmqctl(array $args): string
    {
        $result = Process::run(array_merge(['rabbitmqctl'], $args), [], 60.0);
        if ($result->exitCode() !== 0) {
            throw new \RuntimeException(
                'rabbitmqctl ' . implode(' ', $args) . " failed ({$result->exitCode()}): " . trim($result->stderr() . ' ' . $result->stdout())
            );
        }
        return $result->stdout();
    }

    /**
     * The connections of ebats process $pid in the test vhost, as the broker lists them: each connection's name
     * ('ebats pid N', 'ebats pid N (consuming)', ...) => its $column (an info item of list_connections, e.g.
     * 'timeout'), in name order.
     */
    public static function connectionsOf(int $pid, string $column = 'name'): array
    {
        $out = self::rabbitmqctl(['list_connections', '-q', '--no-table-headers', 'vhost', $column, 'client_properties']);
        $found = [];
        foreach (explode("\n", $out) as $line) {
            $f = explode("\t", $line, 3);
            if (count($f) === 3 && $f[0] === self::vhost() && preg_match('/"(ebats pid (\d+)[^"]*)"/', $f[2], $m) && (int) $m[2] === $pid) {
                $found[$m[1]] = $f[1];
            }
        }
        ksort($found);
        return $found;
    }

    /**
     * Stops the shared broker's application (`rabbitmqctl stop_app`). Only tests that run alone
     * (EBATS_TEST_BROKER_RESTART=1) call it; {@see startBrokerApp()} undoes it.
     */
    public static function stopBrokerApp(): void
    {
        self::rabbitmqctl(['stop_app']);
    }

    /**
     * Starts the broker's application again, waits until it accepts work, and forgets the inspection
     * connection, which died with the broker (php-amqp reports a dead socket as connected until it is used).
     */
    public static function startBrokerApp(): void
    {
        try {
            self::rabbitmqctl(['start_app']);
        } finally {
            self::rabbitmqctl(['await_startup']);
            self::broker()->forget();
        }
    }

    /** @return array<string,int> queue name => ready messages, for queues of the test vhost whose name starts with $prefix */
    public static function listQueues(string $prefix): array
    {
        $out = self::rabbitmqctl(['list_queues', '-q', '--no-table-headers', '-p', self::vhost(), 'name', 'messages']);
        $queues = [];
        foreach (explode("\n", $out) as $line) {
            if ($line === '') {
                continue;
            }
            [$name, $messages] = array_pad(explode("\t", $line), 2, '0');
            if (str_starts_with($name, $prefix)) {
                $queues[$name] = (int) $messages;
            }
        }
        return $queues;
    }

    /** @return list<string> the streams (queues of type stream) of the test vhost whose name starts with $prefix */
    public static function listStreams(string $prefix): array
    {
        $out = self::rabbitmqctl(['list_queues', '-q', '--no-table-headers', '-p', self::vhost(), 'name', 'type']);
        $streams = [];
        foreach (explode("\n", $out) as $line) {
            [$name, $type] = array_pad(explode("\t", trim($line)), 2, '');
            if ($type === 'stream' && str_starts_with($name, $prefix)) {
                $streams[] = $name;
            }
        }
        return $streams;
    }

    /** @return array<string,array{type:string,durable:bool}> exchanges of the test vhost whose name starts with $prefix */
    public static function listExchanges(string $prefix): array
    {
        $out = self::rabbitmqctl(['list_exchanges', '-q', '--no-table-headers', '-p', self::vhost(), 'name', 'type', 'durable']);
        $exchanges = [];
        foreach (explode("\n", $out) as $line) {
            if ($line === '') {
                continue;
            }
            [$name, $type, $durable] = array_pad(explode("\t", $line), 3, '');
            if ($name !== '' && str_starts_with($name, $prefix)) {
                $exchanges[$name] = ['type' => $type, 'durable' => $durable === 'true'];
            }
        }
        return $exchanges;
    }
}
