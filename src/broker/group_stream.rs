//! The stream of groups `<prefix>.groups` on the broker (what it holds and why each follow-up is
//! published once: `src/group/mod.rs`): its messages (records, follow-ups), appending records, and
//! folding the stream to now on the session or, for the leader, on a channel of its own.

use lapin::message::Delivery;
use lapin::types::AMQPValue;
use lapin::{Channel, Connection, Consumer};

use super::connection;
use super::current::with_session;
use super::names::Names;
use super::stream_read::{self, Offset};
use super::{BrokerError, Decl, Outgoing};
use crate::config::Settings;
use crate::group::state::{snapshot_from_json, snapshot_json, Fold, Group, Outcome, Record, State};
use crate::group::{follow_up_id, look_back, FollowUp};
use crate::headers::GROUP_FOLLOW_UP;
use crate::log;
use crate::wire::{now_ms, properties, properties_with_headers, EventMsg};

/// Messages a reader takes ahead; acked in runs of half of it.
pub const READ_PREFETCH: u16 = 500;
/// The stream, as errors name it.
pub const WHAT: &str = "groups stream";

/// The kind of a snapshot's message.
const KIND_SNAPSHOT: &str = "ebats.group.snapshot";

/// A record, to the stream.
pub fn record_message(names: &Names, record: &Record) -> Outgoing {
    let kind = match record {
        Record::Open { .. } => "ebats.group.open",
        Record::End { .. } => "ebats.group.end",
        Record::Fired { .. } => "ebats.group.fired",
        Record::Done { .. } => "ebats.group.done",
        Record::Snapshot { .. } => KIND_SNAPSHOT,
        Record::Batch { .. } => "ebats.group.batch",
    };
    Outgoing {
        exchange: String::new(),
        routing_key: names.groups_stream(),
        body: record.to_json(now_ms()).into_bytes(),
        properties: properties(&crate::wire::new_id(), kind),
        mandatory: true,
    }
}

/// A snapshot of `state` read through the offset `through`, to the stream (written from the state
/// itself: nothing of it is copied).
pub fn snapshot_message(names: &Names, state: &State, through: u64) -> Outgoing {
    Outgoing {
        exchange: String::new(),
        routing_key: names.groups_stream(),
        body: snapshot_json(state, through, now_ms()).into_bytes(),
        properties: properties(&crate::wire::new_id(), KIND_SNAPSHOT),
        mandatory: true,
    }
}

/// A follow-up of the group `id`: the event (id derived from the group and the follow-up, the group's
/// params and outcome), its record in a header, to the follow-ups' exchange (the stream and the events).
pub fn follow_up_message(names: &Names, id: &str, g: &Group, f: &FollowUp) -> Outgoing {
    let mut e = EventMsg::new(&f.event, g.follow_up_params(id));
    e.id = follow_up_id(id, f);
    let record = serde_json::json!({"group": id, "key": f.key(), "at": now_ms()}).to_string();
    Outgoing {
        exchange: names.groups_done(),
        routing_key: f.event.clone(),
        body: e.to_json(),
        properties: properties_with_headers(&e.id, "ebats.event", &[(GROUP_FOLLOW_UP, record)]),
        mandatory: true,
    }
}

fn is_snapshot(d: &Delivery) -> bool {
    d.properties.kind().as_ref().is_some_and(|k| k.as_str() == KIND_SNAPSHOT)
}

/// Folds the message at `offset` into `fold`. A snapshot the fold would not take (it knows the whole
/// state already: every reader that follows the stream meets one a minute, megabytes each) is not read.
pub fn fold_message(fold: &mut Fold, offset: u64, d: &Delivery) {
    let record = match is_snapshot(d) {
        true if !fold.takes_snapshot_at(offset) => None,
        true => snapshot_from_json(&d.data)
            .map(|(through, state, at)| (Record::Snapshot { through, state }, at))
            .inspect_err(|e| log::error(&format!("skipping the message at offset {offset} of the groups stream: {e}")))
            .ok(),
        false => record_of(offset, d),
    };
    fold.push(offset, record);
}

/// The record a message holds, with its time; `None` for a marker, and for a message that is not a
/// record (logged).
fn record_of(offset: u64, d: &Delivery) -> Option<(Record, i64)> {
    if stream_read::marker_id(&d.properties).is_some() {
        return None;
    }
    let fired = d.properties.headers().as_ref().and_then(|h| match h.inner().get(GROUP_FOLLOW_UP) {
        Some(AMQPValue::LongString(s)) => Some(s.as_bytes().to_vec()),
        _ => None,
    });
    let read = match fired {
        Some(h) => fired_of(&h),
        None => Record::from_json(&d.data),
    };
    read.inspect_err(|e| log::error(&format!("skipping the message at offset {offset} of the groups stream: {e}"))).ok()
}

fn fired_of(header: &[u8]) -> Result<(Record, i64), String> {
    let v: serde_json::Value = serde_json::from_slice(header).map_err(|e| format!("a follow-up's header: {e}"))?;
    let text = |k: &str| v[k].as_str().map(str::to_string).ok_or_else(|| format!("a follow-up's header has no '{k}'"));
    let group = text("group")?;
    crate::rules::check_id(&group)?;
    Ok((Record::Fired { group, key: text("key")? }, v["at"].as_i64().unwrap_or(0)))
}

/// Appends `records`, confirmed, on the process's session.
pub fn append(settings: &Settings, records: &[Record]) -> Result<(), BrokerError> {
    let names = Names::new(&settings.prefix);
    let msgs: Vec<Outgoing> = records.iter().map(|r| record_message(&names, r)).collect();
    crate::dispatch::send(settings, &[Decl::Groups], &msgs)
}

/// Appends `records` as ONE record ([`Record::batch`]): all of them are in the stream or none is.
/// Handed to the connection without waiting: `dispatch::settle_before_acks` awaits its confirm (or
/// `dispatch::settle_ready_before_acks` takes it when it is in). A worker child appends so the ends
/// of a batch of acks before those acks (`worker::acks`). The message's id, or `None` when there was
/// nothing to append.
pub fn append_before_acks(settings: &Settings, records: Vec<Record>) -> Result<Option<String>, BrokerError> {
    let Some(record) = Record::batch(records) else { return Ok(None) };
    let names = Names::new(&settings.prefix);
    let message = record_message(&names, &record);
    let id = message.properties.message_id().as_ref().map(|id| id.to_string());
    crate::dispatch::send_before_acks(settings, &[Decl::Groups], std::slice::from_ref(&message))?;
    Ok(id)
}

/// The `end` record of the task `task` that ended for good with `outcome`, when it is a member of a
/// group (`None` else). A worker makes it for every final end (succeeded, failed for good, poison,
/// cancelled) and appends it, with the others of its batch of acks, before it acks the task, so a
/// task that ended is counted even when its worker dies before the ack (it runs again and its second
/// end counts for nothing); an end refused or unanswered leaves the task unacked.
pub fn end(task: &crate::wire::TaskMsg, outcome: Outcome) -> Option<Record> {
    let group = task.group.as_ref()?;
    Some(Record::End { group: group.clone(), member: task.id.clone(), outcome })
}

/// What a first pass over the stream found. A reader folds in two passes: the first, from a minute
/// and a half back to its marker ([`look_back`]), only looks for the newest snapshot (no other snapshot
/// is parsed); the second folds from just after what that snapshot covers to the same marker
/// ([`Newest::start`]). A first pass that starts at the stream's first offset (a young stream) also
/// folds what it reads until it meets a snapshot: with none in the stream, that fold is the state, and
/// no second pass is needed. One pass from a few minutes back holding every record before the first
/// snapshot until it came (at a thousand groups a second, hundreds of megabytes) is what this replaces.
#[derive(Default)]
pub struct Newest {
    started: bool,
    /// The stream folded from offset 0, while no snapshot was met.
    fold: Option<Fold>,
    /// The newest snapshot met (its body, as it was read).
    snapshot: Option<Vec<u8>>,
}

impl Newest {
    /// Whether the pass found what the fold starts from.
    pub fn found(&self) -> bool {
        self.fold.is_some() || self.snapshot.is_some()
    }

    /// Takes the message at `offset`.
    pub fn see(&mut self, offset: u64, d: &Delivery) {
        if !self.started {
            self.started = true;
            self.fold = (offset == 0).then(Fold::default);
        }
        if is_snapshot(d) {
            self.snapshot = Some(d.data.clone());
            self.fold = None;
        } else if let Some(fold) = &mut self.fold {
            fold_message(fold, offset, d);
        }
    }

    /// The fold to read on into, and from where, the pass having read to the marker at `marker`: the
    /// newest snapshot's state, from the offset after the last one it covers; else the whole stream
    /// folded, from the marker; with neither (or a snapshot that does not read), an empty fold, from
    /// the first offset.
    pub fn start(self, marker: u64) -> (Fold, Offset) {
        match (self.snapshot, self.fold) {
            (Some(body), _) => match snapshot_from_json(&body) {
                Ok((through, state, _)) => (Fold::from_snapshot(*state), Offset::At(through + 1)),
                Err(e) => {
                    log::error(&format!("reading the groups stream from its start: {e}"));
                    (Fold::default(), Offset::First)
                }
            },
            (None, Some(fold)) => (fold, Offset::At(marker)),
            (None, None) => (Fold::default(), Offset::First),
        }
    }
}

/// The stream folded to a marker, and the reader that read it, standing just after the marker on a
/// channel of its own (the leader follows the stream on it; others close it).
pub struct Folded {
    pub fold: Fold,
    pub ch: Channel,
    pub reader: Consumer,
    /// The marker's offset.
    pub last: u64,
}

/// Folds the stream up to the marker `marker` (appended by the caller) on channels of `conn`, in the
/// two passes of [`Newest`]: the first from each [`look_back`] in turn until it finds where the fold
/// starts (its channel closed after), the second from there, on the reader returned. The one read of
/// the stream's state, for a new leader and for everyone else ([`read_state`]).
pub async fn fold_to_marker(conn: &Connection, names: &Names, marker: &str, tag: &str) -> Result<Folded, BrokerError> {
    let (mut newest, mut marker_at) = (Newest::default(), 0);
    for back in look_back((now_ms() / 1000) as u64) {
        newest = Newest::default();
        let ch = connection::channel(conn).await?;
        // Every message, markers included: whether the pass starts at the stream's first offset matters.
        let mut finding = open_reader(&ch, names, Offset::Time(back), tag).await?;
        marker_at =
            stream_read::read_to_marker(&ch, &mut finding, READ_PREFETCH, WHAT, marker, |o, d| newest.see(o, d))
                .await?;
        let _ = ch.close(200, "looked for the newest snapshot".into()).await;
        if newest.found() {
            break;
        }
    }
    let (mut fold, from) = newest.start(marker_at);
    let ch = connection::channel(conn).await?;
    let mut reader = open_reader(&ch, names, from, tag).await?;
    let last = stream_read::read_to_marker(&ch, &mut reader, READ_PREFETCH, WHAT, marker, |o, d| {
        fold_message(&mut fold, o, d)
    })
    .await?;
    if from == Offset::First {
        fold.finish_from_first();
    }
    Ok(Folded { fold, ch, reader, last })
}

/// The stream folded to now, on the process's session: appends a marker and folds up to it
/// ([`fold_to_marker`]).
pub fn read_state(settings: &Settings) -> Result<Fold, BrokerError> {
    let names = Names::new(&settings.prefix);
    let id = crate::wire::new_id();
    crate::dispatch::send(settings, &[Decl::Groups], &[stream_read::marker(&names.groups_stream(), &id)])?;
    with_session(|s| {
        let conn = s.link(settings)?.connection.clone();
        let tag = stream_read::tag(WHAT);
        let folded =
            s.wait(stream_read::WHOLE_READ, &format!("reading the {WHAT}"), fold_to_marker(&conn, &names, &id, &tag))?;
        // Closing the channel ends its consumer; the stream keeps everything (reading takes nothing).
        let _ = s.block_on(folded.ch.close(200, "read".into()));
        Ok(folded.fold)
    })
}

/// Starts consuming the stream on `ch`.
async fn open_reader(ch: &Channel, names: &Names, from: Offset, tag: &str) -> Result<Consumer, BrokerError> {
    stream_read::open(ch, &names.groups_stream(), from, READ_PREFETCH, tag).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::{FollowUp, When};
    use lapin::types::AMQPValue;

    fn names() -> Names {
        Names::new("t")
    }

    /// A delivery of `m` at the stream offset `offset`.
    fn at(offset: u64, m: Outgoing) -> Delivery {
        let mut d = Delivery::mock(offset + 1, "".into(), m.routing_key.as_str().into(), false, m.body);
        let mut headers = m.properties.headers().clone().unwrap_or_default();
        headers.insert("x-stream-offset".into(), AMQPValue::LongLongInt(offset as i64));
        d.properties = m.properties.with_headers(headers);
        d
    }

    fn open(group: &str, members: &[&str]) -> Record {
        Record::Open {
            group: group.into(),
            members: members.iter().map(|m| m.to_string()).collect(),
            on: vec![FollowUp { when: When::Always, event: "fin".into() }],
            params: serde_json::Value::Null,
            origin: String::new(),
        }
    }

    fn end(group: &str, member: &str) -> Record {
        Record::End { group: group.into(), member: member.into(), outcome: Outcome::Succeeded }
    }

    /// The state of `records` folded.
    fn state(records: &[Record]) -> State {
        let mut f = Fold::default();
        records.iter().for_each(|r| f.apply(r.clone(), 1));
        f.state
    }

    /// A first pass keeps the newest snapshot, and the fold goes on from after what that one covers;
    /// with none, from offset 0 it folded everything, from later the fold is read from the stream's start,
    /// as with a snapshot that does not read.
    #[test]
    fn a_first_pass_finds_where_the_fold_starts() {
        let n = names();
        let older = state(&[open("g0", &["x"])]);
        let mut newest = state(&[open("g0", &["x"]), open("g1", &["a", "b"]), end("g1", "a")]);
        newest.groups.extend(state(&[open("gs", &["y"])]).groups);
        let mut unreadable = snapshot_message(&n, &older, 0);
        unreadable.body = b"{}".to_vec();
        // Offsets from `first`: open g0, open g1, end g1.a, the snapshots, end g1.b, the marker.
        let stream = |first: u64, snapshots: Vec<Outgoing>| {
            let mut ms =
                [open("g0", &["x"]), open("g1", &["a", "b"]), end("g1", "a")].map(|r| record_message(&n, &r)).to_vec();
            ms.extend(snapshots);
            ms.push(record_message(&n, &end("g1", "b")));
            ms.push(stream_read::marker(&n.groups_stream(), "m"));
            ms.into_iter().enumerate().map(|(k, m)| at(first + k as u64, m)).collect::<Vec<_>>()
        };
        let both = |first: u64| vec![snapshot_message(&n, &older, first), snapshot_message(&n, &newest, first + 2)];
        type Case = (u64, Vec<Outgoing>, bool, Offset, Vec<&'static str>);
        let table: Vec<Case> = vec![
            // From the stream's start with no snapshot: all of it folded; read on from the marker.
            (0, vec![], true, Offset::At(4), vec!["g0", "g1"]),
            // With snapshots, from the start as from later: the newest (it knows gs), read on after what it covers.
            (0, both(0), true, Offset::At(3), vec!["g0", "g1", "gs"]),
            (10, both(10), true, Offset::At(13), vec!["g0", "g1", "gs"]),
            (10, vec![], false, Offset::First, vec![]),
            (10, vec![snapshot_message(&n, &newest, 12), unreadable], true, Offset::First, vec![]),
        ];
        for (i, (first, snapshots, found, from, groups)) in table.into_iter().enumerate() {
            let ds = stream(first, snapshots);
            let mut pass = Newest::default();
            ds.iter().enumerate().for_each(|(k, d)| pass.see(first + k as u64, d));
            assert_eq!(pass.found(), found, "case {i}");
            let (fold, start) = pass.start(first + ds.len() as u64 - 1);
            assert_eq!(start, from, "case {i}");
            assert_eq!(fold.state.groups.keys().map(String::as_str).collect::<Vec<_>>(), groups, "case {i}");
            assert_eq!(fold.grounded(), from != Offset::First, "case {i}");
        }
    }
}
