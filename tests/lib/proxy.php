<?php
/*
 * Tiny TCP proxy for connection-cut tests (no extension needed).
 *
 *   php proxy.php <listen_port|0> <target_host> <target_port> [forward|silent]
 *
 * forward: every accepted connection is relayed to target_host:target_port.
 * silent:  connections are accepted and held, nothing is ever sent (a broker that does not answer).
 * Prints "READY <port>" once listening. Exits when its stdin is closed; kill it to cut every connection at once.
 */

declare(strict_types=1);

[$listenPort, $targetHost, $targetPort, $mode] = array_pad(array_slice($argv, 1), 4, null);
$listenPort = (int) $listenPort;
$mode = $mode ?? 'forward';
if ($targetHost === null || $targetPort === null || !in_array($mode, ['forward', 'silent'], true)) {
    fwrite(STDERR, "usage: php proxy.php <listen_port> <target_host> <target_port> [forward|silent]\n");
    exit(2);
}

$server = null;
$deadline = microtime(true) + 10;
while ($server === null) {
    $s = @stream_socket_server("tcp://127.0.0.1:$listenPort", $errno, $errstr);
    if ($s !== false) {
        $server = $s;
        break;
    }
    if (microtime(true) > $deadline) {
        fwrite(STDERR, "cannot listen on 127.0.0.1:$listenPort: $errstr\n");
        exit(1);
    }
    usleep(50000); // the port may still be held by the previous instance for a moment
}
stream_set_blocking($server, false);
$name = stream_socket_get_name($server, false);
$port = (int) substr($name, strrpos($name, ':') + 1);
fwrite(STDOUT, "READY $port\n");
fflush(STDOUT);

$peer = [];   // socket id => peer socket (forward mode)
$out = [];    // socket id => bytes waiting to be written to that socket
$sockets = []; // socket id => socket

$close = static function ($sock) use (&$peer, &$out, &$sockets): void {
    foreach ([$sock, $peer[(int) $sock] ?? null] as $s) {
        if ($s === null) {
            continue;
        }
        $id = (int) $s;
        unset($peer[$id], $out[$id], $sockets[$id]);
        if (is_resource($s)) {
            fclose($s);
        }
    }
};

stream_set_blocking(STDIN, false);
$stdinOpen = true;

while (true) {
    $read = [$server];
    if ($stdinOpen) {
        $read[] = STDIN;
    }
    $write = [];
    foreach ($sockets as $id => $s) {
        $p = $peer[$id] ?? null;
        // stop reading from a socket while its peer still has a lot to write
        if ($p === null || strlen($out[(int) $p] ?? '') < 1 << 20) {
            $read[] = $s;
        }
        if (($out[$id] ?? '') !== '') {
            $write[] = $s;
        }
    }
    $except = null;
    if (@stream_select($read, $write, $except, 1) === false) {
        continue;
    }
    foreach ($read as $s) {
        if ($s === STDIN) {
            $data = fread(STDIN, 8192);
            if (($data === '' || $data === false) && feof(STDIN)) {
                exit(0);
            }
            continue;
        }
        if ($s === $server) {
            $client = @stream_socket_accept($server, 0);
            if ($client === false) {
                continue;
            }
            stream_set_blocking($client, false);
            $sockets[(int) $client] = $client;
            $out[(int) $client] = '';
            if ($mode === 'forward') {
                $upstream = @stream_socket_client("tcp://$targetHost:$targetPort", $errno, $errstr, 5);
                if ($upstream === false) {
                    $close($client);
                    continue;
                }
                stream_set_blocking($upstream, false);
                $sockets[(int) $upstream] = $upstream;
                $out[(int) $upstream] = '';
                $peer[(int) $client] = $upstream;
                $peer[(int) $upstream] = $client;
            }
            continue;
        }
        if (!isset($sockets[(int) $s])) {
            continue; // closed earlier in this round
        }
        $data = @fread($s, 65536);
        if ($data === '' || $data === false) {
            if (feof($s) || $data === false) {
                $close($s);
            }
            continue;
        }
        $p = $peer[(int) $s] ?? null;
        if ($p !== null) {
            $out[(int) $p] .= $data;
        }
    }
    foreach ($write as $s) {
        $id = (int) $s;
        if (!isset($sockets[$id]) || ($out[$id] ?? '') === '') {
            continue;
        }
        $n = @fwrite($s, $out[$id]);
        if ($n === false) {
            $close($s);
            continue;
        }
        $out[$id] = (string) substr($out[$id], $n);
    }
}
