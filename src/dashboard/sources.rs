//! Where the dashboard's figures of executions and processes come from, as plain data.
//!
//! - Executions: the execution history (`<prefix>.history`), when there is one, followed by a
//!   thread of its own on a connection of its own ([`follow_history`]: the last week once, then each
//!   record as it is appended) into a [`HistoryView`] (the newest records and the failures of the last
//!   hour and week); without the stream the page says "execution history is off".
//! - Processes: the `/status.json` of each address (given with `--metrics=host:port,...`, or found
//!   through the broker's processes stream), its topic counters too (`totals`, `children`,
//!   `task_times`): one request per address, no Prometheus text read.
//!
//! Everything above this file (series, API, pages) uses only the types here.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use parking_lot::Mutex;

use serde::Serialize;
use serde_json::Value;

use super::series::ChartPoint;
use crate::broker::names::Names;
use crate::broker::stream_read::{self, Go, Offset};
use crate::broker::{ErrorKind, Session};
use crate::config::Settings;
use crate::history::record::{outcome_name, status_named};
use crate::history::Record;
use crate::metrics::fetch;
use crate::metrics::status_doc::{LimitRow, ProcessRow, StatusDoc};
use crate::outcome::STATE_FAIL;

/// How long one address may take to answer.
const TIMEOUT: Duration = Duration::from_secs(3);

/// One execution of a task, as the history records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Execution {
    pub topic: String,
    pub id: String,
    pub task: String,
    /// The history's outcome: succ, fail, retry, err.
    pub status: String,
    pub message: String,
    pub ms: f64,
    pub attempt: u32,
    pub pid: i64,
    pub host: String,
    pub started_ms: i64,
    pub ended_ms: i64,
    pub params: Value,
}

/// Which executions: newest first, at most `limit`, each filter when set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecQuery {
    pub topic: Option<String>,
    pub task: Option<String>,
    pub status: Option<String>,
    pub limit: usize,
}

/// The most recent records the dashboard keeps in memory (newest), for the executions panel.
pub const KEPT: usize = 2000;
/// How far back the failures are counted.
pub const WEEK_MS: i64 = 7 * 86_400_000;
const HOUR_MS: i64 = 3_600_000;
const MINUTE_MS: i64 = 60_000;

/// What the history says, kept up to date as records are appended: the newest records (newest
/// first) and the failures counted over the last hour and week (by the minute they ended in).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryView {
    /// The stream exists (a worker records executions under this prefix).
    pub on: bool,
    pub at_ms: i64,
    pub recent: VecDeque<Execution>,
    pub failed_1h: u64,
    pub failed_7d: u64,
    /// Why the last read failed, if it did (other than the stream missing).
    pub error: Option<String>,
    /// Runs of the last hour per [`STEP_MS`] interval (by its start): runs, failed, run ms summed.
    pub hour: BTreeMap<i64, (u64, u64, f64)>,
    /// Failures of the last week per minute (by its start).
    fails: BTreeMap<i64, u64>,
}

fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

/// The interval of the charts drawn from the history.
pub const STEP_MS: i64 = 30_000;

impl Execution {
    pub fn of(r: &Record) -> Execution {
        Execution {
            topic: r.topic.clone(),
            id: r.id.clone(),
            task: r.task.clone(),
            status: outcome_name(r.status).to_string(),
            message: r.message.clone(),
            ms: r.ms,
            attempt: r.attempt,
            pid: r.pid as i64,
            host: r.host.clone(),
            started_ms: r.start_ms,
            ended_ms: r.end_ms,
            params: r.params.clone(),
        }
    }
}

impl HistoryView {
    /// An empty view of a history that is on, read at `now_ms`; records are added with [`Self::add`].
    pub fn new(now_ms: i64) -> HistoryView {
        HistoryView { on: true, at_ms: now_ms, ..HistoryView::default() }
    }

    /// Counts `r` (given in stream order, oldest first) and keeps it among the newest [`KEPT`].
    pub fn add(&mut self, r: &Record) {
        let minute = minute_of(r.end_ms);
        if r.status == STATE_FAIL && minute >= minute_of(self.at_ms - WEEK_MS) {
            *self.fails.entry(minute).or_default() += 1;
            self.failed_7d += 1;
            self.failed_1h += u64::from(minute >= minute_of(self.at_ms - HOUR_MS));
        }
        if r.end_ms >= self.at_ms - HOUR_MS {
            let b = self.hour.entry(r.end_ms.div_euclid(STEP_MS) * STEP_MS).or_default();
            b.0 += 1;
            b.1 += u64::from(r.status == STATE_FAIL);
            b.2 += r.ms;
        }
        if self.recent.len() == KEPT {
            self.recent.pop_back();
        }
        self.recent.push_front(Execution::of(r));
    }

    /// Moves the view to `now_ms`: what left the hour and the week is no longer counted.
    pub fn advance(&mut self, now_ms: i64) {
        self.at_ms = self.at_ms.max(now_ms);
        let week = minute_of(self.at_ms - WEEK_MS);
        let hour = minute_of(self.at_ms - HOUR_MS);
        self.fails = self.fails.split_off(&week);
        self.failed_7d = self.fails.values().sum();
        self.failed_1h = self.fails.range(hour..).map(|(_, n)| n).sum();
        self.hour = self.hour.split_off(&(self.at_ms - HOUR_MS).div_euclid(STEP_MS).saturating_mul(STEP_MS));
    }

    /// Throughput and run time of the last hour, one point per [`STEP_MS`] (empty ones included),
    /// oldest first, each at the end of its interval.
    pub fn chart(&self) -> Vec<ChartPoint> {
        let last = (self.at_ms - 1).div_euclid(STEP_MS) * STEP_MS;
        let first = (self.at_ms - HOUR_MS).div_euclid(STEP_MS) * STEP_MS;
        (first..=last)
            .step_by(STEP_MS as usize)
            .map(|start| {
                let (n, failed, ms) = self.hour.get(&start).copied().unwrap_or_default();
                ChartPoint {
                    at_ms: (start + STEP_MS).min(self.at_ms),
                    per_min: n as f64 * 60_000.0 / STEP_MS as f64,
                    failed: failed as f64,
                    avg_run_ms: (n > 0).then(|| ms / n as f64),
                }
            })
            .collect()
    }

    /// The kept executions matching `q`, newest first. A status is given by name or number
    /// (`fail`, `failed`, `1`); a bad one is an error.
    pub fn executions(&self, q: &ExecQuery) -> Result<Vec<Execution>, String> {
        let status = match q.status.as_deref() {
            Some(s) => Some(outcome_name(status_named(s)?)),
            None => None,
        };
        Ok(self
            .recent
            .iter()
            .filter(|e| q.topic.as_ref().is_none_or(|t| *t == e.topic))
            .filter(|e| q.task.as_ref().is_none_or(|t| *t == e.task))
            .filter(|e| status.is_none_or(|s| s == e.status))
            .take(q.limit)
            .cloned()
            .collect())
    }
}

/// How long the history follower waits before it looks again for a stream that is missing or
/// after an error.
const FOLLOW_AGAIN: Duration = Duration::from_secs(5);

/// Follows the execution history into `view` until `stop` says so: the last week once, then each
/// record as it is appended (`stream_read::follow`: a connection of its own, moving to the next
/// node when its node goes away), so no read holds the process's broker session and no read starts
/// over. Nothing is written to the stream. While the stream is missing the view says the history is
/// off, and the stream is looked for again every few seconds.
pub fn follow_history(settings: &Settings, view: &Mutex<HistoryView>, stop: &dyn Fn() -> bool) {
    let stream = Names::new(&settings.prefix).history_stream();
    let mut checker: Option<Session> = None;
    // The offset after which to read on (after an error), within the stream as it was found.
    let mut last: Option<u64> = None;
    while !stop() {
        let now = crate::wire::now_ms();
        let exists = (|| {
            if checker.is_none() {
                checker = Some(Session::new()?);
            }
            checker.as_mut().expect("set above").queue_counts(settings, &stream).map(|_| ())
        })();
        match exists {
            Ok(()) if last.is_none() => *view.lock() = HistoryView::new(now),
            Ok(()) => view.lock().on = true,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                last = None;
                *view.lock() = HistoryView { at_ms: now, ..HistoryView::default() };
            }
            Err(e) => view.lock().error = Some(e.to_string()),
        }
        if view.lock().on {
            let from = last.map_or(Offset::Time(((now - WEEK_MS).max(0) / 1000) as u64), |o| Offset::At(o + 1));
            let r = stream_read::follow(
                settings,
                &stream,
                "history stream",
                from,
                crate::history::reader::PREFETCH,
                stop,
                |o, d| {
                    last = Some(o);
                    let records = crate::history::Record::parse_many(&d.data).unwrap_or_default();
                    let mut v = view.lock();
                    v.error = None;
                    for r in &records {
                        if r.end_ms >= v.at_ms - WEEK_MS {
                            v.add(r);
                        }
                    }
                    Go::On
                },
            );
            if let Err(e) = r {
                if e.kind() == ErrorKind::NotFound {
                    last = None;
                }
                view.lock().error = Some(format!("following the execution history: {e}"));
            }
        }
        crate::broker::stop::pause(FOLLOW_AGAIN, Duration::from_millis(100), stop);
    }
    if let Some(mut s) = checker {
        s.close();
    }
}

/// One process of a worker, scheduler or consumer as the dashboard lists it: its row of the status
/// document, with the address it came from and the topic its process serves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessOf {
    /// The address its figures came from.
    pub source: String,
    pub topic: Option<String>,
    /// `cpu_percent` is filled from the series when the document has none.
    #[serde(flatten)]
    pub row: ProcessRow,
}

/// Counters of one topic, summed over the processes of one address.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TopicCounts {
    /// Task runs, every outcome.
    pub done: f64,
    /// Runs that failed (failed, died, timed out).
    pub failed: f64,
    pub run_sum: f64,
    pub run_count: f64,
    pub wait_sum: f64,
    pub wait_count: f64,
    pub in_flight: f64,
    pub children: f64,
    /// Workers of the topic whose children know it paused.
    pub paused: f64,
    /// Tasks held back by a limit (a full rate window, no free permit), duplicates not made, tasks
    /// given back because of a pause.
    pub held_back_rate: f64,
    pub held_back_concurrency: f64,
    pub duplicates: f64,
    pub given_back: f64,
}

impl TopicCounts {
    pub fn add(&mut self, o: &TopicCounts) {
        self.done += o.done;
        self.failed += o.failed;
        self.run_sum += o.run_sum;
        self.run_count += o.run_count;
        self.wait_sum += o.wait_sum;
        self.wait_count += o.wait_count;
        self.in_flight += o.in_flight;
        self.children += o.children;
        self.paused += o.paused;
        self.held_back_rate += o.held_back_rate;
        self.held_back_concurrency += o.held_back_concurrency;
        self.duplicates += o.duplicates;
        self.given_back += o.given_back;
    }
}

/// What one address gave.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Scrape {
    pub address: String,
    pub error: Option<String>,
    pub processes: Vec<ProcessOf>,
    pub topics: BTreeMap<String, TopicCounts>,
    /// The limits in force a worker showed, by its topic.
    pub limits: BTreeMap<String, Vec<LimitRow>>,
}

/// The counters of the topic a worker serves, from its status document; none for a scheduler or a
/// consumer (or a worker older than `task_times`).
pub fn topic_counts(doc: &StatusDoc) -> BTreeMap<String, TopicCounts> {
    let (Some(topic), Some(times)) = (doc.topics.first(), doc.task_times) else { return BTreeMap::new() };
    let t = &doc.totals;
    let counts = TopicCounts {
        done: t.done as f64,
        failed: t.failed as f64,
        run_sum: times.run_seconds_sum,
        run_count: times.run_seconds_count as f64,
        wait_sum: times.wait_seconds_sum,
        wait_count: times.wait_seconds_count as f64,
        in_flight: t.in_flight as f64,
        children: doc.children.map_or(0, |c| c.running) as f64,
        paused: doc.pause.is_some_and(|p| p.paused) as u8 as f64,
        held_back_rate: doc.limits.as_ref().map_or(0, |l| l.held_back.rate) as f64,
        held_back_concurrency: doc.limits.as_ref().map_or(0, |l| l.held_back.concurrency) as f64,
        duplicates: doc.limits.as_ref().map_or(0, |l| l.duplicates) as f64,
        given_back: doc.pause.map_or(0, |p| p.given_back) as f64,
    };
    BTreeMap::from([(topic.clone(), counts)])
}

/// What the status document served at `address` gives the dashboard: its processes and counters.
pub fn scrape_of(address: &str, doc: StatusDoc) -> Scrape {
    let topic = doc.topics.first().cloned();
    Scrape {
        address: address.to_string(),
        error: None,
        topics: topic_counts(&doc),
        limits: match (&topic, &doc.limits) {
            (Some(t), Some(l)) if doc.role == "worker" => BTreeMap::from([(t.clone(), l.in_force.clone())]),
            _ => BTreeMap::new(),
        },
        processes: doc
            .processes
            .into_iter()
            .map(|row| ProcessOf { source: address.to_string(), topic: topic.clone(), row })
            .collect(),
    }
}

/// Reads the processes and counters served at `address` (its `/status.json`).
pub fn scrape(address: &str) -> Scrape {
    match fetch::status(address, TIMEOUT) {
        Ok(doc) => scrape_of(address, doc),
        Err(e) => Scrape { address: address.to_string(), error: Some(e), ..Default::default() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker_doc() -> StatusDoc {
        serde_json::from_value(serde_json::json!({
            "version": 1, "role": "worker", "topics": ["mail"], "host": "h", "address": "127.0.0.1:9",
            "pid": 10, "started_ms": 4_500, "now_ms": 10_000, "uptime_seconds": 5.5,
            "children": {"running": 2, "expected": 2},
            "totals": {"done": 10, "succeeded": 7, "failed": 3, "retried": 0, "rate_per_minute": 10, "in_flight": 1},
            "counters": {},
            "processes": [
                {"pid": 10, "role": "parent", "slot": null, "started_ms": 4_500, "uptime_seconds": 5.5,
                 "cpu_seconds": 1.25, "cpu_percent": 3.0, "cpu_window_seconds": 2.0, "rss_bytes": 4096,
                 "done": 0, "failed": 0, "retried": 0, "rate_per_minute": 0, "in_flight": 0, "task": null},
                {"pid": 11, "role": "child", "slot": 0, "started_ms": 5_000, "uptime_seconds": 5.0,
                 "cpu_seconds": null, "cpu_percent": null, "cpu_window_seconds": null, "rss_bytes": null,
                 "done": 10, "failed": 3, "retried": 0, "rate_per_minute": 10, "in_flight": 1,
                 "task": {"id": "a", "name": "slow", "started_ms": 8_500, "running_seconds": 1.5}}
            ],
            "depths": {"broker_up": true, "ready": 0, "unacked": null, "delayed": 0, "failed": 0, "consumers": 1,
                       "oldest_wait_seconds": null, "oldest_wait_is": "none waiting", "last_wait_seconds": null,
                       "queues": []},
            "task_times": {"run_seconds_sum": 0.5, "run_seconds_count": 9, "wait_seconds_sum": 3.0,
                           "wait_seconds_count": 10}
        }))
        .unwrap()
    }

    #[test]
    fn topics() {
        let s = scrape_of("127.0.0.1:9", worker_doc());
        let c = &s.topics["mail"];
        assert_eq!(
            (c.done, c.failed, c.run_sum, c.run_count, c.wait_sum, c.wait_count, c.in_flight, c.children),
            (10.0, 3.0, 0.5, 9.0, 3.0, 10.0, 1.0, 2.0)
        );
        assert_eq!(c.paused, 0.0, "a worker older than `pause` shows its topic running");
        let mut paused = worker_doc();
        paused.pause = Some(crate::metrics::status_doc::PauseDoc { paused: true, given_back: 3 });
        assert_eq!(topic_counts(&paused)["mail"].paused, 1.0);
        assert_eq!(s.topics.len(), 1);
        let older = StatusDoc { task_times: None, ..worker_doc() };
        assert!(topic_counts(&older).is_empty(), "a worker older than task_times gives no counters");
        let scheduler = StatusDoc { role: "scheduler".into(), topics: vec![], task_times: None, ..worker_doc() };
        assert!(topic_counts(&scheduler).is_empty());
    }

    #[test]
    fn processes_from_status() {
        let s = scrape_of("h:1", worker_doc());
        let p = &s.processes;
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].row.pid, p[0].row.role.as_str(), p[0].row.slot), (10, "parent", None));
        assert_eq!((p[1].row.slot, p[1].row.task.as_ref().map(|t| t.name.as_str())), (Some(0), Some("slow")));
        assert!(p.iter().all(|r| r.topic.as_deref() == Some("mail") && r.source == "h:1"));
        let shown = serde_json::to_value(&p[1]).unwrap();
        assert_eq!(
            (
                &shown["source"],
                &shown["topic"],
                &shown["pid"],
                &shown["uptime_seconds"],
                &shown["task"]["running_seconds"]
            ),
            (
                &serde_json::json!("h:1"),
                &serde_json::json!("mail"),
                &serde_json::json!(11),
                &serde_json::json!(5.0),
                &serde_json::json!(1.5)
            ),
            "the page reads the row's fields beside source and topic"
        );
    }

    fn record(task: &str, status: i64, end_ms: i64) -> Record {
        let run = crate::history::record::Run { millis: 2.0, message: "m", class: None, status, end_ms };
        Record::of(&crate::wire::TaskMsg::new("mail", task, serde_json::json!({"n": 1}), 0), &run, 100, 7, "h")
    }

    #[test]
    fn history_view() {
        let now = 10 * 86_400_000;
        let mut v = HistoryView::new(now);
        let table = [
            ("old", STATE_FAIL, now - WEEK_MS - 1),
            ("week", STATE_FAIL, now - WEEK_MS),
            ("hour", STATE_FAIL, now - HOUR_MS),
            ("ok", crate::outcome::STATE_SUCC, now - 10),
            ("again", crate::outcome::STATE_RETRY, now - 5),
        ];
        for (task, status, end) in table {
            v.add(&record(task, status, end));
        }
        assert_eq!((v.failed_1h, v.failed_7d), (1, 2));
        let mut later = v.clone();
        later.advance(now + MINUTE_MS);
        assert_eq!((later.failed_1h, later.failed_7d), (0, 1), "a minute on, the oldest failures are out");
        later.advance(now);
        assert_eq!(later.at_ms, now + MINUTE_MS, "time does not go back");
        later.advance(now + WEEK_MS + MINUTE_MS);
        assert_eq!((later.failed_1h, later.failed_7d, later.hour.len()), (0, 0, 0));
        let chart = v.chart();
        assert_eq!(chart.len(), 120, "an hour of 30 s intervals");
        assert_eq!(chart.last().unwrap().at_ms, now);
        let last = chart.last().unwrap();
        assert_eq!((last.per_min, last.failed, last.avg_run_ms), (4.0, 0.0, Some(2.0)), "ok and again");
        let hour = chart.iter().find(|p| p.failed > 0.0).unwrap();
        assert_eq!((hour.at_ms, hour.per_min), (now - HOUR_MS + STEP_MS, 2.0), "the run of an hour ago");
        assert!(chart.iter().filter(|p| p.per_min == 0.0).all(|p| p.avg_run_ms.is_none()));
        let q = |status: Option<&str>, task: Option<&str>, limit| ExecQuery {
            topic: Some("mail".into()),
            task: task.map(String::from),
            status: status.map(String::from),
            limit,
        };
        let names = |l: Vec<Execution>| l.into_iter().map(|e| e.task).collect::<Vec<_>>();
        assert_eq!(names(v.executions(&q(None, None, 10)).unwrap()), ["again", "ok", "hour", "week", "old"]);
        assert_eq!(names(v.executions(&q(Some("failed"), None, 2)).unwrap()), ["hour", "week"]);
        assert_eq!(names(v.executions(&q(Some("succ"), None, 9)).unwrap()), ["ok"]);
        assert_eq!(names(v.executions(&q(None, Some("ok"), 9)).unwrap()), ["ok"]);
        assert!(v
            .executions(&ExecQuery { topic: Some("other".into()), limit: 9, ..Default::default() })
            .unwrap()
            .is_empty());
        assert!(v.executions(&q(Some("weird"), None, 1)).unwrap_err().contains("unknown status"));
        let e = &v.recent[0];
        assert_eq!((e.status.as_str(), e.pid, e.host.as_str(), e.ms, e.ended_ms), ("retry", 7, "h", 2.0, now - 5));
        for i in 0..KEPT {
            v.add(&record(&format!("t{i}"), crate::outcome::STATE_SUCC, now));
        }
        assert_eq!(v.recent.len(), KEPT);
        assert_eq!(v.recent[0].task, format!("t{}", KEPT - 1));
    }

    #[test]
    fn unreachable_address() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap().to_string();
        drop(l);
        assert!(scrape(&a).error.is_some());
    }
}
