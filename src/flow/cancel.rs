//! Cancelled tasks and groups, as the flow stream's fold knows them: a bounded map from a task id
//! (or a group id) to the time the cancel ends. Pure; the records are `flow::pause::Record::Cancel`.
//!
//! A cancel is kept until its end (`until`, ms since the epoch; by default the task's lifetime) and
//! then means nothing: [`Cancels::is_cancelled`] compares with the reader's clock, and the map is
//! pruned of what ended when a snapshot is written ([`Cancels::pruned`]). It holds at most
//! [`MAX_CANCELS`] entries: a cancel beyond that drops the one ending soonest. Every reader folds the
//! same records in the same order, so every reader drops the same one.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// The most cancels in force at once (a snapshot of them all is some 600 KB).
pub const MAX_CANCELS: usize = 10_000;

/// What a cancel names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// A task by its id (a chain's id cancels the steps of the chain not yet started).
    Task(String),
    /// Every member of a group.
    Group(String),
}

/// The ids a task is known by, for [`Cancels::is_cancelled`].
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a> {
    pub id: &'a str,
    pub group: Option<&'a str>,
    pub chain: Option<&'a str>,
}

/// The cancels in force, each with its end (ms since the epoch).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cancels {
    ends: BTreeMap<Target, i64>,
}

impl Cancels {
    /// Cancels `target` until `until` (a later end of a cancel already there wins). When full, the
    /// cancel ending soonest is dropped.
    pub fn add(&mut self, target: Target, until: i64) {
        let end = self.ends.get(&target).map_or(until, |e| (*e).max(until));
        self.ends.insert(target, end);
        while self.ends.len() > MAX_CANCELS {
            let soonest = self.ends.iter().min_by_key(|(t, e)| (**e, (*t).clone())).map(|(t, _)| t.clone());
            if let Some(t) = soonest {
                self.ends.remove(&t);
            }
        }
    }

    /// Whether a task known by `keys` is cancelled at `now_ms`: its id, its group or its chain.
    pub fn is_cancelled(&self, keys: Keys, now_ms: i64) -> bool {
        if self.ends.is_empty() {
            return false;
        }
        let live = |t: Target| self.ends.get(&t).is_some_and(|end| *end > now_ms);
        live(Target::Task(keys.id.to_string()))
            || keys.group.is_some_and(|g| live(Target::Group(g.to_string())))
            || keys.chain.is_some_and(|c| live(Target::Task(c.to_string())))
    }

    /// The cancels still in force at `now_ms`.
    pub fn pruned(&self, now_ms: i64) -> Cancels {
        Cancels { ends: self.ends.iter().filter(|(_, e)| **e > now_ms).map(|(t, e)| (t.clone(), *e)).collect() }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// As a snapshot holds them: `{"tasks":{id:until},"groups":{id:until}}`.
    pub fn to_value(&self) -> Value {
        let (mut tasks, mut groups) = (Map::new(), Map::new());
        for (t, end) in &self.ends {
            match t {
                Target::Task(id) => tasks.insert(id.clone(), json!(end)),
                Target::Group(id) => groups.insert(id.clone(), json!(end)),
            };
        }
        json!({"tasks": tasks, "groups": groups})
    }

    /// Read back from [`Cancels::to_value`]; absent or null: none (a snapshot written before cancels).
    pub fn from_value(v: &Value) -> Result<Cancels, String> {
        let mut c = Cancels::default();
        if v.is_null() {
            return Ok(c);
        }
        for (key, make) in [("tasks", Target::Task as fn(String) -> Target), ("groups", Target::Group)] {
            let Some(map) = v.get(key).filter(|m| !m.is_null()) else { continue };
            let map = map.as_object().ok_or_else(|| format!("'cancels.{key}' is not an object"))?;
            for (id, end) in map {
                crate::rules::check_id(id)?;
                let end = end.as_i64().ok_or_else(|| format!("the end of the cancel of '{id}' is not a number"))?;
                c.add(make(id.clone()), end);
            }
        }
        Ok(c)
    }
}

/// The end of a cancel made at `now_ms` for `for_secs` seconds, checked: 1 s to 10 years.
pub fn until(now_ms: i64, for_secs: i64) -> Result<i64, String> {
    const MAX: i64 = 10 * 366 * 24 * 3600;
    if !(1..=MAX).contains(&for_secs) {
        return Err(format!("a cancel lasts from 1 to {MAX} seconds, got {for_secs}"));
    }
    Ok(now_ms + for_secs * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys<'a>(id: &'a str, group: Option<&'a str>, chain: Option<&'a str>) -> Keys<'a> {
        Keys { id, group, chain }
    }

    #[test]
    fn what_a_cancel_covers_and_until_when() {
        let mut c = Cancels::default();
        c.add(Target::Task("t1".into()), 1000);
        c.add(Target::Group("g1".into()), 2000);
        c.add(Target::Task("ch".into()), 3000);
        // (keys, now, cancelled)
        let table = [
            (keys("t1", None, None), 999, true),
            (keys("t1", None, None), 1000, false),
            (keys("t2", None, None), 0, false),
            (keys("t2", Some("g1"), None), 1999, true),
            (keys("t2", Some("g2"), None), 0, false),
            // A task id is not a group id.
            (keys("t2", Some("t1"), None), 0, false),
            (keys("ch-2", None, Some("ch")), 2999, true),
            (keys("ch-2", None, Some("ch")), 3000, false),
        ];
        for (i, (k, now, want)) in table.into_iter().enumerate() {
            assert_eq!(c.is_cancelled(k, now), want, "case {i}");
        }
    }

    #[test]
    fn the_later_end_wins_and_ended_ones_are_pruned() {
        let mut c = Cancels::default();
        c.add(Target::Task("a".into()), 5000);
        c.add(Target::Task("a".into()), 1000);
        assert!(c.is_cancelled(keys("a", None, None), 4000));
        c.add(Target::Task("b".into()), 1000);
        assert_eq!(c.pruned(2000).len(), 1);
        assert_eq!(c.pruned(6000).len(), 0);
    }

    #[test]
    fn the_map_is_bounded_dropping_the_soonest_end() {
        let mut c = Cancels::default();
        for i in 0..MAX_CANCELS as i64 {
            c.add(Target::Task(format!("t{i}")), 10_000 + i);
        }
        c.add(Target::Group("g".into()), 1_000_000);
        assert_eq!(c.len(), MAX_CANCELS);
        assert!(!c.is_cancelled(keys("t0", None, None), 0), "the soonest end was dropped");
        assert!(c.is_cancelled(keys("t1", None, None), 0));
        assert!(c.is_cancelled(keys("x", Some("g"), None), 0));
    }

    #[test]
    fn cancels_read_back_as_written() {
        let mut c = Cancels::default();
        c.add(Target::Task("a".into()), 5);
        c.add(Target::Group("g".into()), 7);
        assert_eq!(Cancels::from_value(&c.to_value()), Ok(c));
        assert_eq!(Cancels::from_value(&Value::Null), Ok(Cancels::default()));
        for bad in [json!({"tasks": []}), json!({"tasks": {"a b": 1}}), json!({"groups": {"g": "x"}})] {
            assert!(Cancels::from_value(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_cancel_lasts_from_a_second_to_ten_years() {
        assert_eq!(until(1000, 1), Ok(2000));
        assert!(until(0, 0).is_err());
        assert!(until(0, -5).is_err());
        assert!(until(0, 11 * 366 * 24 * 3600).is_err());
    }
}
