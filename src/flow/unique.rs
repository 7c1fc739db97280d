//! Unique tasks on plain data: the option a producer gives (a key template and a lifetime), the key a
//! task holds, and what taking it means for the task that asked. The key itself is held on the broker
//! (`broker::unique`: a classic queue holding one message, the holder's id).
//!
//! While a task holding a key waits or runs (retries included), another task with the same key is not
//! made: `Task::create` returns the holder's id, a batch gives it in the new task's place, the
//! Scheduler drops the task of an event. The worker releases the key when the task ends for good
//! (succeeded, failed to the store, poison); a replay from the failed store takes it again. A key not
//! released (its task lost) frees itself after its lifetime.

use serde_json::{Map, Value};

use super::key::Template;
use crate::wire::{UniqueKey, MAX_UNIQUE_FOR};

/// The lifetime of a key when `unique_for` is not given: an hour.
pub const DEFAULT_FOR: u64 = 3600;

/// The option names, as PHP arrays give them.
pub const OPTION: &str = "unique";
pub const OPTION_FOR: &str = "unique_for";

/// A task made unique: the template of its key and the key's lifetime in seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unique {
    pub template: Template,
    pub for_secs: u64,
}

impl Unique {
    /// A template and a lifetime (default [`DEFAULT_FOR`], 1 s to a week); the error says what is wrong.
    pub fn new(template: &str, for_secs: Option<i64>) -> Result<Unique, String> {
        let template = Template::parse(template)?;
        let for_secs = match for_secs {
            None => DEFAULT_FOR,
            Some(s) if (1..=MAX_UNIQUE_FOR as i64).contains(&s) => s as u64,
            Some(s) => return Err(format!("'{OPTION_FOR}' must be 1 to {MAX_UNIQUE_FOR} seconds, got {s}")),
        };
        Ok(Unique { template, for_secs })
    }

    /// The options `unique` (a template) and `unique_for` (seconds) of an options array; none when
    /// `unique` is absent. Any other member is an error naming it, so a misspelt option is never ignored.
    pub fn from_options(options: &Value) -> Result<Option<Unique>, String> {
        let o = match options {
            Value::Object(o) => o.clone(),
            Value::Array(a) if a.is_empty() => Map::new(),
            _ => {
                return Err(format!(
                    "options must be an array with string keys ('{OPTION}', '{OPTION_FOR}', '{}')",
                    super::carried::OPTION
                ))
            }
        };
        let limit = super::carried::OPTION;
        if let Some(k) = o.keys().find(|k| *k != OPTION && *k != OPTION_FOR && *k != limit) {
            return Err(format!(
                "unknown option '{}' (known: '{OPTION}', '{OPTION_FOR}', '{limit}')",
                crate::rules::printable(k)
            ));
        }
        let for_secs = match o.get(OPTION_FOR) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_i64().ok_or_else(|| format!("'{OPTION_FOR}' must be an integer (seconds)"))?),
        };
        match o.get(OPTION) {
            None | Some(Value::Null) if for_secs.is_some() => {
                Err(format!("'{OPTION_FOR}' needs '{OPTION}' (a key template)"))
            }
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(t)) => Unique::new(t, for_secs).map(Some),
            Some(_) => Err(format!("'{OPTION}' must be a key template (a string such as 'order:{{order_id}}')")),
        }
    }

    /// The key a task with these params holds, taken from now; the error says why the params give none.
    pub fn key_of(&self, params: &Value) -> Result<UniqueKey, String> {
        match self.template.render(params) {
            Some(k) => Ok(UniqueKey {
                key: k.name(),
                for_secs: self.for_secs,
                until: crate::wire::now() + self.for_secs as f64,
            }),
            None => Err(format!(
                "unique key template '{}': the task's params lack a member it names, or hold there something \
                 other than a string, an integer or a boolean",
                crate::rules::printable(self.template.source())
            )),
        }
    }
}

/// What taking a key gave: taken by this task, or held by the task with this id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Take {
    Taken,
    Held(String),
}

/// What the task that asked for a key becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Made {
    /// It is made (published).
    New,
    /// Another task holds the key: this one is not made; the holder's id.
    Duplicate(String),
}

/// How close to its end a key is left to free itself rather than released: a key past its lifetime
/// may be another task's now, and reading it to tell would let a third take it meanwhile (the
/// hosts' clocks are taken to agree within this).
pub const RELEASE_MARGIN_SECS: f64 = 1.0;

/// Whether a task that ends at `now` releases its key (else the key frees itself).
pub fn releases(key: &UniqueKey, now: f64) -> bool {
    now + RELEASE_MARGIN_SECS < key.until
}

/// A key held by the same id is this task's own (a publish sent again, an event routed again after
/// its tasks could not all be sent): the task is made.
pub fn made(ours: &str, take: Take) -> Made {
    match take {
        Take::Taken => Made::New,
        Take::Held(id) if id == ours => Made::New,
        Take::Held(id) => Made::Duplicate(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_read_from_an_array() {
        let ok = |v: Value| Unique::from_options(&v).unwrap();
        assert_eq!(ok(json!([])), None);
        assert_eq!(ok(json!({})), None);
        let u = ok(json!({"unique": "order:{id}"})).unwrap();
        assert_eq!((u.template.source(), u.for_secs), ("order:{id}", DEFAULT_FOR));
        assert_eq!(ok(json!({"unique": "o:{id}", "unique_for": 60})).unwrap().for_secs, 60);
        assert_eq!(ok(json!({"unique": "x", "unique_for": MAX_UNIQUE_FOR})).unwrap().for_secs, MAX_UNIQUE_FOR);
        let table = [
            (json!({"uniq": "x"}), "unknown option 'uniq'"),
            (json!({"unique_for": 5}), "needs 'unique'"),
            (json!({"unique": 5}), "must be a key template"),
            (json!({"unique": "a:{"}), "key template"),
            (json!({"unique": "x", "unique_for": 0}), "1 to 604800"),
            (json!({"unique": "x", "unique_for": MAX_UNIQUE_FOR + 1}), "1 to 604800"),
            (json!({"unique": "x", "unique_for": "60"}), "must be an integer"),
            (json!(["x"]), "string keys"),
            (json!("x"), "string keys"),
        ];
        for (v, want) in table {
            let e = Unique::from_options(&v).unwrap_err();
            assert!(e.contains(want), "{v}: {e}");
        }
    }

    #[test]
    fn the_key_of_a_task() {
        let u = Unique::new("order:{order_id}", Some(30)).unwrap();
        let k = u.key_of(&json!({"order_id": 7})).unwrap();
        assert_eq!((k.key.as_str(), k.for_secs), ("order:7", 30));
        assert!((k.until - crate::wire::now() - 30.0).abs() < 5.0, "{k:?}");
        assert!(u.key_of(&json!({"other": 7})).unwrap_err().contains("'order:{order_id}'"));
        let odd = u.key_of(&json!({"order_id": "naïve"})).unwrap();
        assert!(odd.key.starts_with('~'), "{odd:?}");
    }

    #[test]
    fn a_key_is_released_only_well_within_its_lifetime() {
        let key = UniqueKey { key: "k".into(), for_secs: 60, until: 100.0 };
        for (now, want) in [(0.0, true), (98.9, true), (99.0, false), (100.0, false), (200.0, false)] {
            assert_eq!(releases(&key, now), want, "{now}");
        }
    }

    #[test]
    fn what_a_take_makes() {
        let table = [
            (Take::Taken, Made::New),
            (Take::Held("me".into()), Made::New),
            (Take::Held("other".into()), Made::Duplicate("other".into())),
        ];
        for (take, want) in table {
            assert_eq!(made("me", take.clone()), want, "{take:?}");
        }
    }
}
