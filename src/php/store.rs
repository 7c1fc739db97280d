//! `Asynclib\Ebats\FailedStore`: list, replay and purge failed tasks from PHP, and list and purge
//! the events the scheduler could not read (the store named `FailedStore::EVENTS`).

use ext_php_rs::prelude::*;
use ext_php_rs::types::Zval;

use crate::broker::store::{self, Store};
use crate::php::args::{self, bad_input, broker_err};
use crate::php::convert;
use crate::php::settings;
use crate::rules;

/// The name of the store of unreadable events: it cannot be a topic (no `@` in topics).
const EVENTS: &str = "@events";

fn store_of(name: &str) -> PhpResult<Store> {
    if name == EVENTS {
        return Ok(Store::Events);
    }
    args::topic(name)?;
    Ok(Store::Topic(name.to_string()))
}

#[php_class]
#[php(name = "Asynclib\\Ebats\\FailedStore")]
pub struct FailedStore;

#[php_impl]
impl FailedStore {
    /// The store of event bodies the scheduler could not read: `FailedStore::list(FailedStore::EVENTS)`.
    pub const EVENTS: &'static str = EVENTS;

    /// Up to `$limit` entries of the store of `$topic` (or of `FailedStore::EVENTS`), oldest
    /// first: tasks in the wire format, bodies kept as they came with `unreadable: true` and the
    /// `body`, each with a `failed` entry (message, class, attempts, failed_at, status).
    #[php(defaults(limit = 100))]
    pub fn list(topic: String, limit: i64) -> PhpResult<Vec<Zval>> {
        let store = store_of(&topic)?;
        if !(1..=100_000).contains(&limit) {
            return Err(bad_input("limit must be between 1 and 100000"));
        }
        let s = settings::current()?;
        let entries = store::list(&s, &store, limit as usize).map_err(broker_err)?;
        Ok(entries.iter().map(convert::to_zval).collect())
    }

    /// Moves the failed task `$id` (or all when null) back to the ready queue; returns how many.
    /// Unreadable entries stay in the store: asked for by id, they are refused with a TaskException.
    /// A unique task takes its key again; when another task holds it, it stays in the store (asked
    /// for by id: a TaskException naming the holder).
    pub fn replay(topic: String, id: Option<String>) -> PhpResult<i64> {
        if topic == EVENTS {
            return Err(bad_input(
                "unreadable events cannot be replayed: they could not be read as events, so no task can be made \
                 from them; list them to see what came, then purge them",
            ));
        }
        args::topic(&topic)?;
        if let Some(id) = &id {
            // No entry that can be replayed has an id outside the rule: say so rather than find nothing.
            args::checked(rules::check_id(id))?;
        }
        let s = settings::current()?;
        let done = store::replay(&s, &topic, id.as_deref()).map_err(broker_err)?;
        if let (Some(id), Some((_, holder))) = (&id, done.duplicates.first()) {
            return Err(bad_input(format!(
                "failed task {} of topic '{topic}' was not replayed: its unique key is held by task {holder}, \
                 waiting or running; it stays in the store",
                rules::printable(id)
            )));
        }
        if let (Some(id), Some((_, reason))) = (&id, done.kept.first()) {
            return Err(bad_input(format!(
                "failed task {} of topic '{topic}' cannot be replayed: its body is not a task of this topic ({}); \
                 it stays in the store until purged",
                rules::printable(id),
                reason
            )));
        }
        Ok(done.moved as i64)
    }

    /// Deletes every entry of the store of `$topic` (or of `FailedStore::EVENTS`); returns how many.
    pub fn purge(topic: String) -> PhpResult<i64> {
        let store = store_of(&topic)?;
        let s = settings::current()?;
        store::purge(&s, &store).map(|n| n as i64).map_err(broker_err)
    }
}
