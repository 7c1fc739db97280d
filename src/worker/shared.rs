//! Memory shared by the worker's parent and children (an anonymous shared mapping made before the
//! first fork): what each child is running since when, so the parent can enforce time limits and
//! knows which task a dying child held; and the ids of tasks whose child was killed for running too
//! long or died running them, so the next child to receive such a task knows why it came back. A
//! message the broker gives back for any other reason (a child stopping or recycling with a
//! prefetched message, a child dying with tasks taken ahead, a lost connection) is simply run.
//!
//! A time-limit mark is taken by the delivery that reads it (each kill counts one attempt). A death
//! mark is too where the workers count deaths (classic queues); where the broker counts them (quorum
//! queues) it is kept, and answers at every later delivery whether this parent saw the task kill one of
//! its processes (`delivery::decide`), until the ring's later marks write over it.
//!
//! A slot holds a whole task id: every id a worker accepts (`rules::check_id`, at most
//! `rules::MAX_ID_LEN` bytes) is kept entire, so a mark always matches the task it was made for.

use std::sync::atomic::{AtomicI32, AtomicU64, AtomicU8, Ordering};

use crate::shm::{atomics, Shm};

/// Bytes of an id slot: the longest id the worker accepts; a shorter one ends with a zero byte.
const ID_LEN: usize = crate::rules::MAX_ID_LEN;
const RING: usize = 256;

atomics! {
    pub struct ChildEntry {
        pub pid: AtomicI32,
        /// Unix time in ms when the current task started; 0 when idle.
        pub started_ms: AtomicU64,
        /// Time limit of the current task in ms; 0 for none.
        pub limit_ms: AtomicU64,
        task_id: [AtomicU8; ID_LEN],
    }
}

/// Why the broker gave a task back, as the parent saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GivenBack {
    TimedOut,
    Crashed,
}

atomics! {
    struct Ring {
        next: AtomicU64,
        ids: [[AtomicU8; ID_LEN]; RING],
    }
}

atomics! {
    /// The head of the mapping; a [`ChildEntry`] per slot follows it.
    struct Table {
        timed_out: Ring,
        crashed: Ring,
    }
}

impl Ring {
    fn push(&self, id: &str) {
        let n = self.next.fetch_add(1, Ordering::AcqRel) as usize % RING;
        write_id(&self.ids[n], id);
    }

    fn find(&self, id: &str) -> Option<&[AtomicU8; ID_LEN]> {
        self.ids.iter().find(|cell| read_id(cell) == id)
    }

    fn holds(&self, id: &str) -> bool {
        self.find(id).is_some()
    }

    fn take(&self, id: &str) -> bool {
        self.find(id).map(|cell| write_id(cell, "")).is_some()
    }
}

pub struct Shared {
    map: Shm<Table, ChildEntry>,
    stats: crate::metrics::stats::Stats,
}

pub fn now_ms() -> u64 {
    crate::wire::now_ms().max(0) as u64
}

/// Writes `id` into a slot. The worker only tracks ids that follow `rules::check_id` (no zero byte,
/// at most `ID_LEN` bytes), so nothing is cut; a longer one would be, and the debug build says so.
fn write_id(dst: &[AtomicU8; ID_LEN], id: &str) {
    debug_assert!(id.len() <= ID_LEN, "task id of {} bytes does not fit its slot", id.len());
    let b = id.as_bytes();
    for (i, cell) in dst.iter().enumerate() {
        cell.store(*b.get(i).unwrap_or(&0), Ordering::Relaxed);
    }
}

fn read_id(src: &[AtomicU8; ID_LEN]) -> String {
    let bytes: Vec<u8> = src.iter().map(|c| c.load(Ordering::Relaxed)).take_while(|b| *b != 0).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

impl Shared {
    pub fn new(slots: usize) -> std::io::Result<Shared> {
        let map = Shm::with_items(slots)?;
        let stats = crate::metrics::stats::Stats::new()?;
        Ok(Shared { map, stats })
    }

    /// The counters for metrics, in a mapping of their own.
    pub fn stats(&self) -> &crate::metrics::stats::Stats {
        &self.stats
    }

    /// The entry of slot `i`; a slot beyond those made is a bug of the caller (a panic).
    fn entry(&self, i: usize) -> &ChildEntry {
        &self.map.items()[i]
    }

    fn table(&self) -> &Table {
        self.map.head()
    }

    pub fn begin(&self, i: usize, task_id: &str, limit_ms: u64) {
        let s = self.entry(i);
        write_id(&s.task_id, task_id);
        s.limit_ms.store(limit_ms, Ordering::Relaxed);
        s.started_ms.store(now_ms(), Ordering::Release);
    }

    pub fn end(&self, i: usize) {
        self.entry(i).started_ms.store(0, Ordering::Release);
    }

    /// The task id a slot is running and for how long, when it is over its limit.
    pub fn overdue(&self, i: usize) -> Option<(String, u64)> {
        let s = self.entry(i);
        let started = s.started_ms.load(Ordering::Acquire);
        let limit = s.limit_ms.load(Ordering::Relaxed);
        if started == 0 || limit == 0 {
            return None;
        }
        let ran = now_ms().saturating_sub(started);
        (ran > limit).then(|| (read_id(&s.task_id), limit))
    }

    /// The task a slot is running, if any.
    pub fn running(&self, i: usize) -> Option<String> {
        let s = self.entry(i);
        (s.started_ms.load(Ordering::Acquire) != 0).then(|| read_id(&s.task_id))
    }

    /// Whether a slot other than `own` is running `task_id`: the broker gave the task back because that
    /// slot's child died holding it, and the parent has not marked it yet (or that child lost its
    /// connection and runs on).
    pub fn running_elsewhere(&self, own: usize, task_id: &str) -> bool {
        (0..self.map.items().len()).any(|i| i != own && self.running(i).as_deref() == Some(task_id))
    }

    /// The task a slot is running and when it started (Unix ms), if any.
    pub fn in_hand(&self, i: usize) -> Option<(String, u64)> {
        if i >= self.map.items().len() {
            return None;
        }
        let s = self.entry(i);
        match s.started_ms.load(Ordering::Acquire) {
            0 => None,
            started => Some((read_id(&s.task_id), started)),
        }
    }

    pub fn mark(&self, task_id: &str, why: GivenBack) {
        match why {
            GivenBack::TimedOut => self.table().timed_out.push(task_id),
            GivenBack::Crashed => self.table().crashed.push(task_id),
        }
    }

    /// Why `task_id` came back, if its child was killed at its time limit or died running it. A
    /// time-limit mark is taken once; a death mark too when `deaths_counted_here`, and kept otherwise.
    pub fn given_back(&self, task_id: &str, deaths_counted_here: bool) -> Option<GivenBack> {
        let t = self.table();
        if t.timed_out.take(task_id) {
            return Some(GivenBack::TimedOut);
        }
        let crashed = if deaths_counted_here { t.crashed.take(task_id) } else { t.crashed.holds(task_id) };
        crashed.then_some(GivenBack::Crashed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_death_mark_is_taken_where_the_workers_count_and_kept_where_the_broker_does() {
        let shared = Shared::new(1).unwrap();
        shared.mark("a", GivenBack::Crashed);
        shared.mark("b", GivenBack::Crashed);
        shared.mark("t", GivenBack::TimedOut);
        // Classic: each mark answers once.
        assert_eq!(shared.given_back("a", true), Some(GivenBack::Crashed));
        assert_eq!(shared.given_back("a", true), None);
        // Quorum: a death mark answers at every delivery; a time-limit mark still once.
        assert_eq!(shared.given_back("b", false), Some(GivenBack::Crashed));
        assert_eq!(shared.given_back("b", false), Some(GivenBack::Crashed));
        assert_eq!(shared.given_back("t", false), Some(GivenBack::TimedOut));
        assert_eq!(shared.given_back("t", false), None);
        assert_eq!(shared.given_back("never", false), None);
    }

    #[test]
    fn a_task_is_running_elsewhere_until_its_slot_ends() {
        let shared = Shared::new(2).unwrap();
        shared.begin(0, "x", 0);
        assert!(shared.running_elsewhere(1, "x"));
        assert!(!shared.running_elsewhere(0, "x"), "its own slot is not elsewhere");
        assert!(!shared.running_elsewhere(1, "y"));
        shared.end(0);
        assert!(!shared.running_elsewhere(1, "x"));
    }
}
