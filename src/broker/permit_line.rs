//! The waiting line of a concurrency limit (`Names::permit_line`): how children waiting in place for
//! one of its permits get their turn from a child that keeps one.
//!
//! A child keeps a topic's permit across its tasks and takes it again right after giving it back;
//! another child asking every 20 to 200 ms would rarely find it free in between. So a child that waits
//! in place consumes the line (a queue; nothing is published to it but wakes), and a keeper that has
//! held a permit for a while asks the line how many consume it: with none it keeps the permit, with
//! some it gives the permit back, puts one wake on the line (the broker hands it to one of them) and
//! stands aside for a moment before it asks for a permit again. A woken child asks at once.
//!
//! The line only decides who asks first: which child holds a permit is still the permit's exclusive
//! queue alone (`broker::permit`). A wake lost or taken by a child that just stopped waiting costs a
//! turn, not a permit: the others still ask every 200 ms at most. The line is a classic queue that
//! the broker deletes a minute after its last use, and a wake nobody took within a second is dropped,
//! so a stale wake cannot pile up.

use futures_lite::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Consumer};

use super::publisher::{self, Outgoing};
use super::BrokerError;

/// A line nobody used for this long is deleted by the broker.
const UNUSED_MS: i32 = 60_000;
/// A wake no waiting child took within this long is dropped.
const WAKE_TTL_MS: i32 = 1_000;

/// Declares `line` (the same arguments everywhere, so any child may be the first); the number of
/// children consuming it: those waiting.
pub async fn declare(ch: &Channel, line: &str) -> Result<u32, BrokerError> {
    let mut args = FieldTable::default();
    args.insert("x-expires".into(), AMQPValue::LongInt(UNUSED_MS));
    args.insert("x-message-ttl".into(), AMQPValue::LongInt(WAKE_TTL_MS));
    let q = ch
        .queue_declare(line.into(), QueueDeclareOptions::default(), args)
        .await
        .map_err(|e| BrokerError::lapin(&format!("cannot declare the waiting line '{line}'"), &e))?;
    Ok(q.consumer_count())
}

/// Joins `line` (declared first): until [`leave`], this consumer counts as a waiting child and may be
/// handed a wake. Wakes are taken without acks: a child that dies with one only costs a turn.
pub async fn join(ch: &Channel, line: &str, tag: &str) -> Result<Consumer, BrokerError> {
    declare(ch, line).await?;
    ch.basic_consume(
        line.into(),
        tag.into(),
        BasicConsumeOptions { no_ack: true, ..Default::default() },
        FieldTable::default(),
    )
    .await
    .map_err(|e| BrokerError::lapin(&format!("cannot join the waiting line '{line}'"), &e))
}

/// Waits for a wake on the line joined (pending until one comes); false when the consumer ended.
pub async fn woken(consumer: &mut Consumer) -> bool {
    matches!(consumer.next().await, Some(Ok(_)))
}

/// Leaves the line: the broker counts this consumer no more (a wake it already sent is dropped here).
pub async fn leave(ch: &Channel, consumer: &Consumer) -> Result<(), BrokerError> {
    ch.basic_cancel(consumer.tag().as_str().into(), BasicCancelOptions::default())
        .await
        .map_err(|e| BrokerError::lapin("cannot leave a waiting line", &e))
}

/// Puts one wake on `line`: the broker gives it to one of the children consuming it. Not confirmed
/// (a hint); a line that does not exist drops it.
pub async fn wake(ch: &Channel, line: &str) -> Result<(), BrokerError> {
    let m = Outgoing {
        exchange: String::new(),
        routing_key: line.to_string(),
        body: Vec::new(),
        properties: BasicProperties::default(),
        mandatory: false,
    };
    publisher::send(ch, &m).await.map(|_| ())
}
