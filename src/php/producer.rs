//! The producer side: `Event`, `Task`, `Core\Publish`, `Amq\ExchangeTypes` (what publishing does:
//! `services::publishing`).

use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendClassObject, ZendHashTable, Zval};
use serde_json::Value;

use crate::php::args::{self, array_json, bad_input, broker_err, int_arg, params_json, string_arg};
use crate::php::convert;
use crate::php::exceptions::connectioned_with;
use crate::php::settings;
use crate::services::cancel;
use crate::services::publishing::{self, Refused};

/// A publish refused, as PHP sees it: bad input a `TaskException`, a broker failure a
/// `ConnectionedException`, failed publishes one whose `getFailures()` gives them as data.
pub fn refused(e: Refused) -> PhpException {
    match e {
        Refused::Bad(m) => bad_input(m),
        Refused::Broker(e) => broker_err(e),
        Refused::Failed { message, failures } => {
            let entries = Value::Array(failures.iter().map(publishing::failure_entry).collect());
            connectioned_with(message, convert::to_zval(&entries))
        }
    }
}

#[php_class]
#[php(name = "Asynclib\\Ebats\\Event")]
pub struct Event(publishing::Event);

#[php_impl]
impl Event {
    pub fn __construct(event_name: &Zval) -> PhpResult<Self> {
        let name = string_arg(event_name, "Argument #1 ($event_name)")?;
        publishing::Event::new(name).map(Event).map_err(refused)
    }

    /// Sets the event's parameters (any array JSON can hold) and returns the event.
    #[php(name = "setOptions")]
    pub fn set_options<'a>(
        self_: &'a mut ZendClassObject<Event>,
        options: Option<&ZendHashTable>,
    ) -> PhpResult<&'a mut ZendClassObject<Event>> {
        self_.0.params = match options {
            Some(o) => array_json(o, "event options")?,
            None => Value::Array(vec![]),
        };
        Ok(self_)
    }

    /// Publishes the event and returns its id once the broker confirmed it; with `$defer` (or
    /// `ebats.deferred_confirms`) as soon as it is handed over, the confirm awaited at request end.
    pub fn publish(&self, defer: Option<bool>) -> PhpResult<String> {
        publishing::publish_event(&settings::current()?, &self.0, defer).map_err(refused)
    }

    #[php(name = "getEvent")]
    pub fn get_event(&self) -> String {
        self.0.name.clone()
    }

    #[php(name = "getParams")]
    pub fn get_params(&self) -> Zval {
        convert::to_zval(&self.0.params)
    }
}

#[php_class]
#[php(name = "Asynclib\\Ebats\\Task")]
pub struct Task(publishing::Task);

impl From<publishing::Task> for Task {
    fn from(t: publishing::Task) -> Task {
        Task(t)
    }
}

/// The arguments of `Task::create()` and `Batch::task()` as values: topic, name, params, delay, options.
pub fn create_args(
    topic: &Zval,
    name: &Zval,
    params: Option<&Zval>,
    delay: Option<&Zval>,
    options: Option<&ZendHashTable>,
) -> PhpResult<(String, String, Option<Value>, i64, Value)> {
    let topic = string_arg(topic, "Argument #1 ($topic)")?;
    let name = string_arg(name, "Argument #2 ($name)")?;
    let delay = int_arg(delay, 0, "Argument #4 ($delay)")?;
    let params = params.map(|p| params_json(p, "task params")).transpose()?;
    let options = options_json(options)?;
    Ok((topic, name, params, delay, options))
}

/// An options array (`Task::create()`, `Batch::task()`, `EventManager::register()`) as JSON.
pub fn options_json(options: Option<&ZendHashTable>) -> PhpResult<Value> {
    options.map_or(Ok(Value::Array(vec![])), |o| array_json(o, "options"))
}

#[php_impl]
impl Task {
    pub fn __construct(topic: &Zval, name: &Zval, delay: Option<&Zval>) -> PhpResult<Self> {
        let topic = string_arg(topic, "Argument #1 ($topic)")?;
        let name = string_arg(name, "Argument #2 ($name)")?;
        let delay = int_arg(delay, 0, "Argument #3 ($delay)")?;
        publishing::Task::new(&topic, &name, delay).map(Task).map_err(refused)
    }

    #[php(name = "setParams")]
    pub fn set_params<'a>(
        self_: &'a mut ZendClassObject<Task>,
        params: &Zval,
    ) -> PhpResult<&'a mut ZendClassObject<Task>> {
        self_.0.params = params_json(params, "task params")?;
        Ok(self_)
    }

    #[php(name = "getId")]
    pub fn get_id(&self) -> String {
        self.0.id.clone()
    }
    #[php(name = "getName")]
    pub fn get_name(&self) -> String {
        self.0.name.clone()
    }
    #[php(name = "getTopic")]
    pub fn get_topic(&self) -> String {
        self.0.topic.clone()
    }
    #[php(name = "getParams")]
    pub fn get_params(&self) -> Zval {
        convert::to_zval(&self.0.params)
    }
    #[php(name = "getDelay")]
    pub fn get_delay(&self) -> i64 {
        self.0.delay
    }

    /// Enqueues this task (its id stays the same) and returns the id once confirmed; with
    /// `$defer` as soon as it is handed over, the confirm awaited at request end.
    pub fn publish(&self, defer: Option<bool>) -> PhpResult<String> {
        publishing::publish_task(&settings::current()?, &self.0, defer).map_err(refused)
    }

    /// Enqueues a task directly and returns its id once the broker confirmed it. With the option
    /// `unique` (a key template) and `unique_for` (seconds), returns the id of the task holding the
    /// key instead when there is one (nothing is enqueued then); `limit` is a limit the task carries.
    pub fn create(
        topic: &Zval,
        name: &Zval,
        params: Option<&Zval>,
        delay: Option<&Zval>,
        options: Option<&ZendHashTable>,
    ) -> PhpResult<String> {
        let (topic, name, params, delay, options) = create_args(topic, name, params, delay, options)?;
        publishing::create_task(&settings::current()?, &topic, &name, params, delay, &options).map_err(refused)
    }

    /// Cancels the task `$id` for `$for` seconds (by default 7 days), on every worker, once the
    /// broker confirmed it: not started yet, it is not run; running, `isCancelled()` tells its
    /// handler. A chain's id cancels the chain's steps not started.
    pub fn cancel(id: &Zval, r#for: Option<&Zval>) -> PhpResult<()> {
        let id = string_arg(id, "Argument #1 ($id)")?;
        let secs = int_arg(r#for, crate::services::cancel::DEFAULT_FOR_SECS, "Argument #2 ($for)")?;
        cancel::task(&settings::current()?, &id, secs).map(|_| ()).map_err(args::refused)
    }

    /// Inside a task's handler: whether that task has been cancelled (the handler may stop early).
    #[php(name = "isCancelled")]
    pub fn is_cancelled() -> PhpResult<bool> {
        cancel::running_task().ok_or_else(|| bad_input("Task::isCancelled() answers inside a task's handler only"))
    }
}

#[php_class]
#[php(name = "Asynclib\\Amq\\ExchangeTypes")]
pub struct ExchangeTypes;

#[php_impl]
impl ExchangeTypes {
    pub const FANOUT: &'static str = "fanout";
    pub const DIRECT: &'static str = "direct";
    pub const TOPIC: &'static str = "topic";
    pub const HEADERS: &'static str = "headers";
}

#[php_class]
#[php(name = "Asynclib\\Core\\Publish")]
pub struct Publish {
    exchange: Option<(String, String)>,
}

#[php_impl]
impl Publish {
    pub fn __construct() -> Self {
        Publish { exchange: None }
    }

    /// The exchange to send to (declared durable with this type on first send).
    #[php(name = "setExchange", defaults(r#type = "\"direct\""))]
    pub fn set_exchange(
        self_: &mut ZendClassObject<Publish>,
        name: String,
        r#type: String,
    ) -> PhpResult<&mut ZendClassObject<Publish>> {
        self_.exchange = Some(args::exchange(name, r#type)?);
        Ok(self_)
    }

    /// Accepted for compatibility: the process keeps one connection for all calls.
    #[php(name = "setAutoClose")]
    pub fn set_auto_close(self_: &mut ZendClassObject<Publish>, auto_close: bool) -> &mut ZendClassObject<Publish> {
        let _ = auto_close;
        self_
    }

    /// Sends `$data` as JSON; returns true once the broker confirmed it was routed to a queue.
    #[php(defaults(routing_key = "\"\"", delay = 0))]
    pub fn send(&self, data: &Zval, routing_key: String, delay: i64) -> PhpResult<bool> {
        let data = params_json(data, "message")?;
        let s = settings::current()?;
        publishing::send_message(&s, self.exchange.as_ref(), &data, routing_key, delay).map_err(refused)?;
        Ok(true)
    }
}
