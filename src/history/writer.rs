//! Writing execution records from a worker child, off the task path: records are written as JSON
//! straight into a batch (one message, a JSON list), without an owned copy of each, sent when it holds [`BATCH_RECORDS`] or its oldest is [`BATCH_AGE`] old
//! (checked after each task and at least every 100 ms while the child waits), handed to the
//! connection without waiting; its confirm is awaited on the session's runtime. When the child
//! leaves, the batch is sent and every confirm awaited (bounded). A failure never reaches the task:
//! it is logged once when records start being lost and once when they are written again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::record::{Hold, Record, Run, KIND_RECORD};

use crate::broker::current::with_session;
use crate::broker::names::Names;
use crate::broker::{BrokerError, Decl, ErrorKind, Outgoing};
use crate::config::Settings;
use crate::log;
use crate::wire::{properties, TaskMsg};

/// After a record could not even be handed over, the next tries wait this long (so a broker that
/// refuses costs no round trip per task).
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// Records in one message at most.
pub const BATCH_RECORDS: usize = 100;
/// A batch is sent once its oldest record waited this long.
pub const BATCH_AGE: Duration = Duration::from_millis(100);

/// The stream's declaration, with the retention the settings give.
pub fn decl(settings: &Settings) -> Decl {
    Decl::History { max_age: settings.history.max_age.clone(), max_bytes: settings.history.max_bytes }
}

/// Declares the history stream (a worker checks it before it starts its children).
pub fn declare(settings: &Settings) -> Result<(), BrokerError> {
    with_session(|s| s.declare(settings, &[decl(settings)]))
}

#[derive(Default)]
struct Tally {
    /// Records handed over, confirm not yet settled.
    inflight: usize,
    /// Records are being lost (logged once, when it started).
    failing: bool,
    lost: u64,
    /// A record came back unroutable: the stream was deleted, declare it again.
    redeclare: bool,
}

#[derive(Default)]
struct Shared {
    tally: Mutex<Tally>,
    settled: Condvar,
}

impl Shared {
    fn failed(&self, stream: &str, records: usize, e: &BrokerError) {
        let mut t = self.tally.lock();
        t.lost += records as u64;
        t.redeclare |= e.kind() == ErrorKind::Unroutable;
        if !t.failing {
            t.failing = true;
            log::error(&format!(
                "execution history: a record could not be written to '{stream}' ({e}); records are lost until \
                 writing works again (tasks are not affected)"
            ));
        }
    }

    fn written(&self, stream: &str) {
        let mut t = self.tally.lock();
        if t.failing {
            t.failing = false;
            log::info(&format!("execution history: records are written to '{stream}' again ({} lost)", t.lost));
            t.lost = 0;
        }
    }
}

/// A worker child's writer of records.
pub struct Writer {
    settings: Settings,
    stream: String,
    host: String,
    pid: u32,
    shared: Arc<Shared>,
    paused_until: Option<Instant>,
    /// The JSON list of the records not sent yet (its closing bracket not written), how many it
    /// holds, and since when the first of them waits.
    batch: Vec<u8>,
    records: usize,
    since: Option<Instant>,
}

/// This machine's name (empty when it cannot be read).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer it is given.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

impl Writer {
    /// A writer when the settings turn the history on.
    pub fn new(settings: &Settings) -> Option<Writer> {
        settings.history.enabled.then(|| Writer {
            settings: settings.clone(),
            stream: Names::new(&settings.prefix).history_stream(),
            host: host_name(),
            pid: std::process::id(),
            shared: Arc::default(),
            paused_until: None,
            batch: Vec::new(),
            records: 0,
            since: None,
        })
    }

    /// Adds the record of a run to the batch; sends the batch when it is full or old enough.
    pub fn write(&mut self, task: &TaskMsg, run: &Run) {
        self.add(task, run, None);
    }

    /// Adds the record of a run that waited in place for `waited` before it started.
    pub fn write_waited(&mut self, task: &TaskMsg, run: &Run, waited: Hold) {
        self.add(task, run, Some(waited));
    }

    /// Adds the record of a task not started now (`held`, no run): `why` says what held it.
    pub fn write_held(&mut self, task: &TaskMsg, hold: Hold, why: &str) {
        self.add(task, &Run::held(why, crate::wire::now_ms()), Some(hold));
    }

    fn add(&mut self, task: &TaskMsg, run: &Run, held: Option<Hold>) {
        self.batch.push(if self.records == 0 { b'[' } else { b',' });
        let limit = self.settings.history.params_bytes;
        Record::write_json(task, run, held, limit, self.pid, &self.host, &mut self.batch);
        self.records += 1;
        self.since.get_or_insert_with(Instant::now);
        if self.records >= BATCH_RECORDS {
            self.send();
        } else {
            self.send_due();
        }
    }

    /// Sends the batch if its oldest record waited [`BATCH_AGE`].
    pub fn send_due(&mut self) {
        if self.since.is_some_and(|t| t.elapsed() >= BATCH_AGE) {
            self.send();
        }
    }

    /// Hands the batch to the connection without waiting for the broker.
    fn send(&mut self) {
        self.since = None;
        if self.records == 0 {
            return;
        }
        self.batch.push(b']');
        // The next batch starts at about this one's size.
        let size = self.batch.len();
        let body = std::mem::replace(&mut self.batch, Vec::with_capacity(size));
        let n = std::mem::take(&mut self.records);
        if self.paused_until.is_some_and(|t| Instant::now() < t) {
            self.shared.tally.lock().lost += n as u64;
            return;
        }
        self.paused_until = None;
        let out = Outgoing {
            exchange: String::new(),
            routing_key: self.stream.clone(),
            body,
            properties: properties(&crate::wire::new_id(), KIND_RECORD),
            mandatory: true,
        };
        let redeclare = std::mem::take(&mut self.shared.tally.lock().redeclare);
        let (shared, stream) = (self.shared.clone(), self.stream.clone());
        self.shared.tally.lock().inflight += n;
        let r = with_session(|s| {
            if redeclare {
                s.forget_declarations();
            }
            s.declare(&self.settings, &[decl(&self.settings)])?;
            s.publish_detached(&self.settings, &out, move |r| {
                match r {
                    Ok(()) => shared.written(&stream),
                    Err(e) => shared.failed(&stream, n, &e),
                }
                shared.tally.lock().inflight -= n;
                shared.settled.notify_all();
            })
        });
        if let Err(e) = r {
            self.shared.tally.lock().inflight -= n;
            self.shared.failed(&self.stream, n, &e);
            self.paused_until = Some(Instant::now() + PAUSE_AFTER_FAILURE);
        }
    }

    /// Sends the batch and waits (at most `within`) until every record handed over is confirmed;
    /// returns how many were not.
    pub fn flush(&mut self, within: Duration) -> usize {
        self.send();
        let deadline = Instant::now() + within;
        let mut t = self.shared.tally.lock();
        while t.inflight > 0 {
            if self.shared.settled.wait_until(&mut t, deadline).timed_out() {
                break;
            }
        }
        if t.inflight > 0 {
            log::error(&format!(
                "execution history: {} record(s) not confirmed by the broker within {:.1} s as the worker child leaves",
                t.inflight,
                within.as_secs_f64()
            ));
        }
        t.inflight
    }
}
