//! `Asynclib\Ebats\Topics`: pausing and resuming a topic's workers on every host.

use ext_php_rs::prelude::*;

use crate::php::args::{broker_err, refused};
use crate::php::settings;
use crate::services::flow;

#[php_class]
#[php(name = "Asynclib\\Ebats\\Topics")]
pub struct Topics;

#[php_impl]
impl Topics {
    /// Every worker of the topic, on every host, stops starting its tasks within a second (they stay
    /// in the broker) until it is resumed, across worker and broker restarts. True when it was running.
    pub fn pause(topic: String) -> PhpResult<bool> {
        flow::pause(&settings::current()?, &topic).map_err(refused)
    }

    /// The topic's workers start its tasks again. True when it was paused.
    pub fn resume(topic: String) -> PhpResult<bool> {
        flow::resume(&settings::current()?, &topic).map_err(refused)
    }

    /// The paused topics, sorted.
    pub fn list() -> PhpResult<Vec<String>> {
        flow::paused(&settings::current()?).map_err(broker_err)
    }
}
