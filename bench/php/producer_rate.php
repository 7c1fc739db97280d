<?php
/**
 * Publishes event EVENT (bench_lat) at a steady RATE per second for SECONDS, each confirmed, with the
 * publish time in its parameters (params.t, Unix seconds): the handler of bench_lat records now - t.
 *
 *   php -d extension=ebats.so producer_rate.php RATE SECONDS [EVENT]
 */

declare(strict_types=1);
require __DIR__ . '/common.php';

[$rate, $secs, $event] = [(float) ($argv[1] ?? 200), (float) ($argv[2] ?? 10), $argv[3] ?? 'bench_lat'];
$n = (int) round($rate * $secs);
$pad = bench_params($event, ['t' => 1700000000.123456]);
$start = microtime(true);
$late = 0;
for ($i = 0; $i < $n; $i++) {
    $due = $start + $i / $rate;
    $now = microtime(true);
    if ($due > $now) {
        usleep((int) (($due - $now) * 1e6));
    } elseif ($now - $due > 0.01) {
        $late++;
    }
    $e = new Asynclib\Ebats\Event($event);
    $e->setOptions(['t' => microtime(true)] + $pad);
    $e->publish();
}
bench_result(['n' => $n, 'secs' => round(microtime(true) - $start, 3), 'late' => $late]);
