//! What the dashboard can do with groups of tasks: list them with their progress, show one with its
//! members' states (pending ones included), cancel the members not started. The dashboard sits below
//! the services tier, so that tier hands it these actions when the dashboard is started
//! (`services::groups::Actions`); the dashboard never calls up.

use serde_json::Value;

use super::schedules::Failed;
use crate::broker::BrokerError;
use crate::config::Settings;

pub trait GroupActions: Send + Sync {
    /// The groups the stream holds whole, newest first, without their members (as `Group::list()`).
    fn list(&self, settings: &Settings) -> Result<Vec<Value>, BrokerError>;
    /// One group with its members and their states (as `Group::status()`); none when unknown.
    fn status(&self, settings: &Settings, id: &str) -> Result<Option<Value>, Failed>;
    /// Cancels every member of the group not started; the end of the cancel (Unix ms).
    fn cancel(&self, settings: &Settings, id: &str) -> Result<i64, Failed>;
}
