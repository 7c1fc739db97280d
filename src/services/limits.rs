//! Rate and concurrency limits for PHP (`Asynclib\Ebats\Limits`, `Worker::setLimit`) and the CLI
//! (`ebats limits:*`): set, cleared and listed at run time as records of the flow stream
//! `<prefix>.flow`, which every worker child of the topic follows (`broker::flow_stream::Watch`); a
//! run-time limit replaces the worker's code limit of the same id (`flow::record::effective`).

use serde_json::Value;

use crate::broker::flow_stream;
use crate::config::Settings;
use crate::flow::limits::Limit;
use crate::flow::record::{limit_json, parse_limit, scope_id};
pub use crate::services::refused::Refused;

/// Sets the limit `spec` describes (`rate`, `burst`, `concurrency`, `name`, `key`) for every worker
/// of `topic`, replacing the run-time limit of the same scope. True when that changed something
/// (false: the same limit was set already).
pub fn set(settings: &Settings, topic: &str, spec: &Value) -> Result<bool, Refused> {
    let limit = parse_limit(topic, spec, true).map_err(Refused::Bad)?;
    flow_stream::set_limit(settings, &limit).map_err(Refused::Broker)
}

/// Removes the run-time limit of `topic` over the scope `scope` names (`name`, `key`; neither: the
/// whole topic). True when there was one; a limit set in a worker's code applies again.
pub fn clear(settings: &Settings, topic: &str, scope: &Value) -> Result<bool, Refused> {
    let id = scope_id(topic, scope).map_err(Refused::Bad)?;
    flow_stream::clear_limit(settings, topic, &id).map_err(Refused::Broker)
}

/// The run-time limits, of `topic` or of every topic, by id: each as `limit_json` describes it.
pub fn list(settings: &Settings, topic: Option<&str>) -> Result<Vec<Value>, Refused> {
    if let Some(t) = topic {
        crate::rules::check_topic(t).map_err(Refused::Bad)?;
    }
    let all = flow_stream::limits(settings).map_err(Refused::Broker)?;
    Ok(all.iter().filter(|l| topic.is_none_or(|t| l.topic == t)).map(limit_json).collect())
}

/// A limit described for a worker's code, checked before the worker knows its topic.
pub fn check_in_code(spec: &Value) -> Result<(), String> {
    parse_limit("topic", spec, true).map(|_| ())
}

/// The limits a worker of `topic` set in its code (each checked by [`check_in_code`]), one per id:
/// a later one of the same scope replaces an earlier one.
pub fn in_code(topic: &str, specs: &[Value]) -> Result<Vec<Limit>, String> {
    let mut out: Vec<Limit> = Vec::new();
    for spec in specs {
        let l = parse_limit(topic, spec, true)?;
        match out.iter_mut().find(|o| o.id() == l.id()) {
            Some(o) => *o = l,
            None => out.push(l),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn code_limits_are_one_per_scope() {
        let specs = [
            json!({"rate": "10/s"}),
            json!({"name": "send", "concurrency": 2}),
            json!({"rate": "20/s"}),
            json!({"key": "{c}", "concurrency": 1}),
        ];
        let got: Vec<(String, Option<u32>)> =
            in_code("demo", &specs).unwrap().iter().map(|l| (l.id(), l.rate.map(|r| r.count))).collect();
        let want = [("demo", Some(20)), ("demo/send", None), ("demo/{{c}}", None)];
        assert_eq!(got, want.map(|(i, c)| (i.to_string(), c)));
        assert!(check_in_code(&json!({"rate": "x"})).is_err());
        assert!(in_code("bad topic", &specs).is_err());
    }
}
