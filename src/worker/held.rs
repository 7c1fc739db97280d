//! Holding a task back: a limit of its name or key says "not now", so the task is published again
//! (confirmed) through the delay exchange to come back after a wait, and its delivery is acked by
//! the caller like every settled one. The worker goes on with tasks of other names and keys
//! meanwhile. A held-back task keeps its attempt and counters: it never uses up an attempt and never
//! goes to the failed store. It goes to the end of its queue when it comes back.

use std::time::Duration;

use crate::broker::names::Names;
use crate::broker::BrokerError;
use crate::config::{QueueType, Settings};
use crate::log;
use crate::rules::MAX_DELAY;
use crate::wire::TaskMsg;

/// The delay, in whole seconds, that is the smallest at least `wait` (1 s at least, the longest the
/// delay levels hold at most).
pub fn delay_secs(wait: Duration) -> u64 {
    let ms = wait.as_millis().max(1);
    (ms.div_ceil(1000) as u64).min(MAX_DELAY as u64)
}

/// Publishes `task` again to come back after `wait`, confirmed; returns the delay it got, in
/// seconds. `why` names the limit, for the debug log. On a quorum queue the broker's count of deliveries of the task (`delivery_count`: deaths of
/// the workers that held it) goes into the copy, as a given-back task's does.
pub fn hold_back(
    settings: &Settings,
    names: &Names,
    task: &TaskMsg,
    delivery_count: u32,
    wait: Duration,
    why: &str,
) -> Result<u64, BrokerError> {
    let delay = delay_secs(wait);
    let mut copy = task.clone();
    if settings.queue_type == QueueType::Quorum {
        copy.redeliveries = copy.redeliveries.saturating_add(delivery_count);
    }
    copy.delay = delay;
    crate::dispatch::send_one(settings, crate::dispatch::task(names, &copy, delay))?;
    if settings.debug {
        log::debug(&format!("task {}/{} id={} held back {delay} s: {why}", task.topic, task.name, task.id));
    }
    Ok(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_whole_delay_at_least_the_wait() {
        let table = [(0, 1), (1, 1), (999, 1), (1000, 1), (1001, 2), (7_500, 8), (u64::MAX / 2, MAX_DELAY as u64)];
        for (ms, secs) in table {
            assert_eq!(delay_secs(Duration::from_millis(ms)), secs, "{ms} ms");
        }
    }
}
