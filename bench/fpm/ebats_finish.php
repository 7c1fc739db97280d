<?php
// As ebats.php, then fastcgi_finish_request(): the answer leaves before the end of the request, where
// ebats waits for the confirm of a deferred publish (pool "deferred": ebats.deferred_confirms=1).
$e = new Asynclib\Ebats\Event('bench_web');
$e->setOptions(['user' => 42, 'path' => $_SERVER['REQUEST_URI'] ?? '/', 'p' => str_repeat('x', 60)]);
$id = $e->publish();
header('Content-Type: text/plain');
echo "OK $id\n";
fastcgi_finish_request();
