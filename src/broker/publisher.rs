//! Publishing on the session's confirm channel: confirmed (one message or many, with one round of
//! confirms), and deferred (handed to the connection now, confirms awaited by `flush`).

use std::cell::Cell;

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel};

use super::confirm::{judge, Answer, Failed, Lot, Pending, Publishing, Sent};
use super::error::{BrokerError, ErrorKind};
use super::last_first::{last_first, poll_quietly};
use super::session::{closed_unanswered, Session};
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
        let Some(ch) = self.publishing_on(settings)? else {
            let r = self.publish_direct(settings, messages);
            self.after_direct(&r);
            return r;
        };
        let r = self.wait(settings.confirm_timeout, "waiting for the broker to confirm a publish", async {
            let mut confirms = send_all(&ch, messages).await?;
            let mut answers: Vec<_> = confirms.iter().map(|_| None).collect();
            last_first(&mut confirms, |i, a| answers[i] = Some(a)).await;
            let mut unroutable = Vec::new();
            for (i, (m, a)) in messages.iter().zip(answers).enumerate() {
                match judge(&m.exchange, &m.routing_key, a.expect("every confirm awaited")) {
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

    /// [`Session::publish_routed`] on the direct connection: one write, then this thread reads the
    /// answers itself.
    fn publish_direct(
        &mut self,
        settings: &Settings,
        messages: &[Outgoing],
    ) -> Result<Vec<(usize, BrokerError)>, BrokerError> {
        let t = settings.confirm_timeout;
        let d = self.direct.as_mut().expect("called with a direct connection");
        let ids = d.send(messages, t)?;
        let waited = d.wait(&ids, t, "waiting for the broker to confirm a publish");
        // Every answer taken, so none is left behind whatever the outcome.
        let answers: Vec<_> = ids.iter().map(|id| d.take(*id)).collect();
        waited?;
        let mut unroutable = Vec::new();
        for (i, a) in answers.into_iter().enumerate() {
            match a.expect("every publish answered") {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Unroutable => unroutable.push((i, e)),
                Err(e) => return Err(e),
            }
        }
        Ok(unroutable)
    }

    /// Hands the messages to the connection and returns at once; their confirms are awaited by
    /// [`Session::flush`] of the same `lot` (for the request's, at the latest when it ends).
    pub fn publish_deferred(
        &mut self,
        lot: Lot,
        settings: &Settings,
        messages: &[Outgoing],
    ) -> Result<(), BrokerError> {
        let Some(ch) = self.publishing_on(settings)? else {
            let d = self.direct.as_mut().expect("publishing on the direct connection");
            let serial = d.serial();
            let r = d.send(messages, settings.confirm_timeout).map(|ids| {
                for (m, id) in messages.iter().zip(ids) {
                    self.pending.push(Pending { lot, sent: m.sent(), answer: Answer::Direct { serial, id } });
                }
            });
            self.after_direct(&r);
            return r;
        };
        let mut queued = Vec::with_capacity(messages.len());
        let r = self.wait(settings.confirm_timeout, "handing a message to the connection", async {
            // Only the first poll of each publish, which queues its frames: waiting until the I/O
            // thread has written them is left to `flush`, with the confirm. A quiet poll: the
            // write, when done, does not wake this thread (it is not waiting for it).
            for m in messages {
                let (ch, owned) = (ch.clone(), m.clone());
                let mut publishing: Publishing<'static> = Box::pin(async move { send_owned(&ch, owned).await });
                let state: Publishing<'static> = match poll_quietly(publishing.as_mut()) {
                    Some(Err(e)) => return Err(e),
                    Some(Ok(confirm)) => Box::pin(async move { Ok(confirm) }),
                    None => publishing,
                };
                queued.push(Pending { lot, sent: m.sent(), answer: Answer::Lapin(state) });
            }
            Ok(())
        });
        // What was handed over before a failure is in flight: flush still awaits it.
        self.pending.append(&mut queued);
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
        self.flush_where(lot, settings, |_| true)
    }

    /// Awaits the confirm of the deferred publish of `lot` whose message id is `id` (the others wait
    /// on); as [`Session::flush`]: 1 when it was confirmed, or its failure (neither: no such publish
    /// waits).
    pub fn flush_one(&mut self, lot: Lot, settings: &Settings, id: &str) -> (usize, Vec<Failed>) {
        self.flush_where(lot, settings, |sent| sent.id.as_deref() == Some(id))
    }

    /// [`Session::flush`] of the publishes of `lot` that `which` takes.
    fn flush_where(&mut self, lot: Lot, settings: &Settings, which: impl Fn(&Sent) -> bool) -> (usize, Vec<Failed>) {
        let (pending, others): (Vec<Pending>, Vec<Pending>) =
            std::mem::take(&mut self.pending).into_iter().partition(|p| p.lot == lot && which(&p.sent));
        self.pending = others;
        if pending.is_empty() {
            return (0, Vec::new());
        }
        let total = pending.len();
        let (direct, pending): (Vec<Pending>, Vec<Pending>) =
            pending.into_iter().partition(|p| matches!(p.answer, Answer::Direct { .. }));
        let mut failures = self.flush_direct(settings, direct);
        if pending.is_empty() {
            return self.flushed(total, failures);
        }
        let (sent, mut publishing): (Vec<Sent>, Vec<Publishing>) = pending
            .into_iter()
            .map(|p| match p.answer {
                Answer::Lapin(f) => (p.sent, f),
                Answer::Direct { .. } => unreachable!("partitioned above"),
            })
            .unzip();
        // One wait for the lot, taken a slice at a time, the last of each step first (see
        // `last_first`): the thread is woken about twice a slice. It times out only after the confirm
        // timeout without a slice answered, so a long lot is never cut short while the broker answers.
        let mut answers: Vec<Option<Result<(), BrokerError>>> = sent.iter().map(|_| None).collect();
        let progress = Cell::new(0);
        let what = "waiting for the broker to confirm a deferred publish";
        let r = self.wait_progressing(settings.confirm_timeout, what, &progress, async {
            for (n, slice) in publishing.chunks_mut(FLUSH_SLICE).enumerate() {
                let base = n * FLUSH_SLICE;
                let mut written: Vec<Option<lapin::PublisherConfirm>> = slice.iter().map(|_| None).collect();
                last_first(slice, |i, w| match w {
                    Ok(c) => written[i] = Some(c),
                    Err(e) => answers[base + i] = Some(Err(e)),
                })
                .await;
                let (mut index, mut confirms) = (Vec::new(), Vec::new());
                for (i, c) in written.into_iter().enumerate() {
                    if let Some(c) = c {
                        index.push(base + i);
                        confirms.push(c);
                    }
                }
                last_first(&mut confirms, |j, a| {
                    let i = index[j];
                    answers[i] = Some(judge(&sent[i].exchange, &sent[i].routing_key, a));
                })
                .await;
                progress.set(progress.get() + 1);
            }
            Ok(())
        });
        for (sent, answer) in sent.into_iter().zip(answers) {
            let error = match answer {
                Some(Ok(())) => continue,
                Some(Err(e)) => e,
                // Unanswered when the wait ended: its timeout or stop.
                None => r.clone().expect_err("a wait that ended well answered every publish"),
            };
            failures.push(Failed::after_handing_over(sent, error));
        }
        self.flushed(total, failures)
    }

    /// Settles the deferred publishes of `lot` whose answers are already in, and leaves the others
    /// waiting: returns the confirmed ones and the failures. Never waits for the broker: on a direct
    /// connection it is one read that does not block, on this thread; on the lapin channel, one poll
    /// of each publish on the runtime. For what is confirmed off the task path (the execution
    /// history), without a thread woken for each answer.
    pub fn settle_ready(&mut self, lot: Lot, settings: &Settings) -> (Vec<Sent>, Vec<Failed>) {
        let (mine, others): (Vec<Pending>, Vec<Pending>) =
            std::mem::take(&mut self.pending).into_iter().partition(|p| p.lot == lot);
        self.pending = others;
        let (mut confirmed, mut failures) = (Vec::new(), Vec::new());
        let mut put = |sent: Sent, r: Result<(), BrokerError>| match r {
            Ok(()) => confirmed.push(sent),
            Err(e) => failures.push(Failed::after_handing_over(sent, e)),
        };
        let serial = self.direct.as_ref().map(|d| d.serial());
        let on_direct = mine.iter().any(|p| matches!(p.answer, Answer::Direct { serial: s, .. } if Some(s) == serial));
        if let (true, Some(d)) = (on_direct, self.direct.as_mut()) {
            // A read that fails gives the connection up: what waits on it fails below.
            let _ = d.read_answers();
        }
        let mut lapin = Vec::new();
        for p in mine {
            match p.answer {
                Answer::Direct { serial: s, id } => {
                    // No answer yet: it waits on while its connection is the one in use and works.
                    let answer = self.direct_answer(s, id).or_else(|| match self.direct.as_ref() {
                        Some(d) if Some(s) == serial => d.broken().cloned().map(Err),
                        _ => Some(Err(closed_unanswered())),
                    });
                    match answer {
                        Some(r) => put(p.sent, r),
                        None => {
                            self.pending.push(Pending { lot, sent: p.sent, answer: Answer::Direct { serial: s, id } })
                        }
                    }
                }
                Answer::Lapin(f) => lapin.push((p.sent, f)),
            }
        }
        if !lapin.is_empty() {
            let mut waiting = Vec::new();
            let mut lapin = std::collections::VecDeque::from(lapin);
            let polled = self.wait(settings.confirm_timeout, "looking for the broker's confirms", async {
                // No await in here: each publish taken is settled or put back before the next.
                while let Some((sent, mut publishing)) = lapin.pop_front() {
                    // Quiet polls: an answer that comes later wakes nobody; the next look takes it.
                    let answer = match poll_quietly(publishing.as_mut()) {
                        None => None,
                        Some(Err(e)) => Some(Err(e)),
                        Some(Ok(mut confirm)) => match poll_quietly(std::pin::Pin::new(&mut confirm)) {
                            Some(a) => Some(judge(&sent.exchange, &sent.routing_key, a)),
                            None => {
                                publishing = Box::pin(async move { Ok(confirm) });
                                None
                            }
                        },
                    };
                    match answer {
                        Some(r) => put(sent, r),
                        None => waiting.push(Pending { lot, sent, answer: Answer::Lapin(publishing) }),
                    }
                }
                Ok(())
            });
            self.pending.append(&mut waiting);
            // Not looked at (the wait was cut short): they wait on.
            self.pending.extend(lapin.drain(..).map(|(sent, f)| Pending { lot, sent, answer: Answer::Lapin(f) }));
            self.after_error(&polled);
        }
        let total = confirmed.len() + failures.len();
        let (_, failures) = self.flushed(total, failures);
        (confirmed, failures)
    }

    /// The answer to the publish `id` made on the direct connection of serial `serial`, if it came:
    /// from that connection while it is the one in use, else from what it left when given up.
    fn direct_answer(&mut self, serial: u64, id: u64) -> Option<Result<(), BrokerError>> {
        match self.direct.as_mut() {
            Some(d) if d.serial() == serial => d.take(id),
            _ => self.settled.remove(&(serial, id)),
        }
    }

    /// The deferred publishes of a lot made on a direct connection: read until each is answered
    /// (timing out only after the confirm timeout without a new answer), or taken from what a
    /// connection given up left.
    fn flush_direct(&mut self, settings: &Settings, pending: Vec<Pending>) -> Vec<Failed> {
        if pending.is_empty() {
            return Vec::new();
        }
        let serial = self.direct.as_ref().map(|d| d.serial());
        let ids: Vec<u64> = pending
            .iter()
            .filter_map(|p| match p.answer {
                Answer::Direct { serial: s, id } if Some(s) == serial => Some(id),
                _ => None,
            })
            .collect();
        let waited = match self.direct.as_mut() {
            Some(d) if !ids.is_empty() => {
                d.wait(&ids, settings.confirm_timeout, "waiting for the broker to confirm a deferred publish")
            }
            _ => Ok(()),
        };
        let mut failures = Vec::new();
        for p in pending {
            let Answer::Direct { serial: s, id } = p.answer else { continue };
            let error = match self.direct_answer(s, id) {
                Some(Ok(())) => continue,
                Some(Err(e)) => e,
                None => match &waited {
                    Err(e) => e.clone(),
                    Ok(()) => closed_unanswered(),
                },
            };
            failures.push(Failed::after_handing_over(p.sent, error));
        }
        if let Err(e) = &waited {
            if e.kind().breaks_connection() {
                self.disconnect();
            }
        }
        failures
    }

    /// What a flush of `total` publishes returns, after settling the session's state for `failures`.
    fn flushed(&mut self, total: usize, failures: Vec<Failed>) -> (usize, Vec<Failed>) {
        if failures.iter().any(|f| f.error.kind() == ErrorKind::Nacked) {
            self.publish_refused();
        }
        if !failures.is_empty() && !self.is_connected() {
            self.disconnect();
        }
        (total - failures.len(), failures)
    }

    /// After a publish on the direct connection: the lapin connection rests when it went out, and
    /// [`Session::after_error`] when it did not.
    fn after_direct<T>(&mut self, r: &Result<T, BrokerError>) {
        match r {
            Ok(_) => self.rest_link(),
            Err(_) => self.after_error(r),
        }
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
            } else if self.direct.as_ref().is_some_and(|d| d.broken().is_some()) {
                self.drop_direct(false);
            }
        }
    }
}

/// How many deferred publishes `flush` settles at a time: each slice must be answered within the
/// confirm timeout (100 messages: at least 10 answers a second with the default 10 s).
const FLUSH_SLICE: usize = 100;

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
/// for the I/O thread to write every message in turn. The first polls are quiet, then this thread
/// waits for the broker's answer to the channel's last publish ([`last_answer`]): by then every
/// write is done, and it was woken once for the lot (not once for the writes and once for the
/// confirms, nor once a message).
async fn send_all(ch: &Channel, messages: &[Outgoing]) -> Result<Vec<lapin::PublisherConfirm>, BrokerError> {
    let mut sending: Vec<Publishing> = messages.iter().map(|m| Box::pin(send(ch, m)) as Publishing).collect();
    let mut written: Vec<_> = sending.iter_mut().map(|f| poll_quietly(f.as_mut())).collect();
    if written.iter().any(Option::is_none) {
        last_answer(ch).await;
    }
    let mut waiting = Vec::new();
    let mut at = Vec::new();
    for (i, (f, w)) in sending.into_iter().zip(&written).enumerate() {
        if w.is_none() {
            waiting.push(f);
            at.push(i);
        }
    }
    last_first(&mut waiting, |j, r| written[at[j]] = Some(r)).await;
    written.into_iter().map(|w| w.expect("every publish awaited")).collect()
}

/// Waits until the broker answered the last message published on `ch` (acked, refused, or the
/// channel closed). Only a hint for the waits that follow, which still await each publish and each
/// confirm: an error here is theirs to tell. Sound because the session's publishing channel is
/// published on only by the thread holding the session, which is the one waiting here: the
/// channel's last publish is the lot's last (lapin settles that wait when the answered delivery tag
/// is the channel's latest).
async fn last_answer(ch: &Channel) {
    let _ = ch.wait_for_confirms().await;
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
