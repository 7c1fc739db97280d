//! Where events and tasks go on the broker, and sending them there confirmed.

use std::cell::Cell;

use crate::broker::confirm::{Failed, Lot, Sent};
use crate::broker::current::with_session;
use crate::broker::names::{delay_routing_key, Names};
use crate::broker::{BrokerError, Decl, Outgoing};
use crate::config::Settings;
use crate::headers;
use crate::wire::{
    now, properties, properties_with_headers, round_ms, EventMsg, TaskMsg, KIND_EVENT, KIND_FAILED_TASK, KIND_TASK,
    KIND_UNREADABLE,
};

/// Adds the declarations `more` to `decls`, each once.
pub fn merge_decls(decls: &mut Vec<Decl>, more: Vec<Decl>) {
    for d in more {
        if !decls.contains(&d) {
            decls.push(d);
        }
    }
}

pub fn event(names: &Names, e: &EventMsg) -> (Vec<Decl>, Outgoing) {
    let out = Outgoing {
        exchange: names.event_exchange(),
        routing_key: e.event.clone(),
        body: e.to_json(),
        properties: properties(&e.id, KIND_EVENT),
        mandatory: true,
    };
    (vec![Decl::Events, Decl::EventRoute(e.event.clone())], out)
}

/// An event in the original library's format (`ebats.write_format = original`): the same exchange
/// and routing key, the original's body and properties, for its Schedulers still consuming.
pub fn legacy_event(names: &Names, e: &EventMsg) -> (Vec<Decl>, Outgoing) {
    let out = Outgoing {
        exchange: names.event_exchange(),
        routing_key: e.event.clone(),
        body: crate::legacy::body::encode_event(&e.params, e.created_at as i64),
        properties: legacy_properties(&e.id, KIND_EVENT),
        mandatory: true,
    };
    (vec![Decl::Events, Decl::EventRoute(e.event.clone())], out)
}

/// A task in the original library's format (`ebats.write_format = original`), routed as the
/// original routed it: to `<prefix>.task.ready` with the topic as key, or, delayed, to
/// `<prefix>.task.delay` with the topic as key and the delay as the message's expiration (its
/// `<prefix>.<topic>D` queue dead-letters it into the ready exchange when due). Nothing of ebats's
/// own task topology is declared (a ready queue of ebats bound beside the original's would get
/// every task twice): a topic that no queue takes comes back unroutable, an error.
pub fn legacy_task(names: &Names, t: &TaskMsg, delay_secs: u64) -> (Vec<Decl>, Outgoing) {
    let lt = crate::legacy::body::LegacyTask {
        etime: t.created_at as i64,
        id: t.id.clone(),
        name: t.name.clone(),
        topic: t.topic.clone(),
        params: t.params.clone(),
        delay_ms: delay_secs * 1000,
    };
    let mut properties = legacy_properties(&t.id, KIND_TASK);
    let (exchange, decls) = if delay_secs > 0 {
        properties = properties.with_expiration((delay_secs * 1000).to_string().into());
        // Declared by whoever made it: the original's direct exchange, or ebats's topic one
        // (which routes the topic key to the original's delay queue once converted).
        (names.delay_exchange(), Vec::new())
    } else {
        (names.task_exchange(), vec![Decl::Exchange { name: names.task_exchange(), kind: "direct".into() }])
    };
    let out = Outgoing {
        exchange,
        routing_key: t.topic.clone(),
        body: crate::legacy::body::encode_task(&lt),
        properties,
        mandatory: true,
    };
    (decls, out)
}

/// The original's properties (persistent, `text/plain`), with the id and kind ebats names a
/// message by (the original's consumers look at neither).
fn legacy_properties(id: &str, kind: &str) -> lapin::BasicProperties {
    lapin::BasicProperties::default()
        .with_content_type("text/plain".into())
        .with_delivery_mode(2)
        .with_message_id(id.into())
        .with_type(kind.into())
}

/// A task to its topic's ready queue, or through the delay levels when `delay_secs` > 0.
pub fn task(names: &Names, t: &TaskMsg, delay_secs: u64) -> (Vec<Decl>, Outgoing) {
    let mut decls = vec![Decl::Topic(t.topic.clone())];
    let (exchange, routing_key) = if delay_secs > 0 {
        decls.push(Decl::Delay);
        (names.delay_exchange(), delay_routing_key(delay_secs, &t.topic))
    } else {
        (names.task_exchange(), t.topic.clone())
    };
    let out = Outgoing {
        exchange,
        routing_key,
        body: t.to_json(),
        properties: properties(&t.id, KIND_TASK),
        mandatory: true,
    };
    (decls, out)
}

/// A task into its topic's failed store.
pub fn failed(names: &Names, t: &TaskMsg, reason: &str) -> (Vec<Decl>, Outgoing) {
    let out = Outgoing {
        exchange: String::new(),
        routing_key: names.failed_queue(&t.topic),
        body: t.to_json(),
        properties: properties_with_headers(
            &t.id,
            KIND_FAILED_TASK,
            &[(headers::ERROR, reason.to_string()), (headers::FAILED_AT, round_ms(now()).to_string())],
        ),
        mandatory: true,
    };
    (vec![Decl::Failed(t.topic.clone())], out)
}

/// A body that is not a task of `topic` (not JSON, a bad name, another topic), kept as it came in
/// `topic`'s failed store under the id `id`, with the reason; the store lists it and never replays it.
pub fn unreadable_task(names: &Names, topic: &str, id: &str, body: &[u8], reason: &str) -> (Vec<Decl>, Outgoing) {
    let out = unreadable(names.failed_queue(topic), id, body, reason);
    (vec![Decl::Failed(topic.to_string())], out)
}

/// An event body the scheduler cannot read, kept as it came in the store of unreadable events.
pub fn unreadable_event(names: &Names, id: &str, body: &[u8], reason: &str) -> (Vec<Decl>, Outgoing) {
    (vec![Decl::UnreadableEvents], unreadable(names.unreadable_events(), id, body, reason))
}

fn unreadable(queue: String, id: &str, body: &[u8], reason: &str) -> Outgoing {
    Outgoing {
        exchange: String::new(),
        routing_key: queue,
        body: body.to_vec(),
        properties: properties_with_headers(
            id,
            KIND_UNREADABLE,
            &[(headers::ERROR, reason.to_string()), (headers::FAILED_AT, round_ms(now()).to_string())],
        ),
        mandatory: true,
    }
}

/// Declares what the messages need and publishes them, returning once all are confirmed.
/// A connection or channel found dead (it broke while idle), or a channel on which the broker
/// refused the messages, is replaced and the send tried once more. Messages that come back unroutable although their queues were declared on this
/// connection (someone deleted a queue) are sent again, alone, after declaring anew.
pub fn send(settings: &Settings, decls: &[Decl], messages: &[Outgoing]) -> Result<(), BrokerError> {
    send_marking(settings, decls, messages, &Cell::new(false))
}

/// A send that failed, and whether the broker may have stored messages all the same: they were
/// handed to the connection, then no confirm came back (a timeout, the connection or channel lost
/// while waiting, or a refusal: see [`crate::broker::ErrorKind::may_leave_publish_stored`]).
#[derive(Debug)]
pub struct SendFailed {
    pub error: BrokerError,
    pub maybe_stored: bool,
}

fn failed_after(handed: &Cell<bool>) -> impl Fn(BrokerError) -> SendFailed + '_ {
    move |error| SendFailed { maybe_stored: handed.get() && error.kind().may_leave_publish_stored(), error }
}

/// [`send`], telling whether a failure may have left messages stored.
pub fn send_telling(settings: &Settings, decls: &[Decl], messages: &[Outgoing]) -> Result<(), SendFailed> {
    let handed = Cell::new(false);
    send_marking(settings, decls, messages, &handed).map_err(failed_after(&handed))
}

/// Like [`send`], but returns once the messages are handed to the connection; [`flush`] (or the
/// end of the PHP request) awaits their confirms.
pub fn send_deferred(settings: &Settings, decls: &[Decl], messages: &[Outgoing]) -> Result<(), SendFailed> {
    deferred(Lot::Request, settings, decls, messages)
}

/// Like [`send_deferred`], for what a worker child must have confirmed before it acks the tasks
/// that published it (a group member's end): [`settle_before_acks`] awaits them, apart from the
/// request's deferred publishes.
pub fn send_before_acks(settings: &Settings, decls: &[Decl], messages: &[Outgoing]) -> Result<(), BrokerError> {
    deferred(Lot::BeforeAcks, settings, decls, messages).map_err(|f| f.error)
}

fn deferred(lot: Lot, settings: &Settings, decls: &[Decl], messages: &[Outgoing]) -> Result<(), SendFailed> {
    let handed = Cell::new(false);
    with_session(|s| {
        s.declare(settings, decls)?;
        handed.set(true);
        s.publish_deferred(lot, settings, messages)
    })
    .map_err(failed_after(&handed))
}

/// [`send`], setting `handed` once messages start to be handed to the connection.
fn send_marking(
    settings: &Settings,
    decls: &[Decl],
    messages: &[Outgoing],
    handed: &Cell<bool>,
) -> Result<(), BrokerError> {
    with_session(|s| s.publish_declared(settings, decls, messages, handed))
}

pub fn send_one(settings: &Settings, (decls, out): (Vec<Decl>, Outgoing)) -> Result<(), BrokerError> {
    send(settings, &decls, std::slice::from_ref(&out))
}

/// Awaits every deferred publish of this process's request: (confirmed, failures).
pub fn flush(settings: &Settings) -> Result<(usize, Vec<Failed>), BrokerError> {
    with_session(|s| Ok(s.flush(Lot::Request, settings)))
}

/// Awaits every publish of [`send_before_acks`] not awaited yet: (confirmed, failures).
pub fn settle_before_acks(settings: &Settings) -> Result<(usize, Vec<Failed>), BrokerError> {
    with_session(|s| Ok(s.flush(Lot::BeforeAcks, settings)))
}

/// Awaits the confirm of the publish of [`send_before_acks`] whose message id is `id`, the others
/// waiting on: (1 when it was confirmed, its failure); neither when no such publish waits.
pub fn settle_one_before_acks(settings: &Settings, id: &str) -> Result<(usize, Vec<Failed>), BrokerError> {
    with_session(|s| Ok(s.flush_one(Lot::BeforeAcks, settings, id)))
}

/// Takes the answers already in to publishes of [`send_before_acks`], without waiting for the
/// others: (confirmed, failures). On a worker child's direct connection, one read that does not block.
pub fn settle_ready_before_acks(settings: &Settings) -> Result<(Vec<Sent>, Vec<Failed>), BrokerError> {
    with_session(|s| Ok(s.settle_ready(Lot::BeforeAcks, settings)))
}
