//! Counters kept in the process that counts (the Scheduler, the Consumer), in relaxed atomics,
//! and the hooks the periodic schedules report through.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;

use super::status_doc::GroupsDoc;

pub static EVENTS_ROUTED: AtomicU64 = AtomicU64::new(0);
pub static EVENTS_UNKNOWN: AtomicU64 = AtomicU64::new(0);
pub static EVENTS_UNREADABLE: AtomicU64 = AtomicU64::new(0);
pub static TASKS_MADE: AtomicU64 = AtomicU64::new(0);
pub static CONSUMER_HANDLED: AtomicU64 = AtomicU64::new(0);
pub static CONSUMER_FAILED: AtomicU64 = AtomicU64::new(0);
/// Events (scheduler) or messages (consumer) taken in the last minute, whatever their outcome.
pub static LAST_MINUTE: super::rate::MinuteRing = super::rate::MinuteRing::new();
/// Groups completed by this process while it led (each follow-up or plain `done` published).
pub static GROUP_COMPLETIONS: AtomicU64 = AtomicU64::new(0);
/// Groups in flight as the leader folds them (0 while this process does not lead).
pub static GROUPS_OPEN: AtomicU64 = AtomicU64::new(0);
/// The groups as the leader last summed them up (none while this process does not lead).
static GROUPS: Mutex<Option<GroupsDoc>> = Mutex::new(None);
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
/// Tasks of events not made because one with their unique key was there, by topic.
static DUPLICATES: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
/// Topics counted apart in [`DUPLICATES`]; the others are counted under [`OTHER_TOPIC`].
const DUPLICATE_TOPICS: usize = 256;
pub const OTHER_TOPIC: &str = "_other";

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

/// A task of `topic` was not made (by the Scheduler, for an event) because one with its unique key
/// was there.
pub fn duplicate(topic: &str) {
    let mut d = DUPLICATES.lock();
    let key = if d.contains_key(topic) || d.len() < DUPLICATE_TOPICS { topic } else { OTHER_TOPIC };
    *d.entry(key.to_string()).or_default() += 1;
}

/// The duplicates counted, by topic.
pub fn duplicates() -> Vec<(String, u64)> {
    DUPLICATES.lock().iter().map(|(k, v)| (k.clone(), *v)).collect()
}

/// This process took or lost the lead of the periodic schedules.
pub fn set_leader(leading: bool) {
    LEADER.store(leading as i64, Ordering::Relaxed);
}

/// The groups as the leader sums them up for its status document; none when it stops leading.
pub fn set_groups(groups: Option<GroupsDoc>) {
    *GROUPS.lock() = groups;
}

pub fn groups() -> Option<GroupsDoc> {
    GROUPS.lock().clone()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_by_a_bounded_set_of_topics() {
        for i in 0..DUPLICATE_TOPICS + 5 {
            duplicate(&format!("t{i}"));
        }
        duplicate("t0");
        let d = duplicates();
        assert_eq!(d.len(), DUPLICATE_TOPICS + 1);
        assert_eq!(d.iter().find(|(t, _)| t == "t0").map(|(_, n)| *n), Some(2));
        assert_eq!(d.iter().find(|(t, _)| t == OTHER_TOPIC).map(|(_, n)| *n), Some(5));
    }
}
