//! A subscription: a consumer on a queue with a prefetch, opened (and opened again after a cut) for
//! the process; its deliveries and their acks.
//!
//! It consumes on a direct connection of its own (`on_direct.rs`: the thread taking the deliveries
//! reads them from the socket, and writes the acks, itself), or, for a node that connection does
//! not serve (TLS), on a channel of the session's lapin connection (`on_lapin.rs`). Both give the
//! same deliveries with the same guarantees; the choice is made at each opening.

mod on_direct;
mod on_lapin;

use std::time::Duration;

use lapin::message::Delivery;

use super::error::BrokerError;
use super::topology::Decl;
use crate::config::Settings;
use on_direct::OnDirect;
use on_lapin::OnLapin;

/// What to consume.
pub struct Spec<'a> {
    pub settings: &'a Settings,
    /// Declared (once per connection) before consuming.
    pub decls: &'a [Decl],
    pub queue: &'a str,
    pub prefetch: u16,
    pub tag: &'a str,
}

pub struct Subscription(On);

/// A subscription's pause: its consumer cancelled, then drained once the broker answered the cancel
/// (every delivery sent before it given out); consuming starts again only once drained.
#[derive(Default)]
struct Pause {
    paused: bool,
    drained: bool,
}

impl Pause {
    /// Pausing: true when the consumer is to be cancelled now (it was not paused).
    fn begin(&mut self) -> bool {
        !std::mem::replace(&mut self.paused, true)
    }

    fn is_paused(&self) -> bool {
        self.paused
    }

    /// Nothing more comes until the resume.
    fn is_drained(&self) -> bool {
        self.drained
    }

    /// The paused consumer's end came.
    fn drain(&mut self) {
        self.drained = self.paused;
    }

    /// Paused and drained: consuming may start again.
    fn may_resume(&self) -> bool {
        self.paused && self.drained
    }

    fn resumed(&mut self) {
        *self = Pause::default();
    }
}

enum On {
    Direct(Box<OnDirect>),
    Lapin(Box<OnLapin>),
}

impl Subscription {
    /// Declares what the spec needs and starts consuming.
    pub fn open(spec: &Spec) -> Result<Subscription, BrokerError> {
        match OnDirect::open(spec)? {
            Some(d) => Ok(Subscription(On::Direct(Box::new(d)))),
            None => Ok(Subscription(On::Lapin(Box::new(OnLapin::open(spec)?)))),
        }
    }

    /// A delivery that has already arrived, without waiting for one. `None` also when the
    /// consumer ended: the next `next()` says how.
    pub fn ready(&mut self) -> Option<Delivery> {
        match &mut self.0 {
            On::Direct(d) => d.take(Duration::ZERO).ok().flatten(),
            On::Lapin(l) => l.ready(),
        }
    }

    /// Waits for the next delivery at most `tick`; `Ok(None)` when the tick passed with nothing,
    /// `Err` once the consumer ended (its channel or connection closed), and from then on.
    pub fn next(&mut self, tick: Duration) -> Result<Option<Delivery>, BrokerError> {
        match &mut self.0 {
            On::Direct(d) => d.take(tick),
            On::Lapin(l) => l.next(tick),
        }
    }

    /// Consumes the queue at `prefetch` from now on: RabbitMQ applies `basic.qos` only to consumers
    /// started after it, so a new consumer is started at the new prefetch and the old one cancelled.
    /// What the old one was sent before its cancel-ok stays the channel's (same delivery tags and
    /// acks) and comes first from [`Subscription::ready`] and [`Subscription::next`].
    pub fn set_prefetch(&mut self, prefetch: u16) -> Result<(), BrokerError> {
        match &mut self.0 {
            On::Direct(d) => d.set_prefetch(prefetch),
            On::Lapin(l) => l.set_prefetch(prefetch),
        }
    }

    /// Takes out every delivery of the consumers [`Subscription::set_prefetch`] replaced, not yet
    /// given out (none of them started), for the caller to give back.
    pub fn take_replaced(&mut self) -> Vec<Delivery> {
        match &mut self.0 {
            On::Direct(d) => d.take_replaced(),
            On::Lapin(l) => l.take_replaced(),
        }
    }

    /// Ends the consumer of the queue and takes out every delivery of it not yet given out, for the
    /// caller to give back before the channel closes. The broker's `cancel-ok` is awaited: it comes
    /// after everything the consumer was sent, so nothing of it is still on its way. The second
    /// consumer's deliveries are left to go back with the channel.
    pub fn cancel_and_take(&mut self) -> Result<Vec<Delivery>, BrokerError> {
        match &mut self.0 {
            On::Direct(d) => d.cancel_and_take(),
            On::Lapin(l) => l.cancel_and_take(),
        }
    }

    /// Consumes `queue` too, on the same channel and prefetch, its deliveries coming among the main
    /// queue's (delivery tags and acks are the channel's). Until [`Subscription::cancel_also`], the
    /// subscription's end, or the broker's cancelling it (the queue deleted).
    pub fn consume_also(&mut self, queue: &str, tag: &str) -> Result<(), BrokerError> {
        match &mut self.0 {
            On::Direct(d) => d.consume_also(queue, tag),
            On::Lapin(l) => l.consume_also(queue, tag),
        }
    }

    /// The queue consumed beside the main one, if any.
    pub fn also_queue(&self) -> Option<&str> {
        match &self.0 {
            On::Direct(d) => d.also_queue(),
            On::Lapin(l) => l.also_queue(),
        }
    }

    /// Stops the second consumer: the broker sends nothing more from its queue; what it sent
    /// before the cancel-ok still comes through [`Subscription::next`], as deliveries of the channel.
    pub fn cancel_also(&mut self) {
        match &mut self.0 {
            On::Direct(d) => d.cancel_also(),
            On::Lapin(l) => l.cancel_also(),
        }
    }

    /// Acks `tag` (and every earlier delivery with `multiple`), waiting for the write.
    pub fn ack(&mut self, tag: u64, multiple: bool) -> Result<(), BrokerError> {
        match &mut self.0 {
            On::Direct(d) => d.ack(tag, multiple),
            On::Lapin(l) => l.ack(tag, multiple),
        }
    }

    /// Acks every delivery up to `tag`, ahead of anything sent on this channel later, without
    /// waiting for the broker (on lapin, not even for its I/O thread to write it). A failed write
    /// closes the channel, and the consumer sees it.
    pub fn ack_up_to_queued(&mut self, tag: u64) -> Result<(), BrokerError> {
        match &mut self.0 {
            On::Direct(d) => d.ack(tag, true),
            On::Lapin(l) => l.ack_up_to_queued(tag),
        }
    }

    /// Gives `tag` (and every earlier delivery with `multiple`) back to the queue.
    pub fn requeue(&mut self, tag: u64, multiple: bool) -> Result<(), BrokerError> {
        match &mut self.0 {
            On::Direct(d) => d.requeue(tag, multiple),
            On::Lapin(l) => l.requeue(tag, multiple),
        }
    }

    /// Asks the broker to send no more deliveries (those already sent stay ours to settle).
    pub fn cancel(&mut self) {
        match &mut self.0 {
            On::Direct(d) => d.cancel(),
            On::Lapin(l) => l.cancel(),
        }
    }

    /// Stops the deliveries until [`Subscription::resume`] (a paused topic): the consumer is
    /// cancelled; what the broker sent before still comes, for its owner to settle, and the end of
    /// the consumer is not taken for a cut.
    pub fn pause(&mut self) {
        let begun = match &mut self.0 {
            On::Direct(d) => d.pause.begin(),
            On::Lapin(l) => l.pause.begin(),
        };
        if begun {
            self.cancel();
        }
    }

    pub fn is_paused(&self) -> bool {
        match &self.0 {
            On::Direct(d) => d.pause.is_paused(),
            On::Lapin(l) => l.pause.is_paused(),
        }
    }

    /// Consumes the queue again after [`Subscription::pause`], with the same tag and prefetch.
    /// Nothing is done until the cancelled consumer has ended (what it was sent is all settled by
    /// then): call it again later.
    pub fn resume(&mut self) -> Result<(), BrokerError> {
        match &mut self.0 {
            On::Direct(d) => d.resume(),
            On::Lapin(l) => l.resume(),
        }
    }

    /// Closes the channel and waits for the broker's close-ok, so every frame sent before (acks
    /// included) has been written; unacked deliveries go back to the queue. The subscription stays
    /// (closed) for its owner to drop.
    pub fn close_channel(&mut self, why: &str) {
        match &mut self.0 {
            On::Direct(d) => d.close_channel(why),
            On::Lapin(l) => l.close_channel(why),
        }
    }

    /// Closes the channel (see [`Subscription::close_channel`]) and drops the subscription.
    pub fn close(self, why: &str) {
        match self.0 {
            On::Direct(mut d) => d.close_channel(why),
            On::Lapin(l) => (*l).close(why),
        }
    }
}

/// How many times a quorum queue delivered this message before without its being acked (the
/// broker's `x-delivery-count` header); 0 from a classic queue, which does not count.
pub fn delivery_count(properties: &lapin::BasicProperties) -> u32 {
    use lapin::types::AMQPValue as V;
    let count = properties.headers().as_ref().and_then(|h| h.inner().get(crate::headers::DELIVERY_COUNT).cloned());
    let n: i128 = match count {
        Some(V::LongLongInt(n)) => n.into(),
        Some(V::LongInt(n)) => n.into(),
        Some(V::LongUInt(n)) => n.into(),
        Some(V::ShortInt(n)) => n.into(),
        Some(V::ShortUInt(n)) => n.into(),
        Some(V::ShortShortInt(n)) => n.into(),
        Some(V::ShortShortUInt(n)) => n.into(),
        Some(V::Timestamp(n)) => n.into(),
        _ => 0,
    };
    n.clamp(0, u32::MAX as i128) as u32
}
