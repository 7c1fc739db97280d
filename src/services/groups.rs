//! Groups of tasks for PHP (`Asynclib\Ebats\Group`) and the CLI (`ebats groups:*`): a group made by
//! hand (its tasks published with its `open` record), and a group's progress, folded from the stream
//! `<prefix>.groups` (what it holds and why a follow-up is published once: `crate::group`).

use serde_json::{json, Map, Value};

use crate::broker::group_stream;
use crate::broker::names::Names;
use crate::broker::{BrokerError, Decl};
use crate::config::Settings;
use crate::dashboard::groups::GroupActions;
use crate::dashboard::schedules::Failed;
use crate::dispatch::{self, merge_decls};
use crate::group::state::{Closed, Fold, Group, State};
use crate::group::{self as groups, FollowUp, When};
use crate::metrics::status_doc::{GroupRow, GroupsDoc};
use crate::rules;
use crate::wire::TaskMsg;

pub use super::refused::Refused;

/// The tasks of a group as given: a list of `{topic, name, params?, delay?, id?}`.
fn members(tasks: &Value, group: &str) -> Result<Vec<TaskMsg>, String> {
    let list = match tasks {
        Value::Array(a) => a.clone(),
        Value::Object(o) => o.values().cloned().collect(),
        _ => return Err("the tasks of a group must be a list of arrays".into()),
    };
    let mut out: Vec<TaskMsg> = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let what = |m: String| format!("task #{i} of the group: {m}");
        let Value::Object(t) = t else {
            return Err(what("must be an array with 'topic' and 'name'".into()));
        };
        let text = |k: &str| t.get(k).and_then(Value::as_str).ok_or_else(|| what(format!("no string '{k}'")));
        let (topic, name) = (text("topic")?, text("name")?);
        rules::check_topic(topic).map_err(what)?;
        rules::check_task_name(name).map_err(what)?;
        let delay = match t.get("delay") {
            None | Some(Value::Null) => 0,
            Some(d) => {
                rules::check_delay(d.as_i64().ok_or_else(|| what("'delay' must be an int".into()))?).map_err(what)?
            }
        };
        let params = t.get("params").cloned().unwrap_or(Value::Array(vec![]));
        let mut m = TaskMsg::new(topic, name, params, delay);
        m.id = match t.get("id") {
            None | Some(Value::Null) => groups::member_id(group, i),
            Some(Value::String(id)) => {
                rules::check_id(id).map_err(what)?;
                id.clone()
            }
            Some(_) => return Err(what("'id' must be a string".into())),
        };
        if out.iter().any(|o| o.id == m.id) {
            return Err(what(format!("the id '{}' is taken by another task of the group", m.id)));
        }
        out.push(m);
    }
    if out.is_empty() {
        return Err("a group needs at least one task".into());
    }
    Ok(out)
}

/// The follow-ups as given: `['then' => event, 'catch' => event, 'finally' => event]` (or `success`,
/// `failure`, `always`), each an event name or a list of them.
fn follow_ups(on: &Value) -> Result<Vec<FollowUp>, String> {
    let empty = Map::new();
    let on = match on {
        Value::Object(o) => o,
        Value::Array(a) if a.is_empty() => &empty,
        Value::Null => &empty,
        _ => return Err("the follow-ups of a group must be an array of 'then', 'catch', 'finally' => event".into()),
    };
    let mut out = Vec::new();
    for (k, v) in on {
        let when = When::parse(k)?;
        let events = match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .map(|e| e.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| format!("the follow-ups '{k}' must be event names"))?,
            _ => return Err(format!("the follow-up '{k}' must be an event name")),
        };
        for event in events {
            rules::check_event_name(&event)?;
            let f = FollowUp { when, event };
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    Ok(out)
}

/// Publishes `tasks` as one group with the follow-ups `on` (carrying `params`), confirmed: its `open`
/// record first, then its tasks. Returns the group's id.
pub fn create(settings: &Settings, tasks: &Value, on: &Value, params: Value) -> Result<String, Refused> {
    let id = crate::wire::new_id();
    let mut tasks = members(tasks, &id).map_err(Refused::Bad)?;
    let on = follow_ups(on).map_err(Refused::Bad)?;
    let names = Names::new(&settings.prefix);
    let open = groups::open(&id, &mut tasks, on, params, "");
    let mut decls = vec![Decl::Groups];
    let mut msgs = vec![group_stream::record_message(&names, &open)];
    for t in &tasks {
        let (ds, out) = dispatch::task(&names, t, t.delay);
        merge_decls(&mut decls, ds);
        msgs.push(out);
    }
    dispatch::send(settings, &decls, &msgs).map_err(Refused::Broker)?;
    Ok(id)
}

/// A group's progress as shown (`Group::status`, `ebats groups:show`).
fn shown(id: &str, g: &Group, members: bool) -> Value {
    let c = g.counts();
    let mut v = json!({
        "id": id, "origin": g.origin, "total": c.total, "done": c.total - c.pending, "succeeded": c.succeeded,
        "failed": c.failed, "cancelled": c.cancelled, "pending": c.pending, "complete": g.complete(),
        "completed": g.done_at.is_some(), "opened_at": g.opened_at, "completed_at": g.done_at,
        "follow_ups": g.on.iter().map(|f| json!({
            "when": f.when.as_str(), "event": f.event, "published": g.fired.contains(&f.key()),
        })).collect::<Vec<_>>(),
    });
    if members {
        v["members"] = g.members.iter().map(|m| json!({"id": m, "state": g.member_state(m)})).collect();
    }
    v
}

/// A group done and pruned from the fold: its counts, without members and follow-ups.
fn closed(id: &str, c: &Closed) -> Value {
    let n = &c.counts;
    json!({
        "id": id, "origin": null, "total": n.total, "done": n.total - n.pending, "succeeded": n.succeeded,
        "failed": n.failed, "cancelled": n.cancelled, "pending": n.pending, "complete": true, "completed": true,
        "opened_at": null, "completed_at": c.at, "follow_ups": [], "members": null,
    })
}

/// The progress of the group `id` and its members' states (a group done a while ago, see
/// `group::state::prune`: its counts only); `None` when the stream knows no such group (never opened,
/// or done longer ago than `group::state::DONE_KEEP_MS`).
pub fn status(settings: &Settings, id: &str) -> Result<Option<Value>, Refused> {
    rules::check_id(id).map_err(Refused::Bad)?;
    let fold: Fold = group_stream::read_state(settings).map_err(Refused::Broker)?;
    if let Some(c) = fold.state.closed.get(id) {
        return Ok(Some(closed(id, c)));
    }
    Ok(fold.state.groups.get(id).map(|g| shown(id, g, true)))
}

/// The groups the stream holds whole (in flight, and the last ones done, see `group::state::prune`),
/// without their members, newest first.
pub fn list(settings: &Settings) -> Result<Vec<Value>, BrokerError> {
    let fold = group_stream::read_state(settings)?;
    let mut rows: Vec<(&String, &Group)> = fold.state.groups.iter().collect();
    rows.sort_by_key(|(_, g)| std::cmp::Reverse(g.opened_at));
    Ok(rows.into_iter().map(|(id, g)| shown(id, g, false)).collect())
}

/// The group actions the dashboard offers, handed to it when it is started (it sits below this tier).
pub struct Actions;

impl GroupActions for Actions {
    fn list(&self, settings: &Settings) -> Result<Vec<Value>, BrokerError> {
        list(settings)
    }
    fn status(&self, settings: &Settings, id: &str) -> Result<Option<Value>, Failed> {
        Ok(status(settings, id)?)
    }
    fn cancel(&self, settings: &Settings, id: &str) -> Result<i64, Failed> {
        Ok(super::cancel::group(settings, id, super::cancel::DEFAULT_FOR_SECS)?)
    }
}

/// The status document lists at most this many groups in flight, and this many done.
pub const SHOWN_OPEN: usize = 20;
pub const SHOWN_DONE: usize = 10;

/// A group's progress as the status document shows it.
fn row(id: &str, g: &Group) -> GroupRow {
    let c = g.counts();
    GroupRow {
        id: id.to_string(),
        origin: g.origin.clone(),
        total: c.total as u64,
        done: (c.total - c.pending) as u64,
        succeeded: c.succeeded as u64,
        failed: c.failed as u64,
        cancelled: c.cancelled as u64,
        pending: c.pending as u64,
        opened_at: g.opened_at,
        completed_at: g.done_at,
    }
}

/// The `n` groups of `rows` with the greatest `key`, greatest first (linear in the groups, then
/// sorting only the `n`).
fn newest<'a>(mut rows: Vec<(&'a String, &'a Group)>, n: usize, key: fn(&Group) -> i64) -> Vec<GroupRow> {
    let by = |a: &(&String, &Group), b: &(&String, &Group)| key(b.1).cmp(&key(a.1)).then_with(|| a.0.cmp(b.0));
    if rows.len() > n && n > 0 {
        rows.select_nth_unstable_by(n - 1, by);
    }
    rows.truncate(n);
    rows.sort_by(by);
    rows.into_iter().map(|(id, g)| row(id, g)).collect()
}

/// The groups of a fold summed up for the status document at `now` (the leader's fold, so no second
/// one): how many are in flight, `completions` (this leader's), the newest in flight and the last
/// done, each list bounded ([`SHOWN_OPEN`], [`SHOWN_DONE`]).
pub fn summary(state: &State, completions: u64, now: i64) -> GroupsDoc {
    let (open, done): (Vec<_>, Vec<_>) = state.groups.iter().partition(|(_, g)| g.done_at.is_none());
    GroupsDoc {
        at_ms: now,
        open: open.len() as u64,
        completions,
        in_flight: newest(open, SHOWN_OPEN, |g| g.opened_at),
        recently_done: newest(done, SHOWN_DONE, |g| g.done_at.unwrap_or(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_and_follow_ups_as_given() {
        let ok = json!([{"topic": "t", "name": "a"}, {"topic": "t", "name": "b", "delay": 5, "id": "mine", "params": {"x": 1}}]);
        let ms = members(&ok, "g").unwrap();
        assert_eq!(ms.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["g.0", "mine"]);
        assert_eq!((ms[1].delay, ms[1].params.clone()), (5, json!({"x": 1})));
        for (bad, says) in [
            (json!([]), "at least one"),
            (json!("x"), "list"),
            (json!([{"topic": "t"}]), "'name'"),
            (json!([{"topic": "a b", "name": "n"}]), "task #0"),
            (json!([{"topic": "t", "name": "n", "delay": -1}]), "delay"),
            (json!([{"topic": "t", "name": "n", "id": "x"}, {"topic": "t", "name": "n", "id": "x"}]), "taken"),
        ] {
            let e = members(&bad, "g").unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let on = follow_ups(&json!({"then": "ok", "catch": ["ko", "alert"], "finally": "fin"})).unwrap();
        assert_eq!(
            on.iter().map(FollowUp::key).collect::<Vec<_>>(),
            ["success.ok", "failure.ko", "failure.alert", "always.fin"]
        );
        assert!(follow_ups(&json!([])).unwrap().is_empty());
        assert!(follow_ups(&json!({"later": "x"})).is_err());
        assert!(follow_ups(&json!({"then": 3})).is_err());
        assert!(follow_ups(&json!("x")).is_err());
    }

    #[test]
    fn summed_up_bounded_and_newest_first() {
        use crate::group::state::Outcome;
        let group = |opened_at: i64, ends: usize, done_at: Option<i64>| Group {
            members: (0..3).map(|i| format!("m{i}")).collect(),
            on: vec![],
            params: Value::Null,
            origin: "ev".into(),
            opened_at,
            ends: (0..ends)
                .map(|i| (format!("m{i}"), if i == 0 { Outcome::Failed } else { Outcome::Succeeded }))
                .collect(),
            fired: Default::default(),
            done_at,
        };
        let mut state = State::default();
        for i in 0..(SHOWN_OPEN as i64 + 5) {
            state.groups.insert(format!("open{i:03}"), group(i, (i % 3) as usize, None));
        }
        for i in 0..(SHOWN_DONE as i64 + 3) {
            state.groups.insert(format!("done{i:03}"), group(i, 3, Some(1000 - i)));
        }
        let s = summary(&state, 7, 2000);
        assert_eq!((s.at_ms, s.open, s.completions), (2000, SHOWN_OPEN as u64 + 5, 7));
        assert_eq!(s.in_flight.len(), SHOWN_OPEN);
        assert_eq!(s.in_flight[0].id, format!("open{:03}", SHOWN_OPEN + 4), "the newest first");
        assert!(s.in_flight.windows(2).all(|w| w[0].opened_at > w[1].opened_at));
        let r = &s.in_flight[0]; // 24 % 3 = 0 members ended
        assert_eq!((r.total, r.done, r.pending, r.failed), (3, 0, 3, 0));
        let r = &s.in_flight[1]; // 23 % 3 = 2: one failed, one succeeded
        assert_eq!((r.total, r.done, r.pending, r.failed, r.succeeded), (3, 2, 1, 1, 1));
        assert_eq!(s.recently_done.len(), SHOWN_DONE);
        assert_eq!((s.recently_done[0].id.as_str(), s.recently_done[0].completed_at), ("done000", Some(1000)));
        let empty = summary(&State::default(), 0, 1);
        assert_eq!((empty.open, empty.in_flight.len(), empty.recently_done.len()), (0, 0, 0));
    }
}
