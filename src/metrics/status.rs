//! The `/status.json` document: what a worker, scheduler or consumer is doing, for programs (`ebats
//! status`, a dashboard). Built here from plain data by a pure function; `serve` gathers the data.
//! The shape is documented in docs/monitoring/status.md; `VERSION` changes when a field changes
//! meaning or goes away (new fields may appear at any time).

use serde_json::{json, Map, Value};

use super::cpu::Percent;
use super::depth::Depths;

pub const VERSION: u64 = 1;

/// The task a process runs now.
#[derive(Debug, Clone, PartialEq)]
pub struct InHand {
    pub id: String,
    pub name: String,
    pub started_ms: u64,
}

/// One process of the worker (parent, metrics process, children) or the scheduler or consumer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessRow {
    pub pid: i32,
    /// parent, metrics, child, scheduler or consumer.
    pub role: &'static str,
    pub slot: Option<usize>,
    pub started_ms: u64,
    pub cpu_seconds: Option<f64>,
    pub cpu: Option<Percent>,
    pub rss_bytes: Option<u64>,
    pub done: u64,
    pub failed: u64,
    pub retried: u64,
    pub last_minute: u64,
    pub in_flight: u64,
    pub task: Option<InHand>,
}

/// Sums over the whole worker (children that ended included) or over the scheduler or consumer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    pub done: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub retried: u64,
    pub last_minute: u64,
    pub in_flight: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Input {
    pub role: &'static str,
    pub topics: Vec<String>,
    pub host: String,
    pub address: String,
    /// The worker's parent, or the scheduler's or consumer's process.
    pub pid: i32,
    pub started_ms: u64,
    pub now_ms: u64,
    /// (running, expected) children of a worker.
    pub children: Option<(usize, usize)>,
    pub processes: Vec<ProcessRow>,
    pub totals: Totals,
    pub depths: Depths,
    /// When the last task began (0: none since start) and how long it had waited, in ms.
    pub last_begin_ms: u64,
    pub last_wait_ms: u64,
    /// Figures only this role has (a scheduler's events, a consumer's messages).
    pub counters: Map<String, Value>,
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

fn process(p: &ProcessRow, now_ms: u64) -> Value {
    json!({
        "pid": p.pid,
        "role": p.role,
        "slot": p.slot,
        "started_ms": p.started_ms,
        "uptime_seconds": secs(now_ms.saturating_sub(p.started_ms)),
        "cpu_seconds": p.cpu_seconds.map(|c| round(c, 2)),
        "cpu_percent": p.cpu.map(|c| round(c.percent, 1)),
        "cpu_window_seconds": p.cpu.map(|c| round(c.over_secs, 1)),
        "rss_bytes": p.rss_bytes,
        "done": p.done,
        "failed": p.failed,
        "retried": p.retried,
        "rate_per_minute": p.last_minute,
        "in_flight": p.in_flight,
        "task": p.task.as_ref().map(|t| json!({
            "id": t.id,
            "name": t.name,
            "started_ms": t.started_ms,
            "running_seconds": secs(now_ms.saturating_sub(t.started_ms)),
        })),
    })
}

/// The queue the process consumes from, by the role `depth` gives it.
fn consumed(role: &str) -> bool {
    matches!(role, "ready" | "events" | "consumer")
}

/// How long the oldest waiting task has waited, and how that is known. AMQP cannot look at the
/// head of a queue without taking the message (and a message taken and put back is marked
/// redelivered), so this is bounded from the last task that started: tasks leave a queue in order,
/// so whatever waits now came after it, at most its wait plus the time since it started.
fn oldest_wait(i: &Input, ready: u64) -> (Option<f64>, &'static str) {
    if ready == 0 {
        (None, "none waiting")
    } else if i.last_begin_ms == 0 {
        (None, "unknown: no task started since this process began")
    } else {
        (Some(secs(i.last_wait_ms + i.now_ms.saturating_sub(i.last_begin_ms))), "at most")
    }
}

/// The document.
pub fn document(i: &Input) -> Value {
    let q = &i.depths.queues;
    let sum = |pick: &dyn Fn(&str) -> bool| q.iter().filter(|s| pick(s.role)).map(|s| u64::from(s.ready)).sum::<u64>();
    let ready = sum(&consumed);
    let (wait, wait_is) = oldest_wait(i, ready);
    let t = &i.totals;
    json!({
        "version": VERSION,
        "role": i.role,
        "topics": i.topics,
        "host": i.host,
        "address": i.address,
        "pid": i.pid,
        "started_ms": i.started_ms,
        "now_ms": i.now_ms,
        "uptime_seconds": secs(i.now_ms.saturating_sub(i.started_ms)),
        "children": i.children.map(|(running, expected)| json!({"running": running, "expected": expected})),
        "totals": {
            "done": t.done, "succeeded": t.succeeded, "failed": t.failed, "retried": t.retried,
            "rate_per_minute": t.last_minute, "in_flight": t.in_flight,
        },
        "counters": i.counters,
        "processes": i.processes.iter().map(|p| process(p, i.now_ms)).collect::<Vec<_>>(),
        "depths": {
            "broker_up": i.depths.up,
            "ready": i.depths.up.then_some(ready),
            "unacked": Value::Null,
            "delayed": i.depths.up.then(|| sum(&|r| r == "delay")),
            "failed": i.depths.up.then(|| sum(&|r| r == "failed")),
            "consumers": i.depths.up.then(|| q.iter().filter(|s| consumed(s.role)).map(|s| u64::from(s.consumers)).sum::<u64>()),
            "oldest_wait_seconds": wait,
            "oldest_wait_is": if i.depths.up { wait_is } else { "unknown: broker unreachable" },
            "last_wait_seconds": (i.last_begin_ms > 0).then(|| secs(i.last_wait_ms)),
            "queues": q.iter().map(|s| json!({
                "queue": s.queue, "role": s.role, "ready": s.ready, "consumers": s.consumers,
            })).collect::<Vec<_>>(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::depth::QueueStat;

    fn stat(queue: &str, role: &'static str, ready: u32, consumers: u32) -> QueueStat {
        QueueStat { queue: queue.into(), role, ready, consumers }
    }

    fn worker() -> Input {
        Input {
            role: "worker",
            topics: vec!["demo".into()],
            host: "h1".into(),
            address: "127.0.0.1:9464".into(),
            pid: 100,
            started_ms: 1_000_000,
            now_ms: 1_065_500,
            children: Some((1, 2)),
            processes: vec![
                ProcessRow { pid: 100, role: "parent", started_ms: 1_000_000, ..Default::default() },
                ProcessRow {
                    pid: 101,
                    role: "child",
                    slot: Some(0),
                    started_ms: 1_000_100,
                    cpu_seconds: Some(1.234),
                    cpu: Some(Percent { percent: 12.345, over_secs: 2.0 }),
                    rss_bytes: Some(30_000_000),
                    done: 7,
                    failed: 2,
                    retried: 1,
                    last_minute: 5,
                    in_flight: 1,
                    task: Some(InHand { id: "abc".into(), name: "slow".into(), started_ms: 1_064_000 }),
                },
            ],
            totals: Totals { done: 9, succeeded: 5, failed: 3, retried: 1, last_minute: 5, in_flight: 1 },
            depths: Depths {
                up: true,
                queues: vec![
                    stat("p.task.demo", "ready", 4, 1),
                    stat("p.delay.L0", "delay", 1, 0),
                    stat("p.delay.L3", "delay", 2, 0),
                    stat("p.failed.demo", "failed", 3, 0),
                ],
            },
            last_begin_ms: 1_060_000,
            last_wait_ms: 1_500,
            counters: Map::new(),
        }
    }

    #[test]
    fn a_worker() {
        let d = document(&worker());
        assert_eq!(d["version"], 1);
        assert_eq!(d["uptime_seconds"], 65.5);
        assert_eq!(d["children"], json!({"running": 1, "expected": 2}));
        assert_eq!(d["totals"]["done"], 9);
        let c = &d["processes"][1];
        assert_eq!(
            (c["pid"].as_i64(), c["slot"].as_u64(), c["cpu_percent"].as_f64(), c["cpu_seconds"].as_f64()),
            (Some(101), Some(0), Some(12.3), Some(1.23))
        );
        assert_eq!(c["task"], json!({"id": "abc", "name": "slow", "started_ms": 1_064_000, "running_seconds": 1.5}));
        assert_eq!(c["rate_per_minute"], 5);
        assert_eq!(d["processes"][0]["task"], Value::Null);
        assert_eq!(d["processes"][0]["slot"], Value::Null);
        assert_eq!(d["processes"][0]["cpu_percent"], Value::Null);
        let q = &d["depths"];
        assert_eq!((q["ready"].as_u64(), q["delayed"].as_u64(), q["failed"].as_u64()), (Some(4), Some(3), Some(3)));
        assert_eq!(q["consumers"], 1);
        assert_eq!(q["unacked"], Value::Null);
        assert_eq!(q["queues"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn oldest_wait() {
        // (ready, last begin, broker up) -> (oldest wait seconds, how it is known)
        let rows: [(u32, u64, bool, Value, &str); 4] = [
            (4, 1_060_000, true, json!(7.0), "at most"), // 1.5 s waited + 5.5 s since
            (0, 1_060_000, true, Value::Null, "none waiting"),
            (4, 0, true, Value::Null, "unknown: no task started since this process began"),
            (4, 1_060_000, false, Value::Null, "unknown: broker unreachable"),
        ];
        for (ready, begin, up, secs, how) in rows {
            let mut i = worker();
            i.depths.queues[0].ready = ready;
            i.depths.up = up;
            i.last_begin_ms = begin;
            if !up {
                i.depths.queues.clear();
            }
            let d = document(&i);
            if up {
                assert_eq!(d["depths"]["oldest_wait_seconds"], secs, "{ready} {begin}");
            } else {
                assert_eq!(d["depths"]["ready"], Value::Null);
            }
            assert_eq!(d["depths"]["oldest_wait_is"], how);
        }
    }

    #[test]
    fn a_scheduler() {
        let mut i = worker();
        i.role = "scheduler";
        i.topics.clear();
        i.children = None;
        i.depths.queues = vec![stat("p.events", "events", 2, 1)];
        i.counters.insert("events_routed".into(), json!(3));
        let d = document(&i);
        assert_eq!(d["children"], Value::Null);
        assert_eq!(d["depths"]["ready"], 2);
        assert_eq!(d["depths"]["delayed"], 0);
        assert_eq!(d["counters"]["events_routed"], 3);
    }
}
