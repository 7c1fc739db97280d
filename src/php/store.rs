//! `Asynclib\Ebats\FailedStore`: list, replay and purge failed tasks from PHP.

use ext_php_rs::prelude::*;
use ext_php_rs::types::Zval;

use crate::broker::store;
use crate::php::args::{self, bad_input, broker_err};
use crate::php::convert;
use crate::php::settings;

#[php_class]
#[php(name = "Asynclib\\Ebats\\FailedStore")]
pub struct FailedStore;

#[php_impl]
impl FailedStore {
    /// Up to `$limit` failed tasks of `$topic`, oldest first, each an array of the wire format
    /// with a `failed` entry (message, class, attempts, failed_at, status).
    #[php(defaults(limit = 100))]
    pub fn list(topic: String, limit: i64) -> PhpResult<Vec<Zval>> {
        args::topic(&topic)?;
        if !(1..=100_000).contains(&limit) {
            return Err(bad_input("limit must be between 1 and 100000"));
        }
        let s = settings::current()?;
        let tasks = store::list(&s, &topic, limit as usize).map_err(broker_err)?;
        Ok(tasks.iter().map(|t| convert::to_zval(&t.to_value())).collect())
    }

    /// Moves the failed task `$id` (or all when null) back to the ready queue; returns how many.
    pub fn replay(topic: String, id: Option<String>) -> PhpResult<i64> {
        args::topic(&topic)?;
        let s = settings::current()?;
        store::replay(&s, &topic, id.as_deref()).map(|n| n as i64).map_err(broker_err)
    }

    /// Deletes every failed task of `$topic`; returns how many.
    pub fn purge(topic: String) -> PhpResult<i64> {
        args::topic(&topic)?;
        let s = settings::current()?;
        store::purge(&s, &topic).map(|n| n as i64).map_err(broker_err)
    }
}
