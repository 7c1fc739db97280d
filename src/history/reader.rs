//! Reading the history stream, through the one stream reader (`broker::stream_read`): the newest
//! records matching a query (read from the end backwards, so their cost does not grow with the
//! stream), every record from a time on up to now (the schedules' last firings), and following new
//! records (moving to the next node when its node goes away).

use std::collections::VecDeque;

use super::query::Query;
use super::record::Record;
use crate::broker::current::with_session;
use crate::broker::names::Names;
use crate::broker::stream_read::{self, Back, Delivery, Go, Offset, ReadBack};
use crate::broker::{BrokerError, ErrorKind, Session};
use crate::config::Settings;

/// Deliveries (writers' batches) a reader takes ahead; acked in runs of half of it. A batch holds up
/// to `writer::BATCH_BYTES`, so this bounds what a slow reader holds to some 16 MB.
pub const PREFETCH: u16 = 64;
const WHAT: &str = "history stream";

/// A read from a time on starts this much earlier (records before it are filtered out), and a
/// read back in time goes on until a window holds nothing newer than the time less this: the
/// broker stamps chunks with its own clock, the workers stamp records with theirs, and a writer's
/// batch waits a little before it is sent.
const CLOCK_MARGIN_MS: i64 = 60_000;

fn since_secs(since_ms: i64) -> u64 {
    ((since_ms.min(crate::wire::now_ms()) - CLOCK_MARGIN_MS).max(0) / 1000) as u64
}

/// The error for a stream that does not exist, saying how it comes to be; others as they are.
fn missing(stream: &str, e: BrokerError) -> BrokerError {
    match e.kind() {
        ErrorKind::NotFound => BrokerError::new(
            ErrorKind::NotFound,
            format!(
                "no execution history: the stream '{stream}' does not exist (workers make it when the setting \
                 ebats.history is on)"
            ),
        ),
        _ => e,
    }
}

/// The stream must exist: reading one that does not is an error saying how it comes to be.
fn check_exists(s: &mut Session, settings: &Settings, stream: &str) -> Result<(), BrokerError> {
    s.queue_counts(settings, stream).map(|_| ()).map_err(|e| missing(stream, e))
}

/// The records of a message: a writer's batch; anything else (an older reader's marker) has none.
fn records(d: &Delivery) -> Vec<Record> {
    Record::parse_many(&d.data).unwrap_or_default()
}

/// Every record from `since_ms` (or the start) up to now, in stream order, each given to `each`.
pub fn scan(settings: &Settings, since_ms: Option<i64>, mut each: impl FnMut(Record)) -> Result<(), BrokerError> {
    let stream = Names::new(&settings.prefix).history_stream();
    let from = since_ms.map_or(Offset::First, |ms| Offset::Time(since_secs(ms)));
    with_session(|s| {
        check_exists(s, settings, &stream)?;
        let read = stream_read::Read {
            stream: &stream,
            what: WHAT,
            from,
            prefetch: PREFETCH,
            within: stream_read::WHOLE_READ,
        };
        stream_read::read_to_now(s, settings, &read, |_, d| {
            records(d).into_iter().filter(|r| since_ms.is_none_or(|s| r.end_ms >= s)).for_each(&mut each)
        })
        .map(|_| ())
    })
}

/// The newest records of a read back, gathered window by window (newest window first).
struct Newest<'a> {
    q: &'a Query,
    limit: usize,
    /// The matches kept so far, oldest first.
    kept: VecDeque<Record>,
    /// The matches of the window being read (its newest `limit`), and its newest record's end.
    window: VecDeque<Record>,
    window_newest_ms: Option<i64>,
}

impl<'a> Newest<'a> {
    fn new(q: &'a Query) -> Newest<'a> {
        Newest { q, limit: q.limit(), kept: VecDeque::new(), window: VecDeque::new(), window_newest_ms: None }
    }

    fn message(&mut self, records: Vec<Record>) {
        for r in records {
            self.window_newest_ms = Some(self.window_newest_ms.map_or(r.end_ms, |m| m.max(r.end_ms)));
            if self.q.matches(&r) {
                if self.window.len() == self.limit {
                    self.window.pop_front();
                }
                self.window.push_back(r);
            }
        }
    }

    /// The window is read: its matches go before those of newer windows. True when no older window
    /// is needed: the limit is reached, or the window held nothing as recent as `since`.
    fn window_done(&mut self) -> bool {
        let room = self.limit - self.kept.len();
        let skip = self.window.len().saturating_sub(room);
        for r in self.window.drain(..).skip(skip).rev() {
            self.kept.push_front(r);
        }
        let older = match (self.q.since_ms, self.window_newest_ms.take()) {
            (Some(since), Some(newest)) => newest < since - CLOCK_MARGIN_MS,
            _ => false,
        };
        self.kept.len() >= self.limit || older
    }
}

/// The newest `q.limit()` records that match `q`, oldest first, and what was read to find them.
/// Read from the end of the stream backwards (`stream_read::read_back`): finding them costs the
/// messages between them and the end, not the stream's length.
pub fn read_counted(settings: &Settings, q: &Query) -> Result<(Vec<Record>, ReadBack), BrokerError> {
    let stream = Names::new(&settings.prefix).history_stream();
    let mut newest = Newest::new(q);
    let stats = with_session(|s| {
        check_exists(s, settings, &stream)?;
        stream_read::read_back(s, settings, &stream, WHAT, PREFETCH, |b| match b {
            Back::Message(_, d) => {
                newest.message(records(d));
                false
            }
            Back::WindowDone => newest.window_done(),
        })
    })?;
    if settings.debug {
        crate::log::debug(&format!(
            "history read: {} messages in {} windows (offsets {} to {})",
            stats.messages, stats.windows, stats.from, stats.to
        ));
    }
    Ok((newest.kept.into(), stats))
}

/// The newest `q.limit()` records that match `q`, oldest first. For the CLI and `History::read()`.
pub fn read(settings: &Settings, q: &Query) -> Result<Vec<Record>, BrokerError> {
    read_counted(settings, q).map(|(records, _)| records)
}

/// Where a follower of `q` starts: from `q.since_ms` when set, else from now on.
fn follow_start(q: &Query) -> Offset {
    q.since_ms.map_or(Offset::Next, |ms| Offset::Time(since_secs(ms)))
}

/// Gives each record that matches `q` to `each` as it is appended (from `q.since_ms` when set,
/// else from now on), until `each` returns false, `tick` (run between waits, at least every 100 ms)
/// returns true, or a stop is asked. The limit does not apply. On a connection of its own, which
/// moves to the next node of the list when its node goes away and reads on where it was.
pub fn follow(
    settings: &Settings,
    q: &Query,
    tick: impl FnMut() -> bool,
    mut each: impl FnMut(Record) -> bool,
) -> Result<(), BrokerError> {
    let stream = Names::new(&settings.prefix).history_stream();
    // A missing stream is found by the follower's consumer itself: one connection, the first node's.
    stream_read::follow(settings, &stream, WHAT, follow_start(q), PREFETCH, tick, |_, d| {
        match records(d).into_iter().filter(|r| q.matches(r)).all(&mut each) {
            true => Go::On,
            false => Go::Leave,
        }
    })
    .map_err(|e| missing(&stream, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::record::Run;
    use crate::wire::TaskMsg;

    fn record(task: &str, end_ms: i64) -> Record {
        let run = Run { millis: 1.0, message: "m", class: None, status: 0, end_ms };
        Record::of(&TaskMsg::new("t", task, serde_json::json!([]), 0), &run, 100, 1, "h")
    }

    fn tasks(n: &Newest) -> Vec<String> {
        n.kept.iter().map(|r| r.task.clone()).collect()
    }

    #[test]
    fn newest_across_windows() {
        let q = Query { limit: Some(3), ..Query::default() };
        let mut n = Newest::new(&q);
        n.message(vec![record("e", 5), record("f", 6)]);
        assert!(!n.window_done(), "two of three");
        n.message(vec![record("a", 1), record("b", 2)]);
        n.message(vec![record("c", 3), record("d", 4)]);
        assert!(n.window_done());
        assert_eq!(tasks(&n), ["d", "e", "f"], "the newest of the older window go first");
    }

    #[test]
    fn filters_and_since_end_the_read() {
        let q = Query { task: Some("x".into()), since_ms: Some(200_000), ..Query::default() };
        let mut n = Newest::new(&q);
        n.message(vec![record("x", 250_000), record("y", 260_000)]);
        assert!(!n.window_done());
        n.message(vec![record("x", 150_000)]);
        assert!(!n.window_done(), "within the clock margin: an older window may still hold one");
        n.message(vec![record("x", 100_000)]);
        assert!(n.window_done(), "nothing as recent as since less the margin");
        assert_eq!(tasks(&n), ["x"]);
        let mut empty = Newest::new(&q);
        assert!(!empty.window_done(), "a window of markers only says nothing");
        assert_eq!(follow_start(&Query::default()), Offset::Next);
    }
}
