//! What the original library (the pure-PHP `Asynclib`) left on the broker, taken over by ebats.
//!
//! The original and ebats share the task exchange `P.task.ready` (direct in both) and the name
//! `P.task.delay`, which the original made a `direct` exchange and ebats a `topic` exchange in
//! front of its delay levels. Per topic T the original has a ready queue `P.TR` (bound to
//! `P.task.ready` with key T) and a delay queue `P.TD` (bound to `P.task.delay` with key T,
//! dead-lettering to `P.task.ready` with key T when a message's own TTL ends).
//!
//! - The delay exchange is converted once, by the first ebats process that declares it: deleted
//!   and declared again as a topic exchange, under a lock (an exclusive queue) so two processes
//!   converting at once never delete each other's new exchange. No message lives in an exchange,
//!   so none is lost; a topic binding without wildcards matches its key exactly, so `P.TD` bound
//!   with key T still gets what the original's format sends there, and ebats's 28-digit keys
//!   never reach it.
//! - Whenever ebats declares a topic's ready queue, `P.TR` is unbound from `P.task.ready` first
//!   (a task published in between comes back unroutable and is sent again, never queued twice),
//!   and `P.TD`, when it exists, is bound to the converted delay exchange with key T. Its
//!   delayed tasks then dead-letter through `P.task.ready` into ebats's ready queue.
//! - A worker consumes `P.TR` beside its own queue while it holds messages (see `worker::child`);
//!   the legacy queues are left in place (empty, unbound), for the operator to delete when
//!   `ebats migrate:check` says nothing waits there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ExchangeKind};

use super::connection::channel;
use super::error::{kind_of, BrokerError, ErrorKind, Stage};
use super::names::Names;
use super::stop;
use crate::log;

/// Tries at taking the conversion lock (100 ms apart) before giving up.
const LOCK_TRIES: u32 = 100;

/// Before ebats binds its ready queue of `topic`: the original's ready queue of that topic stops
/// getting new tasks, and its delay queue, if any, keeps getting the original's delayed tasks
/// through the converted delay exchange.
pub async fn adopt_topic(conn: &Connection, n: &Names, topic: &str) -> Result<(), BrokerError> {
    let delay_q = n.legacy_delay_queue(topic);
    if probe_queue(conn, &delay_q).await?.is_some() {
        ensure_delay_exchange(conn, n).await?;
        let ch = channel(conn).await?;
        let r = ch
            .queue_bind(
                delay_q.as_str().into(),
                n.delay_exchange().as_str().into(),
                topic.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| BrokerError::lapin(&format!("cannot bind queue '{delay_q}' to '{}'", n.delay_exchange()), &e));
        let _ = ch.close(200, "done".into()).await;
        r?;
    }
    let ready_q = n.legacy_ready_queue(topic);
    let ch = channel(conn).await?;
    let r = ch
        .queue_unbind(ready_q.as_str().into(), n.task_exchange().as_str().into(), topic.into(), FieldTable::default())
        .await;
    match r {
        Ok(()) => {
            let _ = ch.close(200, "done".into()).await;
            Ok(())
        }
        // No such queue (or exchange): nothing of the original for this topic.
        Err(e) if kind_of(&e, Stage::Open) == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BrokerError::lapin(&format!("cannot unbind queue '{ready_q}'"), &e)),
    }
}

/// Messages ready in `queue` and its consumers; `None` when it does not exist. On a channel of its
/// own, which a missing queue closes.
pub async fn probe_queue(conn: &Connection, queue: &str) -> Result<Option<(u32, u32)>, BrokerError> {
    let ch = channel(conn).await?;
    let r = ch
        .queue_declare(queue.into(), QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default())
        .await;
    match r {
        Ok(q) => {
            let _ = ch.close(200, "done".into()).await;
            Ok(Some((q.message_count(), q.consumer_count())))
        }
        Err(e) if kind_of(&e, Stage::Open) == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BrokerError::lapin(&format!("queue '{queue}'"), &e)),
    }
}

/// Whether exchange `name` exists, on a channel of its own.
pub async fn exchange_exists(conn: &Connection, name: &str) -> Result<bool, BrokerError> {
    let ch = channel(conn).await?;
    let r = ch
        .exchange_declare(
            name.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        )
        .await;
    match r {
        Ok(()) => {
            let _ = ch.close(200, "done".into()).await;
            Ok(true)
        }
        Err(e) if kind_of(&e, Stage::Open) == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(BrokerError::lapin(&format!("exchange '{name}'"), &e)),
    }
}

/// The type of an exchange that exists (durable, as both libraries declare them): each of the
/// four types is declared in turn, and only the one it has is accepted, changing nothing.
/// `None` when it has none of them with these flags. Call only when it exists (a declaration
/// would make it).
pub async fn exchange_type(conn: &Connection, name: &str) -> Result<Option<&'static str>, BrokerError> {
    for (kind, label) in [
        (ExchangeKind::Direct, "direct"),
        (ExchangeKind::Topic, "topic"),
        (ExchangeKind::Fanout, "fanout"),
        (ExchangeKind::Headers, "headers"),
    ] {
        let ch = channel(conn).await?;
        match declare_exchange(&ch, name, kind).await {
            Ok(()) => {
                let _ = ch.close(200, "done".into()).await;
                return Ok(Some(label));
            }
            Err(e) if e.kind() == ErrorKind::PreconditionFailed => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

async fn declare_exchange(ch: &Channel, name: &str, kind: ExchangeKind) -> Result<(), BrokerError> {
    ch.exchange_declare(
        name.into(),
        kind,
        ExchangeDeclareOptions { durable: true, ..Default::default() },
        FieldTable::default(),
    )
    .await
    .map_err(|e| BrokerError::lapin(&format!("cannot declare exchange '{name}'"), &e))
}

/// Makes sure the delay exchange is ebats's topic exchange, converting the original's direct one.
/// Returns true when this call converted it.
pub async fn ensure_delay_exchange(conn: &Connection, n: &Names) -> Result<bool, BrokerError> {
    let name = n.delay_exchange();
    for _ in 0..LOCK_TRIES {
        let ch = channel(conn).await?;
        match declare_exchange(&ch, &name, ExchangeKind::Topic).await {
            Ok(()) => {
                let _ = ch.close(200, "done".into()).await;
                return Ok(false);
            }
            Err(e) if e.kind() == ErrorKind::PreconditionFailed => {}
            Err(e) => return Err(e),
        }
        // It exists with another type. Convert it holding the lock; another process holding it is
        // converting now: wait and look again.
        let lock = channel(conn).await?;
        let held = lock
            .queue_declare(
                n.switch_lock().as_str().into(),
                QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
                FieldTable::default(),
            )
            .await;
        match held {
            Ok(_) => {
                let r = convert_locked(conn, n).await;
                let _ = lock.queue_delete(n.switch_lock().as_str().into(), QueueDeleteOptions::default()).await;
                let _ = lock.close(200, "done".into()).await;
                return r;
            }
            Err(e) if kind_of(&e, Stage::Open) == (ErrorKind::ChannelClosed { reply_code: 405 }) => {}
            Err(e) => return Err(BrokerError::lapin(&format!("cannot declare the lock '{}'", n.switch_lock()), &e)),
        }
        if stop::requested().is_some() {
            return Err(BrokerError::new(ErrorKind::Stopped, "stopped while waiting to convert the delay exchange"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(BrokerError::new(
        ErrorKind::Timeout,
        format!("another process held '{}' for 10 s while converting '{name}'", n.switch_lock()),
    ))
}

/// Holding the lock: the delay exchange is topic already (someone converted it), or the
/// original's direct one, deleted and declared again as topic.
async fn convert_locked(conn: &Connection, n: &Names) -> Result<bool, BrokerError> {
    let name = n.delay_exchange();
    match exchange_type(conn, &name).await? {
        Some("topic") => return Ok(false),
        Some("direct") => {}
        found => {
            return Err(BrokerError::new(
                ErrorKind::PreconditionFailed,
                format!(
                    "exchange '{name}' exists as {} but ebats needs it as a topic exchange (the original library's \
                     was direct, which ebats converts): delete it (rabbitmqctl delete_exchange {name}, or in the \
                     management UI) once nothing publishes to it, and start again",
                    found.map(|t| format!("a {t} exchange")).unwrap_or_else(|| "an exchange of other flags".into())
                ),
            ))
        }
    }
    let ch = channel(conn).await?;
    ch.exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .map_err(|e| BrokerError::lapin(&format!("cannot delete exchange '{name}'"), &e))?;
    declare_exchange(&ch, &name, ExchangeKind::Topic).await?;
    let _ = ch.close(200, "done".into()).await;
    log_converted(&name);
    Ok(true)
}

fn log_converted(name: &str) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        log::info(&format!(
            "converted the original library's direct exchange '{name}' to ebats's topic exchange; the original's \
             delay queues are bound to it again by topic as ebats declares each topic"
        ));
    }
}
