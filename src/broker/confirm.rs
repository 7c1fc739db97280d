//! Settling a publisher confirm: acked, returned as unroutable, or refused; and the deferred
//! publishes that wait for theirs.

use std::future::Future;
use std::pin::Pin;

use lapin::Confirmation;

use super::error::{BrokerError, ErrorKind};

/// What a confirm failure message needs to name the message, and what a caller needs to know
/// which publish failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub exchange: String,
    pub routing_key: String,
    /// The message's id (its `message_id` property).
    pub id: Option<String>,
    /// The message's `type` property: `ebats.event`, `ebats.task`, ...
    pub kind: Option<String>,
}

impl Sent {
    /// The event's name (the routing key of an event).
    pub fn event(&self) -> Option<&str> {
        (self.kind.as_deref() == Some(crate::wire::KIND_EVENT)).then_some(self.routing_key.as_str())
    }

    /// The task's topic: the routing key of a ready task, its last word for a delayed one.
    pub fn topic(&self) -> Option<&str> {
        (self.kind.as_deref() == Some(crate::wire::KIND_TASK))
            .then(|| self.routing_key.rsplit('.').next().unwrap_or(&self.routing_key))
    }

    /// "event 'order_paied' id=...", "task of topic 'demo' id=...", "message to exchange 'x' id=...".
    pub fn describe(&self) -> String {
        let id = self.id.as_deref().unwrap_or("?");
        match (self.event(), self.topic()) {
            (Some(e), _) => format!("event '{}' id={id}", crate::rules::printable(e)),
            (_, Some(t)) => format!("task of topic '{t}' id={id}"),
            _ => format!("message to exchange '{}' id={id}", crate::rules::printable(&self.exchange)),
        }
    }
}

/// A publish that failed, and why.
#[derive(Debug, Clone)]
pub struct Failed {
    pub sent: Sent,
    pub error: BrokerError,
    /// It was handed to the broker and no answer came (a timeout, the connection or channel lost
    /// while waiting) or a refusal: the broker may have stored it all the same.
    pub maybe_stored: bool,
}

impl Failed {
    /// A publish whose message was handed over and then failed with `error`.
    pub fn after_handing_over(sent: Sent, error: BrokerError) -> Failed {
        let maybe_stored = error.kind().may_leave_publish_stored();
        Failed { sent, error, maybe_stored }
    }
}

/// A publish in flight: resolves to its confirm once its frames are written.
pub type Publishing<'a> = Pin<Box<dyn Future<Output = Result<lapin::PublisherConfirm, BrokerError>> + Send + 'a>>;

/// Whose deferred publishes these are, each kind awaited on its own: the PHP request's (awaited by
/// `flush`, at the latest when the request ends), a worker child's records that must be confirmed
/// before the acks that cover them (the group ends: awaited before each ack), or a worker child's
/// execution records (settled as their answers come, `Session::settle_ready`; awaited as it leaves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lot {
    Request,
    BeforeAcks,
    History,
}

/// A deferred publish waiting for its confirm to be settled.
pub struct Pending {
    pub lot: Lot,
    pub sent: Sent,
    pub answer: Answer,
}

/// Where a deferred publish's answer comes from.
pub enum Answer {
    /// The lapin channel's: the publish, resolving to its confirm.
    Lapin(Publishing<'static>),
    /// The connection publishing on this thread (`broker::direct`): its serial and the publish's id.
    Direct { serial: u64, id: u64 },
}

/// Waits for the broker's confirm of one publish.
pub async fn settle(m: &Sent, c: lapin::PublisherConfirm) -> Result<(), BrokerError> {
    judge(&m.exchange, &m.routing_key, c.await)
}

/// What the broker's answer to one publish to `exchange` with `routing_key` means.
pub fn judge(exchange: &str, routing_key: &str, answer: Result<Confirmation, lapin::Error>) -> Result<(), BrokerError> {
    match answer.map_err(|e| BrokerError::lapin("publish failed", &e))? {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(ret)) => Err(unroutable(exchange, routing_key, ret.reply_code, ret.reply_text.as_str())),
        Confirmation::Nack(_) => Err(refused(exchange)),
        Confirmation::NotRequested => {
            Err(BrokerError::new(ErrorKind::Runtime, "publisher confirms are not enabled on this channel"))
        }
    }
}

/// A mandatory message the broker returned with `code` and `text`: no queue is bound for it.
pub fn unroutable(exchange: &str, routing_key: &str, code: u16, text: &str) -> BrokerError {
    BrokerError::new(
        ErrorKind::Unroutable,
        format!(
            "message to exchange '{exchange}' with routing key '{routing_key}' is unroutable ({code} {text}): no queue is bound for it"
        ),
    )
}

/// A message the broker refused with a negative confirm.
pub fn refused(exchange: &str) -> BrokerError {
    BrokerError::new(
        ErrorKind::Nacked,
        format!("the broker refused the message to exchange '{exchange}' (negative confirm)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(kind: &str, routing_key: &str) -> Sent {
        Sent {
            exchange: "p.x".into(),
            routing_key: routing_key.into(),
            id: Some("abc".into()),
            kind: Some(kind.into()),
        }
    }

    #[test]
    fn what_an_answer_means() {
        let kind = |a| judge("p.x", "k", a).map_err(|e| e.kind());
        assert_eq!(kind(Ok(Confirmation::Ack(None))), Ok(()));
        assert_eq!(kind(Ok(Confirmation::Nack(None))), Err(ErrorKind::Nacked));
        assert_eq!(kind(Ok(Confirmation::NotRequested)), Err(ErrorKind::Runtime));
    }

    #[test]
    fn a_failed_publish_says_what_it_was() {
        let e = sent(crate::wire::KIND_EVENT, "order.paied");
        assert_eq!((e.event(), e.topic()), (Some("order.paied"), None));
        assert_eq!(e.describe(), "event 'order.paied' id=abc");
        let t = sent(crate::wire::KIND_TASK, "demo");
        assert_eq!((t.event(), t.topic()), (None, Some("demo")));
        assert_eq!(t.describe(), "task of topic 'demo' id=abc");
        let delayed = sent(crate::wire::KIND_TASK, &crate::broker::names::delay_routing_key(10, "demo"));
        assert_eq!(delayed.topic(), Some("demo"), "a delayed task's topic is the last word of its key");
        let m = Sent { id: None, ..sent("ebats.message", "k") };
        assert_eq!((m.event(), m.topic()), (None, None));
        assert_eq!(m.describe(), "message to exchange 'p.x' id=?");
    }
}
