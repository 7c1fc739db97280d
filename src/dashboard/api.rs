//! The JSON API the page polls and posts to. Every answer is JSON; an error is `{"error": "..."}`
//! with 400 (a request that cannot be done), 404, or 502 (the broker failed).
//!
//! GET  /api/state                     overview, topics, processes (from the last sample)
//! GET  /api/series                    throughput and run time over the last hour
//! GET  /api/executions?topic=&task=&status=&limit=
//! GET  /api/failed?topic=&limit=      the failed store of a topic (error and params of each)
//! GET  /api/schedules                 schedules with next and last runs
//! GET  /api/groups                    groups with their progress, newest first (at most 500)
//! GET  /api/group?id=                 one group, its members and their states (pending ones too)
//! POST /api/failed/replay   {"topic", "id"?}     one, or all when no id
//! POST /api/failed/purge    {"topic"}
//! POST /api/schedules/pause|resume|trigger  {"name"}
//! POST /api/topics/pause|resume  {"topic"}     every worker of the topic, on every host
//! POST /api/limits/set      {"topic", "limit": {rate, burst, concurrency, name, key}}  a run-time limit
//! POST /api/limits/clear    {"topic", "scope": {name, key}}   (no scope: the topic's own limit)
//! POST /api/groups/cancel   {"id"}       every member of the group not started

use serde_json::{json, Value};

use super::schedules::Failed;
use super::sources::{self, ExecQuery};
use super::State;
use crate::broker::store::{self, Store};
use crate::broker::BrokerError;
use crate::http::{Request, Response};
use crate::wire::now_ms;

/// The most entries a list gives.
const MAX_LIST: usize = 500;
/// The most members of a group a page shows.
const MAX_MEMBERS: usize = 2000;

pub fn json_response(status: u16, v: &Value) -> Response {
    Response::new(status, "application/json; charset=utf-8", v.to_string())
}

fn error(status: u16, message: impl Into<String>) -> Response {
    json_response(status, &json!({ "error": message.into() }))
}

fn broker_error(e: BrokerError) -> Response {
    error(502, format!("broker: {e}"))
}

fn failed(e: Failed) -> Response {
    match e {
        Failed::Broker(e) => broker_error(e),
        Failed::Bad(m) => error(400, m),
    }
}

fn limit(req: &Request, default: usize) -> Result<usize, Response> {
    match req.param("limit") {
        None => Ok(default),
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIST).contains(&n) => Ok(n),
            _ => Err(error(400, format!("limit must be a number from 1 to {MAX_LIST}"))),
        },
    }
}

/// A topic the dashboard shows (no action on any other queue).
fn shown_topic(state: &State, topic: Option<&str>) -> Result<String, Response> {
    let Some(t) = topic.filter(|t| !t.is_empty()) else { return Err(error(400, "give a topic")) };
    crate::rules::check_topic(t).map_err(|e| error(400, e))?;
    let known = state.opts.topics.iter().any(|x| x == t) || state.view.lock().topics.iter().any(|r| r.topic == t);
    if !known {
        return Err(error(404, format!("topic '{t}' is not one this dashboard shows")));
    }
    Ok(t.to_string())
}

/// An action on the topic a request's body names (one the dashboard shows), one broker call at a
/// time: `{"ok": true, "changed": ...}`, or the action's refusal.
fn topic_action(state: &State, b: &Value, act: impl FnOnce(&str) -> Result<bool, Failed>) -> Response {
    let topic = match shown_topic(state, field(b, "topic")) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let _one = state.broker.lock();
    match act(&topic) {
        Ok(changed) => json_response(200, &json!({ "ok": true, "changed": changed })),
        Err(e) => failed(e),
    }
}

fn state_json(state: &State) -> Value {
    let view = state.view.lock().clone();
    let (per_min, failed_1h, covered) = {
        let s = state.series.lock();
        (s.per_minute(60_000), s.failed(3_600_000), s.covered_ms())
    };
    let (history, failed_hist_1h, failed_7d, history_error) = {
        let h = state.history.lock();
        (h.on, h.on.then_some(h.failed_1h), h.on.then_some(h.failed_7d), h.error.clone())
    };
    let now = now_ms();
    let longest =
        view.topics.iter().filter_map(|t| t.wait_s.map(|w| (t.topic.clone(), w))).max_by(|a, b| a.1.total_cmp(&b.1));
    json!({
        "now_ms": now,
        "prefix": state.settings.prefix,
        "history": history,
        "sampled_at_ms": view.at_ms,
        "broker_up": view.broker_up,
        "overview": {
            "tasks_per_min": per_min,
            "failed_1h": failed_hist_1h.map(|n| n as f64).unwrap_or(failed_1h),
            // Counted from the metrics since the dashboard started, when the history cannot say.
            "failed_1h_from": if failed_hist_1h.is_some() { "history" } else { "metrics" },
            "failed_1h_covers_ms": covered,
            "failed_7d": failed_7d,
            "longest_wait": longest.map(|(topic, seconds)| json!({"topic": topic, "seconds": seconds})),
            "processes": view.processes.len(),
            "in_flight": view.topics.iter().filter_map(|t| t.in_flight).fold(0.0, |a, b| a + b),
            "delayed": view.delayed,
        },
        "topics": view.topics,
        "processes": view.processes,
        "metrics": view.metrics,
        "discovers": state.opts.discovers(),
        "history_error": history_error,
        "errors": view.errors,
    })
}

/// Answers a GET under /api/.
pub fn get(state: &State, req: &Request) -> Response {
    match req.path.as_str() {
        "/api/state" => json_response(200, &state_json(state)),
        "/api/series" => {
            // With the history on, the whole last hour comes from it; else from the sampled counters.
            let from_history = {
                let h = state.history.lock();
                h.on.then(|| h.chart())
            };
            let (points, from) = match from_history {
                Some(p) => (p, "history"),
                None => (state.series.lock().chart(sources::STEP_MS), "metrics"),
            };
            json_response(200, &json!({ "step_ms": sources::STEP_MS, "from": from, "points": points }))
        }
        "/api/executions" => {
            let q = ExecQuery {
                topic: req.param("topic").filter(|s| !s.is_empty()),
                task: req.param("task").filter(|s| !s.is_empty()),
                status: req.param("status").filter(|s| !s.is_empty()),
                limit: match limit(req, 100) {
                    Ok(n) => n,
                    Err(r) => return r,
                },
            };
            let h = state.history.lock();
            match h.executions(&q) {
                Ok(list) => json_response(200, &json!({ "history": h.on, "read_at_ms": h.at_ms, "executions": list })),
                Err(e) => error(400, e),
            }
        }
        "/api/failed" => {
            let topic = match shown_topic(state, req.param("topic").as_deref()) {
                Ok(t) => t,
                Err(r) => return r,
            };
            let n = match limit(req, 100) {
                Ok(n) => n,
                Err(r) => return r,
            };
            let _one = state.broker.lock();
            match store::list(&state.settings, &Store::Topic(topic.clone()), n) {
                Ok(entries) => json_response(200, &json!({ "topic": topic, "entries": entries })),
                Err(e) => broker_error(e),
            }
        }
        "/api/schedules" => {
            let _one = state.broker.lock();
            match state.schedules.list(&state.settings) {
                Ok(list) => json_response(200, &json!({ "schedules": list })),
                Err(e) => broker_error(e),
            }
        }
        "/api/groups" => {
            let _one = state.broker.lock();
            match state.groups.list(&state.settings) {
                Ok(mut list) => {
                    let total = list.len();
                    list.truncate(MAX_LIST);
                    json_response(200, &json!({ "groups": list, "total": total }))
                }
                Err(e) => broker_error(e),
            }
        }
        "/api/group" => {
            let Some(id) = req.param("id").filter(|s| !s.is_empty()) else { return error(400, "give the group's id") };
            let _one = state.broker.lock();
            match state.groups.status(&state.settings, &id) {
                Ok(Some(mut g)) => {
                    if let Some(Value::Array(m)) = g.get_mut("members") {
                        let total = m.len();
                        m.truncate(MAX_MEMBERS);
                        g["members_total"] = json!(total);
                    }
                    json_response(200, &json!({ "group": g }))
                }
                Ok(None) => {
                    error(404, format!("no group '{}' (never opened, or done over an hour or 50,000 groups ago)", id))
                }
                Err(e) => failed(e),
            }
        }
        _ => error(404, "no such API path"),
    }
}

fn body(req: &Request) -> Result<Value, Response> {
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(error(400, "the body must be a JSON object")),
    }
}

fn field<'a>(b: &'a Value, key: &str) -> Option<&'a str> {
    b.get(key).and_then(Value::as_str)
}

/// Answers a POST under /api/ (the caller checked CSRF).
pub fn post(state: &State, req: &Request) -> Response {
    let b = match body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let s = &state.settings;
    match req.path.as_str() {
        "/api/failed/replay" | "/api/failed/purge" => {
            let topic = match shown_topic(state, field(&b, "topic")) {
                Ok(t) => t,
                Err(r) => return r,
            };
            let _one = state.broker.lock();
            if req.path.ends_with("purge") {
                return match store::purge(s, &Store::Topic(topic)) {
                    Ok(n) => json_response(200, &json!({ "purged": n })),
                    Err(e) => broker_error(e),
                };
            }
            let id = field(&b, "id");
            match store::replay(s, &topic, id) {
                Ok(done) if id.is_some() && done.moved == 0 && done.kept.is_empty() => {
                    error(404, "no failed task with that id (replayed or purged already?)")
                }
                Ok(done) => json_response(
                    200,
                    &json!({
                        "moved": done.moved,
                        "kept": done.kept.iter().map(|(id, why)| json!({"id": id, "reason": why})).collect::<Vec<_>>(),
                    }),
                ),
                Err(e) => broker_error(e),
            }
        }
        "/api/schedules/pause" | "/api/schedules/resume" | "/api/schedules/trigger" => {
            let Some(name) = field(&b, "name").filter(|n| !n.is_empty()) else {
                return error(400, "give the schedule's name");
            };
            let _one = state.broker.lock();
            let r = match req.path.rsplit('/').next() {
                Some("pause") => state.schedules.pause(s, name).map(|()| json!({ "ok": true })),
                Some("resume") => state.schedules.resume(s, name).map(|()| json!({ "ok": true })),
                _ => state.schedules.trigger(s, name).map(|id| json!({ "ok": true, "event_id": id })),
            };
            match r {
                Ok(v) => json_response(200, &v),
                Err(e) => failed(e),
            }
        }
        "/api/topics/pause" => topic_action(state, &b, |topic| state.topics.pause(s, topic)),
        "/api/topics/resume" => topic_action(state, &b, |topic| state.topics.resume(s, topic)),
        "/api/limits/set" => {
            topic_action(state, &b, |topic| state.topics.set_limit(s, topic, b.get("limit").unwrap_or(&Value::Null)))
        }
        "/api/limits/clear" => {
            topic_action(state, &b, |topic| state.topics.clear_limit(s, topic, b.get("scope").unwrap_or(&json!({}))))
        }
        "/api/groups/cancel" => {
            let Some(id) = field(&b, "id").filter(|n| !n.is_empty()) else { return error(400, "give the group's id") };
            let _one = state.broker.lock();
            match state.groups.cancel(s, id) {
                Ok(until) => json_response(200, &json!({ "ok": true, "until_ms": until })),
                Err(e) => failed(e),
            }
        }
        _ => error(404, "no such API path"),
    }
}
