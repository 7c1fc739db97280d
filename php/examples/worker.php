<?php
/**
 * Worker: runs the tasks of topic "demo". A task named virtualShipping of topic demo runs
 * TaskDemoModel::virtualShippingTask($params).
 *
 *     php -d extension=/path/to/ebats.so worker.php [topic]
 *
 * The topic may be given as the first argument (the deploy/ units and Supervisor configuration pass it); it
 * defaults to demo, the only topic whose handlers (task/TaskDemoModel.php) this example has.
 *
 * SIGTERM or SIGINT (Ctrl-C) stops it gracefully: the task in hand is finished first.
 */

require_once __DIR__ . '/config.php';
require_once __DIR__ . '/task/TaskDemoModel.php';

use Asynclib\Ebats\Worker;

// Called after every execution, to store or log the outcome. The last two parameters are optional:
// a callback with only the first six works too.
$callback = function ($topic, $taskid, $taskname, $params, $timeuse, $message, $status = null, $attempt = null) {
    $states = [
        Worker::STATE_SUCC => 'SUCC',
        Worker::STATE_FAIL => 'FAIL',
        Worker::STATE_RETRY => 'RETRY',
        Worker::STATE_ERR => 'ERR',
    ];
    printf(
        "topic=%s taskid=%s taskname=%s params=%s timeuse=%.2fms message=%s status=%s attempt=%s\n",
        $topic,
        $taskid,
        $taskname,
        json_encode($params, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PARTIAL_OUTPUT_ON_ERROR),
        $timeuse,
        json_encode($message, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE),
        $states[$status] ?? (string) $status,
        (string) $attempt
    );
};

$worker = new Worker($callback);  // optional second argument: number of processes, default 1
$worker->setQueue($argv[1] ?? 'demo');  // the topic: one queue per topic
$worker->run();
