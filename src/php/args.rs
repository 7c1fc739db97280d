//! PHP arguments: coercion the way PHP's coercive typing mode reads them, the validations several
//! classes share (each written once here), and the constructors of the exceptions they throw.

use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendHashTable, Zval};
use serde_json::Value;

use crate::broker::BrokerError;
use crate::php::convert;
use crate::php::exceptions::{exception, Kind};
use crate::rules;

/// A broker failure, as the `ConnectionedException` PHP code catches.
pub fn broker_err(e: BrokerError) -> PhpException {
    exception(Kind::Connectioned, e.to_string())
}

/// A value the caller should not have passed: a `TaskException` saying what is wrong.
pub fn bad_input(msg: impl Into<String>) -> PhpException {
    exception(Kind::Task, msg)
}

/// An argument of the wrong type: PHP's own `TypeError`.
pub fn type_error(msg: impl Into<String>) -> PhpException {
    PhpException::new(msg.into(), 0, ext_php_rs::zend::ce::type_error())
}

/// A rule's verdict (see `crate::rules`) as a PHP result.
pub fn checked<T>(r: Result<T, String>) -> PhpResult<T> {
    r.map_err(bad_input)
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
    Err(type_error(format!("{what} must be of type int, {} given", zv.get_type())))
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
    Err(type_error(format!("{what} must be of type string, {} given", zv.get_type())))
}

/// A value sent as JSON (task params, event options, a message).
pub fn params_json(zv: &Zval, what: &str) -> PhpResult<Value> {
    convert::to_json(zv).map_err(|e| bad_input(format!("{what} cannot be sent as JSON: {e}")))
}

/// An array sent as JSON.
pub fn array_json(arr: &ZendHashTable, what: &str) -> PhpResult<Value> {
    let mut zv = Zval::new();
    zv.set_hashtable(arr.to_owned());
    params_json(&zv, what)
}

/// A callable argument; `function` names the method for the TypeError, e.g. `Asynclib\Ebats\Worker::__construct()`.
pub fn callback(zv: &Zval, function: &str) -> PhpResult<Zval> {
    if !zv.is_callable() {
        return Err(type_error(format!("{function}: Argument #1 ($callback) must be a valid callback")));
    }
    Ok(zv.shallow_clone())
}

/// Messages a consumer holds unacknowledged at once.
pub fn prefetch(n: i64) -> PhpResult<u16> {
    if !(1..=65535).contains(&n) {
        return Err(bad_input(format!("prefetch must be between 1 and 65535, got {n}")));
    }
    Ok(n as u16)
}

/// A topic the caller names (a worker's queue, the failed store's topic).
pub fn topic(topic: &str) -> PhpResult<()> {
    checked(rules::check_topic(topic))
}

/// A user's exchange and its type, as `setExchange()` of `Core\Publish` and `Core\Consumer` take them.
pub fn exchange(name: String, kind: String) -> PhpResult<(String, String)> {
    if name.is_empty() {
        return Err(bad_input("exchange name must not be empty"));
    }
    checked(rules::check_amqp_name("exchange name", &name))?;
    if name.starts_with("amq.") {
        return Err(bad_input(format!("exchange '{}' is reserved by the broker (amq.*)", rules::printable(&name))));
    }
    crate::broker::topology::exchange_kind(&kind).map_err(|e| bad_input(e.to_string()))?;
    Ok((name, kind))
}

/// A service's refusal ([`crate::services::refused::Refused`]) as the exception PHP code catches: a
/// `TaskException` for the caller's input, a `ConnectionedException` for the broker.
pub fn refused(e: crate::services::refused::Refused) -> PhpException {
    match e {
        crate::services::refused::Refused::Broker(e) => broker_err(e),
        crate::services::refused::Refused::Bad(m) => bad_input(m),
    }
}
