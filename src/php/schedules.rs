//! `Asynclib\Ebats\Schedules`: periodic schedules stored on the broker, managed at run time, and the
//! schedules declared in code with `EventManager::cron()`.

use ext_php_rs::prelude::*;
use ext_php_rs::types::Zval;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use crate::cron::manage::{self, Refused};
use crate::cron::state::{CodeSet, Def, Fold, Record};
use crate::cron::zone::process_zone;
use crate::cron::Error as CronError;
use crate::php::args::{bad_input, broker_err, string_arg};
use crate::php::convert;
use crate::php::settings;

/// Schedules declared in code in this process, in the order they were declared.
static CODE: Mutex<Vec<Def>> = Mutex::new(Vec::new());
/// The application this process's code schedules belong to (`EventManager::cronOwner()`).
static OWNER: Mutex<Option<String>> = Mutex::new(None);

/// What a Scheduler of this process appends when it starts.
pub fn code_schedules() -> CodeSet {
    CodeSet { owner: OWNER.lock().clone(), defs: CODE.lock().clone() }
}

/// `EventManager::cronOwner()`: names the application whose schedules this process declares in code.
pub fn set_code_owner(owner: &Zval) -> PhpResult<()> {
    let owner = string_arg(owner, "Argument #1 ($owner)")?;
    crate::cron::name::check_name(&owner).map_err(|_| {
        bad_input(format!(
            "cron owner '{}' is invalid: 1 to 128 characters of A-Z a-z 0-9 _ - . starting with a letter, digit or _",
            crate::log::escape(&owner)
        ))
    })?;
    *OWNER.lock() = Some(owner);
    Ok(())
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
    manage::state(&settings::current()?).map_err(broker_err)
}

fn refused(e: Refused) -> PhpException {
    match e {
        Refused::Broker(e) => broker_err(e),
        Refused::Bad(m) => bad_input(m),
    }
}

#[php_class]
#[php(name = "Asynclib\\Ebats\\Schedules")]
pub struct Schedules;

#[php_impl]
impl Schedules {
    /// Stores a schedule (fired by the leading Scheduler from now on); returns its name.
    pub fn add(expression: &Zval, event: &Zval, options: Option<&Zval>, settings: Option<&Zval>) -> PhpResult<String> {
        let def = declare(expression, event, options, settings)?;
        manage::add(&settings::current()?, def).map_err(refused)
    }

    /// Changes a stored schedule: keys `expression`, `event`, `options`, `timezone`, `catchup`.
    pub fn update(name: String, changes: &Zval) -> PhpResult<()> {
        let changes = settings_map(Some(changes), "Argument #2 ($changes)")?;
        let fold = state()?;
        let old = manage::stored(&fold, &name, "change").map_err(refused)?.def.clone();
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
        // Checked again where the update lands in the stream: a remove may have come first.
        manage::change(&settings::current()?, &Record::Update { def }).map_err(refused)
    }

    /// Deletes a schedule and forgets its last fired tick. One declared in code comes back when a
    /// Scheduler declaring it starts.
    pub fn remove(name: String) -> PhpResult<()> {
        manage::remove(&settings::current()?, &name).map_err(refused)
    }

    /// Stops firing a schedule (stored or declared in code) until it is resumed.
    pub fn pause(name: String) -> PhpResult<()> {
        manage::pause(&settings::current()?, &name).map_err(refused)
    }

    /// Fires again from now on; ticks that fell while it was paused are not caught up.
    pub fn resume(name: String) -> PhpResult<()> {
        manage::resume(&settings::current()?, &name).map_err(refused)
    }

    /// Fires the schedule's event once, now (the leader publishes it); returns the event's id.
    pub fn trigger(name: String) -> PhpResult<String> {
        manage::trigger(&settings::current()?, &name).map_err(refused)
    }

    /// Every schedule, by name: its definition, state, next 3 fire times and last firing; with the
    /// history on, `last_tasks`: how each task of the last firing ended (its latest record).
    pub fn list() -> PhpResult<Vec<Zval>> {
        let list = manage::list(&settings::current()?).map_err(broker_err)?;
        Ok(list.iter().map(convert::to_zval).collect())
    }
}
