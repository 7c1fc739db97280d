//! `ebats_migrate_check()`: what of the original library is on the broker (converted to PHP arrays;
//! the logic is `broker::legacy_topology::check`).

use ext_php_rs::prelude::PhpResult;
use ext_php_rs::types::Zval;
use serde_json::json;

use super::args::{bad_input, broker_err};
use super::{convert, settings};
use crate::broker::legacy_topology;
use crate::broker::ErrorKind;

/// `ebats_migrate_check(array $topics): array` (registered in `php/mod.rs`): one row per exchange and queue of the original's
/// names that exists (exchanges always), each with `what`, `name`, `found`, `messages`,
/// `consumers`, `action` and `needs_hand`.
pub fn check(topics: Vec<String>) -> PhpResult<Vec<Zval>> {
    let s = settings::current()?;
    let rows = legacy_topology::check(&s, &topics).map_err(|e| match e.kind() {
        ErrorKind::Invalid => bad_input(e.to_string()),
        _ => broker_err(e),
    })?;
    Ok(rows
        .iter()
        .map(|r| {
            convert::to_zval(&json!({
                "what": r.what, "name": r.name, "found": r.found, "messages": r.messages,
                "consumers": r.consumers, "action": r.action, "needs_hand": r.needs_hand,
            }))
        })
        .collect())
}
