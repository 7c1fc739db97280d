//! The message bodies of the original library: `serialize(['etime' => <int>, 'body' => <value>])`, where
//! the value is an event's params (an array), a task (an `Asynclib\Ebats\Task` object with the private
//! properties `id`, `name`, `topic`, `params`, `delay`) or `Publish::send()`'s data (anything).
//!
//! PHP values become JSON by the rules ebats applies to a PHP value it publishes (`php::convert`), so a
//! handler sees the same params whichever library published them:
//! - an array with the keys 0..n-1 in order is a JSON list (so `[]` is a list); any other array is a JSON
//!   object, integer keys written in decimal; a `stdClass` is a JSON object;
//! - integers stay integers, floats stay floats (`1.0` is the float 1.0); `INF`, `-INF` and `NAN` are
//!   refused ("cannot be represented in JSON"), as ebats refuses them from PHP;
//! - a string or key that is not UTF-8 is refused, as ebats refuses it from PHP;
//! - a Task object anywhere but as a task's body is refused.
//!
//! The encoders write the bytes the original writes (PHP's `serialize()` of what `json_decode($json,
//! true)` makes of the JSON), for a mode that keeps feeding processes still on the original.

use std::fmt;

use serde_json::{Map, Number, Value};

use super::serial::{self, Limits, PhpKey, PhpValue, SerialError, TASK_CLASS};
use crate::rules;

/// An event as the original's producer wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyEvent {
    /// Unix time (s) the event was published at.
    pub etime: i64,
    pub params: Value,
}

/// A task as the original's Scheduler (or its retry) wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyTask {
    pub etime: i64,
    /// 32 hex digits.
    pub id: String,
    pub name: String,
    pub topic: String,
    pub params: Value,
    /// The task's delay in milliseconds (0: none).
    pub delay_ms: u64,
}

/// What is wrong with a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyErrorKind {
    /// Not PHP serialize format, or a construct the reader refuses (see [`serial`]).
    Syntax,
    /// Readable, but not the shape of the original's message (envelope, task object, names, id).
    Shape,
    /// A value with no JSON form (not UTF-8, INF, NAN, an object in params).
    Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LegacyError {
    pub kind: LegacyErrorKind,
    pub reason: String,
    /// Where the serialize reader stopped, for [`LegacyErrorKind::Syntax`].
    pub serial: Option<SerialError>,
}

impl LegacyError {
    fn shape(reason: impl Into<String>) -> Self {
        LegacyError { kind: LegacyErrorKind::Shape, reason: reason.into(), serial: None }
    }

    fn value(reason: impl Into<String>) -> Self {
        LegacyError { kind: LegacyErrorKind::Value, reason: reason.into(), serial: None }
    }
}

impl From<SerialError> for LegacyError {
    fn from(e: SerialError) -> Self {
        LegacyError {
            kind: LegacyErrorKind::Syntax,
            reason: format!("not a readable PHP serialize() body {e}"),
            serial: Some(e),
        }
    }
}

impl fmt::Display for LegacyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for LegacyError {}

/// An event body of the original: `etime` and params (an array or a stdClass).
pub fn decode_event(body: &[u8]) -> Result<LegacyEvent, LegacyError> {
    let (etime, inner) = envelope(body, "event")?;
    match &inner {
        PhpValue::Array(_) | PhpValue::Object { .. } => {}
        other => return Err(LegacyError::shape(format!("the event's params are {}, not an array", type_name(other)))),
    }
    let params = to_json(&inner).map_err(|e| e.at("params"))?;
    Ok(LegacyEvent { etime, params })
}

/// A task body of the original: `etime` and a `Asynclib\Ebats\Task` with exactly its five private
/// properties; the id is 32 hex digits, name and topic follow ebats' rules, delay is >= 0 ms (null: 0).
pub fn decode_task(body: &[u8]) -> Result<LegacyTask, LegacyError> {
    let (etime, inner) = envelope(body, "task")?;
    let props = match inner {
        PhpValue::Object { class, props } if class == TASK_CLASS => props,
        other => {
            return Err(LegacyError::shape(format!(
                "the task body holds {}, not a {TASK_CLASS} object",
                type_name(&other)
            )))
        }
    };
    let mut fields: [Option<PhpValue>; 5] = Default::default();
    for (name, v) in props {
        let slot = TASK_FIELDS.iter().position(|f| private_name(f) == name).ok_or_else(|| {
            LegacyError::shape(format!(
                "the task has a property '{}' that is not one of the private id, name, topic, params, delay of {TASK_CLASS}",
                rules::printable(&String::from_utf8_lossy(&name))
            ))
        })?;
        fields[slot] = Some(v);
    }
    let mut take = |i: usize| {
        fields[i].take().ok_or_else(|| LegacyError::shape(format!("the task has no property '{}'", TASK_FIELDS[i])))
    };
    let id = text(take(0)?, "id")?;
    if !is_original_task_id(&id) {
        return Err(LegacyError::shape(format!("the task id '{}' is not 32 hex digits", rules::printable(&id))));
    }
    let name = text(take(1)?, "name")?;
    rules::check_task_name(&name).map_err(LegacyError::shape)?;
    let topic = text(take(2)?, "topic")?;
    rules::check_topic(&topic).map_err(LegacyError::shape)?;
    let params = to_json(&take(3)?).map_err(|e| e.at("params"))?;
    let delay_ms = match take(4)? {
        PhpValue::Null => 0,
        PhpValue::Int(d) if d >= 0 => d as u64,
        PhpValue::Int(d) => return Err(LegacyError::shape(format!("the task's delay is negative ({d} ms)"))),
        other => return Err(LegacyError::shape(format!("the task's delay is {}, not an integer", type_name(&other)))),
    };
    Ok(LegacyTask { etime, id, name, topic, params, delay_ms })
}

/// A body written by the original's `Publish::send($data, $key, $delay)`: (etime, data as JSON).
pub fn decode_publish(body: &[u8]) -> Result<(i64, Value), LegacyError> {
    let (etime, inner) = envelope(body, "message")?;
    let data = to_json(&inner).map_err(|e| e.at("body"))?;
    Ok((etime, data))
}

/// A cheap sniff, no parse: does this message look like the original's (a serialized array, and the
/// content type text/plain or none)? A JSON body never does: it starts with `{`, `[` or a space.
pub fn looks_legacy(content_type: Option<&str>, body: &[u8]) -> bool {
    let type_ok = match content_type {
        None => true,
        Some(ct) => {
            let base = ct.split(';').next().unwrap_or_default().trim();
            base.is_empty() || base.eq_ignore_ascii_case("text/plain")
        }
    };
    type_ok && body.len() > 2 && body.starts_with(b"a:") && body[2].is_ascii_digit()
}

/// The original's event body for these params, written at `etime`.
pub fn encode_event(params: &Value, etime: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    envelope_head(&mut out, etime);
    write_json(&mut out, params);
    out.push(b'}');
    out
}

/// The original's task body (the id, name and topic are written as given).
pub fn encode_task(t: &LegacyTask) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    envelope_head(&mut out, t.etime);
    write_str(&mut out, &format!("O:{}:\"{TASK_CLASS}\":5:{{", TASK_CLASS.len()));
    for field in TASK_FIELDS {
        write_bytes(&mut out, &private_name(field));
        match field {
            "id" => write_bytes(&mut out, t.id.as_bytes()),
            "name" => write_bytes(&mut out, t.name.as_bytes()),
            "topic" => write_bytes(&mut out, t.topic.as_bytes()),
            "params" => write_json(&mut out, &t.params),
            _ => write_str(&mut out, &format!("i:{};", i64::try_from(t.delay_ms).unwrap_or(i64::MAX))),
        }
    }
    out.extend_from_slice(b"}}");
    out
}

/// The original's task ids: 32 hex digits.
pub fn is_original_task_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

// ---- reading -------------------------------------------------------------------------------------

const TASK_FIELDS: [&str; 5] = ["id", "name", "topic", "params", "delay"];

/// A private property's name as serialize() writes it: "\0Class\0name".
fn private_name(field: &str) -> Vec<u8> {
    let mut n = Vec::with_capacity(TASK_CLASS.len() + field.len() + 2);
    n.push(0);
    n.extend_from_slice(TASK_CLASS.as_bytes());
    n.push(0);
    n.extend_from_slice(field.as_bytes());
    n
}

/// `['etime' => int, 'body' => value]`, exactly those two keys: (etime, value).
fn envelope(body: &[u8], what: &str) -> Result<(i64, PhpValue), LegacyError> {
    let v = serial::parse(body, &Limits::default())?;
    let PhpValue::Array(entries) = v else {
        return Err(LegacyError::shape(format!("the {what} is {}, not the array ['etime', 'body']", type_name(&v))));
    };
    let mut etime = None;
    let mut inner = None;
    for (k, v) in entries {
        match k {
            PhpKey::Str(s) if s == b"etime" => etime = Some(v),
            PhpKey::Str(s) if s == b"body" => inner = Some(v),
            PhpKey::Str(s) => {
                return Err(LegacyError::shape(format!(
                    "the {what} has a key '{}' besides 'etime' and 'body'",
                    rules::printable(&String::from_utf8_lossy(&s))
                )))
            }
            PhpKey::Int(i) => {
                return Err(LegacyError::shape(format!("the {what} has a key {i} besides 'etime' and 'body'")))
            }
        }
    }
    let etime = match etime {
        Some(PhpValue::Int(t)) => t,
        // time() + $delay with a float $delay; written as an integral float.
        Some(PhpValue::Float(f)) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e18 => f as i64,
        Some(other) => {
            return Err(LegacyError::shape(format!("the {what}'s etime is {}, not an integer", type_name(&other))))
        }
        None => return Err(LegacyError::shape(format!("the {what} has no 'etime'"))),
    };
    let inner = inner.ok_or_else(|| LegacyError::shape(format!("the {what} has no 'body'")))?;
    Ok((etime, inner))
}

fn text(v: PhpValue, field: &str) -> Result<String, LegacyError> {
    match v {
        PhpValue::Str(b) => {
            String::from_utf8(b).map_err(|_| LegacyError::value(format!("the task's {field} is not valid UTF-8")))
        }
        other => Err(LegacyError::shape(format!("the task's {field} is {}, not a string", type_name(&other)))),
    }
}

fn type_name(v: &PhpValue) -> String {
    match v {
        PhpValue::Null => "null".into(),
        PhpValue::Bool(_) => "a boolean".into(),
        PhpValue::Int(_) => "an integer".into(),
        PhpValue::Float(_) => "a float".into(),
        PhpValue::Str(_) => "a string".into(),
        PhpValue::Array(_) => "an array".into(),
        PhpValue::Object { class, .. } => format!("an object of class {class}"),
    }
}

/// A value with no JSON form, and where it is (the path is built while unwinding, so only on error).
struct JsonError {
    path: Vec<String>,
    what: String,
}

impl JsonError {
    fn new(what: impl Into<String>) -> Self {
        JsonError { path: Vec::new(), what: what.into() }
    }

    fn inside(mut self, key: &PhpKey) -> Self {
        self.path.push(match key {
            PhpKey::Int(i) => format!("[{i}]"),
            PhpKey::Str(s) => format!("[{}]", rules::printable(&String::from_utf8_lossy(s))),
        });
        self
    }

    fn at(self, root: &str) -> LegacyError {
        let path: String = self.path.iter().rev().map(String::as_str).collect();
        LegacyError::value(format!("{} at {root}{path}", self.what))
    }
}

/// A PHP value as JSON, by the rules of `php::convert` (see the module's documentation).
fn to_json(v: &PhpValue) -> Result<Value, JsonError> {
    match v {
        PhpValue::Null => Ok(Value::Null),
        PhpValue::Bool(b) => Ok(Value::Bool(*b)),
        PhpValue::Int(i) => Ok(Value::from(*i)),
        PhpValue::Float(f) => Number::from_f64(*f).map(Value::Number).ok_or_else(|| {
            let shown = if f.is_nan() {
                "NAN"
            } else if *f > 0.0 {
                "INF"
            } else {
                "-INF"
            };
            JsonError::new(format!("{shown} cannot be represented in JSON"))
        }),
        PhpValue::Str(s) => match std::str::from_utf8(s) {
            Ok(s) => Ok(Value::String(s.to_string())),
            Err(_) => Err(JsonError::new("string is not valid UTF-8")),
        },
        PhpValue::Array(entries) => {
            let is_list = entries.iter().enumerate().all(|(i, (k, _))| *k == PhpKey::Int(i as i64));
            if is_list {
                let mut out = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    out.push(to_json(v).map_err(|e| e.inside(k))?);
                }
                return Ok(Value::Array(out));
            }
            let mut out = Map::with_capacity(entries.len());
            for (k, v) in entries {
                let key = match k {
                    PhpKey::Int(i) => i.to_string(),
                    PhpKey::Str(s) => match std::str::from_utf8(s) {
                        Ok(s) => s.to_string(),
                        Err(_) => return Err(JsonError::new("an array key is not valid UTF-8").inside(k)),
                    },
                };
                out.insert(key, to_json(v).map_err(|e| e.inside(k))?);
            }
            Ok(Value::Object(out))
        }
        PhpValue::Object { class, props } if class == serial::STD_CLASS => {
            let mut out = Map::with_capacity(props.len());
            for (name, v) in props {
                let k = PhpKey::Str(name.clone());
                let key = match std::str::from_utf8(name) {
                    Ok(s) => s.to_string(),
                    Err(_) => return Err(JsonError::new("a property name is not valid UTF-8").inside(&k)),
                };
                out.insert(key, to_json(v).map_err(|e| e.inside(&k))?);
            }
            Ok(Value::Object(out))
        }
        PhpValue::Object { class, .. } => {
            Err(JsonError::new(format!("an object of class {class} cannot be in params")))
        }
    }
}

// ---- writing -------------------------------------------------------------------------------------

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
}

/// `s:<len>:"<bytes>";`
fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_str(out, &format!("s:{}:\"", b.len()));
    out.extend_from_slice(b);
    out.extend_from_slice(b"\";");
}

/// `a:2:{s:5:"etime";i:<etime>;s:4:"body";` (the caller writes the body and the closing brace).
fn envelope_head(out: &mut Vec<u8>, etime: i64) {
    write_str(out, &format!("a:2:{{s:5:\"etime\";i:{etime};s:4:\"body\";"));
}

/// What PHP's serialize() writes for json_decode($json, true) of this value.
fn write_json(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"N;"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"b:1;" } else { b"b:0;" }),
        Value::Number(n) => match n.as_i64() {
            Some(i) => write_str(out, &format!("i:{i};")),
            // json_decode makes a float of an integer beyond the 64-bit range, and of any float.
            None => write_str(out, &format!("d:{};", php_float(n.as_f64().unwrap_or(f64::NAN)))),
        },
        Value::String(s) => write_bytes(out, s.as_bytes()),
        Value::Array(items) => {
            write_str(out, &format!("a:{}:{{", items.len()));
            for (i, item) in items.iter().enumerate() {
                write_str(out, &format!("i:{i};"));
                write_json(out, item);
            }
            out.push(b'}');
        }
        Value::Object(map) => {
            write_str(out, &format!("a:{}:{{", map.len()));
            for (k, item) in map {
                match serial::numeric_key(k.as_bytes()) {
                    Some(i) => write_str(out, &format!("i:{i};")),
                    None => write_bytes(out, k.as_bytes()),
                }
                write_json(out, item);
            }
            out.push(b'}');
        }
    }
}

/// A float as PHP's serialize() writes it (serialize_precision -1): the shortest digits that read
/// back the same, in fixed notation when the decimal exponent is within -4..=16, else `d.dddE+x`;
/// no fraction on an integral value (`1`, not `1.0`); `-0` for negative zero.
pub fn php_float(f: f64) -> String {
    if f.is_nan() {
        return "NAN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "INF".into() } else { "-INF".into() };
    }
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if f == 0.0 {
        return format!("{sign}0");
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "1.2345e17", "5e-324".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    // Position of the decimal point relative to the digits, as dtoa counts it: 0.DIGITS x 10^decpt.
    let decpt = exp + 1;
    let n = digits.len() as i32;
    if !(-3..=17).contains(&decpt) {
        let rest = if digits.len() > 1 { &digits[1..] } else { "0" };
        let esign = if decpt - 1 < 0 { '-' } else { '+' };
        return format!("{sign}{}.{rest}E{esign}{}", &digits[..1], (decpt - 1).abs());
    }
    if decpt <= 0 {
        return format!("{sign}0.{}{digits}", "0".repeat((-decpt) as usize));
    }
    if decpt >= n {
        return format!("{sign}{digits}{}", "0".repeat((decpt - n) as usize));
    }
    format!("{sign}{}.{}", &digits[..decpt as usize], &digits[decpt as usize..])
}
