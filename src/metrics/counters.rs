//! Counters kept in the process that counts (the Scheduler, the Consumer), in relaxed atomics,
//! and the hooks the periodic schedules report through.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;

pub static EVENTS_ROUTED: AtomicU64 = AtomicU64::new(0);
pub static EVENTS_UNKNOWN: AtomicU64 = AtomicU64::new(0);
pub static EVENTS_UNREADABLE: AtomicU64 = AtomicU64::new(0);
pub static TASKS_MADE: AtomicU64 = AtomicU64::new(0);
/// Unique tasks of events not made because another task held their key.
pub static TASKS_DUPLICATE: AtomicU64 = AtomicU64::new(0);
pub static CONSUMER_HANDLED: AtomicU64 = AtomicU64::new(0);
pub static CONSUMER_FAILED: AtomicU64 = AtomicU64::new(0);
/// Events (scheduler) or messages (consumer) taken in the last minute, whatever their outcome.
pub static LAST_MINUTE: super::rate::MinuteRing = super::rate::MinuteRing::new();
/// 1 while this scheduler leads the periodic schedules, 0 while it does not, -1 when unknown.
static LEADER: AtomicI64 = AtomicI64::new(-1);

/// What happened to a periodic schedule's ticks, by schedule name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ticks {
    pub fired: u64,
    pub late: u64,
    pub skipped: u64,
}

static CRON: Mutex<BTreeMap<String, Ticks>> = Mutex::new(BTreeMap::new());

pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// One more event or message taken, for the rate over the last minute.
pub fn taken() {
    LAST_MINUTE.add((crate::wire::now_ms().max(0) / 1000) as u64);
}

pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// A periodic schedule fired (made its event).
pub fn cron_fired(schedule: &str) {
    CRON.lock().entry(schedule.to_string()).or_default().fired += 1;
}

/// A periodic schedule fired later than its time.
pub fn cron_late(schedule: &str) {
    CRON.lock().entry(schedule.to_string()).or_default().late += 1;
}

/// A periodic schedule's tick was skipped (missed beyond its catch-up window, or not the leader).
pub fn cron_skipped(schedule: &str, n: u64) {
    CRON.lock().entry(schedule.to_string()).or_default().skipped += n;
}

/// This process took or lost the lead of the periodic schedules.
pub fn set_leader(leading: bool) {
    LEADER.store(leading as i64, Ordering::Relaxed);
}

pub fn leader() -> Option<bool> {
    match LEADER.load(Ordering::Relaxed) {
        -1 => None,
        v => Some(v == 1),
    }
}

pub fn cron() -> Vec<(String, Ticks)> {
    CRON.lock().iter().map(|(k, v)| (k.clone(), *v)).collect()
}
