//! `Asynclib\Ebats\Schedules`: periodic schedules stored on the broker, managed at run time, and the
//! schedules declared in code with `EventManager::cron()`.

use ext_php_rs::prelude::*;
use ext_php_rs::types::Zval;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use crate::cron::state::{Def, Entry, Fold, Record};
use crate::cron::stream::{self, now_ms};
use crate::cron::ticks::{next_n, zoned};
use crate::cron::zone::process_zone;
use crate::cron::Error as CronError;
use crate::history::event_tasks::EventTasks;
use crate::php::args::{bad_input, broker_err, string_arg};
use crate::php::convert;
use crate::php::settings;

/// Schedules declared in code in this process, in the order they were declared.
static CODE: Mutex<Vec<Def>> = Mutex::new(Vec::new());

pub fn code_schedules() -> Vec<Def> {
    CODE.lock().clone()
}

fn cron_err(e: CronError) -> PhpException {
    bad_input(e.message().to_string())
}

/// An array argument as a JSON value (`[]` is an empty list).
fn array_value(zv: Option<&Zval>, what: &str) -> PhpResult<Value> {
    match zv {
        None => Ok(Value::Array(vec![])),
        Some(zv) if zv.dereference().array().is_some() => {
            convert::to_json(zv).map_err(|e| bad_input(format!("{what}: {e}")))
        }
        Some(zv) => Err(bad_input(format!("{what} must be an array, {} given", zv.dereference().get_type()))),
    }
}

/// An array with string keys (or an empty one) as a JSON object.
fn settings_map(zv: Option<&Zval>, what: &str) -> PhpResult<Map<String, Value>> {
    match array_value(zv, what)? {
        Value::Object(m) => Ok(m),
        Value::Array(a) if a.is_empty() => Ok(Map::new()),
        _ => Err(bad_input(format!("{what} must be an array with string keys (like ['name' => 'nightly'])"))),
    }
}

fn declare(expression: &Zval, event: &Zval, options: Option<&Zval>, settings: Option<&Zval>) -> PhpResult<Def> {
    let expression = string_arg(expression, "Argument #1 ($expression)")?;
    let event = string_arg(event, "Argument #2 ($event)")?;
    let options = array_value(options, "Argument #3 ($options)")?;
    let settings = settings_map(settings, "Argument #4 ($settings)")?;
    Def::declare(&expression, &event, options, &settings, process_zone).map(|(d, _)| d).map_err(cron_err)
}

/// `EventManager::cron()`: a schedule of this process's code.
pub fn declare_in_code(
    expression: &Zval,
    event: &Zval,
    options: Option<&Zval>,
    settings: Option<&Zval>,
) -> PhpResult<String> {
    let def = declare(expression, event, options, settings)?;
    let name = def.name.clone();
    let mut code = CODE.lock();
    match code.iter_mut().find(|d| d.name == name) {
        Some(d) if *d == def => {}
        Some(_) => {
            return Err(bad_input(format!("a schedule named '{name}' is already declared in code with other values")))
        }
        None => code.push(def),
    }
    Ok(name)
}

fn state() -> PhpResult<Fold> {
    let s = settings::current()?;
    stream::read_state(&s).map(|f| f.fold).map_err(broker_err)
}

fn append(record: Record) -> PhpResult<()> {
    let s = settings::current()?;
    stream::append(&s, &[record]).map_err(broker_err)
}

fn existing<'a>(fold: &'a Fold, name: &str) -> PhpResult<&'a Entry> {
    fold.schedules.get(name).ok_or_else(|| bad_input(format!("no schedule is named '{}'", crate::log::escape(name))))
}

fn stored<'a>(fold: &'a Fold, name: &str, what: &str) -> PhpResult<&'a Entry> {
    let e = existing(fold, name)?;
    if e.source != crate::cron::state::Source::Stored {
        return Err(bad_input(format!("schedule '{name}' is declared in code: {what} it there (it can be paused)")));
    }
    Ok(e)
}

fn iso(def: &Def, ms: i64) -> Value {
    match def.schedule().and_then(|s| zoned(&s, ms)) {
        Ok(t) => json!(t.to_rfc3339()),
        Err(_) => Value::Null,
    }
}

fn describe(e: &Entry, now: i64) -> Value {
    let next: Vec<Value> = match (e.paused, e.def.schedule()) {
        (false, Ok(s)) => next_n(&s, now, 3).unwrap_or_default().into_iter().map(|t| iso(&e.def, t)).collect(),
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
        "last_tick": e.last.as_ref().map(|l| iso(&e.def, l.tick)),
        "last_fired_at": e.last.as_ref().map(|l| iso(&e.def, l.fired_at)),
        "last_event_id": e.last.as_ref().map(|l| l.event_id.clone()),
        "last_late": e.last.as_ref().map(|l| l.late),
        "late": e.late,
        "skipped": e.skipped,
        "last_trigger_id": e.last_trigger.as_ref().map(|t| t.0.clone()),
    })
}

/// Last firings older than this are not looked up in the history (the read stays short).
const LAST_TASKS_BACK_MS: i64 = 24 * 3600 * 1000;

/// With the history on, the tasks of each schedule's last firing, from one read of the stream's
/// recent part (from the oldest of those firings, at most a day back). None with the history off.
fn last_firing_tasks(fold: &Fold, now: i64) -> PhpResult<Option<EventTasks>> {
    let s = settings::current()?;
    if !s.history.enabled {
        return Ok(None);
    }
    let lasts: Vec<_> = fold.schedules.values().filter_map(|e| e.last.as_ref()).collect();
    let mut tasks = EventTasks::new(lasts.iter().map(|l| l.event_id.as_str()));
    let Some(since) = lasts.iter().map(|l| l.fired_at).min() else { return Ok(Some(tasks)) };
    let since = since.max(now - LAST_TASKS_BACK_MS);
    match crate::history::scan(&s, Some(since), |r| tasks.push(r)) {
        Ok(()) => Ok(Some(tasks)),
        // No stream yet: no task of a firing has run with the history on.
        Err(e) if e.kind() == crate::broker::ErrorKind::NotFound => Ok(Some(tasks)),
        Err(e) => Err(broker_err(e)),
    }
}

fn task_outcome(r: &crate::history::Record) -> Value {
    json!({
        "id": r.id, "topic": r.topic, "task": r.task, "status": r.status, "outcome": r.outcome,
        "attempt": r.attempt, "message": r.message, "end_ms": r.end_ms,
    })
}

#[php_class]
#[php(name = "Asynclib\\Ebats\\Schedules")]
pub struct Schedules;

#[php_impl]
impl Schedules {
    /// Stores a schedule (fired by the leading Scheduler from now on); returns its name.
    pub fn add(expression: &Zval, event: &Zval, options: Option<&Zval>, settings: Option<&Zval>) -> PhpResult<String> {
        let def = declare(expression, event, options, settings)?;
        let fold = state()?;
        if fold.schedules.contains_key(&def.name) {
            return Err(bad_input(format!("a schedule named '{}' exists already", def.name)));
        }
        let name = def.name.clone();
        append(Record::Add { def })?;
        Ok(name)
    }

    /// Changes a stored schedule: keys `expression`, `event`, `options`, `timezone`, `catchup`.
    pub fn update(name: String, changes: &Zval) -> PhpResult<()> {
        let changes = settings_map(Some(changes), "Argument #2 ($changes)")?;
        let fold = state()?;
        let old = stored(&fold, &name, "change")?.def.clone();
        let mut expression = old.expression.clone();
        let mut event = old.event.clone();
        let mut options = old.options.clone();
        let mut settings = Map::new();
        settings.insert("name".into(), json!(old.name));
        settings.insert("timezone".into(), json!(old.timezone));
        settings.insert("catchup".into(), json!(old.catchup));
        for (k, v) in changes {
            match k.as_str() {
                "expression" => {
                    expression = v.as_str().ok_or_else(|| bad_input("'expression' must be a string"))?.to_string()
                }
                "event" => event = v.as_str().ok_or_else(|| bad_input("'event' must be a string"))?.to_string(),
                "options" => options = v,
                "timezone" | "catchup" => {
                    settings.insert(k, v);
                }
                other => {
                    return Err(bad_input(format!(
                        "unknown change '{}': the changes are expression, event, options, timezone, catchup",
                        crate::log::escape(other)
                    )))
                }
            }
        }
        let (def, _) = Def::declare(&expression, &event, options, &settings, process_zone).map_err(cron_err)?;
        append(Record::Update { def })
    }

    /// Deletes a stored schedule.
    pub fn remove(name: String) -> PhpResult<()> {
        let fold = state()?;
        stored(&fold, &name, "remove")?;
        append(Record::Remove { name })
    }

    /// Stops firing a schedule (stored or declared in code) until it is resumed.
    pub fn pause(name: String) -> PhpResult<()> {
        let fold = state()?;
        existing(&fold, &name)?;
        append(Record::Pause { name })
    }

    /// Fires again from now on; ticks that fell while it was paused are not caught up.
    pub fn resume(name: String) -> PhpResult<()> {
        let fold = state()?;
        existing(&fold, &name)?;
        append(Record::Resume { name })
    }

    /// Fires the schedule's event once, now (the leader publishes it); returns the event's id.
    pub fn trigger(name: String) -> PhpResult<String> {
        let fold = state()?;
        existing(&fold, &name)?;
        let id = crate::wire::new_id();
        append(Record::Trigger { name, id: id.clone() })?;
        Ok(id)
    }

    /// Every schedule, by name: its definition, state, next 3 fire times and last firing; with the
    /// history on, `last_tasks`: how each task of the last firing ended (its latest record).
    pub fn list() -> PhpResult<Vec<Zval>> {
        let fold = state()?;
        let now = now_ms();
        let outcomes = last_firing_tasks(&fold, now)?;
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
                convert::to_zval(&v)
            })
            .collect())
    }
}
