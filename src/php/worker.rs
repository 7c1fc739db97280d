//! `Asynclib\Ebats\Worker`: runs each task as `(new Task<Topic>Model)-><name>Task($params)` in
//! forked children, reporting every execution to the callback.

use std::time::{Duration, Instant};

use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendClassObject, ZendHashTable, Zval};
use ext_php_rs::zend::ClassEntry;

use crate::flow::limits::{self, Limit, LimitSet};
use crate::outcome::{Ended, Policy};
use crate::php::args::{self, bad_input};
use crate::php::call::{self, Thrown};
use crate::php::convert;
use crate::php::exceptions::Kind;
use crate::php::settings;
use crate::rules::MAX_DELAY;
use crate::services;
use crate::services::worker::{Setup, StartError};
use crate::wire::{RetryRule, TaskMsg};
use crate::worker::child::{self, Abort, Handler, Limits, Ran};

#[php_class]
#[php(name = "Asynclib\\Ebats\\Worker")]
pub struct Worker {
    callback: Zval,
    processes: i64,
    topic: Option<String>,
    policy: Policy,
    limits: Limits,
    grace: Option<Duration>,
    metrics: Option<std::net::SocketAddr>,
    /// Seconds between monitor lines; None: the setting `ebats.monitor_interval`.
    monitor: Option<u64>,
    /// Limits set with `setLimit()`, their topic filled in by `run()`.
    flow: Vec<Limit>,
}

/// The task class for a topic: "Task" . ucfirst($topic) . "Model".
pub fn task_class(topic: &str) -> String {
    let mut c = topic.chars();
    let first = c.next().map(|f| f.to_uppercase().collect::<String>()).unwrap_or_default();
    format!("Task{first}{}Model", c.as_str())
}

struct PhpHandler<'a> {
    callback: &'a Zval,
}

fn ended_by(thrown: &Thrown) -> (Ended, String, Option<String>) {
    match thrown {
        Thrown::Exit => (Ended::Failed, "exit() called".into(), None),
        Thrown::Exception { class, message, object } => {
            let ended = if call::is_kind(object, Kind::Retry) {
                let max = call::int_getter(object, "getRetry").map(|v| v.clamp(0, u32::MAX as i64) as u32);
                let interval = call::int_getter(object, "getInterval").map(|v| v.max(0) as u64);
                Ended::Retry(RetryRule { max, interval })
            } else if call::is_kind(object, Kind::Service) {
                Ended::Service
            } else {
                Ended::Failed
            };
            (ended, message.clone(), Some(class.clone()))
        }
    }
}

/// What `Worker::currentTask()` returns while a handler runs.
static CURRENT: parking_lot::Mutex<Option<serde_json::Value>> = parking_lot::Mutex::new(None);

impl Handler for PhpHandler<'_> {
    fn run(&mut self, task: &TaskMsg, redelivered: bool) -> Result<Ran, Abort> {
        *CURRENT.lock() = Some(serde_json::json!({
            "id": task.id, "topic": task.topic, "name": task.name, "attempt": task.attempt,
            "redelivered": redelivered, "redeliveries": task.redeliveries, "event": task.event,
            "created_at": task.created_at,
        }));
        let r = self.run_task(task);
        *CURRENT.lock() = None;
        r
    }

    fn report(&mut self, task: &TaskMsg, ran: &Ran, status: i64) -> Result<(), Abort> {
        self.report_run(task, ran, status)
    }
}

impl PhpHandler<'_> {
    fn run_task(&mut self, task: &TaskMsg) -> Result<Ran, Abort> {
        let start = Instant::now();
        let class = task_class(&task.topic);
        let method = format!("{}Task", task.name);
        let fail = |message: String, class: Option<String>| Ran {
            ended: Ended::Failed,
            message,
            class,
            millis: child::millis_since(start),
        };
        let Some(ce) = ClassEntry::try_find(&class) else {
            drop(call::take_thrown());
            return Ok(fail(format!("task class {class} not found (topic '{}')", task.topic), None));
        };
        if !call::has_method(ce, &method) {
            return Ok(fail(format!("task method {class}::{method}() not found"), None));
        }
        let outcome = call::instantiate(ce).and_then(|obj| {
            let params = convert::to_zval(&task.params);
            call::call_method(&obj, &method, vec![&params]).map(|_| ())
        });
        let millis = child::millis_since(start);
        match outcome {
            Ok(()) => Ok(Ran { ended: Ended::Returned, message: "ok.".into(), class: None, millis }),
            Err(Thrown::Exit) => Err(Abort),
            Err(t) => {
                let (ended, message, class) = ended_by(&t);
                Ok(Ran { ended, message, class, millis })
            }
        }
    }

    fn report_run(&mut self, task: &TaskMsg, ran: &Ran, status: i64) -> Result<(), Abort> {
        let params = convert::to_zval(&task.params);
        let r = call::call(
            self.callback,
            vec![
                &task.topic.as_str(),
                &task.id.as_str(),
                &task.name.as_str(),
                &params,
                &ran.millis,
                &ran.message.as_str(),
                &status,
                &(task.attempt as i64),
            ],
        );
        match r {
            Ok(_) => Ok(()),
            Err(Thrown::Exit) => Err(Abort),
            Err(Thrown::Exception { class, message, .. }) => {
                crate::log::error(&format!(
                    "the worker callback threw {class}: {message} (task {}/{} id={}; the task is settled as usual)",
                    task.topic, task.name, task.id
                ));
                Ok(())
            }
        }
    }
}

#[php_impl]
impl Worker {
    pub const STATE_ERR: i64 = crate::outcome::STATE_ERR;
    pub const STATE_SUCC: i64 = crate::outcome::STATE_SUCC;
    pub const STATE_FAIL: i64 = crate::outcome::STATE_FAIL;
    pub const STATE_RETRY: i64 = crate::outcome::STATE_RETRY;

    #[php(defaults(process_num = 1))]
    pub fn __construct(callback: &Zval, process_num: i64) -> PhpResult<Self> {
        let callback = args::callback(callback, "Asynclib\\Ebats\\Worker::__construct()")?;
        if !(1..=256).contains(&process_num) {
            return Err(bad_input(format!("process_num must be between 1 and 256, got {process_num}")));
        }
        Ok(Worker {
            callback,
            processes: process_num,
            topic: None,
            policy: Policy::default(),
            limits: Limits::default(),
            grace: None,
            metrics: None,
            monitor: None,
            flow: Vec::new(),
        })
    }

    /// The topic whose tasks this worker runs.
    #[php(name = "setQueue")]
    pub fn set_queue(self_: &mut ZendClassObject<Worker>, topic: String) -> PhpResult<&mut ZendClassObject<Worker>> {
        args::topic(&topic)?;
        self_.topic = Some(topic);
        Ok(self_)
    }

    /// Same as setQueue(); `$delay` is accepted for compatibility (delayed tasks need no worker of their own).
    #[php(name = "setTopic", defaults(delay = false))]
    pub fn set_topic(
        self_: &mut ZendClassObject<Worker>,
        topic: String,
        delay: bool,
    ) -> PhpResult<&mut ZendClassObject<Worker>> {
        let _ = delay;
        Worker::set_queue(self_, topic)
    }

    /// Tasks each child holds at once (default: adapted to the tasks' durations, from 1 up to 100).
    #[php(name = "setPrefetch")]
    pub fn set_prefetch(self_: &mut ZendClassObject<Worker>, prefetch: i64) -> PhpResult<&mut ZendClassObject<Worker>> {
        self_.limits.prefetch = Some(args::prefetch(prefetch)?);
        Ok(self_)
    }

    /// Seconds between retries after a RetryException without its own rule (default 5, 300, 600, 3600, 7800).
    #[php(name = "setRetryIntervals")]
    pub fn set_retry_intervals<'a>(
        self_: &'a mut ZendClassObject<Worker>,
        intervals: &ZendHashTable,
    ) -> PhpResult<&'a mut ZendClassObject<Worker>> {
        let mut out = Vec::with_capacity(intervals.len());
        for v in intervals.values() {
            match v.long() {
                Some(i) if (0..=MAX_DELAY).contains(&i) => out.push(i as u64),
                _ => return Err(bad_input("retry intervals must be whole numbers of seconds, 0 or more")),
            }
        }
        self_.policy.retry_intervals = out;
        Ok(self_)
    }

    /// After a ServiceException the task is tried again `$pause` seconds later, at most `$max` times.
    #[php(name = "setServiceRetry")]
    pub fn set_service_retry(
        self_: &mut ZendClassObject<Worker>,
        max: i64,
        pause: i64,
    ) -> PhpResult<&mut ZendClassObject<Worker>> {
        if !(0..=1_000_000).contains(&max) || !(0..=MAX_DELAY).contains(&pause) {
            return Err(bad_input("service retry needs max >= 0 and a pause in seconds >= 0"));
        }
        self_.policy.service_retries = max as u32;
        self_.policy.service_pause = pause as u64;
        Ok(self_)
    }

    /// A child exits and is replaced after this many tasks (0: never).
    #[php(name = "setMaxRequests")]
    pub fn set_max_requests(self_: &mut ZendClassObject<Worker>, max: i64) -> PhpResult<&mut ZendClassObject<Worker>> {
        if max < 0 {
            return Err(bad_input("max requests must be 0 or more"));
        }
        self_.limits.max_requests = max as u64;
        Ok(self_)
    }

    /// A child whose resident memory is above this many megabytes after a task is replaced (0: no limit).
    #[php(name = "setMemoryLimit")]
    pub fn set_memory_limit(
        self_: &mut ZendClassObject<Worker>,
        megabytes: i64,
    ) -> PhpResult<&mut ZendClassObject<Worker>> {
        if megabytes < 0 {
            return Err(bad_input("memory limit must be 0 or more megabytes"));
        }
        self_.limits.memory_limit_mb = megabytes as u64;
        Ok(self_)
    }

    /// A task still running after this many seconds is stopped (its child killed and replaced) and
    /// counts as a failed attempt that follows the retry rules (0: no limit). Keep it below
    /// RabbitMQ's consumer ack timeout (30 minutes by default).
    #[php(name = "setTimeLimit")]
    pub fn set_time_limit(
        self_: &mut ZendClassObject<Worker>,
        seconds: i64,
    ) -> PhpResult<&mut ZendClassObject<Worker>> {
        if !(0..=86_400).contains(&seconds) {
            return Err(bad_input("time limit must be between 0 and 86400 seconds"));
        }
        self_.limits.time_limit_secs = seconds as u64;
        Ok(self_)
    }

    /// A limit on the tasks of this worker's topic, across every worker of it: `concurrency` (tasks
    /// at once), `rate` ('10/s') and `burst`, over the whole topic, the tasks of one `name`, or each
    /// `key` (a key template such as 'customer:{customer_id}'). A limit over the same scope replaces
    /// the one set before.
    #[php(name = "setLimit")]
    pub fn set_limit<'a>(
        self_: &'a mut ZendClassObject<Worker>,
        options: &ZendHashTable,
    ) -> PhpResult<&'a mut ZendClassObject<Worker>> {
        let options = args::array_json(options, "the limit's options")?;
        let options = match options {
            serde_json::Value::Object(m) => m,
            serde_json::Value::Array(a) if a.is_empty() => serde_json::Map::new(),
            _ => return Err(bad_input("the limit's options must be an array with string keys")),
        };
        let limit = limits::from_options("", &options).map_err(bad_input)?;
        self_.flow.retain(|l| l.id() != limit.id());
        self_.flow.push(limit);
        Ok(self_)
    }

    /// The task running in this process (id, topic, name, attempt, redeliveries, event), or null.
    #[php(name = "currentTask")]
    pub fn current_task() -> Zval {
        match &*CURRENT.lock() {
            Some(v) => convert::to_zval(v),
            None => Zval::null(),
        }
    }

    /// After SIGTERM/SIGINT, children still busy after this many seconds are killed (0: wait).
    #[php(name = "setGracePeriod")]
    pub fn set_grace_period(
        self_: &mut ZendClassObject<Worker>,
        seconds: i64,
    ) -> PhpResult<&mut ZendClassObject<Worker>> {
        if seconds < 0 {
            return Err(bad_input("grace period must be 0 or more seconds"));
        }
        self_.grace = (seconds > 0).then(|| Duration::from_secs(seconds as u64));
        Ok(self_)
    }

    /// Serve `/metrics` (Prometheus) and `/healthz` on `ip:port` while running (default: the
    /// setting `ebats.metrics_address`; off when neither is set).
    #[php(name = "setMetricsAddress")]
    pub fn set_metrics_address(
        self_: &mut ZendClassObject<Worker>,
        address: String,
    ) -> PhpResult<&mut ZendClassObject<Worker>> {
        self_.metrics = Some(crate::metrics::parse_address(&address).map_err(bad_input)?);
        Ok(self_)
    }

    /// Log one line per child every `$seconds` (CPU %, resident memory, tasks done); 0: off (the
    /// default, or the setting `ebats.monitor_interval`).
    #[php(name = "setMonitorInterval")]
    pub fn set_monitor_interval(
        self_: &mut ZendClassObject<Worker>,
        seconds: i64,
    ) -> PhpResult<&mut ZendClassObject<Worker>> {
        let max = crate::config::MAX_MONITOR_INTERVAL;
        if !(0..=max as i64).contains(&seconds) {
            return Err(bad_input(format!("monitor interval must be between 0 and {max} seconds, got {seconds}")));
        }
        self_.monitor = Some(seconds as u64);
        Ok(self_)
    }

    /// Forks the children and supervises them until SIGTERM or SIGINT.
    pub fn run(&mut self) -> PhpResult<()> {
        let topic = self.topic.clone().ok_or_else(|| bad_input("call setQueue() (or setTopic()) before run()"))?;
        let settings = settings::current()?;
        let mut limits = self.limits.clone();
        limits.legacy_counters = settings::legacy_counters();
        limits.flow = LimitSet::new(self.flow.iter().map(|l| Limit { topic: topic.clone(), ..l.clone() }).collect());
        let setup = Setup {
            topic,
            processes: self.processes as usize,
            policy: self.policy.clone(),
            limits,
            grace: self.grace,
            metrics: self.metrics,
            monitor: self.monitor,
            stop_signals: call::unhandled_stop_signals(),
        };
        let mut handler = PhpHandler { callback: &self.callback };
        // Both the parent (after its children stopped) and a child leaving for PHP (after `exit()` in
        // a handler) come back here and return to the script.
        match services::worker::run(&setup, &settings, &mut handler) {
            Ok(_) => Ok(()),
            Err(StartError::Setup(msg)) => Err(bad_input(msg)),
            Err(StartError::Broker(e)) => Err(args::broker_err(e)),
        }
    }
}
