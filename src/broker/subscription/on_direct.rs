//! A subscription on a direct connection of its own (`broker::direct::consuming`): the thread that
//! takes the deliveries reads them from the socket, and writes their acks, itself.
//!
//! What the subscription keeps beside the connection: the consumer's tag (a new one for each
//! prefetch change), the tags of the consumers it replaced (their deliveries still unread are the
//! ones [`OnDirect::give_back_pending`] gives back), the second consumer, and the pause.

use std::time::Duration;

use lapin::message::Delivery;

use super::{Pause, Spec};
use crate::broker::connection;
use crate::broker::current::with_session;
use crate::broker::direct::consuming::News;
use crate::broker::direct::Direct;
use crate::broker::error::{BrokerError, ErrorKind};

pub struct OnDirect {
    direct: Direct,
    queue: String,
    tag: String,
    base_tag: String,
    restarts: u32,
    /// The longest a call of the subscription waits (`basic.qos`, `basic.consume`, `basic.cancel`).
    timeout: Duration,
    /// Consumers replaced by [`OnDirect::set_prefetch`].
    old_tags: Vec<String>,
    /// The second consumer: its queue and tag.
    also: Option<(String, String)>,
    /// How the subscription ended (its consumer cancelled by the broker, the channel or the
    /// connection gone): given by every later wait.
    ended: Option<BrokerError>,
    /// Read and begun by the facade (`Subscription::pause`); drained here.
    pub(super) pause: Pause,
}

impl OnDirect {
    /// Declares what the spec needs on the session, then consumes on a direct connection to the node
    /// the session is connected to. `Ok(None)` when that node is not served directly (TLS), or when the
    /// direct connection cannot be opened while the session's could (logged): the session's
    /// connection consumes then.
    pub fn open(spec: &Spec) -> Result<Option<OnDirect>, BrokerError> {
        let settings = spec.settings;
        let (node, where_) = with_session(|s| {
            s.declare(settings, spec.decls)?;
            s.link(settings)?;
            // What the process publishes goes on a direct connection too.
            s.publish_beside();
            let i = connection::last_node().filter(|&i| i < settings.nodes.len()).unwrap_or(0);
            Ok((settings.nodes[i].clone(), settings.masked_node(i)))
        })?;
        if !crate::broker::direct::serves(&node) {
            return Ok(None);
        }
        let keepalive = (settings.heartbeat > 0).then(|| Duration::from_secs(settings.heartbeat.into()));
        let timeout = settings.connect_timeout.max(settings.confirm_timeout);
        let mut direct = match Direct::open_consuming(&node, &where_, settings.connect_timeout, keepalive) {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::Stopped => return Err(e),
            Err(e) => {
                crate::log::info(&format!("consuming on the shared connection: {e}"));
                return Ok(None);
            }
        };
        direct.qos(spec.prefetch, timeout)?;
        direct
            .consume(spec.queue, spec.tag, timeout)
            .map_err(|e| e.context(&format!("cannot consume from queue '{}'", spec.queue)))?;
        Ok(Some(OnDirect {
            direct,
            queue: spec.queue.to_string(),
            tag: spec.tag.to_string(),
            base_tag: spec.tag.to_string(),
            restarts: 0,
            timeout,
            old_tags: Vec::new(),
            also: None,
            ended: None,
            pause: Pause::default(),
        }))
    }

    /// The next delivery, waiting at most `wait`; `Ok(None)` when none came (or the subscription is
    /// paused and drained), `Err` once it ended.
    pub fn take(&mut self, wait: Duration) -> Result<Option<Delivery>, BrokerError> {
        if let Some(e) = &self.ended {
            return Err(e.clone());
        }
        if self.pause.is_drained() {
            // Paused: nothing of the main queue comes; what the second one sends waits for the resume.
            std::thread::sleep(wait);
            return Ok(None);
        }
        match self.direct.delivery(wait) {
            Ok(Some((_, d))) => Ok(Some(d)),
            Ok(None) => {
                self.follow_news();
                if self.ended.is_none() && !wait.is_zero() && with_session(|s| Ok(s.link_lost())).unwrap_or(false) {
                    // This connection asks for no heartbeats: a path to the broker that went silent
                    // is seen by the other connection's.
                    self.ended = Some(BrokerError::new(
                        ErrorKind::ConnectionLost,
                        "the process's other connection to the broker was lost",
                    ));
                }
                match &self.ended {
                    Some(e) => Err(e.clone()),
                    None => Ok(None),
                }
            }
            Err(e) => {
                self.ended = Some(e.clone());
                Err(e)
            }
        }
    }

    /// What the broker told of the consumers since: a cancel of the main one is the pause's end of
    /// deliveries, or the subscription's end; of the second one, its end.
    fn follow_news(&mut self) {
        while let Some(news) = self.direct.news() {
            let (News::CancelOk(tag) | News::Cancelled(tag)) = news else { continue };
            if tag == self.tag {
                if self.pause.is_paused() {
                    self.pause.drain();
                } else {
                    self.ended = Some(BrokerError::new(
                        ErrorKind::ConnectionLost,
                        "the consumer was cancelled or its connection closed",
                    ));
                }
            } else if self.also.as_ref().is_some_and(|(_, t)| *t == tag) {
                self.also = None;
            }
        }
    }

    pub fn set_prefetch(&mut self, prefetch: u16) -> Result<(), BrokerError> {
        self.restarts += 1;
        let tag = format!("{}-{}", self.base_tag, self.restarts);
        let t = self.timeout;
        self.direct.qos(prefetch, t)?;
        self.direct.consume(&self.queue, &tag, t)?;
        let old = std::mem::replace(&mut self.tag, tag);
        // Every delivery of the old consumer is read once its cancel is answered.
        self.direct.cancel(&old, t)?;
        self.old_tags.push(old);
        Ok(())
    }

    pub fn take_replaced(&mut self) -> Vec<Delivery> {
        let old = std::mem::take(&mut self.old_tags);
        self.direct.take_deliveries(|t| old.iter().any(|o| o == t))
    }

    pub fn cancel_and_take(&mut self) -> Result<Vec<Delivery>, BrokerError> {
        // The consumer may be cancelled already (paused, or leaving): the broker answers a cancel of a
        // consumer it no longer has with a cancel-ok all the same.
        self.direct.cancel(&self.tag, self.timeout)?;
        let (tag, old) = (self.tag.clone(), std::mem::take(&mut self.old_tags));
        Ok(self.direct.take_deliveries(|t| t == tag || old.iter().any(|o| o == t)))
    }

    pub fn consume_also(&mut self, queue: &str, tag: &str) -> Result<(), BrokerError> {
        self.direct
            .consume(queue, tag, self.timeout)
            .map_err(|e| e.context(&format!("cannot consume from queue '{queue}'")))?;
        self.also = Some((queue.to_string(), tag.to_string()));
        Ok(())
    }

    pub fn also_queue(&self) -> Option<&str> {
        self.also.as_ref().map(|(q, _)| q.as_str())
    }

    pub fn cancel_also(&mut self) {
        if let Some((_, tag)) = self.also.take() {
            let _ = self.direct.cancel(&tag, self.timeout);
        }
    }

    pub fn ack(&mut self, tag: u64, multiple: bool) -> Result<(), BrokerError> {
        self.direct.ack(tag, multiple).map_err(|e| e.context("ack failed"))
    }

    pub fn requeue(&mut self, tag: u64, multiple: bool) -> Result<(), BrokerError> {
        self.direct.requeue(tag, multiple).map_err(|e| e.context("nack failed"))
    }

    pub fn cancel(&mut self) {
        let _ = self.direct.cancel_soon(&self.tag);
    }

    pub fn resume(&mut self) -> Result<(), BrokerError> {
        if !self.pause.may_resume() {
            return Ok(());
        }
        self.direct
            .consume(&self.queue, &self.tag, self.timeout)
            .map_err(|e| e.context(&format!("cannot consume from queue '{}'", self.queue)))?;
        self.pause.resumed();
        Ok(())
    }

    /// Closes the connection, waiting (bounded) for the broker's close-ok: every ack written before
    /// has been read by then; unacked deliveries go back to their queue.
    pub fn close_channel(&mut self, why: &str) {
        let e = BrokerError::new(ErrorKind::ConnectionLost, format!("the subscription was closed ({why})"));
        self.direct.close_in_place(&e);
        self.ended.get_or_insert(e);
    }
}
