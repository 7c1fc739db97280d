//! Settling a publisher confirm: acked, returned as unroutable, or refused; and the deferred
//! publishes that wait for theirs.

use std::future::Future;
use std::pin::Pin;

use lapin::Confirmation;

use super::error::{BrokerError, ErrorKind};

/// What a confirm failure message needs to name the message.
pub struct Sent {
    pub exchange: String,
    pub routing_key: String,
}

/// A publish in flight: resolves to its confirm once its frames are written.
pub type Publishing<'a> = Pin<Box<dyn Future<Output = Result<lapin::PublisherConfirm, BrokerError>> + Send + 'a>>;

/// A deferred publish waiting for its confirm to be settled.
pub struct Pending {
    pub sent: Sent,
    pub publishing: Publishing<'static>,
}

/// Waits for the broker's confirm of one publish.
pub async fn settle(m: &Sent, c: lapin::PublisherConfirm) -> Result<(), BrokerError> {
    match c.await.map_err(|e| BrokerError::lapin("publish failed", &e))? {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(ret)) => Err(BrokerError::new(
            ErrorKind::Unroutable,
            format!(
                "message to exchange '{}' with routing key '{}' is unroutable ({} {}): no queue is bound for it",
                m.exchange, m.routing_key, ret.reply_code, ret.reply_text
            ),
        )),
        Confirmation::Nack(_) => Err(BrokerError::new(
            ErrorKind::Nacked,
            format!("the broker refused the message to exchange '{}' (negative confirm)", m.exchange),
        )),
        Confirmation::NotRequested => {
            Err(BrokerError::new(ErrorKind::Runtime, "publisher confirms are not enabled on this channel"))
        }
    }
}
