<?php
/*
 * TLS-terminating proxy for the amqps:// tests (no extension needed).
 *
 *   php tls_proxy.php <cert.pem> <key.pem> <listen_port|0> <target_host> <target_port>
 *
 * Listens on 127.0.0.1:<listen_port> (0: a free port), does the TLS server handshake with each client
 * (non-blocking, so a client that stalls or fails its handshake never holds up the others), then relays the
 * decrypted bytes to target_host:target_port in plain TCP and back, for any number of clients at once.
 *
 * Reports on stdout, one line each:
 *   READY <port>                          listening
 *   TLS <protocol> <cipher>               a client finished its handshake (relaying starts)
 *   HANDSHAKE_FAILED <reason>             a client's handshake failed (e.g. it did not trust the certificate)
 *   UPSTREAM_FAILED <reason>              the target refused the relayed connection
 * Exits when its stdin is closed or its parent process dies (a test that dies leaves nothing behind), and on
 * SIGTERM/SIGINT.
 */

declare(strict_types=1);

[$certFile, $keyFile, $listenPort, $targetHost, $targetPort] = array_pad(array_slice($argv, 1), 5, null);
if ($certFile === null || $keyFile === null || $listenPort === null || $targetHost === null || $targetPort === null) {
    fwrite(STDERR, "usage: php tls_proxy.php <cert.pem> <key.pem> <listen_port> <target_host> <target_port>\n");
    exit(2);
}
foreach ([$certFile, $keyFile] as $f) {
    if (!is_readable($f)) {
        fwrite(STDERR, "tls_proxy: cannot read $f\n");
        exit(2);
    }
}
$listenPort = (int) $listenPort;
$targetPort = (int) $targetPort;

const HANDSHAKE_TIMEOUT = 10.0;     // seconds a client may take to finish its handshake
const MAX_BUFFERED = 1 << 20;       // stop reading a side while its peer has this much left to write
const READ_CHUNK = 65536;

if (function_exists('pcntl_async_signals')) {
    pcntl_async_signals(true);
    pcntl_signal(SIGTERM, static function (): void {
        exit(0);
    });
    pcntl_signal(SIGINT, static function (): void {
        exit(0);
    });
}
$parentPid = function_exists('posix_getppid') ? posix_getppid() : null;

$report = static function (string $line): void {
    // one line, no control characters, so the test reads exactly one report per event
    @fwrite(STDOUT, preg_replace('/[\x00-\x1f]+/', ' ', $line) . "\n");
    @fflush(STDOUT);
};

$context = stream_context_create(['ssl' => [
    'local_cert' => $certFile,
    'local_pk' => $keyFile,
    'verify_peer' => false,          // clients present no certificate
    'allow_self_signed' => true,
    'disable_compression' => true,
]]);

$server = null;
$deadline = microtime(true) + 10;
while ($server === null) {
    $s = @stream_socket_server("tcp://127.0.0.1:$listenPort", $errno, $errstr, STREAM_SERVER_BIND | STREAM_SERVER_LISTEN, $context);
    if ($s !== false) {
        $server = $s;
        break;
    }
    if (microtime(true) > $deadline) {
        fwrite(STDERR, "tls_proxy: cannot listen on 127.0.0.1:$listenPort: $errstr\n");
        exit(1);
    }
    usleep(50000); // the port may still be held by a previous instance for a moment
}
stream_set_blocking($server, false);
$name = stream_socket_get_name($server, false);
$report('READY ' . (int) substr($name, strrpos($name, ':') + 1));

/*
 * Connection state, by socket id:
 *   $sockets[id]    the socket
 *   $peer[id]       the other side's socket (set once the handshake is done and the target accepted)
 *   $out[id]        bytes waiting to be written to this socket
 *   $tls[id]        true for client (TLS) sockets
 *   $pending[id]    handshake deadline, for clients still in their handshake
 *   $eof[id]        this side has closed: once its peer has written everything, the pair is closed
 */
$sockets = $peer = $out = $tls = $pending = $eof = [];

$closePair = static function ($sock) use (&$sockets, &$peer, &$out, &$tls, &$pending, &$eof): void {
    foreach ([$sock, $peer[(int) $sock] ?? null] as $s) {
        if ($s === null) {
            continue;
        }
        $id = (int) $s;
        unset($sockets[$id], $peer[$id], $out[$id], $tls[$id], $pending[$id], $eof[$id]);
        if (is_resource($s)) {
            @fclose($s);
        }
    }
};

/*
 * Reads everything available on $s into its peer's buffer. A non-blocking TLS read returns at most one record
 * and may leave decrypted bytes inside OpenSSL, which stream_select cannot see: so read until fread gives ''
 * (nothing more for now). '' with feof() false just means "no data yet"; only feof() means the peer closed.
 */
$pull = static function ($s) use (&$sockets, &$peer, &$out, &$eof): void {
    $id = (int) $s;
    $p = $peer[$id] ?? null;
    while (isset($sockets[$id])) {
        if ($p !== null && strlen($out[(int) $p]) >= MAX_BUFFERED) {
            return; // resumes when the peer has written some of it (the next select round)
        }
        $data = @fread($s, READ_CHUNK);
        if ($data === false || $data === '') {
            if ($data === false || feof($s)) {
                $eof[$id] = true;
            }
            return;
        }
        if ($p !== null) {
            $out[(int) $p] .= $data;
        }
    }
};

/** Writes what it can of $s's buffer; false when the socket is dead. */
$push = static function ($s) use (&$out): bool {
    $id = (int) $s;
    while ($out[$id] !== '') {
        $n = @fwrite($s, $out[$id]);
        if ($n === false) {
            return false;
        }
        if ($n === 0) {
            return !feof($s); // would block (TLS: want read/write); try again after the next select
        }
        $out[$id] = (string) substr($out[$id], $n);
    }
    return true;
};

/** Drives the handshake of client $c one step; when done, connects the target and starts relaying. */
$handshake = static function ($c) use (&$sockets, &$peer, &$out, &$tls, &$pending, &$eof, $closePair, $pull, $report, $targetHost, $targetPort): void {
    $id = (int) $c;
    $error = null;
    set_error_handler(static function (int $no, string $msg) use (&$error): bool {
        $error = ($error === null ? '' : $error . ' ') . $msg;
        return true;
    });
    try {
        $r = stream_socket_enable_crypto($c, true, STREAM_CRYPTO_METHOD_TLS_SERVER);
    } finally {
        restore_error_handler();
    }
    if ($r === 0) {
        if (microtime(true) > $pending[$id]) {
            $report('HANDSHAKE_FAILED timed out after ' . HANDSHAKE_TIMEOUT . ' s');
            $closePair($c);
        }
        return; // needs more bytes from the client
    }
    if ($r !== true) {
        $report('HANDSHAKE_FAILED ' . ($error ?? (feof($c) ? 'the client closed the connection' : 'unknown error')));
        $closePair($c);
        return;
    }
    unset($pending[$id]);
    $upstream = @stream_socket_client("tcp://$targetHost:$targetPort", $errno, $errstr, 5);
    if ($upstream === false) {
        $report("UPSTREAM_FAILED $errstr");
        $closePair($c);
        return;
    }
    stream_set_blocking($upstream, false);
    $uid = (int) $upstream;
    $sockets[$uid] = $upstream;
    $out[$uid] = '';
    $peer[$id] = $upstream;
    $peer[$uid] = $c;
    $crypto = stream_get_meta_data($c)['crypto'] ?? [];
    $report(sprintf('TLS %s %s', $crypto['protocol'] ?? '?', $crypto['cipher_name'] ?? '?'));
    // The client may have sent its first bytes (the AMQP header) right behind its last handshake message:
    // they may already sit decrypted inside OpenSSL, where no select would ever report them.
    $pull($c);
};

stream_set_blocking(STDIN, false);
$stdinOpen = true;

while (true) {
    if ($parentPid !== null && posix_getppid() !== $parentPid) {
        exit(0); // the parent died
    }

    // Close the pairs that are finished: one side closed and the other has nothing left to write.
    foreach (array_keys($eof) as $id) {
        if (!isset($sockets[$id])) {
            continue;
        }
        $p = $peer[$id] ?? null;
        if ($p === null || ($out[(int) $p] ?? '') === '' || !isset($sockets[(int) $p])) {
            $closePair($sockets[$id]);
        }
    }

    $read = [$server];
    if ($stdinOpen) {
        $read[] = STDIN;
    }
    $write = [];
    foreach ($sockets as $id => $s) {
        $p = $peer[$id] ?? null;
        if (isset($pending[$id]) || ($p !== null && !isset($eof[$id]) && strlen($out[(int) $p]) < MAX_BUFFERED)) {
            $read[] = $s;
        }
        if (($out[$id] ?? '') !== '') {
            $write[] = $s;
        }
    }
    $except = null;
    // wake up regularly while handshakes are pending (their deadline) and to notice a dead parent
    if (@stream_select($read, $write, $except, 0, $pending === [] ? 500000 : 100000) === false) {
        continue; // interrupted by a signal
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
            while (($client = @stream_socket_accept($server, 0)) !== false) {
                stream_set_blocking($client, false);
                $id = (int) $client;
                $sockets[$id] = $client;
                $out[$id] = '';
                $tls[$id] = true;
                $pending[$id] = microtime(true) + HANDSHAKE_TIMEOUT;
                $handshake($client);
            }
            continue;
        }
        $id = (int) $s;
        if (!isset($sockets[$id])) {
            continue; // closed earlier in this round
        }
        if (isset($pending[$id])) {
            $handshake($s);
            continue;
        }
        $pull($s);
    }
    // handshakes whose client went quiet still need their deadline checked
    foreach (array_keys($pending) as $id) {
        if (isset($sockets[$id]) && microtime(true) > $pending[$id]) {
            $handshake($sockets[$id]);
        }
    }

    foreach ($write as $s) {
        $id = (int) $s;
        if (!isset($sockets[$id])) {
            continue;
        }
        if (!$push($s)) {
            $closePair($s);
        }
    }
    // A TLS write can need the socket to be readable (or the reverse): a client whose buffer is pending is
    // also retried here, so nothing waits for a select event that the TLS layer consumed.
    foreach ($tls as $id => $_) {
        if (isset($sockets[$id]) && !isset($pending[$id]) && $out[$id] !== '' && !$push($sockets[$id])) {
            $closePair($sockets[$id]);
        }
    }
}
