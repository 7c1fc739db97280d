//! The JSON bodies of events and tasks (documented field by field in docs/wire-format.md). A body
//! read back is held to the rules of `crate::rules`, as the same values were on the way out.

use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;
use serde_json::{json, Map, Value};

use crate::rules;

mod fields;
use fields::Fields;

pub const VERSION: u64 = 1;

/// The `type` property of each kind of message ebats publishes.
pub const KIND_EVENT: &str = "ebats.event";
pub const KIND_TASK: &str = "ebats.task";
pub const KIND_FAILED_TASK: &str = "ebats.task.failed";
/// A body kept in a failed store as it came, because it is not a task of that store's topic (or
/// not an event at all): listed, never replayed.
pub const KIND_UNREADABLE: &str = "ebats.unreadable";

/// The most bytes of an exception message or failure reason kept in a body (the failed store's
/// `failed.message`, a retry's `error.message`); longer ones are cut there too, and marked (see
/// `rules::bounded`). A whole body must stay under the broker's largest message (16 MiB by default
/// since RabbitMQ 4.0), or the publish that moves a task on is refused again at each delivery.
pub const MAX_MESSAGE: usize = 1 << 20;

/// An exception message or failure reason as a body keeps it: at most [`MAX_MESSAGE`] bytes.
pub fn kept_message(message: &str) -> std::borrow::Cow<'_, str> {
    rules::bounded(message, MAX_MESSAGE)
}

/// A new id: a random (version 4) UUID in 32 hex digits, its bytes from [`crate::random`].
pub fn new_id() -> String {
    uuid::Builder::from_random_bytes(crate::random::bytes16()).into_uuid().simple().to_string()
}

pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Now, in whole milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A time in seconds rounded to the millisecond, as every time in a body is written.
pub fn round_ms(t: f64) -> f64 {
    (t * 1000.0).round() / 1000.0
}

/// AMQP properties of every ebats message: persistent JSON with its id and kind, and nothing more.
/// Properties cost the broker on every message (RabbitMQ 3.10, batches of 100 persistent messages:
/// php-amqp's with these four and a timestamp took 12 to 20 % more of the broker's CPU than with a
/// content type and delivery mode alone; ebats's without the timestamp, some 6 % less than with it,
/// and ran 5 to 7 % faster). The time a message was made is in its body (`created_at`); a failed one
/// carries it in a header (`headers::FAILED_AT`).
pub fn properties(id: &str, kind: &str) -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_message_id(id.into())
        .with_type(kind.into())
}

/// Properties with extra string headers (failure details, the schedule stream's records). Each
/// value is bounded (`headers::value`): a header that outgrew its frame would close the connection.
pub fn properties_with_headers(id: &str, kind: &str, headers: &[(&str, String)]) -> BasicProperties {
    let mut t = FieldTable::default();
    for (k, v) in headers {
        t.insert((*k).into(), AMQPValue::LongString(LongString::from(crate::headers::value(v).as_ref())));
    }
    properties(id, kind).with_headers(t)
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventMsg {
    pub id: String,
    pub event: String,
    pub params: Value,
    pub created_at: f64,
}

impl EventMsg {
    pub fn new(event: &str, params: Value) -> Self {
        EventMsg { id: new_id(), event: event.to_string(), params, created_at: now() }
    }

    /// The body: `{"v":1,"id":..,"event":..,"params":..,"created_at":..}`, written from the event's
    /// own fields (no copy of the parameters is made on the way).
    pub fn to_json(&self) -> Vec<u8> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            v: u64,
            id: &'a str,
            event: &'a str,
            params: &'a Value,
            created_at: f64,
        }
        let body = Body {
            v: VERSION,
            id: &self.id,
            event: &self.event,
            params: &self.params,
            created_at: round_ms(self.created_at),
        };
        serde_json::to_vec(&body).expect("plain data always serializes")
    }

    pub fn parse(body: &[u8]) -> Result<EventMsg, String> {
        let v: Value = serde_json::from_slice(body).map_err(|e| format!("event body is not JSON: {e}"))?;
        let o = v.as_object().ok_or("event body is not a JSON object")?;
        let event = o.get("event").and_then(Value::as_str).ok_or("event body has no string field 'event'")?;
        rules::check_event_name(event).map_err(|e| format!("event body: {e}"))?;
        Ok(EventMsg {
            id: id_of(o, "event")?,
            event: event.to_string(),
            params: o.get("params").cloned().unwrap_or(Value::Array(vec![])),
            created_at: o.get("created_at").and_then(Value::as_f64).unwrap_or(0.0),
        })
    }
}

/// An event as the Scheduler reads it from the events queue, in either format: ebats's JSON, or
/// the original library's serialize() body (sniffed by its content type and first bytes), whose
/// name is the routing key and whose id is the message id when that is one of ebats's (written
/// with `ebats.write_format = original`), else a new one. The error says why it cannot be read.
pub fn read_event(
    routing_key: &str,
    content_type: Option<&str>,
    message_id: Option<&str>,
    body: &[u8],
) -> Result<EventMsg, String> {
    use crate::legacy::body;
    if !body::looks_legacy(content_type, body) {
        return EventMsg::parse(body);
    }
    let e = body::decode_event(body).map_err(|e| format!("event in the original library's format: {e}"))?;
    rules::check_event_name(routing_key).map_err(|e| format!("event in the original library's format: {e}"))?;
    let id = message_id.filter(|id| body::is_original_task_id(id)).map(str::to_string).unwrap_or_else(new_id);
    Ok(EventMsg { id, event: routing_key.to_string(), params: e.params, created_at: e.etime as f64 })
}

/// Retry rule a `RetryException` carried: up to `max` more runs, `interval` seconds apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryRule {
    pub max: Option<u32>,
    pub interval: Option<u64>,
}

/// The unique key a task holds while it waits or runs (`flow::unique`): the key as it names broker
/// objects (`flow::key::Key::name`) and its lifetime in seconds. Retries keep it; the worker releases it
/// when the task ends for good.
#[derive(Debug, Clone, PartialEq)]
pub struct UniqueKey {
    pub key: String,
    pub for_secs: u64,
    /// When the key frees itself (seconds since the epoch): its lifetime counted from before it was
    /// taken, so the broker's copy never goes before it.
    pub until: f64,
}

/// The longest lifetime of a unique key: a week.
pub const MAX_UNIQUE_FOR: u64 = 7 * 86_400;

impl UniqueKey {
    /// The field's value in a body: `{"key": .., "for": .., "until": ..}`.
    fn to_value(&self) -> Value {
        json!({"key": self.key, "for": self.for_secs, "until": round_ms(self.until)})
    }

    /// A key read back must be one `Key::name` can make: 1 to 100 printable ASCII characters without
    /// spaces (it names a queue), and a lifetime of 1 s to a week.
    fn from_value(v: &Value) -> Result<UniqueKey, String> {
        let o = v.as_object().ok_or("task body: 'unique' must be an object")?;
        let key = o.get("key").and_then(Value::as_str).ok_or("task body: 'unique.key' must be a string")?;
        if key.is_empty() || key.len() > crate::flow::key::NAME_MAX || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "task body: 'unique.key' must be 1 to {} printable ASCII characters, got '{}'",
                crate::flow::key::NAME_MAX,
                rules::printable(key)
            ));
        }
        let for_secs = counter(o, "unique.for", 1, MAX_UNIQUE_FOR)?.ok_or("task body: 'unique.for' is missing")?;
        let until = o
            .get("until")
            .and_then(Value::as_f64)
            .filter(|u| u.is_finite() && *u >= 0.0)
            .ok_or("task body: 'unique.until' must be a time in seconds")?;
        Ok(UniqueKey { key: key.to_string(), for_secs, until })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskMsg {
    pub id: String,
    pub topic: String,
    pub name: String,
    pub params: Value,
    pub delay: u64,
    /// The run this message is for: 1 for the first.
    pub attempt: u32,
    pub created_at: f64,
    pub event: Option<String>,
    pub event_id: Option<String>,
    /// The group the task is a member of (`crate::group`): its end is recorded on the groups stream.
    pub group: Option<String>,
    /// How often a handler reported a dependency down (ServiceException) for this task.
    pub service_errors: u32,
    /// How often the task was delivered again after its worker died holding it.
    pub redeliveries: u32,
    /// Set by a RetryException that gave its own rule; later retries follow it.
    pub retry: Option<RetryRule>,
    /// The last failure, carried into retries and the failed store.
    pub error: Option<Value>,
    /// The unique key it holds, if it was made unique.
    pub unique: Option<UniqueKey>,
    /// The task is a step of a chain: where, and the steps after it (`crate::chain`).
    pub chain: Option<crate::chain::Chain>,
    /// A limit it carries, set where it was made (`flow::carried`): its description.
    pub limit: Option<Value>,
    /// Fields this version does not know, kept as they came.
    pub extra: Map<String, Value>,
}

const KNOWN: &[&str] = &[
    "v",
    "id",
    "topic",
    "name",
    "params",
    "delay",
    "attempt",
    "created_at",
    "event",
    "event_id",
    "group",
    "service_errors",
    "redeliveries",
    "retry",
    "error",
    "unique",
    "chain",
    "limit",
];

impl TaskMsg {
    pub fn new(topic: &str, name: &str, params: Value, delay: u64) -> Self {
        TaskMsg {
            id: new_id(),
            topic: topic.to_string(),
            name: name.to_string(),
            params,
            delay,
            attempt: 1,
            created_at: now(),
            event: None,
            event_id: None,
            group: None,
            service_errors: 0,
            redeliveries: 0,
            retry: None,
            error: None,
            unique: None,
            chain: None,
            limit: None,
            extra: Map::new(),
        }
    }

    pub fn to_value(&self) -> Value {
        let mut o = Map::new();
        o.insert("v".into(), json!(VERSION));
        o.insert("id".into(), json!(self.id));
        o.insert("topic".into(), json!(self.topic));
        o.insert("name".into(), json!(self.name));
        o.insert("params".into(), self.params.clone());
        o.insert("delay".into(), json!(self.delay));
        o.insert("attempt".into(), json!(self.attempt));
        o.insert("created_at".into(), json!(round_ms(self.created_at)));
        o.insert("event".into(), json!(self.event));
        o.insert("event_id".into(), json!(self.event_id));
        if let Some(g) = &self.group {
            o.insert("group".into(), json!(g));
        }
        if self.service_errors > 0 {
            o.insert("service_errors".into(), json!(self.service_errors));
        }
        if self.redeliveries > 0 {
            o.insert("redeliveries".into(), json!(self.redeliveries));
        }
        if let Some(r) = self.retry {
            o.insert("retry".into(), json!({"max": r.max, "interval": r.interval}));
        }
        if let Some(e) = &self.error {
            o.insert("error".into(), e.clone());
        }
        if let Some(u) = &self.unique {
            o.insert("unique".into(), u.to_value());
        }
        if let Some(c) = &self.chain {
            o.insert("chain".into(), c.to_value());
        }
        if let Some(l) = &self.limit {
            o.insert("limit".into(), l.clone());
        }
        for (k, v) in &self.extra {
            o.insert(k.clone(), v.clone());
        }
        Value::Object(o)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_value()).expect("a Value always serializes")
    }

    /// Reads a task body; only `topic` and `name` are required, so other languages can produce tasks.
    pub fn parse(body: &[u8]) -> Result<TaskMsg, String> {
        match Fields::read(body) {
            Some(f) => Self::from_fields(f),
            // Not an object: a plain read says whether it is JSON at all.
            None => match serde_json::from_slice::<Value>(body) {
                Err(e) => Err(format!("task body is not JSON: {e}")),
                Ok(_) => Err("task body is not a JSON object".into()),
            },
        }
    }

    /// Reads the fields of a task body. The topic and name follow the rules they were sent with; a
    /// counter is a whole number in its range (absent or null: its default).
    fn from_fields(mut f: Fields) -> Result<TaskMsg, String> {
        let s = |f: &mut Fields, k: &str| match f.take(k) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        let topic = s(&mut f, "topic").ok_or("task body has no string field 'topic'")?;
        let name = s(&mut f, "name").ok_or("task body has no string field 'name'")?;
        rules::check_topic(&topic).map_err(|e| format!("task body: {e}"))?;
        rules::check_task_name(&name).map_err(|e| format!("task body: {e}"))?;
        let max_delay = rules::MAX_DELAY as u64;
        let retry = match f.get("retry") {
            None | Some(Value::Null) => None,
            Some(Value::Object(r)) => Some(RetryRule {
                max: counter(r, "retry.max", 0, u32::MAX as u64)?.map(|m| m as u32),
                interval: counter(r, "retry.interval", 0, max_delay)?,
            }),
            Some(_) => return Err("task body: 'retry' must be an object".into()),
        };
        Ok(TaskMsg {
            id: id_in(f.get("id"), "task")?,
            topic,
            name,
            delay: counter_in(f.get("delay"), "delay", 0, max_delay)?.unwrap_or(0),
            attempt: counter_in(f.get("attempt"), "attempt", 1, u32::MAX as u64)?.unwrap_or(1) as u32,
            created_at: f.get("created_at").and_then(Value::as_f64).unwrap_or_else(now),
            event: s(&mut f, "event"),
            event_id: s(&mut f, "event_id"),
            group: match f.take("group") {
                None | Some(Value::Null) => None,
                Some(Value::String(g)) => {
                    rules::check_id(&g).map_err(|e| format!("task body: group {e}"))?;
                    Some(g)
                }
                Some(_) => return Err("task body: 'group' must be a string".into()),
            },
            service_errors: counter_in(f.get("service_errors"), "service_errors", 0, u32::MAX as u64)?.unwrap_or(0)
                as u32,
            redeliveries: counter_in(f.get("redeliveries"), "redeliveries", 0, u32::MAX as u64)?.unwrap_or(0) as u32,
            retry,
            unique: match f.get("unique") {
                None | Some(Value::Null) => None,
                Some(u) => Some(UniqueKey::from_value(u)?),
            },
            chain: match f.get("chain") {
                None | Some(Value::Null) => None,
                Some(c) => Some(crate::chain::Chain::from_value(c).map_err(|e| format!("task body: {e}"))?),
            },
            limit: match f.take("limit") {
                None | Some(Value::Null) => None,
                Some(l @ Value::Object(_)) => Some(l),
                Some(_) => return Err("task body: 'limit' must be an object".into()),
            },
            error: f.take("error").filter(|e| !e.is_null()),
            params: f.take("params").unwrap_or(Value::Array(vec![])),
            extra: std::mem::take(&mut f.extra),
        })
    }
}

/// The `id` of a `what` body: a new one when absent or null, else a string that follows
/// `rules::check_id` (what a worker can track, store and show).
fn id_of(o: &Map<String, Value>, what: &str) -> Result<String, String> {
    id_in(o.get("id"), what)
}

/// [`id_of`] of the field's value.
fn id_in(v: Option<&Value>, what: &str) -> Result<String, String> {
    match v {
        None | Some(Value::Null) => Ok(new_id()),
        Some(Value::String(id)) => match rules::check_id(id) {
            Ok(()) => Ok(id.clone()),
            Err(e) => Err(format!("{what} body: {e}")),
        },
        Some(v) => Err(format!("{what} body: 'id' must be a string, got {}", rules::printable(&v.to_string()))),
    }
}

/// The whole number at `key` (its name in messages is `what`), which must lie in `min..=max`;
/// None when absent or null.
fn counter(o: &Map<String, Value>, what: &str, min: u64, max: u64) -> Result<Option<u64>, String> {
    counter_in(o.get(what.rsplit('.').next().unwrap_or(what)), what, min, max)
}

/// [`counter`] of the field's value.
fn counter_in(v: Option<&Value>, what: &str, min: u64, max: u64) -> Result<Option<u64>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(format!(
                "task body: '{what}' must be a whole number from {min} to {max}, got {}",
                rules::printable(&v.to_string())
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_body_is_the_document_of_its_fields() {
        let table = [
            (json!({"order_id": "FB1", "n": [1, 2.5, null, true, "é\"\n"]}), 1_700_000_000.123_456),
            (json!([]), 0.0),
            (json!({"z": 1, "a": {"y": 2, "b": 3}}), 1.0005),
            (json!("x"), f64::NAN),
            (json!(null), f64::INFINITY),
        ];
        for (params, created_at) in table {
            let e = EventMsg { id: "abc".into(), event: "order.paied".into(), params, created_at };
            let doc = json!({
                "v": VERSION, "id": e.id, "event": e.event, "params": e.params,
                "created_at": round_ms(e.created_at),
            });
            assert_eq!(e.to_json(), serde_json::to_vec(&doc).unwrap(), "{doc}");
        }
    }

    #[test]
    fn task_round_trip_keeps_unknown_fields() {
        let mut t = TaskMsg::new("demo", "closeOrder", json!({"b": 1, "a": [1, 2.5, null, true, "é"]}), 10);
        t.extra.insert("trace".into(), json!("x"));
        t.retry = Some(RetryRule { max: Some(3), interval: None });
        let back = TaskMsg::parse(&t.to_json()).unwrap();
        assert_eq!(back.params, t.params);
        assert_eq!(back.extra.get("trace"), Some(&json!("x")));
        assert_eq!(back.retry, t.retry);
        assert_eq!((back.topic.as_str(), back.name.as_str(), back.delay, back.attempt), ("demo", "closeOrder", 10, 1));
        // key order of params is kept
        let s = String::from_utf8(t.to_json()).unwrap();
        assert!(s.find("\"b\"").unwrap() < s.find("\"a\"").unwrap());
    }

    #[test]
    fn a_unique_key_travels_and_is_checked() {
        let mut t = TaskMsg::new("demo", "x", json!({}), 0);
        t.unique = Some(UniqueKey { key: "order:42".into(), for_secs: 60, until: 1.5 });
        let s = String::from_utf8(t.to_json()).unwrap();
        assert!(s.contains(r#""unique":{"key":"order:42","for":60,"until":1.5}"#), "{s}");
        assert_eq!(TaskMsg::parse(s.as_bytes()).unwrap().unique, t.unique);
        assert_eq!(TaskMsg::parse(br#"{"topic":"demo","name":"x","unique":null}"#).unwrap().unique, None);
        let long = "k".repeat(crate::flow::key::NAME_MAX + 1);
        for bad in [
            json!(3),
            json!({"for": 60, "until": 1}),
            json!({"key": "", "for": 60, "until": 1}),
            json!({"key": "a b", "for": 60, "until": 1}),
            json!({"key": long, "for": 60, "until": 1}),
            json!({"key": "k", "until": 1}),
            json!({"key": "k", "for": 0, "until": 1}),
            json!({"key": "k", "for": MAX_UNIQUE_FOR + 1, "until": 1}),
            json!({"key": "k", "for": 60}),
            json!({"key": "k", "for": 60, "until": -1}),
            json!({"key": "k", "for": 60, "until": "1"}),
        ] {
            let body = json!({"topic": "demo", "name": "x", "unique": bad}).to_string();
            let err = TaskMsg::parse(body.as_bytes()).unwrap_err();
            assert!(err.starts_with("task body: 'unique"), "{bad}: {err}");
        }
    }

    #[test]
    fn minimal_foreign_task() {
        let t = TaskMsg::parse(br#"{"topic":"demo","name":"x"}"#).unwrap();
        assert_eq!(t.attempt, 1);
        assert_eq!(t.params, json!([]));
        assert_eq!(t.id.len(), 32);
        assert!(TaskMsg::parse(br#"{"topic":"demo"}"#).is_err());
        assert!(TaskMsg::parse(b"\x80").is_err());
    }

    #[test]
    fn ids_follow_the_id_rule() {
        let uuid = "9b2e7c1d-3f4a-4b5c-8d6e-0f1a2b3c4d5e";
        let long = "i".repeat(rules::MAX_ID_LEN);
        for id in ["x", uuid, long.as_str()] {
            let task = json!({"topic": "demo", "name": "x", "id": id}).to_string();
            assert_eq!(TaskMsg::parse(task.as_bytes()).unwrap().id, id);
            let event = json!({"event": "e", "id": id}).to_string();
            assert_eq!(EventMsg::parse(event.as_bytes()).unwrap().id, id);
        }
        assert_eq!(TaskMsg::parse(br#"{"topic":"demo","name":"x","id":null}"#).unwrap().id.len(), 32);
        let too_long = "i".repeat(rules::MAX_ID_LEN + 1);
        for bad in [json!(too_long), json!(""), json!("a b"), json!("a\nb"), json!(42), json!(["x"])] {
            let task = json!({"topic": "demo", "name": "x", "id": bad}).to_string();
            let err = TaskMsg::parse(task.as_bytes()).unwrap_err();
            assert!(err.starts_with("task body: ") && err.contains("id"), "{bad}: {err}");
            let event = json!({"event": "e", "id": bad}).to_string();
            let err = EventMsg::parse(event.as_bytes()).unwrap_err();
            assert!(err.starts_with("event body: ") && err.contains("id"), "{bad}: {err}");
        }
    }

    #[test]
    fn messages_kept_in_bodies_are_bounded() {
        assert_eq!(kept_message("boom"), "boom");
        let whole = "m".repeat(MAX_MESSAGE);
        assert_eq!(kept_message(&whole).len(), MAX_MESSAGE);
        let cut = kept_message(&"m".repeat(20 << 20)).into_owned();
        assert!(cut.len() <= MAX_MESSAGE && cut.ends_with(&format!("[cut: {} bytes in all]", 20 << 20)));
    }

    #[test]
    fn event_round_trip() {
        let e = EventMsg::new("order_paied", json!({"order_id": "FB1"}));
        assert!(e.to_json().starts_with(format!(r#"{{"v":1,"id":"{}","event":"order_paied","#, e.id).as_bytes()));
        let back = EventMsg::parse(&e.to_json()).unwrap();
        assert_eq!(back.event, "order_paied");
        assert_eq!(back.params, json!({"order_id": "FB1"}));
        assert_eq!(back.id, e.id);
    }

    #[test]
    fn task_topic_and_name_follow_the_outgoing_rules() {
        for (topic, name) in [("other", "x"), ("demo", "closeOrder"), ("a-b_C9", "_x1")] {
            let body = json!({"topic": topic, "name": name}).to_string();
            assert!(TaskMsg::parse(body.as_bytes()).is_ok(), "{body}");
        }
        for (topic, name, what) in [
            ("Foo\\Bar", "x", "topic"),
            ("a.b#", "x", "topic"),
            ("../../x", "x", "topic"),
            ("", "x", "topic"),
            ("demo", "ok;evil", "task name"),
            ("demo", "1x", "task name"),
            ("demo", "", "task name"),
        ] {
            let body = json!({"topic": topic, "name": name}).to_string();
            let err = TaskMsg::parse(body.as_bytes()).unwrap_err();
            assert!(err.starts_with(&format!("task body: {what}")), "{body}: {err}");
        }
    }

    #[test]
    fn counters_out_of_range_are_errors() {
        let parse = |extra: Value| {
            let mut v = json!({"topic": "demo", "name": "x"});
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            TaskMsg::parse(v.to_string().as_bytes())
        };
        assert_eq!(parse(json!({"attempt": 3})).unwrap().attempt, 3);
        assert_eq!(parse(json!({"attempt": null})).unwrap().attempt, 1);
        assert_eq!(parse(json!({"attempt": u32::MAX})).unwrap().attempt, u32::MAX);
        for bad in [
            json!({"attempt": i64::MAX}),
            json!({"attempt": 0}),
            json!({"attempt": -1}),
            json!({"attempt": 1.5}),
            json!({"attempt": "2"}),
            json!({"service_errors": u64::MAX}),
            json!({"redeliveries": -3}),
            json!({"delay": rules::MAX_DELAY + 1}),
            json!({"retry": {"max": 1u64 << 40}}),
            json!({"retry": {"interval": -5}}),
            json!({"retry": 3}),
        ] {
            let err = parse(bad.clone()).unwrap_err();
            assert!(err.starts_with("task body: "), "{bad}: {err}");
        }
        let err = parse(json!({"attempt": i64::MAX})).unwrap_err();
        assert!(err.contains("'attempt'") && err.contains(&i64::MAX.to_string()), "{err}");
        let r = parse(json!({"retry": {"max": 2, "interval": null}})).unwrap().retry;
        assert_eq!(r, Some(RetryRule { max: Some(2), interval: None }));
    }

    #[test]
    fn event_name_follows_the_outgoing_rule() {
        assert!(EventMsg::parse(br#"{"event":"order.paied"}"#).is_ok());
        let err = EventMsg::parse(br#"{"event":"x\n[ebats forged"}"#).unwrap_err();
        assert!(err.starts_with("event body: event name"), "{err}");
        assert!(EventMsg::parse(br#"{"event":""}"#).is_err());
    }

    #[test]
    fn events_in_either_format() {
        let legacy = crate::legacy::body::encode_event(&json!({"order_id": "FB1", "n": [1, 2]}), 1_700_000_000);
        let id = "0123456789abcdef0123456789abcdef";
        let e = read_event("order_paied", Some("text/plain"), Some(id), &legacy).unwrap();
        assert_eq!(
            (e.event.as_str(), e.id.as_str(), &e.params, e.created_at),
            ("order_paied", id, &json!({"order_id": "FB1", "n": [1, 2]}), 1_700_000_000.0)
        );
        // no content type, no id of ebats's: a new id
        let e = read_event("order_paied", None, Some("not-an-id"), &legacy).unwrap();
        assert_eq!(e.id.len(), 32);
        assert_ne!(e.id, "not-an-id");
        // ebats's JSON: the body names the event, whatever the key
        let j = EventMsg::new("x_y", json!([])).to_json();
        assert_eq!(read_event("", Some("application/json"), None, &j).unwrap().event, "x_y");
        let table: [(&str, Option<&str>, &[u8], &str); 4] = [
            ("order_paied", Some("text/plain"), b"a:1:{s:4:\"etime\";i:1;}", "event in the original library's format"),
            (
                "order_paied",
                None,
                b"a:2:{s:5:\"etime\";i:1;s:4:\"body\";O:8:\"stdClass\":0:{}",
                "event in the original",
            ),
            ("bad\nname", None, &legacy, "event in the original library's format: event name"),
            ("order_paied", Some("application/json"), &legacy, "event body is not JSON"),
        ];
        for (key, ct, body, why) in table {
            let err = read_event(key, ct, None, body).unwrap_err();
            assert!(err.starts_with(why), "{key:?} {ct:?}: {err}");
        }
    }

    #[test]
    fn times_are_rounded_to_the_millisecond() {
        assert_eq!(round_ms(1.23456), 1.235);
        assert_eq!(round_ms(10.0), 10.0);
    }
}
