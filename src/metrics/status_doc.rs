//! The `/status.json` document as one type: what `status::document` builds and serves, what
//! `fetch::status` reads back for `ebats status` and `Asynclib\Ebats\Status`, and what the dashboard
//! shows. Fields serialize in the order declared here (the crate keeps JSON key order), which is the
//! order docs/monitoring/status.md shows. A reader ignores fields it does not know, so a newer
//! process can add fields without breaking an older reader; a field added later is an `Option` (or
//! `#[serde(default)]`), so a reader can read what an older process serves.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusDoc {
    pub version: u64,
    /// worker, scheduler or consumer.
    pub role: String,
    pub topics: Vec<String>,
    pub host: String,
    pub address: String,
    /// The worker's parent, or the scheduler's or consumer's process.
    pub pid: i32,
    pub started_ms: u64,
    pub now_ms: u64,
    pub uptime_seconds: f64,
    /// A worker's children; none for a scheduler or consumer.
    pub children: Option<Children>,
    pub totals: Totals,
    /// Figures only this role has (a scheduler's events, a consumer's messages).
    pub counters: Map<String, Value>,
    pub processes: Vec<ProcessRow>,
    pub depths: DepthsDoc,
    /// A worker's run and wait times over every task since it started; none for a scheduler or
    /// consumer (and from a process older than the field).
    #[serde(default)]
    pub task_times: Option<TaskTimes>,
    /// A worker: whether its topic is paused (`ebats topics:pause`) as its children know it, and the
    /// tasks they gave back unstarted because of it; none for a scheduler or consumer (and from a
    /// process older than the field).
    #[serde(default)]
    pub pause: Option<PauseDoc>,
    /// A worker: the rate and concurrency limits in force for its topic, and what they held back;
    /// none for a scheduler or consumer (and from a process older than the field).
    #[serde(default)]
    pub limits: Option<LimitsDoc>,
    /// The leading scheduler: the groups of tasks as it folds them (bounded lists, newest first); none
    /// for a scheduler that does not lead, a worker or a consumer (and from a process older than the
    /// field).
    #[serde(default)]
    pub groups: Option<GroupsDoc>,
}

/// The groups of tasks as the leading scheduler folds them (`services::groups::summary`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupsDoc {
    /// When the leader summed them up (Unix ms; at most a second or two behind its fold).
    pub at_ms: i64,
    /// Groups in flight (not every member ended).
    pub open: u64,
    /// Groups this scheduler completed (follow-ups or a plain `done` published) while it led.
    pub completions: u64,
    /// The newest groups in flight, newest first, at most `services::groups::SHOWN_OPEN`.
    pub in_flight: Vec<GroupRow>,
    /// The groups done last, newest first, at most `services::groups::SHOWN_DONE`.
    pub recently_done: Vec<GroupRow>,
}

/// One group's progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupRow {
    pub id: String,
    /// The event whose tasks the group is (empty for a group made by hand).
    pub origin: String,
    pub total: u64,
    /// Members that ended (succeeded, failed for good or cancelled).
    pub done: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Members not ended yet: waiting, delayed, being retried or running.
    pub pending: u64,
    pub opened_at: i64,
    pub completed_at: Option<i64>,
}

/// A worker's limits and what they did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LimitsDoc {
    /// The limits in force (the worker's code's, each replaced by the run-time one of the same id).
    pub in_force: Vec<LimitRow>,
    /// Tasks held back (or waited for) by a limit, by reason, since the worker started.
    pub held_back: HeldBack,
    /// Tasks not made because one with their unique key was already there.
    pub duplicates: u64,
}

/// One limit in force.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LimitRow {
    /// The topic and scope: `demo`, `demo/send`, `demo/{customer:{id}}`, `demo/send/{...}`.
    pub id: String,
    /// The task name it counts (none: every name).
    pub name: Option<String>,
    /// The key template it counts by (none: not per key).
    pub key: Option<String>,
    /// Starts per window (`20/s`), and more after a quiet time.
    pub rate: Option<String>,
    pub burst: u32,
    /// Tasks running at once.
    pub concurrency: Option<u32>,
    /// `code` (`Worker::setLimit`) or `run time` (`Limits::set`, `ebats limits:set`).
    pub source: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct HeldBack {
    pub rate: u64,
    pub concurrency: u64,
}

/// A worker's pause, as its children know it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PauseDoc {
    /// A child of the worker knows its topic paused: it starts none of its tasks.
    pub paused: bool,
    /// Tasks given back to the queue unstarted (no attempt used) because the topic was paused.
    pub given_back: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Children {
    pub running: usize,
    pub expected: usize,
}

/// Sums over the whole worker (children that ended included) or over the scheduler or consumer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub done: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub retried: u64,
    /// Ended in the last 60 s.
    #[serde(rename = "rate_per_minute")]
    pub last_minute: u64,
    pub in_flight: u64,
}

/// One process of the worker (parent, metrics process, children) or the scheduler or consumer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessRow {
    pub pid: i32,
    /// parent, metrics, child, scheduler or consumer.
    pub role: String,
    pub slot: Option<usize>,
    pub started_ms: u64,
    pub uptime_seconds: f64,
    pub cpu_seconds: Option<f64>,
    pub cpu_percent: Option<f64>,
    pub cpu_window_seconds: Option<f64>,
    pub rss_bytes: Option<u64>,
    pub done: u64,
    pub failed: u64,
    pub retried: u64,
    #[serde(rename = "rate_per_minute")]
    pub last_minute: u64,
    pub in_flight: u64,
    pub task: Option<InHand>,
}

/// The task a process runs now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InHand {
    pub id: String,
    pub name: String,
    pub started_ms: u64,
    pub running_seconds: f64,
}

/// The queues the process reports; the sums are none when the broker did not answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DepthsDoc {
    pub broker_up: bool,
    pub ready: Option<u64>,
    /// AMQP does not tell: always none.
    pub unacked: Option<u64>,
    pub delayed: Option<u64>,
    pub failed: Option<u64>,
    pub consumers: Option<u64>,
    pub oldest_wait_seconds: Option<f64>,
    /// "at most", "none waiting" or "unknown: ...".
    pub oldest_wait_is: String,
    pub last_wait_seconds: Option<f64>,
    pub queues: Vec<QueueRow>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueRow {
    pub queue: String,
    /// ready, delay, failed, events or consumer.
    pub role: String,
    pub ready: u32,
    pub consumers: u32,
}

/// Run and wait times summed over every task a worker ran (what its `/metrics` histograms
/// `ebats_task_run_seconds` and `ebats_task_wait_seconds` sum and count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskTimes {
    pub run_seconds_sum: f64,
    pub run_seconds_count: u64,
    pub wait_seconds_sum: f64,
    pub wait_seconds_count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A document as an ebats of the first version served it (no `task_times`, `pause`, `limits`, `groups`).
    fn first_version() -> Value {
        json!({
            "version": 1, "role": "worker", "topics": ["demo"], "host": "h", "address": "127.0.0.1:9464",
            "pid": 10, "started_ms": 1000, "now_ms": 3000, "uptime_seconds": 2.0,
            "children": {"running": 1, "expected": 2},
            "totals": {"done": 3, "succeeded": 2, "failed": 1, "retried": 0, "rate_per_minute": 3, "in_flight": 1},
            "counters": {},
            "processes": [{
                "pid": 11, "role": "child", "slot": 0, "started_ms": 1500, "uptime_seconds": 1.5,
                "cpu_seconds": null, "cpu_percent": null, "cpu_window_seconds": null, "rss_bytes": 4096,
                "done": 3, "failed": 1, "retried": 0, "rate_per_minute": 3, "in_flight": 1,
                "task": {"id": "a", "name": "slow", "started_ms": 2500, "running_seconds": 0.5}
            }],
            "depths": {
                "broker_up": true, "ready": 4, "unacked": null, "delayed": 0, "failed": 1, "consumers": 1,
                "oldest_wait_seconds": 7.0, "oldest_wait_is": "at most", "last_wait_seconds": 1.5,
                "queues": [{"queue": "p.task.demo", "role": "ready", "ready": 4, "consumers": 1}]
            }
        })
    }

    #[test]
    fn reads_an_older_document_and_writes_it_back_the_same() {
        let doc: StatusDoc = serde_json::from_value(first_version()).unwrap();
        assert_eq!(doc.task_times, None);
        assert_eq!(doc.pause, None);
        assert_eq!(doc.limits, None);
        assert_eq!(doc.groups, None);
        assert_eq!(doc.processes[0].task.as_ref().map(|t| t.name.as_str()), Some("slow"));
        let mut back = serde_json::to_value(&doc).unwrap();
        assert_eq!(back.as_object_mut().unwrap().remove("task_times"), Some(Value::Null));
        assert_eq!(back.as_object_mut().unwrap().remove("pause"), Some(Value::Null));
        assert_eq!(back.as_object_mut().unwrap().remove("limits"), Some(Value::Null));
        assert_eq!(back.as_object_mut().unwrap().remove("groups"), Some(Value::Null));
        assert_eq!(serde_json::to_string(&back).unwrap(), serde_json::to_string(&first_version()).unwrap());
    }

    #[test]
    fn ignores_fields_it_does_not_know() {
        let mut v = first_version();
        v["paused"] = json!({"topics": 2});
        v["processes"][0]["threads"] = json!(4);
        v["depths"]["queues"][0]["bytes"] = json!(10);
        let doc: StatusDoc = serde_json::from_value(v).unwrap();
        assert_eq!((doc.pid, doc.processes[0].pid, doc.depths.queues[0].ready), (10, 11, 4));
    }

    #[test]
    fn refuses_what_is_not_a_status() {
        for bad in [json!({}), json!([1]), json!({"version": 1, "role": "worker"})] {
            assert!(serde_json::from_value::<StatusDoc>(bad.clone()).is_err(), "{bad}");
        }
    }
}
