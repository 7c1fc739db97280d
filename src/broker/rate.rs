//! The counter queue of a rate limit: a sliding log of starts held by the broker (`flow::rate` says
//! what its arguments mean and why). Taking starts is a confirmed publish to the counter of one message
//! whose body has one byte per start (`flow::rate_block`: a process whose limit does not bind takes its
//! starts a block at a time); a negative confirm (the block does not fit, `x-max-length-bytes` with
//! `reject-publish`) means the limit allows no such block now. A refused block of several starts is
//! asked again at once as a single start.
//!
//! A counter is a classic, non-durable queue whatever `ebats.queue_type` says. Measured on RabbitMQ
//! 3.10 at 20 per second for 10 s: a classic counter let 200 start, never more than 20 in any second
//! (one process, and 4 processes of 2 workers); a quorum counter let 208 start with one process (at
//! most 21 in a second) and 219 with 4 (at most 24 in a second): its `reject-publish` lets one more in
//! per publisher racing for the last place, and its expiry is coarse (a start left the log from 850 ms
//! early to 880 ms late). A classic queue also refuses by bytes exactly: with 7 of 10 bytes held, a
//! message of 4 is refused and one of 3 accepted; a quorum queue accepted the 4 (measured on 3.10).
//! Non-durable, a counter whose node is lost is deleted with it and declared
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
use crate::flow::rate_block::Block;

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
    /// Starts taken ahead, per counter.
    blocks: HashMap<String, Block>,
}

/// Past this many counters known (per-key limits over many keys), the spent blocks and the
/// declarations are forgotten (a forgotten declaration is only made again).
const KNOWN_MAX: usize = 4096;

impl Counters {
    pub fn new() -> Counters {
        Counters::default()
    }

    /// Takes a start of the counter queue `queue` for `rate`: one taken ahead when one is left, else a
    /// block of them from the broker, declaring the counter as needed.
    pub fn take(&mut self, settings: &Settings, queue: &str, rate: &Rate) -> Result<Took, BrokerError> {
        let now = Instant::now();
        if self.blocks.get_mut(queue).is_some_and(|b| b.use_one(now)) {
            return Ok(Took::Started);
        }
        if self.blocks.len() >= KNOWN_MAX {
            self.blocks.retain(|_, b| !b.spent(now));
            self.declared.clear();
        }
        let want = self.blocks.entry(queue.to_string()).or_default().next_size(rate);
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
        let sent = Instant::now();
        let (ch, granted) = with_session(|s| {
            let conn = s.link(settings)?.connection.clone();
            s.wait(settings.confirm_timeout, "taking a start of a rate limit", async {
                let ch = match known {
                    Some(ch) => ch,
                    None => connection::confirmed_channel(&conn).await?,
                };
                if declare {
                    declare_counter(&ch, queue, rate).await?;
                }
                let mut granted = take_block(&ch, queue, rate, want).await?;
                if granted == 0 && want > 1 {
                    // Nearly full: a single start may still fit.
                    granted = take_block(&ch, queue, rate, 1).await?;
                }
                Ok((ch, granted))
            })
        })
        .inspect_err(|_| self.ch = None)?;
        self.ch = Some(ch);
        if declare {
            self.declared.insert(queue.to_string(), Instant::now());
        }
        let block = self.blocks.entry(queue.to_string()).or_default();
        if granted < want {
            // The block was refused (a single start may have been taken instead).
            block.refused();
        }
        if granted == 0 {
            self.full_since.entry(queue.to_string()).or_insert_with(Instant::now);
            return Ok(Took::Full);
        }
        block.taken(granted, sent, rate);
        self.full_since.remove(queue);
        Ok(Took::Started)
    }
}

/// Publishes a block of `n` starts to `queue` (declaring the counter again when it came back
/// unroutable): how many were logged, `n` or none.
async fn take_block(ch: &Channel, queue: &str, rate: &Rate, n: u32) -> Result<u32, BrokerError> {
    let took = match publish(ch, queue, n).await? {
        Some(took) => took,
        None => {
            // Unroutable: the counter was deleted since it was declared here.
            declare_counter(ch, queue, rate).await?;
            publish(ch, queue, n).await?.unwrap_or(Took::Full)
        }
    };
    Ok(if took == Took::Started { n } else { 0 })
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
    a.insert("x-max-length-bytes".into(), AMQPValue::LongLongInt(i64::from(rate::capacity(rate))));
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

/// Publishes a block of `n` starts (a body of `n` bytes) to `queue`; `None` when it came back unroutable.
async fn publish(ch: &Channel, queue: &str, n: u32) -> Result<Option<Took>, BrokerError> {
    let confirm = ch
        .basic_publish(
            ShortString::from(""),
            ShortString::from(queue),
            BasicPublishOptions { mandatory: true, immediate: false },
            &vec![b'.'; n as usize],
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
