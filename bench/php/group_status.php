<?php
/**
 * Times one Group::status call (of a group the stream does not hold: the whole read, nothing found) and
 * the process's peak resident memory after it.
 *
 *   php -d extension=ebats.so group_status.php
 *
 * Prints {"secs": s, "hwm_mb": mb}.
 */

declare(strict_types=1);
require __DIR__ . '/common.php';

$t0 = microtime(true);
Asynclib\Ebats\Group::status('bench-no-such-group');
$secs = microtime(true) - $t0;
preg_match('/^VmHWM:\s+(\d+) kB/m', (string) file_get_contents('/proc/self/status'), $m);
echo json_encode(['secs' => $secs, 'hwm_mb' => (int) ($m[1] ?? 0) / 1024]), "\n";
