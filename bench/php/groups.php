<?php
/**
 * Publishes groups of bench/noop tasks with Group::create (each group confirmed with its open record), each
 * with the follow-up bench_group_done (finally).
 *
 *   php -d extension=ebats.so groups.php GROUPS SIZE
 *
 * Prints {"groups": n, "tasks": n, "secs": s}.
 */

declare(strict_types=1);
require __DIR__ . '/common.php';

[$groups, $size] = [(int) ($argv[1] ?? 0), (int) ($argv[2] ?? 0)];
if ($groups < 1 || $size < 1) {
    bench_fail('usage: groups.php GROUPS SIZE');
}
$tasks = array_fill(0, $size, ['topic' => 'bench', 'name' => 'noop', 'params' => ['n' => 1]]);
$t0 = microtime(true);
for ($i = 0; $i < $groups; $i++) {
    Asynclib\Ebats\Group::create($tasks, ['finally' => 'bench_group_done']);
}
echo json_encode(['groups' => $groups, 'tasks' => $groups * $size, 'secs' => microtime(true) - $t0]), "\n";
