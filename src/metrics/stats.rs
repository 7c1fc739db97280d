//! What a worker's processes count, in an anonymous shared mapping made before the first fork.
//! Children write it on their task path with relaxed atomic adds only (no lock, no broker round
//! trip); the parent writes child starts and exits; the metrics process reads it all at scrape time.
//!
//! Task names get a label slot each, claimed once by whichever child sees the name first (a
//! compare-and-swap on the slot's state). The table is bounded: names beyond it, or longer than a
//! slot holds, are counted under the task name `_other`.

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};

use super::hist::{Hist, HistSnap};
use super::rate::MinuteRing;
use crate::shm::{atomics, Shm};

pub const LABELS: usize = 128;
const NAME_LEN: usize = 120;
pub const MAX_CHILDREN: usize = 256;
pub const OTHER: &str = "_other";

/// Outcomes of one run, as the `outcome` label says them.
pub const OUTCOMES: [&str; 6] = ["succeeded", "failed", "retried", "put_back", "died", "timed_out"];
const DIED: usize = 4;
const TIMED_OUT: usize = 5;
/// Why a child ended, as the `reason` label says it.
pub const REASONS: [&str; 4] = ["exit", "error", "signal", "time_limit"];

/// Why a task was held back (not started now) by a limit, as the `reason` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Its rate limit's window was full.
    Rate,
    /// No permit of its concurrency limit was free.
    Concurrency,
}

/// The `reason` labels of [`Held`], in its order.
pub const HELD: [&str; 2] = ["rate", "concurrency"];

const FREE: u32 = 0;
const CLAIMING: u32 = 1;
const READY: u32 = 2;

atomics! {
    struct Label {
        state: AtomicU32,
        len: AtomicU32,
        name: [AtomicU8; NAME_LEN],
    }
}

atomics! {
    struct PerTask {
        outcomes: [AtomicU64; OUTCOMES.len()],
        run: Hist,
    }
}

atomics! {
    struct PerChild {
        pid: AtomicI32,
        /// Label slot + 1 of the task running; 0 when idle.
        running: AtomicU32,
        /// Set by the parent when it killed this child at a task's time limit.
        timed_out: AtomicU32,
        /// Unix time in ms when the parent forked it.
        started_ms: AtomicU64,
        /// Tasks this process ended (any outcome), failed, retried or put back.
        done: AtomicU64,
        failed: AtomicU64,
        retried: AtomicU64,
        /// Tasks this process ended in the last minute.
        minute: MinuteRing,
        /// 1 while this process knows its topic paused (it starts none of its tasks).
        paused: AtomicU32,
    }
}

atomics! {
    struct Table {
        labels: [Label; LABELS],
        tasks: [PerTask; LABELS],
        wait: Hist,
        children: [PerChild; MAX_CHILDREN],
        starts: AtomicU64,
        exits: [AtomicU64; REASONS.len()],
        /// Tasks ended in the last minute, by every child.
        minute: MinuteRing,
        /// When the last task began (Unix ms) and how long it had waited (ms).
        last_begin_ms: AtomicU64,
        last_wait_ms: AtomicU64,
        /// Tasks given back unstarted because their topic was paused.
        given_back: AtomicU64,
        /// Tasks held back by a limit, by reason ([`Held`]): each hold counts (held back or waited for).
        held_back: [AtomicU64; HELD.len()],
        /// Tasks not made because a task with their unique key was already there.
        duplicates: AtomicU64,
        /// Tasks not run because they were cancelled before they started.
        cancelled: AtomicU64,
    }
}

/// The outcome index of a reported status (see `crate::outcome`).
pub fn outcome_of(status: i64) -> usize {
    match status {
        crate::outcome::STATE_SUCC => 0,
        crate::outcome::STATE_RETRY => 2,
        crate::outcome::STATE_ERR => 3,
        _ => 1,
    }
}

/// One live child, as read at one moment.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ChildSnap {
    pub slot: usize,
    pub pid: i32,
    pub started_ms: u64,
    pub done: u64,
    pub failed: u64,
    pub retried: u64,
    /// Tasks ended in the last minute.
    pub last_minute: u64,
    /// The name of the task it runs now.
    pub running: Option<String>,
    /// It knows its topic paused.
    pub paused: bool,
}

/// What a worker's processes counted, as read at one moment.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snap {
    /// Per task name: outcome counts (in the order of OUTCOMES) and the run-time histogram.
    pub tasks: Vec<(String, [u64; OUTCOMES.len()], HistSnap)>,
    pub wait: HistSnap,
    /// (slot, pid) of the children alive.
    pub children: Vec<(usize, i32)>,
    pub in_flight: u64,
    pub starts: u64,
    pub exits: [u64; REASONS.len()],
    /// The live children, in slot order.
    pub per_child: Vec<ChildSnap>,
    /// Tasks ended in the last minute, by every child.
    pub last_minute: u64,
    /// When the last task began (Unix ms; 0: none yet) and how long it had waited (ms).
    pub last_begin_ms: u64,
    pub last_wait_ms: u64,
    /// A live child knows the worker's topic paused.
    pub paused: bool,
    /// Tasks given back unstarted because their topic was paused.
    pub given_back: u64,
    /// Tasks held back by a limit, by reason (in the order of [`HELD`]).
    pub held_back: [u64; HELD.len()],
    /// Tasks not made because one with their unique key was already there.
    pub duplicates: u64,
    /// Tasks not run because they were cancelled before they started.
    pub cancelled: u64,
}

/// Whether a worker's topic shows as paused: while any of its live children knows it paused (a
/// pause or a resume reaches each child on its own, within a second).
pub fn topic_paused(children: &[ChildSnap]) -> bool {
    children.iter().any(|c| c.paused)
}

fn now_s() -> u64 {
    (crate::wire::now_ms().max(0) / 1000) as u64
}

pub struct Stats {
    map: Shm<Table>,
}

impl Stats {
    pub fn new() -> std::io::Result<Stats> {
        Ok(Stats { map: Shm::new()? })
    }

    fn t(&self) -> &Table {
        self.map.head()
    }

    fn child(&self, slot: usize) -> Option<&PerChild> {
        self.t().children.get(slot)
    }

    /// The label slot of a task name, claimed if new; the last slot is `_other`.
    fn label(&self, name: &str) -> usize {
        let other = LABELS - 1;
        let b = name.as_bytes();
        if b.is_empty() || b.len() > NAME_LEN || name == OTHER {
            return other;
        }
        for (i, l) in self.t().labels[..other].iter().enumerate() {
            // A slot being claimed by another process is ready after a few stores.
            let mut spins = 0;
            loop {
                match l.state.load(Ordering::Acquire) {
                    READY => break,
                    FREE => {
                        if l.state.compare_exchange(FREE, CLAIMING, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                            for (cell, byte) in l.name.iter().zip(b) {
                                cell.store(*byte, Ordering::Relaxed);
                            }
                            l.len.store(b.len() as u32, Ordering::Relaxed);
                            l.state.store(READY, Ordering::Release);
                            return i;
                        }
                    }
                    _ => {
                        spins += 1;
                        if spins > 10_000 {
                            // Its claimer died halfway: leave the slot.
                            break;
                        }
                        std::hint::spin_loop();
                    }
                }
            }
            if l.state.load(Ordering::Acquire) == READY && self.name_at(i) == b {
                return i;
            }
        }
        other
    }

    fn name_at(&self, i: usize) -> Vec<u8> {
        let l = &self.t().labels[i];
        let len = (l.len.load(Ordering::Relaxed) as usize).min(NAME_LEN);
        l.name[..len].iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }

    /// A child starts running task `name`, `wait_secs` after it was made.
    pub fn task_begin(&self, slot: usize, name: &str, wait_secs: f64) {
        let i = self.label(name);
        self.t().wait.observe(wait_secs);
        self.t().last_wait_ms.store((wait_secs.max(0.0) * 1000.0) as u64, Ordering::Relaxed);
        self.t().last_begin_ms.store(crate::wire::now_ms().max(0) as u64, Ordering::Relaxed);
        if let Some(c) = self.child(slot) {
            c.running.store(i as u32 + 1, Ordering::Relaxed);
        }
    }

    /// The child's task ended with `status` after `run_secs`.
    pub fn task_end(&self, slot: usize, status: i64, run_secs: f64) {
        let Some(c) = self.child(slot) else { return };
        let i = c.running.swap(0, Ordering::Relaxed);
        if i == 0 {
            return;
        }
        let task = &self.t().tasks[i as usize - 1];
        let outcome = outcome_of(status);
        task.outcomes[outcome].fetch_add(1, Ordering::Relaxed);
        task.run.observe(run_secs);
        c.done.fetch_add(1, Ordering::Relaxed);
        match outcome {
            1 => c.failed.fetch_add(1, Ordering::Relaxed),
            2 | 3 => c.retried.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        let now = now_s();
        c.minute.add(now);
        self.t().minute.add(now);
    }

    /// The child of `slot` knows its topic paused, or running (or does not know yet).
    pub fn set_paused(&self, slot: usize, paused: bool) {
        if let Some(c) = self.child(slot) {
            c.paused.store(paused as u32, Ordering::Relaxed);
        }
    }

    /// A child gave back, unstarted, a task of its paused topic.
    pub fn given_back(&self) {
        self.t().given_back.fetch_add(1, Ordering::Relaxed);
    }

    /// A child held a task back (or waited for it) because of a limit.
    pub fn held_back(&self, why: Held) {
        self.t().held_back[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A task was not made because one with its unique key was already there.
    pub fn duplicate(&self) {
        self.t().duplicates.fetch_add(1, Ordering::Relaxed);
    }

    /// A child acked, unstarted, a task cancelled before it started.
    pub fn cancelled(&self) {
        self.t().cancelled.fetch_add(1, Ordering::Relaxed);
    }

    /// The parent forked `pid` for `slot`.
    pub fn child_started(&self, slot: usize, pid: i32) {
        self.t().starts.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.child(slot) {
            c.running.store(0, Ordering::Relaxed);
            c.timed_out.store(0, Ordering::Relaxed);
            c.paused.store(0, Ordering::Relaxed);
            c.started_ms.store(crate::wire::now_ms().max(0) as u64, Ordering::Relaxed);
            for n in [&c.done, &c.failed, &c.retried] {
                n.store(0, Ordering::Relaxed);
            }
            c.minute.clear();
            c.pid.store(pid, Ordering::Release);
        }
    }

    /// The parent killed the child of `slot` at its task's time limit.
    pub fn child_timed_out(&self, slot: usize) {
        let Some(c) = self.child(slot) else { return };
        c.timed_out.store(1, Ordering::Relaxed);
        let i = c.running.swap(0, Ordering::Relaxed);
        if i > 0 {
            self.t().tasks[i as usize - 1].outcomes[TIMED_OUT].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The child of `slot` ended with wait status `status`; a task it still held died with it.
    pub fn child_exited(&self, slot: usize, status: i32) {
        let Some(c) = self.child(slot) else { return };
        let reason = if c.timed_out.load(Ordering::Relaxed) == 1 {
            3
        } else if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            0
        } else if libc::WIFEXITED(status) {
            1
        } else {
            2
        };
        self.t().exits[reason].fetch_add(1, Ordering::Relaxed);
        let i = c.running.swap(0, Ordering::Relaxed);
        if i > 0 {
            self.t().tasks[i as usize - 1].outcomes[DIED].fetch_add(1, Ordering::Relaxed);
        }
        c.pid.store(0, Ordering::Release);
    }

    /// Each task name's outcomes and run times (the label table's overflow row last, when used).
    fn task_snaps(&self) -> Vec<(String, [u64; OUTCOMES.len()], HistSnap)> {
        let t = self.t();
        let mut tasks: Vec<(String, [u64; OUTCOMES.len()], HistSnap)> = Vec::new();
        for i in 0..LABELS {
            let name = if i == LABELS - 1 {
                OTHER.to_string()
            } else if t.labels[i].state.load(Ordering::Acquire) == READY {
                String::from_utf8_lossy(&self.name_at(i)).into_owned()
            } else {
                continue;
            };
            let outcomes: [u64; OUTCOMES.len()] =
                std::array::from_fn(|o| t.tasks[i].outcomes[o].load(Ordering::Relaxed));
            let run = t.tasks[i].run.snap();
            if i == LABELS - 1 && outcomes.iter().all(|n| *n == 0) && run.count() == 0 {
                continue;
            }
            match tasks.iter_mut().find(|(n, _, _)| *n == name) {
                Some((_, o, h)) => {
                    for (a, b) in o.iter_mut().zip(outcomes) {
                        *a += b;
                    }
                    h.add(&run);
                }
                None => tasks.push((name, outcomes, run)),
            }
        }
        tasks
    }

    /// The live children (slot, pid), what each has done and runs, and how many run a task now.
    fn child_snaps(&self, now: u64) -> (Vec<(usize, i32)>, Vec<ChildSnap>, u64) {
        let t = self.t();
        let mut children = Vec::new();
        let mut per_child = Vec::new();
        let mut in_flight = 0;
        for (slot, c) in t.children.iter().enumerate() {
            let pid = c.pid.load(Ordering::Acquire);
            if pid > 0 {
                children.push((slot, pid));
                let label = c.running.load(Ordering::Relaxed) as usize;
                if label > 0 {
                    in_flight += 1;
                }
                let running = (label > 0).then(|| match label - 1 {
                    i if i == LABELS - 1 => OTHER.to_string(),
                    i => String::from_utf8_lossy(&self.name_at(i)).into_owned(),
                });
                per_child.push(ChildSnap {
                    slot,
                    pid,
                    started_ms: c.started_ms.load(Ordering::Relaxed),
                    done: c.done.load(Ordering::Relaxed),
                    failed: c.failed.load(Ordering::Relaxed),
                    retried: c.retried.load(Ordering::Relaxed),
                    last_minute: c.minute.count(now),
                    running,
                    paused: c.paused.load(Ordering::Relaxed) == 1,
                });
            }
        }
        (children, per_child, in_flight)
    }

    /// Everything counted so far; task names seen twice (two slots claimed at once) are summed.
    pub fn snap(&self) -> Snap {
        let t = self.t();
        let now = now_s();
        let tasks = self.task_snaps();
        let (children, per_child, in_flight) = self.child_snaps(now);
        Snap {
            paused: topic_paused(&per_child),
            given_back: t.given_back.load(Ordering::Relaxed),
            held_back: std::array::from_fn(|r| t.held_back[r].load(Ordering::Relaxed)),
            duplicates: t.duplicates.load(Ordering::Relaxed),
            cancelled: t.cancelled.load(Ordering::Relaxed),
            tasks,
            wait: t.wait.snap(),
            children,
            in_flight,
            starts: t.starts.load(Ordering::Relaxed),
            exits: std::array::from_fn(|r| t.exits[r].load(Ordering::Relaxed)),
            per_child,
            last_minute: t.minute.count(now),
            last_begin_ms: t.last_begin_ms.load(Ordering::Relaxed),
            last_wait_ms: t.last_wait_ms.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcomes(s: &Snap, name: &str) -> [u64; 6] {
        s.tasks.iter().find(|(n, _, _)| n == name).map(|(_, o, _)| *o).unwrap_or_default()
    }

    #[test]
    fn counts_by_name_and_outcome() {
        let s = Stats::new().unwrap();
        s.child_started(0, 100);
        s.child_started(1, 101);
        s.task_begin(0, "send", 0.5);
        assert_eq!(s.snap().in_flight, 1);
        s.task_end(0, crate::outcome::STATE_SUCC, 0.01);
        s.task_begin(1, "send", 0.5);
        s.task_end(1, crate::outcome::STATE_RETRY, 0.02);
        s.task_begin(1, "bill", 0.5);
        s.task_end(1, crate::outcome::STATE_ERR, 0.02);
        s.task_begin(0, "bill", 0.5);
        s.child_timed_out(0);
        s.child_exited(0, 9); // killed by SIGKILL
        s.task_begin(1, "bill", 0.5);
        s.child_exited(1, 255 << 8); // exit(255) while running
        let snap = s.snap();
        assert_eq!(outcomes(&snap, "send"), [1, 0, 1, 0, 0, 0]);
        assert_eq!(snap.last_minute, 3, "three runs ended in this minute");
        assert_eq!(snap.last_wait_ms, 500);
        assert_eq!(outcomes(&snap, "bill"), [0, 0, 0, 1, 1, 1]);
        assert_eq!(snap.wait.count(), 5);
        assert_eq!(snap.starts, 2);
        assert_eq!(snap.exits, [0, 1, 0, 1]);
        assert!(snap.children.is_empty());
        assert_eq!(snap.in_flight, 0);
        // a task that did not begin is not counted at its end
        s.task_end(0, crate::outcome::STATE_SUCC, 1.0);
        assert_eq!(outcomes(&s.snap(), "send")[0], 1);
    }

    #[test]
    fn per_child_figures() {
        let s = Stats::new().unwrap();
        s.child_started(2, 300);
        // (status, done, failed, retried) after each run
        let rows = [
            (crate::outcome::STATE_SUCC, 1, 0, 0),
            (crate::outcome::STATE_FAIL, 2, 1, 0),
            (crate::outcome::STATE_RETRY, 3, 1, 1),
            (crate::outcome::STATE_ERR, 4, 1, 2),
        ];
        for (status, done, failed, retried) in rows {
            s.task_begin(2, "job", 0.0);
            let c = s.snap().per_child[0].clone();
            assert_eq!(c.running.as_deref(), Some("job"));
            s.task_end(2, status, 0.0);
            let c = s.snap().per_child[0].clone();
            assert_eq!((c.slot, c.pid, c.done, c.failed, c.retried, c.running), (2, 300, done, failed, retried, None));
        }
        assert_eq!(s.snap().per_child[0].last_minute, 4);
        assert!(s.snap().per_child[0].started_ms > 0);
        // a new process in the slot starts from nothing
        s.child_exited(2, 0);
        s.child_started(2, 301);
        let c = s.snap().per_child[0].clone();
        assert_eq!((c.pid, c.done, c.last_minute), (301, 0, 0));
        assert_eq!(s.snap().last_minute, 4, "the worker's minute keeps the runs of ended children");
    }

    #[test]
    fn paused_while_a_live_child_knows_it() {
        let child = |paused| ChildSnap { paused, ..Default::default() };
        // (children's knowledge, shown paused)
        let rows: [(&[bool], bool); 5] =
            [(&[], false), (&[false], false), (&[true], true), (&[false, true], true), (&[false, false], false)];
        for (children, want) in rows {
            let c: Vec<ChildSnap> = children.iter().map(|p| child(*p)).collect();
            assert_eq!(topic_paused(&c), want, "{children:?}");
        }
        let s = Stats::new().unwrap();
        s.child_started(0, 100);
        s.child_started(1, 101);
        s.set_paused(1, true);
        s.given_back();
        s.given_back();
        let snap = s.snap();
        assert!(snap.paused && !snap.per_child[0].paused && snap.per_child[1].paused);
        assert_eq!(snap.given_back, 2);
        s.held_back(Held::Concurrency);
        assert_eq!(s.snap().held_back, [0, 1], "counted by reason");
        s.set_paused(1, false);
        assert!(!s.snap().paused);
        // a child that ends takes its knowledge with it; the next one in the slot starts unknowing
        s.set_paused(0, true);
        s.child_exited(0, 0);
        assert!(!s.snap().paused);
        s.child_started(0, 102);
        assert!(!s.snap().paused);
        assert_eq!(s.snap().given_back, 2, "the count is the worker's");
    }

    #[test]
    fn holds_and_duplicates_are_counted_by_reason() {
        let s = Stats::new().unwrap();
        // (held back for a reason, or a duplicate; held back by reason and duplicates after it)
        let rows: [(Option<Held>, [u64; 2], u64); 4] = [
            (Some(Held::Rate), [1, 0], 0),
            (Some(Held::Rate), [2, 0], 0),
            (Some(Held::Concurrency), [2, 1], 0),
            (None, [2, 1], 1),
        ];
        for (i, (step, held, dups)) in rows.into_iter().enumerate() {
            match step {
                Some(why) => s.held_back(why),
                None => s.duplicate(),
            }
            let snap = s.snap();
            assert_eq!((snap.held_back, snap.duplicates), (held, dups), "row {i}");
        }
        assert_eq!(HELD[Held::Rate as usize], "rate");
        assert_eq!(HELD[Held::Concurrency as usize], "concurrency");
    }

    #[test]
    fn bounded_label_table() {
        let s = Stats::new().unwrap();
        for i in 0..LABELS + 10 {
            s.task_begin(0, &format!("t{i}"), 0.0);
            s.task_end(0, crate::outcome::STATE_FAIL, 0.0);
        }
        s.task_begin(0, &"x".repeat(NAME_LEN + 1), 0.0);
        s.task_end(0, crate::outcome::STATE_FAIL, 0.0);
        let snap = s.snap();
        assert_eq!(snap.tasks.len(), LABELS);
        assert_eq!(outcomes(&snap, "t0")[1], 1);
        assert_eq!(outcomes(&snap, OTHER)[1], 12);
    }

    #[test]
    fn shared_across_fork() {
        let s = Stats::new().unwrap();
        // SAFETY: the test's child only touches the shared mapping and leaves with _exit.
        match unsafe { libc::fork() } {
            0 => {
                s.task_begin(3, "forked", 0.0);
                s.task_end(3, crate::outcome::STATE_SUCC, 0.0);
                unsafe { libc::_exit(0) };
            }
            pid => {
                let mut st = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut st, 0) };
                assert_eq!(outcomes(&s.snap(), "forked")[0], 1);
            }
        }
    }
}
