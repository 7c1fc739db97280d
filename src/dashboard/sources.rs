//! Where the dashboard's figures of executions and processes come from, as plain data.
//!
//! - Executions: the execution history (`<prefix>.history`), when there is one, followed by a
//!   thread of its own on a connection of its own ([`follow_history`]: the last week once, then each
//!   record as it is appended) into a [`HistoryView`] (the newest records and the failures of the last
//!   hour and week); without the stream the page says "execution history is off".
//! - Processes: the `/status.json` of each address (given with `--metrics=host:port,...`, or found
//!   through the broker's processes stream); topic counters: the Prometheus text of its `/metrics`.
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
            let r = stream_read::follow(settings, &stream, "history stream", from, 500, stop, |o, d| {
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
            });
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

/// One process of a worker or a scheduler.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessRow {
    /// The address its figures came from.
    pub source: String,
    /// parent, child, scheduler, consumer.
    pub role: String,
    pub slot: String,
    pub pid: i64,
    pub topic: Option<String>,
    pub uptime_s: Option<f64>,
    pub cpu_seconds: Option<f64>,
    /// Over the last sampling interval (filled by the series).
    pub cpu_percent: Option<f64>,
    pub rss_bytes: Option<u64>,
    /// The task in hand and since when it runs.
    pub task: Option<String>,
    pub task_for_ms: Option<u64>,
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
    }
}

/// What one address gave.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Scrape {
    pub address: String,
    pub error: Option<String>,
    pub processes: Vec<ProcessRow>,
    pub topics: BTreeMap<String, TopicCounts>,
}

/// One sample line of the exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

fn parse_labels(s: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        out.insert(name.trim().to_string(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some(out)
}

/// The samples of a Prometheus text exposition; comments and lines that do not parse are skipped.
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, labels, rest) = match line.find('{') {
            Some(i) => {
                let Some(j) = line.rfind('}') else { continue };
                let Some(l) = parse_labels(&line[i + 1..j]) else { continue };
                (&line[..i], l, &line[j + 1..])
            }
            None => match line.split_once(' ') {
                Some((n, r)) => (n, BTreeMap::new(), r),
                None => continue,
            },
        };
        let Some(v) = rest.split_whitespace().next() else { continue };
        let value = match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => match v.parse::<f64>() {
                Ok(x) => x,
                Err(_) => continue,
            },
        };
        out.push(Sample { name: name.to_string(), labels, value });
    }
    out
}

/// The topic counters in the exposition served at `address` (its processes come from `/status.json`).
pub fn read_exposition(address: &str, text: &str) -> Scrape {
    let mut s = Scrape { address: address.to_string(), ..Default::default() };
    for m in parse_exposition(text) {
        let label = |k: &str| m.labels.get(k).cloned();
        let topic = label("topic");
        match m.name.as_str() {
            "ebats_tasks_total" if topic.is_some() => {
                let c = s.topics.entry(topic.clone().unwrap_or_default()).or_default();
                c.done += m.value;
                if matches!(label("outcome").as_deref(), Some("failed" | "died" | "timed_out")) {
                    c.failed += m.value;
                }
            }
            "ebats_task_run_seconds_sum"
            | "ebats_task_run_seconds_count"
            | "ebats_task_wait_seconds_sum"
            | "ebats_task_wait_seconds_count"
            | "ebats_tasks_in_flight"
            | "ebats_worker_children"
                if topic.is_some() =>
            {
                let c = s.topics.entry(topic.clone().unwrap_or_default()).or_default();
                let field = match m.name.as_str() {
                    "ebats_task_run_seconds_sum" => &mut c.run_sum,
                    "ebats_task_run_seconds_count" => &mut c.run_count,
                    "ebats_task_wait_seconds_sum" => &mut c.wait_sum,
                    "ebats_task_wait_seconds_count" => &mut c.wait_count,
                    "ebats_tasks_in_flight" => &mut c.in_flight,
                    _ => &mut c.children,
                };
                *field += m.value;
            }
            _ => {}
        }
    }
    s
}

/// The process rows of a `/status.json` document served at `address` (docs/monitoring/status.md).
pub fn processes_of_status(address: &str, doc: &Value) -> Vec<ProcessRow> {
    let topic = doc["topics"].get(0).and_then(Value::as_str).map(str::to_string);
    let Some(list) = doc["processes"].as_array() else { return Vec::new() };
    let now = doc["now_ms"].as_i64();
    list.iter()
        .filter_map(|p| {
            let task = &p["task"];
            let task_started = task["started_ms"].as_i64();
            Some(ProcessRow {
                source: address.to_string(),
                role: p["role"].as_str().unwrap_or_default().to_string(),
                slot: match &p["slot"] {
                    Value::Null => String::new(),
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                },
                pid: p["pid"].as_i64()?,
                topic: topic.clone(),
                uptime_s: p["uptime_seconds"].as_f64(),
                cpu_seconds: p["cpu_seconds"].as_f64(),
                cpu_percent: p["cpu_percent"].as_f64(),
                rss_bytes: p["rss_bytes"].as_u64(),
                task: task["name"].as_str().map(str::to_string),
                task_for_ms: task["running_seconds"]
                    .as_f64()
                    .map(|s| (s * 1000.0) as u64)
                    .or_else(|| Some(now?.saturating_sub(task_started?).max(0) as u64)),
            })
        })
        .collect()
}

/// Reads the counters (`/metrics`) and the processes (`/status.json`) served at `address`.
pub fn scrape(address: &str) -> Scrape {
    let mut s = match fetch::get(address, "/metrics", TIMEOUT) {
        Ok((200, body)) => read_exposition(address, &String::from_utf8_lossy(&body)),
        Ok((code, _)) => Scrape {
            address: address.to_string(),
            error: Some(format!("{address} answered {code} to /metrics")),
            ..Default::default()
        },
        Err(e) => Scrape { address: address.to_string(), error: Some(e), ..Default::default() },
    };
    if s.error.is_some() {
        return s;
    }
    match fetch::status(address, TIMEOUT) {
        Ok(doc) => s.processes = processes_of_status(address, &doc),
        Err(e) => s.error = Some(e),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x\n\
        ebats_tasks_total{topic=\"mail\",task=\"send\",outcome=\"succeeded\"} 7\n\
        ebats_tasks_total{topic=\"mail\",task=\"send\",outcome=\"failed\"} 2\n\
        ebats_tasks_total{topic=\"mail\",task=\"x\",outcome=\"timed_out\"} 1\n\
        ebats_task_run_seconds_sum{topic=\"mail\",task=\"send\"} 0.5\n\
        ebats_task_run_seconds_count{topic=\"mail\",task=\"send\"} 9\n\
        ebats_task_wait_seconds_sum{topic=\"mail\"} 3.0\n\
        ebats_task_wait_seconds_count{topic=\"mail\"} 10\n\
        ebats_tasks_in_flight{topic=\"mail\"} 1\n\
        ebats_process_cpu_seconds_total{role=\"parent\",slot=\"\",pid=\"10\"} 1.25\n\
        ebats_process_resident_memory_bytes{role=\"parent\",slot=\"\",pid=\"10\"} 4096\n\
        ebats_process_cpu_seconds_total{role=\"child\",slot=\"0\",pid=\"11\"} 0.5\n\
        odd{a=\"q\\\"uote,\",b=\"2\"} +Inf\n\
        broken{a=\"x} 1\n\
        nolabels 3 1700000000\n";

    #[test]
    fn exposition_lines() {
        let s = parse_exposition(TEXT);
        let odd = s.iter().find(|m| m.name == "odd").unwrap();
        assert_eq!(odd.labels["a"], "q\"uote,");
        assert_eq!(odd.labels["b"], "2");
        assert!(odd.value.is_infinite());
        assert!(!s.iter().any(|m| m.name == "broken"));
        assert_eq!(s.iter().find(|m| m.name == "nolabels").unwrap().value, 3.0);
    }

    #[test]
    fn topics() {
        let s = read_exposition("127.0.0.1:9", TEXT);
        let c = &s.topics["mail"];
        assert_eq!((c.done, c.failed, c.run_count, c.wait_sum, c.in_flight), (10.0, 3.0, 9.0, 3.0, 1.0));
        assert!(s.processes.is_empty());
    }

    #[test]
    fn processes_from_status() {
        let doc = serde_json::json!({
            "topics": ["mail"], "now_ms": 10_000,
            "processes": [
                {"pid": 10, "role": "parent", "slot": null, "uptime_seconds": 5.5, "cpu_seconds": 1.25,
                 "cpu_percent": 3.0, "rss_bytes": 4096, "task": null},
                {"pid": 11, "role": "child", "slot": 0, "uptime_seconds": 5.0, "rss_bytes": null,
                 "task": {"id": "a", "name": "slow", "started_ms": 8_500, "running_seconds": 1.5}},
                {"pid": 12, "role": "child", "slot": 1, "task": {"name": "x", "started_ms": 9_000}},
                {"role": "child"}
            ]
        });
        let p = processes_of_status("h:1", &doc);
        assert_eq!(p.len(), 3, "a row without a pid is skipped");
        assert_eq!((p[0].pid, p[0].role.as_str(), p[0].slot.as_str()), (10, "parent", ""));
        assert_eq!(
            (p[0].uptime_s, p[0].cpu_percent, p[0].rss_bytes, p[0].task.as_deref()),
            (Some(5.5), Some(3.0), Some(4096), None)
        );
        assert_eq!(
            (p[1].slot.as_str(), p[1].task.as_deref(), p[1].task_for_ms, p[1].rss_bytes),
            ("0", Some("slow"), Some(1500), None)
        );
        assert_eq!(p[2].task_for_ms, Some(1000), "from now_ms and started_ms when running_seconds is missing");
        assert!(p.iter().all(|r| r.topic.as_deref() == Some("mail") && r.source == "h:1"));
        assert!(processes_of_status("h:1", &serde_json::json!({})).is_empty());
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
