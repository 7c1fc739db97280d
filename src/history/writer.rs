//! Writing execution records from a worker child, off the task path: records are written as JSON
//! straight into a batch (one message, a JSON list), without an owned copy of each, sent when it
//! holds [`BATCH_RECORDS`] or [`BATCH_BYTES`], or its oldest is [`BATCH_AGE`] old (checked after each
//! task and at least every 100 ms while the child waits), handed to the connection without waiting.
//! Its confirm is settled by a later look that never waits (before the next batch is sent, or [`BATCH_AGE`] after
//! the last look): on the child's direct connection, the batch is one write and the look one read
//! that does not block, both on this thread, so no other thread is woken for the history. When the
//! child leaves, the batch is sent and every confirm awaited (bounded). A failure never reaches the
//! task: it is logged once when records start being lost and once when they are written again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::record::{Hold, Record, Run, KIND_RECORD};

use crate::broker::confirm::{Failed, Lot, Sent};
use crate::broker::current::with_session;
use crate::broker::names::Names;
use crate::broker::session::closed_unanswered;
use crate::broker::{BrokerError, Decl, ErrorKind, Outgoing};
use crate::config::Settings;
use crate::log;
use crate::wire::{properties, TaskMsg};

/// After a record could not even be handed over, the next tries wait this long (so a broker that
/// refuses costs no round trip per task).
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// Records in one message at most. The broker's cost of a stream message is mostly by the message
/// (some 300 µs of its CPU for a lone one of 4 KB, 580 µs at 330 KB: bench/RESULTS.md), so at high
/// rates fewer, larger messages cost it less; below 10,000 tasks/s a child, [`BATCH_AGE`] sends first.
pub const BATCH_RECORDS: usize = 1000;
/// Bytes of JSON in one message at most (records with large params fill it before [`BATCH_RECORDS`]).
pub const BATCH_BYTES: usize = 256 * 1024;
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

/// A worker child's writer of records.
pub struct Writer {
    settings: Settings,
    stream: String,
    host: String,
    pid: u32,
    paused_until: Option<Instant>,
    /// The JSON list of the records not sent yet (its closing bracket not written), how many it
    /// holds, and since when the first of them waits.
    batch: Vec<u8>,
    records: usize,
    since: Option<Instant>,
    /// The records of each message handed over whose confirm is not settled yet, by message id;
    /// when their answers were last looked for.
    inflight: HashMap<String, usize>,
    looked: Instant,
    /// Records are being lost (logged once, when it started), and how many since.
    failing: bool,
    lost: u64,
    /// A record came back unroutable: the stream was deleted, declare it again.
    redeclare: bool,
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
            paused_until: None,
            batch: Vec::new(),
            records: 0,
            since: None,
            inflight: HashMap::new(),
            looked: Instant::now(),
            failing: false,
            lost: 0,
            redeclare: false,
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
        if self.records >= BATCH_RECORDS || self.batch.len() >= BATCH_BYTES {
            self.send();
        } else {
            self.send_due();
        }
    }

    /// Sends the batch if its oldest record waited [`BATCH_AGE`], and settles the confirms that came
    /// (looked for at most every [`BATCH_AGE`]).
    pub fn send_due(&mut self) {
        if self.since.is_some_and(|t| t.elapsed() >= BATCH_AGE) {
            self.send();
        } else if !self.inflight.is_empty() && self.looked.elapsed() >= BATCH_AGE {
            self.settle_ready();
        }
    }

    /// Hands the batch to the connection without waiting for the broker (on the worker child's
    /// direct connection, one write on this thread); its confirm is settled by a later look.
    fn send(&mut self) {
        self.since = None;
        if self.records == 0 {
            return;
        }
        self.settle_ready();
        self.batch.push(b']');
        // The next batch starts at about this one's size.
        let size = self.batch.len();
        let body = std::mem::replace(&mut self.batch, Vec::with_capacity(size));
        let n = std::mem::take(&mut self.records);
        if self.paused_until.is_some_and(|t| Instant::now() < t) {
            self.lost += n as u64;
            return;
        }
        self.paused_until = None;
        let id = crate::wire::new_id();
        let out = Outgoing {
            exchange: String::new(),
            routing_key: self.stream.clone(),
            body,
            properties: properties(&id, KIND_RECORD),
            mandatory: true,
        };
        let redeclare = std::mem::take(&mut self.redeclare);
        let r = with_session(|s| {
            if redeclare {
                s.forget_declarations();
            }
            s.declare(&self.settings, &[decl(&self.settings)])?;
            s.publish_deferred(Lot::History, &self.settings, std::slice::from_ref(&out))
        });
        match r {
            Ok(()) => {
                self.inflight.insert(id, n);
            }
            Err(e) => {
                self.failed(n, &e);
                self.paused_until = Some(Instant::now() + PAUSE_AFTER_FAILURE);
            }
        }
    }

    /// Settles the confirms already in, without waiting for the others.
    fn settle_ready(&mut self) {
        self.looked = Instant::now();
        if self.inflight.is_empty() {
            return;
        }
        let settled = with_session(|s| Ok((s.settle_ready(Lot::History, &self.settings), s.pending(Lot::History))));
        let Ok(((confirmed, failures), waiting)) = settled else { return };
        self.settled(confirmed, failures);
        if waiting == 0 && !self.inflight.is_empty() {
            // The session holds none of them any more (it was closed): no answer will come.
            let n = self.inflight.drain().map(|(_, n)| n).sum();
            self.failed(n, &closed_unanswered());
        }
    }

    /// Takes the message `sent` out of the ones in flight: how many records it held.
    fn take(&mut self, sent: &Sent) -> usize {
        sent.id.as_ref().and_then(|id| self.inflight.remove(id)).unwrap_or(0)
    }

    fn settled(&mut self, confirmed: Vec<Sent>, failures: Vec<Failed>) {
        let ok: usize = confirmed.iter().map(|s| self.take(s)).sum();
        let failed: Vec<(usize, BrokerError)> = failures.into_iter().map(|f| (self.take(&f.sent), f.error)).collect();
        for (n, e) in &failed {
            self.failed(*n, e);
        }
        if ok > 0 && failed.is_empty() {
            self.written();
        }
    }

    fn failed(&mut self, records: usize, e: &BrokerError) {
        self.lost += records as u64;
        self.redeclare |= e.kind() == ErrorKind::Unroutable;
        if !self.failing {
            self.failing = true;
            log::error(&format!(
                "execution history: a record could not be written to '{}' ({e}); records are lost until \
                 writing works again (tasks are not affected)",
                self.stream
            ));
        }
    }

    fn written(&mut self) {
        if self.failing {
            self.failing = false;
            log::info(&format!(
                "execution history: records are written to '{}' again ({} lost)",
                self.stream, self.lost
            ));
            self.lost = 0;
        }
    }

    /// Sends the batch and waits (at most `within`) until every record handed over is confirmed;
    /// returns how many were not.
    pub fn flush(&mut self, within: Duration) -> usize {
        self.send();
        if self.inflight.is_empty() {
            return 0;
        }
        let settings = Settings { confirm_timeout: within, ..self.settings.clone() };
        let left: usize = match with_session(|s| Ok(s.flush(Lot::History, &settings))) {
            // Every publish of the lot is settled: what did not fail was confirmed.
            Ok((_, failures)) => {
                let failed = failures.iter().map(|f| self.take(&f.sent)).sum();
                self.inflight.clear();
                failed
            }
            // No session (it was lost meanwhile): nothing handed over was confirmed.
            Err(_) => self.inflight.drain().map(|(_, n)| n).sum(),
        };
        if left > 0 {
            log::error(&format!(
                "execution history: {left} record(s) not confirmed by the broker within {:.1} s as the worker child leaves",
                within.as_secs_f64()
            ));
        }
        left
    }
}
