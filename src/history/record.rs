//! One execution record of the history: what the worker callback is told about a run (topic, id,
//! task, params, time used, message, status, attempt), plus where and when it ran, the failure's
//! class, and the event that made the task. Built and read back here; pure. Params and message are
//! bounded, so a batch of records always fits one message.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::outcome::{STATE_CANCELLED, STATE_ERR, STATE_FAIL, STATE_HELD, STATE_RETRY, STATE_SUCC};
use crate::wire::TaskMsg;

pub const VERSION: u64 = 1;
/// The `type` property of a record on the stream.
pub const KIND_RECORD: &str = "ebats.history";
/// The `type` property of a reader's marker (not a record; readers skip it).
pub const KIND_MARKER: &str = "ebats.history.marker";
/// The most bytes of a run's message a record keeps: longer ones are cut and marked
/// (`rules::bounded`); the failed store keeps more (`wire::MAX_MESSAGE`).
pub const MESSAGE_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub v: u64,
    /// The task's id: the same in its retries and in the failed store.
    pub id: String,
    pub topic: String,
    /// The task's name.
    pub task: String,
    /// The status the callback got: `Worker::STATE_*` (-1 err, 0 succ, 1 fail, 2 retry); 3 for a task
    /// cancelled before it started, 4 for a task held back unstarted (no callback for either).
    pub status: i64,
    /// The status's name: err, succ, fail, retry, cancelled, held.
    pub outcome: String,
    /// The run this was: 1 for the first.
    pub attempt: u32,
    /// Time used by the handler, in milliseconds.
    pub ms: f64,
    /// The message the callback got, at most [`MESSAGE_BYTES`] bytes.
    pub message: String,
    /// The class of what the handler threw, if it threw.
    #[serde(default)]
    pub class: Option<String>,
    /// The params, or (when longer than the limit as JSON) the start of their JSON text.
    pub params: Value,
    #[serde(default)]
    pub params_truncated: bool,
    pub pid: u32,
    pub host: String,
    /// When the handler started and ended, in milliseconds since the epoch.
    pub start_ms: i64,
    pub end_ms: i64,
    /// The event that made the task and its id (a periodic schedule's firing has its own id).
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub event_id: Option<String>,
    /// The chain the task is a step of, and which step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<crate::chain::At>,
    /// What held the task back: on a `held` record, why it was not started then; on a run's record,
    /// what it waited for in place before it started. Absent when nothing held it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Hold>,
}

/// What holds a task back, as records and filters name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hold {
    /// A rate limit's window was full.
    Rate,
    /// No permit of a concurrency limit was free.
    Concurrency,
    /// Its topic was paused: given back unstarted.
    Paused,
}

impl Hold {
    pub const ALL: [Hold; 3] = [Hold::Rate, Hold::Concurrency, Hold::Paused];

    pub fn name(self) -> &'static str {
        match self {
            Hold::Rate => "rate",
            Hold::Concurrency => "concurrency",
            Hold::Paused => "paused",
        }
    }

    /// A hold given by name (`rate`, `concurrency`, `paused`).
    pub fn named(name: &str) -> Result<Hold, String> {
        let n = name.trim().to_ascii_lowercase();
        Hold::ALL
            .into_iter()
            .find(|h| h.name() == n)
            .ok_or_else(|| format!("unknown hold '{}': use rate, concurrency or paused", crate::rules::printable(name)))
    }
}

/// The name of a status, as records and filters write it.
pub fn outcome_name(status: i64) -> &'static str {
    match status {
        STATE_SUCC => "succ",
        STATE_FAIL => "fail",
        STATE_RETRY => "retry",
        STATE_ERR => "err",
        STATE_CANCELLED => "cancelled",
        STATE_HELD => "held",
        _ => "unknown",
    }
}

/// A status given by name or number (`fail`, `failed`, `1`...).
pub fn status_named(name: &str) -> Result<i64, String> {
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "succ" | "success" | "succeeded" | "ok" | "0" => STATE_SUCC,
        "fail" | "failed" | "1" => STATE_FAIL,
        "retry" | "retried" | "2" => STATE_RETRY,
        "err" | "error" | "service" | "-1" => STATE_ERR,
        "cancelled" | "canceled" | "3" => STATE_CANCELLED,
        "held" | "4" => STATE_HELD,
        _ => {
            return Err(format!(
                "unknown status '{}': use succ, fail, retry, err, cancelled or held",
                crate::rules::printable(name)
            ))
        }
    })
}

/// The params as a record keeps them: as they are when their JSON fits in `limit` bytes, else the
/// first `limit` bytes of the JSON text (cut at a character boundary) as a string, marked truncated.
pub fn kept_params(params: &Value, limit: usize) -> (Cow<'_, Value>, bool) {
    if json_len_bound(params) <= limit {
        // Short enough without writing the text (the common case: one walk, no allocation).
        return (Cow::Borrowed(params), false);
    }
    let text = params.to_string();
    if text.len() <= limit {
        return (Cow::Borrowed(params), false);
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (Cow::Owned(Value::String(text[..end].to_string())), true)
}

/// The most bytes `v`'s JSON text can take, found without writing it: a string's bytes counted
/// at their longest escape (`\u00XX`, 6 bytes), a number at the longest serde_json writes (24).
pub fn json_len_bound(v: &Value) -> usize {
    let string = |s: &str| 2 + 6 * s.len();
    match v {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 24,
        Value::String(s) => string(s),
        Value::Array(a) => 2 + a.iter().map(|x| json_len_bound(x) + 1).sum::<usize>(),
        Value::Object(o) => 2 + o.iter().map(|(k, x)| string(k) + 2 + json_len_bound(x)).sum::<usize>(),
    }
}

/// What ran, for [`Record::of`].
pub struct Run<'a> {
    pub millis: f64,
    pub message: &'a str,
    pub class: Option<&'a str>,
    pub status: i64,
    pub end_ms: i64,
}

impl<'a> Run<'a> {
    /// What a task held back unstarted at `end_ms` is recorded as: no time used, `why` as its message.
    pub fn held(why: &'a str, end_ms: i64) -> Run<'a> {
        Run { millis: 0.0, message: why, class: None, status: STATE_HELD, end_ms }
    }
}

/// A record as it is written, borrowed from the task and the run: the fields of [`Record`], written
/// in its order so that the JSON is the owned record's byte for byte (a writer builds no owned record).
struct Written<'a> {
    v: u64,
    id: &'a str,
    topic: &'a str,
    task: &'a str,
    status: i64,
    outcome: &'static str,
    attempt: u32,
    ms: f64,
    message: Cow<'a, str>,
    class: Option<&'a str>,
    params: Cow<'a, Value>,
    params_truncated: bool,
    pid: u32,
    host: &'a str,
    start_ms: i64,
    end_ms: i64,
    event: Option<&'a str>,
    event_id: Option<&'a str>,
    chain: Option<&'a crate::chain::At>,
    held: Option<Hold>,
}

/// Appends the JSON of one value.
fn json(out: &mut Vec<u8>, v: &impl Serialize) {
    serde_json::to_writer(out, v).expect("a record's field always serializes");
}

impl<'a> Written<'a> {
    fn of(task: &'a TaskMsg, run: &Run<'a>, params_limit: usize, pid: u32, host: &'a str) -> Written<'a> {
        let (params, params_truncated) = kept_params(&task.params, params_limit);
        Written {
            v: VERSION,
            id: &task.id,
            topic: &task.topic,
            task: &task.name,
            status: run.status,
            outcome: outcome_name(run.status),
            attempt: task.attempt,
            ms: (run.millis * 1000.0).round() / 1000.0,
            message: crate::rules::bounded(run.message, MESSAGE_BYTES),
            class: run.class,
            params,
            params_truncated,
            pid,
            host,
            start_ms: run.end_ms - run.millis.round() as i64,
            end_ms: run.end_ms,
            event: task.event.as_deref(),
            event_id: task.event_id.as_deref(),
            chain: task.chain.as_ref().map(|c| &c.at),
            held: None,
        }
    }

    /// Appends the JSON `serde` writes for the [`Record`] (the keys are constant text, only the values
    /// go through the serializer: most of a record's cost was its keys).
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"v\":");
        json(out, &self.v);
        out.extend_from_slice(b",\"id\":");
        json(out, &self.id);
        out.extend_from_slice(b",\"topic\":");
        json(out, &self.topic);
        out.extend_from_slice(b",\"task\":");
        json(out, &self.task);
        out.extend_from_slice(b",\"status\":");
        json(out, &self.status);
        out.extend_from_slice(b",\"outcome\":");
        json(out, &self.outcome);
        out.extend_from_slice(b",\"attempt\":");
        json(out, &self.attempt);
        out.extend_from_slice(b",\"ms\":");
        json(out, &self.ms);
        out.extend_from_slice(b",\"message\":");
        json(out, &self.message);
        out.extend_from_slice(b",\"class\":");
        json(out, &self.class);
        out.extend_from_slice(b",\"params\":");
        json(out, &self.params);
        out.extend_from_slice(b",\"params_truncated\":");
        json(out, &self.params_truncated);
        out.extend_from_slice(b",\"pid\":");
        json(out, &self.pid);
        out.extend_from_slice(b",\"host\":");
        json(out, &self.host);
        out.extend_from_slice(b",\"start_ms\":");
        json(out, &self.start_ms);
        out.extend_from_slice(b",\"end_ms\":");
        json(out, &self.end_ms);
        out.extend_from_slice(b",\"event\":");
        json(out, &self.event);
        out.extend_from_slice(b",\"event_id\":");
        json(out, &self.event_id);
        if let Some(chain) = self.chain {
            out.extend_from_slice(b",\"chain\":");
            json(out, chain);
        }
        if let Some(held) = self.held {
            out.extend_from_slice(b",\"held\":");
            json(out, &held);
        }
        out.push(b'}');
    }
}

impl Record {
    pub fn of(task: &TaskMsg, run: &Run, params_limit: usize, pid: u32, host: &str) -> Record {
        let w = Written::of(task, run, params_limit, pid, host);
        Record {
            v: w.v,
            id: w.id.to_string(),
            topic: w.topic.to_string(),
            task: w.task.to_string(),
            status: w.status,
            outcome: w.outcome.to_string(),
            attempt: w.attempt,
            ms: w.ms,
            message: w.message.into_owned(),
            class: w.class.map(str::to_string),
            params: w.params.into_owned(),
            params_truncated: w.params_truncated,
            pid: w.pid,
            host: w.host.to_string(),
            start_ms: w.start_ms,
            end_ms: w.end_ms,
            event: w.event.map(str::to_string),
            event_id: w.event_id.map(str::to_string),
            chain: w.chain.cloned(),
            held: w.held,
        }
    }

    /// The record of a task not started now (`held`): `why` says what held it and for how long.
    pub fn held(
        task: &TaskMsg,
        hold: Hold,
        why: &str,
        end_ms: i64,
        params_limit: usize,
        pid: u32,
        host: &str,
    ) -> Record {
        Record { held: Some(hold), ..Record::of(task, &Run::held(why, end_ms), params_limit, pid, host) }
    }

    /// Appends the JSON of the record of a run to `out` (with what held the task, if anything), the
    /// same bytes as `Record::of(..).to_json()` with that `held`, without building the record (the
    /// writer's path: no copy of the task's strings and params).
    pub fn write_json(
        task: &TaskMsg,
        run: &Run,
        held: Option<Hold>,
        params_limit: usize,
        pid: u32,
        host: &str,
        out: &mut Vec<u8>,
    ) {
        Written { held, ..Written::of(task, run, params_limit, pid, host) }.write(out);
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record always serializes")
    }

    /// The records of a message of the stream: a JSON list of records (a writer's batch), or one record.
    pub fn parse_many(body: &[u8]) -> Result<Vec<Record>, String> {
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'[') {
            return Record::parse(body).map(|r| vec![r]);
        }
        let list: Vec<serde_json::Value> =
            serde_json::from_slice(body).map_err(|e| format!("not a list of history records: {e}"))?;
        list.iter().map(|v| Record::parse(v.to_string().as_bytes())).collect()
    }

    pub fn parse(body: &[u8]) -> Result<Record, String> {
        let r: Record = serde_json::from_slice(body).map_err(|e| format!("not a history record: {e}"))?;
        if r.v != VERSION {
            return Err(format!("history record of version {} (this reader knows {VERSION})", r.v));
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(params: Value) -> TaskMsg {
        let mut t = TaskMsg::new("demo", "ping", params, 0);
        t.attempt = 2;
        t.event = Some("order_paid".into());
        t.event_id = Some("e1".into());
        t
    }

    #[test]
    fn statuses_by_name_and_back() {
        let table = [
            ("succ", STATE_SUCC),
            ("fail", STATE_FAIL),
            ("retry", STATE_RETRY),
            ("err", STATE_ERR),
            ("cancelled", STATE_CANCELLED),
            ("held", STATE_HELD),
        ];
        for (name, status) in table {
            assert_eq!(status_named(name), Ok(status));
            assert_eq!(status_named(&name.to_uppercase()), Ok(status));
            assert_eq!(outcome_name(status), name);
        }
        assert_eq!(status_named("failed"), Ok(STATE_FAIL));
        assert_eq!(status_named("1"), Ok(STATE_FAIL));
        assert!(status_named("nope").unwrap_err().contains("'nope'"));
        assert_eq!(status_named("4"), Ok(STATE_HELD));
        assert_eq!(outcome_name(7), "unknown");
    }

    #[test]
    fn holds_by_name_and_back() {
        for h in Hold::ALL {
            assert_eq!(Hold::named(h.name()), Ok(h));
            assert_eq!(Hold::named(&h.name().to_uppercase()), Ok(h));
            assert_eq!(serde_json::to_value(h).unwrap(), json!(h.name()));
        }
        assert!(Hold::named("slow").unwrap_err().contains("'slow'"));
    }

    #[test]
    fn a_held_record_and_a_run_that_waited() {
        let r = Record::held(&task(json!({"c": 1})), Hold::Rate, "held back 2 s: rate of 'per-c'", 77, 4096, 1, "h");
        assert_eq!((r.status, r.outcome.as_str(), r.ms, r.start_ms, r.end_ms), (STATE_HELD, "held", 0.0, 77, 77));
        assert_eq!((r.held, r.message.as_str(), r.attempt), (Some(Hold::Rate), "held back 2 s: rate of 'per-c'", 2));
        let v: Value = serde_json::from_slice(&r.to_json()).unwrap();
        assert_eq!(v["held"], json!("rate"));
        assert_eq!(Record::parse(&r.to_json()), Ok(r));
        // A record without the field (every run nothing held, and records written before it) reads as none.
        let run = Run { millis: 1.0, message: "ok.", class: None, status: 0, end_ms: 5 };
        let plain = Record::of(&task(json!([])), &run, 10, 1, "h");
        assert!(!String::from_utf8(plain.to_json()).unwrap().contains("held"));
        assert_eq!(Record::parse(&plain.to_json()).unwrap().held, None);
    }

    #[test]
    fn params_kept_or_cut() {
        let table: [(Value, usize, Value, bool); 6] = [
            (json!({"a": 1}), 4096, json!({"a": 1}), false),
            (json!({"a": 1}), 7, json!({"a": 1}), false),
            (json!({"a": 1}), 6, json!("{\"a\":1"), true),
            (json!({"a": 1}), 0, json!(""), true),
            (json!([]), 0, json!(""), true),
            // never cut inside a character: "é" is two bytes
            (json!("é"), 2, json!("\""), true),
        ];
        for (params, limit, kept, cut) in table {
            let (k, c) = kept_params(&params, limit);
            assert_eq!((k.into_owned(), c), (kept, cut), "{params} at {limit}");
        }
    }

    #[test]
    fn the_length_bound_is_never_below_the_text() {
        let values = [
            json!(null),
            json!(false),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(-1.234_567_890_123_456_7e-308),
            json!(f64::MAX),
            json!(""),
            json!("\u{1}\u{1f}\"\\\n"),
            json!("é漢字🙂"),
            json!([]),
            json!({}),
            json!([[[]], {}, [1, 2.5, "x"]]),
            json!({"\u{0}": {"a": [null, true, {"b\t": "c"}]}, "": ""}),
        ];
        for v in values {
            let text = v.to_string();
            assert!(json_len_bound(&v) >= text.len(), "{text}: bound {} < {}", json_len_bound(&v), text.len());
        }
        // Within a few times the text for everyday params: under the limit, they are taken as they are.
        let v = json!({"user": 42, "mail": "someone@example.com", "tags": ["a", "b"]});
        assert!(json_len_bound(&v) <= 6 * v.to_string().len());
    }

    #[test]
    fn a_record_round_trips() {
        let run = Run { millis: 12.3456, message: "boom", class: Some("TaskException"), status: 1, end_ms: 1_000_000 };
        let r = Record::of(&task(json!({"tag": "x"})), &run, 4096, 42, "h1");
        assert_eq!((r.outcome.as_str(), r.attempt, r.ms, r.start_ms), ("fail", 2, 12.346, 1_000_000 - 12));
        assert_eq!((r.event.as_deref(), r.event_id.as_deref()), (Some("order_paid"), Some("e1")));
        assert_eq!(Record::parse(&r.to_json()), Ok(r.clone()));
        let v: Value = serde_json::from_slice(&r.to_json()).unwrap();
        for key in ["id", "topic", "task", "status", "outcome", "attempt", "ms", "message", "class", "params"] {
            assert!(v.get(key).is_some(), "{key} in {v}");
        }
        for key in ["params_truncated", "pid", "host", "start_ms", "end_ms", "event", "event_id"] {
            assert!(v.get(key).is_some(), "{key} in {v}");
        }
        let cut = Record::of(&task(json!({"big": "x".repeat(100)})), &run, 10, 42, "h1");
        assert!(cut.params_truncated);
        assert_eq!(cut.params, json!("{\"big\":\"xx"));
    }

    #[test]
    fn the_written_json_is_the_records() {
        let mut chained = task(json!({"n": [1, 2.5, null]}));
        chained.chain =
            Some(crate::chain::Chain { at: crate::chain::At { id: "c1".into(), step: 2, steps: 3 }, rest: vec![] });
        let mut plain = TaskMsg::new("demo", "pong", json!([]), 0);
        plain.event = None;
        let long = "é".repeat(MESSAGE_BYTES);
        let runs = [
            Run { millis: 12.3456, message: "boom", class: Some("TaskException"), status: 1, end_ms: 1_000_000 },
            Run { millis: 0.0004, message: "", class: None, status: 0, end_ms: 5 },
            Run { millis: 3.5, message: &long, class: None, status: 3, end_ms: 7 },
        ];
        for t in [task(json!({"tag": "x\"\u{1}"})), task(json!({"big": "x".repeat(100)})), chained, plain] {
            for run in &runs {
                for limit in [0, 10, 4096] {
                    for held in [None, Some(Hold::Rate), Some(Hold::Paused)] {
                        let mut out = Vec::new();
                        Record::write_json(&t, run, held, limit, 42, "h1", &mut out);
                        let owned = Record { held, ..Record::of(&t, run, limit, 42, "h1") };
                        assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8(owned.to_json()).unwrap());
                    }
                }
            }
        }
    }

    #[test]
    fn messages_kept_or_cut() {
        for (len, cut) in [(3, false), (MESSAGE_BYTES, false), (MESSAGE_BYTES + 1, true), (20 << 20, true)] {
            let message = "m".repeat(len);
            let run = Run { millis: 1.0, message: &message, class: None, status: 1, end_ms: 5 };
            let r = Record::of(&task(json!([])), &run, 10, 1, "h");
            assert!(r.message.len() <= MESSAGE_BYTES, "{len}");
            assert_eq!(r.message == message, !cut, "{len}");
            assert_eq!(r.message.ends_with(&format!("[cut: {len} bytes in all]")), cut, "{len}");
            assert!(r.to_json().len() < MESSAGE_BYTES + 1024, "{len}");
        }
    }

    #[test]
    fn a_batch_is_a_list_of_records() {
        let run = Run { millis: 1.0, message: "ok.", class: None, status: 0, end_ms: 5 };
        let (a, b) = (Record::of(&task(json!([])), &run, 10, 1, "h"), Record::of(&task(json!([1])), &run, 10, 1, "h"));
        let body = serde_json::to_vec(&[&a, &b]).unwrap();
        assert_eq!(Record::parse_many(&body), Ok(vec![a.clone(), b]));
        assert_eq!(Record::parse_many(&a.to_json()), Ok(vec![a.clone()]));
        assert_eq!(Record::parse_many(b" []"), Ok(vec![]));
        assert!(Record::parse_many(b"[{\"marker\":1}]").is_err());
    }

    #[test]
    fn what_is_not_a_record() {
        assert!(Record::parse(b"{\"marker\":\"m\"}").is_err());
        assert!(Record::parse(b"nope").is_err());
        let run = Run { millis: 1.0, message: "ok.", class: None, status: 0, end_ms: 5 };
        let mut v: Value = serde_json::from_slice(&Record::of(&task(json!([])), &run, 10, 1, "h").to_json()).unwrap();
        v["v"] = json!(2);
        assert!(Record::parse(v.to_string().as_bytes()).unwrap_err().contains("version 2"));
    }
}
