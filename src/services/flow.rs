//! Flow control for PHP (`Asynclib\Ebats\Topics`) and the CLI (`ebats topics:*`): pausing and
//! resuming a topic for every worker on every host, and listing the paused ones. The state is the
//! stream `<prefix>.flow` (why, and what it costs: `src/flow/mod.rs`); workers follow it
//! (`worker::paused`).

use serde_json::Value;

use crate::broker::{flow_stream, BrokerError};
use crate::config::Settings;
use crate::dashboard::schedules::Failed;
use crate::dashboard::topics::TopicActions;

pub use super::refused::Refused;

fn change(settings: &Settings, topic: &str, paused: bool) -> Result<bool, Refused> {
    crate::rules::check_topic(topic).map_err(Refused::Bad)?;
    flow_stream::change(settings, topic, paused).map_err(Refused::Broker)
}

/// Every worker of `topic` stops starting its tasks within a second, until [`resume`]; the tasks
/// stay in the queue. True when it was running (false: paused already).
pub fn pause(settings: &Settings, topic: &str) -> Result<bool, Refused> {
    change(settings, topic, true)
}

/// Workers of `topic` start its tasks again. True when it was paused.
pub fn resume(settings: &Settings, topic: &str) -> Result<bool, Refused> {
    change(settings, topic, false)
}

/// The paused topics, sorted.
pub fn paused(settings: &Settings) -> Result<Vec<String>, BrokerError> {
    flow_stream::paused(settings)
}

/// The topic actions the dashboard offers (pausing, and the limits of `services::limits`), handed to it when it is started (it sits below this tier).
pub struct Actions;

impl TopicActions for Actions {
    fn pause(&self, settings: &Settings, topic: &str) -> Result<bool, Failed> {
        Ok(pause(settings, topic)?)
    }
    fn resume(&self, settings: &Settings, topic: &str) -> Result<bool, Failed> {
        Ok(resume(settings, topic)?)
    }
    fn set_limit(&self, settings: &Settings, topic: &str, spec: &Value) -> Result<bool, Failed> {
        Ok(super::limits::set(settings, topic, spec)?)
    }
    fn clear_limit(&self, settings: &Settings, topic: &str, scope: &Value) -> Result<bool, Failed> {
        Ok(super::limits::clear(settings, topic, scope)?)
    }
}
