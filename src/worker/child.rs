//! A worker child's loop: take a task, run it through the handler, report it, then ack, retry,
//! delay or fail it, confirmed before the ack. Stops between tasks when asked.

use std::time::{Duration, Instant};

use lapin::options::{BasicAckOptions, BasicCancelOptions};

use super::shared::{Returned, Shared};
use super::signals;
use crate::broker::names::Names;
use crate::broker::process::with_session;
use crate::broker::{BrokerError, Decl};
use crate::config::Settings;
use crate::dispatch;
use crate::log;
use crate::outcome::{Ended, Next, Policy};
use crate::wire::{now, TaskMsg};

/// The result of running one task in PHP.
#[derive(Debug, Clone)]
pub struct Ran {
    pub ended: Ended,
    pub message: String,
    pub class: Option<String>,
    pub millis: f64,
}

/// `exit()` was called in PHP: stop at once, without acking, and let the engine unwind.
#[derive(Debug)]
pub struct Abort;

pub trait Handler {
    fn run(&mut self, task: &TaskMsg, redelivered: bool) -> Result<Ran, Abort>;
    fn report(&mut self, task: &TaskMsg, ran: &Ran, status: i64) -> Result<(), Abort>;
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub prefetch: u16,
    /// Tasks before the child exits to be replaced (0: no limit).
    pub max_requests: u64,
    /// Resident memory after a task above which the child exits to be replaced (0: no limit).
    pub memory_limit_mb: u64,
    /// Deliveries of one task after its worker died holding it, before it is failed.
    pub max_redeliveries: u32,
    /// Seconds a task may run before the parent kills its child (0: no limit).
    pub time_limit_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { prefetch: 1, max_requests: 0, memory_limit_mb: 0, max_redeliveries: 5, time_limit_secs: 0 }
    }
}

pub enum Stopped {
    Asked,
    Recycle(String),
    Aborted,
}

pub fn resident_mb() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64 / 1_048_576.0
}

fn stop_requested() -> bool {
    signals::take(&signals::STOP_SIGNALS, Duration::ZERO).is_some()
}

/// Sleeps `d` in short ticks, returning early (true) when a stop is asked.
fn pause(d: Duration) -> bool {
    signals::take(&signals::STOP_SIGNALS, d).is_some()
}

/// Where this child records what it runs, for the parent's time limits.
pub struct Slot<'a> {
    pub shared: &'a Shared,
    pub index: usize,
}

pub fn run(
    settings: &Settings,
    topic: &str,
    policy: &Policy,
    limits: &Limits,
    slot: &Slot,
    handler: &mut dyn Handler,
) -> Stopped {
    let names = Names::new(&settings.prefix);
    let queue = names.ready_queue(topic);
    let mut done: u64 = 0;
    let tag = format!("ebats-worker-{}", std::process::id());
    // Broker handles dropped below (consumers, channels) need the runtime's context.
    let Ok(runtime) = with_session(|s| Ok(s.handle())) else {
        return Stopped::Asked;
    };
    let _ctx = runtime.enter();
    loop {
        let opened = with_session(|s| {
            s.declare(settings, &[Decl::Topic(topic.to_string())])?;
            let (ch, consumer) = s.consume(settings, &queue, limits.prefetch, &tag)?;
            Ok((s.handle(), ch, consumer))
        });
        let (rt, ch, mut consumer) = match opened {
            Ok(x) => x,
            Err(e) => {
                log::error(&format!("worker cannot consume '{queue}': {e}; retrying in 1 s"));
                if pause(Duration::from_secs(1)) {
                    return Stopped::Asked;
                }
                continue;
            }
        };
        let mut acks = Acks { batch: if limits.prefetch > 1 { ACK_BATCH } else { 1 }, ..Acks::default() };
        loop {
            if stop_requested() {
                acks.flush(&rt, &ch);
                let _ = rt.block_on(ch.close(200, "worker stopping".into()));
                return Stopped::Asked;
            }
            // A task already delivered is taken at once; only an idle worker waits (in ticks, to
            // see stop signals), after acking what it has done.
            let d = match crate::broker::session::ready_delivery(&mut consumer) {
                Some(d) => d,
                None => {
                    if !acks.flush(&rt, &ch) {
                        break;
                    }
                    match crate::broker::session::next_delivery(&mut consumer, Duration::from_millis(100)) {
                        Ok(Some(d)) => d,
                        Ok(None) => continue,
                        Err(e) => {
                            log::error(&format!("worker lost its consumer on '{queue}': {e}; reconnecting"));
                            break;
                        }
                    }
                }
            };
            let settled = match handle(settings, &names, policy, limits, slot, handler, &d.data, d.redelivered) {
                Ok(s) => s,
                Err(HandleError::Abort) => {
                    // exit() in PHP: the tasks done before still get their acks.
                    acks.flush(&rt, &ch);
                    return Stopped::Aborted;
                }
                Err(HandleError::Broker(e)) => {
                    // Not acked: the broker gives the task again. Reconnect and go on.
                    log::error(&format!("worker could not settle a task: {e}; it will be delivered again"));
                    acks.flush(&rt, &ch);
                    break;
                }
            };
            if matches!(settled, Settled::Ran) {
                done += 1;
            }
            let recycle = if limits.max_requests > 0 && done >= limits.max_requests {
                Some(format!("{done} tasks done (max requests)"))
            } else if limits.memory_limit_mb > 0 {
                let rss = resident_mb();
                (rss > limits.memory_limit_mb as f64)
                    .then(|| format!("resident memory {rss:.1} MB is over {} MB", limits.memory_limit_mb))
            } else {
                None
            };
            // Leaving after this task: cancel the consumer before the ack, so the broker does not
            // push the next task to a child that will not run it.
            let leaving = recycle.is_some() || signals::stop_pending();
            if leaving {
                let _ = rt.block_on(ch.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()));
            }
            acks.done(d.delivery_tag);
            if (leaving || acks.full()) && !acks.flush(&rt, &ch) {
                break;
            }
            if let Some(why) = recycle {
                let _ = rt.block_on(ch.close(200, "worker recycling".into()));
                return Stopped::Recycle(why);
            }
        }
        with_session(|s| {
            s.disconnect();
            Ok(())
        })
        .ok();
        if pause(Duration::from_millis(500)) {
            return Stopped::Asked;
        }
    }
}

/// Tasks done but not yet acked, acked together with one `basic.ack multiple` (every delivery
/// tag up to the last one): after `batch` tasks, whenever the worker would wait for the next task,
/// and before the channel closes. At prefetch 1 every task is acked at once.
#[derive(Default)]
struct Acks {
    last: Option<u64>,
    count: usize,
    batch: usize,
}

/// At most this many finished tasks wait for their ack (prefetch > 1).
const ACK_BATCH: usize = 16;

impl Acks {
    fn done(&mut self, tag: u64) {
        self.last = Some(tag);
        self.count += 1;
    }

    fn full(&self) -> bool {
        self.count >= self.batch
    }

    /// Acks what is done; false (logged) when the ack failed: those tasks will run again.
    fn flush(&mut self, rt: &tokio::runtime::Handle, ch: &lapin::Channel) -> bool {
        let Some(tag) = self.last.take() else { return true };
        let n = std::mem::take(&mut self.count);
        // The first poll queues the ack frame, ahead of anything sent on this channel later; not
        // waiting for the I/O thread to write it saves a thread hand-off per ack. A failed write
        // closes the channel, and the consumer sees it.
        match rt.block_on(futures_lite::future::poll_once(ch.basic_ack(tag, BasicAckOptions { multiple: true }))) {
            None | Some(Ok(())) => true,
            Some(Err(e)) => {
                log::error(&format!("ack of {n} task(s) failed ({e}); they will be delivered again"));
                false
            }
        }
    }
}

enum HandleError {
    Abort,
    Broker(BrokerError),
}

impl From<BrokerError> for HandleError {
    fn from(e: BrokerError) -> Self {
        HandleError::Broker(e)
    }
}

fn failure(ran: &Ran, status: i64, attempts: u32) -> serde_json::Value {
    serde_json::json!({
        "message": ran.message, "class": ran.class, "attempts": attempts,
        "failed_at": crate::wire::round_ms(now()), "status": status,
    })
}

/// Settles one delivery: everything it publishes is confirmed before the caller acks.
#[allow(clippy::too_many_arguments)]
fn handle(
    settings: &Settings,
    names: &Names,
    policy: &Policy,
    limits: &Limits,
    slot: &Slot,
    handler: &mut dyn Handler,
    body: &[u8],
    redelivered: bool,
) -> Result<Settled, HandleError> {
    let mut task = match TaskMsg::parse(body) {
        Ok(t) => t,
        Err(e) => {
            log::error(&format!("unreadable task moved to the failed store: {e}"));
            let mut t =
                TaskMsg::new("unknown", "unknown", serde_json::Value::String(String::from_utf8_lossy(body).into()), 0);
            t.extra.insert("failed".into(), serde_json::json!({"message": e, "status": crate::outcome::STATE_FAIL}));
            dispatch::send_one(settings, dispatch::failed(names, &t, &e))?;
            return Ok(Settled::Moved);
        }
    };
    match redelivered.then(|| slot.shared.take_returned(&task.id)).flatten() {
        Some(Returned::TimedOut) => {
            // The parent killed the child running it at its time limit: that run was a failed attempt.
            let limit = limits.time_limit_secs;
            let ran = Ran {
                ended: Ended::Retry(crate::wire::RetryRule { max: None, interval: None }),
                message: format!("time limit of {limit} s exceeded: the task was stopped"),
                class: None,
                millis: (limit * 1000) as f64,
            };
            return settle(settings, names, policy, handler, task, ran).map(|()| Settled::Ran);
        }
        Some(Returned::Crashed) => {
            // Its child died running it (fatal error, exit(), signal, out of memory). Count that,
            // and stop a task that kills every child that runs it.
            task.redeliveries += 1;
            if task.redeliveries >= limits.max_redeliveries {
                let msg = format!(
                    "delivered {} times and its worker process died running it each time (fatal error, exit(), signal or out of memory)",
                    task.redeliveries
                );
                log::error(&format!(
                    "task {}/{} id={} {msg}; moved to the failed store",
                    task.topic, task.name, task.id
                ));
                let ran = Ran { ended: Ended::Failed, message: msg.clone(), class: None, millis: 0.0 };
                task.extra.insert("failed".into(), failure(&ran, crate::outcome::STATE_FAIL, task.attempt));
                dispatch::send_one(settings, dispatch::failed(names, &task, &msg))?;
                return Ok(Settled::Moved);
            }
            // Publish the counted copy; it runs when its turn comes again.
            dispatch::send_one(settings, dispatch::task(names, &task, 0))?;
            return Ok(Settled::Moved);
        }
        // Given back for another reason (a child stopped holding it, a lost connection): run it.
        None => {}
    }
    if settings.debug {
        log::debug(&format!("task start {}/{} id={} attempt={}", task.topic, task.name, task.id, task.attempt));
    }
    slot.shared.begin(slot.index, &task.id, limits.time_limit_secs * 1000);
    // Seen again after a death (counted in the message) or given back by the broker.
    let ran = handler.run(&task, redelivered || task.redeliveries > 0);
    // After exit() the slot stays marked: the parent sees this process die holding the task.
    let ran = ran.map_err(|_| HandleError::Abort)?;
    slot.shared.end(slot.index);
    settle(settings, names, policy, handler, task, ran).map(|()| Settled::Ran)
}

/// What happened to a delivery.
enum Settled {
    /// The task ran (or its timed-out run was counted): it counts toward max requests.
    Ran,
    /// Moved without running (unreadable, poison, counted and requeued).
    Moved,
}

/// Reports a run and does what its outcome asks: nothing, publish again (delayed), or fail it.
fn settle(
    settings: &Settings,
    names: &Names,
    policy: &Policy,
    handler: &mut dyn Handler,
    task: TaskMsg,
    ran: Ran,
) -> Result<(), HandleError> {
    let (status, next) = policy.decide(&ran.ended, task.attempt, task.retry, task.service_errors);
    if settings.debug {
        log::debug(&format!(
            "task end {}/{} id={} time={:.2}ms status={status} {}",
            task.topic, task.name, task.id, ran.millis, ran.message
        ));
    }
    handler.report(&task, &ran, status).map_err(|_| HandleError::Abort)?;
    match next {
        Next::Ack => Ok(()),
        Next::Again { delay } => {
            let mut again = task.clone();
            again.redeliveries = 0;
            match &ran.ended {
                Ended::Service => again.service_errors += 1,
                Ended::Retry(rule) => {
                    again.attempt += 1;
                    if rule.max.is_some() || rule.interval.is_some() {
                        again.retry = Some(*rule);
                    }
                }
                _ => {}
            }
            again.delay = delay;
            again.error = Some(
                serde_json::json!({"message": ran.message, "class": ran.class, "at": crate::wire::round_ms(now())}),
            );
            dispatch::send_one(settings, dispatch::task(names, &again, delay))?;
            Ok(())
        }
        Next::Fail => {
            let mut failed = task.clone();
            failed.extra.insert("failed".into(), failure(&ran, status, task.attempt));
            if !settings.debug {
                log::error(&format!(
                    "task {}/{} id={} failed after {} run(s): {}",
                    task.topic, task.name, task.id, task.attempt, ran.message
                ));
            }
            dispatch::send_one(settings, dispatch::failed(names, &failed, &ran.message))?;
            Ok(())
        }
    }
}

/// Time since `t` in milliseconds.
pub fn millis_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}
