//! The `/status.json` document: what a worker, scheduler or consumer is doing, for programs (`ebats
//! status`, a dashboard). Built here from plain data by a pure function; `serve` gathers the data.
//! The document is one type, `status_doc::StatusDoc`, documented in docs/monitoring/status.md;
//! `VERSION` changes when a field changes meaning or goes away (new fields may appear at any time).

use serde_json::{Map, Value};

use super::cpu::Percent;
use super::depth::Depths;
use super::status_doc::{
    Children, DepthsDoc, GroupsDoc, InHand, LimitsDoc, PauseDoc, ProcessRow, QueueRow, StatusDoc, TaskTimes, Totals,
};

pub const VERSION: u64 = 1;

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
    /// Each process's row, made with [`process`].
    pub processes: Vec<ProcessRow>,
    pub totals: Totals,
    pub depths: Depths,
    /// When the last task began (0: none since start) and how long it had waited, in ms.
    pub last_begin_ms: u64,
    pub last_wait_ms: u64,
    /// Figures only this role has (a scheduler's events, a consumer's messages).
    pub counters: Map<String, Value>,
    /// A worker's run and wait times.
    pub task_times: Option<TaskTimes>,
    /// A worker's pause, as its children know it.
    pub pause: Option<PauseDoc>,
    /// A worker's limits in force and what they held back.
    pub limits: Option<LimitsDoc>,
    /// The leading scheduler's groups of tasks.
    pub groups: Option<GroupsDoc>,
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

/// A process's row as read at `now_ms` (its counts and task are the caller's): CPU seconds to
/// two places, the percentage and its window to one.
pub fn process(
    pid: i32,
    role: &str,
    started_ms: u64,
    now_ms: u64,
    cpu_seconds: Option<f64>,
    cpu: Option<Percent>,
    rss_bytes: Option<u64>,
) -> ProcessRow {
    ProcessRow {
        pid,
        role: role.to_string(),
        started_ms,
        uptime_seconds: secs(now_ms.saturating_sub(started_ms)),
        cpu_seconds: cpu_seconds.map(|c| round(c, 2)),
        cpu_percent: cpu.map(|c| round(c.percent, 1)),
        cpu_window_seconds: cpu.map(|c| round(c.over_secs, 1)),
        rss_bytes,
        ..ProcessRow::default()
    }
}

/// The task a process runs, started at `started_ms`, as seen at `now_ms`.
pub fn in_hand(id: String, name: String, started_ms: u64, now_ms: u64) -> InHand {
    InHand { id, name, started_ms, running_seconds: secs(now_ms.saturating_sub(started_ms)) }
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

fn depths(i: &Input) -> DepthsDoc {
    let q = &i.depths.queues;
    let up = i.depths.up;
    let sum = |pick: &dyn Fn(&str) -> bool| q.iter().filter(|s| pick(s.role)).map(|s| u64::from(s.ready)).sum::<u64>();
    let ready = sum(&consumed);
    let (wait, wait_is) = oldest_wait(i, ready);
    DepthsDoc {
        broker_up: up,
        ready: up.then_some(ready),
        unacked: None,
        delayed: up.then(|| sum(&|r| r == "delay")),
        failed: up.then(|| sum(&|r| r == "failed")),
        consumers: up.then(|| q.iter().filter(|s| consumed(s.role)).map(|s| u64::from(s.consumers)).sum::<u64>()),
        oldest_wait_seconds: wait,
        oldest_wait_is: if up { wait_is } else { "unknown: broker unreachable" }.to_string(),
        last_wait_seconds: (i.last_begin_ms > 0).then(|| secs(i.last_wait_ms)),
        queues: q
            .iter()
            .map(|s| QueueRow {
                queue: s.queue.clone(),
                role: s.role.to_string(),
                ready: s.ready,
                consumers: s.consumers,
            })
            .collect(),
    }
}

/// The document.
pub fn document(i: &Input) -> StatusDoc {
    StatusDoc {
        version: VERSION,
        role: i.role.to_string(),
        topics: i.topics.clone(),
        host: i.host.clone(),
        address: i.address.clone(),
        pid: i.pid,
        started_ms: i.started_ms,
        now_ms: i.now_ms,
        uptime_seconds: secs(i.now_ms.saturating_sub(i.started_ms)),
        children: i.children.map(|(running, expected)| Children { running, expected }),
        totals: i.totals,
        counters: i.counters.clone(),
        processes: i.processes.clone(),
        depths: depths(i),
        task_times: i.task_times,
        pause: i.pause,
        limits: i.limits.clone(),
        groups: i.groups.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::depth::QueueStat;
    use crate::metrics::status_doc::{GroupRow, HeldBack, LimitRow};
    use serde_json::json;

    fn doc(i: &Input) -> Value {
        serde_json::to_value(document(i)).unwrap()
    }

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
                process(100, "parent", 1_000_000, 1_065_500, None, None, None),
                ProcessRow {
                    slot: Some(0),
                    done: 7,
                    failed: 2,
                    retried: 1,
                    last_minute: 5,
                    in_flight: 1,
                    task: Some(in_hand("abc".into(), "slow".into(), 1_064_000, 1_065_500)),
                    ..process(
                        101,
                        "child",
                        1_000_100,
                        1_065_500,
                        Some(1.234),
                        Some(Percent { percent: 12.345, over_secs: 2.0 }),
                        Some(30_000_000),
                    )
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
            task_times: Some(TaskTimes {
                run_seconds_sum: 0.5,
                run_seconds_count: 9,
                wait_seconds_sum: 3.0,
                wait_seconds_count: 10,
            }),
            pause: Some(PauseDoc { paused: true, given_back: 2 }),
            limits: Some(LimitsDoc {
                in_force: vec![LimitRow {
                    id: "demo/send".into(),
                    name: Some("send".into()),
                    key: None,
                    rate: Some("20/s".into()),
                    burst: 5,
                    concurrency: Some(4),
                    source: "run time".into(),
                }],
                held_back: HeldBack { rate: 3, concurrency: 1 },
                duplicates: 0,
            }),
            groups: None,
        }
    }

    #[test]
    fn a_worker() {
        let d = doc(&worker());
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
        assert_eq!(d["pause"], json!({"paused": true, "given_back": 2}));
    }

    #[test]
    fn the_document_as_served() {
        let text = serde_json::to_string(&document(&worker())).unwrap();
        assert_eq!(text, GOLDEN.lines().map(str::trim).collect::<String>());
    }

    /// The worker's document, in the order and with the nulls and rounding docs/monitoring/status.md
    /// shows.
    const GOLDEN: &str = r#"{"version":1,"role":"worker","topics":["demo"],"host":"h1","address":"127.0.0.1:9464",
        "pid":100,"started_ms":1000000,"now_ms":1065500,"uptime_seconds":65.5,
        "children":{"running":1,"expected":2},
        "totals":{"done":9,"succeeded":5,"failed":3,"retried":1,"rate_per_minute":5,"in_flight":1},
        "counters":{},
        "processes":[
          {"pid":100,"role":"parent","slot":null,"started_ms":1000000,"uptime_seconds":65.5,"cpu_seconds":null,
           "cpu_percent":null,"cpu_window_seconds":null,"rss_bytes":null,"done":0,"failed":0,"retried":0,
           "rate_per_minute":0,"in_flight":0,"task":null},
          {"pid":101,"role":"child","slot":0,"started_ms":1000100,"uptime_seconds":65.4,"cpu_seconds":1.23,
           "cpu_percent":12.3,"cpu_window_seconds":2.0,"rss_bytes":30000000,"done":7,"failed":2,"retried":1,
           "rate_per_minute":5,"in_flight":1,
           "task":{"id":"abc","name":"slow","started_ms":1064000,"running_seconds":1.5}}],
        "depths":{"broker_up":true,"ready":4,"unacked":null,"delayed":3,"failed":3,"consumers":1,
          "oldest_wait_seconds":7.0,"oldest_wait_is":"at most","last_wait_seconds":1.5,
          "queues":[{"queue":"p.task.demo","role":"ready","ready":4,"consumers":1},
            {"queue":"p.delay.L0","role":"delay","ready":1,"consumers":0},
            {"queue":"p.delay.L3","role":"delay","ready":2,"consumers":0},
            {"queue":"p.failed.demo","role":"failed","ready":3,"consumers":0}]},
        "task_times":{"run_seconds_sum":0.5,"run_seconds_count":9,"wait_seconds_sum":3.0,"wait_seconds_count":10},
        "pause":{"paused":true,"given_back":2},
        "limits":{"in_force":[{"id":"demo/send","name":"send","key":null,"rate":"20/s","burst":5,"concurrency":4,
          "source":"run time"}],"held_back":{"rate":3,"concurrency":1},"duplicates":0},
        "groups":null}"#;

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
            let d = doc(&i);
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
        i.task_times = None;
        i.pause = None;
        i.limits = None;
        let row = GroupRow {
            id: "g1".into(),
            total: 3,
            done: 1,
            succeeded: 1,
            pending: 2,
            opened_at: 5,
            ..Default::default()
        };
        i.groups = Some(GroupsDoc { at_ms: 9, open: 1, completions: 4, in_flight: vec![row], recently_done: vec![] });
        let d = doc(&i);
        assert_eq!(
            d["groups"],
            json!({"at_ms": 9, "open": 1, "completions": 4, "recently_done": [], "in_flight": [{
                "id": "g1", "origin": "", "total": 3, "done": 1, "succeeded": 1, "failed": 0, "cancelled": 0,
                "pending": 2, "opened_at": 5, "completed_at": null}]})
        );
        assert_eq!(d["task_times"], Value::Null);
        assert_eq!(d["pause"], Value::Null);
        assert_eq!(d["limits"], Value::Null);
        assert_eq!(d["children"], Value::Null);
        assert_eq!(d["depths"]["ready"], 2);
        assert_eq!(d["depths"]["delayed"], 0);
        assert_eq!(d["counters"]["events_routed"], 3);
    }
}
