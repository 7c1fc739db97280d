//! `Asynclib\Ebats\Limits`: rate and concurrency limits of a topic's workers, set at run time on every
//! host (values only; `services::limits` does the rest).

use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendHashTable, Zval};
use serde_json::Value;

use crate::php::args::refused;
use crate::php::args::{array_json, bad_input};
use crate::php::convert;
use crate::php::settings;
use crate::services::limits::{self, Refused};

fn all(r: Result<Vec<Value>, Refused>) -> PhpResult<Vec<Zval>> {
    Ok(r.map_err(refused)?.iter().map(convert::to_zval).collect())
}

#[php_class]
#[php(name = "Asynclib\\Ebats\\Limits")]
pub struct Limits;

#[php_impl]
impl Limits {
    /// Sets a limit for every worker of the topic, on every host, within a second: `rate` ('20/s',
    /// '600/m', '5/10s'), `burst`, `concurrency`, over `name` (one task name) and/or `key` (a key
    /// template such as 'customer:{customer_id}'), replacing the one of the same scope (a code
    /// limit too). True when it changed something.
    pub fn set(topic: String, limit: &ZendHashTable) -> PhpResult<bool> {
        let spec = array_json(limit, "Argument #2 ($limit)")?;
        limits::set(&settings::current()?, &topic, &spec).map_err(refused)
    }

    /// Removes the run-time limit of the topic over the scope given (`name`, `key`; none: the whole
    /// topic). True when there was one; a limit of the worker's code applies again.
    pub fn clear(topic: String, scope: Option<&ZendHashTable>) -> PhpResult<bool> {
        let scope = match scope {
            Some(s) => array_json(s, "Argument #2 ($scope)")?,
            None => Value::Array(Vec::new()),
        };
        limits::clear(&settings::current()?, &topic, &scope).map_err(refused)
    }

    /// The run-time limits (of the topic, or of every topic), by id: each an array with `id`, `topic`,
    /// `name`, `key`, `rate`, `burst`, `concurrency`.
    pub fn list(topic: Option<String>) -> PhpResult<Vec<Zval>> {
        if topic.as_deref() == Some("") {
            return Err(bad_input("a topic cannot be empty (pass null for every topic)"));
        }
        all(limits::list(&settings::current()?, topic.as_deref()))
    }
}
