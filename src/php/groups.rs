//! `Asynclib\Ebats\Group`: groups of tasks made by hand, and the progress of any group.

use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendHashTable, Zval};

use crate::php::args::{array_json, broker_err, int_arg, refused, string_arg};
use crate::php::convert::to_zval;
use crate::php::settings;
use crate::services::groups;

#[php_class]
#[php(name = "Asynclib\\Ebats\\Group")]
pub struct Group;

#[php_impl]
impl Group {
    /// Publishes `$tasks` (each `['topic' => .., 'name' => .., 'params' => .., 'delay' => .., 'id' => ..]`)
    /// as one group; once every one has ended, the events of `$on` (`'then'`: all succeeded, `'catch'`:
    /// one failed or was cancelled, `'finally'`: always) are published once, with `$params` and the
    /// group's outcome under `_group`. Returns the group's id.
    pub fn create(
        tasks: &ZendHashTable,
        on: Option<&ZendHashTable>,
        params: Option<&ZendHashTable>,
    ) -> PhpResult<String> {
        let tasks = array_json(tasks, "the tasks of a group")?;
        let on = on.map(|o| array_json(o, "the follow-ups of a group")).transpose()?.unwrap_or_default();
        let params = params.map(|p| array_json(p, "the params of a group")).transpose()?.unwrap_or_default();
        groups::create(&settings::current()?, &tasks, &on, params).map_err(refused)
    }

    /// The group's progress (`total`, `done`, `succeeded`, `failed`, `cancelled`, `pending`, `complete`,
    /// `completed`, `follow_ups`) and its `members` with their states; null when no such group is known.
    pub fn status(id: String) -> PhpResult<Zval> {
        Ok(match groups::status(&settings::current()?, &id).map_err(refused)? {
            Some(v) => to_zval(&v),
            None => Zval::null(),
        })
    }

    /// Cancels every member of the group `$id` not started yet, for `$for` seconds (by default 7 days), on
    /// every worker, once the broker confirmed it: each ends as cancelled, counted by its group.
    pub fn cancel(id: &Zval, r#for: Option<&Zval>) -> PhpResult<()> {
        let id = string_arg(id, "Argument #1 ($id)")?;
        let secs = int_arg(r#for, crate::services::cancel::DEFAULT_FOR_SECS, "Argument #2 ($for)")?;
        crate::services::cancel::group(&settings::current()?, &id, secs).map(|_| ()).map_err(refused)
    }

    /// The groups in flight and the last ones done, newest first, without their members.
    pub fn list() -> PhpResult<Vec<Zval>> {
        Ok(groups::list(&settings::current()?).map_err(broker_err)?.iter().map(to_zval).collect())
    }
}
