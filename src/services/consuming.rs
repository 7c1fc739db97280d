//! Consuming: the Consumer turns any message on a user's exchange into a call of the application's
//! callback, acking after it returns.
//!
//! How a body is read is [`read`], what follows the callback is [`decide`] (both pure,
//! table-tested); [`run`] is the loop around them. The callback comes down as a closure.

use std::time::Duration;

use lapin::message::Delivery;
use serde_json::Value;

use crate::broker::consume::{After, TICK};
use crate::broker::names::Names;
use crate::broker::subscription::{self, Subscription};
use crate::broker::{stop, Decl, Outgoing};
use crate::config::Settings;
use crate::dispatch;
use crate::headers;
use crate::log;
use crate::metrics::counters;
use crate::services::run::{self, Between, RunError};
use crate::wire::{new_id, properties_with_headers};

/// A message as the callback gets it. Reading never fails: a body that is neither of the first
/// two is given as its bytes.
#[derive(Debug, PartialEq)]
pub enum Message {
    /// A JSON body, decoded.
    Json(Value),
    /// A body of the original library's `Publish::send()`: its data (decoded by ebats's own
    /// reader, never by `unserialize()`) and the time it carries.
    Publish { data: Value, etime: i64 },
    /// Anything else, as it came.
    Bytes(Vec<u8>),
}

/// Reads a body as the callback gets it.
pub fn read(content_type: Option<&str>, body: &[u8]) -> Message {
    if crate::legacy::body::looks_legacy(content_type, body) {
        if let Ok((etime, data)) = crate::legacy::body::decode_publish(body) {
            return Message::Publish { data, etime };
        }
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Message::Json(v),
        Err(_) => Message::Bytes(body.to_vec()),
    }
}

/// How the callback ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    Returned,
    /// It called `exit()`: the process is on its way out.
    Exit,
    /// It threw `class` with `message`; `service` when the throwable is a `ServiceException` (a
    /// dependency is down, the message itself is fine).
    Threw {
        class: String,
        message: String,
        service: bool,
    },
}

/// What to do with the message.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Ack,
    /// Leave the loop with the message unsettled: it stays with this process until it ends.
    Leave,
    /// Give it back to its queue after waiting `pause` (checking the stop token).
    Requeue {
        pause: Duration,
    },
    /// Move it to the consumer's failed queue, then [`after_store`].
    Store,
}

/// The wait before a message whose callback met a `ServiceException` goes back to its queue.
pub const SERVICE_PAUSE: Duration = Duration::from_secs(1);

/// What follows the callback.
pub fn decide(ended: &Ended) -> Step {
    match ended {
        Ended::Returned => Step::Ack,
        Ended::Exit => Step::Leave,
        Ended::Threw { service: true, .. } => Step::Requeue { pause: SERVICE_PAUSE },
        Ended::Threw { service: false, .. } => Step::Store,
    }
}

/// What follows moving a message to the failed queue: acked once stored, else given back at once.
pub fn after_store(stored: bool) -> Step {
    if stored {
        Step::Ack
    } else {
        Step::Requeue { pause: Duration::ZERO }
    }
}

/// What a Consumer consumes: a user's exchange, the queue bound to it with `keys`, how many
/// messages it takes at once.
pub struct Spec {
    pub exchange: String,
    /// The exchange's type (`direct`, `topic`, `fanout`, `headers`), checked by the caller.
    pub kind: String,
    pub queue: String,
    pub keys: Vec<String>,
    pub prefetch: u16,
}

/// The callback: called with the routing key and the message.
pub type Callback<'a> = dyn FnMut(&str, &Message) -> Ended + 'a;

/// The failed message, as it came, with what was thrown in its headers.
fn failed_copy(names: &Names, queue: &str, d: &Delivery, class: &str, message: &str) -> Outgoing {
    Outgoing {
        exchange: String::new(),
        routing_key: names.consumer_failed_queue(queue),
        body: d.data.clone(),
        properties: properties_with_headers(
            &new_id(),
            "ebats.consumer.failed",
            &[
                // Each bounded there: the message's start (the body is the message as it came, so
                // the whole text is only in the exception).
                (headers::ERROR, message.to_string()),
                (headers::ERROR_CLASS, class.to_string()),
                (headers::EXCHANGE, d.exchange.as_str().to_string()),
                (headers::ROUTING_KEY, d.routing_key.as_str().to_string()),
            ],
        ),
        mandatory: true,
    }
}

/// Moves a message whose callback threw to the failed queue; what follows, by [`after_store`].
fn store(settings: &Settings, names: &Names, queue: &str, d: &Delivery, class: &str, message: &str) -> Step {
    log::error(&format!(
        "consumer callback threw {class}: {message}; message moved to '{}'",
        names.consumer_failed_queue(queue)
    ));
    let out = failed_copy(names, queue, d, class, message);
    let sent = dispatch::send(settings, &[Decl::ConsumerFailed(queue.to_string())], &[out]);
    if let Err(e) = &sent {
        log::error(&format!("could not store the failed message ({e}); it goes back"));
    }
    after_store(sent.is_ok())
}

/// Hands one message to the callback and settles it as [`decide`] says.
fn handle(
    settings: &Settings,
    names: &Names,
    queue: &str,
    callback: &mut Callback,
    sub: &mut Subscription,
    d: Delivery,
) -> After<()> {
    let content_type = d.properties.content_type().as_ref().map(|s| s.as_str());
    let message = read(content_type, &d.data);
    counters::taken();
    let ended = callback(d.routing_key.as_str(), &message);
    match &ended {
        Ended::Returned => counters::add(&counters::CONSUMER_HANDLED, 1),
        Ended::Threw { .. } => counters::add(&counters::CONSUMER_FAILED, 1),
        Ended::Exit => {}
    }
    let step = match (decide(&ended), &ended) {
        (Step::Store, Ended::Threw { class, message, .. }) => store(settings, names, queue, &d, class, message),
        (step, _) => step,
    };
    let settled = match step {
        Step::Ack => sub.ack(d.delivery_tag, false),
        Step::Leave => return After::Leave(()),
        Step::Requeue { pause } => {
            if let Ended::Threw { class, message, service: true } = &ended {
                log::error(&format!("consumer callback: {class}: {message}; message requeued after a pause"));
            }
            stop::pause(pause, TICK, || false);
            sub.requeue(d.delivery_tag, false)
        }
        // Made above for every throwable; were one not made, the message goes back, never lost.
        Step::Store => sub.requeue(d.delivery_tag, false),
    };
    match settled {
        Ok(()) => After::Next,
        Err(e) => {
            log::error(&format!("consumer could not settle a message: {e}"));
            After::Reopen
        }
    }
}

/// Consumes `spec`'s queue until the process is stopped, calling `callback` for every message.
pub fn run(
    settings: &Settings,
    spec: &Spec,
    between: &mut dyn Between,
    callback: &mut Callback,
) -> Result<(), RunError> {
    let names = Names::new(&settings.prefix);
    let queue = &spec.queue;
    let decls = [
        Decl::Exchange { name: spec.exchange.clone(), kind: spec.kind.clone() },
        Decl::BoundQueue { queue: queue.clone(), exchange: spec.exchange.clone(), keys: spec.keys.clone() },
        Decl::ConsumerFailed(queue.clone()),
    ];
    let _metrics = crate::metrics::serve::ThreadServer::start_if_asked(
        None,
        settings,
        &crate::metrics::serve::CONSUMER,
        vec![queue.clone()],
        vec![(queue.clone(), "consumer"), (names.consumer_failed_queue(queue), "failed")],
    )
    .map_err(RunError::Setup)?;
    let tag = format!("ebats-consumer-{}", std::process::id());
    let subscription = subscription::Spec { settings, decls: &decls, queue, prefetch: spec.prefetch, tag: &tag };
    let deliver = |sub: &mut Subscription, d| handle(settings, &names, queue, callback, sub, d);
    Ok(run::until_stopped("consumer", subscription, true, between, || None, deliver)?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn what_follows_the_callback() {
        let threw = |service| Ended::Threw { class: "E".into(), message: "m".into(), service };
        let table = [
            (Ended::Returned, Step::Ack),
            (Ended::Exit, Step::Leave),
            (threw(true), Step::Requeue { pause: SERVICE_PAUSE }),
            (threw(false), Step::Store),
        ];
        for (ended, step) in table {
            assert_eq!(decide(&ended), step, "{ended:?}");
        }
        assert_eq!(after_store(true), Step::Ack);
        assert_eq!(after_store(false), Step::Requeue { pause: Duration::ZERO });
    }

    #[test]
    fn how_a_body_reads() {
        let publish: &[u8] = br#"a:2:{s:5:"etime";i:1700000065;s:4:"body";a:1:{s:1:"k";s:1:"v";}}"#;
        let table: [(Option<&str>, &[u8], Message); 8] = [
            (None, publish, Message::Publish { data: json!({"k": "v"}), etime: 1_700_000_065 }),
            (Some("text/plain"), publish, Message::Publish { data: json!({"k": "v"}), etime: 1_700_000_065 }),
            (Some("application/json"), br#"{"a":1}"#, Message::Json(json!({"a": 1}))),
            (None, b"[1,2]", Message::Json(json!([1, 2]))),
            (None, b"\"s\"", Message::Json(json!("s"))),
            (None, b"not json", Message::Bytes(b"not json".to_vec())),
            (Some("text/plain"), b"\xff\x00", Message::Bytes(b"\xff\x00".to_vec())),
            // Looks like the original's, is not one of its bodies: given as it came.
            (None, b"a:1:{i:0;i:1;}", Message::Bytes(b"a:1:{i:0;i:1;}".to_vec())),
        ];
        for (content_type, body, message) in table {
            assert_eq!(read(content_type, body), message, "{body:?}");
        }
    }
}
