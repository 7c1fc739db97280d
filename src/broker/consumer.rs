//! A consumer for async code, on a channel the caller holds: opening it (prefetch, then consume),
//! taking its next delivery, acking, and counting what waits in a queue. Used by the stream reader,
//! the process's subscriptions and the cron leader (which runs on its own connection, in a task of the
//! session's runtime), so no AMQP verb of consuming is written twice.

use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};

use super::{BrokerError, ErrorKind};

/// Starts consuming `queue` on `ch`, `prefetch` deliveries ahead, with manual acks; `args` are the
/// consume's arguments (a stream's offset). `context` starts the error's message.
pub async fn open(
    ch: &Channel,
    queue: &str,
    prefetch: u16,
    tag: &str,
    args: FieldTable,
    context: &str,
) -> Result<Consumer, BrokerError> {
    ch.basic_qos(prefetch, BasicQosOptions::default()).await.map_err(|e| BrokerError::lapin("basic.qos failed", &e))?;
    ch.basic_consume(queue.into(), tag.into(), BasicConsumeOptions::default(), args)
        .await
        .map_err(|e| BrokerError::lapin(context, &e))
}

/// The next delivery of `consumer`; its end (channel or connection closed) is `ConnectionLost`.
/// `what` names the consumer in errors.
pub async fn next(consumer: &mut Consumer, what: &str) -> Result<Delivery, BrokerError> {
    match consumer.next().await {
        Some(Ok(d)) => Ok(d),
        Some(Err(e)) => Err(BrokerError::lapin(&format!("reading the {what} failed"), &e)),
        None => Err(BrokerError::new(ErrorKind::ConnectionLost, format!("the {what} reader was closed"))),
    }
}

/// Acks the delivery `tag` on `ch` (with every one before it when `multiple`).
pub async fn ack(ch: &Channel, tag: u64, multiple: bool) -> Result<(), BrokerError> {
    ch.basic_ack(tag, BasicAckOptions { multiple }).await.map_err(|e| BrokerError::lapin("ack failed", &e))
}

/// How many messages wait in `queue` (a passive declare: nothing is created; a missing queue is
/// `NotFound` and closes the channel).
pub async fn waiting(ch: &Channel, queue: &str) -> Result<u32, BrokerError> {
    Ok(counts(ch, queue).await?.0)
}

/// The ready messages and the consumers of `queue` (a passive declare: nothing is created; a missing
/// queue is `NotFound` and closes the channel). AMQP tells nothing of the messages delivered and not
/// yet acked.
pub async fn counts(ch: &Channel, queue: &str) -> Result<(u32, u32), BrokerError> {
    let q = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() },
            FieldTable::default(),
        )
        .await
        .map_err(|e| BrokerError::lapin(&format!("queue '{queue}'"), &e))?;
    Ok((q.message_count(), q.consumer_count()))
}
