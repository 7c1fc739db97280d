<?php
/*
 * Child process driven by a test over stdin/stdout, one JSON object per line each way.
 * Runs with the extension loaded and its own environment (EBATS_AMQP_URL, EBATS_PREFIX, ...).
 *
 * Commands:
 *   {"op":"event","name":"...","params":{...}}                 Event publish
 *   {"op":"task","topic":"...","name":"...","params":...,"delay":0}   Task::create
 *   {"op":"setenv","name":"...","value":"..."|null}             putenv in this process
 *   {"op":"config"}                                             ebats_config()
 *   {"op":"quit"}
 * Answers: {"ok":true,"id":"...","ms":12.3} or {"ok":false,"class":"...","message":"...","ms":12.3}
 */

declare(strict_types=1);

use Asynclib\Ebats\Event;
use Asynclib\Ebats\Task;

fwrite(STDOUT, json_encode(['ok' => true, 'ready' => true, 'pid' => getmypid()]) . "\n");

while (($line = fgets(STDIN)) !== false) {
    $cmd = json_decode($line, true);
    if (!is_array($cmd)) {
        fwrite(STDOUT, json_encode(['ok' => false, 'class' => 'agent', 'message' => 'bad command: ' . $line]) . "\n");
        continue;
    }
    $t0 = microtime(true);
    try {
        switch ($cmd['op'] ?? '') {
            case 'event':
                $id = (new Event($cmd['name']))->setOptions($cmd['params'] ?? [])->publish();
                $answer = ['ok' => true, 'id' => $id];
                break;
            case 'task':
                $id = Task::create($cmd['topic'], $cmd['name'], $cmd['params'] ?? [], $cmd['delay'] ?? 0);
                $answer = ['ok' => true, 'id' => $id];
                break;
            case 'setenv':
                if ($cmd['value'] === null) {
                    putenv($cmd['name']);
                } else {
                    putenv($cmd['name'] . '=' . $cmd['value']);
                }
                $answer = ['ok' => true];
                break;
            case 'config':
                $answer = ['ok' => true, 'config' => ebats_config()];
                break;
            case 'quit':
                fwrite(STDOUT, json_encode(['ok' => true]) . "\n");
                exit(0);
            default:
                $answer = ['ok' => false, 'class' => 'agent', 'message' => 'unknown op'];
        }
    } catch (\Throwable $e) {
        $answer = ['ok' => false, 'class' => get_class($e), 'message' => $e->getMessage()];
    }
    $answer['ms'] = (microtime(true) - $t0) * 1000;
    fwrite(STDOUT, json_encode($answer, JSON_INVALID_UTF8_SUBSTITUTE) . "\n");
}
