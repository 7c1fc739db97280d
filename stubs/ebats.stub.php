<?php
/**
 * IDE stubs for the ebats extension (ebats.so). They describe the classes, constants and functions the
 * extension defines, for editors and static analysers; do not load them at run time. Method bodies are
 * empty on purpose.
 */

namespace Asynclib\Exception {

    /**
     * Implemented by every exception that ebats throws or that task code throws to steer ebats.
     */
    interface ExceptionInterface
    {
    }

    /**
     * Thrown by a task handler to have the task run again later.
     *
     * Without arguments the default intervals apply (5 s, 300 s, 600 s, 3600 s, 7800 s); with $retry and
     * $interval the task runs up to $retry more times, $interval seconds apart. When the runs are used up
     * the task fails (Worker::STATE_FAIL) and goes to the failed store. A negative $retry or $interval
     * (or one above 4294967295 runs or 268435455 seconds) is refused with a \ValueError.
     */
    class RetryException extends \RuntimeException implements ExceptionInterface
    {
        /** @var int|null the $retry given to the constructor */
        protected $retry = null;

        /** @var int|null the $interval given to the constructor */
        protected $interval = null;

        /**
         * @param string $message why the task must run again
         * @param int|null $retry how many more runs at most (0 or more), null for the worker's default intervals
         * @param int|null $interval seconds between runs (0 or more), null for the worker's default intervals
         * @throws \ValueError when $retry or $interval is negative or out of range
         * @param int $code exception code
         * @param \Throwable|null $previous the exception that caused this one
         */
        public function __construct(string $message = "", ?int $retry = null, ?int $interval = null, int $code = 0, ?\Throwable $previous = null)
        {
        }

        /** @return int|null the number of further runs asked for, or null for the default */
        public function getRetry(): ?int
        {
        }

        /** @return int|null the seconds between runs asked for, or null for the default */
        public function getInterval(): ?int
        {
        }
    }

    /**
     * Thrown by a task handler when the task has failed for good (Worker::STATE_FAIL, no retry, failed
     * store). ebats throws it too for bad task or event input: an invalid name, parameters JSON cannot hold,
     * a negative or too large delay.
     */
    class TaskException extends \RuntimeException implements ExceptionInterface
    {
    }

    /**
     * Thrown by a task handler when a service it depends on is down (Worker::STATE_ERR): the task is put
     * back and tried again after a pause, a bounded number of times, then sent to the failed store.
     */
    class ServiceException extends \RuntimeException implements ExceptionInterface
    {
    }

    /**
     * Thrown by ebats when the broker is unreachable, refuses the credentials or vhost, refuses or cannot
     * route a publish, or does not confirm it in time.
     *
     * A failed publish (publish(), Task::create(), Batch::publish(), ebats_flush()) names its messages in
     * the message ("event 'order_paied' id=…", "task of topic 'demo' id=…") and gives them as data through
     * getFailures(). When they were handed to the broker but no answer came (a confirm timed out, the
     * connection broke while waiting), the message adds "may still have been stored": the broker may hold
     * them, so look for those ids before publishing again.
     */
    class ConnectionedException extends \RuntimeException implements ExceptionInterface
    {
        /** @var array<int, array<string, mixed>>|null */
        protected $failures = null;

        /**
         * The publishes this exception is about (empty when it is not about publishes), in the order they were
         * made, each: 'id' (string), 'kind' ('event', 'task' or 'message'), 'event' (the event's name, or
         * null), 'topic' (the task's topic, or null), 'exchange' (string), 'error' (string), 'maybe_stored'
         * (bool: it was handed to the broker and no answer came, so the broker may hold it).
         *
         * @return array<int, array{id: ?string, kind: string, event: ?string, topic: ?string, exchange: string, error: string, maybe_stored: bool}>
         */
        public function getFailures(): array
        {
        }
    }
}

namespace Asynclib\Amq {

    /**
     * RabbitMQ exchange types, for Consumer::setExchange() and Publish::setExchange().
     */
    class ExchangeTypes
    {
        public const FANOUT = 'fanout';
        public const DIRECT = 'direct';
        public const TOPIC = 'topic';
        public const HEADERS = 'headers';

        public function __construct()
        {
        }
    }
}

namespace Asynclib\Core {

    /**
     * Consumes messages from any exchange and queue and hands each one to a PHP callable, for instance
     * to turn it into tasks with Task::create(). JSON bodies arrive decoded to arrays, other bodies as
     * strings. The same class is also named \Asynclib\Ebats\Consumer.
     */
    class Consumer
    {
        public function __construct()
        {
        }

        /**
         * @param string $name the exchange to bind the queue to (declared durable if missing)
         * @param string $type one of the ExchangeTypes constants
         */
        public function setExchange(string $name, string $type = 'direct'): static
        {
        }

        /**
         * @param string $name the queue to consume (declared durable if missing)
         * @param string[] $routing_keys the binding keys of the queue on the exchange
         */
        public function setQueue(string $name, array $routing_keys = ['']): static
        {
        }

        /**
         * @param string[] $routing_keys the binding keys of the queue on the exchange
         */
        public function setRoutingKeys(array $routing_keys): static
        {
        }

        /**
         * Accepted for compatibility; bodies are never passed to unserialize() (the original library's
         * Publish::send() bodies are read by ebats's own reader).
         */
        public function setSerialize(bool $serialize): static
        {
        }

        /**
         * @param int $prefetch messages taken from the broker ahead of time (default 1)
         */
        public function setPrefetch(int $prefetch): static
        {
        }

        /**
         * Consumes until the process is stopped. The callable gets ($routing_key, $message), or, for a body
         * written by the original library's Publish::send(), ($routing_key, $data, $etime).
         *
         * @param callable(string, mixed): mixed $callback
         * @throws \Asynclib\Exception\ConnectionedException
         */
        public function run(callable $callback): void
        {
        }
    }

    /**
     * Publishes messages to an exchange of your choice.
     */
    class Publish
    {
        public function __construct()
        {
        }

        /**
         * @param string $name the exchange to publish to
         * @param string $type one of the ExchangeTypes constants
         */
        public function setExchange(string $name, string $type = 'direct'): static
        {
        }

        /**
         * Accepted for compatibility; the process keeps one connection and reuses it.
         */
        public function setAutoClose(bool $auto_close): static
        {
        }

        /**
         * Publishes $data as JSON and waits for the broker's confirm.
         *
         * @param mixed $data the message, encoded as JSON
         * @param string $routing_key the routing key
         * @param int $delay must be 0: delays are for tasks (Task::create() with a delay)
         * @return bool true; failures throw
         * @throws \Asynclib\Exception\ConnectionedException when the broker is unreachable or refuses
         * @throws \Asynclib\Exception\TaskException when $delay is not 0 or $data cannot be encoded
         */
        public function send(mixed $data, string $routing_key = '', int $delay = 0): bool
        {
        }
    }
}

namespace Asynclib\Ebats {

    /**
     * A named event, published by business code. The scheduler turns it into the tasks registered for it.
     */
    class Event
    {
        /**
         * @param string $event_name 1 to 255 characters, no control characters
         */
        public function __construct(string $event_name)
        {
        }

        /**
         * Sets the event's parameters, given to each of its tasks.
         *
         * @param array $options
         */
        public function setOptions(array $options = []): static
        {
        }

        /**
         * Publishes the event and returns once the broker has stored it durably.
         *
         * @return string the event id (32 lowercase hex characters)
         * @throws \Asynclib\Exception\ConnectionedException when the broker is unreachable or refuses
         * @throws \Asynclib\Exception\TaskException when the name or parameters are invalid
         */
        public function publish(?bool $defer = null): string
        {
        }

        /** @return string the event name */
        public function getEvent(): string
        {
        }

        /** @return array the event's parameters */
        public function getParams(): array
        {
        }
    }

    /**
     * Many events and tasks published together: one round of broker confirms for all of them.
     *
     *     $ids = (new Batch())->event('order_paied', ['order_id' => 1])->task('demo', 'mail', $p)->publish();
     */
    class Batch
    {
        public function __construct()
        {
        }

        /** Adds an event to publish, as (new Event($event_name))->setOptions($options) would. */
        public function event(string $event_name, array $options = []): static
        {
        }

        /**
         * Adds a task to create, as Task::create() would (options: 'unique', 'unique_for', 'limit'). A unique task whose
         * key another task holds is not published; publish() gives that task's id in its place.
         */
        public function task(string $topic, string $name, mixed $params = [], int $delay = 0, array $options = []): static
        {
        }

        /** How many events and tasks wait in the batch. */
        public function count(): int
        {
        }

        /**
         * Publishes everything added, in order, and empties the batch.
         *
         * @param bool|null $defer true: return once handed over, the confirms awaited at the end of the
         *     request or by ebats_flush(); null: the ebats.deferred_confirms setting
         * @return string[] the ids of the events and tasks, in the order they were added
         * @throws \Asynclib\Exception\ConnectionedException
         */
        public function publish(?bool $defer = null): array
        {
        }
    }

    /**
     * What the workers, schedulers and consumers serving metrics are doing (see docs/monitoring/status.md):
     * each announces itself on the stream "<prefix>.processes", and serves its status at /status.json.
     */
    class Status
    {
        public function __construct()
        {
        }

        /**
         * The processes announced in the last minute under the prefix, the newest announcement per address:
         * each role, topics, address (as bound), probe (where to reach it), pid, host, started_ms, at_ms.
         *
         * @return list<array<string, mixed>>
         * @throws \Asynclib\Exception\ConnectionedException
         */
        public static function discover(): array
        {
        }

        /**
         * The status document served at $address (host:port).
         *
         * @return array<string, mixed>
         * @throws \Asynclib\Exception\TaskException when the address is not host:port or the timeout not in (0, 60]
         * @throws \Asynclib\Exception\ConnectionedException when nothing answers within $timeout seconds, or the answer is not a status document
         */
        public static function fetch(string $address, float $timeout = 3.0): array
        {
        }
    }

    /**
     * The failed stores: tasks that failed for good, per topic, with their error, and the events the scheduler
     * could not read (the store named FailedStore::EVENTS). Also on the command line:
     * php php/bin/ebats failed:list|failed:replay|failed:purge <topic>, failed:list|failed:purge --events.
     *
     * A body a worker could not run as a task of its topic (not JSON, an invalid name or id, another topic) is kept
     * as it came in the store of the worker's topic, listed with 'unreadable' => true and its 'body', and
     * never replayed; unreadable events likewise.
     */
    class FailedStore
    {
        /** The store of the event bodies the scheduler could not read (the queue <prefix>.events.unreadable). */
        public const EVENTS = '@events';

        public function __construct()
        {
        }

        /**
         * @param string $topic a topic, or FailedStore::EVENTS
         * @return array<int, array<string, mixed>> the entries, oldest first: tasks in the wire format, bodies
         *     kept as they came with 'unreadable' => true and 'body'; each with a 'failed' entry: message, class,
         *     attempts (the runs it had), failed_at, status
         */
        public static function list(string $topic, int $limit = 100): array
        {
        }

        /**
         * Moves the failed task $id, or all of them when $id is null, back to the ready queue as first attempts.
         * Unreadable entries stay in the store, and so does a unique task whose key another task holds now.
         *
         * @return int how many were moved
         * @throws \Asynclib\Exception\TaskException when $id is an unreadable entry or a unique task whose key is held
         *     (the message names the holder), or $topic is FailedStore::EVENTS
         *     (neither can be replayed), or $id is not a task id (1 to 128 printable ASCII characters, no spaces)
         */
        public static function replay(string $topic, ?string $id = null): int
        {
        }

        /**
         * @param string $topic a topic, or FailedStore::EVENTS
         * @return int how many entries were deleted
         */
        public static function purge(string $topic): int
        {
        }
    }

    /**
     * The dashboard in the browser: overview, topics, processes, executions, failed stores, schedules and
     * live charts, served by this process until SIGTERM/SIGINT. Bound to 127.0.0.1 unless told otherwise;
     * a token (option `token`, or `token_file` naming a file that holds it, or ebats.dashboard_token /
     * EBATS_DASHBOARD_TOKEN) is required on any other address. Requests carry it as `Authorization: Bearer`
     * (any case) or as the cookie set by opening `/?token=<token>` once (`+` typed as is or as %2B).
     * Also on the command line: php php/bin/ebats dashboard --listen=127.0.0.1:8080 [--token-file=F]
     * [--topics=a,b] [--metrics=host:port,...].
     * With neither topics nor metrics, the processes serving metrics are found through the broker.
     * Executions and failures come from the execution history (ebats.history) when its stream exists.
     */
    class Dashboard
    {
        /**
         * @param array{listen?:string,token?:?string,token_file?:?string,topics?:list<string>|string,metrics?:list<string>|string,sample_every?:float|int}|null $options
         * @throws \Asynclib\Exception\ExceptionInterface on a bad option or an unsafe setup
         */
        public function __construct(?array $options = null) {}

        /** Binds the listening socket (once); returns the dashboard's URL. */
        public function listen(): string {}

        /** Serves until SIGTERM or SIGINT. */
        public function run(): void {}
    }

    /**
     * The execution history: with the setting ebats.history on, every worker child appends a record of each run
     * it settles to the stream <prefix>.history (retention ebats.history_max_age, ebats.history_max_bytes).
     * Also on the command line: php php/bin/ebats history [--topic T] [--task N] [--status S] [--held H]
     * [--since 10m] [--limit N] [--id ID] [--follow] [--json].
     *
     * A record: id (the task's id, the same in its retries and in the failed store), topic, task, status
     * (Worker::STATE_*; 3 cancelled, 4 held), outcome ('succ', 'fail', 'retry', 'err', 'cancelled', 'held'), attempt, ms (time used), message, class (of
     * what the handler threw, or null), params (or, when longer than ebats.history_params_bytes as JSON, the start
     * of their JSON text as a string), params_truncated, pid, host, start_ms, end_ms (milliseconds since the
     * epoch), event and event_id (the event that made the task, or null), v; held ('rate', 'concurrency',
     * 'paused', only when something held the task: on a 'held' record what kept it from starting, on a run's
     * record what it waited for in place first).
     *
     * Filter keys: topic, task, status ('succ', 'fail', 'retry', 'err', 'cancelled', 'held' or Worker::STATE_*),
     * held ('rate', 'concurrency', 'paused'), since (seconds back from now, or '10m', '2h', '7d'), limit (1 to
     * 1000000, default 1000), id (a task id).
     */
    class History
    {
        public function __construct()
        {
        }

        /**
         * @param array<string, string|int> $filter
         * @return array<int, array<string, mixed>> the newest records that match (at most limit), oldest first
         * @throws \Asynclib\Exception\TaskException for an unknown filter key or a bad value
         * @throws \Asynclib\Exception\ConnectionedException when the broker cannot be reached or the stream does
         *     not exist (no worker ran with ebats.history on)
         */
        public static function read(?array $filter = null): array
        {
        }

        /**
         * Calls $callback($record) for each record that matches the filter as it is written (from 'since' when
         * given, else from now on) until $callback returns false, or SIGTERM or SIGINT arrives (unless the application
         * handles them). 'limit' does not apply. When its broker node goes away it moves to the next URL of
         * ebats.amqp_url and reads on after the last record it gave (nothing lost, nothing given twice).
         *
         * @param array<string, string|int> $filter
         * @param callable(array<string, mixed>): (bool|void) $callback
         */
        public static function follow(array $filter, callable $callback): void
        {
        }
    }

    /**
     * Periodic schedules stored on the broker (the stream <prefix>.cron), fired by the leading Scheduler and
     * managed at run time: every change takes effect on the running leader within a second. Also on the
     * command line: php php/bin/ebats schedules:list|add|update|remove|pause|resume|trigger.
     */
    class Schedules
    {
        public function __construct()
        {
        }

        /**
         * Stores a schedule; same arguments as EventManager::cron().
         *
         * @return string its name
         * @throws \Asynclib\Exception\TaskException when the expression, zone or a setting is invalid, or the
         *     name is taken (also by an add of the same name that raced with this one and came first: of
         *     concurrent adds of one name exactly one succeeds)
         * @throws \Asynclib\Exception\ConnectionedException when the broker cannot be reached
         */
        public static function add(string $expression, string $event, array $options = [], array $settings = []): string
        {
        }

        /**
         * Changes a stored schedule.
         *
         * @throws \Asynclib\Exception\TaskException when no schedule has the name (also when a remove came
         *     first), it is declared in code, or a change is invalid
         * @param array{expression?: string, event?: string, options?: array, timezone?: string, catchup?: int} $changes
         */
        public static function update(string $name, array $changes): void
        {
        }

        /**
         * Deletes a schedule and forgets its last fired tick (a schedule added again under the name starts
         * afresh). One declared in code comes back when a Scheduler declaring it starts.
         *
         * @throws \Asynclib\Exception\TaskException when no schedule has the name
         */
        public static function remove(string $name): void
        {
        }

        /** Stops firing a schedule, stored or declared in code. */
        public static function pause(string $name): void
        {
        }

        /** Fires again from now on; ticks that fell while it was paused are not caught up. */
        public static function resume(string $name): void
        {
        }

        /**
         * Has the leader publish the schedule's event once, now.
         *
         * @return string the id of the event
         */
        public static function trigger(string $name): string
        {
        }

        /**
         * @return array<int, array{name: string, expression: string, event: string, options: mixed,
         *     timezone: string, catchup: int, paused: bool, source: string, next: string[],
         *     last_tick: ?string, last_fired_at: ?string, last_event_id: ?string, last_late: ?bool,
         *     late: int, skipped: int, last_trigger_id: ?string, last_tasks: ?array}> every schedule, by name;
         *     times are ISO 8601 in the schedule's zone. last_tasks (null with ebats.history off): each task of
         *     the last firing, as its latest history record tells (id, topic, task, status, outcome, attempt,
         *     message, end_ms); firings more than a day old are not looked up
         */
        public static function list(): array
        {
        }
    }

    /**
     * Paused topics, held on the broker: every worker of a paused topic, on every host, stops starting its
     * tasks within a second (they stay in the broker, their attempts unused) until it is resumed; the pause
     * survives worker and broker restarts.
     */
    class Topics
    {
        public function __construct()
        {
        }

        /**
         * @return bool true when the topic was running (false: paused already)
         * @throws \Asynclib\Exception\TaskException when the topic name is invalid
         * @throws \Asynclib\Exception\ConnectionedException when the broker cannot be reached
         */
        public static function pause(string $topic): bool
        {
        }

        /**
         * @return bool true when the topic was paused
         * @throws \Asynclib\Exception\TaskException when the topic name is invalid
         */
        public static function resume(string $topic): bool
        {
        }

        /** @return list<string> the paused topics, sorted */
        public static function list(): array
        {
        }
    }

    /**
     * Rate and concurrency limits set at run time, held on the broker: every worker of the topic, on every
     * host, follows a change within a second. A limit has a scope: the whole topic, one task `name`, or a
     * `key` built from each task's params by a template ('customer:{customer_id}'), of one name or of all.
     * A run-time limit replaces the limit of the same scope set in the worker's code (Worker::setLimit).
     */
    class Limits
    {
        public function __construct()
        {
        }

        /**
         * @param array{rate?: ?string, burst?: ?int, concurrency?: ?int, name?: ?string, key?: ?string} $limit
         *     rate: starts per window ('20/s', '600/m', '3/h', '5/10s'); burst: starts allowed beyond it after a
         *     quiet time (default 0, only with a rate); concurrency: tasks running at once; at least one of
         *     rate and concurrency
         * @return bool true when it changed something (false: the same limit was set already)
         * @throws \Asynclib\Exception\TaskException naming what is wrong (topic, key, value)
         * @throws \Asynclib\Exception\ConnectionedException when the broker cannot be reached
         */
        public static function set(string $topic, array $limit): bool
        {
        }

        /**
         * @param array{name?: ?string, key?: ?string} $scope the limit's scope (none: the whole topic)
         * @return bool true when a run-time limit of that scope was removed (a limit in code applies again)
         * @throws \Asynclib\Exception\TaskException naming what is wrong
         */
        public static function clear(string $topic, ?array $scope = null): bool
        {
        }

        /**
         * @return list<array{id: string, topic: string, name: ?string, key: ?string, rate: ?string, burst: int, concurrency: ?int}>
         *     the run-time limits of the topic (null: of every topic), by id
         */
        public static function list(?string $topic = null): array
        {
        }
    }

    /**
     * Groups of tasks, held on the broker (the stream <prefix>.groups): once every task of a group has ended
     * (succeeded, or failed for good after its retries), its follow-up events are published exactly once by
     * the leading Scheduler. An event's tasks become a group when follow-ups are registered for it
     * (EventManager::then()); create() makes one by hand.
     */
    class Group
    {
        public function __construct()
        {
        }

        /**
         * Publishes $tasks as one group, confirmed. Once every one has ended, each follow-up of $on that applies
         * is published once: 'then' (all succeeded), 'catch' (one failed for good or was cancelled), 'finally'
         * (always); each an event name or a list of them. The follow-ups carry $params and, under '_group', the
         * outcome: id, origin, total, succeeded, failed, cancelled, failed_ids, cancelled_ids.
         *
         * @param list<array{topic:string,name:string,params?:mixed,delay?:int,id?:string}> $tasks
         * @param array<string,string|list<string>> $on
         * @return string the group's id
         * @throws \Asynclib\Exception\TaskException when a task, a follow-up or a condition is invalid
         * @throws \Asynclib\Exception\ConnectionedException when the broker cannot be reached
         */
        public static function create(array $tasks, ?array $on = null, ?array $params = null): string
        {
        }

        /**
         * The group's progress: id, origin, total, done, succeeded, failed, cancelled, pending, complete (every
         * member ended), completed (its follow-ups that apply published; with none that applies, as soon as it is
         * complete), opened_at, completed_at (ms), follow_ups (when,
         * event, published) and members (id, state: pending, succeeded, failed or cancelled).
         *
         * For a group completed a while ago (beyond the newest 1,000, or over 10 minutes ago) only its counts are
         * kept: members is null and follow_ups empty.
         *
         * @return array<string,mixed>|null null when no such group is known (never opened, or completed over an hour ago
         *     or more than 50,000 completed groups ago)
         * @throws \Asynclib\Exception\TaskException when the id is invalid
         */
        public static function status(string $id): mixed
        {
        }

        /** @return list<array<string,mixed>> the groups in flight and the last ones completed (up to 1,000, within 10 minutes), newest first, as status() without members */
        public static function list(): array
        {
        }

        /**
         * Cancels every member of the group not started yet, for $for seconds (by default 7 days), on every
         * worker, once the broker confirmed it: each ends as cancelled, counted by its group.
         *
         * @throws \Asynclib\Exception\TaskException when the id or $for is invalid
         * @throws \Asynclib\Exception\ConnectionedException when the broker cannot be reached
         */
        public static function cancel(string $id, int $for = 604800): void
        {
        }
    }

    /**
     * Maps events to tasks, per process. The scheduler uses the registrations of its own process.
     */
    class EventManager
    {
        public function __construct()
        {
        }

        /**
         * Registers a task to create whenever $event is published.
         *
         * @param string $event the event name
         * @param string $task_name the task name: the worker calls the method $task_name . 'Task'
         * @param string $topic the topic (queue) of the task: the worker's class is 'Task' . ucfirst($topic) . 'Model'
         * @param int $delay seconds to wait before the task runs, 0 for at once
         * @param array $options 'unique' => a key template such as 'order:{order_id}' (from the event's params),
         *     'unique_for' => the key's lifetime in seconds (default 3600, at most 604800): the Scheduler does not
         *     make the task while another task of the topic holds the key; 'limit' => a limit its tasks carry, as
         *     Task::create() takes it
         * @throws \Asynclib\Exception\TaskException when a name, the delay or an option is invalid
         */
        public static function register(string $event, string $task_name, string $topic, int $delay = 0, array $options = []): void
        {
        }

        /**
         * Publishes $follow_up once every task an $event made has ended (the tasks of each such event are a
         * group, see Group): $when 'always' (or 'finally'), 'success' ('then': all succeeded) or 'failure'
         * ('catch': one failed for good or was cancelled). The follow-up carries the event's params with the
         * group's outcome under '_group'. Only a Scheduler of this process uses it.
         *
         * @throws \Asynclib\Exception\TaskException when a name or the condition is invalid
         */
        public static function then(string $event, string $follow_up, string $when = 'always'): void
        {
        }

        /**
         * Publishes $event with $options as its parameters at every tick of $expression, from the Scheduler
         * that leads (one at a time among all the Schedulers of the prefix). A Scheduler of this process
         * appends its declarations when it starts (see cronOwner()); they appear in Schedules::list() then,
         * and can be paused there.
         *
         * @param string $expression 5 fields, a leading seconds field (6), or @yearly, @monthly, @weekly,
         *     @daily, @hourly; L, W and # as croner reads them
         * @param string $event the event published at each tick
         * @param array $options the event's parameters
         * @param array{name?: string, timezone?: string, catchup?: int} $settings name (default derived from
         *     the expression and the event), timezone (IANA name, default the process's), catchup (seconds,
         *     default 60: a tick missed by at most this much is fired late, once)
         * @return string the schedule's name
         * @throws \Asynclib\Exception\TaskException naming what is wrong with the expression, zone or settings
         */
        public static function cron(string $expression, string $event, array $options = [], array $settings = []): string
        {
        }

        /**
         * Names the application whose schedules this process declares with cron(). A Scheduler of this
         * process then appends them as that application's whole set: the application's code-declared
         * schedules it no longer declares are removed, other applications' are never touched. Without an
         * owner, declarations add or change schedules and remove none (Schedules::remove() does).
         *
         * @param string $owner 1 to 128 characters of A-Z a-z 0-9 _ - . starting with a letter, digit or _
         * @throws \Asynclib\Exception\TaskException when the name is invalid
         */
        public static function cronOwner(string $owner): void
        {
        }

        /**
         * @return Task[] the tasks registered for $event
         */
        public static function getTasks(string $event): array
        {
        }

        /**
         * @return string[] the events that have tasks registered
         */
        public static function getEvents(): array
        {
        }
    }

    /**
     * Routes each published event to its tasks. run() blocks; several schedulers may run at once.
     */
    class Scheduler
    {
        /** The event exchange's name with the default prefix. */
        public const EXCHANGE_EVENT = 'ebats.core.event';
        /** The task exchange's name with the default prefix. */
        public const EXCHANGE_TASK = 'ebats.task.ready';
        /** The delayed-task exchange's name with the default prefix. */
        public const EXCHANGE_DELAY = 'ebats.task.delay';
        /** The event queue's name with the default prefix. */
        public const QUEUE_EVENT = 'ebats.events';

        public function __construct()
        {
        }

        /**
         * Serves Prometheus metrics at http://$address/metrics and a health check at /healthz while run() runs
         * (default: the ebats.metrics_address setting; off when neither is set).
         *
         * @param string $address ip:port, such as 127.0.0.1:9465
         * @throws \Asynclib\Exception\TaskException when the address is not ip:port
         */
        public function setMetricsAddress(string $address): static
        {
        }

        /**
         * Consumes events until the process is stopped; acks an event only after all its tasks are confirmed.
         *
         * @throws \Asynclib\Exception\ConnectionedException
         */
        public function run(): void
        {
        }
    }

    /**
     * A task: a name, a topic, parameters and an optional delay. It gets its id when it is constructed.
     */
    class Task
    {
        /**
         * @param string $topic 1 to 128 characters of [A-Za-z0-9_-]
         * @param string $name 1 to 128 characters of [A-Za-z0-9_]
         * @param int $delay seconds to wait before the task runs, 0 to 2^28-1
         */
        public function __construct(string $topic, string $name, int $delay = 0)
        {
        }

        /**
         * @param mixed $params anything JSON can hold
         */
        public function setParams(mixed $params): static
        {
        }

        /** @return string the task id (32 lowercase hex characters) */
        public function getId(): string
        {
        }

        public function getName(): string
        {
        }

        public function getTopic(): string
        {
        }

        public function getParams(): mixed
        {
        }

        /** @return int the delay in seconds */
        public function getDelay(): int
        {
        }

        /**
         * Enqueues the task and returns once the broker has stored it.
         *
         * @return string the task id
         * @throws \Asynclib\Exception\ConnectionedException
         * @throws \Asynclib\Exception\TaskException
         */
        public function publish(?bool $defer = null): string
        {
        }

        /**
         * Enqueues a task directly, without an event.
         *
         * @param string $topic the topic (queue)
         * @param string $name the task name
         * @param mixed $params anything JSON can hold
         * @param int $delay seconds to wait before the task runs
         * @param array $options 'unique' => a key template such as 'order:{order_id}' (from $params), 'unique_for'
         *     => the key's lifetime in seconds (default 3600, at most 604800): while a task of the topic holding the
         *     key waits or runs (its retries too), no other is made; 'limit' => ['rate' => '10/m', 'burst' => 0,
         *     'concurrency' => 1, 'key' => 'customer:{customer_id}'] (each optional, a rate or a concurrency at
         *     least): a limit of this task's name (and key) that the task carries to whichever worker runs it, as
         *     Worker::setLimit() takes it without 'name'; a worker's own limit of the same name and key replaces it
         * @return string the task id; for a unique task whose key another task holds, that task's id (nothing is
         *     enqueued; an empty string in the rare case the holder has not said who it is yet)
         * @throws \Asynclib\Exception\ConnectionedException
         * @throws \Asynclib\Exception\TaskException when a value or an option is invalid, or the params give no key
         */
        public static function create(string $topic, string $name, mixed $params = [], int $delay = 0, array $options = []): string
        {
        }

        /**
         * Cancels a task on every worker, held on the broker for `$for` seconds (across worker and broker
         * restarts, and for workers started later): not started yet, it is not run (acked unstarted, its
         * history record has the status 3, `cancelled`; the worker callback is not called); running, its
         * handler is told by isCancelled() (the process is not signalled). A chain's id cancels its steps
         * not started.
         *
         * @param string $id a task id (or a chain id)
         * @param int $for seconds the cancel lasts (1 s to 10 years; default 7 days)
         * @throws \Asynclib\Exception\TaskException when the id or the duration is invalid
         * @throws \Asynclib\Exception\ConnectionedException when the broker cannot be reached
         */
        public static function cancel(string $id, int $for = 604800): void
        {
        }

        /**
         * Inside a task's handler: whether that task has been cancelled since it started (or before).
         *
         * @throws \Asynclib\Exception\TaskException when called outside a task's handler
         */
        public static function isCancelled(): bool
        {
        }
    }

    /**
     * Tasks run one after the other: each step is published by the worker of the one before, once that
     * one succeeded (confirmed before its ack). A step that fails for good (or is cancelled) stops the
     * chain; its failed-store entry and history record name the chain and the step. Return values are not
     * carried from one step to the next. Each step runs at least once (twice after a worker died at the
     * wrong moment), always under the task id `<chain id>-<n>`.
     */
    class Chain
    {
        public function __construct()
        {
        }

        /**
         * @param list<array> $steps each `[topic, name, params, delay]` (params and delay optional), or an
         *        array with those keys; 1 to 100 steps
         * @return string the chain's id
         * @throws \Asynclib\Exception\TaskException when a step is invalid
         * @throws \Asynclib\Exception\ConnectionedException when the broker cannot be reached
         */
        public static function create(array $steps): string
        {
        }
    }

    /**
     * Runs the tasks of one topic in forked processes and reports every execution to a callback.
     */
    class Worker
    {
        /** A service the task needs is down (ServiceException): put back, tried again after a pause. */
        public const STATE_ERR = -1;
        /** The handler returned. */
        public const STATE_SUCC = 0;
        /** The task failed for good and went to the failed store. */
        public const STATE_FAIL = 1;
        /** The task will run again later (RetryException). */
        public const STATE_RETRY = 2;

        /**
         * @param callable $callback called after every execution with
         *        ($topic, $taskid, $taskname, $params, $timeuse, $message, $status, $attempt):
         *        $timeuse in milliseconds, $message 'ok.' or the exception's message, $status a STATE_*
         *        constant, $attempt 1 for the first run
         * @param int $process_num number of worker processes
         */
        public function __construct(callable $callback, int $process_num = 1)
        {
        }

        /**
         * @param string $topic the topic whose tasks to run
         */
        public function setQueue(string $topic): static
        {
        }

        /**
         * The same as setQueue().
         *
         * @param string $topic the topic whose tasks to run
         * @param bool $delay accepted for compatibility
         */
        public function setTopic(string $topic, bool $delay = false): static
        {
        }

        /**
         * @param int $prefetch tasks each process takes from the broker ahead of time (default: adapted to the
         *                     tasks' durations, from 1 up to 100; a value set here is kept)
         */
        public function setPrefetch(int $prefetch): static
        {
        }

        /**
         * @param int[] $intervals the default retry intervals, one per retry (default 5, 300, 600, 3600, 7800)
         */
        public function setRetryIntervals(array $intervals): static
        {
        }

        /**
         * @param int $max how many times a task that threw ServiceException is put back before it fails
         * @param int $pause seconds to wait before each new try
         */
        public function setServiceRetry(int $max, int $pause): static
        {
        }

        /**
         * A process exits and is replaced after this many tasks (seed 002's max_request); 0 for never.
         */
        public function setMaxRequests(int $max): static
        {
        }

        /**
         * A process whose resident memory is above this many megabytes after a task is replaced; 0 for no limit.
         */
        public function setMemoryLimit(int $megabytes): static
        {
        }

        /**
         * A task still running after this many seconds is stopped (its process killed and replaced) and counts
         * as a failed attempt that follows the retry rules; 0 for no limit. Keep it below RabbitMQ's consumer
         * ack timeout (30 minutes by default).
         */
        public function setTimeLimit(int $seconds): static
        {
        }

        /**
         * After SIGTERM or SIGINT, processes still busy after this many seconds are killed and their tasks go
         * back to the broker unacked; 0 (the default) waits for every task in hand.
         */
        public function setGracePeriod(int $seconds): static
        {
        }

        /**
         * Serves Prometheus metrics at http://$address/metrics and a health check at /healthz (200 while every
         * process runs and the broker answers, 503 otherwise) while run() runs, from a process of its own
         * (default: the ebats.metrics_address setting; off when neither is set). run() throws TaskException
         * when it cannot listen there.
         *
         * @param string $address ip:port, such as 127.0.0.1:9464
         * @throws \Asynclib\Exception\TaskException when the address is not ip:port
         */
        public function setMetricsAddress(string $address): static
        {
        }

        /**
         * Logs one line per child every $seconds from the parent: its CPU % over the interval, resident memory
         * and tasks done ("monitor: child <pid> (slot <n>) cpu 3.2% rss 24.1 MB tasks 120 done"); 0 turns it
         * off (the default, or the ebats.monitor_interval setting).
         *
         * @throws \Asynclib\Exception\TaskException when $seconds is not between 0 and 86400
         */
        public function setMonitorInterval(int $seconds): static
        {
        }

        /**
         * Limits this worker's topic on every host (a worker of the same topic elsewhere sets its own): at most
         * `rate` starts per window ('20/s', '600/m', '5/10s', plus `burst` after a quiet time) and/or at most
         * `concurrency` tasks running at once, over the whole topic, one task `name`, and/or per `key` (a
         * template of the params: 'customer:{customer_id}'). One limit per scope: a later call for the same
         * scope replaces it, and a limit set at run time (Limits::set, ebats limits:set) replaces it.
         *
         * @param array{rate?: ?string, burst?: ?int, concurrency?: ?int, name?: ?string, key?: ?string} $limit
         * @throws \Asynclib\Exception\TaskException naming what is wrong
         */
        public function setLimit(array $limit): static
        {
        }

        /**
         * Inside a task handler: the running task (id, topic, name, attempt, redelivered, redeliveries, event,
         * created_at); null outside one. redelivered is true when an earlier run of this task died unsettled.
         *
         * @return array<string, mixed>|null
         */
        public static function currentTask(): ?array
        {
        }

        /**
         * Forks the processes and supervises them until SIGTERM or SIGINT, then waits for each process to
         * finish the task in hand.
         *
         * @throws \Asynclib\Exception\ConnectionedException
         */
        public function run(): void
        {
        }
    }
}

namespace {

    /**
     * The effective settings of this process, from php.ini, the environment and the AMQ_* constants.
     *
     * Keys: amqp_url (the password shown as ***), host, port, user, vhost, prefix, connect_timeout,
     * heartbeat, confirm_timeout, debug, tls, version.
     *
     * @return array<string, mixed>
     */
    function ebats_config(): array
    {
    }

    /**
     * Waits for the confirms of every deferred publish of this process (see ebats.deferred_confirms), all in one
     * wait that gives up on those still unanswered once ebats.confirm_timeout passed without the broker answering more of them.
     *
     * @return int how many were confirmed
     * @throws \Asynclib\Exception\ConnectionedException naming exactly the publishes that failed, in its message
     *     and as data through getFailures()
     */
    function ebats_flush(): int
    {
    }

    /**
     * Failures of deferred publishes found when earlier requests ended (each was logged then), one entry per
     * failed publish, shaped as ConnectionedException::getFailures() gives them. Reading them clears them.
     *
     * @return array<int, array{id: ?string, kind: string, event: ?string, topic: ?string, exchange: string, error: string, maybe_stored: bool}>
     */
    function ebats_deferred_errors(): array
    {
    }

    /**
     * What of the original library (the pure-PHP Asynclib) is on the broker under the prefix, for the given
     * topics, and what will happen to each: one row per exchange of the names both share (absent ones too) and
     * per queue of the original that exists. Changes nothing. (CLI: `ebats migrate:check --topics=a,b`.)
     *
     * @param array<int, string> $topics the original's topics (its queues P.<topic>R and P.<topic>D)
     * @return array<int, array{what: string, name: string, found: string, messages: ?int, consumers: ?int, action: string, needs_hand: bool}>
     * @throws \Asynclib\Exception\TaskException when a topic is not a valid topic name
     * @throws \Asynclib\Exception\ConnectionedException when the broker cannot be reached
     */
    function ebats_migrate_check(array $topics): array
    {
    }

    // Asynclib\Ebats\Consumer is a second name of the same class (as class_alias() makes one).
    class_alias(\Asynclib\Core\Consumer::class, 'Asynclib\\Ebats\\Consumer');
}
