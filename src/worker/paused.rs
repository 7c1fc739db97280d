//! A worker child and a paused topic: it follows the pause on its subscription (the consumer
//! cancelled while paused, consuming again on resume) and gives back, unstarted, a task it received
//! while its topic is paused, without using an attempt. Whether it may start a task is decided by
//! `flow::pause::may_start` on what the watcher (`broker::flow_stream::Watch`) knows.

use lapin::message::Delivery;

use crate::broker::flow_stream::{CurrentLimits, Watch};
use crate::broker::names::Names;
use crate::broker::subscription::Subscription;
use crate::broker::BrokerError;
use crate::config::Settings;
use crate::flow::limits::Limit;
use crate::flow::pause::may_start;
use crate::log;

pub struct Paused {
    watch: Watch,
    topic: String,
}

impl Paused {
    /// Starts watching whether `topic` is paused and which limits are in force for it (a thread of
    /// this process); `code` are the limits the worker's code set.
    pub fn watch(settings: &Settings, topic: &str, code: Vec<Limit>) -> Paused {
        Paused { watch: Watch::start(settings, topic, code), topic: topic.to_string() }
    }

    /// The limits in force for the topic, as the delivery path reads them.
    pub fn limits(&self) -> CurrentLimits {
        self.watch.limits()
    }

    /// The cancels the watcher folds with the pauses.
    pub fn cancels(&self) -> std::sync::Arc<parking_lot::Mutex<crate::flow::cancel::Cancels>> {
        self.watch.cancels()
    }

    pub fn may_start(&self) -> bool {
        may_start(self.watch.paused())
    }

    /// The topic is known paused (not while the stream is still being read).
    pub fn is_paused(&self) -> bool {
        self.watch.paused() == Some(true)
    }

    /// Between deliveries: the consumer cancelled while the topic is paused, consuming again once
    /// it runs. False when consuming again failed (the subscription is to be opened anew).
    pub fn follow(&self, sub: &mut Subscription) -> bool {
        let may = self.may_start();
        if !may && !sub.is_paused() {
            sub.pause();
            if self.watch.paused() == Some(true) {
                log::info(&format!("topic '{}' is paused: no task of it starts until it is resumed", self.topic));
            }
        } else if may && sub.is_paused() {
            if let Err(e) = sub.resume() {
                log::error(&format!("cannot consume the tasks of '{}' again: {e}; reconnecting", self.topic));
                return false;
            }
            if !sub.is_paused() {
                log::info(&format!("topic '{}' runs again", self.topic));
            }
        }
        true
    }
}

/// Gives back a task received while its topic is paused (or a stop came while it waited for its
/// rate), unstarted, its attempt and death counts unchanged (`worker::give_back`); the consumer is
/// paused first.
pub fn give_back(settings: &Settings, names: &Names, sub: &mut Subscription, d: &Delivery) -> Result<(), BrokerError> {
    sub.pause();
    super::give_back::unstarted(settings, names, sub, std::slice::from_ref(d))
}
