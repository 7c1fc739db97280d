//! A subscription on the session's lapin connection: a consumer on a channel of its own, its
//! deliveries handed over by lapin's I/O thread (for nodes the direct connection does not serve: TLS).

use std::collections::VecDeque;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use tokio::runtime::Handle;

use super::{Pause, Spec};
use crate::broker::consumer;
use crate::broker::current::with_session;
use crate::broker::error::{BrokerError, ErrorKind};
use crate::broker::park;

pub struct OnLapin {
    rt: Handle,
    ch: Channel,
    consumer: Consumer,
    tag: String,
    queue: String,
    /// The tag the subscription was opened with; a consumer started again (a new prefetch) adds `-<n>`.
    base_tag: String,
    restarts: u32,
    /// The longest a broker method of the subscription waits (`basic.qos`, `basic.consume`).
    timeout: Duration,
    /// Deliveries of a consumer replaced by [`OnLapin::set_prefetch`], given out first.
    pending: VecDeque<Delivery>,
    /// How the consumer's stream ended, when `ready()` was the one to see it: the stream gives its
    /// end once, and after it nothing (it never yields again), so it is kept for `next()`.
    ended: Option<BrokerError>,
    /// A second consumer on the same channel (a worker's legacy queue, see [`OnLapin::consume_also`]):
    /// its queue's name and the consumer. Its end ends only it.
    also: Option<(String, Consumer)>,
    /// Read and begun by the facade (`Subscription::pause`); drained here.
    pub(super) pause: Pause,
}

impl OnLapin {
    /// Declares what the spec needs and starts consuming, on the process's session.
    pub fn open(spec: &Spec) -> Result<OnLapin, BrokerError> {
        with_session(|s| {
            s.declare(spec.settings, spec.decls)?;
            let ch = s.channel(spec.settings)?;
            let t = spec.settings.connect_timeout.max(spec.settings.confirm_timeout);
            let (prefetch, queue, tag) = (spec.prefetch, spec.queue, spec.tag);
            let context = format!("cannot consume from queue '{queue}'");
            let consumer = s.wait(
                t,
                "opening a consumer",
                consumer::open(&ch, queue, prefetch, tag, FieldTable::default(), &context),
            )?;
            Ok(OnLapin {
                rt: s.handle(),
                ch,
                consumer,
                tag: tag.to_string(),
                queue: queue.to_string(),
                base_tag: tag.to_string(),
                restarts: 0,
                timeout: t,
                pending: VecDeque::new(),
                ended: None,
                also: None,
                pause: Pause::default(),
            })
        })
    }

    /// A delivery that has already arrived, without waiting for one. `None` also when the
    /// consumer ended: the next `next()` says how.
    pub fn ready(&mut self) -> Option<Delivery> {
        if let Some(d) = self.pending.pop_front() {
            return Some(d);
        }
        if self.ended.is_some() || self.pause.is_drained() {
            return None;
        }
        match park::wait(self.next_of_either(), Duration::ZERO) {
            Err(_) => None,
            Ok(None) => None,
            Ok(Some(None)) if self.pause.is_paused() => {
                self.pause.drain();
                None
            }
            Ok(Some(item)) => match Self::item(item) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.ended = Some(e);
                    None
                }
            },
        }
    }

    /// Waits for the next delivery at most `tick`; `Ok(None)` when the tick passed with nothing,
    /// `Err` once the consumer ended (its channel or connection closed), and from then on.
    pub fn next(&mut self, tick: Duration) -> Result<Option<Delivery>, BrokerError> {
        if let Some(d) = self.pending.pop_front() {
            return Ok(Some(d));
        }
        if let Some(e) = &self.ended {
            return Err(e.clone());
        }
        if self.pause.is_drained() {
            // Paused: nothing can come; wait the tick as a wait for a delivery would.
            std::thread::sleep(tick);
            return Ok(None);
        }
        match park::wait(self.next_of_either(), tick) {
            Err(_) | Ok(None) => Ok(None),
            Ok(Some(None)) if self.pause.is_paused() => {
                self.pause.drain();
                Ok(None)
            }
            Ok(Some(item)) => Self::item(item).map(Some).inspect_err(|e| self.ended = Some(e.clone())),
        }
    }

    /// The next item of the consumer, or a delivery of the second one (whichever comes first);
    /// `None` when the second one ended (it is dropped; the main one goes on).
    async fn next_of_either(&mut self) -> Option<Option<Result<Delivery, lapin::Error>>> {
        let Some((_, also)) = self.also.as_mut() else {
            return Some(self.consumer.next().await);
        };
        let main = async { Some(self.consumer.next().await) };
        let second = async {
            match also.next().await {
                Some(Ok(d)) => Some(Some(Ok(d))),
                _ => None,
            }
        };
        let r = futures_lite::future::race(main, second).await;
        if r.is_none() {
            self.also = None;
        }
        r
    }

    /// Consumes the queue at `prefetch` from now on: RabbitMQ applies `basic.qos` only to consumers
    /// started after it, so a new consumer is started at the new prefetch and the old one cancelled.
    /// What the old one was sent before its cancel-ok stays the channel's (same delivery tags and
    /// acks) and comes first from [`OnLapin::ready`] and [`OnLapin::next`].
    pub fn set_prefetch(&mut self, prefetch: u16) -> Result<(), BrokerError> {
        self.restarts += 1;
        let tag = format!("{}-{}", self.base_tag, self.restarts);
        let (ch, queue, old) = (self.ch.clone(), self.queue.clone(), self.tag.clone());
        let started = park::wait(
            async {
                let context = format!("cannot consume from queue '{queue}'");
                let c = consumer::open(&ch, &queue, prefetch, &tag, FieldTable::default(), &context).await?;
                ch.basic_cancel(old.as_str().into(), BasicCancelOptions::default())
                    .await
                    .map_err(|e| BrokerError::lapin("basic.cancel failed", &e))?;
                Ok(c)
            },
            self.timeout,
        );
        let consumer = started.map_err(|c| c.error(self.timeout, "changing the prefetch"))??;
        let mut old = std::mem::replace(&mut self.consumer, consumer);
        self.tag = tag;
        // The cancel-ok came after every delivery to the old consumer: they are all in its buffer.
        while let Ok(Some(Ok(d))) = park::wait(old.next(), Duration::ZERO) {
            self.pending.push_back(d);
        }
        Ok(())
    }

    /// Takes out every delivery still waiting in [`OnLapin::set_prefetch`]'s buffer.
    pub fn take_replaced(&mut self) -> Vec<Delivery> {
        self.pending.drain(..).collect()
    }

    /// Cancels the consumer, awaiting the cancel-ok (it comes after every delivery to the consumer),
    /// and takes out every delivery not given out yet.
    pub fn cancel_and_take(&mut self) -> Result<Vec<Delivery>, BrokerError> {
        let (ch, tag) = (self.ch.clone(), self.tag.clone());
        let cancelled = park::wait(
            async move {
                ch.basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                    .await
                    .map_err(|e| BrokerError::lapin("basic.cancel failed", &e))
            },
            self.timeout,
        );
        cancelled.map_err(|c| c.error(self.timeout, "cancelling the consumer"))??;
        let mut taken: Vec<Delivery> = self.pending.drain(..).collect();
        while let Ok(Some(Ok(d))) = park::wait(self.consumer.next(), Duration::ZERO) {
            taken.push(d);
        }
        Ok(taken)
    }

    /// Consumes `queue` too, on the same channel and prefetch, its deliveries coming among the main
    /// queue's (delivery tags and acks are the channel's). Until [`OnLapin::cancel_also`], the
    /// subscription's end, or the broker's cancelling it (the queue deleted).
    pub fn consume_also(&mut self, queue: &str, tag: &str) -> Result<(), BrokerError> {
        let c = self
            .rt
            .block_on(self.ch.basic_consume(
                queue.into(),
                tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            ))
            .map_err(|e| BrokerError::lapin(&format!("cannot consume from queue '{queue}'"), &e))?;
        self.also = Some((queue.to_string(), c));
        Ok(())
    }

    /// The queue consumed beside the main one, if any.
    pub fn also_queue(&self) -> Option<&str> {
        self.also.as_ref().map(|(q, _)| q.as_str())
    }

    /// Stops the second consumer: the broker sends nothing more from its queue; what it sent
    /// before the cancel-ok still comes through [`OnLapin::next`], as deliveries of the channel.
    pub fn cancel_also(&mut self) {
        if let Some((_, c)) = self.also.as_ref() {
            let tag = c.tag();
            let _ = self.rt.block_on(self.ch.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()));
        }
    }

    /// One item of the consumer's stream: a delivery, or how the consumer ended.
    fn item(item: Option<Result<Delivery, lapin::Error>>) -> Result<Delivery, BrokerError> {
        match item {
            None => {
                Err(BrokerError::new(ErrorKind::ConnectionLost, "the consumer was cancelled or its connection closed"))
            }
            Some(Err(e)) => Err(BrokerError::lapin("consumer failed", &e)),
            Some(Ok(d)) => Ok(d),
        }
    }

    /// Acks `tag` (and every earlier delivery with `multiple`), waiting for the write.
    pub fn ack(&self, tag: u64, multiple: bool) -> Result<(), BrokerError> {
        self.rt
            .block_on(self.ch.basic_ack(tag, BasicAckOptions { multiple }))
            .map_err(|e| BrokerError::lapin("ack failed", &e))
    }

    /// Acks every delivery up to `tag`, only queueing the frame (ahead of anything sent on this
    /// channel later) without waiting for the I/O thread to write it. A failed write closes the
    /// channel, and the consumer sees it.
    pub fn ack_up_to_queued(&self, tag: u64) -> Result<(), BrokerError> {
        let ack = self.ch.basic_ack(tag, BasicAckOptions { multiple: true });
        match self.rt.block_on(futures_lite::future::poll_once(ack)) {
            None | Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(BrokerError::lapin("ack failed", &e)),
        }
    }

    /// Gives `tag` (and every earlier delivery with `multiple`) back to the queue.
    pub fn requeue(&self, tag: u64, multiple: bool) -> Result<(), BrokerError> {
        self.rt
            .block_on(self.ch.basic_nack(tag, BasicNackOptions { multiple, requeue: true }))
            .map_err(|e| BrokerError::lapin("nack failed", &e))
    }

    /// Asks the broker to send no more deliveries (those already sent stay ours to settle).
    pub fn cancel(&self) {
        let _ = self.rt.block_on(self.ch.basic_cancel(self.tag.as_str().into(), BasicCancelOptions::default()));
    }

    /// Consumes the queue again after [`OnLapin::pause`], with the same tag and prefetch.
    /// Nothing is done until the cancelled consumer has ended (what it was sent is all settled by
    /// then): call it again later.
    pub fn resume(&mut self) -> Result<(), BrokerError> {
        if !self.pause.may_resume() {
            return Ok(());
        }
        let c = self
            .rt
            .block_on(self.ch.basic_consume(
                self.queue.as_str().into(),
                self.tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            ))
            .map_err(|e| BrokerError::lapin(&format!("cannot consume from queue '{}'", self.queue), &e))?;
        self.consumer = c;
        self.pause.resumed();
        Ok(())
    }

    /// Closes the channel and waits for the broker's close-ok, so every frame queued before (acks
    /// included) has been written; unacked deliveries go back to the queue. The subscription stays
    /// (closed) for its owner to drop.
    pub fn close_channel(&self, why: &str) {
        let _ = self.rt.block_on(self.ch.close(200, why.into()));
    }

    /// Closes the channel (see [`OnLapin::close_channel`]) and drops the subscription.
    pub fn close(self, why: &str) {
        self.close_channel(why);
        // Consumers and channels dropped outside the runtime's context would look for a runtime
        // of their own.
        let rt = self.rt.clone();
        let _ctx = rt.enter();
        drop(self);
    }
}
