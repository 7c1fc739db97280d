//! What the dashboard can do with periodic schedules (list, pause, resume, trigger). The dashboard sits
//! below the services tier, so that tier hands it these actions when the dashboard is started
//! (`services::schedules::Actions`); the dashboard never calls up.

use serde_json::Value;

use crate::broker::BrokerError;
use crate::config::Settings;

/// Why an action failed, as the API answers it.
#[derive(Debug)]
pub enum Failed {
    /// The broker failed (502).
    Broker(BrokerError),
    /// The request cannot be done (400; the message is for people).
    Bad(String),
}

pub trait ScheduleActions: Send + Sync {
    /// Every schedule, described (as `Schedules::list()` gives them).
    fn list(&self, settings: &Settings) -> Result<Vec<Value>, BrokerError>;
    fn pause(&self, settings: &Settings, name: &str) -> Result<(), Failed>;
    fn resume(&self, settings: &Settings, name: &str) -> Result<(), Failed>;
    /// Fires the schedule's event once, now; the event's id.
    fn trigger(&self, settings: &Settings, name: &str) -> Result<String, Failed>;
}
