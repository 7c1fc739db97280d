//! The records of the stream `<prefix>.flow` and what folding them gives: the paused topics and the
//! limits set at run time. Pure; the stream is read and written in `broker::flow_stream`.
//!
//! Records are JSON objects `{"v":1,"type":...,"at":ms,...}`: `pause` and `resume` of a topic, `limit`
//! (a limit set: its topic, scope, rate, burst, concurrency; it replaces the one with the same id,
//! [`Limit::id`]) and `unlimit` (the limit of an id removed), each with the writer's request id so it
//! can find its own record; `cancel` of a task or a group until a time (`flow::cancel`); and
//! `snapshot`: the whole state (paused topics, limits, the cancels in force) as folded through the
//! offset `through`. Markers (`broker::stream_read::marker`) carry no record.
//!
//! A fold that starts at the stream's offset 0 applies every change in order and ignores snapshots
//! (they say what it already knows). One that starts later (retention deleted the start) keeps the
//! changes it reads until the first snapshot, takes the snapshot's state, and applies again on top the
//! changes read before it that it does not cover (offset after `through`). Every reader folds the same
//! records in the stream's order, so all reach the same state.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::cancel::{Cancels, Target};
use super::key::Template;
use super::limits::{check_concurrency, Limit, LimitSet, Rate, Scope, COUNT_MAX};

/// A reader that read more records than this since the last snapshot appends one (see `flow`).
pub const SNAPSHOT_EVERY: u64 = 1000;
/// The longest limit id an `unlimit` record may carry.
const ID_MAX: usize = 1024;

/// A record of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Pause {
        topic: String,
        rid: String,
    },
    Resume {
        topic: String,
        rid: String,
    },
    Limit {
        limit: Limit,
        rid: String,
    },
    Unlimit {
        topic: String,
        id: String,
        rid: String,
    },
    Snapshot {
        paused: BTreeSet<String>,
        limits: Vec<Limit>,
        through: u64,
        cancels: Cancels,
    },
    /// A task (by id) or a group cancelled until `until` (ms since the epoch).
    Cancel {
        target: Target,
        until: i64,
    },
}

/// A rate as it is written (`10/s`, `600/m`, `5/10s`); the burst is apart.
pub fn rate_text(r: &Rate) -> String {
    let (unit, ms) = match r.per_ms {
        p if p % 3_600_000 == 0 => ("h", 3_600_000),
        p if p % 60_000 == 0 => ("m", 60_000),
        p if p % 1000 == 0 => ("s", 1000),
        _ => return format!("{}/{}ms", r.count, r.per_ms),
    };
    match r.per_ms / ms {
        1 => format!("{}/{unit}", r.count),
        k => format!("{}/{k}{unit}", r.count),
    }
}

/// A limit as an object: `topic`, `name` and `key` (its scope, null when not given), `rate` (its text,
/// or null), `burst`, `concurrency` (or null); what a record holds and what a list shows.
pub fn limit_json(l: &Limit) -> Value {
    let (name, key) = match &l.scope {
        Scope::Topic => (None, None),
        Scope::Name(n) => (Some(n.as_str()), None),
        Scope::Key { name, template } => (name.as_deref(), Some(template.source())),
    };
    json!({
        "id": l.id(), "topic": l.topic, "name": name, "key": key,
        "rate": l.rate.as_ref().map(rate_text), "burst": l.rate.map_or(0, |r| r.burst),
        "concurrency": l.concurrency,
    })
}

/// The keys a limit's description may have.
const SPEC_KEYS: [&str; 5] = ["rate", "burst", "concurrency", "name", "key"];

/// A limit of `topic` from its description (`rate` `'20/s'`, `burst` 5, `concurrency` 4, `name` a task
/// name or null for every name, `key` a key template or null): an error names what is wrong. `strict`
/// refuses keys it does not know (what a user wrote); a record read back ignores them (a newer
/// writer's) and its `topic` and `id`.
pub fn parse_limit(topic: &str, spec: &Value, strict: bool) -> Result<Limit, String> {
    crate::rules::check_topic(topic)?;
    let empty = Map::new();
    let obj = match spec {
        Value::Object(o) => o,
        Value::Array(a) if a.is_empty() => &empty,
        _ => return Err("a limit is an array of keys (rate, burst, concurrency, name, key)".into()),
    };
    if strict {
        if let Some(k) = obj.keys().find(|k| !SPEC_KEYS.contains(&k.as_str())) {
            return Err(format!("a limit has no key '{k}' (it takes rate, burst, concurrency, name, key)"));
        }
    }
    let given = |k: &str| obj.get(k).filter(|v| !v.is_null());
    let text = |k: &str| -> Result<Option<&str>, String> {
        given(k).map(|v| v.as_str().ok_or_else(|| format!("a limit's '{k}' is a string, not {v}"))).transpose()
    };
    let whole = |k: &str| -> Result<Option<i64>, String> {
        given(k).map(|v| v.as_i64().ok_or_else(|| format!("a limit's '{k}' is a whole number, not {v}"))).transpose()
    };
    let name = text("name")?.map(str::to_string);
    if let Some(n) = &name {
        crate::rules::check_task_name(n)?;
    }
    let scope = match (name, text("key")?) {
        (None, None) => Scope::Topic,
        (Some(n), None) => Scope::Name(n),
        (name, Some(k)) => Scope::Key { name, template: Template::parse(k)? },
    };
    let burst = match whole("burst")? {
        None => 0,
        Some(b) => u32::try_from(b)
            .ok()
            .filter(|b| *b <= COUNT_MAX)
            .ok_or_else(|| format!("a burst is 0 to {COUNT_MAX}, not {b}"))?,
    };
    let rate = text("rate")?.map(|r| Rate::parse(r, burst)).transpose()?;
    if rate.is_none() && burst > 0 {
        return Err("a burst goes with a rate: this limit has none".into());
    }
    let concurrency = whole("concurrency")?.map(check_concurrency).transpose()?;
    if rate.is_none() && concurrency.is_none() {
        return Err("a limit needs a rate, a concurrency or both".into());
    }
    Ok(Limit { topic: topic.to_string(), scope, rate, concurrency })
}

/// What a limit's description without its rate and concurrency names: its id (`unlimit`, a clear).
pub fn scope_id(topic: &str, spec: &Value) -> Result<String, String> {
    let mut only: Map<String, Value> = Map::new();
    match spec {
        Value::Object(o) => {
            if let Some(k) = o.keys().find(|k| !["name", "key"].contains(&k.as_str())) {
                return Err(format!("a limit's scope has no key '{k}' (it takes name, key)"));
            }
            only.extend(o.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Value::Array(a) if a.is_empty() => {}
        _ => return Err("a limit's scope is an array of keys (name, key)".into()),
    }
    only.insert("concurrency".into(), json!(1));
    parse_limit(topic, &Value::Object(only), true).map(|l| l.id())
}

impl Record {
    pub fn to_json(&self, at: i64) -> String {
        match self {
            Record::Pause { topic, rid } => json!({"v":1,"type":"pause","topic":topic,"rid":rid,"at":at}),
            Record::Resume { topic, rid } => json!({"v":1,"type":"resume","topic":topic,"rid":rid,"at":at}),
            Record::Limit { limit, rid } => {
                json!({"v":1,"type":"limit","limit":limit_json(limit),"rid":rid,"at":at})
            }
            Record::Unlimit { topic, id, rid } => {
                json!({"v":1,"type":"unlimit","topic":topic,"id":id,"rid":rid,"at":at})
            }
            Record::Snapshot { paused, limits, through, cancels } => {
                let limits: Vec<Value> = limits.iter().map(limit_json).collect();
                json!({"v":1,"type":"snapshot","paused":paused,"limits":limits,"through":through,
                    "cancels":cancels.to_value(),"at":at})
            }
            Record::Cancel { target: Target::Task(id), until } => {
                json!({"v":1,"type":"cancel","id":id,"until":until,"at":at})
            }
            Record::Cancel { target: Target::Group(id), until } => {
                json!({"v":1,"type":"cancel","group":id,"until":until,"at":at})
            }
        }
        .to_string()
    }

    /// The record in a body; an error naming what is wrong (a topic and a limit are checked with the
    /// rules they were written with).
    pub fn from_json(body: &[u8]) -> Result<Record, String> {
        let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
        let text = |k: &str| v[k].as_str().map(str::to_string).ok_or_else(|| format!("no '{k}'"));
        let topic = || {
            let t = text("topic")?;
            crate::rules::check_topic(&t).map(|_| t)
        };
        let limit = |l: &Value| {
            let t = l["topic"].as_str().ok_or("a limit without 'topic'")?;
            parse_limit(t, l, false)
        };
        match v["type"].as_str() {
            Some("pause") => Ok(Record::Pause { topic: topic()?, rid: text("rid")? }),
            Some("resume") => Ok(Record::Resume { topic: topic()?, rid: text("rid")? }),
            Some("limit") => Ok(Record::Limit { limit: limit(&v["limit"])?, rid: text("rid")? }),
            Some("unlimit") => {
                let id = text("id")?;
                if id.is_empty() || id.len() > ID_MAX {
                    return Err(format!("a limit id is 1 to {ID_MAX} bytes"));
                }
                Ok(Record::Unlimit { topic: topic()?, id, rid: text("rid")? })
            }
            Some("snapshot") => {
                let through = v["through"].as_u64().ok_or("no 'through'")?;
                let list = v["paused"].as_array().ok_or("no 'paused'")?;
                let mut paused = BTreeSet::new();
                for t in list {
                    let t = t.as_str().ok_or("a paused topic is not a string")?;
                    crate::rules::check_topic(t)?;
                    paused.insert(t.to_string());
                }
                // A snapshot written before limits existed has none.
                let limits = match v.get("limits") {
                    None => Vec::new(),
                    Some(l) => {
                        l.as_array().ok_or("'limits' is not a list")?.iter().map(limit).collect::<Result<_, _>>()?
                    }
                };
                let cancels = Cancels::from_value(&v["cancels"])?;
                Ok(Record::Snapshot { paused, limits, through, cancels })
            }
            Some("cancel") => {
                let until = v["until"].as_i64().ok_or("no 'until'")?;
                let target = match (v["id"].as_str(), v["group"].as_str()) {
                    (Some(id), None) => Target::Task(id.to_string()),
                    (None, Some(g)) => Target::Group(g.to_string()),
                    _ => return Err("a cancel names either an 'id' or a 'group'".into()),
                };
                let (Target::Task(id) | Target::Group(id)) = &target;
                crate::rules::check_id(id)?;
                Ok(Record::Cancel { target, until })
            }
            other => Err(format!("unknown record type {other:?}")),
        }
    }
}

/// Where a limit in force comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The worker's code (`Worker::setLimit`).
    Code,
    /// Set at run time (`Limits::set`, `ebats limits:set`): it wins over the code's of the same id.
    RunTime,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Code => "code",
            Source::RunTime => "run time",
        }
    }
}

/// The limits in force for a worker of `topic`: those of its code, each replaced by the run-time
/// limit of the same id when there is one, then the run-time limits of the topic its code does not
/// have (by id). A run-time limit of another topic is not the worker's.
pub fn effective<'a>(
    topic: &str,
    code: &'a [Limit],
    runtime: impl Iterator<Item = &'a Limit> + Clone,
) -> Vec<(&'a Limit, Source)> {
    let runtime = runtime.filter(|l| l.topic == topic);
    let find = |id: &str| runtime.clone().find(|l| l.id() == id);
    let mut out: Vec<(&Limit, Source)> = code
        .iter()
        .filter(|l| l.topic == topic)
        .map(|l| find(&l.id()).map_or((l, Source::Code), |r| (r, Source::RunTime)))
        .collect();
    for r in runtime.clone() {
        if !code.iter().any(|l| l.topic == topic && l.id() == r.id()) {
            out.push((r, Source::RunTime));
        }
    }
    out
}

/// The paused topics and the run-time limits, folded from the stream.
#[derive(Debug, Clone, Default)]
pub struct Fold {
    paused: BTreeSet<String>,
    /// Run-time limits by id.
    limits: BTreeMap<String, Limit>,
    cancels: Cancels,
    /// Counts the changes to `cancels` (a watcher hands them on when it moved).
    cancels_changed: u64,
    /// The fold knows the whole state: it started at offset 0, or met a snapshot.
    grounded: bool,
    started: bool,
    /// Changes read before the first snapshot by a fold that started after offset 0.
    pending: Vec<(u64, Record)>,
    /// Messages read since the last snapshot (or since the start).
    since_snapshot: u64,
    /// The request ids met, and whether each changed the state when applied.
    applied: Vec<(String, bool)>,
}

impl Fold {
    /// Takes the message at `offset`: a record, or `None` for a marker or a message that is not one.
    pub fn push(&mut self, offset: u64, record: Option<Record>) {
        if !self.started {
            self.started = true;
            self.grounded = offset == 0;
        }
        match record {
            Some(Record::Snapshot { paused, limits, through, cancels }) => {
                self.since_snapshot = 0;
                if !self.grounded {
                    self.paused = paused;
                    self.limits = limits.into_iter().map(|l| (l.id(), l)).collect();
                    self.cancels = cancels;
                    self.cancels_changed += 1;
                    self.grounded = true;
                    for (o, r) in std::mem::take(&mut self.pending) {
                        if o > through {
                            self.apply(r);
                        }
                    }
                }
            }
            Some(change) if self.grounded => {
                self.since_snapshot += 1;
                self.apply(change);
            }
            Some(change) => {
                self.since_snapshot += 1;
                self.pending.push((offset, change));
            }
            None => self.since_snapshot += 1,
        }
    }

    fn apply(&mut self, change: Record) {
        let (rid, changed) = match change {
            Record::Pause { topic, rid } => (rid, self.paused.insert(topic)),
            Record::Resume { topic, rid } => (rid, self.paused.remove(&topic)),
            Record::Limit { limit, rid } => {
                let old = self.limits.insert(limit.id(), limit.clone());
                (rid, old.as_ref() != Some(&limit))
            }
            Record::Unlimit { id, rid, .. } => (rid, self.limits.remove(&id).is_some()),
            Record::Cancel { target, until } => {
                self.cancels.add(target, until);
                self.cancels_changed += 1;
                return;
            }
            Record::Snapshot { .. } => return,
        };
        if self.applied.len() >= 64 {
            self.applied.remove(0);
        }
        self.applied.push((rid, changed));
    }

    /// Read to now: a fold that met no snapshot after a deleted start applies what it kept (nothing
    /// is lost that a snapshot could have told: every change is followed by one).
    pub fn finish(&mut self) {
        // What follows (a watcher reads on) is applied in order, whatever offset it starts at.
        self.started = true;
        if !self.grounded {
            self.grounded = true;
            for (_, r) in std::mem::take(&mut self.pending) {
                self.apply(r);
            }
        }
    }

    pub fn is_paused(&self, topic: &str) -> bool {
        self.paused.contains(topic)
    }

    pub fn paused(&self) -> &BTreeSet<String> {
        &self.paused
    }

    /// The run-time limits, by id (a topic's ids sort together: an id starts with its topic).
    pub fn limits(&self) -> impl Iterator<Item = &Limit> + Clone {
        self.limits.values()
    }

    /// The limits in force for a worker of `topic` whose code set `code` (see [`effective`]).
    pub fn limit_set(&self, topic: &str, code: &[Limit]) -> LimitSet {
        LimitSet::new(effective(topic, code, self.limits()).into_iter().map(|(l, _)| l.clone()).collect())
    }

    /// Whether the change with request id `rid` changed the state (a pause of a running topic, a
    /// resume of a paused one, a limit new or different, a limit removed); `None` when it was not met.
    pub fn verdict(&self, rid: &str) -> Option<bool> {
        self.applied.iter().rev().find(|(r, _)| r == rid).map(|(_, c)| *c)
    }

    /// The cancels folded (some may have ended: `Cancels::is_cancelled` compares with a clock).
    pub fn cancels(&self) -> &Cancels {
        &self.cancels
    }

    /// Grows whenever [`Fold::cancels`] changed.
    pub fn cancels_changed(&self) -> u64 {
        self.cancels_changed
    }

    /// The whole state as a snapshot read through `through`, the cancels ended at `now_ms` left out.
    pub fn snapshot(&self, through: u64, now_ms: i64) -> Record {
        Record::Snapshot {
            paused: self.paused.clone(),
            limits: self.limits.values().cloned().collect(),
            through,
            cancels: self.cancels.pruned(now_ms),
        }
    }

    /// The snapshot to append now, read through `through`, when too many records follow the last one;
    /// the cancels ended at `now_ms` left out.
    pub fn snapshot_due(&self, through: u64, now_ms: i64) -> Option<Record> {
        (self.grounded && self.since_snapshot > SNAPSHOT_EVERY).then(|| self.snapshot(through, now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pause(t: &str, rid: &str) -> Option<Record> {
        Some(Record::Pause { topic: t.into(), rid: rid.into() })
    }
    fn resume(t: &str, rid: &str) -> Option<Record> {
        Some(Record::Resume { topic: t.into(), rid: rid.into() })
    }
    fn snap(ts: &[&str], through: u64) -> Option<Record> {
        snap_l(ts, vec![], through)
    }
    fn cancel(id: &str, until: i64) -> Option<Record> {
        Some(Record::Cancel { target: Target::Task(id.into()), until })
    }
    fn snap_l(ts: &[&str], limits: Vec<Limit>, through: u64) -> Option<Record> {
        Some(Record::Snapshot {
            paused: ts.iter().map(|t| t.to_string()).collect(),
            limits,
            through,
            cancels: Cancels::default(),
        })
    }
    /// A limit of `topic` from its description (checked).
    fn lim(topic: &str, spec: Value) -> Limit {
        parse_limit(topic, &spec, true).unwrap_or_else(|e| panic!("{spec}: {e}"))
    }
    fn set(l: Limit, rid: &str) -> Option<Record> {
        Some(Record::Limit { limit: l, rid: rid.into() })
    }
    fn unset(topic: &str, id: &str, rid: &str) -> Option<Record> {
        Some(Record::Unlimit { topic: topic.into(), id: id.into(), rid: rid.into() })
    }

    #[test]
    fn folds_give_the_paused_set() {
        // (first offset, records in order, paused after finish)
        type Case = (u64, Vec<Option<Record>>, Vec<&'static str>);
        let table: Vec<Case> = vec![
            (0, vec![], vec![]),
            (0, vec![pause("a", "1")], vec!["a"]),
            (0, vec![pause("a", "1"), resume("a", "2")], vec![]),
            (0, vec![pause("a", "1"), pause("b", "2"), None, resume("a", "3")], vec!["b"]),
            // From offset 0, a snapshot says nothing new and is not taken (a wrong one changes nothing).
            (0, vec![pause("a", "1"), snap(&["zz"], 0)], vec!["a"]),
            // After a deleted start: the snapshot's set, then the changes it does not cover.
            (10, vec![resume("x", "1"), snap(&["x", "y"], 9)], vec!["y"]),
            (10, vec![resume("x", "1"), snap(&["x", "y"], 10)], vec!["x", "y"]),
            (10, vec![pause("c", "1"), snap(&["x"], 9)], vec!["x", "c"]),
            (10, vec![pause("c", "1"), snap(&["x", "c"], 10)], vec!["x", "c"]),
            (10, vec![pause("c", "1"), resume("x", "2"), snap(&["x", "c"], 10)], vec!["c"]),
            (10, vec![snap(&["x"], 9), pause("c", "1"), resume("x", "2")], vec!["c"]),
            // No snapshot after a deleted start: what was read.
            (10, vec![None, pause("c", "1")], vec!["c"]),
        ];
        for (i, (first, records, want)) in table.into_iter().enumerate() {
            let mut f = Fold::default();
            for (k, r) in records.into_iter().enumerate() {
                f.push(first + k as u64, r);
            }
            f.finish();
            let got: Vec<&str> = f.paused().iter().map(String::as_str).collect();
            let mut want = want;
            want.sort();
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn folds_give_the_run_time_limits() {
        let a10 = lim("a", json!({"rate": "10/s"}));
        let a20 = lim("a", json!({"rate": "20/s", "burst": 2}));
        let send = lim("a", json!({"name": "send", "concurrency": 2}));
        let key = lim("a", json!({"key": "c:{customer}", "concurrency": 1}));
        let b = lim("b", json!({"concurrency": 3}));
        // (first offset, records in order, the limits after finish as id => rate or concurrency)
        type Case = (u64, Vec<Option<Record>>, Vec<&'static str>);
        let show = |l: &Limit| {
            format!("{}={}", l.id(), l.rate.as_ref().map_or_else(|| format!("c{}", l.concurrency.unwrap()), rate_text))
        };
        let table: Vec<Case> = vec![
            (0, vec![], vec![]),
            (0, vec![set(a10.clone(), "1")], vec!["a=10/s"]),
            // A later setting of the same id replaces it.
            (0, vec![set(a10.clone(), "1"), set(a20.clone(), "2")], vec!["a=20/s"]),
            (0, vec![set(a10.clone(), "1"), set(send.clone(), "2"), unset("a", "a", "3")], vec!["a/send=c2"]),
            (0, vec![unset("a", "a", "1")], vec![]),
            (0, vec![set(key.clone(), "1"), set(b.clone(), "2"), pause("a", "3")], vec!["a/{c:{customer}}=c1", "b=c3"]),
            // From offset 0 a snapshot is not taken.
            (0, vec![set(a10.clone(), "1"), snap_l(&[], vec![b.clone()], 0)], vec!["a=10/s"]),
            // After a deleted start: the snapshot's limits, then the changes it does not cover.
            (10, vec![set(a20.clone(), "1"), snap_l(&[], vec![a10.clone(), b.clone()], 9)], vec!["a=20/s", "b=c3"]),
            (10, vec![set(a20.clone(), "1"), snap_l(&[], vec![a10.clone()], 10)], vec!["a=10/s"]),
            (10, vec![unset("b", "b", "1"), snap_l(&[], vec![b.clone(), send.clone()], 9)], vec!["a/send=c2"]),
            (10, vec![snap_l(&["a"], vec![b.clone()], 9), set(send.clone(), "1")], vec!["a/send=c2", "b=c3"]),
            // A snapshot of a version without limits: none.
            (10, vec![set(a10.clone(), "1"), snap(&[], 10)], vec![]),
            (10, vec![None, set(send.clone(), "1")], vec!["a/send=c2"]),
        ];
        for (i, (first, records, want)) in table.into_iter().enumerate() {
            let mut f = Fold::default();
            for (k, r) in records.into_iter().enumerate() {
                f.push(first + k as u64, r);
            }
            f.finish();
            let got: Vec<String> = f.limits().map(show).collect();
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn run_time_limits_win_over_the_code_per_id() {
        let code = vec![
            lim("a", json!({"rate": "10/s"})),
            lim("a", json!({"name": "send", "concurrency": 2})),
            lim("b", json!({"rate": "1/s"})),
        ];
        let run = vec![
            lim("a", json!({"name": "send", "concurrency": 5})),
            lim("a", json!({"key": "{c}", "concurrency": 1})),
            lim("b", json!({"concurrency": 9})),
        ];
        // (topic, run-time limits used, (id, concurrency or 0, source) in force)
        type Case = (&'static str, Vec<Limit>, Vec<(&'static str, u32, Source)>);
        let table: Vec<Case> = vec![
            ("a", vec![], vec![("a", 0, Source::Code), ("a/send", 2, Source::Code)]),
            (
                "a",
                run.clone(),
                vec![("a", 0, Source::Code), ("a/send", 5, Source::RunTime), ("a/{{c}}", 1, Source::RunTime)],
            ),
            ("b", run.clone(), vec![("b", 9, Source::RunTime)]),
            ("c", run.clone(), vec![]),
        ];
        for (i, (topic, runtime, want)) in table.into_iter().enumerate() {
            let got: Vec<(String, u32, Source)> = effective(topic, &code, runtime.iter())
                .into_iter()
                .map(|(l, s)| (l.id(), l.concurrency.unwrap_or(0), s))
                .collect();
            let want: Vec<(String, u32, Source)> = want.into_iter().map(|(id, c, s)| (id.to_string(), c, s)).collect();
            assert_eq!(got, want, "case {i}");
        }
        let mut f = Fold::default();
        f.push(0, set(run[0].clone(), "1"));
        let set = f.limit_set("a", &code);
        assert_eq!(set.limits().iter().map(|l| l.concurrency).collect::<Vec<_>>(), [None, Some(5)]);
        assert!(f.limit_set("zz", &code).is_empty());
    }

    #[test]
    fn verdicts_say_whether_a_change_changed_anything() {
        let mut f = Fold::default();
        let l = lim("a", json!({"rate": "10/s"}));
        let records = [
            pause("a", "1"),
            pause("a", "2"),
            resume("a", "3"),
            resume("a", "4"),
            set(l.clone(), "5"),
            set(l.clone(), "6"),
            set(lim("a", json!({"rate": "10/s", "burst": 1})), "7"),
            unset("a", "a", "8"),
            unset("a", "a", "9"),
        ];
        for (o, r) in records.into_iter().enumerate() {
            f.push(o as u64, r);
        }
        assert_eq!(f.verdict("1"), Some(true));
        assert_eq!(f.verdict("2"), Some(false), "already paused");
        assert_eq!(f.verdict("3"), Some(true));
        assert_eq!(f.verdict("4"), Some(false), "already running");
        assert_eq!(f.verdict("5"), Some(true));
        assert_eq!(f.verdict("6"), Some(false), "the same limit again");
        assert_eq!(f.verdict("7"), Some(true), "another burst");
        assert_eq!(f.verdict("8"), Some(true));
        assert_eq!(f.verdict("9"), Some(false), "no such limit");
        assert_eq!(f.verdict("10"), None);
    }

    #[test]
    fn a_snapshot_is_due_after_many_records() {
        let mut f = Fold::default();
        let l = lim("a", json!({"concurrency": 1}));
        f.push(0, pause("a", "1"));
        f.push(1, set(l.clone(), "2"));
        for o in 2..=SNAPSHOT_EVERY + 1 {
            f.push(o, None);
        }
        assert_eq!(f.snapshot_due(SNAPSHOT_EVERY, 0), snap_l(&["a"], vec![l.clone()], SNAPSHOT_EVERY));
        f.push(SNAPSHOT_EVERY + 2, snap_l(&["a"], vec![l], SNAPSHOT_EVERY));
        assert_eq!(f.snapshot_due(SNAPSHOT_EVERY + 2, 0), None);
    }

    #[test]
    fn changes_read_on_after_a_finished_fold_are_applied() {
        // Read to now (markers only, none given to the fold), then followed from a later offset.
        for first in [None, Some(0), Some(3)] {
            let mut f = Fold::default();
            if let Some(o) = first {
                f.push(o, None);
            }
            f.finish();
            f.push(5, pause("a", "1"));
            f.push(6, cancel("t", 10));
            assert!(f.is_paused("a"), "after {first:?}");
            assert_eq!(f.cancels().len(), 1, "after {first:?}");
        }
    }

    #[test]
    fn cancels_fold_like_pauses() {
        use super::super::cancel::Keys;
        let on = |f: &Fold, id: &str| f.cancels().is_cancelled(Keys { id, group: None, chain: None }, 0);
        let mut from_start = Fold::default();
        for (o, r) in [cancel("a", 10), None, cancel("b", 10)].into_iter().enumerate() {
            from_start.push(o as u64, r);
        }
        assert!(on(&from_start, "a") && on(&from_start, "b"));
        assert_eq!(from_start.cancels_changed(), 2);
        // After a deleted start: the snapshot's cancels, then the cancels it does not cover.
        let mut later = Fold::default();
        let mut cancels = Cancels::default();
        cancels.add(Target::Task("a".into()), 10);
        let snapshot = Some(Record::Snapshot { paused: BTreeSet::new(), limits: Vec::new(), through: 10, cancels });
        for (o, r) in [cancel("x", 10), cancel("b", 10), snapshot].into_iter().enumerate() {
            later.push(10 + o as u64, r);
        }
        later.finish();
        assert!(on(&later, "a") && on(&later, "b") && !on(&later, "x"));
        // A snapshot leaves out the cancels ended.
        let mut f = Fold::default();
        f.push(0, cancel("old", 5));
        f.push(1, cancel("new", 50));
        let Record::Snapshot { cancels, .. } = f.snapshot(1, 20) else { unreachable!() };
        assert_eq!(cancels.len(), 1);
    }

    #[test]
    fn records_read_back_as_written() {
        let limits = [
            lim("t", json!({"rate": "10/s", "burst": 3})),
            lim("t", json!({"rate": "5/10s", "concurrency": 2, "name": "send"})),
            lim("t", json!({"concurrency": 1, "key": "c:{customer.id}"})),
            lim("t", json!({"rate": "600/m", "name": "bill", "key": "{{x}}{y}"})),
            lim("t", json!({"rate": "3/2h"})),
        ];
        let mut records =
            vec![pause("t-x", "r"), resume("t", "r2"), snap(&["a", "b"], 7), snap(&[], 0), unset("t", "t/{a}", "r")];
        records.extend(limits.iter().map(|l| set(l.clone(), "r")));
        records.push(snap_l(&["a"], limits.to_vec(), 3));
        let mut cancels = Cancels::default();
        cancels.add(Target::Group("g".into()), 9);
        records.push(Some(Record::Snapshot { paused: BTreeSet::new(), limits: Vec::new(), through: 3, cancels }));
        records.push(Some(Record::Cancel { target: Target::Group("g1".into()), until: 4 }));
        records.push(cancel("t1", 3));
        for r in records {
            let r = r.unwrap();
            assert_eq!(Record::from_json(r.to_json(5).as_bytes()), Ok(r));
        }
        for bad in [
            &b"x"[..],
            br#"{"type":"pause","rid":"r"}"#,
            br#"{"type":"pause","topic":"a b","rid":"r"}"#,
            br#"{"type":"nap"}"#,
            br#"{"type":"snapshot","paused":[1],"through":0}"#,
            br#"{"type":"cancel","until":5}"#,
            br#"{"type":"cancel","id":"a","group":"b","until":5}"#,
            br#"{"type":"cancel","id":"a b","until":5}"#,
            br#"{"type":"cancel","id":"a"}"#,
            br#"{"type":"snapshot","paused":[],"limits":{},"through":0}"#,
            br#"{"type":"limit","limit":{"topic":"t","rate":"0/s"},"rid":"r"}"#,
            br#"{"type":"limit","limit":{"rate":"1/s"},"rid":"r"}"#,
            br#"{"type":"unlimit","topic":"t","id":"","rid":"r"}"#,
        ] {
            assert!(Record::from_json(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        // A newer writer's keys are ignored in a record.
        let newer = br#"{"type":"limit","limit":{"topic":"t","rate":"1/s","jitter":1},"rid":"r"}"#;
        assert!(Record::from_json(newer).is_ok());
    }

    #[test]
    fn limits_are_described_or_refused_with_a_reason() {
        // (description, the limit's id, or a part of the error)
        let table: &[(Value, Result<&str, &str>)] = &[
            (json!({"rate": "20/s", "burst": 5}), Ok("demo")),
            (json!({"concurrency": 4, "name": "send"}), Ok("demo/send")),
            (json!({"concurrency": 1, "key": "c:{customer}"}), Ok("demo/{c:{customer}}")),
            (json!({"rate": "1/m", "name": "bill", "key": "{c}", "burst": null}), Ok("demo/bill/{{c}}")),
            (json!({"rate": "20/s", "name": null, "key": null}), Ok("demo")),
            (json!({}), Err("needs a rate, a concurrency")),
            (json!({"name": "send"}), Err("needs a rate, a concurrency")),
            (json!({"rate": "20"}), Err("a rate is written")),
            (json!({"rate": 20}), Err("'rate' is a string")),
            (json!({"rate": "20/s", "burst": -1}), Err("a burst is 0 to")),
            (json!({"rate": "20/s", "burst": "5"}), Err("'burst' is a whole number")),
            (json!({"concurrency": 2, "burst": 5}), Err("a burst goes with a rate")),
            (json!({"concurrency": 0}), Err("a concurrency limit is 1 to")),
            (json!({"concurrency": 1.5}), Err("'concurrency' is a whole number")),
            (json!({"concurrency": 1, "name": "bad name"}), Err("task name")),
            (json!({"concurrency": 1, "key": "c:{"}), Err("template")),
            (json!({"concurrency": 1, "rates": "1/s"}), Err("no key 'rates'")),
            (json!([1]), Err("an array of keys")),
        ];
        for (spec, want) in table {
            let got = parse_limit("demo", spec, true).map(|l| l.id());
            match want {
                Ok(id) => assert_eq!(got.as_deref(), Ok(*id), "{spec}"),
                Err(part) => {
                    let e = got.expect_err(&spec.to_string());
                    assert!(e.contains(part), "{spec}: {e}");
                }
            }
        }
        assert!(parse_limit("bad topic", &json!({"concurrency": 1}), true).is_err());
        assert_eq!(scope_id("demo", &json!({})).as_deref(), Ok("demo"));
        assert_eq!(scope_id("demo", &json!({"name": "send", "key": "{c}"})).as_deref(), Ok("demo/send/{{c}}"));
        assert!(scope_id("demo", &json!({"rate": "1/s"})).unwrap_err().contains("no key 'rate'"));
        assert!(scope_id("demo", &json!({"name": "a b"})).is_err());
        assert_eq!(scope_id("demo", &json!([])).as_deref(), Ok("demo"));
        assert!(scope_id("demo", &json!([1])).is_err());
        assert!(parse_limit("demo", &json!([]), true).unwrap_err().contains("needs a rate"));
    }

    #[test]
    fn rates_are_written_back() {
        for text in ["10/s", "600/m", "3/h", "5/10s", "7/2m", "1/90s", "2/36h"] {
            let r = Rate::parse(text, 0);
            if let Ok(r) = r {
                assert_eq!(rate_text(&r), text);
            }
        }
        assert_eq!(rate_text(&Rate::new(1, 1500, 0).unwrap()), "1/1500ms");
    }
}
