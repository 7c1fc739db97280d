//! Publishing on the session's confirm channel: confirmed (one message or many, with one round of
//! confirms), and deferred (handed to the connection now, confirms awaited by `flush`).

use std::cell::Cell;

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel};

use super::confirm::{settle, settle_to, Failed, Lot, Pending, Publishing, Sent};
use super::error::{BrokerError, ErrorKind};
use super::session::Session;
use super::topology::Decl;
use crate::config::Settings;

/// A message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub exchange: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    pub properties: BasicProperties,
    /// Unroutable messages come back and the publish fails instead of vanishing.
    pub mandatory: bool,
}

impl Outgoing {
    pub fn sent(&self) -> Sent {
        Sent {
            exchange: self.exchange.clone(),
            routing_key: self.routing_key.clone(),
            id: self.properties.message_id().as_ref().map(|s| s.to_string()),
            kind: self.properties.kind().as_ref().map(|s| s.to_string()),
        }
    }
}

impl Session {
    /// Declares `decls` (once per connection) and publishes `messages`, confirmed: tried once more
    /// after a dead link or a refusal, and what was unroutable (a queue deleted since it was declared
    /// on this connection) sent again after declaring anew. `handed` is set once messages start to be
    /// handed to the connection. What `dispatch::send` does, on any session.
    pub fn publish_declared(
        &mut self,
        settings: &Settings,
        decls: &[Decl],
        messages: &[Outgoing],
        handed: &Cell<bool>,
    ) -> Result<(), BrokerError> {
        let attempt = |s: &mut Session| {
            s.declare(settings, decls)?;
            handed.set(true);
            s.publish_routed(settings, messages)
        };
        let unroutable = match attempt(self) {
            // Not after a timeout: the message may have been stored, and a second wait would
            // double the time the caller waits. After a refusal, on a new channel (see
            // `Session::publish_refused`).
            Err(e) if retried_once(e.kind()) => attempt(self)?,
            r => r?,
        };
        if unroutable.is_empty() {
            return Ok(());
        }
        if decls.is_empty() {
            return Err(unroutable.into_iter().next().expect("not empty").1);
        }
        self.forget_declarations();
        self.declare(settings, decls)?;
        let again: Vec<Outgoing> = unroutable.iter().map(|(i, _)| messages[*i].clone()).collect();
        handed.set(true);
        self.publish(settings, &again)
    }

    /// Publishes every message and returns once the broker confirmed all of them.
    pub fn publish(&mut self, settings: &Settings, messages: &[Outgoing]) -> Result<(), BrokerError> {
        match self.publish_routed(settings, messages)?.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// Publishes every message and waits for all confirms. Messages the broker returned as
    /// unroutable are listed (index and error); any other failure is the error.
    pub fn publish_routed(
        &mut self,
        settings: &Settings,
        messages: &[Outgoing],
    ) -> Result<Vec<(usize, BrokerError)>, BrokerError> {
        let ch = self.link(settings)?.publisher.clone();
        let r = self.wait(settings.confirm_timeout, "waiting for the broker to confirm a publish", async {
            let confirms = send_all(&ch, messages).await?;
            let mut unroutable = Vec::new();
            for (i, (m, c)) in messages.iter().zip(confirms).enumerate() {
                match settle_to(&m.exchange, &m.routing_key, c).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::Unroutable => unroutable.push((i, e)),
                    Err(e) => return Err(e),
                }
            }
            Ok(unroutable)
        });
        self.after_error(&r);
        r
    }

    /// Hands the messages to the connection and returns at once; their confirms are awaited by
    /// [`Session::flush`] of the same `lot` (for the request's, at the latest when it ends).
    pub fn publish_deferred(
        &mut self,
        lot: Lot,
        settings: &Settings,
        messages: &[Outgoing],
    ) -> Result<(), BrokerError> {
        let ch = self.link(settings)?.publisher.clone();
        let mut queued = Vec::with_capacity(messages.len());
        let r = self.wait(settings.confirm_timeout, "handing a message to the connection", async {
            // Only the first poll of each publish, which queues its frames: waiting until the I/O
            // thread has written them is left to `flush`, with the confirm.
            for m in messages {
                let (ch, owned) = (ch.clone(), m.clone());
                let mut publishing: Publishing<'static> = Box::pin(async move { send_owned(&ch, owned).await });
                let state: Publishing<'static> = match futures_lite::future::poll_once(publishing.as_mut()).await {
                    Some(Err(e)) => return Err(e),
                    Some(Ok(confirm)) => Box::pin(async move { Ok(confirm) }),
                    None => publishing,
                };
                queued.push(Pending { lot, sent: m.sent(), publishing: state });
            }
            Ok(())
        });
        // What was handed over before a failure is in flight: flush still awaits it.
        self.pending.append(&mut queued);
        self.after_error(&r);
        r
    }

    /// Hands one message to the connection and returns at once; its confirm is awaited on the
    /// session's runtime, and `done` is called there with the outcome. For what must not wait for
    /// the broker and must not fail the caller (the execution history).
    pub fn publish_detached(
        &mut self,
        settings: &Settings,
        m: &Outgoing,
        done: impl FnOnce(Result<(), BrokerError>) + Send + 'static,
    ) -> Result<(), BrokerError> {
        let ch = self.link(settings)?.publisher.clone();
        let rt = self.handle();
        let (sent, owned) = (m.sent(), m.clone());
        let r = self.wait(settings.confirm_timeout, "handing a message to the connection", async move {
            let mut publishing: Publishing<'static> = Box::pin(async move { send_owned(&ch, owned).await });
            // The first poll queues the frames, in order with what this thread publishes next.
            let first = futures_lite::future::poll_once(publishing.as_mut()).await;
            if let Some(Err(e)) = first {
                return Err(e);
            }
            rt.spawn(async move {
                let confirm = match first {
                    Some(r) => r,
                    None => publishing.await,
                };
                done(match confirm {
                    Ok(c) => settle(&sent, c).await,
                    Err(e) => Err(e),
                })
            });
            Ok(())
        });
        self.after_error(&r);
        r
    }

    /// Messages of `lot` published deferred whose confirm has not been awaited yet.
    pub fn pending(&self, lot: Lot) -> usize {
        self.pending.iter().filter(|p| p.lot == lot).count()
    }

    /// Awaits the confirms of every deferred publish of `lot`; returns how many were confirmed and
    /// the publishes that failed, each with its error.
    pub fn flush(&mut self, lot: Lot, settings: &Settings) -> (usize, Vec<Failed>) {
        let (pending, others): (Vec<Pending>, Vec<Pending>) =
            std::mem::take(&mut self.pending).into_iter().partition(|p| p.lot == lot);
        self.pending = others;
        if pending.is_empty() {
            return (0, Vec::new());
        }
        let total = pending.len();
        let mut failures = Vec::new();
        for Pending { sent, publishing, .. } in pending {
            let r =
                self.wait(settings.confirm_timeout, "waiting for the broker to confirm a deferred publish", async {
                    settle(&sent, publishing.await?).await
                });
            if let Err(error) = r {
                failures.push(Failed::after_handing_over(sent, error));
            }
        }
        if failures.iter().any(|f| f.error.kind() == ErrorKind::Nacked) {
            self.publish_refused();
        }
        if !failures.is_empty() && !self.is_connected() {
            self.disconnect();
        }
        (total - failures.len(), failures)
    }

    /// After a failed publish: a connection that broke, timed out or is gone is dropped, so the
    /// next call connects anew; a channel on which the broker refused a message is replaced.
    fn after_error<T>(&mut self, r: &Result<T, BrokerError>) {
        if let Err(e) = r {
            if e.kind() == ErrorKind::Nacked {
                self.publish_refused();
            }
            if e.kind().breaks_connection() || !self.is_connected() {
                self.disconnect();
            }
        }
    }
}

/// Publishes one message on `ch` and returns its confirm, not awaited.
pub(crate) async fn send(ch: &Channel, m: &Outgoing) -> Result<lapin::PublisherConfirm, BrokerError> {
    ch.basic_publish(
        m.exchange.as_str().into(),
        m.routing_key.as_str().into(),
        BasicPublishOptions { mandatory: m.mandatory, immediate: false },
        &m.body,
        m.properties.clone(),
    )
    .await
    .map_err(|e| BrokerError::lapin("publish failed", &e))
}

/// [`send`] for a message of its own: its parts move into the frames instead of being copied.
async fn send_owned(ch: &Channel, m: Outgoing) -> Result<lapin::PublisherConfirm, BrokerError> {
    let Outgoing { exchange, routing_key, body, properties, mandatory } = m;
    ch.basic_publish(
        exchange.into(),
        routing_key.into(),
        BasicPublishOptions { mandatory, immediate: false },
        &body,
        properties,
    )
    .await
    .map_err(|e| BrokerError::lapin("publish failed", &e))
}

/// Publishes all messages, in order. The first poll of a publish queues its frames (so the
/// delivery tags follow the messages); awaiting each publish before starting the next would wait
/// for the I/O thread to write every message in turn.
async fn send_all(ch: &Channel, messages: &[Outgoing]) -> Result<Vec<lapin::PublisherConfirm>, BrokerError> {
    let mut sending: Vec<Publishing> = messages.iter().map(|m| Box::pin(send(ch, m)) as Publishing).collect();
    let mut first = Vec::with_capacity(sending.len());
    for f in sending.iter_mut() {
        first.push(futures_lite::future::poll_once(f.as_mut()).await);
    }
    let mut confirms = Vec::with_capacity(sending.len());
    for (f, ready) in sending.iter_mut().zip(first) {
        confirms.push(match ready {
            Some(r) => r?,
            None => f.await?,
        });
    }
    Ok(confirms)
}

/// Errors after which a send is tried once more (on a new connection or channel): the connection
/// or channel was found dead, or the broker refused the message on a channel it may refuse
/// everything on.
pub fn retried_once(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::ConnectionLost | ErrorKind::ChannelClosed { .. } | ErrorKind::Nacked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_is_tried_again_after_a_dead_link_or_a_refusal_never_after_a_timeout() {
        let table = [
            (ErrorKind::ConnectionLost, true),
            (ErrorKind::ChannelClosed { reply_code: 504 }, true),
            (ErrorKind::Nacked, true),
            // The message may have been stored, and a second wait doubles the caller's.
            (ErrorKind::Timeout, false),
            (ErrorKind::Unroutable, false),
            (ErrorKind::PreconditionFailed, false),
            (ErrorKind::Stopped, false),
        ];
        for (kind, retried) in table {
            assert_eq!(retried_once(kind), retried, "{kind:?}");
        }
    }
}
