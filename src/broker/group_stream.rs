//! The stream of groups `<prefix>.groups` on the broker (what it holds and why each follow-up is
//! published once: `src/group/mod.rs`): its messages (records, follow-ups), appending records, and
//! folding the stream to now on the session or, for the leader, on a channel of its own.

use lapin::message::Delivery;
use lapin::types::AMQPValue;
use lapin::{Channel, Consumer};

use super::current::with_session;
use super::names::Names;
use super::stream_read::{self, Offset};
use super::{BrokerError, Decl, Outgoing};
use crate::config::Settings;
use crate::group::state::{Fold, Group, Outcome, Record};
use crate::group::{follow_up_id, FollowUp, READ_BACK_SECS};
use crate::headers::GROUP_FOLLOW_UP;
use crate::log;
use crate::wire::{now_ms, properties, properties_with_headers, EventMsg};

/// Messages a reader takes ahead; acked in runs of half of it.
pub const READ_PREFETCH: u16 = 500;
/// The stream, as errors name it.
pub const WHAT: &str = "groups stream";

/// A record, to the stream.
pub fn record_message(names: &Names, record: &Record) -> Outgoing {
    let kind = match record {
        Record::Open { .. } => "ebats.group.open",
        Record::End { .. } => "ebats.group.end",
        Record::Fired { .. } => "ebats.group.fired",
        Record::Done { .. } => "ebats.group.done",
        Record::Snapshot { .. } => "ebats.group.snapshot",
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

/// The record a message holds, with its time; `None` for a marker, and for a message that is not a
/// record (logged).
pub fn record_of(offset: u64, d: &Delivery) -> Option<(Record, i64)> {
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
/// Handed to the connection without waiting: `dispatch::settle_before_acks` awaits its confirm. A
/// worker child appends so the ends of a batch of acks before those acks (`worker::child`). False
/// when there was nothing to append.
pub fn append_before_acks(settings: &Settings, records: Vec<Record>) -> Result<bool, BrokerError> {
    let Some(record) = Record::batch(records) else { return Ok(false) };
    let names = Names::new(&settings.prefix);
    crate::dispatch::send_before_acks(settings, &[Decl::Groups], &[record_message(&names, &record)])?;
    Ok(true)
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

/// The stream folded to now, on the process's session: appends a marker, folds from a few minutes back
/// when a snapshot is there, else from the start.
pub fn read_state(settings: &Settings) -> Result<Fold, BrokerError> {
    let names = Names::new(&settings.prefix);
    let stream = names.groups_stream();
    let id = crate::wire::new_id();
    crate::dispatch::send(settings, &[Decl::Groups], &[stream_read::marker(&stream, &id)])?;
    let back = (now_ms() / 1000) as u64 - READ_BACK_SECS;
    let within = stream_read::WHOLE_READ;
    for from in [Offset::Time(back), Offset::First] {
        let mut fold = Fold::default();
        let read = stream_read::Read { stream: &stream, what: WHAT, from, prefetch: READ_PREFETCH, within };
        with_session(|s| {
            stream_read::read_through_marker(s, settings, &read, &id, |o, d| fold.push(o, record_of(o, d)))
        })?;
        if from == Offset::First {
            fold.finish_from_first();
        }
        if fold.grounded() {
            return Ok(fold);
        }
    }
    unreachable!("a fold from the first offset is grounded")
}

/// Starts consuming the stream on `ch` (for the leader).
pub async fn open_reader(ch: &Channel, names: &Names, from: Offset, tag: &str) -> Result<Consumer, BrokerError> {
    stream_read::open(ch, &names.groups_stream(), from, READ_PREFETCH, tag).await
}

/// Reads `consumer` into `fold` up to the marker `marker`; returns its offset.
pub async fn read_to_marker(
    ch: &Channel,
    consumer: &mut Consumer,
    fold: &mut Fold,
    marker: &str,
) -> Result<u64, BrokerError> {
    stream_read::read_to_marker(ch, consumer, READ_PREFETCH, WHAT, marker, |o, d| fold.push(o, record_of(o, d))).await
}
