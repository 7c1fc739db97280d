//! Cancelling a task or a group, for PHP (`Task::cancel`, `Task::isCancelled`, `Group::cancel`)
//! and the CLI (`ebats tasks:cancel`, `ebats groups:cancel`). A cancel is a record on the flow
//! stream (`flow::cancel`), which every worker child follows: a task cancelled before it starts is
//! not run (`worker::child`), even when no worker ran as it was cancelled; a running one is told
//! ([`running_task`]). A cancel survives worker and broker restarts and ends by itself.

use crate::broker::flow_stream;
use crate::config::Settings;
use crate::flow::cancel::{self, Target};
use crate::services::refused::Refused;

/// How long a cancel lasts when not said: a task's lifetime of 7 days.
pub const DEFAULT_FOR_SECS: i64 = 7 * 24 * 3600;

fn cancel(settings: &Settings, target: Target, for_secs: i64) -> Result<i64, Refused> {
    let (Target::Task(id) | Target::Group(id)) = &target;
    crate::rules::check_id(id).map_err(Refused::Bad)?;
    let until = cancel::until(crate::wire::now_ms(), for_secs).map_err(Refused::Bad)?;
    flow_stream::cancel(settings, target, until).map_err(Refused::Broker)?;
    Ok(until)
}

/// Cancels the task `id` (or, given a chain's id, the steps of the chain not started) for
/// `for_secs` seconds; the end of the cancel (ms since the epoch).
pub fn task(settings: &Settings, id: &str, for_secs: i64) -> Result<i64, Refused> {
    cancel(settings, Target::Task(id.to_string()), for_secs)
}

/// Cancels every member of the group `id` not started, for `for_secs` seconds.
pub fn group(settings: &Settings, id: &str, for_secs: i64) -> Result<i64, Refused> {
    cancel(settings, Target::Group(id.to_string()), for_secs)
}

/// Whether the task whose handler runs now in this process was cancelled; `None` outside a handler.
pub fn running_task() -> Option<bool> {
    crate::worker::cancelled::current()
}
