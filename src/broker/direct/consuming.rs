//! Consuming on a direct connection: the calling (PHP) thread writes the acks and reads the next
//! deliveries from the socket itself.
//!
//! # Why
//!
//! On the session's lapin connection a worker that takes its tasks one at a time (prefetch 1) pays
//! two thread crossings per task: its ack handed to lapin's I/O thread, and the next delivery handed
//! back from it. Here the ack is one `write`, and the next delivery a `read` that sleeps in the kernel
//! until the broker sends it (`bench/RESULTS.md`, "Consuming on the PHP thread's own socket").
//! A look with no wait for a delivery is one `recv` that does not block (`Direct::fill_now`), not a
//! `poll` and then a `recv`.
//!
//! # What it does
//!
//! One channel without confirms: `basic.qos`, `basic.consume` and `basic.cancel` (each waiting for its
//! answer, deliveries read meanwhile kept in order), `basic.ack` and `basic.nack` (written at once),
//! the deliveries put together from their frames (`content.rs`), and the broker's own cancel of a
//! consumer whose queue went. Declaring stays on the session's lapin connection. What a subscription
//! makes of consumers, pauses and prefetch changes is `broker::subscription`'s.
//!
//! # Guarantees kept
//!
//! A delivery is given out once; one whose channel closed before it was given out is dropped, not
//! given (it can no longer be acked: the broker gives it again). An ack is written before the call
//! returns. Waits end at their timeout, or early when a stop cuts them short (checked every
//! [`STOP_CHECK`]); a call left unanswered gives the connection up, for the subscription to be opened
//! anew. No heartbeats are asked for (the thread runs PHP between reads): TCP keepalive stands for
//! them, as on the publishing connection.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use amq_protocol::protocol::basic::{self, AMQPProperties};
use amq_protocol::protocol::AMQPClass;
use amq_protocol::types::FieldTable;
use amq_protocol::uri::AMQPUri;
use lapin::message::Delivery;

use super::{Direct, Purpose, CHANNEL};
use crate::broker::error::{BrokerError, ErrorKind};
use crate::broker::park::STOP_CHECK;

/// What the broker told of its consumers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum News {
    QosOk,
    ConsumeOk(String),
    CancelOk(String),
    /// The broker cancelled the consumer itself (its queue was deleted).
    Cancelled(String),
}

/// What a consuming connection read and has not given out yet: deliveries in the order they came,
/// each with its consumer's tag, and the consumers' news.
#[derive(Default)]
pub struct Received {
    deliveries: VecDeque<(String, Delivery)>,
    news: VecDeque<News>,
}

impl Received {
    pub(super) fn delivered(&mut self, d: basic::Deliver, properties: AMQPProperties, body: Vec<u8>) {
        let mut delivery = Delivery::mock(d.delivery_tag, d.exchange, d.routing_key, d.redelivered, body);
        delivery.properties = properties;
        self.deliveries.push_back((d.consumer_tag.to_string(), delivery));
    }

    pub(super) fn cancelled(&mut self, tag: &str) {
        self.news.push_back(News::Cancelled(tag.to_string()));
    }

    /// A method the broker sent that is no delivery: kept when it answers a consumer's call.
    pub(super) fn answer(&mut self, m: AMQPClass) {
        let news = match m {
            AMQPClass::Basic(basic::AMQPMethod::QosOk(_)) => News::QosOk,
            AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(c)) => News::ConsumeOk(c.consumer_tag.to_string()),
            AMQPClass::Basic(basic::AMQPMethod::CancelOk(c)) => News::CancelOk(c.consumer_tag.to_string()),
            _ => return,
        };
        self.news.push_back(news);
    }

    /// The channel closed: what was not given out can no longer be acked.
    pub(super) fn channel_closed(&mut self) {
        self.deliveries.clear();
        self.news.clear();
    }
}

impl Direct {
    /// Connects to `uri` (`where_`: how errors name it) and opens a channel to consume on, within
    /// `timeout`; `keepalive` as for [`Direct::open`].
    pub fn open_consuming(
        uri: &AMQPUri,
        where_: &str,
        timeout: Duration,
        keepalive: Option<Duration>,
    ) -> Result<Direct, BrokerError> {
        Direct::connect(uri, where_, timeout, keepalive, Purpose::Consuming)
    }

    /// At most `prefetch` deliveries unacked, for the consumers started after it.
    pub fn qos(&mut self, prefetch: u16, timeout: Duration) -> Result<(), BrokerError> {
        let qos = basic::Qos { prefetch_count: prefetch, global: false };
        self.call(basic::AMQPMethod::Qos(qos), &News::QosOk, timeout, "setting the prefetch")
    }

    /// Starts consuming `queue` under `tag`, with manual acks.
    pub fn consume(&mut self, queue: &str, tag: &str, timeout: Duration) -> Result<(), BrokerError> {
        let consume = basic::Consume {
            queue: queue.into(),
            consumer_tag: tag.into(),
            no_local: false,
            no_ack: false,
            exclusive: false,
            nowait: false,
            arguments: FieldTable::default(),
        };
        let what = format!("consuming from queue '{queue}'");
        self.call(basic::AMQPMethod::Consume(consume), &News::ConsumeOk(tag.to_string()), timeout, &what)
    }

    /// Stops the consumer `tag` and waits until the broker says so: every delivery it sent before is
    /// read by then.
    pub fn cancel(&mut self, tag: &str, timeout: Duration) -> Result<(), BrokerError> {
        self.cancel_soon(tag)?;
        let done = |n: &News| matches!(n, News::CancelOk(t) | News::Cancelled(t) if t == tag);
        self.wait_for(done, timeout, "cancelling a consumer")
    }

    /// Asks the broker to stop the consumer `tag`, without waiting: its `cancel-ok` comes as news.
    pub fn cancel_soon(&mut self, tag: &str) -> Result<(), BrokerError> {
        let cancel = basic::Cancel { consumer_tag: tag.into(), nowait: false };
        self.put_method(CHANNEL, AMQPClass::Basic(basic::AMQPMethod::Cancel(cancel)));
        self.write_out()
    }

    /// Acks `tag` (and every earlier delivery with `multiple`): written before it returns.
    pub fn ack(&mut self, tag: u64, multiple: bool) -> Result<(), BrokerError> {
        let ack = basic::Ack { delivery_tag: tag, multiple };
        self.put_method(CHANNEL, AMQPClass::Basic(basic::AMQPMethod::Ack(ack)));
        self.write_out()
    }

    /// Gives `tag` (and every earlier delivery with `multiple`) back to its queue.
    pub fn requeue(&mut self, tag: u64, multiple: bool) -> Result<(), BrokerError> {
        let nack = basic::Nack { delivery_tag: tag, multiple, requeue: true };
        self.put_method(CHANNEL, AMQPClass::Basic(basic::AMQPMethod::Nack(nack)));
        self.write_out()
    }

    /// The next delivery, with its consumer's tag, waiting for one at most `wait` (with no wait, what
    /// the socket already has is read). `Ok(None)` also as soon as there is news to look at
    /// ([`Direct::news`]); `Err` once the channel or the connection is gone.
    pub fn delivery(&mut self, wait: Duration) -> Result<Option<(String, Delivery)>, BrokerError> {
        let deadline = Instant::now() + wait;
        let mut read = false;
        loop {
            self.handle_input()?;
            if let Some(d) = self.received.deliveries.pop_front() {
                return Ok(Some(d));
            }
            self.usable()?;
            if !self.received.news.is_empty() {
                return Ok(None);
            }
            let now = Instant::now();
            if read && (now >= deadline || crate::broker::stop::cuts_wait()) {
                return Ok(None);
            }
            self.fill_within(deadline.saturating_duration_since(now))?;
            read = true;
        }
    }

    /// The oldest news not taken by a call.
    pub fn news(&mut self) -> Option<News> {
        self.received.news.pop_front()
    }

    /// Takes out the deliveries read and not given out whose consumer `of` picks.
    pub fn take_deliveries(&mut self, of: impl Fn(&str) -> bool) -> Vec<Delivery> {
        let (taken, kept) = std::mem::take(&mut self.received.deliveries).into_iter().partition(|(t, _)| of(t));
        self.received.deliveries = kept;
        taken.into_iter().map(|(_, d): (String, Delivery)| d).collect()
    }

    /// Sends `method` and waits for `wanted`.
    fn call(
        &mut self,
        method: basic::AMQPMethod,
        wanted: &News,
        timeout: Duration,
        what: &str,
    ) -> Result<(), BrokerError> {
        self.usable()?;
        self.put_method(CHANNEL, AMQPClass::Basic(method));
        self.write_out()?;
        self.wait_for(|n| n == wanted, timeout, what)
    }

    /// Reads until news `done` picks has come (taking it), the channel closes (its error), or
    /// `timeout` passes (the connection is given up).
    fn wait_for(&mut self, done: impl Fn(&News) -> bool, timeout: Duration, what: &str) -> Result<(), BrokerError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.handle_input()?;
            if let Some(i) = self.received.news.iter().position(&done) {
                self.received.news.remove(i);
                return Ok(());
            }
            self.usable()?;
            let now = Instant::now();
            if now >= deadline {
                return Err(self.give_up(BrokerError::timeout(timeout, what)));
            }
            if crate::broker::stop::cuts_wait() {
                return Err(self.give_up(BrokerError::new(ErrorKind::Stopped, format!("stopped while {what}"))));
            }
            self.fill_within(deadline - now)?;
        }
    }

    /// Err when the connection was given up or the broker closed the channel.
    fn usable(&self) -> Result<(), BrokerError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        if !self.channel_open {
            return Err(self
                .channel_closed
                .clone()
                .unwrap_or_else(|| BrokerError::new(ErrorKind::ConnectionLost, "the consuming channel is closed")));
        }
        Ok(())
    }

    /// Reads what the socket has, waiting for something at most `wait` (and at most [`STOP_CHECK`]).
    fn fill_within(&mut self, wait: Duration) -> Result<(), BrokerError> {
        if wait.is_zero() {
            return self.fill_now();
        }
        if wait >= STOP_CHECK {
            // The socket's read timeout is STOP_CHECK: one system call.
            return self.fill();
        }
        // Rounded up: a wait of less than a millisecond is not a busy loop.
        let ms = wait.as_micros().div_ceil(1000) as libc::c_int;
        let mut fd = libc::pollfd { fd: self.stream.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: `fd` is one valid pollfd for the stream's descriptor, open for as long as `self`
        // is; the timeout is below STOP_CHECK.
        let n = unsafe { libc::poll(&mut fd, 1, ms) };
        if n > 0 {
            // Readable (or closed, or in error: the read says which) without blocking.
            return self.fill();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliver(tag: &str, n: u64) -> basic::Deliver {
        basic::Deliver {
            consumer_tag: tag.into(),
            delivery_tag: n,
            redelivered: n.is_multiple_of(2),
            exchange: "x".into(),
            routing_key: "k".into(),
        }
    }

    #[test]
    fn deliveries_keep_their_order_and_consumer_and_a_closed_channel_drops_them() {
        let mut r = Received::default();
        let mut props = AMQPProperties::default();
        props = props.with_message_id("m1".into());
        r.delivered(deliver("a", 1), props, b"one".to_vec());
        r.delivered(deliver("b", 2), AMQPProperties::default(), b"two".to_vec());
        r.answer(AMQPClass::Basic(basic::AMQPMethod::CancelOk(basic::CancelOk { consumer_tag: "a".into() })));
        r.answer(AMQPClass::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {})));
        r.cancelled("b");
        let (tag, d) = r.deliveries.pop_front().unwrap();
        assert_eq!((tag.as_str(), d.delivery_tag, d.redelivered, d.data.as_slice()), ("a", 1, false, &b"one"[..]));
        assert_eq!(d.properties.message_id().as_ref().map(|s| s.as_str()), Some("m1"));
        assert_eq!((d.exchange.as_str(), d.routing_key.as_str()), ("x", "k"));
        assert_eq!(r.deliveries.front().map(|(t, d)| (t.as_str(), d.redelivered)), Some(("b", true)));
        assert_eq!(Vec::from(r.news.clone()), [News::CancelOk("a".into()), News::Cancelled("b".into())]);
        r.channel_closed();
        assert!(r.deliveries.is_empty() && r.news.is_empty());
    }
}
