//! What the dashboard can do with a topic: pause and resume its workers on every host. The dashboard
//! sits below the services tier, so that tier hands it these actions when the dashboard is started
//! (`services::flow::Actions`); the dashboard never calls up.

use super::schedules::Failed;
use crate::config::Settings;

pub trait TopicActions: Send + Sync {
    /// Every worker of `topic` stops starting its tasks; true when it was running.
    fn pause(&self, settings: &Settings, topic: &str) -> Result<bool, Failed>;
    /// The workers of `topic` start its tasks again; true when it was paused.
    fn resume(&self, settings: &Settings, topic: &str) -> Result<bool, Failed>;
}
