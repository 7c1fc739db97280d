<?php
/**
 * Shared by the benchmark scripts: settings from the environment, payloads, php-amqplib loading,
 * and the one-line JSON result every measuring script prints.
 */

declare(strict_types=1);

const BENCH_BODY_BYTES = 200;

function bench_env(string $name, string $default = ''): string
{
    $v = getenv($name);
    return ($v === false || $v === '') ? $default : $v;
}

function bench_prefix(): string
{
    $p = bench_env('EBATS_PREFIX');
    if ($p === '' || $p === 'ebats') {
        fwrite(STDERR, "set EBATS_PREFIX to the bench run's own prefix\n");
        exit(2);
    }
    return $p;
}

/** Broker endpoint for the php-amqp and php-amqplib clients. */
function bench_broker(): array
{
    return [
        'host' => bench_env('BENCH_AMQP_HOST', '127.0.0.1'),
        'port' => (int) bench_env('BENCH_AMQP_PORT', '5672'),
        'user' => bench_env('BENCH_AMQP_USER', 'guest'),
        'pass' => bench_env('BENCH_AMQP_PASS', 'guest'),
        'vhost' => bench_env('BENCH_AMQP_VHOST', '/'),
    ];
}

/** Where every publishing client sends: ebats's event exchange (fanout) into the durable event queue. */
function bench_event_exchange(): string
{
    return bench_prefix() . '.core.event';
}

/**
 * Event parameters that make an ebats event document of about BENCH_BODY_BYTES bytes:
 * {"v":1,"id":"<32>","event":"bench_pub","params":{"p":"<pad>"},"created_at":1700000000.123456}
 * is 116 bytes plus the pad for a nine-character event name.
 */
function bench_params(string $event = 'bench_pub', array $extra = []): array
{
    $fixed = 107 + strlen($event) + 2;
    foreach ($extra as $k => $v) {
        $fixed += strlen((string) $k) + strlen(json_encode($v)) + 4;
    }
    return $extra + ['p' => str_repeat('x', max(0, BENCH_BODY_BYTES - $fixed))];
}

/** Task parameters that make an ebats task document of about BENCH_BODY_BYTES bytes (its fixed part is ~175). */
function bench_task_params(): array
{
    return ['p' => str_repeat('x', BENCH_BODY_BYTES - 175)];
}

/** A plain ~200 byte JSON body for the raw clients. */
function bench_body(): string
{
    $head = '{"bench":"php","pad":"';
    return $head . str_repeat('x', BENCH_BODY_BYTES - strlen($head) - 2) . '"}';
}

function bench_amqplib(): void
{
    foreach ([
        bench_env('BENCH_AMQPLIB_AUTOLOAD'),
        '/usr/share/php/PhpAmqpLib/autoload.php',
        __DIR__ . '/../../vendor/autoload.php',
    ] as $f) {
        if ($f !== '' && is_file($f)) {
            require_once $f;
            return;
        }
    }
    fwrite(STDERR, "php-amqplib not found (apt-get install php-amqplib)\n");
    exit(2);
}

/**
 * Deletes the queues of the unique keys `keys` of `topic` (each key's queue and its holder's), which would
 * otherwise expire together after their lifetime, thousands of queues at once, in the middle of whatever
 * runs then. Not timed.
 */
function bench_delete_unique_keys(string $topic, array $keys): void
{
    bench_amqplib();
    $conn = bench_amqplib_connect();
    $ch = $conn->channel();
    foreach ($keys as $key) {
        $q = bench_prefix() . ".unique.$topic.$key";
        $ch->queue_delete($q);
        $ch->queue_delete("$q~h");
    }
    $ch->close();
    $conn->close();
}

function bench_amqplib_connect(): \PhpAmqpLib\Connection\AMQPStreamConnection
{
    $b = bench_broker();
    return new \PhpAmqpLib\Connection\AMQPStreamConnection($b['host'], $b['port'], $b['user'], $b['pass'], $b['vhost']);
}

function bench_amqp_connect(): AMQPConnection
{
    $b = bench_broker();
    $c = new AMQPConnection([
        'host' => $b['host'], 'port' => $b['port'], 'login' => $b['user'], 'password' => $b['pass'],
        'vhost' => $b['vhost'], 'read_timeout' => 30, 'write_timeout' => 30,
    ]);
    $c->connect();
    return $c;
}

function bench_result(array $r): void
{
    echo json_encode($r, JSON_UNESCAPED_SLASHES), "\n";
}

function bench_fail(string $msg): void
{
    fwrite(STDERR, $msg . "\n");
    exit(1);
}
