//! Chains: tasks run one after the other, each only once the one before it succeeded. Pure; the
//! worker child publishes the next step (`worker::child`), `services::chains` the first.
//!
//! A chain is carried by its tasks, with no other store: the task of step `n` holds, in its field
//! `chain`, the chain's id, `n`, the number of steps and the steps still to come (topic, name,
//! params, delay). When it succeeds, its worker publishes the next step (confirmed) before it acks,
//! under an id derived from the chain's id and the step's number ([`step_id`]): a step run again (its
//! worker died after publishing the next one but before its ack) publishes the same id again. Each
//! step runs at least once; a step after one that ran twice may run twice too, under the same id.
//! A failure for good (or a cancel) ends the chain there: its failed-store entry and history record
//! name the chain and the step.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::wire::TaskMsg;

/// The most steps a chain has (every task carries the steps after it).
pub const MAX_STEPS: usize = 100;

/// A step still to come.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub topic: String,
    pub name: String,
    pub params: Value,
    /// Seconds before it runs, counted from its publishing.
    pub delay: u64,
}

/// Where a task stands in its chain, as a history record names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct At {
    pub id: String,
    /// 1 for the first step.
    pub step: u32,
    pub steps: u32,
}

/// A task's field `chain`.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    pub at: At,
    /// The steps after this one, in order.
    pub rest: Vec<Step>,
}

/// The id of step `step` (1 for the first) of chain `chain`.
pub fn step_id(chain: &str, step: u32) -> String {
    format!("{chain}-{step}")
}

impl Step {
    /// A step, its topic, name and delay checked by the rules of a task.
    pub fn new(topic: &str, name: &str, params: Value, delay: i64) -> Result<Step, String> {
        crate::rules::check_topic(topic)?;
        crate::rules::check_task_name(name)?;
        crate::rules::check_delay(delay)?;
        Ok(Step { topic: topic.to_string(), name: name.to_string(), params, delay: delay as u64 })
    }

    fn to_value(&self) -> Value {
        json!({"topic": self.topic, "name": self.name, "params": self.params, "delay": self.delay})
    }

    fn from_value(v: &Value) -> Result<Step, String> {
        let text = |k: &str| v[k].as_str().ok_or_else(|| format!("a step of 'chain.rest' has no string '{k}'"));
        let delay = match &v["delay"] {
            Value::Null => 0,
            d => d.as_i64().ok_or("the 'delay' of a step of 'chain.rest' is not a whole number")?,
        };
        Step::new(text("topic")?, text("name")?, v["params"].clone(), delay)
    }
}

/// The steps a caller gives (`Chain::create()`): a list of `[topic, name, params, delay]` (params
/// and delay optional) or of `{"topic":..,"name":..,"params":..,"delay":..}`; the error names the step.
pub fn steps_of(spec: &Value) -> Result<Vec<Step>, String> {
    let list = spec.as_array().ok_or("the steps of a chain are a list")?;
    let step = |s: &Value| -> Result<Step, String> {
        let (topic, name, params, delay) = match s {
            Value::Array(a) if (2..=4).contains(&a.len()) => (&a[0], &a[1], a.get(2), a.get(3)),
            Value::Object(o) => (&s["topic"], &s["name"], o.get("params"), o.get("delay")),
            _ => return Err("a step is [topic, name, params, delay] (params and delay optional)".into()),
        };
        let text = |v: &Value, what: &str| v.as_str().map(str::to_string).ok_or(format!("its {what} is not a string"));
        let delay = match delay {
            None | Some(Value::Null) => 0,
            Some(d) => d.as_i64().ok_or("its delay is not a whole number")?,
        };
        let params = params.cloned().filter(|p| !p.is_null()).unwrap_or(Value::Array(vec![]));
        Step::new(&text(topic, "topic")?, &text(name, "name")?, params, delay)
    };
    list.iter().enumerate().map(|(i, s)| step(s).map_err(|e| format!("chain step {}: {e}", i + 1))).collect()
}

impl Chain {
    /// The first task of a chain `id` of `steps` (at least one); the chain's steps checked.
    pub fn first(id: &str, steps: Vec<Step>) -> Result<TaskMsg, String> {
        crate::rules::check_id(&step_id(id, MAX_STEPS as u32)).map_err(|e| format!("chain id: {e}"))?;
        if steps.is_empty() || steps.len() > MAX_STEPS {
            return Err(format!("a chain has from 1 to {MAX_STEPS} steps, got {}", steps.len()));
        }
        let mut steps = steps.into_iter();
        let first = steps.next().expect("one step at least");
        let rest: Vec<Step> = steps.collect();
        let at = At { id: id.to_string(), step: 1, steps: rest.len() as u32 + 1 };
        Ok(Chain { at, rest }.task(first))
    }

    /// The task of `step` at this place of the chain.
    fn task(self, step: Step) -> TaskMsg {
        let mut t = TaskMsg::new(&step.topic, &step.name, step.params, step.delay);
        t.id = step_id(&self.at.id, self.at.step);
        t.chain = Some(self);
        t
    }

    /// The task of the next step, to publish once this one succeeded; `None` after the last.
    pub fn next(&self) -> Option<TaskMsg> {
        let (step, rest) = self.rest.split_first()?;
        let at = At { id: self.at.id.clone(), step: self.at.step + 1, steps: self.at.steps };
        Some(Chain { at, rest: rest.to_vec() }.task(step.clone()))
    }

    pub fn to_value(&self) -> Value {
        let rest: Vec<Value> = self.rest.iter().map(Step::to_value).collect();
        json!({"id": self.at.id, "step": self.at.step, "steps": self.at.steps, "rest": rest})
    }

    /// A task body's `chain`, checked (ids, step numbers, the steps to come and their count).
    pub fn from_value(v: &Value) -> Result<Chain, String> {
        let id = v["id"].as_str().ok_or("'chain' has no string 'id'")?;
        crate::rules::check_id(id).map_err(|e| format!("chain id: {e}"))?;
        let num = |k: &str| {
            v[k].as_u64()
                .filter(|n| (1..=MAX_STEPS as u64).contains(n))
                .map(|n| n as u32)
                .ok_or_else(|| format!("'chain.{k}' must be a whole number from 1 to {MAX_STEPS}"))
        };
        let (step, steps) = (num("step")?, num("steps")?);
        let rest = match &v["rest"] {
            Value::Null => vec![],
            Value::Array(a) => a.iter().map(Step::from_value).collect::<Result<Vec<_>, _>>()?,
            _ => return Err("'chain.rest' is not a list".into()),
        };
        if step as usize + rest.len() != steps as usize {
            return Err(format!("'chain' is at step {step} of {steps} but holds {} step(s) to come", rest.len()));
        }
        Ok(Chain { at: At { id: id.to_string(), step, steps }, rest })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str) -> Step {
        Step::new("demo", name, json!({"n": name}), 0).unwrap()
    }

    #[test]
    fn each_step_publishes_the_next_under_a_derived_id() {
        let a = Chain::first("c1", vec![step("a"), step("b"), step("c")]).unwrap();
        assert_eq!((a.id.as_str(), a.name.as_str()), ("c1-1", "a"));
        let b = a.chain.as_ref().unwrap().next().unwrap();
        assert_eq!((b.id.as_str(), b.name.as_str(), &b.params), ("c1-2", "b", &json!({"n": "b"})));
        assert_eq!(b.chain.as_ref().unwrap().at, At { id: "c1".into(), step: 2, steps: 3 });
        let c = b.chain.as_ref().unwrap().next().unwrap();
        assert_eq!(c.id, "c1-3");
        assert_eq!(c.chain.as_ref().unwrap().next(), None, "the last step publishes nothing");
        // Run again, a step publishes the same next task.
        assert_eq!(a.chain.as_ref().unwrap().next().unwrap().id, b.id);
    }

    #[test]
    fn chains_are_checked() {
        assert!(Chain::first("c", vec![]).is_err());
        assert!(Chain::first("c", vec![step("a"); MAX_STEPS + 1]).is_err());
        assert!(Chain::first("bad id", vec![step("a")]).is_err());
        assert!(Chain::first(&"x".repeat(125), vec![step("a")]).is_err(), "no room for the step's number");
        assert!(Step::new("bad topic", "a", json!([]), 0).is_err());
        assert!(Step::new("demo", "a", json!([]), -1).is_err());
    }

    #[test]
    fn steps_are_given_as_lists_or_maps() {
        let s = steps_of(&json!([["demo", "a"], ["demo", "b", {"x": 1}, 3], {"topic": "t", "name": "c", "delay": 1}]));
        let s = s.unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0], Step::new("demo", "a", json!([]), 0).unwrap());
        assert_eq!(s[1], Step::new("demo", "b", json!({"x": 1}), 3).unwrap());
        assert_eq!(s[2], Step::new("t", "c", json!([]), 1).unwrap());
        for (bad, says) in [
            (json!({"a": 1}), "a list"),
            (json!([["demo"]]), "chain step 1: a step is"),
            (json!([["demo", "a"], ["demo", 5]]), "chain step 2: its name"),
            (json!([["demo", "a", [], "x"]]), "chain step 1: its delay"),
            (json!([["de mo", "a"]]), "chain step 1:"),
        ] {
            let e = steps_of(&bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_field_reads_back_as_written() {
        let t = Chain::first("c9", vec![step("a"), Step::new("other", "b", json!([1]), 5).unwrap()]).unwrap();
        let chain = t.chain.unwrap();
        assert_eq!(Chain::from_value(&chain.to_value()), Ok(chain));
        for bad in [
            json!(null),
            json!({"id": "c", "step": 1, "steps": 2, "rest": []}),
            json!({"id": "c", "step": 0, "steps": 1, "rest": []}),
            json!({"id": "c", "step": 1, "steps": 2, "rest": [{"topic": "a b", "name": "x"}]}),
            json!({"id": "c", "step": 1, "steps": 2, "rest": [{"topic": "t", "name": "x", "delay": -1}]}),
            json!({"id": "c d", "step": 1, "steps": 1}),
        ] {
            assert!(Chain::from_value(&bad).is_err(), "{bad}");
        }
        assert!(Chain::from_value(&json!({"id": "c", "step": 1, "steps": 1, "rest": []})).is_ok());
    }
}
