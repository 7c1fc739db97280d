//! A worker child's loop: take a task, run it through the handler, report it, then ack, retry,
//! delay or fail it, confirmed before the ack, on the consume loop every long-running process
//! shares. Stops between tasks when asked.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::message::Delivery;

use super::acks::{self, Acks, Ending};
use super::cancelled::Cancelled;
use super::delivery::{self, Action, CountedBy, Facts, Refused};
use super::give_back;
use super::held;
use super::legacy;
use super::limited::{self, Gate};
use super::paused::{self, Paused};
use super::prefetch::Adaptive;
use super::recycle;
use super::shared::Shared;
use super::throttle::{Admit, Throttle};
use crate::broker::consume::{self, After, Finished, Host};
use crate::broker::flow_stream::CurrentLimits;
use crate::broker::names::Names;
use crate::broker::subscription::{self, Subscription};
use crate::broker::{group_stream, stop};
use crate::broker::{BrokerError, Decl, ErrorKind};
use crate::config::{QueueType, Settings};
use crate::dispatch;
use crate::flow::limits::{Limit, LimitSet};
use crate::group::state::Outcome;
use crate::history::record::{Hold, Run};
use crate::history::Writer;
use crate::log;
use crate::metrics::cgroup;
use crate::metrics::stats::Held;
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
    /// Tasks a child holds at once; `None`: adapted to the tasks' durations (`worker::prefetch`).
    pub prefetch: Option<u16>,
    /// Tasks before the child exits to be replaced (0: no limit).
    pub max_requests: u64,
    /// Resident memory after a task above which the child exits to be replaced (0: no limit).
    pub memory_limit_mb: u64,
    /// Deliveries of one task after its worker died holding it, before it is failed.
    pub max_redeliveries: u32,
    /// Seconds a task may run before the parent kills its child (0: no limit).
    pub time_limit_secs: u64,
    /// Where the original library kept its retry counters (a file per task id), on this host.
    pub legacy_counters: PathBuf,
    /// The rate and concurrency limits the worker's code set (`Worker::setLimit`); a run-time limit
    /// of the same id wins (`broker::flow_stream::Watch`).
    pub flow: Vec<Limit>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            prefetch: None,
            max_requests: 0,
            memory_limit_mb: 0,
            max_redeliveries: 5,
            time_limit_secs: 0,
            legacy_counters: PathBuf::from(crate::config::LEGACY_COUNTERS.default_value()),
            flow: Vec::new(),
        }
    }
}

pub enum Stopped {
    Asked,
    Recycle(String),
    Aborted,
}

/// This process's resident memory in MB (0 when /proc cannot be read).
pub fn resident_mb() -> f64 {
    crate::metrics::procfs::resident_bytes(std::process::id() as i32).unwrap_or(0) as f64 / 1_048_576.0
}

/// Where this child records what it runs, for the parent's time limits.
pub struct Tracking<'a> {
    pub shared: &'a Shared,
    pub index: usize,
}

/// The worker child's part of the consume loop: run each task, settle it, ack it.
struct TaskHost<'a> {
    settings: &'a Settings,
    /// The topic this worker runs: the only one whose tasks it runs.
    topic: &'a str,
    names: Names,
    policy: &'a Policy,
    limits: &'a Limits,
    tracking: &'a Tracking<'a>,
    handler: &'a mut dyn Handler,
    history: Option<Writer>,
    acks: Acks,
    /// The prefetch adapted to the tasks' durations, when `setPrefetch()` did not fix it.
    adaptive: Option<Adaptive>,
    done: u64,
    /// When the original library's ready queue consumed beside this worker's was last looked at.
    legacy_looked: Instant,
    /// That queue existed when last looked at.
    legacy_exists: bool,
    /// Whether this worker's topic is paused.
    paused: Paused,
    /// The rate and concurrency limits in force for this worker's topic.
    flow_limits: CurrentLimits,
    /// The topic's rate limits.
    throttle: Throttle,
    /// The tasks cancelled, folded by the same watcher.
    cancelled: Cancelled,
    /// The concurrency permits this child holds.
    gate: Gate,
}

impl<'a> TaskHost<'a> {
    /// What settling a delivery needs of this host.
    fn context(&mut self) -> Context<'_> {
        Context {
            settings: self.settings,
            topic: self.topic,
            names: &self.names,
            policy: self.policy,
            limits: self.limits,
            tracking: self.tracking,
            handler: &mut *self.handler,
            history: self.history.as_mut(),
            flow_limits: self.flow_limits.current(),
            paused: &self.paused,
            throttle: &mut self.throttle,
            cancelled: &self.cancelled,
            gate: &mut self.gate,
            ending: &mut self.acks.ending,
        }
    }
}

impl Host for TaskHost<'_> {
    type Left = Stopped;

    fn tick(&mut self) -> Option<Stopped> {
        if let Some(w) = &mut self.history {
            w.send_due();
        }
        // What this child knows of the pause, for the metrics process.
        self.tracking.shared.stats().set_paused(self.tracking.index, self.paused.is_paused());
        None
    }

    fn opened(&mut self, sub: &mut Subscription) {
        if self.adaptive.is_some() {
            self.adaptive = Some(Adaptive::default());
        }
        let prefetch = self.adaptive.as_ref().map_or(self.limits.prefetch.unwrap_or(1), Adaptive::current);
        let old = std::mem::replace(&mut self.acks, Acks::for_prefetch(prefetch));
        if old.ends_in_flight() {
            // Ends appended before the subscription was lost belong to tasks never acked, which come
            // back: settled here and forgotten, so that they do not hold back the new subscription's
            // acks. Ends not appended are dropped: their tasks end again.
            let _ = crate::dispatch::settle_before_acks(self.settings);
        }
        self.legacy_exists = legacy::look_at_ready(self.settings, &self.names, self.topic, sub);
        self.legacy_looked = Instant::now();
    }

    fn idle(&mut self, sub: &mut Subscription) -> bool {
        // Ack what is done before waiting for more.
        let acked = self.acks.idle(self.settings, sub) && self.paused.follow(sub);
        self.gate.idle(self.settings);
        if acked && self.legacy_exists && self.legacy_looked.elapsed() >= legacy::LOOK_EVERY {
            self.legacy_looked = Instant::now();
            self.legacy_exists = legacy::look_at_ready(self.settings, &self.names, self.topic, sub);
        }
        acked
    }

    fn patience(&self) -> Duration {
        // Records of ends on their way hold acks back: their answers are taken again soon.
        if self.acks.ends_in_flight() {
            ENDS_PATIENCE
        } else {
            consume::TICK
        }
    }

    fn stopping(&mut self, sub: &mut Subscription) {
        if self.acks.flush(self.settings, sub) {
            self.give_back_buffer(sub);
        }
    }

    fn deliver(&mut self, sub: &mut Subscription, d: Delivery) -> After<Stopped> {
        if !self.paused.may_start() {
            return self.give_back(sub, &d, true);
        }
        let started = Instant::now();
        let incoming = Incoming {
            body: &d.data,
            message_id: d.properties.message_id().as_ref().map(|id| id.as_str()),
            redelivered: d.redelivered,
            delivery_count: subscription::delivery_count(&d.properties),
        };
        let handled = handle(&mut self.context(), &incoming);
        let settled = match handled {
            Ok(s) => s,
            Err(HandleError::Abort) => {
                // exit() in PHP: the tasks done before still get their acks; the ones not started go back.
                if self.acks.flush(self.settings, sub) {
                    self.give_back_buffer(sub);
                }
                return After::Leave(Stopped::Aborted);
            }
            Err(HandleError::Broker(e)) => {
                // Not acked: the broker gives the task again. Reconnect and go on.
                log::error(&format!("worker could not settle a task: {e}; it will be delivered again"));
                self.acks.flush(self.settings, sub);
                return After::Reopen;
            }
        };
        let report = match settled {
            Settled::Ran(report) => {
                self.done += 1;
                Some(report)
            }
            Settled::Moved(report) => report,
            // A stop or a pause while it waited for its topic's rate: back unstarted.
            Settled::GiveBack { paused } => return self.give_back(sub, &d, paused),
        };
        let recycle = recycle::reason(self.limits, self.done, resident_mb, cgroup::recycle_reason);
        // Leaving after this task: cancel the consumer before the ack, so the broker does not
        // push the next task to a child that will not run it.
        let leaving = recycle.is_some() || stop::requested().is_some();
        if leaving {
            sub.cancel();
        }
        self.acks.done(d.delivery_tag);
        let acked = match (leaving, self.acks.full()) {
            (true, _) => self.acks.flush(self.settings, sub),
            (false, true) => self.acks.pass(self.settings, sub),
            (false, false) => true,
        };
        // The ack is on its way (at prefetch 1 the next delivery with it): the callback and the
        // history run meanwhile.
        if let Some(report) = report {
            if report.make(&mut self.context()).is_err() {
                self.acks.flush(self.settings, sub);
                return After::Leave(Stopped::Aborted);
            }
        }
        if !acked {
            return After::Reopen;
        }
        if !leaving && !self.adapt(sub, started.elapsed()) {
            return After::Reopen;
        }
        match recycle {
            Some(why) => {
                self.give_back_buffer(sub);
                // The ack above is only queued: close the channel, which waits until it is written,
                // or the process could exit first and the task would run again.
                sub.close_channel("worker recycling");
                After::Leave(Stopped::Recycle(why))
            }
            None => After::Next,
        }
    }
}

impl TaskHost<'_> {
    /// Before the child leaves (a stop, a recycle, exit() in a handler): on a quorum queue the tasks
    /// its buffer holds go back now, uncounted (`worker::give_back`); closing the channel would give
    /// them back too, but as deliveries the broker counts as deaths. A classic queue's go back with
    /// the channel, where they were.
    fn give_back_buffer(&mut self, sub: &mut Subscription) {
        if self.settings.queue_type != QueueType::Quorum {
            return;
        }
        let given = sub.cancel_and_take().and_then(|buffered| {
            give_back::unstarted(self.settings, &self.names, sub, &buffered).map(|()| buffered.len())
        });
        match given {
            Ok(0) => {}
            Ok(n) if self.settings.debug => log::debug(&format!("worker leaving: {n} task(s) not started given back")),
            Ok(_) => {}
            Err(e) => log::error(&format!(
                "worker leaving could not give back the tasks it had not started: {e}; they go back with its connection"
            )),
        }
    }

    /// Gives back a delivery unstarted (its topic is paused, or a stop came while it waited for a
    /// rate), without using an attempt; counted when it was a pause.
    fn give_back(&mut self, sub: &mut Subscription, d: &Delivery, paused: bool) -> After<Stopped> {
        match paused::give_back(self.settings, &self.names, sub, d) {
            Ok(()) => {
                if paused {
                    self.tracking.shared.stats().given_back();
                    self.record_paused(d);
                }
                After::Next
            }
            Err(e) => {
                log::error(&format!("worker could not give back a task unstarted: {e}"));
                After::Reopen
            }
        }
    }

    /// A task given back because its topic is known paused: recorded in the history as held (an
    /// ebats task body only; one record per delivery given back).
    fn record_paused(&mut self, d: &Delivery) {
        let Some(w) = self.history.as_mut() else { return };
        if !self.paused.is_paused() {
            return;
        }
        if let Ok(task) = TaskMsg::parse(&d.data) {
            w.write_held(&task, Hold::Paused, &format!("given back unstarted: topic '{}' is paused", self.topic));
        }
    }

    /// A task took `took`: the prefetch follows when it adapts. False when the subscription broke.
    fn adapt(&mut self, sub: &mut Subscription, took: Duration) -> bool {
        let Some(adaptive) = self.adaptive.as_mut() else { return true };
        if sub.is_paused() {
            // A task of the paused consumer's buffer, its topic resumed meanwhile: the consumer
            // restarts on resume, at the prefetch it had.
            return true;
        }
        let before = adaptive.current();
        let Some(prefetch) = adaptive.ran(took) else { return true };
        if let Err(e) = sub.set_prefetch(prefetch) {
            log::error(&format!("worker could not change its prefetch to {prefetch}: {e}; reconnecting"));
            self.acks.flush(self.settings, sub);
            return false;
        }
        if self.settings.debug {
            log::debug(&format!(
                "worker prefetch {before} -> {prefetch} (task took {:.1} ms)",
                took.as_secs_f64() * 1000.0
            ));
        }
        if prefetch < before {
            // Tasks are longer than the buffer was sized for: what it holds goes back to the queue,
            // for idle children, rather than waiting here behind them (done tasks acked first).
            if !self.acks.flush(self.settings, sub) {
                return false;
            }
            let buffered = sub.take_replaced();
            if let Err(e) = give_back::unstarted(self.settings, &self.names, sub, &buffered) {
                log::error(&format!("worker could not give back its buffered tasks: {e}; reconnecting"));
                return false;
            }
        }
        self.acks.batch = Acks::for_prefetch(prefetch).batch;
        true
    }
}

pub fn run(
    settings: &Settings,
    topic: &str,
    policy: &Policy,
    limits: &Limits,
    tracking: &Tracking,
    handler: &mut dyn Handler,
) -> Stopped {
    let names = Names::new(&settings.prefix);
    let queue = names.ready_queue(topic);
    let tag = format!("ebats-worker-{}", std::process::id());
    let decls = [Decl::Topic(topic.to_string())];
    let spec = consume::Spec {
        what: "worker",
        subscription: subscription::Spec {
            settings,
            decls: &decls,
            queue: &queue,
            prefetch: limits.prefetch.unwrap_or(Adaptive::START),
            tag: &tag,
        },
        first_open_fails: false,
    };
    let history = Writer::new(settings);
    let paused = Paused::watch(settings, topic, limits.flow.clone());
    let cancelled = Cancelled::new(paused.cancels());
    let mut host = TaskHost {
        settings,
        topic,
        names,
        policy,
        limits,
        tracking,
        handler,
        history,
        acks: Acks::default(),
        adaptive: limits.prefetch.is_none().then(Adaptive::default),
        done: 0,
        legacy_looked: Instant::now(),
        legacy_exists: false,
        flow_limits: paused.limits(),
        paused,
        throttle: Throttle::new(Names::new(&settings.prefix), topic),
        cancelled,
        gate: Gate::new(),
    };
    let stopped = match consume::run(&spec, &mut host) {
        Finished::Stopped(_) => Stopped::Asked,
        Finished::Left(why) => why,
        Finished::Failed(e) => {
            log::error(&format!("worker cannot run: {e}"));
            Stopped::Asked
        }
    };
    // Records still waiting for their confirm are written before the child goes.
    if let Some(w) = &mut host.history {
        w.flush(settings.confirm_timeout);
    }
    stopped
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

/// The `failed` entry of a task in the failed store; the message bounded as bodies keep it.
fn failure(ran: &Ran, status: i64, attempts: u32) -> serde_json::Value {
    serde_json::json!({
        "message": crate::wire::kept_message(&ran.message), "class": ran.class, "attempts": attempts,
        "failed_at": crate::wire::round_ms(now()), "status": status,
    })
}

/// What settling a delivery needs: the worker's setup, where it records, and its handler.
struct Context<'a> {
    settings: &'a Settings,
    topic: &'a str,
    names: &'a Names,
    policy: &'a Policy,
    limits: &'a Limits,
    tracking: &'a Tracking<'a>,
    handler: &'a mut dyn Handler,
    history: Option<&'a mut Writer>,
    /// The limits in force when the delivery came (code and run time merged; most often none).
    flow_limits: Arc<LimitSet>,
    paused: &'a Paused,
    throttle: &'a mut Throttle,
    cancelled: &'a Cancelled,
    /// The concurrency permits of the child.
    gate: &'a mut Gate,
    /// What ended for good since the last ack: group ends sent, unique keys released once they are
    /// confirmed, before the ack.
    ending: &'a mut Ending,
}

/// What a delivery brings.
struct Incoming<'a> {
    body: &'a [u8],
    message_id: Option<&'a str>,
    redelivered: bool,
    /// The broker's count of deliveries without an ack (quorum queues).
    delivery_count: u32,
}

/// How long a child waits for the parent to mark a task given back by a child that died running it.
const PARENT_MARKS_WITHIN: Duration = Duration::from_secs(1);

/// The broker gives a task back as soon as the child running it dies, and another child may receive
/// it before the parent has reaped the dead one and marked the task (`Supervisor::ended`, woken by
/// SIGCHLD): the death would go uncounted. While another slot still runs the task, wait for the mark
/// (or a stop).
fn await_parents_mark(tracking: &Tracking, task_id: &str) {
    stop::pause(PARENT_MARKS_WITHIN, Duration::from_millis(2), || {
        !tracking.shared.running_elsewhere(tracking.index, task_id)
    });
}

/// Settles one delivery: everything it publishes is confirmed before the caller acks.
fn handle(cx: &mut Context, d: &Incoming) -> Result<Settled, HandleError> {
    // A body in the original library's format, with the attempt count its counter file kept.
    let (read, counter_file) = match legacy::task(d.body, &cx.limits.legacy_counters) {
        Some(Ok((t, file))) => (Ok(t), file),
        Some(Err(e)) => (Err(e), None),
        None => (TaskMsg::parse(d.body), None),
    };
    let mut task = match delivery::accept(read, cx.topic) {
        Ok(t) => t,
        Err(refused) => return refuse(cx, d, &refused),
    };
    if cx.cancelled.of(&task) {
        return skip_cancelled(cx, &task);
    }
    // Where the broker counts deaths (quorum), a copy carrying deaths is asked too: a task given back
    // unstarted comes again as a copy, and whether this parent saw it die decides at the bound.
    let quorum = cx.settings.queue_type == QueueType::Quorum;
    let ask = d.redelivered || (quorum && task.redeliveries > 0);
    if ask {
        await_parents_mark(cx.tracking, &task.id);
    }
    let facts = Facts {
        queue_type: cx.settings.queue_type,
        given_back: ask.then(|| cx.tracking.shared.given_back(&task.id, !quorum)).flatten(),
        redeliveries: task.redeliveries,
        delivery_count: d.delivery_count,
        max_redeliveries: cx.limits.max_redeliveries,
    };
    match delivery::decide(&facts) {
        Action::Run => {
            if cx.settings.debug && (facts.delivery_count > 0 || facts.redeliveries > 0) {
                // What the poison count stands at, for reading a task's deliveries back from the log.
                log::debug(&format!(
                    "task {} delivered again: x-delivery-count {}, deaths in its body {}",
                    task.id, facts.delivery_count, facts.redeliveries
                ));
            }
        }
        Action::CountTimedOut => {
            // The parent killed the child running it at its time limit: that run was a failed attempt.
            let limit = cx.limits.time_limit_secs;
            let ran = Ran {
                ended: Ended::Retry(crate::wire::RetryRule { max: None, interval: None }),
                message: format!("time limit of {limit} s exceeded: the task was stopped"),
                class: None,
                millis: (limit * 1000) as f64,
            };
            return settle(cx, task, ran).map(Settled::Ran);
        }
        Action::GiveBackCounted { redeliveries } => {
            // Publish the counted copy; it runs when its turn comes again.
            task.redeliveries = redeliveries;
            dispatch::send_one(cx.settings, dispatch::task(cx.names, &task, 0))?;
            return Ok(Settled::Moved(None));
        }
        Action::Poison { deaths, counted_by } => {
            if counted_by == CountedBy::Workers {
                task.redeliveries = deaths;
            }
            return fail_poison(cx, task, deaths, counted_by.message(deaths));
        }
    }
    // What the task waited for in place before it starts (told on its run's record).
    let mut waited_for = None;
    let limits = limits_of(cx, &task);
    if !limits.is_empty() {
        let paused = cx.paused;
        // The permits first, the rate's starts last: a start is counted by the broker as near the
        // handler's start as can be, with no permit's declaration (on a cluster, a round trip to
        // another node) between them, which the log's margin (`flow::rate`) does not cover.
        match cx.gate.admit(cx.settings, cx.names, &limits, &task, &|| !paused.may_start())? {
            limited::Admit::Start { waited } => {
                if waited {
                    cx.tracking.shared.stats().held_back(Held::Concurrency);
                    waited_for = Some(Hold::Concurrency);
                }
            }
            limited::Admit::HoldBack { wait, limit } => {
                cx.tracking.shared.stats().held_back(Held::Concurrency);
                let why = format!("concurrency limit '{limit}' reached");
                let delay = held::hold_back(cx.settings, cx.names, &task, d.delivery_count, wait, &why)?;
                record_hold(cx, &task, Hold::Concurrency, &format!("held back {delay} s: {why}"));
                return Ok(Settled::Moved(None));
            }
            limited::Admit::GiveBack => return Ok(Settled::GiveBack { paused: !paused.may_start() }),
        }
        let mut waited = false;
        let admit = cx.throttle.admit(cx.settings, &limits, &task, || !paused.may_start(), &mut waited);
        if !matches!(admit, Ok(Admit::Run)) {
            // Not starting now: the permits taken for it go back.
            cx.gate.finished(cx.settings);
        }
        let admit = admit?;
        if waited || !matches!(admit, Admit::Run) {
            cx.tracking.shared.stats().held_back(Held::Rate);
        }
        match admit {
            Admit::Run => {
                if waited {
                    waited_for = Some(Hold::Rate);
                }
            }
            Admit::GiveBack { paused } => return Ok(Settled::GiveBack { paused }),
            Admit::HoldBack { wait, limit } => {
                if cx.settings.debug {
                    log::debug(&format!("task {}/{} id={} over the rate of '{limit}'", task.topic, task.name, task.id));
                }
                let why = format!("rate of '{limit}'");
                let delay = held::hold_back(cx.settings, cx.names, &task, d.delivery_count, wait, &why)?;
                record_hold(cx, &task, Hold::Rate, &format!("held back {delay} s: {why}"));
                return Ok(Settled::Moved(None));
            }
        }
    }
    if !limits.is_empty() && !cx.gate.holds_all() {
        // Its connection died since the permits were taken (checked last, as near the start as can be).
        cx.gate.finished(cx.settings);
        let why = format!(
            "task {}/{} id={} not started: its permits went with its connection",
            task.topic, task.name, task.id
        );
        return Err(BrokerError::new(ErrorKind::ConnectionLost, why).into());
    }
    // Seen again after a death (counted in the message) or given back by the broker.
    let seen_again = d.redelivered || task.redeliveries > 0;
    let ran = run_task(cx, task, &limits, seen_again, counter_file).map(|s| match s {
        Settled::Ran(report) => Settled::Ran(Report { waited: waited_for, ..report }),
        other => other,
    });
    // Its key permits go back, however it ended (a process that dies gives them back with its connection).
    cx.gate.finished(cx.settings);
    ran
}

/// The limits of `task`: the worker's in force, with the one the task carries (`flow::carried`) unless
/// the worker has its own of the same id. A carried limit that cannot be read is logged and left out.
fn limits_of(cx: &Context, task: &TaskMsg) -> Arc<LimitSet> {
    let Some(carried) = &task.limit else { return cx.flow_limits.clone() };
    match crate::flow::carried::with_carried(&cx.flow_limits, &task.topic, &task.name, carried) {
        Ok(Some(with)) => Arc::new(with),
        Ok(None) => cx.flow_limits.clone(),
        Err(e) => {
            log::error(&format!("task {}/{} id={}: its limit is left out: {e}", task.topic, task.name, task.id));
            cx.flow_limits.clone()
        }
    }
}

/// A task held back unstarted by a limit (published again to come back later): recorded in the
/// history with the status held, what held it and for how long.
fn record_hold(cx: &mut Context, task: &TaskMsg, hold: Hold, why: &str) {
    if let Some(w) = cx.history.as_deref_mut() {
        w.write_held(task, hold, why);
    }
}

/// A task cancelled before it started: not run, not reported to the callback; recorded in the
/// history with the status cancelled and counted, then acked. A chain stops there.
fn skip_cancelled(cx: &mut Context, task: &TaskMsg) -> Result<Settled, HandleError> {
    let chain = match &task.chain {
        Some(c) => format!("; chain {} stops at step {} of {}", c.at.id, c.at.step, c.at.steps),
        None => String::new(),
    };
    log::info(&format!("task {}/{} id={} cancelled: not run{chain}", task.topic, task.name, task.id));
    if let Some(w) = cx.history.as_deref_mut() {
        let run = Run {
            millis: 0.0,
            message: "cancelled before it started",
            class: None,
            status: crate::outcome::STATE_CANCELLED,
            end_ms: crate::wire::now_ms(),
        };
        w.write(task, &run);
    }
    cx.tracking.shared.stats().cancelled();
    ended(cx, task, Outcome::Cancelled)?;
    Ok(Settled::Moved(None))
}

/// Keeps a delivery that is not run in the failed store as it came, under the id it came with (a
/// new one if it had none or a strange one).
fn refuse(cx: &mut Context, d: &Incoming, refused: &Refused) -> Result<Settled, HandleError> {
    let id = d
        .message_id
        .filter(|id| crate::rules::check_id(id).is_ok())
        .map(str::to_string)
        .unwrap_or_else(crate::wire::new_id);
    let topic = cx.topic;
    log::error(&format!("unreadable task id={id} moved to the failed store of '{topic}': {refused}"));
    let reason = refused.to_string();
    dispatch::send_one(cx.settings, dispatch::unreadable_task(cx.names, topic, &id, d.body, &reason))?;
    Ok(Settled::Moved(None))
}

/// Runs a task through the handler, marked in the shared memory while it runs, and settles it.
/// `limits`: those it was admitted under (the worker's, with the one it carries), for the debug log.
fn run_task(
    cx: &mut Context,
    task: TaskMsg,
    limits: &LimitSet,
    seen_again: bool,
    counter_file: Option<PathBuf>,
) -> Result<Settled, HandleError> {
    if cx.settings.debug {
        let applied: Vec<String> = match limits.is_empty() {
            true => Vec::new(),
            false => limits.for_task(&task.name, &task.params).into_iter().map(|a| a.counter).collect(),
        };
        log::debug(&format!(
            "task start {}/{} id={} attempt={} limits=[{}]",
            task.topic,
            task.name,
            task.id,
            task.attempt,
            applied.join(",")
        ));
    }
    let tracking = cx.tracking;
    tracking.shared.begin(tracking.index, &task.id, cx.limits.time_limit_secs * 1000);
    tracking.shared.stats().task_begin(tracking.index, &task.name, now() - task.created_at);
    cx.cancelled.running(&task);
    let ran = cx.handler.run(&task, seen_again);
    cx.cancelled.ended();
    // After exit() the slot stays marked: the parent sees this process die holding the task.
    let ran = ran.map_err(|_| HandleError::Abort)?;
    tracking.shared.end(tracking.index);
    let secs = ran.millis / 1000.0;
    let report = settle(cx, task, ran)?;
    tracking.shared.stats().task_end(tracking.index, report.status, secs);
    if let Some(f) = counter_file {
        // Its count now travels in the task (a retry is published in ebats's format).
        let _ = std::fs::remove_file(f);
    }
    Ok(Settled::Ran(report))
}

/// Moves a task that killed the processes running it `deaths` times to the failed store.
fn fail_poison(cx: &mut Context, mut task: TaskMsg, deaths: u32, msg: String) -> Result<Settled, HandleError> {
    log::error(&format!("task {}/{} id={} {msg}; moved to the failed store", task.topic, task.name, task.id));
    let ran = Ran { ended: Ended::Failed, message: msg.clone(), class: None, millis: 0.0 };
    // Each death was a run: the earlier attempts, then this attempt's deaths.
    let runs = task.attempt.saturating_sub(1).saturating_add(deaths);
    task.extra.insert("failed".into(), failure(&ran, crate::outcome::STATE_FAIL, runs));
    dispatch::send_one(cx.settings, dispatch::failed(cx.names, &task, &msg))?;
    ended(cx, &task, Outcome::Failed)?;
    // Recorded in the history, without a callback (the handler did not return).
    Ok(Settled::Moved(Some(Report { task, ran, status: crate::outcome::STATE_FAIL, callback: false, waited: None })))
}

/// A task ended for good (succeeded, failed to the store, poison, cancelled), before its ack: its
/// group counts its end (appended with the others of its batch of acks, confirmed before the ack:
/// `Acks::flush`; nothing for a task without a group) and its unique key is released (a member's once
/// its end is confirmed).
fn ended(cx: &mut Context, task: &TaskMsg, outcome: Outcome) -> Result<(), BrokerError> {
    let end = group_stream::end(task, outcome);
    let counted = end.is_some();
    cx.ending.ends.extend(end);
    match counted && task.unique.is_some() {
        true => cx.ending.releases.push(task.clone()),
        false => acks::release_key(cx.settings, task),
    }
    Ok(())
}

/// What happened to a delivery.
enum Settled {
    /// The task ran (or its timed-out run was counted): it counts toward max requests.
    Ran(Report),
    /// Moved without running (unreadable, poison, counted and requeued, held back by a limit).
    Moved(Option<Report>),
    /// Not started: to be given back (a stop or a pause came while it waited for its topic's rate).
    GiveBack { paused: bool },
}

/// What is told of a settled task (its history record, the worker's callback): told after its
/// ack is handed over, since nothing of it decides the ack, so that at prefetch 1 the next task
/// is on its way while the callback runs.
struct Report {
    task: TaskMsg,
    ran: Ran,
    status: i64,
    callback: bool,
    /// What it waited for in place before it started, if anything.
    waited: Option<Hold>,
}

impl Report {
    /// Records the run and calls the callback; `Err` when the callback called `exit()`.
    fn make(self, cx: &mut Context) -> Result<(), Abort> {
        if let Some(w) = cx.history.as_deref_mut() {
            match self.waited {
                None => w.write(&self.task, &run_of(&self.ran, self.status)),
                Some(hold) => w.write_waited(&self.task, &run_of(&self.ran, self.status), hold),
            }
        }
        if self.callback {
            cx.handler.report(&self.task, &self.ran, self.status)?;
        }
        Ok(())
    }
}

/// What the history records of a run.
fn run_of(ran: &Ran, status: i64) -> Run<'_> {
    Run {
        millis: ran.millis,
        message: &ran.message,
        class: ran.class.as_deref(),
        status,
        end_ms: crate::wire::now_ms(),
    }
}

/// Does what a run's outcome asks: nothing, publish again (delayed), or fail it, confirmed.
/// Returns what to report of it (to the history and the callback) once it is acked.
fn settle(cx: &mut Context, task: TaskMsg, ran: Ran) -> Result<Report, HandleError> {
    let settings = cx.settings;
    let (status, next) = cx.policy.decide(&ran.ended, task.attempt, task.retry, task.service_errors);
    if settings.debug {
        log::debug(&format!(
            "task end {}/{} id={} time={:.2}ms status={status} {}",
            task.topic, task.name, task.id, ran.millis, ran.message
        ));
    }
    match next {
        Next::Ack => {
            // A chain goes on: its next step is confirmed before this one is acked.
            if let Some(step) = task.chain.as_ref().and_then(|c| c.next()) {
                dispatch::send_one(settings, dispatch::task(cx.names, &step, step.delay))?;
            }
            ended(cx, &task, Outcome::Succeeded)?;
        }
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
                serde_json::json!({"message": crate::wire::kept_message(&ran.message), "class": ran.class, "at": crate::wire::round_ms(now())}),
            );
            dispatch::send_one(settings, dispatch::task(cx.names, &again, delay))?;
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
            dispatch::send_one(settings, dispatch::failed(cx.names, &failed, &ran.message))?;
            if let Some(c) = &task.chain {
                log::error(&format!(
                    "chain {} stopped at step {} of {} (task id={})",
                    c.at.id, c.at.step, c.at.steps, task.id
                ));
            }
            ended(cx, &task, Outcome::Failed)?;
        }
    }
    Ok(Report { task, ran, status, callback: true, waited: None })
}

/// Time since `t` in milliseconds.
pub fn millis_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// While records of group ends are on their way, the worker waits this long at most for a task before
/// it takes their answers again (each acks its batch: `Acks::idle`).
const ENDS_PATIENCE: Duration = Duration::from_millis(1);
