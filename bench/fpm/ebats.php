<?php
// One event per request, through the ebats extension (its connection is kept by the FPM child).
// Whether publish() waits for the confirm or leaves it to the end of the request is the pool's
// ebats.deferred_confirms setting.
$e = new Asynclib\Ebats\Event('bench_web');
$e->setOptions(['user' => 42, 'path' => $_SERVER['REQUEST_URI'] ?? '/', 'p' => str_repeat('x', 60)]);
$id = $e->publish();
header('Content-Type: text/plain');
echo "OK $id\n";
