//! What the dashboard can do with a topic: pause and resume its workers on every host, set and clear
//! its run-time limits. The dashboard sits below the services tier, so that tier hands it these
//! actions when the dashboard is started (`services::flow::Actions`); the dashboard never calls up.

use serde_json::Value;

use super::schedules::Failed;
use crate::config::Settings;

pub trait TopicActions: Send + Sync {
    /// Every worker of `topic` stops starting its tasks; true when it was running.
    fn pause(&self, settings: &Settings, topic: &str) -> Result<bool, Failed>;
    /// The workers of `topic` start its tasks again; true when it was paused.
    fn resume(&self, settings: &Settings, topic: &str) -> Result<bool, Failed>;
    /// Sets the run-time limit `spec` describes (as `Limits::set` takes it); true when it changed something.
    fn set_limit(&self, settings: &Settings, topic: &str, spec: &Value) -> Result<bool, Failed>;
    /// Removes the run-time limit of the scope `scope` names (as `Limits::clear` takes it); true when there was one.
    fn clear_limit(&self, settings: &Settings, topic: &str, scope: &Value) -> Result<bool, Failed>;
}
