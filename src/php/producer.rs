//! The producer side: `Event`, `Task`, `Core\Publish`, `Amq\ExchangeTypes`.

use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendClassObject, ZendHashTable, Zval};
use serde_json::Value;

use crate::broker::confirm::Failed;
use crate::broker::names::Names;
use crate::broker::{Decl, Outgoing};
use crate::config::{Settings, WriteFormat};
use crate::dispatch::{self, merge_decls, SendFailed};
use crate::php::args::{self, array_json, bad_input, broker_err, checked, int_arg, params_json, string_arg};
use crate::php::convert;
use crate::php::deferred::{describe_all, failures_exception};
use crate::php::settings;
use crate::rules;
use crate::wire::{properties, EventMsg, TaskMsg};

#[php_class]
#[php(name = "Asynclib\\Ebats\\Event")]
pub struct Event {
    name: String,
    params: Value,
}

impl Event {
    pub fn make(name: String) -> PhpResult<Event> {
        checked(rules::check_event_name(&name))?;
        Ok(Event { name, params: Value::Array(vec![]) })
    }

    pub fn set_params(&mut self, params: Value) {
        self.params = params;
    }

    /// A new message of this event (a new id each time), in the format the settings ask for, and
    /// where it goes.
    pub fn parts(&self, settings: &Settings) -> (String, (Vec<Decl>, Outgoing)) {
        let names = Names::new(&settings.prefix);
        let msg = EventMsg { params: self.params.clone(), ..EventMsg::new(&self.name, Value::Null) };
        let parts = match settings.write_format {
            WriteFormat::Ebats => dispatch::event(&names, &msg),
            WriteFormat::Original => dispatch::legacy_event(&names, &msg),
        };
        (msg.id.clone(), parts)
    }
}

/// Publishes messages, confirmed before returning or (deferred) confirmed at the end of the request.
pub fn deliver(settings: &crate::config::Settings, parts: Vec<(Vec<Decl>, Outgoing)>, defer: bool) -> PhpResult<()> {
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
    r.map_err(|f| publish_failed(f, &outs))
}

/// A failed publish names its messages. When the broker may have stored them although the
/// confirm never came (a timeout, a connection or channel lost on the way), it says so, so the
/// caller can look for those ids before publishing again.
fn publish_failed(f: SendFailed, outs: &[Outgoing]) -> PhpException {
    let (e, uncertain) = (f.error, f.maybe_stored);
    let failed: Vec<Failed> =
        outs.iter().map(|o| Failed { sent: o.sent(), error: e.clone(), maybe_stored: uncertain }).collect();
    let names = describe_all(&failed);
    let message = if uncertain {
        let verb = if failed.len() == 1 { "it" } else { "they" };
        format!("{e}: {names}; {verb} may still have been stored: look for the id before publishing again")
    } else {
        format!("{e}: {names}")
    };
    failures_exception(message, &failed)
}

#[php_impl]
impl Event {
    pub fn __construct(event_name: &Zval) -> PhpResult<Self> {
        Event::make(string_arg(event_name, "Argument #1 ($event_name)")?)
    }

    /// Sets the event's parameters (any array JSON can hold) and returns the event.
    #[php(name = "setOptions")]
    pub fn set_options<'a>(
        self_: &'a mut ZendClassObject<Event>,
        options: Option<&ZendHashTable>,
    ) -> PhpResult<&'a mut ZendClassObject<Event>> {
        self_.params = match options {
            Some(o) => array_json(o, "event options")?,
            None => Value::Array(vec![]),
        };
        Ok(self_)
    }

    /// Publishes the event and returns its id once the broker confirmed it; with `$defer` (or
    /// `ebats.deferred_confirms`) as soon as it is handed over, the confirm awaited at request end.
    pub fn publish(&self, defer: Option<bool>) -> PhpResult<String> {
        let s = settings::current()?;
        let (id, parts) = self.parts(&s);
        deliver(&s, vec![parts], defer.unwrap_or(s.deferred))?;
        if s.debug {
            crate::log::debug(&format!("event {} published id={id}", self.name));
        }
        Ok(id)
    }

    #[php(name = "getEvent")]
    pub fn get_event(&self) -> String {
        self.name.clone()
    }

    #[php(name = "getParams")]
    pub fn get_params(&self) -> Zval {
        convert::to_zval(&self.params)
    }
}

#[php_class]
#[php(name = "Asynclib\\Ebats\\Task")]
pub struct Task {
    pub(crate) id: String,
    pub(crate) topic: String,
    pub(crate) name: String,
    pub(crate) params: Value,
    pub(crate) delay: i64,
}

impl Task {
    pub fn make(topic: &str, name: &str, delay: i64) -> Result<Task, PhpException> {
        checked(rules::check_topic(topic))?;
        checked(rules::check_task_name(name))?;
        checked(rules::check_delay(delay))?;
        Ok(Task {
            id: crate::wire::new_id(),
            topic: topic.to_string(),
            name: name.to_string(),
            params: Value::Array(vec![]),
            delay,
        })
    }

    /// The task's message, in the format the settings ask for, and where it goes.
    pub fn parts(&self, settings: &Settings) -> (Vec<Decl>, Outgoing) {
        let names = Names::new(&settings.prefix);
        let msg = TaskMsg {
            id: self.id.clone(),
            ..TaskMsg::new(&self.topic, &self.name, self.params.clone(), self.delay as u64)
        };
        match settings.write_format {
            WriteFormat::Ebats => dispatch::task(&names, &msg, self.delay as u64),
            WriteFormat::Original => dispatch::legacy_task(&names, &msg, self.delay as u64),
        }
    }

    /// The arguments of `Task::create()` and `Batch::task()`: topic, name, params, delay.
    pub fn from_create_args(topic: &Zval, name: &Zval, params: Option<&Zval>, delay: Option<&Zval>) -> PhpResult<Task> {
        let topic = string_arg(topic, "Argument #1 ($topic)")?;
        let name = string_arg(name, "Argument #2 ($name)")?;
        let mut t = Task::make(&topic, &name, int_arg(delay, 0, "Argument #4 ($delay)")?)?;
        if let Some(p) = params {
            t.params = params_json(p, "task params")?;
        }
        Ok(t)
    }

    pub fn send(&self, defer: Option<bool>) -> PhpResult<String> {
        let s = settings::current()?;
        deliver(&s, vec![self.parts(&s)], defer.unwrap_or(s.deferred))?;
        if s.debug {
            crate::log::debug(&format!(
                "task {}/{} published id={} delay={}s",
                self.topic, self.name, self.id, self.delay
            ));
        }
        Ok(self.id.clone())
    }
}

#[php_impl]
impl Task {
    pub fn __construct(topic: &Zval, name: &Zval, delay: Option<&Zval>) -> PhpResult<Self> {
        let topic = string_arg(topic, "Argument #1 ($topic)")?;
        let name = string_arg(name, "Argument #2 ($name)")?;
        Task::make(&topic, &name, int_arg(delay, 0, "Argument #3 ($delay)")?)
    }

    #[php(name = "setParams")]
    pub fn set_params<'a>(
        self_: &'a mut ZendClassObject<Task>,
        params: &Zval,
    ) -> PhpResult<&'a mut ZendClassObject<Task>> {
        self_.params = params_json(params, "task params")?;
        Ok(self_)
    }

    #[php(name = "getId")]
    pub fn get_id(&self) -> String {
        self.id.clone()
    }
    #[php(name = "getName")]
    pub fn get_name(&self) -> String {
        self.name.clone()
    }
    #[php(name = "getTopic")]
    pub fn get_topic(&self) -> String {
        self.topic.clone()
    }
    #[php(name = "getParams")]
    pub fn get_params(&self) -> Zval {
        convert::to_zval(&self.params)
    }
    #[php(name = "getDelay")]
    pub fn get_delay(&self) -> i64 {
        self.delay
    }

    /// Enqueues this task (its id stays the same) and returns the id once confirmed; with
    /// `$defer` as soon as it is handed over, the confirm awaited at request end.
    pub fn publish(&self, defer: Option<bool>) -> PhpResult<String> {
        self.send(defer)
    }

    /// Enqueues a task directly and returns its id once the broker confirmed it.
    pub fn create(topic: &Zval, name: &Zval, params: Option<&Zval>, delay: Option<&Zval>) -> PhpResult<String> {
        Task::from_create_args(topic, name, params, delay)?.send(None)
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
        let (exchange, kind) = self.exchange.clone().ok_or_else(|| bad_input("call setExchange() before send()"))?;
        if delay != 0 {
            return Err(bad_input(
                "Core\\Publish::send() cannot delay a message; use Task::create() with a delay for delayed work",
            ));
        }
        checked(rules::check_amqp_name("routing key", &routing_key))?;
        let body = serde_json::to_vec(&params_json(data, "message")?).expect("a Value always serializes");
        let s = settings::current()?;
        let id = crate::wire::new_id();
        let out = Outgoing {
            exchange: exchange.clone(),
            routing_key,
            body,
            properties: properties(&id, "ebats.message"),
            mandatory: true,
        };
        dispatch::send(&s, &[Decl::Exchange { name: exchange, kind }], &[out]).map_err(broker_err)?;
        Ok(true)
    }
}
