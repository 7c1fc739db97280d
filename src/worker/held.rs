//! Holding a task back: a limit of its name or key says "not now", so it is published again through
//! the delay levels and its delivery acked, so that tasks of other names and keys go on meanwhile.

use std::time::Duration;

use crate::broker::names::Names;
use crate::broker::BrokerError;
use crate::config::Settings;
use crate::dispatch;
use crate::metrics::stats::Held;
use crate::wire::TaskMsg;

/// Publishes `task` again (confirmed) through the delay levels, after the smallest delay of at least
/// `wait` (a whole number of seconds, at least 1), its attempt and counters unchanged: holding back
/// never uses an attempt and never fails a task. The caller acks the delivery as every settled one.
pub fn hold_back(
    settings: &Settings,
    names: &Names,
    task: &TaskMsg,
    wait: Duration,
    why: Held,
) -> Result<(), BrokerError> {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    if settings.debug {
        crate::log::debug(&format!("task {}/{} id={} held back {secs} s ({why:?})", task.topic, task.name, task.id));
    }
    dispatch::send_one(settings, dispatch::task(names, task, secs))
}
