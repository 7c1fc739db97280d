<?php
/**
 * Reads the run's groups stream (<prefix>.groups) from SINCE (the chunk holding it) until N follow-ups of groups whose last
 * member ended at or after SINCE (Unix ms) are on it (or TIMEOUT seconds pass), and prints, over those groups, the time from a group's last member end to its
 * follow-up being published: the end's time is the one its record carries (`at`, stamped by the worker child
 * that ended the member as it sends the record: one record for the ends of a batch of acks), the follow-up's the one in its header (x-ebats-group `at`,
 * stamped by the deciding leader as it publishes it). Both in ms, on this host's clock.
 *
 *   php group_latency.php N SINCE [TIMEOUT]
 */

declare(strict_types=1);
require __DIR__ . '/common.php';
bench_amqplib();

use PhpAmqpLib\Message\AMQPMessage;
use PhpAmqpLib\Wire\AMQPTable;

[$n, $since, $timeout] = [(int) ($argv[1] ?? 200), (int) ($argv[2] ?? 0), (float) ($argv[3] ?? 60)];
$conn = bench_amqplib_connect();
$ch = $conn->channel();
$ch->basic_qos(0, 500, false);
$lastEnd = [];
$fired = [];
$ch->basic_consume(bench_prefix() . '.groups', '', false, false, false, false,
    static function (AMQPMessage $m) use (&$lastEnd, &$fired): void {
        $headers = $m->has('application_headers') ? $m->get('application_headers')->getNativeData() : [];
        if (isset($headers['x-ebats-group'])) {
            $h = json_decode((string) $headers['x-ebats-group'], true);
            if (is_array($h) && isset($h['group'], $h['at'])) {
                $fired[$h['group']] ??= (int) $h['at'];
            }
        } else {
            $r = json_decode($m->getBody(), true);
            // An end alone, or the ends of a worker's batch of acks in one record (its `at` for all).
            $ends = is_array($r) && ($r['type'] ?? '') === 'batch' ? ($r['records'] ?? []) : [$r];
            foreach ($ends as $e) {
                if (is_array($e) && ($e['type'] ?? '') === 'end' && isset($e['group'], $r['at'])) {
                    $lastEnd[$e['group']] = max($lastEnd[$e['group']] ?? 0, (int) $r['at']);
                }
            }
        }
        $m->ack();
    }, null, new AMQPTable(['x-stream-offset' => (new DateTimeImmutable())->setTimestamp(intdiv($since, 1000) - 1)]));
$counted = static function () use (&$lastEnd, &$fired, $since): array {
    $lat = [];
    foreach ($fired as $group => $at) {
        if (($lastEnd[$group] ?? 0) >= $since) {
            $lat[] = (float) ($at - $lastEnd[$group]);
        }
    }
    return $lat;
};
$deadline = microtime(true) + $timeout;
while (count($counted()) < $n && microtime(true) < $deadline) {
    try {
        $ch->wait(null, false, 1.0);
    } catch (\PhpAmqpLib\Exception\AMQPTimeoutException) {
        // nothing new within the second: look at the deadline
    }
}
$ch->close();
$conn->close();
$lat = $counted();
sort($lat);
bench_result(['n' => count($lat), 'lat' => $lat]);
