//! `Asynclib\Core\Consumer`: turns any message on a user's exchange into a PHP callback.

use std::time::Duration;

use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendClassObject, ZendHashTable, Zval};

use crate::broker::consume::After;
use crate::broker::names::Names;
use crate::broker::subscription;
use crate::broker::{Decl, Outgoing};
use crate::dispatch;
use crate::headers;
use crate::log;
use crate::metrics::counters;
use crate::php::args::{self, bad_input, checked};
use crate::php::call::{self, Thrown};
use crate::php::convert;
use crate::php::exceptions::Kind;
use crate::php::settings;
use crate::php::subscriber;
use crate::rules;
use crate::wire::{new_id, properties_with_headers};

/// A message as the callback gets it: JSON decoded, the original library's `Publish::send()` body
/// decoded with the time it carries (never through `unserialize()`), anything else as its bytes.
fn read_message(d: &lapin::message::Delivery) -> (Zval, Option<i64>) {
    let content_type = d.properties.content_type().as_ref().map(|s| s.as_str());
    if crate::legacy::body::looks_legacy(content_type, &d.data) {
        if let Ok((etime, data)) = crate::legacy::body::decode_publish(&d.data) {
            return (convert::to_zval(&data), Some(etime));
        }
    }
    match serde_json::from_slice::<serde_json::Value>(&d.data) {
        Ok(v) => (convert::to_zval(&v), None),
        Err(_) => {
            let mut z = Zval::new();
            z.set_binary(d.data.clone());
            (z, None)
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
        let names = Names::new(&settings.prefix);
        let decls = [
            Decl::Exchange { name: exchange.clone(), kind },
            Decl::BoundQueue { queue: queue.clone(), exchange: exchange.clone(), keys: self.keys.clone() },
            Decl::ConsumerFailed(queue.clone()),
        ];
        let _metrics = crate::metrics::serve::ThreadServer::start_if_asked(
            None,
            &settings,
            &crate::metrics::serve::CONSUMER,
            vec![queue.clone()],
            vec![(queue.clone(), "consumer"), (names.consumer_failed_queue(&queue), "failed")],
        )
        .map_err(bad_input)?;
        let tag = format!("ebats-consumer-{}", std::process::id());
        let subscription = subscription::Spec {
            settings: &settings,
            decls: &decls,
            queue: &queue,
            prefetch: self.prefetch,
            tag: &tag,
        };
        subscriber::run("consumer", subscription, true, |sub, d| {
            let (message, etime) = read_message(&d);
            let key = d.routing_key.as_str().to_string();
            counters::taken();
            let key_str = key.as_str();
            let mut args: Vec<&dyn ext_php_rs::convert::IntoZvalDyn> = vec![&key_str, &message];
            // The original library's consumer gave the time its Publish::send() wrote as a third argument.
            if let Some(t) = &etime {
                args.push(t);
            }
            let settled = match call::call(callback, args) {
                Ok(_) => {
                    counters::add(&counters::CONSUMER_HANDLED, 1);
                    sub.ack(d.delivery_tag, false)
                }
                Err(Thrown::Exit) => return After::Leave(()),
                Err(Thrown::Exception { class, message, object }) => {
                    counters::add(&counters::CONSUMER_FAILED, 1);
                    if call::is_kind(&object, Kind::Service) {
                        log::error(&format!("consumer callback: {class}: {message}; message requeued after a pause"));
                        std::thread::sleep(Duration::from_secs(1));
                        sub.requeue(d.delivery_tag, false)
                    } else {
                        log::error(&format!(
                            "consumer callback threw {class}: {message}; message moved to '{}'",
                            names.consumer_failed_queue(&queue)
                        ));
                        let out = Outgoing {
                            exchange: String::new(),
                            routing_key: names.consumer_failed_queue(&queue),
                            body: d.data.clone(),
                            properties: properties_with_headers(
                                &new_id(),
                                "ebats.consumer.failed",
                                &[
                                    // Each bounded there: the message's start (the body is the message
                                    // as it came, so the whole text is only in the exception).
                                    (headers::ERROR, message.clone()),
                                    (headers::ERROR_CLASS, class.clone()),
                                    (headers::EXCHANGE, d.exchange.as_str().to_string()),
                                    (headers::ROUTING_KEY, key.clone()),
                                ],
                            ),
                            mandatory: true,
                        };
                        match dispatch::send(&settings, &[Decl::ConsumerFailed(queue.clone())], &[out]) {
                            Ok(()) => sub.ack(d.delivery_tag, false),
                            Err(e) => {
                                log::error(&format!("could not store the failed message ({e}); it goes back"));
                                sub.requeue(d.delivery_tag, false)
                            }
                        }
                    }
                }
            };
            match settled {
                Ok(()) => After::Next,
                Err(e) => {
                    log::error(&format!("consumer could not settle a message: {e}"));
                    After::Reopen
                }
            }
        })
    }
}
