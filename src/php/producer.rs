//! The producer side: `Event`, `Task`, `Core\Publish`, `Amq\ExchangeTypes`.

use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendClassObject, ZendHashTable, Zval};
use serde_json::Value;

use crate::broker::names::{self, Names};
use crate::broker::{BrokerError, Decl, Outgoing};
use crate::dispatch;
use crate::php::convert;
use crate::php::exceptions::{exception, Kind};
use crate::php::settings;
use crate::wire::{properties, EventMsg, TaskMsg};

pub fn broker_err(e: BrokerError) -> PhpException {
    exception(Kind::Connectioned, e.to_string())
}

pub fn bad_input(msg: impl Into<String>) -> PhpException {
    exception(Kind::Task, msg)
}

/// An int argument as PHP's coercive mode reads it: ints, integral floats, numeric strings and
/// bools; anything else is a TypeError naming the argument.
pub fn int_arg(zv: Option<&Zval>, default: i64, what: &str) -> PhpResult<i64> {
    let Some(zv) = zv.map(Zval::dereference) else { return Ok(default) };
    if let Some(l) = zv.long() {
        return Ok(l);
    }
    if let Some(d) = zv.double() {
        if d.fract() == 0.0 && d.abs() < 9.0e15 {
            return Ok(d as i64);
        }
    }
    if let Some(s) = zv.str() {
        if let Ok(l) = s.trim().parse::<i64>() {
            return Ok(l);
        }
    }
    if let Some(b) = zv.bool() {
        return Ok(b as i64);
    }
    Err(PhpException::new(
        format!("{what} must be of type int, {} given", zv.get_type()),
        0,
        ext_php_rs::zend::ce::type_error(),
    ))
}

/// A string argument as PHP's coercive mode reads it: strings, ints, floats and bools.
pub fn string_arg(zv: &Zval, what: &str) -> PhpResult<String> {
    let zv = zv.dereference();
    if let Some(s) = zv.zend_str() {
        return String::from_utf8(s.as_bytes().to_vec()).map_err(|_| bad_input(format!("{what} is not valid UTF-8")));
    }
    if zv.is_long() || zv.is_double() || zv.is_bool() {
        if let Some(s) = zv.coerce_to_string() {
            return Ok(s);
        }
    }
    Err(PhpException::new(
        format!("{what} must be of type string, {} given", zv.get_type()),
        0,
        ext_php_rs::zend::ce::type_error(),
    ))
}

pub fn params_json(zv: &Zval, what: &str) -> PhpResult<Value> {
    convert::to_json(zv).map_err(|e| bad_input(format!("{what} cannot be sent as JSON: {e}")))
}

fn array_json(arr: &ZendHashTable, what: &str) -> PhpResult<Value> {
    let mut zv = Zval::new();
    zv.set_hashtable(arr.to_owned());
    params_json(&zv, what)
}

#[php_class]
#[php(name = "Asynclib\\Ebats\\Event")]
pub struct Event {
    name: String,
    params: Value,
}

impl Event {
    pub fn make(name: &str) -> PhpResult<Event> {
        names::check_event_name(name).map_err(bad_input)?;
        Ok(Event { name: name.to_string(), params: Value::Array(vec![]) })
    }

    pub fn set_params(&mut self, params: Value) {
        self.params = params;
    }

    /// A new message of this event (a new id each time) and where it goes.
    pub fn parts(&self, names: &Names) -> (String, (Vec<Decl>, Outgoing)) {
        let msg = EventMsg { params: self.params.clone(), ..EventMsg::new(&self.name, Value::Null) };
        (msg.id.clone(), dispatch::event(names, &msg))
    }
}

/// Publishes messages, confirmed before returning or (deferred) confirmed at the end of the request.
pub fn deliver(settings: &crate::config::Settings, parts: Vec<(Vec<Decl>, Outgoing)>, defer: bool) -> PhpResult<()> {
    let mut decls: Vec<Decl> = Vec::new();
    let mut outs = Vec::with_capacity(parts.len());
    for (ds, out) in parts {
        for d in ds {
            if !decls.contains(&d) {
                decls.push(d);
            }
        }
        outs.push(out);
    }
    let r =
        if defer { dispatch::send_deferred(settings, &decls, &outs) } else { dispatch::send(settings, &decls, &outs) };
    r.map_err(broker_err)
}

#[php_impl]
impl Event {
    pub fn __construct(event_name: &Zval) -> PhpResult<Self> {
        let event_name = string_arg(event_name, "Argument #1 ($event_name)")?;
        names::check_event_name(&event_name).map_err(bad_input)?;
        Ok(Event { name: event_name, params: Value::Array(vec![]) })
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
        let (id, parts) = self.parts(&Names::new(&s.prefix));
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
        names::check_topic(topic).map_err(bad_input)?;
        names::check_task_name(name).map_err(bad_input)?;
        names::check_delay(delay).map_err(bad_input)?;
        Ok(Task {
            id: crate::wire::new_id(),
            topic: topic.to_string(),
            name: name.to_string(),
            params: Value::Array(vec![]),
            delay,
        })
    }

    /// The task's message and where it goes.
    pub fn parts(&self, names: &Names) -> (Vec<Decl>, Outgoing) {
        let msg = TaskMsg {
            id: self.id.clone(),
            ..TaskMsg::new(&self.topic, &self.name, self.params.clone(), self.delay as u64)
        };
        dispatch::task(names, &msg, self.delay as u64)
    }

    pub fn send(&self, defer: Option<bool>) -> PhpResult<String> {
        let s = settings::current()?;
        deliver(&s, vec![self.parts(&Names::new(&s.prefix))], defer.unwrap_or(s.deferred))?;
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
        let topic = string_arg(topic, "Argument #1 ($topic)")?;
        let name = string_arg(name, "Argument #2 ($name)")?;
        let mut t = Task::make(&topic, &name, int_arg(delay, 0, "Argument #4 ($delay)")?)?;
        if let Some(p) = params {
            t.params = params_json(p, "task params")?;
        }
        t.send(None)
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

pub fn check_exchange(name: &str, kind: &str) -> PhpResult<()> {
    if name.is_empty() {
        return Err(bad_input("exchange name must not be empty"));
    }
    names::check_amqp_name("exchange name", name).map_err(bad_input)?;
    if name.starts_with("amq.") {
        return Err(bad_input(format!("exchange '{name}' is reserved by the broker (amq.*)")));
    }
    crate::broker::topology::exchange_kind(kind).map_err(|e| bad_input(e.to_string()))?;
    Ok(())
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
    pub fn set_exchange<'a>(
        self_: &'a mut ZendClassObject<Publish>,
        name: String,
        r#type: String,
    ) -> PhpResult<&'a mut ZendClassObject<Publish>> {
        check_exchange(&name, &r#type)?;
        self_.exchange = Some((name, r#type));
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
        names::check_amqp_name("routing key", &routing_key).map_err(bad_input)?;
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
