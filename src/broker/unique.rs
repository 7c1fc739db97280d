//! Unique keys on the broker. A key of a topic is a classic queue `<prefix>.unique.<topic>.<key>`
//! (`Names::unique_queue`) that holds at most one message, the id of the task holding the key:
//! `x-max-length 1` with `x-overflow reject-publish` (exact on classic queues, which is why the queue
//! is always classic), `x-message-ttl` and `x-expires` the key's lifetime, so a key whose task was lost
//! frees itself and its queue goes.
//!
//! Taking a key is a declaration and a confirmed publish of the id: an ack means taken, a negative
//! confirm that another task holds it. Nothing but the holder's own release ever reads the key's
//! queue: the broker counts only ready messages against `x-max-length`, so a message read and given
//! back would leave the key free meanwhile for a third task to take. Who holds a key is told by a
//! second queue beside it (`names::unique_holder`: the holder's id, published once the key is taken,
//! newest kept), which takers that find the key held read and give back; it only informs.
//!
//! Releasing: the holder reads the key's message, acks it when it is its own id (else gives it back,
//! which the worker avoids by releasing only well within the key's lifetime,
//! `flow::unique::releases`), then deletes the queue if it is empty, and the holder queue with it, so
//! a key costs two queues only while a task holds it. The races are settled by the broker: a publish
//! that meets a queue just deleted comes back unroutable and is tried again; a queue declared with
//! another lifetime (a 406) is deleted when empty and declared again, and is a holder's when not.
//! Each call works on channels of its own: a refusal closes a channel, never the session's
//! publishing one.

use std::time::Duration;

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, BasicRejectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection};

use super::connection;
use super::current::with_session;
use super::error::{kind_of, BrokerError, ErrorKind, Stage};
use super::names::{unique_holder, Names};
use crate::config::Settings;
use crate::flow::unique::Take;
use crate::wire::UniqueKey;

/// How often a take starts again after the key changed hands under it (released, expired, made again
/// with another lifetime), or while its holder is not told yet, before it gives up.
const TRIES: u32 = 8;

fn err(what: &'static str) -> impl Fn(lapin::Error) -> BrokerError {
    move |e| BrokerError::lapin(what, &e)
}

/// A queue's arguments: one message at most (`overflow`: refused beyond it, or the oldest dropped),
/// the lifetime for the message and for the queue left unused.
fn arguments(for_secs: u64, overflow: Option<&str>) -> FieldTable {
    let ms = (for_secs * 1000) as i64;
    let mut a = FieldTable::default();
    a.insert("x-queue-type".into(), AMQPValue::LongString("classic".into()));
    a.insert("x-max-length".into(), AMQPValue::LongLongInt(1));
    if let Some(o) = overflow {
        a.insert("x-overflow".into(), AMQPValue::LongString(o.into()));
    }
    a.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ms));
    a.insert("x-expires".into(), AMQPValue::LongLongInt(ms));
    a
}

async fn declare(ch: &Channel, queue: &str, args: FieldTable) -> Result<(), lapin::Error> {
    ch.queue_declare(queue.into(), QueueDeclareOptions { durable: true, ..Default::default() }, args).await.map(|_| ())
}

async fn publish(ch: &Channel, queue: &str, id: &str) -> Result<lapin::PublisherConfirm, BrokerError> {
    let props = BasicProperties::default().with_delivery_mode(2).with_content_type("text/plain".into());
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions { mandatory: true, immediate: false },
        id.as_bytes(),
        props,
    )
    .await
    .map_err(err("taking a unique key"))
}

async fn close(ch: Channel) {
    let _ = ch.close(200, "done".into()).await;
}

/// Deletes `queue` if it is empty (a refusal, or its absence, closes nothing but `ch`); true when it
/// was deleted.
async fn delete_if_empty(ch: &Channel, queue: &str) -> bool {
    ch.queue_delete(queue.into(), QueueDeleteOptions { if_empty: true, ..Default::default() }).await.is_ok()
}

/// The holder of the key in `queue` as its holder queue tells, read and given back; none when it
/// tells nothing (yet).
async fn holder(conn: &Connection, queue: &str) -> Result<Option<String>, BrokerError> {
    let ch = connection::channel(conn).await?;
    let got = match ch.basic_get(unique_holder(queue).as_str().into(), BasicGetOptions { no_ack: false }).await {
        Ok(got) => got,
        Err(e) if kind_of(&e, Stage::Open) == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BrokerError::lapin("reading a unique key's holder", &e)),
    };
    let Some(m) = got else {
        close(ch).await;
        return Ok(None);
    };
    let id = String::from_utf8_lossy(&m.delivery.data).into_owned();
    m.delivery
        .acker
        .reject(BasicRejectOptions { requeue: true })
        .await
        .map_err(err("reading a unique key's holder"))?;
    close(ch).await;
    Ok(Some(id))
}

/// Tells who holds the key just taken (best effort: a taker that cannot read it is told "unknown").
async fn tell_holder(ch: &Channel, queue: &str, id: &str, for_secs: u64) {
    let holder = unique_holder(queue);
    if declare(ch, &holder, arguments(for_secs, None)).await.is_ok() {
        if let Ok(c) = publish(ch, &holder, id).await {
            let _ = c.await;
        }
    }
}

/// Takes the key held in `queue` for the task `id` for `for_secs` seconds, on `conn`: taken, or held
/// by the task whose id it gives (possibly `id` itself, when this task took it before; empty when the
/// holder does not say who it is).
pub async fn take_on(conn: &Connection, queue: &str, id: &str, for_secs: u64) -> Result<Take, BrokerError> {
    let mut held = false;
    for attempt in 0..TRIES {
        if held {
            // Held, its holder not told yet (it is telling, or the key is about to go): a moment.
            tokio::time::sleep(Duration::from_millis(5 << attempt.min(5))).await;
        }
        let ch = connection::confirmed_channel(conn).await?;
        if let Err(e) = declare(&ch, queue, arguments(for_secs, Some("reject-publish"))).await {
            let e = BrokerError::lapin("declaring a unique key", &e);
            if e.kind() != ErrorKind::PreconditionFailed {
                return Err(e.context(&format!("queue '{queue}'")));
            }
            // Made with another lifetime: made again with this one when empty, else held.
            let ch = connection::channel(conn).await?;
            let deleted = delete_if_empty(&ch, queue).await;
            if !deleted {
                if let Some(h) = holder(conn, queue).await? {
                    return Ok(Take::Held(h));
                }
                held = true;
            }
            continue;
        }
        match publish(&ch, queue, id).await?.await.map_err(err("taking a unique key"))? {
            Confirmation::Ack(None) => {
                tell_holder(&ch, queue, id, for_secs).await;
                close(ch).await;
                return Ok(Take::Taken);
            }
            // Deleted by a release between the declaration and the publish.
            Confirmation::Ack(Some(_)) => close(ch).await,
            Confirmation::Nack(_) => {
                close(ch).await;
                if let Some(h) = holder(conn, queue).await? {
                    return Ok(Take::Held(h));
                }
                held = true;
            }
            Confirmation::NotRequested => {
                return Err(BrokerError::new(ErrorKind::Runtime, "publisher confirms are not enabled on this channel"))
            }
        }
    }
    if held {
        return Ok(Take::Held(String::new()));
    }
    Err(BrokerError::new(
        ErrorKind::Nacked,
        format!("could not take the unique key '{queue}': it changed hands {TRIES} times while taking it"),
    ))
}

/// Releases the key held in `queue` if the task `id` holds it, on `conn`; true when it did. The queue
/// is deleted once empty (if a new holder came meanwhile, the broker refuses the deletion), and its
/// holder queue with it.
pub async fn release_on(conn: &Connection, queue: &str, id: &str) -> Result<bool, BrokerError> {
    let ch = connection::channel(conn).await?;
    let got = match ch.basic_get(queue.into(), BasicGetOptions { no_ack: false }).await {
        Ok(got) => got,
        // Gone: expired, or released already.
        Err(e) if kind_of(&e, Stage::Open) == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(BrokerError::lapin("releasing a unique key", &e)),
    };
    let mine = match got {
        Some(m) if m.delivery.data == id.as_bytes() => {
            m.delivery.acker.ack(BasicAckOptions::default()).await.map_err(err("releasing a unique key"))?;
            true
        }
        Some(m) => {
            m.delivery
                .acker
                .reject(BasicRejectOptions { requeue: true })
                .await
                .map_err(err("releasing a unique key"))?;
            close(ch).await;
            return Ok(false);
        }
        None => false,
    };
    if delete_if_empty(&ch, queue).await {
        let _ = ch.queue_delete(unique_holder(queue).as_str().into(), QueueDeleteOptions::default()).await;
    }
    close(ch).await;
    Ok(mine)
}

/// [`take_on`] on this process's session: the key `key` of `topic` for the task `id`.
pub fn take(settings: &Settings, topic: &str, key: &UniqueKey, id: &str) -> Result<Take, BrokerError> {
    let queue = Names::new(&settings.prefix).unique_queue(topic, &key.key);
    with_session(|s| {
        let conn = s.link(settings)?.connection.clone();
        s.wait(settings.confirm_timeout * 2, "taking a unique key", take_on(&conn, &queue, id, key.for_secs))
    })
}

/// [`release_on`] on this process's session.
pub fn release(settings: &Settings, topic: &str, key: &UniqueKey, id: &str) -> Result<bool, BrokerError> {
    let queue = Names::new(&settings.prefix).unique_queue(topic, &key.key);
    with_session(|s| {
        let conn = s.link(settings)?.connection.clone();
        s.wait(settings.confirm_timeout, "releasing a unique key", release_on(&conn, &queue, id))
    })
}
