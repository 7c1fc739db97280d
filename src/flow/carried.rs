//! A limit a task carries (pure): set where the task is made, with the option `limit` of
//! `Task::create`, `Batch::task` and `EventManager::register` (`['limit' => ['rate' => '10/m', 'key' =>
//! 'customer:{customer_id}']]`), written in the task's message, applied by whichever worker runs it.
//!
//! It is a limit of the task's name (or of the task's name and a key), described as for
//! `Worker::setLimit` without `name`: the same parser ([`record::parse_limit`]) checks it where the task
//! is made, so a bad one is refused there. A limit of the same id set on the worker in code or at run
//! time (`Limits::set`) replaces what the tasks carry, so an operator can always change it; tasks of
//! one name should carry one limit (two different rates of one name count apart: each counter is named
//! by its rate).

use serde_json::{Map, Value};

use super::limits::{Limit, LimitSet};
use super::record::parse_limit;

/// The option's name.
pub const OPTION: &str = "limit";

/// The limit the options of a task of `topic` named `name` give it (none without the option): its
/// description as the message carries it, checked.
pub fn from_options(topic: &str, name: &str, options: &Value) -> Result<Option<Value>, String> {
    let Some(spec) = options.get(OPTION).filter(|v| !v.is_null()) else { return Ok(None) };
    let empty = Map::new();
    let given = match spec {
        Value::Object(o) => o,
        // PHP's empty array.
        Value::Array(a) if a.is_empty() => &empty,
        _ => return Err(format!("'{OPTION}' must be an array of keys (rate, burst, concurrency, key)")),
    };
    if given.contains_key("name") {
        return Err(format!("'{OPTION}' takes no 'name': it is a limit of the task's own name"));
    }
    let carried: Map<String, Value> =
        given.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect();
    limit_of(topic, name, &carried).map_err(|e| format!("'{OPTION}': {e}"))?;
    Ok(Some(Value::Object(carried)))
}

/// The limit a task carries, as a limit of its topic.
fn limit_of(topic: &str, name: &str, carried: &Map<String, Value>) -> Result<Limit, String> {
    let mut spec = carried.clone();
    spec.insert("name".into(), Value::String(name.to_string()));
    parse_limit(topic, &Value::Object(spec), true)
}

/// The limits of a task that carries `carried`: `set` and the carried limit, unless `set` has a limit
/// of the same id (`None`: `set` alone applies), or the description cannot be read (`Err`, the worker
/// logs it and applies `set`).
pub fn with_carried(set: &LimitSet, topic: &str, name: &str, carried: &Value) -> Result<Option<LimitSet>, String> {
    let Value::Object(c) = carried else { return Err("a task's 'limit' is not an object".into()) };
    let limit = limit_of(topic, name, c)?;
    let id = limit.id();
    if set.limits().iter().any(|l| l.id() == id) {
        return Ok(None);
    }
    let mut all = set.limits().to_vec();
    all.push(limit);
    Ok(Some(LimitSet::new(all)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_limit_given_where_a_task_is_made() {
        let ok = |o: Value| from_options("demo", "send", &o).unwrap();
        assert_eq!(ok(json!([])), None);
        assert_eq!(ok(json!({"unique": "x"})), None);
        assert_eq!(ok(json!({"limit": null})), None);
        assert_eq!(ok(json!({"limit": {"rate": "2/s", "key": null}})), Some(json!({"rate": "2/s"})));
        let bad = [
            (json!({"limit": "2/s"}), "must be an array of keys"),
            (json!({"limit": {"rate": "2/s", "name": "x"}}), "takes no 'name'"),
            (json!({"limit": {"rate": "2/d"}}), "'limit': a rate is written"),
            (json!({"limit": {}}), "'limit': a limit needs a rate, a concurrency or both"),
            (json!({"limit": []}), "'limit': a limit needs a rate, a concurrency or both"),
            (json!({"limit": {"rate": "2/s", "per": 1}}), "no key 'per'"),
            (json!({"limit": {"concurrency": 0}}), "concurrency limit is 1 to"),
            (json!({"limit": {"concurrency": 1, "key": "c:{"}}), "'limit': "),
        ];
        for (o, want) in bad {
            let e = from_options("demo", "send", &o).unwrap_err();
            assert!(e.contains(want), "{o}: {e}");
        }
    }

    #[test]
    fn a_carried_limit_joins_the_workers_unless_the_worker_has_its_own() {
        let spec = |v: Value| parse_limit("demo", &v, true).unwrap();
        let empty = LimitSet::default();
        let carried = json!({"rate": "2/s", "key": "c:{c}"});
        let with = with_carried(&empty, "demo", "send", &carried).unwrap().unwrap();
        let applied = with.for_task("send", &json!({"c": 7}));
        assert_eq!(applied.len(), 1);
        assert_eq!(applied[0].limit, "demo/send/{c:{c}}");
        let topic = LimitSet::new(vec![spec(json!({"concurrency": 3}))]);
        assert_eq!(with_carried(&topic, "demo", "send", &carried).unwrap().unwrap().limits().len(), 2);
        let own = LimitSet::new(vec![spec(json!({"rate": "9/s", "name": "send", "key": "c:{c}"}))]);
        assert_eq!(with_carried(&own, "demo", "send", &carried), Ok(None), "the worker's own limit wins");
        assert!(with_carried(&empty, "demo", "send", &json!("2/s")).is_err());
        assert!(with_carried(&empty, "demo", "send", &json!({"rate": "x"})).is_err());
    }
}
