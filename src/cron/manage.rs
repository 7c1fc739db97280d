//! Managing the schedules of the stream at run time, for every caller (the PHP `Schedules` class, the
//! dashboard): listing with next and last runs, pause, resume, trigger. On the process's session.

use serde_json::{json, Value};

use super::state::{Def, Entry, Fold, Record, Source};
use super::stream;
use super::ticks::{next_n, zoned};
use crate::broker::{BrokerError, ErrorKind};
use crate::config::Settings;
use crate::history::event_tasks::EventTasks;
use crate::wire::now_ms;

/// Why a management call failed: the broker, or a request that cannot be done (message for people).
#[derive(Debug)]
pub enum Refused {
    Broker(BrokerError),
    Bad(String),
}

impl From<BrokerError> for Refused {
    fn from(e: BrokerError) -> Self {
        Refused::Broker(e)
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Broker(e) => write!(f, "{e}"),
            Refused::Bad(m) => f.write_str(m),
        }
    }
}

pub fn state(settings: &Settings) -> Result<Fold, BrokerError> {
    stream::read_state(settings).map(|f| f.fold)
}

pub fn existing<'a>(fold: &'a Fold, name: &str) -> Result<&'a Entry, Refused> {
    fold.schedules.get(name).ok_or_else(|| Refused::Bad(format!("no schedule is named '{}'", crate::log::escape(name))))
}

/// A stored schedule (not one declared in code), for changes only stored ones allow.
pub fn stored<'a>(fold: &'a Fold, name: &str, what: &str) -> Result<&'a Entry, Refused> {
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

/// Every schedule, described.
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
pub fn change(settings: &Settings, record: &Record) -> Result<(), Refused> {
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

/// Stores a schedule; refused when the name is taken (by a schedule there before, or by an add that
/// raced with this one and landed first).
pub fn add(settings: &Settings, def: Def) -> Result<String, Refused> {
    let name = def.name.clone();
    change(settings, &Record::Add { def })?;
    Ok(name)
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
