//! The failed stores: a topic's failed tasks, and the event bodies the scheduler could not read.
//! List, replay (tasks only) and purge.
//!
//! Listing reads messages without acking them and closes the channel, which gives them all back
//! to the queue in order. A body kept as it came (unreadable, or naming another topic than its
//! store's) is listed with `unreadable: true` and never replayed: replay would let a body choose
//! the queue it goes to.

use lapin::message::BasicGetMessage;
use lapin::options::{BasicAckOptions, BasicGetOptions, QueuePurgeOptions};
use lapin::types::AMQPValue;
use lapin::BasicProperties;
use serde_json::{json, Value};

use super::confirm::{settle, Sent};
use super::current::with_session;
use super::error::BrokerError;
use super::names::Names;
use super::topology::Decl;
use super::unique::take_on;
use crate::config::Settings;
use crate::flow::unique::{made, Made};
use crate::headers;
use crate::wire::{properties, TaskMsg, KIND_TASK, KIND_UNREADABLE, VERSION};

/// Which failed store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// The failed tasks of a topic (`P.failed.<topic>`).
    Topic(String),
    /// Event bodies the scheduler could not read (`P.events.unreadable`).
    Events,
}

impl Store {
    fn queue(&self, names: &Names) -> String {
        match self {
            Store::Topic(t) => names.failed_queue(t),
            Store::Events => names.unreadable_events(),
        }
    }

    fn decl(&self) -> Decl {
        match self {
            Store::Topic(t) => Decl::Failed(t.clone()),
            Store::Events => Decl::UnreadableEvents,
        }
    }
}

fn err(what: &'static str) -> impl Fn(lapin::Error) -> BrokerError {
    move |e| BrokerError::lapin(what, &e)
}

fn header(m: &BasicGetMessage, key: &str) -> Option<String> {
    header_in(&m.delivery.properties, key)
}

/// A string header (long or short string) of a stored message; none when missing or of another type.
pub fn header_in(p: &BasicProperties, key: &str) -> Option<String> {
    match p.headers().as_ref()?.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// One stored message read back: a task of the store's topic, or a body kept as it came.
enum Entry {
    Task(Box<TaskMsg>),
    Unreadable { id: String, reason: String },
}

fn read(store: &Store, m: &BasicGetMessage) -> Entry {
    let id = m.delivery.properties.message_id().as_ref().map(|s| s.to_string());
    let kept = m.delivery.properties.kind().as_ref().is_some_and(|k| k.as_str() == KIND_UNREADABLE);
    let reason = match store {
        Store::Topic(topic) if !kept => match TaskMsg::parse(&m.delivery.data) {
            Ok(t) if &t.topic == topic => return Entry::Task(Box::new(t)),
            Ok(t) => format!("task body names the topic '{}', not '{topic}'", t.topic),
            Err(e) => e,
        },
        _ => header(m, headers::ERROR).unwrap_or_else(|| "unreadable".into()),
    };
    // Without an id of its own, the delivery tag at least tells entries of one listing apart.
    let id = id.unwrap_or_else(|| format!("no-id-{}", m.delivery.delivery_tag));
    Entry::Unreadable { id, reason }
}

/// When a stored message failed: its header, else its timestamp (a header that is no number is
/// ignored).
pub fn failed_at(p: &BasicProperties) -> Option<f64> {
    header_in(p, headers::FAILED_AT).and_then(|t| t.parse::<f64>().ok()).or_else(|| p.timestamp().map(|t| t as f64))
}

/// The listing of a body kept as it came.
fn unreadable_entry(store: &Store, m: &BasicGetMessage, id: String, reason: String) -> Value {
    let failed_at = failed_at(&m.delivery.properties);
    let mut o = json!({
        "v": VERSION, "id": id, "unreadable": true,
        "body": String::from_utf8_lossy(&m.delivery.data),
        "failed": {
            "message": reason, "class": null, "attempts": 0, "failed_at": failed_at,
            "status": crate::outcome::STATE_FAIL,
        },
    });
    if let Store::Topic(t) = store {
        o["topic"] = json!(t);
    }
    o
}

/// Up to `limit` entries of the store, oldest first: tasks in the wire format, bodies kept as they
/// came with `unreadable: true`, each with its `failed` entry.
pub fn list(settings: &Settings, store: &Store, limit: usize) -> Result<Vec<Value>, BrokerError> {
    let names = Names::new(&settings.prefix);
    let queue = store.queue(&names);
    with_session(|s| {
        s.declare(settings, &[store.decl()])?;
        let ch = s.channel(settings)?;
        s.wait(settings.confirm_timeout * 3, "listing the failed store", async {
            let mut out = Vec::new();
            while out.len() < limit {
                match ch
                    .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
                    .await
                    .map_err(err("basic.get"))?
                {
                    Some(m) => out.push(match read(store, &m) {
                        Entry::Task(t) => t.to_value(),
                        Entry::Unreadable { id, reason } => unreadable_entry(store, &m, id, reason),
                    }),
                    None => break,
                }
            }
            let _ = ch.close(200, "listed".into()).await;
            Ok(out)
        })
    })
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Tasks moved back to the ready queue.
    pub moved: usize,
    /// Entries kept because they cannot be replayed: (id, why they are in the store).
    pub kept: Vec<(String, String)>,
    /// Unique tasks kept because another task holds their key now: (id, the holder's id).
    pub duplicates: Vec<(String, String)>,
}

/// Moves failed tasks back to their topic's ready queue as new first attempts: the one with `id`,
/// or all. Bodies kept as they came stay in the store (listed in `kept`), and so does a unique task
/// whose key another task holds now (listed in `kept` with that task's id).
pub fn replay(settings: &Settings, topic: &str, id: Option<&str>) -> Result<Replayed, BrokerError> {
    let names = Names::new(&settings.prefix);
    let store = Store::Topic(topic.to_string());
    let queue = store.queue(&names);
    with_session(|s| {
        s.declare(settings, &[store.decl(), Decl::Topic(topic.to_string())])?;
        // Only what is there now: a replayed task that fails again must not be replayed again.
        let present = s.queue_depth(settings, &queue)?;
        let ch = s.channel(settings)?;
        let conn = s.link(settings)?.connection.clone();
        s.wait(settings.confirm_timeout * 30, "replaying the failed store", async {
            let mut done = Replayed::default();
            for _ in 0..present {
                let Some(m) = ch
                    .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
                    .await
                    .map_err(err("basic.get"))?
                else {
                    break;
                };
                // Not acked: what is left unacked goes back to the store when the channel closes.
                let mut t = match read(&store, &m) {
                    Entry::Task(t) => *t,
                    Entry::Unreadable { id: kept, reason } => {
                        let wanted = id == Some(kept.as_str());
                        if id.is_none() || wanted {
                            done.kept.push((kept, reason));
                        }
                        if wanted {
                            break;
                        }
                        continue;
                    }
                };
                if id.is_some_and(|id| id != t.id) {
                    continue;
                }
                // A unique task takes its key again; held by another task, it stays in the store.
                if let Some(key) = t.unique.as_mut() {
                    key.until = crate::wire::now() + key.for_secs as f64;
                    let queue = names.unique_queue(topic, &key.key);
                    if let Made::Duplicate(holder) = made(&t.id, take_on(&conn, &queue, &t.id, key.for_secs).await?) {
                        crate::log::info(&format!(
                            "failed task {topic}/{} id={} not replayed: its unique key '{}' is held by task {holder}",
                            t.name, t.id, key.key
                        ));
                        done.duplicates.push((t.id.clone(), holder));
                        if id.is_some() {
                            break;
                        }
                        continue;
                    }
                }
                as_first_attempt(&mut t);
                send_again(&ch, &names, topic, &t).await?;
                m.delivery.acker.ack(BasicAckOptions::default()).await.map_err(err("ack"))?;
                done.moved += 1;
                if id.is_some() {
                    break;
                }
            }
            let _ = ch.close(200, "replayed".into()).await;
            Ok(done)
        })
    })
}

/// A failed task made a new first attempt: its counts and its failure forgotten.
fn as_first_attempt(t: &mut TaskMsg) {
    t.attempt = 1;
    t.service_errors = 0;
    t.redeliveries = 0;
    t.retry = None;
    t.extra.remove("failed");
}

/// Publishes `t` to `topic`'s ready queue on `ch` and settles its confirm.
async fn send_again(ch: &lapin::Channel, names: &Names, topic: &str, t: &TaskMsg) -> Result<(), BrokerError> {
    let sent = Sent {
        exchange: names.task_exchange(),
        routing_key: topic.to_string(),
        id: Some(t.id.clone()),
        kind: Some(KIND_TASK.into()),
    };
    let confirm = ch
        .basic_publish(
            sent.exchange.as_str().into(),
            sent.routing_key.as_str().into(),
            lapin::options::BasicPublishOptions { mandatory: true, immediate: false },
            &t.to_json(),
            properties(&t.id, KIND_TASK),
        )
        .await
        .map_err(err("publish"))?;
    settle(&sent, confirm).await.map_err(|e| e.context(&format!("replaying task {}", t.id)))
}

pub fn purge(settings: &Settings, store: &Store) -> Result<u32, BrokerError> {
    let names = Names::new(&settings.prefix);
    with_session(|s| {
        s.declare(settings, &[store.decl()])?;
        let ch = s.channel(settings)?;
        s.wait(settings.confirm_timeout, "purging the failed store", async {
            let n = ch
                .queue_purge(store.queue(&names).as_str().into(), QueuePurgeOptions::default())
                .await
                .map_err(err("queue.purge"))?;
            let _ = ch.close(200, "purged".into()).await;
            Ok(n)
        })
    })
}
