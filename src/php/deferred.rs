//! Producing many messages at once: `Batch` (one round of confirms for all), deferred confirms
//! (`ebats_flush()`, `ebats_deferred_errors()`), and the end-of-request wait that guarantees no
//! finished request leaves an unconfirmed message behind.

use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendClassObject, Zval};
use parking_lot::Mutex;

use crate::broker::confirm::Failed;
use crate::broker::{Decl, Outgoing};
use crate::dispatch;
use crate::log;
use crate::php::args::{bad_input, broker_err, params_json, string_arg};
use crate::php::convert;
use crate::php::exceptions::connectioned_with;
use crate::php::producer::{deliver, Event, Task};
use crate::php::settings;

/// Failures of deferred publishes found at the end of an earlier request, not yet read.
static DEFERRED_ERRORS: Mutex<Vec<Failed>> = Mutex::new(Vec::new());

/// A failed publish as PHP sees it: `id`, `kind` (event, task or message), `event` (the event's
/// name), `topic` (the task's topic), `exchange`, `error`, `maybe_stored` (it was handed to the
/// broker and no answer or a refusal came: the broker may hold it).
pub fn failure_entry(f: &Failed) -> serde_json::Value {
    let kind = match (f.sent.event(), f.sent.topic()) {
        (Some(_), _) => "event",
        (_, Some(_)) => "task",
        _ => "message",
    };
    serde_json::json!({
        "id": f.sent.id, "kind": kind, "event": f.sent.event(), "topic": f.sent.topic(),
        "exchange": f.sent.exchange, "error": f.error.to_string(), "maybe_stored": f.maybe_stored,
    })
}

/// "event 'x' id=…, task of topic 'demo' id=…", the first 20 of them.
pub fn describe_all(failures: &[Failed]) -> String {
    const SHOWN: usize = 20;
    let mut names: Vec<String> = failures.iter().take(SHOWN).map(|f| f.sent.describe()).collect();
    if failures.len() > SHOWN {
        names.push(format!("and {} more (see getFailures())", failures.len() - SHOWN));
    }
    names.join(", ")
}

/// The exception for publishes that failed: `message`, and `getFailures()` giving them as data.
pub fn failures_exception(message: String, failures: &[Failed]) -> PhpException {
    let entries = serde_json::Value::Array(failures.iter().map(failure_entry).collect());
    connectioned_with(message, convert::to_zval(&entries))
}

enum Item {
    Event(Event),
    Task(Task),
}

#[php_class]
#[php(name = "Asynclib\\Ebats\\Batch")]
pub struct Batch {
    items: Vec<Item>,
}

#[php_impl]
impl Batch {
    pub fn __construct() -> Self {
        Batch { items: Vec::new() }
    }

    /// Adds an event to publish: `$batch->event('order_paied', ['order_id' => 1])`.
    pub fn event<'a>(
        self_: &'a mut ZendClassObject<Batch>,
        event_name: &Zval,
        options: Option<&Zval>,
    ) -> PhpResult<&'a mut ZendClassObject<Batch>> {
        let mut e = Event::make(string_arg(event_name, "Argument #1 ($event_name)")?)?;
        if let Some(o) = options {
            if !o.is_array() {
                return Err(bad_input("event options must be an array"));
            }
            e.set_params(params_json(o, "event options")?);
        }
        self_.items.push(Item::Event(e));
        Ok(self_)
    }

    /// Adds a task to create, as `Task::create()` would.
    pub fn task<'a>(
        self_: &'a mut ZendClassObject<Batch>,
        topic: &Zval,
        name: &Zval,
        params: Option<&Zval>,
        delay: Option<&Zval>,
    ) -> PhpResult<&'a mut ZendClassObject<Batch>> {
        self_.items.push(Item::Task(Task::from_create_args(topic, name, params, delay)?));
        Ok(self_)
    }

    pub fn count(&self) -> i64 {
        self.items.len() as i64
    }

    /// Publishes everything added, in order, and empties the batch. Returns the ids once the
    /// broker confirmed all of them (or, deferred, once they are handed over).
    pub fn publish(&mut self, defer: Option<bool>) -> PhpResult<Vec<String>> {
        let s = settings::current()?;
        let mut ids = Vec::with_capacity(self.items.len());
        let mut parts: Vec<(Vec<Decl>, Outgoing)> = Vec::with_capacity(self.items.len());
        for item in &self.items {
            match item {
                Item::Event(e) => {
                    let (id, p) = e.parts(&s);
                    ids.push(id);
                    parts.push(p);
                }
                Item::Task(t) => {
                    ids.push(t.id.clone());
                    parts.push(t.parts(&s));
                }
            }
        }
        if !parts.is_empty() {
            deliver(&s, parts, defer.unwrap_or(s.deferred))?;
        }
        self.items.clear();
        Ok(ids)
    }
}

/// Waits for the confirms of every deferred publish of this process. Returns how many were
/// confirmed; throws ConnectionedException naming the failures.
pub fn flush() -> PhpResult<i64> {
    let s = settings::current()?;
    let (ok, failures) = dispatch::flush(&s).map_err(broker_err)?;
    if failures.is_empty() {
        return Ok(ok as i64);
    }
    let mut errors: Vec<String> = Vec::new();
    for f in &failures {
        let e = f.error.to_string();
        if !errors.contains(&e) {
            errors.push(e);
        }
    }
    let mut message =
        format!("{} deferred publish(es) failed: {}: {}", failures.len(), describe_all(&failures), errors.join("; "));
    let unanswered = failures.iter().filter(|f| f.maybe_stored).count();
    if unanswered > 0 {
        message.push_str(&format!(
            " ({unanswered} of them got no answer or a refusal and may still have been stored: look for their ids before publishing again)"
        ));
    }
    Err(failures_exception(message, &failures))
}

/// Failures of deferred publishes that were found when an earlier request ended (they were logged
/// then), each an array as `failure_entry` makes it; reading them clears them.
pub fn take_errors() -> Vec<Zval> {
    std::mem::take(&mut *DEFERRED_ERRORS.lock()).iter().map(|f| convert::to_zval(&failure_entry(f))).collect()
}

/// End of every request: wait for the confirms of its deferred publishes, log and keep failures.
pub extern "C" fn request_shutdown(_type: i32, _module: i32) -> i32 {
    let pending = crate::broker::current::pending_here();
    if pending == 0 {
        return 0;
    }
    let Ok(s) = settings::current() else { return 0 };
    match dispatch::flush(&s) {
        Ok((_, failures)) if !failures.is_empty() => {
            for f in &failures {
                log::error(&format!("deferred publish failed: {}: {}", f.sent.describe(), f.error));
            }
            let mut kept = DEFERRED_ERRORS.lock();
            kept.extend(failures);
            let excess = kept.len().saturating_sub(1000);
            kept.drain(..excess);
        }
        Ok(_) => {}
        Err(e) => log::error(&format!("could not wait for deferred publishes: {e}")),
    }
    0
}
