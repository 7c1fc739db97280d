//! `Asynclib\Ebats\History`: the execution history, read and followed from PHP.

use ext_php_rs::prelude::*;
use ext_php_rs::types::Zval;
use serde_json::Value;

use crate::history::{self, Query, Record};
use crate::php::args::{self, bad_input, broker_err};
use crate::php::call::{self, Thrown};
use crate::php::convert;
use crate::php::settings;
use crate::worker::signals::StopOnSignals;

/// A filter array (`['topic' => 'demo', 'status' => 'fail', 'since' => '10m']`) as a query.
fn query(filter: Option<&Zval>) -> PhpResult<Query> {
    let value = match filter {
        None => Value::Array(vec![]),
        Some(zv) if zv.dereference().array().is_some() => {
            convert::to_json(zv).map_err(|e| bad_input(format!("history filter: {e}")))?
        }
        Some(zv) => {
            return Err(args::type_error(format!(
                "the history filter must be an array, {} given",
                zv.dereference().get_type()
            )))
        }
    };
    let map = match value {
        Value::Object(m) => m,
        Value::Array(a) if a.is_empty() => Default::default(),
        _ => return Err(bad_input("the history filter must be an array with string keys, like ['status' => 'fail']")),
    };
    let mut pairs = Vec::with_capacity(map.len());
    for (k, v) in &map {
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Null => continue,
            other => return Err(bad_input(format!("history filter '{k}' must be a string or a number, got {other}"))),
        };
        pairs.push((k.as_str(), v));
    }
    Query::from_pairs(pairs, crate::wire::now_ms()).map_err(bad_input)
}

fn to_zval(r: &Record) -> Zval {
    convert::to_zval(&serde_json::to_value(r).expect("a record always serializes"))
}

#[php_class]
#[php(name = "Asynclib\\Ebats\\History")]
pub struct History;

#[php_impl]
impl History {
    /// The newest records (at most `limit`, default 1000) matching the filter, oldest first.
    /// Filter keys: topic, task, status (succ, fail, retry, err, cancelled, held or Worker::STATE_*),
    /// held (rate, concurrency, paused), since (seconds, or 10m, 2h, 7d), limit, id (a task id: every
    /// attempt of that task).
    pub fn read(filter: Option<&Zval>) -> PhpResult<Vec<Zval>> {
        let q = query(filter)?;
        let s = settings::current()?;
        let records = history::read(&s, &q).map_err(broker_err)?;
        Ok(records.iter().map(to_zval).collect())
    }

    /// Calls `$callback($record)` for each record matching the filter as it is written (from
    /// `since` when given, else from now on), until it returns false, SIGTERM or SIGINT.
    pub fn follow(filter: &Zval, callback: &Zval) -> PhpResult<()> {
        let q = query(Some(filter))?;
        if !callback.is_callable() {
            return Err(args::type_error(
                "Asynclib\\Ebats\\History::follow(): Argument #2 ($callback) must be a valid callback",
            ));
        }
        let s = settings::current()?;
        let _stop = StopOnSignals::install(&call::unhandled_stop_signals());
        let mut unwinding = false;
        let tick = || match call::dispatch_php_signals() {
            Ok(()) => false,
            Err(Thrown::Exit) => true,
            Err(Thrown::Exception { object, .. }) => {
                call::rethrow(object);
                true
            }
        };
        let each = |r: Record| match call::call(callback, vec![&to_zval(&r)]) {
            Ok(v) => v.bool() != Some(false),
            Err(Thrown::Exit) => {
                unwinding = true;
                false
            }
            Err(Thrown::Exception { object, .. }) => {
                call::rethrow(object);
                unwinding = true;
                false
            }
        };
        let r = history::follow(&s, &q, tick, each);
        if unwinding {
            return Ok(());
        }
        r.map_err(broker_err)
    }
}
