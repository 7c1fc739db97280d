//! Reading a RabbitMQ stream over AMQP, for every reader of ours (the schedule stream, the processes
//! stream, the execution history): a consumer with a prefetch and manual acks (what streams need),
//! started at an offset, and reading until the caller has seen what it waits for (its own marker),
//! acking in runs of half the prefetch.

use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Consumer};

use super::{BrokerError, ErrorKind};

/// Where a reader starts (`x-stream-offset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    First,
    Next,
    /// From the chunk of this second (epoch seconds) on.
    Time(u64),
}

/// Starts consuming `stream` from `offset`, `prefetch` deliveries ahead.
pub async fn open(
    ch: &Channel,
    stream: &str,
    offset: Offset,
    prefetch: u16,
    tag: &str,
) -> Result<Consumer, BrokerError> {
    ch.basic_qos(prefetch, BasicQosOptions::default()).await.map_err(|e| BrokerError::lapin("basic.qos failed", &e))?;
    let offset = match offset {
        Offset::First => AMQPValue::LongString(LongString::from("first")),
        Offset::Next => AMQPValue::LongString(LongString::from("next")),
        Offset::Time(secs) => AMQPValue::Timestamp(secs),
    };
    let mut args = FieldTable::default();
    args.insert("x-stream-offset".into(), offset);
    ch.basic_consume(stream.into(), tag.into(), BasicConsumeOptions::default(), args)
        .await
        .map_err(|e| BrokerError::lapin(&format!("cannot read the stream '{stream}'"), &e))
}

/// Gives each delivery of `consumer` to `each` until `each` says it was the last one wanted (true);
/// deliveries are acked in runs of half of `prefetch`, and the last one at once. `what` names the
/// stream in errors.
pub async fn read_until(
    ch: &Channel,
    consumer: &mut Consumer,
    prefetch: u16,
    what: &str,
    mut each: impl FnMut(&Delivery) -> bool,
) -> Result<(), BrokerError> {
    let mut unacked = 0u16;
    loop {
        let d = match consumer.next().await {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(BrokerError::lapin(&format!("reading the {what} failed"), &e)),
            None => return Err(BrokerError::new(ErrorKind::ConnectionLost, format!("the {what} reader was closed"))),
        };
        unacked += 1;
        let done = each(&d);
        if unacked >= prefetch / 2 || done {
            ch.basic_ack(d.delivery_tag, BasicAckOptions { multiple: true })
                .await
                .map_err(|e| BrokerError::lapin("ack failed", &e))?;
            unacked = 0;
        }
        if done {
            return Ok(());
        }
    }
}
