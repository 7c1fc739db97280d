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
use super::current::with_session;
use super::error::{kind_of, BrokerError, ErrorKind, Stage};
use super::names::Names;
use super::stop;
use crate::config::Settings;
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
            Err(e) if kind_of(&e, Stage::Open) == ErrorKind::Locked => {}
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

/// What exists of one topic: the original's ready and delay queues, ebats's ready queue (ready
/// messages and consumers of each; `None`: absent).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopicFound {
    pub topic: String,
    pub legacy_ready: Option<(u32, u32)>,
    pub legacy_delay: Option<(u32, u32)>,
    pub ready: Option<(u32, u32)>,
}

/// What of the names the original and ebats share exists on the broker: the type of each exchange
/// (`None`: absent; `Some("other")`: none of the four types with these flags), the events queue,
/// and per topic asked for, the queues.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Found {
    pub event_exchange: Option<&'static str>,
    pub task_exchange: Option<&'static str>,
    pub delay_exchange: Option<&'static str>,
    pub events_queue: Option<(u32, u32)>,
    pub topics: Vec<TopicFound>,
}

/// One line of `ebats migrate:check`: an object, what it is now, what will happen to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// "exchange" or "queue".
    pub what: &'static str,
    pub name: String,
    /// The exchange type, or "queue".
    pub found: String,
    pub messages: Option<u32>,
    pub consumers: Option<u32>,
    pub action: String,
    /// Nothing ebats does will settle it: a person must.
    pub needs_hand: bool,
}

/// Reads what exists (only passive declarations and declarations of what already exists with its
/// own type: nothing changes).
pub async fn inspect(conn: &Connection, n: &Names, topics: &[String]) -> Result<Found, BrokerError> {
    async fn typed(conn: &Connection, name: &str) -> Result<Option<&'static str>, BrokerError> {
        if !exchange_exists(conn, name).await? {
            return Ok(None);
        }
        Ok(Some(exchange_type(conn, name).await?.unwrap_or("other")))
    }
    let mut found = Found {
        event_exchange: typed(conn, &n.event_exchange()).await?,
        task_exchange: typed(conn, &n.task_exchange()).await?,
        delay_exchange: typed(conn, &n.delay_exchange()).await?,
        events_queue: probe_queue(conn, &n.events_queue()).await?,
        topics: Vec::new(),
    };
    for t in topics {
        found.topics.push(TopicFound {
            topic: t.clone(),
            legacy_ready: probe_queue(conn, &n.legacy_ready_queue(t)).await?,
            legacy_delay: probe_queue(conn, &n.legacy_delay_queue(t)).await?,
            ready: probe_queue(conn, &n.ready_queue(t)).await?,
        });
    }
    Ok(found)
}

/// What will happen to each thing found, and whether it needs a person (pure).
pub fn assess(n: &Names, f: &Found) -> Vec<Finding> {
    let mut out = vec![
        event_exchange_finding(n.event_exchange(), f.event_exchange),
        task_exchange_finding(n.task_exchange(), f.task_exchange),
        delay_exchange_finding(n.delay_exchange(), f.delay_exchange),
    ];
    if let Some(c) = f.events_queue {
        out.push(queue_finding(
            n.events_queue(),
            c,
            "shared: the ebats Scheduler reads the original's events and ebats's alike".into(),
        ));
    }
    for t in &f.topics {
        out.extend(topic_findings(n, t));
    }
    out
}

fn exchange_finding(name: String, found: Option<&'static str>, action: &str, needs_hand: bool) -> Finding {
    Finding {
        what: "exchange",
        name,
        found: found.unwrap_or("absent").to_string(),
        messages: None,
        consumers: None,
        action: action.to_string(),
        needs_hand,
    }
}

fn event_exchange_finding(ev: String, found: Option<&'static str>) -> Finding {
    match found {
        None => exchange_finding(ev, None, "declared fanout by the first ebats Scheduler or producer", false),
        Some("direct") => exchange_finding(
            ev,
            Some("direct"),
            "the original's: kept; the ebats Scheduler binds the events queue to it once per registered event",
            false,
        ),
        Some("fanout") => exchange_finding(ev, Some("fanout"), "ebats's: nothing to do", false),
        Some(other) => exchange_finding(
            ev.clone(),
            Some(other),
            &format!("neither the original's (direct) nor ebats's (fanout): delete it (rabbitmqctl delete_exchange {ev}) once nothing publishes to it"),
            true,
        ),
    }
}

fn task_exchange_finding(tx: String, found: Option<&'static str>) -> Finding {
    match found {
        None => exchange_finding(tx, None, "declared direct by ebats", false),
        Some("direct") => exchange_finding(tx, Some("direct"), "shared by the original and ebats: kept", false),
        Some(other) => exchange_finding(
            tx.clone(),
            Some(other),
            &format!("not direct as both libraries need: delete it (rabbitmqctl delete_exchange {tx}) once nothing publishes to it"),
            true,
        ),
    }
}

fn delay_exchange_finding(dx: String, found: Option<&'static str>) -> Finding {
    match found {
        None => exchange_finding(dx, None, "declared topic by ebats", false),
        Some("direct") => exchange_finding(
            dx,
            Some("direct"),
            "the original's: converted to ebats's topic exchange by the first ebats process that declares a topic \
             or delays a task (the original's delay queues are bound to it again)",
            false,
        ),
        Some("topic") => exchange_finding(dx, Some("topic"), "ebats's (converted): nothing to do", false),
        Some(other) => exchange_finding(
            dx.clone(),
            Some(other),
            &format!("neither the original's (direct) nor ebats's (topic): delete it (rabbitmqctl delete_exchange {dx}) once nothing publishes to it"),
            true,
        ),
    }
}

fn queue_finding(name: String, counts: (u32, u32), action: String) -> Finding {
    Finding {
        what: "queue",
        name,
        found: "queue".into(),
        messages: Some(counts.0),
        consumers: Some(counts.1),
        action,
        needs_hand: false,
    }
}

/// The original's ready and delay queues of one topic, where they exist.
fn topic_findings(n: &Names, t: &TopicFound) -> Vec<Finding> {
    let own = n.ready_queue(&t.topic);
    let mut out = Vec::new();
    if let Some(c) = t.legacy_ready {
        let action = if c.0 == 0 {
            "empty (unbound when ebats declares the topic): can be deleted when no original worker runs".into()
        } else if t.ready.is_some_and(|r| r.1 > 0) {
            format!("being run by the ebats workers of '{}' beside {own}, until empty", t.topic)
        } else {
            format!(
                "run by the ebats workers of '{}' once they start (they consume it beside {own} until empty)",
                t.topic
            )
        };
        out.push(queue_finding(n.legacy_ready_queue(&t.topic), c, action));
    }
    if let Some(c) = t.legacy_delay {
        let action = if c.0 == 0 {
            "empty; bound to the delay exchange for tasks the original still writes: can be deleted when no \
             original process runs"
                .into()
        } else {
            format!("delayed tasks: each comes due (its own TTL) through {} into {own}", n.task_exchange())
        };
        out.push(queue_finding(n.legacy_delay_queue(&t.topic), c, action));
    }
    out
}

/// What of the original library is on the broker for these topics, and what will happen to each
/// (`ebats migrate:check`). Changes nothing.
pub fn check(settings: &Settings, topics: &[String]) -> Result<Vec<Finding>, BrokerError> {
    for t in topics {
        crate::rules::check_topic(t).map_err(|e| BrokerError::new(ErrorKind::Invalid, e))?;
    }
    let n = Names::new(&settings.prefix);
    with_session(|s| {
        let conn = s.link(settings)?.connection.clone();
        // A few requests per object: the time allowed grows with the topics.
        let t = settings.confirm_timeout * (2 + topics.len() as u32);
        let found = s.wait(t, "reading what of the original library is on the broker", inspect(&conn, &n, topics))?;
        Ok(assess(&n, &found))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(ev: Option<&'static str>, tx: Option<&'static str>, dx: Option<&'static str>) -> Found {
        Found { event_exchange: ev, task_exchange: tx, delay_exchange: dx, ..Found::default() }
    }

    #[test]
    fn exchanges_need_a_hand_only_when_of_a_type_neither_library_makes() {
        let n = Names::new("p");
        let table: &[(Found, [bool; 3])] = &[
            (found(None, None, None), [false; 3]),
            (found(Some("direct"), Some("direct"), Some("direct")), [false; 3]),
            (found(Some("fanout"), Some("direct"), Some("topic")), [false; 3]),
            (found(Some("topic"), Some("direct"), Some("direct")), [true, false, false]),
            (found(Some("direct"), Some("fanout"), Some("direct")), [false, true, false]),
            (found(Some("direct"), Some("direct"), Some("headers")), [false, false, true]),
            (found(Some("other"), Some("other"), Some("other")), [true; 3]),
        ];
        for (f, hands) in table {
            let got: Vec<bool> = assess(&n, f).iter().take(3).map(|x| x.needs_hand).collect();
            assert_eq!(got, hands.to_vec(), "{f:?}");
        }
    }

    #[test]
    fn the_originals_queues_are_listed_with_what_happens_to_them() {
        let n = Names::new("p");
        let f = Found {
            events_queue: Some((4, 0)),
            topics: vec![
                TopicFound { topic: "a".into(), legacy_ready: Some((3, 0)), legacy_delay: Some((2, 0)), ready: None },
                TopicFound { topic: "b".into(), legacy_ready: Some((5, 2)), legacy_delay: None, ready: Some((0, 2)) },
                TopicFound { topic: "c".into(), legacy_ready: Some((0, 0)), legacy_delay: Some((0, 0)), ready: None },
                TopicFound { topic: "d".into(), ..TopicFound::default() },
            ],
            ..found(Some("direct"), Some("direct"), Some("direct"))
        };
        let got = assess(&n, &f);
        let names: Vec<&str> = got.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(
            names,
            ["p.core.event", "p.task.ready", "p.task.delay", "p.events", "p.aR", "p.aD", "p.bR", "p.cR", "p.cD"]
        );
        assert!(got.iter().all(|x| !x.needs_hand));
        assert_eq!(got[4].messages, Some(3));
        assert!(got[4].action.contains("once they start"), "{}", got[4].action);
        assert!(got[5].action.contains("comes due"), "{}", got[5].action);
        assert!(got[6].action.contains("being run"), "{}", got[6].action);
        assert!(got[7].action.starts_with("empty"), "{}", got[7].action);
    }
}
