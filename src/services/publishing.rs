//! Publishing for the producers (`Event`, `Task`, `Batch`, `Core\Publish`, `ebats_flush()`,
//! `ebats_deferred_errors()` and the end of every request): what a message is, what is declared
//! and sent for it, confirmed before returning or deferred (its confirm awaited by [`flush`] or
//! [`end_request`]), and how failed publishes are described.

use parking_lot::Mutex;
use serde_json::Value;

use crate::broker::confirm::Failed;
use crate::broker::names::Names;
use crate::broker::{BrokerError, Decl, Outgoing};
use crate::config::{Settings, WriteFormat};
use crate::dispatch::{self, merge_decls, SendFailed};
use crate::flow::unique::{self, Made, Unique};
use crate::rules;
use crate::wire::{properties, EventMsg, TaskMsg, UniqueKey};

/// Why a publish was not made (or not confirmed).
#[derive(Debug)]
pub enum Refused {
    /// The caller's input: a name, a delay, a call out of order.
    Bad(String),
    /// The broker could not be reached or refused a declaration.
    Broker(BrokerError),
    /// Publishes that failed, each named in `message` and given as data in `failures`.
    Failed { message: String, failures: Vec<Failed> },
}

/// An event: its name and its parameters (any array JSON can hold).
pub struct Event {
    pub name: String,
    pub params: Value,
}

impl Event {
    /// An event with no parameters, its name checked.
    pub fn new(name: String) -> Result<Event, Refused> {
        rules::check_event_name(&name).map_err(Refused::Bad)?;
        Ok(Event { name, params: Value::Array(vec![]) })
    }

    /// A new message of this event (a new id each time), in the format the settings ask for, and
    /// where it goes.
    fn parts(&self, settings: &Settings) -> (String, (Vec<Decl>, Outgoing)) {
        let names = Names::new(&settings.prefix);
        let msg = EventMsg { params: self.params.clone(), ..EventMsg::new(&self.name, Value::Null) };
        let parts = match settings.write_format {
            WriteFormat::Ebats => dispatch::event(&names, &msg),
            WriteFormat::Original => dispatch::legacy_event(&names, &msg),
        };
        (msg.id, parts)
    }
}

/// A task: its id (fixed when it is made, so publishing it again keeps it), topic, name,
/// parameters and delay in seconds.
pub struct Task {
    pub id: String,
    pub topic: String,
    pub name: String,
    pub params: Value,
    pub delay: i64,
    /// Made unique: the key it takes before it is published.
    pub unique: Option<Unique>,
    /// A limit it carries (`flow::carried`), checked.
    pub limit: Option<Value>,
}

impl Task {
    /// A task with no parameters and a new id, its topic, name and delay checked.
    pub fn new(topic: &str, name: &str, delay: i64) -> Result<Task, Refused> {
        rules::check_topic(topic).map_err(Refused::Bad)?;
        rules::check_task_name(name).map_err(Refused::Bad)?;
        rules::check_delay(delay).map_err(Refused::Bad)?;
        Ok(Task {
            id: crate::wire::new_id(),
            topic: topic.to_string(),
            name: name.to_string(),
            params: Value::Array(vec![]),
            delay,
            unique: None,
            limit: None,
        })
    }

    /// The key this task takes (none when it is not unique); the error says why it has none, or why
    /// the settings' format cannot carry the task.
    fn unique_key(&self, settings: &Settings) -> Result<Option<UniqueKey>, Refused> {
        if self.limit.is_some() && settings.write_format == WriteFormat::Original {
            return Err(Refused::Bad(
                "a task carrying a limit needs ebats.write_format = ebats: the original library's format cannot carry it"
                    .into(),
            ));
        }
        let Some(u) = &self.unique else { return Ok(None) };
        if settings.write_format == WriteFormat::Original {
            return Err(Refused::Bad(
                "a unique task needs ebats.write_format = ebats: the original library's format cannot carry its key"
                    .into(),
            ));
        }
        u.key_of(&self.params).map(Some).map_err(Refused::Bad)
    }

    /// Takes the task's key: whether the task is to be made, or the id of the one holding it.
    fn take(&self, settings: &Settings, key: &UniqueKey) -> Result<Made, Refused> {
        let took = crate::broker::unique::take(settings, &self.topic, key, &self.id).map_err(Refused::Broker)?;
        let made = unique::made(&self.id, took);
        if let (Made::Duplicate(holder), true) = (&made, settings.debug) {
            crate::log::debug(&format!(
                "task {}/{} not made: its unique key '{}' is held by task {holder}",
                self.topic, self.name, key.key
            ));
        }
        Ok(made)
    }

    /// The task's message, in the format the settings ask for, and where it goes.
    fn parts(&self, settings: &Settings, unique: Option<UniqueKey>) -> (Vec<Decl>, Outgoing) {
        let names = Names::new(&settings.prefix);
        let msg = TaskMsg {
            id: self.id.clone(),
            unique,
            limit: self.limit.clone(),
            ..TaskMsg::new(&self.topic, &self.name, self.params.clone(), self.delay as u64)
        };
        match settings.write_format {
            WriteFormat::Ebats => dispatch::task(&names, &msg, self.delay as u64),
            WriteFormat::Original => dispatch::legacy_task(&names, &msg, self.delay as u64),
        }
    }
}

/// Publishes the event and returns its id: once confirmed, or with `defer` (by default
/// `ebats.deferred_confirms`) once handed over.
pub fn publish_event(settings: &Settings, event: &Event, defer: Option<bool>) -> Result<String, Refused> {
    let (id, parts) = event.parts(settings);
    deliver(settings, vec![parts], defer.unwrap_or(settings.deferred))?;
    if settings.debug {
        crate::log::debug(&format!("event {} published id={id}", event.name));
    }
    Ok(id)
}

/// Enqueues the task (its id stays the same) and returns the id, as [`publish_event`]. A unique task
/// takes its key first: when another task holds it, nothing is published and that task's id is returned.
pub fn publish_task(settings: &Settings, task: &Task, defer: Option<bool>) -> Result<String, Refused> {
    let key = task.unique_key(settings)?;
    let mut taken = Taken::default();
    if let Some(k) = &key {
        if let Made::Duplicate(holder) = task.take(settings, k)? {
            return Ok(holder);
        }
        taken.0.push((task.id.clone(), task.topic.clone(), k.clone()));
    }
    let defer = defer.unwrap_or(settings.deferred);
    let r = deliver(settings, vec![task.parts(settings, key)], defer);
    taken.settle(settings, &r, defer);
    r?;
    if settings.debug {
        crate::log::debug(&format!("task {}/{} published id={} delay={}s", task.topic, task.name, task.id, task.delay));
    }
    Ok(task.id.clone())
}

/// `Task::create()`: a new task with these parameters and options (`unique`, `unique_for`, `limit`),
/// enqueued; its id once confirmed (a unique one's holder's id when the key is held).
pub fn create_task(
    settings: &Settings,
    topic: &str,
    name: &str,
    params: Option<Value>,
    delay: i64,
    options: &Value,
) -> Result<String, Refused> {
    let task = new_task(topic, name, params, delay, options)?;
    publish_task(settings, &task, None)
}

/// A task as `Task::create()` and `Batch::task()` make it, its options read and its key checked.
fn new_task(topic: &str, name: &str, params: Option<Value>, delay: i64, options: &Value) -> Result<Task, Refused> {
    let mut task = Task::new(topic, name, delay)?;
    if let Some(p) = params {
        task.params = p;
    }
    task.unique = Unique::from_options(options).map_err(Refused::Bad)?;
    task.limit = crate::flow::carried::from_options(topic, name, options).map_err(Refused::Bad)?;
    if let Some(u) = &task.unique {
        u.key_of(&task.params).map_err(Refused::Bad)?;
    }
    Ok(task)
}

/// Keys taken by tasks being published (task id, topic, key): released again when the publish
/// surely failed (nothing stored), so a key is never left held by a task that does not exist. A
/// deferred publish's keys wait for its confirm ([`flush`], [`end_request`]).
#[derive(Default)]
struct Taken(Vec<(String, String, UniqueKey)>);

/// Keys of deferred publishes whose confirms are not settled yet.
static DEFERRED_KEYS: Mutex<Vec<(String, String, UniqueKey)>> = Mutex::new(Vec::new());

impl Taken {
    fn settle<T>(self, settings: &Settings, r: &Result<T, Refused>, deferred: bool) {
        if self.0.is_empty() {
            return;
        }
        match r {
            Ok(_) if deferred => DEFERRED_KEYS.lock().extend(self.0),
            Ok(_) => {}
            Err(Refused::Failed { failures, .. }) => release_unsent(settings, self.0, failures),
            Err(_) => release_unsent(settings, self.0, &[]),
        }
    }
}

/// Releases the keys of tasks surely not stored: those that failed with nothing possibly stored,
/// and all of them when no failure is named (the publish never started).
fn release_unsent(settings: &Settings, keys: Vec<(String, String, UniqueKey)>, failures: &[Failed]) {
    for (id, topic, key) in keys {
        let stored = failures.iter().any(|f| f.sent.id.as_deref() == Some(id.as_str()) && f.maybe_stored);
        let named = failures.is_empty() || failures.iter().any(|f| f.sent.id.as_deref() == Some(id.as_str()));
        if stored || !named {
            continue;
        }
        if let Err(e) = crate::broker::unique::release(settings, &topic, &key, &id) {
            crate::log::error(&format!(
                "could not release the unique key '{}' of task {id}, which was not published: {e}; it frees itself \
                 after its lifetime ({} s)",
                key.key, key.for_secs
            ));
        }
    }
}

/// The confirms of the deferred publishes are settled: the keys of those surely not stored are released.
fn settle_deferred_keys(settings: &Settings, failures: &[Failed]) {
    let keys = std::mem::take(&mut *DEFERRED_KEYS.lock());
    if !keys.is_empty() && !failures.is_empty() {
        let failed: Vec<_> = keys
            .into_iter()
            .filter(|(id, _, _)| failures.iter().any(|f| f.sent.id.as_deref() == Some(id.as_str())))
            .collect();
        release_unsent(settings, failed, failures);
    }
}

/// `Chain::create()`: the first step of a chain of `steps` (see `crate::chain`), enqueued under the
/// id `<chain id>-1` and confirmed; the chain's id (a new one). Always in ebats's format: the
/// original's body cannot carry the chain.
pub fn create_chain(settings: &Settings, steps: &Value) -> Result<String, Refused> {
    let steps = crate::chain::steps_of(steps).map_err(Refused::Bad)?;
    let id = crate::wire::new_id();
    let first = crate::chain::Chain::first(&id, steps).map_err(Refused::Bad)?;
    let names = Names::new(&settings.prefix);
    deliver(settings, vec![dispatch::task(&names, &first, first.delay)], false)?;
    if settings.debug {
        crate::log::debug(&format!("chain {id} published, its first step id={}", first.id));
    }
    Ok(id)
}

enum Item {
    Event(Event),
    Task(Task),
}

/// Events and tasks published together, in order, with one round of confirms.
#[derive(Default)]
pub struct Batch {
    items: Vec<Item>,
}

impl Batch {
    /// Adds an event (its name checked) with these parameters, or none.
    pub fn add_event(&mut self, name: String, params: Option<Value>) -> Result<(), Refused> {
        let mut e = Event::new(name)?;
        if let Some(p) = params {
            e.params = p;
        }
        self.items.push(Item::Event(e));
        Ok(())
    }

    /// Adds a task to create, as [`create_task`] would.
    pub fn add_task(
        &mut self,
        topic: &str,
        name: &str,
        params: Option<Value>,
        delay: i64,
        options: &Value,
    ) -> Result<(), Refused> {
        self.items.push(Item::Task(new_task(topic, name, params, delay, options)?));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Publishes everything added, in order, and empties the batch (kept as it was when the
    /// publish fails). The ids once the broker confirmed all (or, deferred, once handed over); a
    /// unique task whose key another task holds is not published, and that task's id is in its place.
    pub fn publish(&mut self, settings: &Settings, defer: Option<bool>) -> Result<Vec<String>, Refused> {
        let defer = defer.unwrap_or(settings.deferred);
        let mut ids = Vec::with_capacity(self.items.len());
        let mut parts: Vec<(Vec<Decl>, Outgoing)> = Vec::with_capacity(self.items.len());
        let mut taken = Taken::default();
        let mut planned = Ok(());
        for item in &self.items {
            match item {
                Item::Event(e) => {
                    let (id, p) = e.parts(settings);
                    ids.push(id);
                    parts.push(p);
                }
                Item::Task(t) => {
                    let key = match t.unique_key(settings) {
                        Ok(k) => k,
                        Err(e) => {
                            planned = Err(e);
                            break;
                        }
                    };
                    if let Some(k) = &key {
                        match t.take(settings, k) {
                            Ok(Made::Duplicate(holder)) => {
                                ids.push(holder);
                                continue;
                            }
                            Ok(Made::New) => taken.0.push((t.id.clone(), t.topic.clone(), k.clone())),
                            Err(e) => {
                                planned = Err(e);
                                break;
                            }
                        }
                    }
                    ids.push(t.id.clone());
                    parts.push(t.parts(settings, key));
                }
            }
        }
        let r = match planned {
            Err(e) => Err(e),
            Ok(()) if parts.is_empty() => Ok(()),
            Ok(()) => deliver(settings, parts, defer),
        };
        taken.settle(settings, &r, defer);
        r?;
        self.items.clear();
        Ok(ids)
    }
}

/// `Core\Publish::send()`: `data` as JSON to `exchange` (declared durable with its type), confirmed
/// and routed to a queue. It cannot be delayed.
pub fn send_message(
    settings: &Settings,
    exchange: Option<&(String, String)>,
    data: &Value,
    routing_key: String,
    delay: i64,
) -> Result<(), Refused> {
    let (exchange, kind) = exchange.ok_or_else(|| Refused::Bad("call setExchange() before send()".into()))?;
    if delay != 0 {
        return Err(Refused::Bad(
            "Core\\Publish::send() cannot delay a message; use Task::create() with a delay for delayed work".into(),
        ));
    }
    rules::check_amqp_name("routing key", &routing_key).map_err(Refused::Bad)?;
    let body = serde_json::to_vec(data).expect("a Value always serializes");
    let id = crate::wire::new_id();
    let out = Outgoing {
        exchange: exchange.clone(),
        routing_key,
        body,
        properties: properties(&id, "ebats.message"),
        mandatory: true,
    };
    let decls = [Decl::Exchange { name: exchange.clone(), kind: kind.clone() }];
    dispatch::send(settings, &decls, &[out]).map_err(Refused::Broker)
}

/// Publishes messages, confirmed before returning or (deferred) confirmed at the end of the request.
fn deliver(settings: &Settings, parts: Vec<(Vec<Decl>, Outgoing)>, defer: bool) -> Result<(), Refused> {
    let mut decls: Vec<Decl> = Vec::new();
    let mut outs = Vec::with_capacity(parts.len());
    for (ds, out) in parts {
        merge_decls(&mut decls, ds);
        outs.push(out);
    }
    let r = if defer {
        dispatch::send_deferred(settings, &decls, &outs)
    } else {
        dispatch::send_telling(settings, &decls, &outs)
    };
    r.map_err(|f| send_failed(f, &outs))
}

/// A failed publish names its messages. When the broker may have stored them although the
/// confirm never came (a timeout, a connection or channel lost on the way), it says so, so the
/// caller can look for those ids before publishing again.
fn send_failed(f: SendFailed, outs: &[Outgoing]) -> Refused {
    let (e, uncertain) = (f.error, f.maybe_stored);
    let failures: Vec<Failed> =
        outs.iter().map(|o| Failed { sent: o.sent(), error: e.clone(), maybe_stored: uncertain }).collect();
    let message = send_failed_message(&e, &failures, uncertain);
    Refused::Failed { message, failures }
}

fn send_failed_message(e: &BrokerError, failures: &[Failed], uncertain: bool) -> String {
    let names = describe_all(failures);
    if uncertain {
        let verb = if failures.len() == 1 { "it" } else { "they" };
        format!("{e}: {names}; {verb} may still have been stored: look for the id before publishing again")
    } else {
        format!("{e}: {names}")
    }
}

/// Waits for the confirms of every deferred publish of this process: how many were confirmed, or
/// the failures.
pub fn flush(settings: &Settings) -> Result<usize, Refused> {
    let (ok, failures) = dispatch::flush(settings).map_err(Refused::Broker)?;
    settle_deferred_keys(settings, &failures);
    if failures.is_empty() {
        return Ok(ok);
    }
    Err(Refused::Failed { message: flush_failed_message(&failures), failures })
}

/// "2 deferred publish(es) failed: <names>: <each error once>", and how many may be stored.
fn flush_failed_message(failures: &[Failed]) -> String {
    let mut errors: Vec<String> = Vec::new();
    for f in failures {
        let e = f.error.to_string();
        if !errors.contains(&e) {
            errors.push(e);
        }
    }
    let mut message =
        format!("{} deferred publish(es) failed: {}: {}", failures.len(), describe_all(failures), errors.join("; "));
    let unanswered = failures.iter().filter(|f| f.maybe_stored).count();
    if unanswered > 0 {
        message.push_str(&format!(
            " ({unanswered} of them got no answer or a refusal and may still have been stored: look for their ids before publishing again)"
        ));
    }
    message
}

/// Failures of deferred publishes found at the end of an earlier request, not yet read.
static DEFERRED_ERRORS: Mutex<Vec<Failed>> = Mutex::new(Vec::new());

/// How many such failures are kept (the oldest dropped first).
const KEPT: usize = 1000;

/// End of a request: waits for the confirms of its deferred publishes, logs the failures and keeps
/// them for [`take_failures`].
pub fn end_request(settings: &Settings) {
    let flushed = dispatch::flush(settings);
    if let Ok((_, failures)) = &flushed {
        settle_deferred_keys(settings, failures);
    }
    match flushed {
        Ok((_, failures)) if !failures.is_empty() => {
            for f in &failures {
                crate::log::error(&format!("deferred publish failed: {}: {}", f.sent.describe(), f.error));
            }
            let mut kept = DEFERRED_ERRORS.lock();
            kept.extend(failures);
            let excess = kept.len().saturating_sub(KEPT);
            kept.drain(..excess);
        }
        Ok(_) => {}
        Err(e) => crate::log::error(&format!("could not wait for deferred publishes: {e}")),
    }
}

/// Whether this process has deferred publishes awaiting their confirms.
pub fn pending() -> bool {
    crate::broker::current::pending_here(crate::broker::confirm::Lot::Request) != 0
}

/// The failures [`end_request`] kept, each as [`failure_entry`] makes it; reading them clears them.
pub fn take_failures() -> Vec<Value> {
    std::mem::take(&mut *DEFERRED_ERRORS.lock()).iter().map(failure_entry).collect()
}

/// A failed publish as data: `id`, `kind` (event, task or message), `event` (the event's name),
/// `topic` (the task's topic), `exchange`, `error`, `maybe_stored` (it was handed to the broker
/// and no answer or a refusal came: the broker may hold it).
pub fn failure_entry(f: &Failed) -> Value {
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
fn describe_all(failures: &[Failed]) -> String {
    const SHOWN: usize = 20;
    let mut names: Vec<String> = failures.iter().take(SHOWN).map(|f| f.sent.describe()).collect();
    if failures.len() > SHOWN {
        names.push(format!("and {} more (see getFailures())", failures.len() - SHOWN));
    }
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::confirm::Sent;
    use crate::broker::ErrorKind;

    fn failed(kind: &str, key: &str, id: &str, error: &str, maybe_stored: bool) -> Failed {
        let sent =
            Sent { exchange: "p.x".into(), routing_key: key.into(), id: Some(id.into()), kind: Some(kind.into()) };
        Failed { sent, error: BrokerError::new(ErrorKind::Timeout, error), maybe_stored }
    }

    #[test]
    fn a_failure_as_data() {
        let cases = [
            (crate::wire::KIND_EVENT, "order", "event", Value::from("order"), Value::Null),
            (crate::wire::KIND_TASK, "demo", "task", Value::Null, Value::from("demo")),
            ("ebats.message", "k", "message", Value::Null, Value::Null),
        ];
        for (kind, key, want, event, topic) in cases {
            let v = failure_entry(&failed(kind, key, "a1", "late", true));
            assert_eq!(v["kind"], want);
            assert_eq!((&v["event"], &v["topic"]), (&event, &topic));
            assert_eq!((&v["id"], &v["exchange"], &v["maybe_stored"]), (&"a1".into(), &"p.x".into(), &true.into()));
        }
    }

    #[test]
    fn failures_are_named_and_counted() {
        let one = [failed(crate::wire::KIND_EVENT, "order", "a1", "late", false)];
        let e = &one[0].error;
        assert_eq!(send_failed_message(e, &one, false), format!("{e}: event 'order' id=a1"));
        assert!(send_failed_message(e, &one, true)
            .ends_with("; it may still have been stored: look for the id before publishing again"));
        let two = [one[0].clone(), failed(crate::wire::KIND_TASK, "demo", "b2", "late", true)];
        assert!(send_failed_message(e, &two, true).contains("; they may still"));
        let m = flush_failed_message(&two);
        assert!(
            m.starts_with("2 deferred publish(es) failed: event 'order' id=a1, task of topic 'demo' id=b2: "),
            "{m}"
        );
        assert_eq!(m.matches("late").count(), 1, "each error once: {m}");
        assert!(m.ends_with("(1 of them got no answer or a refusal and may still have been stored: look for their ids before publishing again)"));
        assert!(!flush_failed_message(&one).contains("may still"));
        let many: Vec<Failed> = (0..25).map(|i| failed("ebats.message", "k", &i.to_string(), "x", false)).collect();
        let d = describe_all(&many);
        assert!(d.ends_with(", and 5 more (see getFailures())"), "{d}");
        assert_eq!(d.matches("message to exchange").count(), 20);
    }
}
