//! The flow stream `<prefix>.flow` on the broker (paused topics and run-time limits; what it holds
//! and why: `src/flow/`): appending a change, folding the stream to now, and the watcher a worker
//! child runs to know, within a moment of its being appended, whether its topic is paused, which
//! limits are in force for it and which tasks are cancelled.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lapin::message::Delivery;

use super::consume::Backoff;
use super::current::with_session;
use super::names::Names;
use super::stream_read::{self, Go, Offset};
use super::{stop, BrokerError, Decl, ErrorKind, Outgoing, Session};
use crate::config::Settings;
use crate::flow::cancel::{Cancels, Target};
use crate::flow::limits::{Limit, LimitSet};
use crate::flow::record::{effective, Fold, Record, Source};
use crate::log;

/// Messages a reader takes ahead; acked in runs of half of it.
const READ_PREFETCH: u16 = 500;
/// The `type` property of a record.
const KIND: &str = "ebats.flow";

fn message(names: &Names, record: &Record) -> Outgoing {
    Outgoing {
        exchange: String::new(),
        routing_key: names.flow_stream(),
        body: record.to_json(crate::wire::now_ms()).into_bytes(),
        properties: crate::wire::properties(&crate::wire::new_id(), KIND),
        mandatory: true,
    }
}

/// The record a message holds; `None` for a marker, and for a message that is not a record (logged).
fn record_of(offset: u64, d: &Delivery) -> Option<Record> {
    if stream_read::marker_id(&d.properties).is_some() {
        return None;
    }
    Record::from_json(&d.data)
        .inspect_err(|e| log::error(&format!("skipping the message at offset {offset} of the flow stream: {e}")))
        .ok()
}

/// Appends `records`, then a marker, and folds the whole stream (what retention left of it) up to the
/// marker, on the session `s`. Appends a snapshot of the result after it when `snapshot` is asked
/// or too many records follow the last one. Returns the fold and the marker's offset.
pub fn read_to_now(
    s: &mut Session,
    settings: &Settings,
    records: &[Record],
    snapshot: bool,
) -> Result<(Fold, u64), BrokerError> {
    let names = Names::new(&settings.prefix);
    let stream = names.flow_stream();
    let id = crate::wire::new_id();
    let mut msgs: Vec<Outgoing> = records.iter().map(|r| message(&names, r)).collect();
    msgs.push(stream_read::marker(&stream, &id));
    let send = |s: &mut Session, msgs: &[Outgoing]| {
        s.publish_declared(settings, &[Decl::Flow], msgs, &std::cell::Cell::new(false))
    };
    send(s, &msgs)?;
    let read = stream_read::Read {
        stream: &stream,
        what: "flow stream",
        from: Offset::First,
        prefetch: READ_PREFETCH,
        within: stream_read::WHOLE_READ,
    };
    let mut fold = Fold::default();
    let to = stream_read::read_through_marker(s, settings, &read, &id, |o, d| fold.push(o, record_of(o, d)))?;
    fold.finish();
    let due = match snapshot {
        true => Some(fold.snapshot(to, crate::wire::now_ms())),
        false => fold.snapshot_due(to, crate::wire::now_ms()),
    };
    if let Some(snap) = due {
        send(s, &[message(&names, &snap)])?;
    }
    Ok((fold, to))
}

/// Pauses (`paused`) or resumes `topic` for every worker, on the process's session; true when that
/// changed something (false: it was paused, or running, already). The stream's order decides
/// between changes that race: every reader folds them in the same order.
pub fn change(settings: &Settings, topic: &str, paused: bool) -> Result<bool, BrokerError> {
    let topic = topic.to_string();
    append(settings, |rid| if paused { Record::Pause { topic, rid } } else { Record::Resume { topic, rid } })
}

/// Sets `limit` for every worker of its topic (replacing the one of the same id), on the process's
/// session; true when that changed something (false: the same limit was set already).
pub fn set_limit(settings: &Settings, limit: &Limit) -> Result<bool, BrokerError> {
    append(settings, |rid| Record::Limit { limit: limit.clone(), rid })
}

/// Removes the run-time limit `id` of `topic`; true when there was one.
pub fn clear_limit(settings: &Settings, topic: &str, id: &str) -> Result<bool, BrokerError> {
    append(settings, |rid| Record::Unlimit { topic: topic.to_string(), id: id.to_string(), rid })
}

/// The run-time limits (every topic's, by id), on the process's session.
pub fn limits(settings: &Settings) -> Result<Vec<Limit>, BrokerError> {
    let (fold, _) = with_session(|s| read_to_now(s, settings, &[], false))?;
    Ok(fold.limits().cloned().collect())
}

/// Appends the change `make` builds with a new request id, then a snapshot, and returns its verdict.
fn append(settings: &Settings, make: impl FnOnce(String) -> Record) -> Result<bool, BrokerError> {
    let rid = crate::wire::new_id();
    let record = make(rid.clone());
    let (fold, _) = with_session(|s| read_to_now(s, settings, &[record], true))?;
    fold.verdict(&rid).ok_or_else(|| {
        BrokerError::new(ErrorKind::Runtime, "the change to the flow stream was not found when reading it back")
    })
}

/// Cancels `target` until `until` (ms since the epoch) for every worker, on the process's session:
/// appended, confirmed, and folded through (a snapshot follows when one is due).
pub fn cancel(settings: &Settings, target: Target, until: i64) -> Result<(), BrokerError> {
    with_session(|s| read_to_now(s, settings, &[Record::Cancel { target, until }], false)).map(|_| ())
}

/// The paused topics, on the process's session.
pub fn paused(settings: &Settings) -> Result<Vec<String>, BrokerError> {
    let (fold, _) = with_session(|s| read_to_now(s, settings, &[], false))?;
    Ok(fold.paused().iter().cloned().collect())
}

const UNKNOWN: u8 = 0;
const RUNNING: u8 = 1;
const PAUSED: u8 = 2;

/// What the watcher thread knows, shared with the process's other threads.
struct Known {
    paused: AtomicU8,
    /// Bumped each time `limits` changes.
    version: AtomicU64,
    /// The limits in force (code and run time merged), and where each comes from.
    limits: parking_lot::Mutex<(Arc<LimitSet>, Vec<Source>)>,
    /// The limits set in the worker's code.
    code: Vec<Limit>,
    /// The cancels in force, and the fold's count of their changes when they were handed on.
    cancels: Arc<parking_lot::Mutex<Cancels>>,
    cancels_handed: AtomicU64,
}

impl Known {
    /// The fold's state for `topic`: stored, and the limits replaced (version bumped) only when they changed.
    fn set(&self, fold: &Fold, topic: &str) {
        // The cancels first: a task starts only once the state is known, and is checked against them.
        if self.cancels_handed.load(Ordering::Relaxed) != fold.cancels_changed() {
            *self.cancels.lock() = fold.cancels().clone();
            self.cancels_handed.store(fold.cancels_changed(), Ordering::Relaxed);
        }
        self.paused.store(if fold.is_paused(topic) { PAUSED } else { RUNNING }, Ordering::Release);
        let now = effective(topic, &self.code, fold.limits());
        let mut held = self.limits.lock();
        let same = held.0.limits().len() == now.len()
            && held.0.limits().iter().zip(&now).all(|(a, (b, _))| a == *b)
            && held.1.iter().eq(now.iter().map(|(_, s)| s));
        if !same {
            let sources = now.iter().map(|(_, s)| *s).collect();
            *held = (Arc::new(LimitSet::new(now.into_iter().map(|(l, _)| l.clone()).collect())), sources);
            self.version.fetch_add(1, Ordering::Release);
        }
    }
}

/// Whether one topic is paused and which limits are in force for it, kept up to date by a thread of
/// its own (on a connection of its own) that folds the stream to now, then follows it. A worker child
/// starts one; it ends with the process or when a stop is asked.
pub struct Watch {
    known: Arc<Known>,
}

impl Watch {
    /// Watches `topic`, whose worker's code set the limits `code` (a run-time limit of the same id wins).
    pub fn start(settings: &Settings, topic: &str, code: Vec<Limit>) -> Watch {
        // Until the stream is read, the code's limits are in force.
        let set = LimitSet::new(code.iter().filter(|l| l.topic == topic).cloned().collect());
        let sources = vec![Source::Code; set.limits().len()];
        let known = Arc::new(Known {
            paused: AtomicU8::new(UNKNOWN),
            version: AtomicU64::new(0),
            limits: parking_lot::Mutex::new((Arc::new(set), sources)),
            code,
            cancels: Arc::new(parking_lot::Mutex::new(Cancels::default())),
            cancels_handed: AtomicU64::new(u64::MAX),
        });
        let (k, settings, topic) = (known.clone(), settings.clone(), topic.to_string());
        let spawned = std::thread::Builder::new().name("ebats-flow".into()).spawn(move || watch(&settings, &topic, &k));
        if let Err(e) = spawned {
            // Without a watcher a pause would never be seen: better to run than to stall for good.
            log::error(&format!(
                "cannot start the thread watching the flow stream ({e}): pauses and run-time limits are not followed"
            ));
            known.paused.store(RUNNING, Ordering::Release);
        }
        Watch { known }
    }

    /// The cancels in force, as folded so far (complete once [`Watch::paused`] is known).
    pub fn cancels(&self) -> Arc<parking_lot::Mutex<Cancels>> {
        self.known.cancels.clone()
    }

    /// Whether the topic is paused; `None` until the stream has been read to now once.
    pub fn paused(&self) -> Option<bool> {
        match self.known.paused.load(Ordering::Acquire) {
            UNKNOWN => None,
            s => Some(s == PAUSED),
        }
    }

    /// The limits in force as the delivery path reads them (see [`CurrentLimits::current`]).
    pub fn limits(&self) -> CurrentLimits {
        let (set, _) = self.known.limits.lock().clone();
        CurrentLimits { known: self.known.clone(), seen: Cell::new(0), set: RefCell::new(set) }
    }

    /// The limits in force and where each comes from, in the set's order (for the status document).
    pub fn limits_with_sources(&self) -> Vec<(Limit, Source)> {
        let held = self.known.limits.lock();
        held.0.limits().iter().cloned().zip(held.1.iter().copied()).collect()
    }
}

/// The limits in force for a worker child's topic, for its delivery path: one atomic load and a
/// reference count per call, no lock (the watcher's lock is taken only in the call after a change)
/// and no allocation. A handle of one thread (it caches what it last read).
pub struct CurrentLimits {
    known: Arc<Known>,
    /// The version `set` was read at.
    seen: Cell<u64>,
    set: RefCell<Arc<LimitSet>>,
}

impl CurrentLimits {
    /// The limits in force now (the code's until the stream was read, then as the stream changes
    /// them, within a moment of a change being appended). Empty, the common case: nothing to do.
    pub fn current(&self) -> Arc<LimitSet> {
        let v = self.known.version.load(Ordering::Acquire);
        if v != self.seen.get() {
            *self.set.borrow_mut() = self.known.limits.lock().0.clone();
            self.seen.set(v);
        }
        self.set.borrow().clone()
    }
}

fn watch(settings: &Settings, topic: &str, known: &Known) {
    let stream = Names::new(&settings.prefix).flow_stream();
    let mut backoff = Backoff::default();
    while stop::requested().is_none() {
        let watched = (|| {
            let mut s = Session::new()?;
            let rt = s.handle();
            let _ctx = rt.enter();
            let read = read_to_now(&mut s, settings, &[], false);
            s.close();
            let (mut fold, to) = read?;
            known.cancels_handed.store(u64::MAX, Ordering::Relaxed);
            known.set(&fold, topic);
            backoff.reset();
            stream_read::follow(
                settings,
                &stream,
                "flow stream",
                Offset::At(to + 1),
                READ_PREFETCH,
                || false,
                |o, d| {
                    fold.push(o, record_of(o, d));
                    known.set(&fold, topic);
                    Go::On
                },
            )
        })();
        // Ok: a stop was asked. An error: read the stream anew (it was deleted, or never reached).
        if let Err(e) = watched {
            let d = backoff.after(&e);
            log::error(&format!("cannot follow the flow stream: {e}; trying again in {} s", d.as_secs_f64()));
            if stop::pause(d, Duration::from_millis(100), || false) {
                return;
            }
        }
    }
}
