//! `Asynclib\Ebats\Worker`: runs each task as `(new Task<Topic>Model)-><name>Task($params)` in
//! forked children, reporting every execution to the callback.

use std::time::{Duration, Instant};

use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendClassObject, ZendHashTable, Zval};
use ext_php_rs::zend::ClassEntry;

use crate::broker::current;
use crate::outcome::{Ended, Policy};
use crate::php::args::{self, bad_input};
use crate::php::call::{self, Thrown};
use crate::php::convert;
use crate::php::exceptions::Kind;
use crate::php::settings;
use crate::rules::MAX_DELAY;
use crate::wire::{RetryRule, TaskMsg};
use crate::worker::child::{self, Abort, Handler, Limits, Ran, Stopped};
use crate::worker::shared::Shared;
use crate::worker::supervisor::{self, ChildEnd};

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
        let monitor = match self.monitor {
            Some(s) => s,
            None => crate::config::monitor_interval(&settings.monitor_interval).map_err(bad_input)?,
        };
        if declare_before_fork(&settings, &topic)? {
            return Ok(()); // asked to stop while waiting for the broker: no child was started
        }
        // The parent must hold no connection and no runtime threads when it forks.
        current::shutdown();
        let opts = supervisor::Options {
            processes: self.processes as usize,
            grace: self.grace,
            watch_time_limits: self.limits.time_limit_secs > 0,
            monitor: (monitor > 0).then(|| Duration::from_secs(monitor)),
        };
        let shared = Shared::new(opts.processes).map_err(|e| bad_input(format!("cannot map shared memory: {e}")))?;
        let metrics = match crate::metrics::address(self.metrics, &settings.metrics_address).map_err(bad_input)? {
            Some(addr) => {
                let listener = crate::metrics::bind(addr).map_err(bad_input)?;
                let fd = std::os::fd::IntoRawFd::into_raw_fd(listener);
                let in_hand = |slot: usize| shared.in_hand(slot);
                let pid = crate::metrics::serve::fork_worker_process(
                    fd,
                    shared.stats(),
                    &in_hand,
                    &settings,
                    &topic,
                    opts.processes,
                )
                .map_err(|e| {
                    // SAFETY: closing the listening socket this process owns.
                    unsafe { libc::close(fd) };
                    bad_input(format!("cannot start the metrics process: {e}"))
                })?;
                crate::log::info(&format!("metrics on http://{addr}/metrics (process {pid})"));
                Some((fd, pid))
            }
            None => None,
        };
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        let callback = &self.callback;
        let policy = &self.policy;
        self.limits.legacy_counters = settings::legacy_counters();
        let limits = &self.limits;
        // Both the parent (after its children stopped) and a child leaving for PHP (after `exit()` in
        // a handler) come back here and return to the script.
        supervisor::run(&opts, &shared, |slot| {
            if let Some((fd, _)) = metrics {
                // SAFETY: the listening socket belongs to the metrics process; this child's copy
                // of the descriptor is closed once, here, and never used.
                unsafe { libc::close(fd) };
            }
            let mut handler = PhpHandler { callback };
            let tracking = child::Tracking { shared: &shared, index: slot };
            let end = match child::run(&settings, &topic, policy, limits, &tracking, &mut handler) {
                Stopped::Asked => ChildEnd::Exit(0),
                Stopped::Recycle(why) => {
                    crate::log::info(&format!("worker child (slot {slot}) recycling: {why}"));
                    ChildEnd::Exit(0)
                }
                Stopped::Aborted => return ChildEnd::ReturnToPhp,
            };
            current::shutdown();
            end
        });
        // SAFETY: getpid has no preconditions.
        if let Some((fd, pid)) = metrics.filter(|_| unsafe { libc::getpid() } == parent) {
            // SAFETY: the parent ends its own metrics process, reaps it, and closes its socket.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
                libc::close(fd);
            }
        }
        Ok(())
    }
}

/// What the worker declares before it forks: a stream or a topology that clashes with what exists on
/// the broker stops it here, before any child starts (a child meeting it would stop, and be replaced,
/// again and again); a broker away now does not stop it (its children declare what they need when they
/// can). These waits for the broker end at SIGTERM/SIGINT: true when a stop was asked meanwhile.
fn declare_before_fork(settings: &crate::config::Settings, topic: &str) -> PhpResult<bool> {
    use crate::broker::stop::{self, CutWaitsShort};
    let _stop = crate::worker::signals::StopOnSignals::install(&call::unhandled_stop_signals());
    let _cut = CutWaitsShort::begin();
    if settings.history.enabled {
        match crate::history::writer::declare(settings) {
            Err(e) if e.kind().is_bad_setup() => return Err(crate::php::args::broker_err(e)),
            Err(_) if stop::requested().is_some() => return Ok(true),
            Err(e) => crate::log::error(&format!("execution history: cannot declare the stream now: {e}")),
            Ok(()) => {}
        }
    }
    let decls = [crate::broker::Decl::Topic(topic.to_string())];
    match current::with_session(|s| s.declare(settings, &decls)) {
        Err(e) if e.kind().stops_process() => return Err(crate::php::args::broker_err(e)),
        Err(_) if stop::requested().is_some() => return Ok(true),
        Err(e) => crate::log::error(&format!("worker cannot declare its queues now: {e}")),
        Ok(()) => {}
    }
    Ok(stop::requested().is_some())
}
