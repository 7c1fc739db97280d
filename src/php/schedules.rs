//! `Asynclib\Ebats\Schedules`: periodic schedules stored on the broker, managed at run time, and the
//! schedules declared in code with `EventManager::cron()`. Values converted here; the work is
//! `services::schedules`'s.

use ext_php_rs::prelude::*;
use ext_php_rs::types::Zval;
use serde_json::{Map, Value};

use crate::php::args::{bad_input, broker_err, refused, string_arg};
use crate::php::convert;
use crate::php::settings;
use crate::services::schedules;

pub use crate::services::schedules::code_schedules;

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

/// The arguments of `cron()` and `add()`: expression, event, options, settings.
type Declared = (String, String, Value, Map<String, Value>);

fn declared(expression: &Zval, event: &Zval, options: Option<&Zval>, settings: Option<&Zval>) -> PhpResult<Declared> {
    Ok((
        string_arg(expression, "Argument #1 ($expression)")?,
        string_arg(event, "Argument #2 ($event)")?,
        array_value(options, "Argument #3 ($options)")?,
        settings_map(settings, "Argument #4 ($settings)")?,
    ))
}

/// `EventManager::cronOwner()`: names the application whose schedules this process declares in code.
pub fn set_code_owner(owner: &Zval) -> PhpResult<()> {
    let owner = string_arg(owner, "Argument #1 ($owner)")?;
    schedules::set_code_owner(&owner).map_err(refused)
}

/// `EventManager::cron()`: a schedule of this process's code.
pub fn declare_in_code(
    expression: &Zval,
    event: &Zval,
    options: Option<&Zval>,
    settings: Option<&Zval>,
) -> PhpResult<String> {
    let (expression, event, options, settings) = declared(expression, event, options, settings)?;
    schedules::declare_in_code(&expression, &event, options, &settings).map_err(refused)
}

#[php_class]
#[php(name = "Asynclib\\Ebats\\Schedules")]
pub struct Schedules;

#[php_impl]
impl Schedules {
    /// Stores a schedule (fired by the leading Scheduler from now on); returns its name.
    pub fn add(expression: &Zval, event: &Zval, options: Option<&Zval>, settings: Option<&Zval>) -> PhpResult<String> {
        let (expression, event, options, schedule) = declared(expression, event, options, settings)?;
        schedules::add(&settings::current()?, &expression, &event, options, &schedule).map_err(refused)
    }

    /// Changes a stored schedule: keys `expression`, `event`, `options`, `timezone`, `catchup`.
    pub fn update(name: String, changes: &Zval) -> PhpResult<()> {
        let changes = settings_map(Some(changes), "Argument #2 ($changes)")?;
        schedules::update(&settings::current()?, &name, changes).map_err(refused)
    }

    /// Deletes a schedule and forgets its last fired tick. One declared in code comes back when a
    /// Scheduler declaring it starts.
    pub fn remove(name: String) -> PhpResult<()> {
        schedules::remove(&settings::current()?, &name).map_err(refused)
    }

    /// Stops firing a schedule (stored or declared in code) until it is resumed.
    pub fn pause(name: String) -> PhpResult<()> {
        schedules::pause(&settings::current()?, &name).map_err(refused)
    }

    /// Fires again from now on; ticks that fell while it was paused are not caught up.
    pub fn resume(name: String) -> PhpResult<()> {
        schedules::resume(&settings::current()?, &name).map_err(refused)
    }

    /// Fires the schedule's event once, now (the leader publishes it); returns the event's id.
    pub fn trigger(name: String) -> PhpResult<String> {
        schedules::trigger(&settings::current()?, &name).map_err(refused)
    }

    /// Every schedule, by name: its definition, state, next 3 fire times and last firing; with the
    /// history on, `last_tasks`: how each task of the last firing ended (its latest record).
    pub fn list() -> PhpResult<Vec<Zval>> {
        let list = schedules::list(&settings::current()?).map_err(broker_err)?;
        Ok(list.iter().map(convert::to_zval).collect())
    }
}
