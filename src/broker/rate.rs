//! The counter queue of a rate limit: a sliding log of starts held by the broker (`flow::rate` says
//! what its arguments mean and why). Taking a start is a confirmed publish of an empty message to the
//! counter; a negative confirm (the queue is full, `reject-publish`) means the limit allows no start now.
//!
//! A counter is a classic, non-durable queue whatever `ebats.queue_type` says. Measured on RabbitMQ
//! 3.10 at 20 per second for 10 s: a classic counter let 200 start, never more than 20 in any second
//! (one process, and 4 processes of 2 workers); a quorum counter let 208 start with one process (at
//! most 21 in a second) and 219 with 4 (at most 24 in a second): its `reject-publish` lets one more in
//! per publisher racing for the last place, and its expiry is coarse (a start left the log from 850 ms
//! early to 880 ms late). Non-durable, a counter whose node is lost is deleted with it and declared
//! again on the node the next take reaches: that window's starts are forgotten, so at most one window
//! may let twice the limit start; a durable classic queue would instead refuse every take until its
//! node came back.
//!
//! The takes go out on a confirm channel of their own on the session's connection: a refusal here is an
//! expected answer, not a reason to distrust the session's publishing channel. Declarations are cached
//! on that channel and made again before the counter could expire (`x-expires` counts only
//! declarations as use), and after a publish came back unroutable (the counter was deleted). A counter
//! found full for longer than its window cannot be full: the channel is replaced, in case it refuses
//! everything.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};

use super::connection;
use super::current::with_session;
use super::error::BrokerError;
use crate::config::Settings;
use crate::flow::limits::Rate;
use crate::flow::rate;

/// What taking a start gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Took {
    /// A start was logged: the task may start.
    Started,
    /// The log is full: no start now.
    Full,
}

/// This process's channel for rate counters and what it declared.
#[derive(Default)]
pub struct Counters {
    ch: Option<Channel>,
    /// Counters declared on `ch`, and when.
    declared: HashMap<String, Instant>,
    /// Counters found full, since when (cleared by a start).
    full_since: HashMap<String, Instant>,
}

impl Counters {
    pub fn new() -> Counters {
        Counters::default()
    }

    /// Takes a start of the counter queue `queue` for `rate`, declaring it as needed.
    pub fn take(&mut self, settings: &Settings, queue: &str, rate: &Rate) -> Result<Took, BrokerError> {
        if self.ch.as_ref().is_some_and(|c| !c.status().connected()) {
            self.ch = None;
        }
        let stuck = self.full_since.get(queue).is_some_and(|t| rate::channel_stuck(rate, t.elapsed()));
        if stuck {
            crate::log::info(&format!("rate counter '{queue}' refused for longer than its window: new channel"));
            self.full_since.clear();
            if let Some(ch) = self.ch.take() {
                close_later(ch);
            }
        }
        if self.ch.is_none() {
            self.declared.clear();
        }
        let declare = self.declared.get(queue).is_none_or(|t| t.elapsed() >= rate::redeclare_after(rate));
        let known = self.ch.clone();
        let (ch, took) = with_session(|s| {
            let conn = s.link(settings)?.connection.clone();
            s.wait(settings.confirm_timeout, "taking a start of a rate limit", async {
                let ch = match known {
                    Some(ch) => ch,
                    None => connection::confirmed_channel(&conn).await?,
                };
                if declare {
                    declare_counter(&ch, queue, rate).await?;
                }
                let took = match publish(&ch, queue).await? {
                    Some(took) => took,
                    None => {
                        // Unroutable: the counter was deleted since it was declared here.
                        declare_counter(&ch, queue, rate).await?;
                        publish(&ch, queue).await?.unwrap_or(Took::Full)
                    }
                };
                Ok((ch, took))
            })
        })
        .inspect_err(|_| self.ch = None)?;
        self.ch = Some(ch);
        if declare {
            self.declared.insert(queue.to_string(), Instant::now());
        }
        match took {
            Took::Started => {
                self.full_since.remove(queue);
            }
            Took::Full => {
                self.full_since.entry(queue.to_string()).or_insert_with(Instant::now);
            }
        }
        Ok(took)
    }
}

/// Closes a channel in the background (bounded), on the session's runtime.
fn close_later(ch: Channel) {
    let _ = with_session(|s| {
        s.handle().spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(1), ch.close(200, "renewed".into())).await;
        });
        Ok(())
    });
}

/// The arguments of a counter queue of `rate` (a classic queue: see the module header).
pub fn counter_args(rate: &Rate) -> FieldTable {
    let mut a = FieldTable::default();
    a.insert("x-max-length".into(), AMQPValue::LongLongInt(i64::from(rate::capacity(rate))));
    a.insert("x-overflow".into(), AMQPValue::LongString(LongString::from("reject-publish")));
    a.insert("x-message-ttl".into(), AMQPValue::LongLongInt(rate::ttl_ms(rate) as i64));
    a.insert("x-expires".into(), AMQPValue::LongLongInt(rate::expires_ms(rate) as i64));
    a
}

async fn declare_counter(ch: &Channel, queue: &str, rate: &Rate) -> Result<(), BrokerError> {
    ch.queue_declare(
        ShortString::from(queue),
        QueueDeclareOptions { durable: false, ..Default::default() },
        counter_args(rate),
    )
    .await
    .map(|_| ())
    .map_err(|e| BrokerError::lapin(&format!("cannot declare the rate counter '{queue}'"), &e))
}

/// Publishes one start to `queue`; `None` when it came back unroutable.
async fn publish(ch: &Channel, queue: &str) -> Result<Option<Took>, BrokerError> {
    let confirm = ch
        .basic_publish(
            ShortString::from(""),
            ShortString::from(queue),
            BasicPublishOptions { mandatory: true, immediate: false },
            &[],
            BasicProperties::default().with_delivery_mode(1),
        )
        .await
        .map_err(|e| BrokerError::lapin("publish to a rate counter failed", &e))?;
    match confirm.await.map_err(|e| BrokerError::lapin("publish to a rate counter failed", &e))? {
        Confirmation::Ack(None) => Ok(Some(Took::Started)),
        Confirmation::Ack(Some(_)) => Ok(None),
        Confirmation::Nack(_) => Ok(Some(Took::Full)),
        Confirmation::NotRequested => Err(BrokerError::new(
            super::error::ErrorKind::Runtime,
            "publisher confirms are not enabled on the rate channel",
        )),
    }
}
