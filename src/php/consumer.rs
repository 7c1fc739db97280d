//! `Asynclib\Core\Consumer`: turns any message on a user's exchange into a PHP callback.

use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendClassObject, ZendHashTable, Zval};

use crate::php::args::{self, bad_input, checked};
use crate::php::call::{self, Thrown};
use crate::php::convert;
use crate::php::exceptions::Kind;
use crate::php::settings;
use crate::php::subscriber::{run_err, Php};
use crate::rules;
use crate::services::consuming::{self, Ended, Message, Spec};

/// A message as the callback gets it (JSON decoded, the original's data, or the bytes), with the
/// time the original's `Publish::send()` wrote, if any.
fn message_zval(m: &Message) -> (Zval, Option<i64>) {
    match m {
        Message::Json(v) => (convert::to_zval(v), None),
        Message::Publish { data, etime } => (convert::to_zval(data), Some(*etime)),
        Message::Bytes(b) => {
            let mut z = Zval::new();
            z.set_binary(b.clone());
            (z, None)
        }
    }
}

/// Calls `callback($routing_key, $message[, $etime])`; how it ended.
fn call_back(callback: &Zval, key: &str, m: &Message) -> Ended {
    let (message, etime) = message_zval(m);
    let mut args: Vec<&dyn ext_php_rs::convert::IntoZvalDyn> = vec![&key, &message];
    // The original library's consumer gave the time its Publish::send() wrote as a third argument.
    if let Some(t) = &etime {
        args.push(t);
    }
    match call::call(callback, args) {
        Ok(_) => Ended::Returned,
        Err(Thrown::Exit) => Ended::Exit,
        Err(Thrown::Exception { class, message, object }) => {
            Ended::Threw { class, message, service: call::is_kind(&object, Kind::Service) }
        }
    }
}

#[php_class]
#[php(name = "Asynclib\\Core\\Consumer")]
pub struct Consumer {
    exchange: Option<(String, String)>,
    queue: Option<String>,
    keys: Vec<String>,
    prefetch: u16,
}

fn keys_of(arr: &ZendHashTable) -> PhpResult<Vec<String>> {
    let mut out = Vec::new();
    for v in arr.values() {
        let k = v.str().ok_or_else(|| bad_input("routing keys must be strings"))?;
        checked(rules::check_amqp_name("routing key", k))?;
        out.push(k.to_string());
    }
    if out.is_empty() {
        out.push(String::new());
    }
    Ok(out)
}

#[php_impl]
impl Consumer {
    pub fn __construct() -> Self {
        Consumer { exchange: None, queue: None, keys: vec![String::new()], prefetch: 1 }
    }

    #[php(name = "setExchange", defaults(r#type = "\"direct\""))]
    pub fn set_exchange(
        self_: &mut ZendClassObject<Consumer>,
        name: String,
        r#type: String,
    ) -> PhpResult<&mut ZendClassObject<Consumer>> {
        self_.exchange = Some(args::exchange(name, r#type)?);
        Ok(self_)
    }

    /// The queue to consume (declared durable) and the keys binding it to the exchange.
    #[php(name = "setQueue")]
    pub fn set_queue<'a>(
        self_: &'a mut ZendClassObject<Consumer>,
        name: String,
        routing_keys: Option<&ZendHashTable>,
    ) -> PhpResult<&'a mut ZendClassObject<Consumer>> {
        if name.is_empty() {
            return Err(bad_input("queue name must not be empty"));
        }
        checked(rules::check_amqp_name("queue name", &name))?;
        if let Some(k) = routing_keys {
            self_.keys = keys_of(k)?;
        }
        self_.queue = Some(name);
        Ok(self_)
    }

    #[php(name = "setRoutingKeys")]
    pub fn set_routing_keys<'a>(
        self_: &'a mut ZendClassObject<Consumer>,
        routing_keys: &ZendHashTable,
    ) -> PhpResult<&'a mut ZendClassObject<Consumer>> {
        self_.keys = keys_of(routing_keys)?;
        Ok(self_)
    }

    /// Accepted for compatibility: bodies are read as JSON, or as the original library's
    /// `Publish::send()` bodies (decoded by ebats's own reader, never by `unserialize()`).
    #[php(name = "setSerialize")]
    pub fn set_serialize(self_: &mut ZendClassObject<Consumer>, serialize: bool) -> &mut ZendClassObject<Consumer> {
        let _ = serialize;
        self_
    }

    #[php(name = "setPrefetch")]
    pub fn set_prefetch(
        self_: &mut ZendClassObject<Consumer>,
        prefetch: i64,
    ) -> PhpResult<&mut ZendClassObject<Consumer>> {
        self_.prefetch = args::prefetch(prefetch)?;
        Ok(self_)
    }

    /// Calls `$callback($routing_key, $message)` for every message, acking after it returns; for a
    /// body written by the original library's `Publish::send()`, `$callback($routing_key, $data, $etime)`.
    pub fn run(&self, callback: &Zval) -> PhpResult<()> {
        args::callback(callback, "Asynclib\\Core\\Consumer::run()")?;
        let (exchange, kind) = self.exchange.clone().ok_or_else(|| bad_input("call setExchange() before run()"))?;
        let queue = self.queue.clone().ok_or_else(|| bad_input("call setQueue() before run()"))?;
        let settings = settings::current()?;
        let spec = Spec { exchange, kind, queue, keys: self.keys.clone(), prefetch: self.prefetch };
        consuming::run(&settings, &spec, &mut Php, &mut |key, m| call_back(callback, key, m)).map_err(run_err)
    }
}
