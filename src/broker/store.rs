//! The failed store: list, replay and purge a topic's failed tasks.
//!
//! Listing reads messages without acking them and closes the channel, which gives them all back
//! to the queue in order.

use lapin::options::{BasicAckOptions, BasicGetOptions, QueuePurgeOptions};

use super::confirm::{settle, Sent};
use super::current::with_session;
use super::error::BrokerError;
use super::names::Names;
use super::topology::Decl;
use crate::config::Settings;
use crate::wire::{properties, TaskMsg};

fn err(what: &'static str) -> impl Fn(lapin::Error) -> BrokerError {
    move |e| BrokerError::lapin(what, &e)
}

pub fn list(settings: &Settings, topic: &str, limit: usize) -> Result<Vec<TaskMsg>, BrokerError> {
    let names = Names::new(&settings.prefix);
    let queue = names.failed_queue(topic);
    with_session(|s| {
        s.declare(settings, &[Decl::Failed(topic.to_string())])?;
        let ch = s.channel(settings)?;
        s.wait(settings.confirm_timeout * 3, "listing the failed store", async {
            let mut out = Vec::new();
            while out.len() < limit {
                match ch
                    .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
                    .await
                    .map_err(err("basic.get"))?
                {
                    Some(m) => out.push(
                        TaskMsg::parse(&m.delivery.data)
                            .unwrap_or_else(|e| TaskMsg::new(topic, "unreadable", serde_json::Value::String(e), 0)),
                    ),
                    None => break,
                }
            }
            let _ = ch.close(200, "listed".into()).await;
            Ok(out)
        })
    })
}

/// Moves failed tasks back to their ready queue as new first attempts: the one with `id`, or all.
pub fn replay(settings: &Settings, topic: &str, id: Option<&str>) -> Result<usize, BrokerError> {
    let names = Names::new(&settings.prefix);
    let queue = names.failed_queue(topic);
    with_session(|s| {
        s.declare(settings, &[Decl::Failed(topic.to_string()), Decl::Topic(topic.to_string())])?;
        // Only what is there now: a replayed task that fails again must not be replayed again.
        let present = s.queue_depth(settings, &queue)?;
        let ch = s.channel(settings)?;
        s.wait(settings.confirm_timeout * 30, "replaying the failed store", async {
            let mut moved = 0;
            for _ in 0..present {
                let Some(m) = ch
                    .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
                    .await
                    .map_err(err("basic.get"))?
                else {
                    break;
                };
                let Ok(mut t) = TaskMsg::parse(&m.delivery.data) else {
                    continue;
                };
                if id.is_some_and(|id| id != t.id) {
                    continue;
                }
                t.attempt = 1;
                t.service_errors = 0;
                t.redeliveries = 0;
                t.retry = None;
                t.extra.remove("failed");
                let sent = Sent { exchange: names.task_exchange(), routing_key: t.topic.clone() };
                let confirm = ch
                    .basic_publish(
                        sent.exchange.as_str().into(),
                        sent.routing_key.as_str().into(),
                        lapin::options::BasicPublishOptions { mandatory: true, immediate: false },
                        &t.to_json(),
                        properties(&t.id, "ebats.task"),
                    )
                    .await
                    .map_err(err("publish"))?;
                settle(&sent, confirm).await.map_err(|e| e.context(&format!("replaying task {}", t.id)))?;
                m.delivery.acker.ack(BasicAckOptions::default()).await.map_err(err("ack"))?;
                moved += 1;
                if id.is_some() {
                    break;
                }
            }
            let _ = ch.close(200, "replayed".into()).await;
            Ok(moved)
        })
    })
}

pub fn purge(settings: &Settings, topic: &str) -> Result<u32, BrokerError> {
    let names = Names::new(&settings.prefix);
    with_session(|s| {
        s.declare(settings, &[Decl::Failed(topic.to_string())])?;
        let ch = s.channel(settings)?;
        s.wait(settings.confirm_timeout, "purging the failed store", async {
            let n = ch
                .queue_purge(names.failed_queue(topic).as_str().into(), QueuePurgeOptions::default())
                .await
                .map_err(err("queue.purge"))?;
            let _ = ch.close(200, "purged".into()).await;
            Ok(n)
        })
    })
}
