//! Producing many messages at once: `Batch` (one round of confirms for all), deferred confirms
//! (`ebats_flush()`, `ebats_deferred_errors()`), and the end-of-request wait that guarantees no
//! finished request leaves an unconfirmed message behind (what they do: `services::publishing`).

use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendClassObject, ZendHashTable, Zval};

use crate::php::args::{bad_input, params_json, string_arg};
use crate::php::convert;
use crate::php::producer::{create_args, refused};
use crate::php::settings;
use crate::services::publishing;

#[php_class]
#[php(name = "Asynclib\\Ebats\\Batch")]
pub struct Batch(publishing::Batch);

#[php_impl]
impl Batch {
    pub fn __construct() -> Self {
        Batch(publishing::Batch::default())
    }

    /// Adds an event to publish: `$batch->event('order_paied', ['order_id' => 1])`.
    pub fn event<'a>(
        self_: &'a mut ZendClassObject<Batch>,
        event_name: &Zval,
        options: Option<&Zval>,
    ) -> PhpResult<&'a mut ZendClassObject<Batch>> {
        let name = string_arg(event_name, "Argument #1 ($event_name)")?;
        let params = match options {
            Some(o) if !o.is_array() => return Err(bad_input("event options must be an array")),
            Some(o) => Some(params_json(o, "event options")?),
            None => None,
        };
        self_.0.add_event(name, params).map_err(refused)?;
        Ok(self_)
    }

    /// Adds a task to create, as `Task::create()` would.
    pub fn task<'a>(
        self_: &'a mut ZendClassObject<Batch>,
        topic: &Zval,
        name: &Zval,
        params: Option<&Zval>,
        delay: Option<&Zval>,
        options: Option<&ZendHashTable>,
    ) -> PhpResult<&'a mut ZendClassObject<Batch>> {
        let (topic, name, params, delay, options) = create_args(topic, name, params, delay, options)?;
        self_.0.add_task(&topic, &name, params, delay, &options).map_err(refused)?;
        Ok(self_)
    }

    pub fn count(&self) -> i64 {
        self.0.len() as i64
    }

    /// Publishes everything added, in order, and empties the batch. Returns the ids once the
    /// broker confirmed all of them (or, deferred, once they are handed over).
    pub fn publish(&mut self, defer: Option<bool>) -> PhpResult<Vec<String>> {
        self.0.publish(&settings::current()?, defer).map_err(refused)
    }
}

/// Waits for the confirms of every deferred publish of this process. Returns how many were
/// confirmed; throws ConnectionedException naming the failures.
pub fn flush() -> PhpResult<i64> {
    Ok(publishing::flush(&settings::current()?).map_err(refused)? as i64)
}

/// Failures of deferred publishes that were found when an earlier request ended (they were logged
/// then), each an array as `publishing::failure_entry` makes it; reading them clears them.
pub fn take_errors() -> Vec<Zval> {
    publishing::take_failures().iter().map(convert::to_zval).collect()
}

/// End of every request: wait for the confirms of its deferred publishes, log and keep failures.
pub extern "C" fn request_shutdown(_type: i32, _module: i32) -> i32 {
    if !publishing::pending() {
        return 0;
    }
    let Ok(s) = settings::current() else { return 0 };
    publishing::end_request(&s);
    0
}
