//! The stream on the broker: the messages written to it (records, firings, the token) and reading it to a
//! marker. Used by the leader (on its own connection) and by schedule management (`services::schedules`,
//! on the process's session).

use std::time::Duration;

use lapin::message::Delivery;
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Channel, Consumer};
use serde_json::json;

use crate::broker::current::with_session;
use crate::broker::names::Names;
use crate::broker::stream_read::{self, Offset};
use crate::broker::{BrokerError, Decl, ErrorKind, Outgoing};
use crate::config::Settings;
use crate::cron::error::Error;
use crate::cron::firing::Firing;
use crate::cron::state::{Def, Folder, Item, Record};
use crate::headers::{CRON_FIRING as FIRING_HEADER, CRON_TRIGGER as TRIGGER_HEADER};
use crate::wire::{properties, properties_with_headers, EventMsg};

/// Messages a stream reader takes ahead; acked in runs of half of it.
pub const READ_PREFETCH: u16 = 500;
/// A reader starts this far back, where the leader's last snapshot (written every minute) is.
pub const READ_BACK_SECS: u64 = 180;
/// The stream, as errors name it.
const WHAT: &str = "schedule stream";

pub use crate::wire::now_ms;

/// A record, to the stream (a marker in the format of every stream's, `stream_read::marker`).
pub fn record_message(names: &Names, record: &Record, at: i64) -> Outgoing {
    request_message(names, record, at, None)
}

/// A record with a request id (see [`Record::to_json_as`]), to the stream.
pub fn request_message(names: &Names, record: &Record, at: i64, rid: Option<&str>) -> Outgoing {
    if let Record::Marker { id } = record {
        return stream_read::marker(&names.cron_stream(), id);
    }
    Outgoing {
        exchange: String::new(),
        routing_key: names.cron_stream(),
        body: record.to_json_as(at, rid).into_bytes(),
        properties: properties(&crate::wire::new_id(), &format!("ebats.cron.{}", record.kind())),
        mandatory: true,
    }
}

/// A firing: the event, with its record in a header, to the firing exchange (the stream and the events).
pub fn firing_message(names: &Names, def: &Def, firing: &Firing) -> Outgoing {
    let mut e = EventMsg::new(&def.event, def.options.clone());
    e.id = firing.event_id.clone();
    e.created_at = firing.fired_at as f64 / 1000.0;
    Outgoing {
        exchange: names.cron_fire(),
        routing_key: def.event.clone(),
        body: e.to_json(),
        properties: properties_with_headers(&e.id, "ebats.event", &[(FIRING_HEADER, firing.to_json())]),
        mandatory: true,
    }
}

/// A triggered firing: the event, id the trigger's.
pub fn trigger_message(names: &Names, def: &Def, id: &str, fired_at: i64) -> Outgoing {
    let mut e = EventMsg::new(&def.event, def.options.clone());
    e.id = id.to_string();
    let header = json!({"schedule": def.name, "id": id, "fired_at": fired_at}).to_string();
    Outgoing {
        exchange: names.cron_fire(),
        routing_key: def.event.clone(),
        body: e.to_json(),
        properties: properties_with_headers(id, "ebats.event", &[(TRIGGER_HEADER, header)]),
        mandatory: true,
    }
}

/// The leadership token.
pub fn token_message(names: &Names) -> Outgoing {
    Outgoing {
        exchange: String::new(),
        routing_key: names.cron_leader(),
        body: b"{\"token\":true}".to_vec(),
        properties: properties(&crate::wire::new_id(), "ebats.cron.token"),
        mandatory: true,
    }
}

fn header_str<'a>(p: &'a BasicProperties, key: &str) -> Option<&'a [u8]> {
    match p.headers().as_ref()?.inner().get(key)? {
        AMQPValue::LongString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// The stream offset of a delivery.
pub fn offset_of(d: &Delivery) -> Option<u64> {
    offset_in(&d.properties)
}

/// The stream offset in a message's headers (any integer type the broker may use; none when negative).
pub fn offset_in(p: &BasicProperties) -> Option<u64> {
    stream_read::offset_in(p)
}

/// What a message of the stream is.
pub fn item_of(d: &Delivery) -> Result<Item, Error> {
    item_from(&d.properties, &d.data)
}

/// What a message of the stream is, from its properties and body: a firing or a trigger (told by a
/// header), else a record (the body).
pub fn item_from(p: &BasicProperties, body: &[u8]) -> Result<Item, Error> {
    if let Some(id) = stream_read::marker_id(p) {
        return Ok(Item::Record(Record::Marker { id: id.to_string() }, 0, None));
    }
    if let Some(h) = header_str(p, FIRING_HEADER) {
        return Firing::from_json(&String::from_utf8_lossy(h)).map(Item::Fired);
    }
    if let Some(h) = header_str(p, TRIGGER_HEADER) {
        let v: serde_json::Value = serde_json::from_slice(h).unwrap_or_default();
        return Ok(Item::Triggered {
            schedule: v["schedule"].as_str().unwrap_or_default().to_string(),
            id: v["id"].as_str().unwrap_or_default().to_string(),
            fired_at: v["fired_at"].as_i64().unwrap_or(0),
        });
    }
    Record::from_json_with_rid(body).map(|(r, at, rid)| Item::Record(r, at, rid))
}

/// Starts consuming the stream (manual acks, a prefetch: what streams need over AMQP).
pub async fn open_reader(ch: &Channel, names: &Names, from: Offset, tag: &str) -> Result<Consumer, BrokerError> {
    stream_read::open(ch, &names.cron_stream(), from, READ_PREFETCH, tag).await
}

/// Reads `consumer` into `folder` until the marker `marker` (or the record of that request id) has been
/// read; returns the last offset read. A message that cannot be read is logged and skipped; its offset
/// still counts (an unreadable first message of the stream does not make the fold need a snapshot).
pub async fn read_to_marker(
    ch: &Channel,
    consumer: &mut Consumer,
    folder: &mut Folder,
    marker: &str,
) -> Result<Option<u64>, BrokerError> {
    let mut last = None;
    stream_read::read_until(ch, consumer, READ_PREFETCH, WHAT, |d| fold_one(folder, &mut last, d, marker)).await?;
    Ok(last)
}

/// Folds the delivery `d` into `folder`, noting its offset in `last`; true when it is the marker or
/// the record of the request id `marker`.
fn fold_one(folder: &mut Folder, last: &mut Option<u64>, d: &Delivery, marker: &str) -> bool {
    let offset = offset_of(d).unwrap_or(0);
    *last = Some(offset);
    folder.seen(offset);
    let item = item_of(d);
    let done = match &item {
        Ok(Item::Record(Record::Marker { id }, _, _)) => id == marker,
        Ok(Item::Record(_, _, Some(rid))) => rid == marker,
        _ => false,
    };
    match item {
        Ok(item) => folder.push(offset, item),
        Err(e) => {
            crate::log::error(&format!("cron: skipping a message of the schedule stream at offset {offset}: {e}"))
        }
    }
    for why in folder.ignored.drain(..) {
        crate::log::error(&format!("cron: ignoring {why}"));
    }
    done
}

/// Logged when the stream's start is gone (retention) and no snapshot follows it.
pub const STREAM_START_GONE: &str =
    "cron: the schedule stream's start was deleted by retention and no snapshot follows it; folding what is left";

/// Appends records to the stream, confirmed, on the process's session.
pub fn append(settings: &Settings, records: &[Record]) -> Result<(), BrokerError> {
    let names = Names::new(&settings.prefix);
    let at = now_ms();
    let msgs: Vec<Outgoing> = records.iter().map(|r| record_message(&names, r, at)).collect();
    crate::dispatch::send(settings, &[Decl::Cron], &msgs)
}

/// The current state, on the process's session: appends a marker and folds the stream up to it (from a
/// few minutes back when a snapshot is there, else from the start).
pub fn read_state(settings: &Settings) -> Result<Folder, BrokerError> {
    let marker = crate::wire::new_id();
    append(settings, &[Record::Marker { id: marker.clone() }])?;
    read_through(settings, &marker)
}

/// Appends a change with a request id and folds the stream up to it: the fold at that point says whether
/// the change took effect ([`Folder::verdict`]). The stream's order decides between changes that race:
/// every reader folds them in the same order, so of two adds of one name exactly one is the first.
pub fn request(settings: &Settings, record: &Record) -> Result<Folder, BrokerError> {
    let rid = crate::wire::new_id();
    let names = Names::new(&settings.prefix);
    crate::dispatch::send(settings, &[Decl::Cron], &[request_message(&names, record, now_ms(), Some(&rid))])?;
    read_through(settings, &rid)
}

/// Folds the stream up to the marker or request id `id`, appended before.
fn read_through(settings: &Settings, id: &str) -> Result<Folder, BrokerError> {
    let names = Names::new(&settings.prefix);
    let back = (now_ms() / 1000) as u64 - READ_BACK_SECS;
    let t = settings.confirm_timeout.max(Duration::from_secs(10));
    for from in [Offset::Time(back), Offset::First] {
        let mut folder = Folder::new(now_ms());
        folder.await_request(id);
        let mut last = None;
        with_session(|s| {
            let stream = names.cron_stream();
            let read = stream_read::Read { stream: &stream, what: WHAT, from, prefetch: READ_PREFETCH, within: t };
            stream_read::read_from(s, settings, &read, |d| fold_one(&mut folder, &mut last, d, id))
        })?;
        if from == Offset::First && folder.finish_from_first() {
            crate::log::error(STREAM_START_GONE);
        }
        if folder.complete {
            return Ok(folder);
        }
    }
    // A read from the first offset is always whole (finish_from_first): not reached.
    Err(BrokerError::new(ErrorKind::Runtime, "the schedule stream could not be folded"))
}
