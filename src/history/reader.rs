//! Reading the history stream: a read of what is there now (to a marker the reader appends, so it
//! knows where "now" is), a bounded scan for other readers (the schedules' last firings), and
//! following new records until the stop token (or the caller) ends it.

use std::collections::VecDeque;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use lapin::{Channel, Consumer};

use super::query::Query;
use super::record::{Record, KIND_MARKER};
use crate::broker::current::with_session;
use crate::broker::names::Names;
use crate::broker::stream_read::{self, Offset};
use crate::broker::{park, stop, BrokerError, ErrorKind, Outgoing, Session};
use crate::config::Settings;
use crate::wire::properties;

/// Deliveries a reader takes ahead; acked in runs of half of it.
const PREFETCH: u16 = 500;
/// How long a follower waits for a record before it looks at the stop token.
const TICK: Duration = Duration::from_millis(100);

/// Where a reader starts.
#[derive(Debug, Clone, Copy)]
enum Start {
    First,
    Next,
    /// Epoch milliseconds (read from the chunk of that second on).
    Since(i64),
}

/// A reader from `since_ms` starts this much earlier (records before it are filtered out): the broker
/// stamps chunks with its own clock, and a reader started after its own marker would never see it.
const CLOCK_MARGIN_MS: i64 = 60_000;

fn start_of(since_ms: Option<i64>, otherwise: Start) -> Start {
    match since_ms {
        Some(ms) => Start::Since(ms.min(crate::wire::now_ms()) - CLOCK_MARGIN_MS),
        None => otherwise,
    }
}

async fn open(ch: &Channel, stream: &str, start: Start, tag: &str) -> Result<Consumer, BrokerError> {
    let offset = match start {
        Start::First => Offset::First,
        Start::Next => Offset::Next,
        Start::Since(ms) => Offset::Time((ms.max(0) / 1000) as u64),
    };
    stream_read::open(ch, stream, offset, PREFETCH, tag).await
}

fn tag() -> String {
    format!("ebats-history-{}-{}", std::process::id(), crate::wire::new_id())
}

/// The stream must exist: reading one that does not is an error saying how it comes to be.
fn check_exists(s: &mut Session, settings: &Settings, stream: &str) -> Result<(), BrokerError> {
    s.queue_counts(settings, stream).map(|_| ()).map_err(|e| match e.kind() {
        ErrorKind::NotFound => BrokerError::new(
            ErrorKind::NotFound,
            format!(
                "no execution history: the stream '{stream}' does not exist (workers make it when the setting \
                 ebats.history is on)"
            ),
        ),
        _ => e,
    })
}

/// Records (a writer's batch), or a marker's id, or something else (skipped).
enum Item {
    Records(Vec<Record>),
    Marker(String),
    Other,
}

fn item(d: &Delivery) -> Item {
    if d.properties.kind().as_ref().is_some_and(|k| k.as_str() == KIND_MARKER) {
        return Item::Marker(d.properties.message_id().as_ref().map(|id| id.to_string()).unwrap_or_default());
    }
    match Record::parse_many(&d.data) {
        Ok(r) => Item::Records(r),
        Err(_) => Item::Other,
    }
}

/// Every record from `since_ms` (or the start) up to now, in stream order, each given to `each`.
pub fn scan(settings: &Settings, since_ms: Option<i64>, mut each: impl FnMut(Record)) -> Result<(), BrokerError> {
    let stream = Names::new(&settings.prefix).history_stream();
    with_session(|s| {
        check_exists(s, settings, &stream)?;
        let marker = crate::wire::new_id();
        let out = Outgoing {
            exchange: String::new(),
            routing_key: stream.clone(),
            body: format!("{{\"marker\":\"{marker}\"}}").into_bytes(),
            properties: properties(&marker, KIND_MARKER),
            mandatory: true,
        };
        s.publish(settings, std::slice::from_ref(&out))?;
        let ch = s.channel(settings)?;
        let t = settings.confirm_timeout.max(Duration::from_secs(10));
        let r = (|| {
            let mut consumer =
                s.wait(t, "opening the history stream", open(&ch, &stream, start_of(since_ms, Start::First), &tag()))?;
            let mut unacked = 0;
            loop {
                let d = match s.wait(t, "reading the history stream", async { Ok(consumer.next().await) })? {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => return Err(BrokerError::lapin("reading the history stream failed", &e)),
                    None => return Err(BrokerError::new(ErrorKind::ConnectionLost, "the history reader was closed")),
                };
                unacked += 1;
                let item = item(&d);
                let done = matches!(&item, Item::Marker(id) if *id == marker);
                if unacked >= PREFETCH / 2 {
                    s.wait(t, "acking the history stream", async {
                        ch.basic_ack(d.delivery_tag, BasicAckOptions { multiple: true })
                            .await
                            .map_err(|e| BrokerError::lapin("ack failed", &e))
                    })?;
                    unacked = 0;
                }
                if let Item::Records(records) = item {
                    records.into_iter().filter(|r| since_ms.is_none_or(|s| r.end_ms >= s)).for_each(&mut each);
                }
                if done {
                    return Ok(());
                }
            }
        })();
        // Closing the channel ends the consumer; the stream keeps everything (reading takes nothing).
        let _ = s.block_on(ch.close(200, "read".into()));
        r
    })
}

/// The newest `q.limit()` records that match `q`, oldest first. For the dashboard and `History::read()`.
pub fn read(settings: &Settings, q: &Query) -> Result<Vec<Record>, BrokerError> {
    let limit = q.limit();
    let mut kept = VecDeque::new();
    scan(settings, q.since_ms, |r| {
        if q.matches(&r) {
            if kept.len() == limit {
                kept.pop_front();
            }
            kept.push_back(r);
        }
    })?;
    Ok(kept.into())
}

/// Gives each record that matches `q` to `each` as it is appended (from `q.since_ms` when set,
/// else from now on), until `each` returns false, `tick` (run between waits, at least every 100 ms)
/// returns true, or a stop is asked. The limit does not apply.
pub fn follow(
    settings: &Settings,
    q: &Query,
    mut tick: impl FnMut() -> bool,
    mut each: impl FnMut(Record) -> bool,
) -> Result<(), BrokerError> {
    let stream = Names::new(&settings.prefix).history_stream();
    let (rt, ch, mut consumer) = with_session(|s| {
        check_exists(s, settings, &stream)?;
        let ch = s.channel(settings)?;
        let t = settings.confirm_timeout.max(Duration::from_secs(10));
        let consumer =
            s.wait(t, "opening the history stream", open(&ch, &stream, start_of(q.since_ms, Start::Next), &tag()))?;
        Ok((s.handle(), ch, consumer))
    })?;
    let ack = |tag: u64| {
        rt.block_on(ch.basic_ack(tag, BasicAckOptions { multiple: true }))
            .map_err(|e| BrokerError::lapin("ack failed", &e))
    };
    let mut unacked: Option<(u64, u16)> = None;
    let r = loop {
        if stop::requested().is_some() || tick() {
            break Ok(());
        }
        let d = match park::wait(consumer.next(), TICK) {
            Err(_) => {
                // Nothing came: ack what was read while waiting.
                if let Some((tag, _)) = unacked.take() {
                    if let Err(e) = ack(tag) {
                        break Err(e);
                    }
                }
                continue;
            }
            Ok(Some(Ok(d))) => d,
            Ok(Some(Err(e))) => break Err(BrokerError::lapin("reading the history stream failed", &e)),
            Ok(None) => break Err(BrokerError::new(ErrorKind::ConnectionLost, "the history follower was closed")),
        };
        let n = unacked.map_or(0, |(_, n)| n) + 1;
        unacked = Some((d.delivery_tag, n));
        if n >= PREFETCH / 2 {
            unacked = None;
            if let Err(e) = ack(d.delivery_tag) {
                break Err(e);
            }
        }
        if let Item::Records(records) = item(&d) {
            if !records.into_iter().filter(|r| q.matches(r)).all(&mut each) {
                break Ok(());
            }
        }
    };
    let _ = rt.block_on(ch.close(200, "follow".into()));
    let _ctx = rt.enter();
    drop(consumer);
    r
}
