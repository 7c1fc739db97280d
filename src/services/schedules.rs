//! Managing periodic schedules, all of it in one place, for every caller (PHP's `Schedules` class and
//! `EventManager::cron()`, the CLI through PHP, the dashboard through [`Actions`]): add, update (with
//! its merge rules, [`merged`]), remove, pause, resume, trigger, list with next and last runs, and the
//! schedules a process declares in code. Changes go on the schedule stream, on the process's session.

use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use crate::broker::{BrokerError, ErrorKind};
use crate::config::Settings;
use crate::cron::state::{CodeSet, Def, Entry, Fold, Record, Source};
use crate::cron::ticks::{next_n, zoned};
use crate::cron::zone::process_zone;
use crate::dashboard::schedules::{Failed, ScheduleActions};
use crate::history::event_tasks::EventTasks;
use crate::services::periodic::stream;
use crate::wire::now_ms;

pub use super::refused::Refused;

/// Schedules declared in code in this process, in the order they were declared.
static CODE: Mutex<Vec<Def>> = Mutex::new(Vec::new());
/// The application this process's code schedules belong to (`EventManager::cronOwner()`).
static OWNER: Mutex<Option<String>> = Mutex::new(None);

/// What a Scheduler of this process appends when it starts.
pub fn code_schedules() -> CodeSet {
    CodeSet { owner: OWNER.lock().clone(), defs: CODE.lock().clone() }
}

/// Names the application whose schedules this process declares in code (`EventManager::cronOwner()`).
pub fn set_code_owner(owner: &str) -> Result<(), Refused> {
    crate::cron::name::check_name(owner).map_err(|_| {
        Refused::Bad(format!(
            "cron owner '{}' is invalid: 1 to 128 characters of A-Z a-z 0-9 _ - . starting with a letter, digit or _",
            crate::log::escape(owner)
        ))
    })?;
    *OWNER.lock() = Some(owner.to_string());
    Ok(())
}

/// A schedule's definition from what a caller gives (the zone, unless set, is the process's).
fn declare(expression: &str, event: &str, options: Value, settings: &Map<String, Value>) -> Result<Def, Refused> {
    Ok(Def::declare(expression, event, options, settings, process_zone)?.0)
}

/// A schedule of this process's code (`EventManager::cron()`); its name. Declaring one name again is
/// allowed with the same values only.
pub fn declare_in_code(
    expression: &str,
    event: &str,
    options: Value,
    settings: &Map<String, Value>,
) -> Result<String, Refused> {
    let def = declare(expression, event, options, settings)?;
    let name = def.name.clone();
    let mut code = CODE.lock();
    match code.iter_mut().find(|d| d.name == name) {
        Some(d) if *d == def => {}
        Some(_) => {
            return Err(Refused::Bad(format!(
                "a schedule named '{name}' is already declared in code with other values"
            )))
        }
        None => code.push(def),
    }
    Ok(name)
}

fn state(settings: &Settings) -> Result<Fold, BrokerError> {
    stream::read_state(settings).map(|f| f.fold)
}

fn existing<'a>(fold: &'a Fold, name: &str) -> Result<&'a Entry, Refused> {
    fold.schedules.get(name).ok_or_else(|| Refused::Bad(format!("no schedule is named '{}'", crate::log::escape(name))))
}

/// A stored schedule (not one declared in code), for changes only stored ones allow.
fn stored<'a>(fold: &'a Fold, name: &str, what: &str) -> Result<&'a Entry, Refused> {
    let e = existing(fold, name)?;
    if e.source != Source::Stored {
        return Err(Refused::Bad(format!("schedule '{name}' is declared in code: {what} it there (it can be paused)")));
    }
    Ok(e)
}

fn iso(e: &Entry, ms: i64) -> Value {
    match e.def.schedule().and_then(|s| zoned(&s, ms)) {
        Ok(t) => json!(t.to_rfc3339()),
        Err(_) => Value::Null,
    }
}

/// A schedule as shown: definition, state, next 3 fire times, last firing.
pub fn describe(e: &Entry, now: i64) -> Value {
    let next: Vec<Value> = match (e.paused, e.def.schedule()) {
        (false, Ok(s)) => next_n(&s, now, 3).unwrap_or_default().into_iter().map(|t| iso(e, t)).collect(),
        _ => vec![],
    };
    json!({
        "name": e.def.name,
        "expression": e.def.expression,
        "event": e.def.event,
        "options": e.def.options,
        "timezone": e.def.timezone,
        "catchup": e.def.catchup,
        "paused": e.paused,
        "source": e.source.as_str(),
        "next": next,
        "last_tick": e.last.as_ref().map(|l| iso(e, l.tick)),
        "last_fired_at": e.last.as_ref().map(|l| iso(e, l.fired_at)),
        "last_event_id": e.last.as_ref().map(|l| l.event_id.clone()),
        "last_late": e.last.as_ref().map(|l| l.late),
        "late": e.late,
        "skipped": e.skipped,
        "last_trigger_id": e.last_trigger.as_ref().map(|t| t.0.clone()),
    })
}

/// Every schedule, described; with the history on, each also says how the tasks of its last firing
/// ended (`last_tasks`: the latest record of each task made from the firing's event).
pub fn list(settings: &Settings) -> Result<Vec<Value>, BrokerError> {
    let fold = state(settings)?;
    let now = now_ms();
    let outcomes = last_firing_tasks(settings, &fold, now)?;
    Ok(fold
        .schedules
        .values()
        .map(|e| {
            let mut v = describe(e, now);
            v["last_tasks"] = match (&outcomes, &e.last) {
                (None, _) => Value::Null,
                (Some(_), None) => json!([]),
                (Some(o), Some(l)) => o.of(&l.event_id).into_iter().map(task_outcome).collect(),
            };
            v
        })
        .collect())
}

/// Last firings older than this are not looked up in the history (the read stays short).
const LAST_TASKS_BACK_MS: i64 = 24 * 3600 * 1000;

/// With the history on, the tasks of each schedule's last firing, from one read of the stream's
/// recent part (from the oldest of those firings, at most a day back). None with the history off.
fn last_firing_tasks(settings: &Settings, fold: &Fold, now: i64) -> Result<Option<EventTasks>, BrokerError> {
    if !settings.history.enabled {
        return Ok(None);
    }
    let lasts: Vec<_> = fold.schedules.values().filter_map(|e| e.last.as_ref()).collect();
    let mut tasks = EventTasks::new(lasts.iter().map(|l| l.event_id.as_str()));
    let Some(since) = lasts.iter().map(|l| l.fired_at).min() else { return Ok(Some(tasks)) };
    let since = since.max(now - LAST_TASKS_BACK_MS);
    match crate::history::scan(settings, Some(since), |r| tasks.push(r)) {
        Ok(()) => Ok(Some(tasks)),
        // No stream yet: no task of a firing has run with the history on.
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Some(tasks)),
        Err(e) => Err(e),
    }
}

fn task_outcome(r: &crate::history::Record) -> Value {
    json!({
        "id": r.id, "topic": r.topic, "task": r.task, "status": r.status, "outcome": r.outcome,
        "attempt": r.attempt, "message": r.message, "end_ms": r.end_ms,
    })
}

/// Appends a change and tells whether it took effect where it landed in the stream: with changes racing
/// (two adds of one name, an update against a remove) each caller learns the truth of its own.
fn change(settings: &Settings, record: &Record) -> Result<(), Refused> {
    match stream::request(settings, record)?.verdict {
        Some(Ok(())) => Ok(()),
        Some(Err(why)) => Err(Refused::Bad(crate::log::escape(&why))),
        // The record was read (the reading stops at it), so it was folded: never here.
        None => Err(Refused::Broker(BrokerError::new(
            ErrorKind::Runtime,
            "the change was not found in the schedule stream",
        ))),
    }
}

/// Stores a schedule (fired by the leading Scheduler from now on); its name. Refused when the
/// definition is bad, or when the name is taken (by a schedule there before, or by an add that raced
/// with this one and landed first).
pub fn add(
    settings: &Settings,
    expression: &str,
    event: &str,
    options: Value,
    schedule: &Map<String, Value>,
) -> Result<String, Refused> {
    let def = declare(expression, event, options, schedule)?;
    let name = def.name.clone();
    change(settings, &Record::Add { def })?;
    Ok(name)
}

/// What an update asks for, merged into the definition `old`: the expression, event, options and
/// settings (name, timezone, catchup) to declare again. The changes are `expression`, `event`,
/// `options`, `timezone`, `catchup`; any other key is refused.
pub fn merged(old: &Def, changes: Map<String, Value>) -> Result<(String, String, Value, Map<String, Value>), String> {
    let mut expression = old.expression.clone();
    let mut event = old.event.clone();
    let mut options = old.options.clone();
    let mut settings = Map::new();
    settings.insert("name".into(), json!(old.name));
    settings.insert("timezone".into(), json!(old.timezone));
    settings.insert("catchup".into(), json!(old.catchup));
    for (k, v) in changes {
        match k.as_str() {
            "expression" => expression = v.as_str().ok_or("'expression' must be a string")?.to_string(),
            "event" => event = v.as_str().ok_or("'event' must be a string")?.to_string(),
            "options" => options = v,
            "timezone" | "catchup" => {
                settings.insert(k, v);
            }
            other => {
                return Err(format!(
                    "unknown change '{}': the changes are expression, event, options, timezone, catchup",
                    crate::log::escape(other)
                ))
            }
        }
    }
    Ok((expression, event, options, settings))
}

/// Changes a stored schedule (one declared in code is changed in its code): `changes` as
/// [`merged`] takes them. Checked again where the update lands in the stream: a remove may have
/// come first.
pub fn update(settings: &Settings, name: &str, changes: Map<String, Value>) -> Result<(), Refused> {
    let fold = state(settings)?;
    let old = &stored(&fold, name, "change")?.def;
    let (expression, event, options, schedule) = merged(old, changes).map_err(Refused::Bad)?;
    let def = declare(&expression, &event, options, &schedule)?;
    change(settings, &Record::Update { def })
}

/// Deletes a schedule, stored or declared in code (one declared in code comes back when a Scheduler
/// declaring it starts), with its last fired tick: a schedule added again under the name starts afresh.
pub fn remove(settings: &Settings, name: &str) -> Result<(), Refused> {
    change(settings, &Record::Remove { name: name.to_string() })
}

/// Stops firing a schedule (stored or declared in code) until resumed.
pub fn pause(settings: &Settings, name: &str) -> Result<(), Refused> {
    change(settings, &Record::Pause { name: name.to_string() })
}

/// Fires again from now on; ticks that fell while it was paused are not caught up.
pub fn resume(settings: &Settings, name: &str) -> Result<(), Refused> {
    change(settings, &Record::Resume { name: name.to_string() })
}

/// Fires the schedule's event once, now (the leader publishes it); the event's id.
pub fn trigger(settings: &Settings, name: &str) -> Result<String, Refused> {
    let id = crate::wire::new_id();
    change(settings, &Record::Trigger { name: name.to_string(), id: id.clone() })?;
    Ok(id)
}

/// The schedule actions the dashboard offers, handed to it when it is started (it sits below this tier).
pub struct Actions;

impl ScheduleActions for Actions {
    fn list(&self, settings: &Settings) -> Result<Vec<Value>, BrokerError> {
        list(settings)
    }
    fn pause(&self, settings: &Settings, name: &str) -> Result<(), Failed> {
        Ok(pause(settings, name)?)
    }
    fn resume(&self, settings: &Settings, name: &str) -> Result<(), Failed> {
        Ok(resume(settings, name)?)
    }
    fn trigger(&self, settings: &Settings, name: &str) -> Result<String, Failed> {
        Ok(trigger(settings, name)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn old() -> Def {
        Def {
            name: "nightly".into(),
            expression: "0 3 * * *".into(),
            event: "report.due".into(),
            options: json!({"a": 1}),
            timezone: "Europe/Berlin".into(),
            catchup: 60,
        }
    }

    fn changes(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("an object")
    }

    #[test]
    fn an_update_merges_into_the_old_definition() {
        let kept = |zone: &str, catchup: u32| changes(json!({"name": "nightly", "timezone": zone, "catchup": catchup}));
        // (changes, expression, event, options, settings)
        let table = [
            (json!({}), "0 3 * * *", "report.due", json!({"a": 1}), kept("Europe/Berlin", 60)),
            (
                json!({"expression": "*/5 * * * *"}),
                "*/5 * * * *",
                "report.due",
                json!({"a": 1}),
                kept("Europe/Berlin", 60),
            ),
            (json!({"event": "x.y", "options": [1]}), "0 3 * * *", "x.y", json!([1]), kept("Europe/Berlin", 60)),
            (json!({"timezone": "UTC", "catchup": 0}), "0 3 * * *", "report.due", json!({"a": 1}), kept("UTC", 0)),
        ];
        for (c, expression, event, options, settings) in table {
            let got = merged(&old(), changes(c.clone())).unwrap_or_else(|e| panic!("{c}: {e}"));
            assert_eq!(got, (expression.to_string(), event.to_string(), options, settings), "{c}");
        }
    }

    #[test]
    fn an_update_refuses_what_it_cannot_merge() {
        let table = [
            (json!({"expression": 5}), "'expression' must be a string"),
            (json!({"event": null}), "'event' must be a string"),
            (json!({"name": "other"}), "unknown change 'name'"),
            (json!({"paused": true}), "unknown change 'paused'"),
        ];
        for (c, why) in table {
            let e = merged(&old(), changes(c.clone())).expect_err("refused");
            assert!(e.starts_with(why), "{c}: {e}");
        }
    }
}
