//! The stream of paused topics `<prefix>.flow` on the broker (what it holds and why: `src/flow/`):
//! appending a change, folding the stream to now, and the watcher a worker child runs to know, within
//! a moment of its being appended, whether its topic is paused and which tasks are cancelled.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lapin::message::Delivery;
use parking_lot::Mutex;

use super::consume::Backoff;
use super::current::with_session;
use super::names::Names;
use super::stream_read::{self, Go, Offset};
use super::{stop, BrokerError, Decl, ErrorKind, Outgoing, Session};
use crate::config::Settings;
use crate::flow::cancel::{Cancels, Target};
use crate::flow::pause::{Fold, Record};
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
    let rid = crate::wire::new_id();
    let (topic, r) = (topic.to_string(), rid.clone());
    let record = if paused { Record::Pause { topic, rid: r } } else { Record::Resume { topic, rid: r } };
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

/// Whether one topic is paused, kept up to date by a thread of its own (on a connection of its own)
/// that folds the stream to now, then follows it; with it, the cancels in force. A worker child
/// starts one; it ends with the process or when a stop is asked.
pub struct Watch {
    state: Arc<AtomicU8>,
    cancels: Arc<Mutex<Cancels>>,
}

impl Watch {
    pub fn start(settings: &Settings, topic: &str) -> Watch {
        let state = Arc::new(AtomicU8::new(UNKNOWN));
        let cancels = Arc::new(Mutex::new(Cancels::default()));
        let (st, settings, topic) = (state.clone(), settings.clone(), topic.to_string());
        let known = Known { state: st, cancels: cancels.clone() };
        let spawned =
            std::thread::Builder::new().name("ebats-flow".into()).spawn(move || watch(&settings, &topic, &known));
        if let Err(e) = spawned {
            // Without a watcher a pause would never be seen: better to run than to stall for good.
            log::error(&format!("cannot start the thread watching paused topics ({e}): pauses are not followed"));
            state.store(RUNNING, Ordering::Release);
        }
        Watch { state, cancels }
    }

    /// The cancels in force, as folded so far (complete once [`Watch::paused`] is known).
    pub fn cancels(&self) -> Arc<Mutex<Cancels>> {
        self.cancels.clone()
    }

    /// Whether the topic is paused; `None` until the stream has been read to now once.
    pub fn paused(&self) -> Option<bool> {
        match self.state.load(Ordering::Acquire) {
            UNKNOWN => None,
            s => Some(s == PAUSED),
        }
    }
}

/// What the watcher hands on to its process.
struct Known {
    state: Arc<AtomicU8>,
    cancels: Arc<Mutex<Cancels>>,
}

fn watch(settings: &Settings, topic: &str, known: &Known) {
    let stream = Names::new(&settings.prefix).flow_stream();
    let handed = std::cell::Cell::new(None);
    let set = |fold: &Fold| {
        // The cancels first: a task starts only once the state is known, and is checked against them.
        if handed.get() != Some(fold.cancels_changed()) {
            *known.cancels.lock() = fold.cancels().clone();
            handed.set(Some(fold.cancels_changed()));
        }
        known.state.store(if fold.is_paused(topic) { PAUSED } else { RUNNING }, Ordering::Release)
    };
    let mut backoff = Backoff::default();
    while stop::requested().is_none() {
        let watched = (|| {
            let mut s = Session::new()?;
            let rt = s.handle();
            let _ctx = rt.enter();
            let read = read_to_now(&mut s, settings, &[], false);
            s.close();
            let (mut fold, to) = read?;
            handed.set(None);
            set(&fold);
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
                    set(&fold);
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
