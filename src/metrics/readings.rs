//! What `/status.json` gathers at request time: each process's CPU (with the previous readings,
//! for a percentage over the last seconds) and memory from /proc, the worker's shared counters,
//! the scheduler's or consumer's own counters; `status::document` makes the document of them.

use serde_json::{json, Map, Value};

use super::counters::{self as c, get};
use super::cpu::CpuWindow;
use super::depth::Depths;
use super::procfs;
use super::stats::Held;
use super::stats::Snap;
use super::status::{self, Input};
use super::status_doc::{HeldBack, LimitRow, LimitsDoc, PauseDoc, ProcessRow, TaskTimes, Totals};
use crate::flow::limits::{Limit, Scope};
use crate::flow::record::{rate_text, Source};

/// A process's row with its CPU and memory read now (the counts are the caller's).
pub fn process_row(cpu: &mut CpuWindow, now_ms: u64, pid: i32, role: &'static str, started_ms: u64) -> ProcessRow {
    let cpu_seconds = procfs::cpu_seconds(pid);
    let percent = cpu_seconds.and_then(|s| cpu.percent(pid, now_ms, s, started_ms));
    status::process(pid, role, started_ms, now_ms, cpu_seconds, percent, procfs::resident_bytes(pid))
}

/// The worker's sums, from its task table: failed counts deaths and time limits too, retried
/// counts the tasks put back.
pub fn worker_totals(s: &Snap) -> Totals {
    let mut t = Totals { last_minute: s.last_minute, in_flight: s.in_flight, ..Totals::default() };
    for (_, o, _) in &s.tasks {
        t.done += o.iter().sum::<u64>();
        t.succeeded += o[0];
        t.failed += o[1] + o[4] + o[5];
        t.retried += o[2] + o[3];
    }
    t
}

/// The worker's run and wait times: its histograms' sums and counts, as `/metrics` gives them.
pub fn task_times(s: &Snap) -> TaskTimes {
    TaskTimes {
        run_seconds_sum: s.tasks.iter().map(|(_, _, h)| h.sum).sum(),
        run_seconds_count: s.tasks.iter().map(|(_, _, h)| h.count()).sum(),
        wait_seconds_sum: s.wait.sum,
        wait_seconds_count: s.wait.count(),
    }
}

/// A worker's limits in force (with where each comes from) and what they held back, for its status.
pub fn limits_doc(in_force: &[(Limit, Source)], s: &Snap) -> LimitsDoc {
    let row = |(l, source): &(Limit, Source)| {
        let (name, key) = match &l.scope {
            Scope::Topic => (None, None),
            Scope::Name(n) => (Some(n.clone()), None),
            Scope::Key { name, template } => (name.clone(), Some(template.source().to_string())),
        };
        LimitRow {
            id: l.id(),
            name,
            key,
            rate: l.rate.as_ref().map(rate_text),
            burst: l.rate.map_or(0, |r| r.burst),
            concurrency: l.concurrency,
            source: source.as_str().to_string(),
        }
    };
    LimitsDoc {
        in_force: in_force.iter().map(row).collect(),
        held_back: HeldBack {
            rate: s.held_back[Held::Rate as usize],
            concurrency: s.held_back[Held::Concurrency as usize],
        },
        duplicates: s.duplicates,
    }
}

/// Where the worker is and what it was given.
pub struct WorkerPlace<'a> {
    pub topic: &'a str,
    pub host: &'a str,
    pub address: &'a str,
    pub expected: usize,
    /// (pid, started ms) of the parent and of the metrics process.
    pub parent: (i32, u64),
    pub metrics: (i32, u64),
}

/// The worker's status input: `in_hand` says the id and start (ms) of the task a slot runs;
/// `in_force` the limits in force for its topic.
pub fn worker_input(
    w: &WorkerPlace,
    snap: &Snap,
    in_force: &[(Limit, Source)],
    depths: Depths,
    cpu: &mut CpuWindow,
    in_hand: &dyn Fn(usize) -> Option<(String, u64)>,
) -> Input {
    let now = crate::wire::now_ms().max(0) as u64;
    let mut processes = vec![
        process_row(cpu, now, w.parent.0, "parent", w.parent.1),
        process_row(cpu, now, w.metrics.0, "metrics", w.metrics.1),
    ];
    for ch in &snap.per_child {
        let mut row = process_row(cpu, now, ch.pid, "child", ch.started_ms);
        row.slot = Some(ch.slot);
        row.done = ch.done;
        row.failed = ch.failed;
        row.retried = ch.retried;
        row.last_minute = ch.last_minute;
        row.in_flight = ch.running.is_some() as u64;
        row.task = match (&ch.running, in_hand(ch.slot)) {
            (Some(name), Some((id, started_ms))) => Some(status::in_hand(id, name.clone(), started_ms, now)),
            _ => None,
        };
        processes.push(row);
    }
    cpu.keep(&processes.iter().map(|p| p.pid).collect::<Vec<_>>());
    Input {
        role: "worker",
        topics: vec![w.topic.to_string()],
        host: w.host.to_string(),
        address: w.address.to_string(),
        pid: w.parent.0,
        started_ms: w.parent.1,
        now_ms: now,
        children: Some((snap.per_child.len(), w.expected)),
        processes,
        totals: worker_totals(snap),
        depths,
        last_begin_ms: snap.last_begin_ms,
        last_wait_ms: snap.last_wait_ms,
        counters: Map::new(),
        task_times: Some(task_times(snap)),
        pause: Some(PauseDoc { paused: snap.paused, given_back: snap.given_back }),
        limits: Some(limits_doc(in_force, snap)),
        groups: None,
    }
}

/// A scheduler's sums: events taken, routed to tasks (done), of no registered task or unreadable
/// (failed).
pub fn scheduler_figures() -> (Totals, Map<String, Value>) {
    let (routed, unknown, unreadable) = (get(&c::EVENTS_ROUTED), get(&c::EVENTS_UNKNOWN), get(&c::EVENTS_UNREADABLE));
    let t = Totals {
        done: routed + unknown + unreadable,
        succeeded: routed,
        failed: unknown + unreadable,
        ..Default::default()
    };
    let mut m = Map::new();
    m.insert("events_routed".into(), json!(routed));
    m.insert("events_unknown".into(), json!(unknown));
    m.insert("events_unreadable".into(), json!(unreadable));
    m.insert("tasks_made".into(), json!(get(&c::TASKS_MADE)));
    m.insert("cron_leader".into(), json!(c::leader()));
    let dups: Map<String, Value> = c::duplicates().into_iter().map(|(t, n)| (t, json!(n))).collect();
    m.insert("duplicates".into(), Value::Object(dups));
    (t, m)
}

/// A consumer's sums: messages handled and failed.
pub fn consumer_figures() -> (Totals, Map<String, Value>) {
    let (handled, failed) = (get(&c::CONSUMER_HANDLED), get(&c::CONSUMER_FAILED));
    let t = Totals { done: handled + failed, succeeded: handled, failed, ..Default::default() };
    let mut m = Map::new();
    m.insert("messages_handled".into(), json!(handled));
    m.insert("messages_failed".into(), json!(failed));
    (t, m)
}

/// Where a scheduler or consumer is.
pub struct ThreadPlace<'a> {
    pub role: &'static str,
    pub topics: &'a [String],
    pub host: &'a str,
    pub address: &'a str,
    pub pid: i32,
    pub started_ms: u64,
}

/// The status input of a scheduler or consumer (one process).
pub fn thread_input(
    p: &ThreadPlace,
    figures: fn() -> (Totals, Map<String, Value>),
    depths: Depths,
    cpu: &mut CpuWindow,
) -> Input {
    let now = crate::wire::now_ms().max(0) as u64;
    let (mut totals, counters) = figures();
    totals.last_minute = c::LAST_MINUTE.count(now / 1000);
    let mut row = process_row(cpu, now, p.pid, p.role, p.started_ms);
    (row.done, row.failed, row.retried, row.last_minute) =
        (totals.done, totals.failed, totals.retried, totals.last_minute);
    Input {
        role: p.role,
        topics: p.topics.to_vec(),
        host: p.host.to_string(),
        address: p.address.to_string(),
        pid: p.pid,
        started_ms: p.started_ms,
        now_ms: now,
        children: None,
        processes: vec![row],
        totals,
        depths,
        last_begin_ms: 0,
        last_wait_ms: 0,
        counters,
        task_times: None,
        pause: None,
        limits: None,
        groups: c::groups(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::hist::HistSnap;

    #[test]
    fn totals_of_a_worker() {
        let snap = Snap {
            tasks: vec![
                ("a".into(), [5, 2, 1, 1, 1, 1], HistSnap::default()),
                ("b".into(), [3, 0, 0, 0, 0, 0], HistSnap::default()),
            ],
            in_flight: 1,
            last_minute: 4,
            ..Snap::default()
        };
        assert_eq!(
            worker_totals(&snap),
            Totals { done: 14, succeeded: 8, failed: 4, retried: 2, last_minute: 4, in_flight: 1 }
        );
    }

    #[test]
    fn task_times_of_a_worker() {
        let h = |counts: Vec<u64>, sum| HistSnap { counts, sum };
        let snap = Snap {
            tasks: vec![("a".into(), [0; 6], h(vec![1, 2], 0.25)), ("b".into(), [0; 6], h(vec![0, 3], 1.5))],
            wait: h(vec![4, 1], 2.0),
            ..Snap::default()
        };
        assert_eq!(
            task_times(&snap),
            TaskTimes { run_seconds_sum: 1.75, run_seconds_count: 6, wait_seconds_sum: 2.0, wait_seconds_count: 5 }
        );
    }
}
