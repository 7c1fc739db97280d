//! Where the dashboard's figures of executions and processes come from, as plain data.
//!
//! - Executions: the execution history (`<prefix>.history`), when there is one. Until it is wired,
//!   [`history_on`] says no, [`executions`] gives nothing and [`failures_since`] knows nothing; the
//!   page then says "execution history is off".
//! - Processes: the `/metrics` of the addresses given (`--metrics=host:port,...`), parsed from the
//!   Prometheus text the workers and schedulers serve. A `/status.json` per process, when there is
//!   one, fills the fields that `/metrics` cannot give (uptime, the task in hand and for how long).
//!
//! Everything above this file (series, API, pages) uses only the types here.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::config::Settings;

/// One execution of a task, as the history records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Execution {
    pub topic: String,
    pub id: String,
    pub task: String,
    /// succeeded, failed, retried, ...
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

/// True when executions are recorded (the history stream is on).
pub fn history_on(_settings: &Settings) -> bool {
    false
}

/// Recent executions matching `q`, newest first.
pub fn executions(_settings: &Settings, _q: &ExecQuery) -> Result<Vec<Execution>, String> {
    Ok(Vec::new())
}

/// Failed executions since `since_ms` (all topics); `None` when the history cannot say.
pub fn failures_since(_settings: &Settings, _since_ms: i64) -> Option<u64> {
    None
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

/// The processes and topic counters in the exposition served at `address`.
pub fn read_exposition(address: &str, text: &str) -> Scrape {
    let mut s = Scrape { address: address.to_string(), ..Default::default() };
    let mut procs: BTreeMap<i64, ProcessRow> = BTreeMap::new();
    let mut worker_topic = None;
    for m in parse_exposition(text) {
        let label = |k: &str| m.labels.get(k).cloned();
        let topic = label("topic");
        if let Some(t) = &topic {
            worker_topic.get_or_insert_with(|| t.clone());
        }
        match m.name.as_str() {
            "ebats_process_cpu_seconds_total" | "ebats_process_resident_memory_bytes" => {
                let Some(pid) = label("pid").and_then(|p| p.parse::<i64>().ok()) else { continue };
                let row = procs.entry(pid).or_insert_with(|| ProcessRow {
                    source: address.to_string(),
                    role: label("role").unwrap_or_default(),
                    slot: label("slot").unwrap_or_default(),
                    pid,
                    topic: None,
                    uptime_s: None,
                    cpu_seconds: None,
                    cpu_percent: None,
                    rss_bytes: None,
                    task: None,
                    task_for_ms: None,
                });
                if m.name.ends_with("_total") {
                    row.cpu_seconds = Some(m.value);
                } else {
                    row.rss_bytes = Some(m.value as u64);
                }
            }
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
    for mut p in procs.into_values() {
        p.topic = worker_topic.clone();
        s.processes.push(p);
    }
    s
}

/// The largest exposition read from an address.
const MAX_EXPOSITION: u64 = 8 << 20;

/// GETs `path` of `address` (host:port), plain HTTP, with short timeouts.
pub fn http_get(address: &str, path: &str) -> Result<String, String> {
    let addr: SocketAddr = address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {address}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {address}"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| format!("{address}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| format!("{address}: {e}"))?;
    let mut raw = Vec::new();
    s.take(MAX_EXPOSITION).read_to_end(&mut raw).map_err(|e| format!("{address}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("{address}: not an HTTP answer"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("{address}{path}: {}", head.lines().next().unwrap_or("")));
    }
    Ok(body.to_string())
}

/// Reads the processes and counters served at `address`.
pub fn scrape(address: &str) -> Scrape {
    match http_get(address, "/metrics") {
        Ok(text) => read_exposition(address, &text),
        Err(e) => Scrape { address: address.to_string(), error: Some(e), ..Default::default() },
    }
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
    fn processes_and_topics() {
        let s = read_exposition("127.0.0.1:9", TEXT);
        let c = &s.topics["mail"];
        assert_eq!((c.done, c.failed, c.run_count, c.wait_sum, c.in_flight), (10.0, 3.0, 9.0, 3.0, 1.0));
        assert_eq!(s.processes.len(), 2);
        let p = &s.processes[0];
        assert_eq!((p.pid, p.role.as_str(), p.cpu_seconds, p.rss_bytes), (10, "parent", Some(1.25), Some(4096)));
        assert_eq!(p.topic.as_deref(), Some("mail"));
        assert_eq!(s.processes[1].slot, "0");
    }

    #[test]
    fn unreachable_address() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap().to_string();
        drop(l);
        assert!(scrape(&a).error.is_some());
    }
}
