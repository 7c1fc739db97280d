//! Reading a RabbitMQ stream over AMQP, for every reader of ours (the schedule stream, the processes
//! stream, the execution history, the dashboard): a consumer with a prefetch and manual acks (what
//! streams need), started at an offset, acking in runs of half the prefetch. Three ways to read:
//!
//! - [`read_to_now`]: from an offset up to now ([`read_from`] and [`read_to_marker`] beneath it, for a
//!   reader that appends its own marker or request). AMQP 0-9-1 on RabbitMQ 3.10 cannot tell where a
//!   stream ends (`queue.declare-ok` counts 0 messages for a stream; the offset `last` is the start of
//!   the last chunk, not its end), so a reader that must stop at "now" appends a marker of its own
//!   ([`marker`], one format for every stream; every reader skips markers) and reads until it meets it.
//! - [`read_back`]: the newest part of a stream, from its end backwards in windows of offsets that
//!   grow fourfold, until the caller has enough: the newest records cost the same whatever the
//!   stream's length. It also appends a marker (to know the end).
//! - [`follow`]: what is appended from an offset on, for as long as the caller wants, on a connection
//!   of its own that moves to the next node of the list when its node goes away, resuming after the
//!   last offset read. It writes nothing to the stream.

use std::time::Duration;

pub use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Consumer};

use super::consume::Backoff;
use super::consumer::{self, next};
use super::park::{self, Cut};
use super::{stop, BrokerError, ErrorKind, Outgoing, Session};
use crate::config::Settings;
use crate::log;

/// The `type` property of a marker, in every stream.
pub const KIND_MARKER: &str = "ebats.marker";
/// How long a reader waits for a delivery before it looks at the stop token and its caller.
const TICK: Duration = Duration::from_millis(100);
/// The first window of [`read_back`], in messages (each grows fourfold), and the largest.
const FIRST_WINDOW: u64 = 64;
/// A bounded read fails when no message comes for this long (what it waits for is in the stream).
pub const READ_IDLE: Duration = Duration::from_secs(30);
/// The longest a whole bounded read may take (a read of a long stream goes on while messages come).
pub const WHOLE_READ: Duration = Duration::from_secs(3600);
const LARGEST_WINDOW: u64 = 1 << 20;

/// Where a reader starts (`x-stream-offset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    First,
    Next,
    /// From the start of the stream's last chunk.
    Last,
    /// From this offset (from the stream's first when this one is gone).
    At(u64),
    /// From the chunk of this second (epoch seconds) on.
    Time(u64),
}

/// A marker with the id `id`, to append to `stream`.
pub fn marker(stream: &str, id: &str) -> Outgoing {
    Outgoing {
        exchange: String::new(),
        routing_key: stream.to_string(),
        body: Vec::new(),
        properties: crate::wire::properties(id, KIND_MARKER),
        mandatory: true,
    }
}

/// The id of the marker `p` belongs to; none when the message is not a marker.
pub fn marker_id(p: &BasicProperties) -> Option<&str> {
    if p.kind().as_ref()?.as_str() != KIND_MARKER {
        return None;
    }
    Some(p.message_id().as_ref().map_or("", |id| id.as_str()))
}

/// The stream offset of a message (any integer type the broker may use; none when negative).
pub fn offset_in(p: &BasicProperties) -> Option<u64> {
    match p.headers().as_ref()?.inner().get("x-stream-offset")? {
        AMQPValue::LongLongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongUInt(v) => Some(u64::from(*v)),
        AMQPValue::LongInt(v) => u64::try_from(*v).ok(),
        _ => None,
    }
}

/// Starts consuming `stream` from `offset`, `prefetch` deliveries ahead.
pub async fn open(
    ch: &Channel,
    stream: &str,
    offset: Offset,
    prefetch: u16,
    tag: &str,
) -> Result<Consumer, BrokerError> {
    let offset = match offset {
        Offset::First => AMQPValue::LongString(LongString::from("first")),
        Offset::Next => AMQPValue::LongString(LongString::from("next")),
        Offset::Last => AMQPValue::LongString(LongString::from("last")),
        Offset::At(n) => AMQPValue::LongLongInt(i64::try_from(n).unwrap_or(i64::MAX)),
        Offset::Time(secs) => AMQPValue::Timestamp(secs),
    };
    let mut args = FieldTable::default();
    args.insert("x-stream-offset".into(), offset);
    consumer::open(ch, stream, prefetch, tag, args, &format!("cannot read the stream '{stream}'")).await
}

/// A consumer tag naming the reader and this process.
pub fn tag(what: &str) -> String {
    format!("ebats-{what}-{}-{}", std::process::id(), crate::wire::new_id())
}

/// Acks runs of deliveries: every half prefetch, and what is left when asked.
struct Acks {
    every: u16,
    unacked: u16,
    last: u64,
}

impl Acks {
    fn new(prefetch: u16) -> Acks {
        Acks { every: (prefetch / 2).max(1), unacked: 0, last: 0 }
    }

    /// Counts `tag`; the tag to ack (with `multiple`) when a run is full.
    fn count(&mut self, tag: u64) -> Option<u64> {
        self.unacked += 1;
        self.last = tag;
        (self.unacked >= self.every).then(|| self.flush()).flatten()
    }

    /// The tag to ack for everything counted, if anything is.
    fn flush(&mut self) -> Option<u64> {
        (std::mem::take(&mut self.unacked) > 0).then_some(self.last)
    }
}

async fn ack(ch: &Channel, tag: Option<u64>) -> Result<(), BrokerError> {
    match tag {
        Some(t) => consumer::ack(ch, t, true).await,
        None => Ok(()),
    }
}

/// Gives each delivery of `consumer` to `each` until `each` says it was the last one wanted (true);
/// deliveries are acked in runs of half of `prefetch`, and the last one at once. `what` names the
/// stream in errors; no message for [`READ_IDLE`] is one (`Timeout`). The one read loop of the
/// bounded reads (run it in a runtime's context, for its timer).
pub async fn read_until(
    ch: &Channel,
    consumer: &mut Consumer,
    prefetch: u16,
    what: &str,
    mut each: impl FnMut(&Delivery) -> bool,
) -> Result<(), BrokerError> {
    let mut acks = Acks::new(prefetch);
    loop {
        let d = match tokio::time::timeout(READ_IDLE, next(consumer, what)).await {
            Ok(d) => d?,
            Err(_) => return Err(BrokerError::timeout(READ_IDLE, &format!("waiting for a message of the {what}"))),
        };
        let done = each(&d);
        let run = acks.count(d.delivery_tag);
        ack(ch, if done { acks.flush().or(run) } else { run }).await?;
        if done {
            return Ok(());
        }
    }
}

/// Reads `consumer` until the marker `id`, giving every message to `each` with its offset (markers
/// too, this one last: a reader that counts from the stream's first offset needs to see them; use
/// [`marker_id`] to tell them). Returns the marker's offset.
pub async fn read_to_marker(
    ch: &Channel,
    consumer: &mut Consumer,
    prefetch: u16,
    what: &str,
    id: &str,
    mut each: impl FnMut(u64, &Delivery),
) -> Result<u64, BrokerError> {
    let mut at = 0;
    read_until(ch, consumer, prefetch, what, |d| {
        at = offset_in(&d.properties).unwrap_or(0);
        each(at, d);
        marker_id(&d.properties) == Some(id)
    })
    .await?;
    Ok(at)
}

/// A bounded read of a stream on the session: which stream (`what` names it in errors and in the
/// consumer's tag), from where, how many deliveries ahead, and how long opening and reading may take.
pub struct Read<'a> {
    pub stream: &'a str,
    pub what: &'a str,
    pub from: Offset,
    pub prefetch: u16,
    pub within: Duration,
}

/// Reads `r.stream` from `r.from` on the session `s`, on a channel of its own (closed after), giving
/// each delivery to `each` until it says it was the last one wanted (true). The one bounded read from
/// an offset on the session (the schedule stream's fold, [`read_to_now`]).
pub fn read_from(
    s: &mut Session,
    settings: &Settings,
    r: &Read,
    each: impl FnMut(&Delivery) -> bool,
) -> Result<(), BrokerError> {
    let ch = s.channel(settings)?;
    let read = s.wait(r.within, &format!("reading the {}", r.what), async {
        let mut consumer = open(&ch, r.stream, r.from, r.prefetch, &tag(r.what)).await?;
        read_until(&ch, &mut consumer, r.prefetch, r.what, each).await
    });
    // Closing the channel ends its consumer; the stream keeps everything (reading takes nothing).
    let _ = s.block_on(ch.close(200, "read".into()));
    read
}

/// Reads `r.stream` from `r.from` up to now on the session `s`: appends a marker and gives every
/// message before it to `each` with its offset (markers skipped). Returns the marker's offset.
pub fn read_to_now(
    s: &mut Session,
    settings: &Settings,
    r: &Read,
    each: impl FnMut(u64, &Delivery),
) -> Result<u64, BrokerError> {
    let id = crate::wire::new_id();
    s.publish(settings, &[marker(r.stream, &id)])?;
    read_through_marker(s, settings, r, &id, each)
}

/// Reads `r.stream` from `r.from` on the session `s` up to the marker `id` (appended by the caller,
/// with what else it writes), giving every message before it to `each` with its offset (markers
/// skipped). Returns the marker's offset.
pub fn read_through_marker(
    s: &mut Session,
    settings: &Settings,
    r: &Read,
    id: &str,
    mut each: impl FnMut(u64, &Delivery),
) -> Result<u64, BrokerError> {
    let mut at = 0;
    read_from(s, settings, r, |d| {
        at = offset_in(&d.properties).unwrap_or(0);
        match marker_id(&d.properties) {
            Some(m) => m == id,
            None => {
                each(at, d);
                false
            }
        }
    })?;
    Ok(at)
}

/// What [`read_back`] gives its caller.
pub enum Back<'a> {
    /// A message of the current window (in stream order within the window; markers skipped).
    Message(u64, &'a Delivery),
    /// The window is done: the caller answers true when it has enough (no older window is read).
    WindowDone,
}

/// What a [`read_back`] read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadBack {
    /// Messages received, markers included.
    pub messages: u64,
    pub windows: u32,
    /// The oldest offset read.
    pub from: u64,
    /// The marker's offset: where the stream ended when the read began.
    pub to: u64,
}

/// The window before the offset `end`, `size` messages long at most: `[start, end)`.
fn window(end: u64, size: u64) -> (u64, u64) {
    (end.saturating_sub(size), end)
}

/// Reads the stream `stream` from its end backwards, on the session `s`: first from the start of
/// its last chunk to a marker appended now (the newest window), then windows of offsets before it,
/// each four times the one before, oldest message first within a window, until the caller answers
/// [`Back::WindowDone`] with true or the stream's start is reached.
///
/// Why windows by offset rather than by time: a stream's offsets are nearly dense (one per message, and
/// one per segment for a chunk of the broker's own that is never delivered) and the same on every node,
/// so a window of `n` offsets costs about `n` messages whatever the rate they were written at; a window
/// of time costs whatever was written in it (a burst of millions in a minute). Because of those gaps, a
/// window whose first message comes after its start is not taken for the stream's start: the next
/// window ends at that message, and only a window with nothing in its range ends the read.
/// Growing fourfold, a read that needs the newest `k` messages reads at most about `5k` (plus the
/// last chunk), and needs few round trips when `k` is large.
pub fn read_back(
    s: &mut Session,
    settings: &Settings,
    stream: &str,
    what: &str,
    prefetch: u16,
    mut each: impl FnMut(Back) -> bool,
) -> Result<ReadBack, BrokerError> {
    let t = settings.confirm_timeout.max(Duration::from_secs(10));
    let r = Reading { settings, stream, what, prefetch, t };
    let mut stats = ReadBack::default();
    let (mut end, to) = r.newest(s, &mut stats, &mut each)?;
    stats.windows = 1;
    stats.from = end;
    stats.to = to;
    let mut size = FIRST_WINDOW;
    let mut enough = each(Back::WindowDone);
    while !enough && end > 0 {
        let (start, stop_at) = window(end, size);
        let oldest = r.window(s, start, stop_at, &mut stats, &mut each)?;
        stats.windows += 1;
        enough = each(Back::WindowDone);
        // The next window ends where this one's oldest message was: a window that started later than
        // asked (retention took its start, or the broker began after `start`) is read on from there,
        // never taken for the stream's start. Past the start, a window reads nothing in its range.
        match oldest {
            Some(o) => stats.from = o,
            None => break,
        }
        end = stats.from;
        size = (size * 4).min(LARGEST_WINDOW);
    }
    Ok(stats)
}

/// One [`read_back`]: what it reads, and how.
struct Reading<'a> {
    settings: &'a Settings,
    stream: &'a str,
    what: &'a str,
    prefetch: u16,
    /// How long opening a consumer may take.
    t: Duration,
}

impl Reading<'_> {
    /// The newest window, from the start of the last chunk to a marker appended now (attached before the
    /// marker is appended, so the marker comes after where the reader starts): its first and marker's offsets.
    fn newest(
        &self,
        s: &mut Session,
        stats: &mut ReadBack,
        each: &mut impl FnMut(Back) -> bool,
    ) -> Result<(u64, u64), BrokerError> {
        let (what, prefetch) = (self.what, self.prefetch);
        let id = crate::wire::new_id();
        let ch = s.channel(self.settings)?;
        let newest = (|| {
            let consumer_tag = tag(what);
            let opening = open(&ch, self.stream, Offset::Last, prefetch, &consumer_tag);
            let mut consumer = s.wait(self.t, &format!("opening the {what}"), opening)?;
            s.publish(self.settings, &[marker(self.stream, &id)])?;
            let mut first = None;
            let to = s.wait(WHOLE_READ, &format!("reading the {what}"), async {
                read_to_marker(&ch, &mut consumer, prefetch, what, &id, |o, d| {
                    first.get_or_insert(o);
                    stats.messages += 1;
                    if marker_id(&d.properties).is_none() {
                        each(Back::Message(o, d));
                    }
                })
                .await
            })?;
            Ok((first.unwrap_or(to), to))
        })();
        // Closing the channel ends its consumer; the stream keeps everything (reading takes nothing).
        let _ = s.block_on(ch.close(200, "read".into()));
        newest
    }

    /// The window of offsets `start..stop_at`, oldest first: the oldest offset read (`None`: nothing was).
    fn window(
        &self,
        s: &mut Session,
        start: u64,
        stop_at: u64,
        stats: &mut ReadBack,
        each: &mut impl FnMut(Back) -> bool,
    ) -> Result<Option<u64>, BrokerError> {
        let (what, prefetch) = (self.what, self.prefetch);
        let ch = s.channel(self.settings)?;
        let read = (|| {
            let consumer_tag = tag(what);
            let opening = open(&ch, self.stream, Offset::At(start), prefetch, &consumer_tag);
            let mut consumer = s.wait(self.t, &format!("opening the {what}"), opening)?;
            let mut oldest = None;
            s.wait(WHOLE_READ, &format!("reading the {what}"), async {
                read_until(&ch, &mut consumer, prefetch, what, |d| {
                    let o = offset_in(&d.properties).unwrap_or(u64::MAX);
                    if o < start {
                        return false; // the start of the chunk `start` is in
                    }
                    if o >= stop_at {
                        return true; // the window is gone (retention): only newer messages are left
                    }
                    oldest.get_or_insert(o);
                    stats.messages += 1;
                    if marker_id(&d.properties).is_none() {
                        each(Back::Message(o, d));
                    }
                    o + 1 == stop_at
                })
                .await
            })?;
            Ok(oldest)
        })();
        let _ = s.block_on(ch.close(200, "read".into()));
        read
    }
}

/// How [`follow`] goes on after a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Go {
    On,
    Leave,
}

/// Where a follower opens again after a cut: after the last message it read, else where it
/// started (a start of `Next` becomes the second it first attached in: a record written during the
/// cut is not lost; one of that second may be given although written just before the follower).
fn resume_at(last: Option<u64>, start: Offset, attached_secs: Option<u64>) -> Offset {
    match (last, start, attached_secs) {
        (Some(o), _, _) => Offset::At(o + 1),
        (None, Offset::Next, Some(secs)) => Offset::Time(secs),
        (None, start, _) => start,
    }
}

/// A follower's channel, attached to the stream.
struct Attached<'a> {
    s: &'a Session,
    ch: &'a Channel,
    what: &'a str,
    prefetch: u16,
    /// How long an ack may take.
    t: Duration,
}

impl Attached<'_> {
    /// Gives each new message of `consumer` (markers and offsets up to `last` skipped) to `each`, keeping
    /// `last` the highest offset read, acking in runs (and what was read whenever nothing comes), until
    /// `leave()` or `each` says to leave (`None`, the channel closed) or the channel breaks (the error).
    fn read_on(
        &self,
        consumer: &mut Consumer,
        last: &mut Option<u64>,
        leave: &mut dyn FnMut() -> bool,
        each: &mut impl FnMut(u64, &Delivery) -> Go,
    ) -> Option<BrokerError> {
        let (ch, t) = (self.ch, self.t);
        let mut acks = Acks::new(self.prefetch);
        loop {
            if leave() {
                self.close(acks.flush());
                return None;
            }
            let d = match park::wait(next(consumer, self.what), TICK) {
                Err(Cut::TimedOut | Cut::Stopped) => {
                    // Nothing came: ack what was read while waiting.
                    match park::wait(ack(ch, acks.flush()), t) {
                        Ok(Ok(())) => continue,
                        Ok(Err(e)) => return Some(e),
                        Err(_) => return Some(BrokerError::timeout(t, "acking")),
                    }
                }
                Ok(Ok(d)) => d,
                Ok(Err(e)) => return Some(e),
            };
            let o = offset_in(&d.properties);
            let fresh = match (o, *last) {
                (Some(o), Some(l)) => o > l,
                _ => true,
            };
            if let Some(o) = o {
                *last = Some(last.map_or(o, |l| l.max(o)));
            }
            let go = if fresh && marker_id(&d.properties).is_none() { each(o.unwrap_or(0), &d) } else { Go::On };
            let run = acks.count(d.delivery_tag);
            if go == Go::Leave {
                self.close(acks.flush().or(run));
                return None;
            }
            if let Ok(Err(e)) = park::wait(ack(ch, run), t) {
                return Some(e);
            }
        }
    }

    /// Acks up to `tag` and closes the channel, on leaving.
    fn close(&self, tag: Option<u64>) {
        let _ = park::wait(ack(self.ch, tag), self.t);
        let _ = self.s.block_on(self.ch.close(200, "follow".into()));
    }
}

/// Gives each message appended to `stream` from `start` on (markers skipped) to `each` with its
/// offset, until `each` says [`Go::Leave`], `tick` (run at least every 100 ms) returns true, or a
/// stop is asked. Runs on the calling thread, on a connection of its own (made through
/// `broker::connection::connect`, so the node list and its order apply): when the connection or
/// the channel breaks, or the broker is away, it connects again (to the next node first), after
/// `consume::Backoff`'s wait, and reads on after the last offset it read. It gives up on what a
/// person must change (access refused) and when the stream is gone (`NotFound`): the error.
// A little over 60 lines: the connect, attach, read, give-up-or-reconnect steps read best in one loop (the
// reading itself is `Attached::read_on`).
pub fn follow(
    settings: &Settings,
    stream: &str,
    what: &str,
    start: Offset,
    prefetch: u16,
    mut tick: impl FnMut() -> bool,
    mut each: impl FnMut(u64, &Delivery) -> Go,
) -> Result<(), BrokerError> {
    let mut s = Session::new()?;
    let rt = s.handle();
    let _ctx = rt.enter();
    let t = settings.confirm_timeout.max(Duration::from_secs(10));
    let mut backoff = Backoff::default();
    let mut last: Option<u64> = None;
    let mut attached_secs = None;
    let leave = |tick: &mut dyn FnMut() -> bool| stop::requested().is_some() || tick();
    let r = 'connect: loop {
        if leave(&mut tick) {
            break Ok(());
        }
        let from = resume_at(last, start, attached_secs);
        let opened = s.channel(settings).and_then(|ch| {
            let c = s.wait(t, &format!("opening the {what}"), open(&ch, stream, from, prefetch, &tag(what)))?;
            Ok((ch, c))
        });
        let (ch, mut consumer) = match opened {
            Ok(o) => o,
            Err(e) if e.kind() == ErrorKind::NotFound || !e.is_recoverable() => break Err(e),
            Err(e) => {
                s.disconnect();
                let d = backoff.after(&e);
                log::error(&format!("cannot follow the {what}: {e}; trying again in {} s", d.as_secs_f64()));
                if stop::pause(d, TICK, &mut tick) {
                    break Ok(());
                }
                continue;
            }
        };
        attached_secs.get_or_insert_with(|| (crate::wire::now_ms() / 1000).max(0) as u64);
        backoff.reset();
        let on = Attached { s: &s, ch: &ch, what, prefetch, t };
        let Some(cut) = on.read_on(&mut consumer, &mut last, &mut || leave(&mut tick), &mut each) else {
            break 'connect Ok(());
        };
        // The stream gone, or a refusal a person must see to: given up. A cut: read on.
        if cut.kind() == ErrorKind::NotFound || (!cut.is_recoverable() && !cut.kind().breaks_connection()) {
            break Err(cut);
        }
        drop(consumer);
        s.disconnect();
        let d = backoff.after(&cut);
        log::error(&format!(
            "the {what} follower lost its connection: {cut}; reading again after offset {} in {} s",
            last.map_or("(none yet)".to_string(), |o| o.to_string()),
            d.as_secs_f64()
        ));
        if stop::pause(d, TICK, &mut tick) {
            break Ok(());
        }
    };
    s.close();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_resumes() {
        assert_eq!(window(1000, 64), (936, 1000));
        assert_eq!(window(10, 64), (0, 10));
        assert_eq!(resume_at(Some(41), Offset::Next, Some(5)), Offset::At(42));
        assert_eq!(resume_at(None, Offset::Next, Some(5)), Offset::Time(5));
        assert_eq!(resume_at(None, Offset::Next, None), Offset::Next);
        assert_eq!(resume_at(None, Offset::Time(9), Some(5)), Offset::Time(9));
        assert_eq!(resume_at(Some(0), Offset::First, None), Offset::At(1));
    }

    #[test]
    fn acks_in_runs() {
        let mut a = Acks::new(4);
        assert_eq!(a.count(1), None);
        assert_eq!(a.count(2), Some(2));
        assert_eq!(a.flush(), None, "nothing left after a run");
        assert_eq!(a.count(3), None);
        assert_eq!(a.flush(), Some(3));
        let mut one = Acks::new(1);
        assert_eq!(one.count(7), Some(7), "a prefetch of 1 acks each");
    }

    #[test]
    fn markers_are_told_by_their_type() {
        let m = marker("s", "abc");
        assert_eq!(marker_id(&m.properties), Some("abc"));
        assert_eq!(marker_id(&crate::wire::properties("abc", "ebats.history")), None);
        let mut h = FieldTable::default();
        h.insert("x-stream-offset".into(), AMQPValue::LongLongInt(12));
        assert_eq!(offset_in(&BasicProperties::default().with_headers(h)), Some(12));
        assert_eq!(offset_in(&BasicProperties::default()), None);
    }
}
