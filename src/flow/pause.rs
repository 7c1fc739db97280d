//! Paused topics: the records of the stream `<prefix>.flow` and what folding them gives (the set of
//! paused topics), and whether a worker may start a task now. Pure; the stream is read and written in
//! `broker::flow_stream`.
//!
//! Records are JSON objects `{"v":1,"type":...,"at":ms,...}`: `pause` and `resume` of a topic (with the
//! writer's request id, so it can find its own record), `cancel` of a task or a group until a time
//! (`flow::cancel`), and `snapshot`: the whole set of paused topics and the cancels in force, as
//! folded through the offset `through`. Markers (`broker::stream_read::marker`) carry no record.
//!
//! A fold that starts at the stream's offset 0 applies every change in order and ignores snapshots
//! (they say what it already knows). One that starts later (retention deleted the start) keeps the
//! changes it reads until the first snapshot, takes the snapshot's set, and applies again on top the
//! changes read before it that it does not cover (offset after `through`). Every reader folds the same
//! records in the stream's order, so all reach the same set.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::cancel::{Cancels, Target};

/// A reader that read more records than this since the last snapshot appends one (see `flow`).
pub const SNAPSHOT_EVERY: u64 = 1000;

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
    Snapshot {
        paused: BTreeSet<String>,
        through: u64,
        cancels: Cancels,
    },
    /// A task (by id) or a group cancelled until `until` (ms since the epoch).
    Cancel {
        target: Target,
        until: i64,
    },
}

impl Record {
    pub fn to_json(&self, at: i64) -> String {
        match self {
            Record::Pause { topic, rid } => json!({"v":1,"type":"pause","topic":topic,"rid":rid,"at":at}),
            Record::Resume { topic, rid } => json!({"v":1,"type":"resume","topic":topic,"rid":rid,"at":at}),
            Record::Snapshot { paused, through, cancels } => {
                json!({"v":1,"type":"snapshot","paused":paused,"through":through,"cancels":cancels.to_value(),"at":at})
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

    /// The record in a body; an error naming what is wrong (a topic is checked with the rule it was
    /// written with).
    pub fn from_json(body: &[u8]) -> Result<Record, String> {
        let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
        let text = |k: &str| v[k].as_str().map(str::to_string).ok_or_else(|| format!("no '{k}'"));
        let topic = || {
            let t = text("topic")?;
            crate::rules::check_topic(&t).map(|_| t)
        };
        match v["type"].as_str() {
            Some("pause") => Ok(Record::Pause { topic: topic()?, rid: text("rid")? }),
            Some("resume") => Ok(Record::Resume { topic: topic()?, rid: text("rid")? }),
            Some("snapshot") => {
                let through = v["through"].as_u64().ok_or("no 'through'")?;
                let list = v["paused"].as_array().ok_or("no 'paused'")?;
                let mut paused = BTreeSet::new();
                for t in list {
                    let t = t.as_str().ok_or("a paused topic is not a string")?;
                    crate::rules::check_topic(t)?;
                    paused.insert(t.to_string());
                }
                let cancels = Cancels::from_value(&v["cancels"])?;
                Ok(Record::Snapshot { paused, through, cancels })
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

/// The paused topics, folded from the stream.
#[derive(Debug, Clone, Default)]
pub struct Fold {
    paused: BTreeSet<String>,
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
            Some(Record::Snapshot { paused, through, cancels }) => {
                self.since_snapshot = 0;
                if !self.grounded {
                    self.paused = paused;
                    self.cancels = cancels;
                    self.cancels_changed += 1;
                    self.grounded = true;
                    for (o, r) in std::mem::take(&mut self.pending) {
                        if o > through {
                            self.apply(r);
                        }
                    }
                    self.pending.clear();
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
    /// paused is lost that a snapshot could have told: every change is followed by one).
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

    /// The cancels folded (some may have ended: `Cancels::is_cancelled` compares with a clock).
    pub fn cancels(&self) -> &Cancels {
        &self.cancels
    }

    /// Grows whenever [`Fold::cancels`] changed.
    pub fn cancels_changed(&self) -> u64 {
        self.cancels_changed
    }

    /// Whether the change with request id `rid` changed the state (a pause of a running topic, a
    /// resume of a paused one); `None` when it was not met.
    pub fn verdict(&self, rid: &str) -> Option<bool> {
        self.applied.iter().rev().find(|(r, _)| r == rid).map(|(_, c)| *c)
    }

    /// The snapshot to append now, read through `through`, when too many records follow the last one;
    /// the cancels ended at `now_ms` left out.
    pub fn snapshot_due(&self, through: u64, now_ms: i64) -> Option<Record> {
        (self.grounded && self.since_snapshot > SNAPSHOT_EVERY).then(|| self.snapshot(through, now_ms))
    }

    /// The snapshot of the state, read through `through`, the cancels ended at `now_ms` left out.
    pub fn snapshot(&self, through: u64, now_ms: i64) -> Record {
        Record::Snapshot { paused: self.paused.clone(), through, cancels: self.cancels.pruned(now_ms) }
    }
}

/// Whether a worker of `topic` may start a task now, from what its watcher knows (`None`: the
/// stream not read to now yet, so a pause could be missed: not yet).
pub fn may_start(known: Option<bool>) -> bool {
    known == Some(false)
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
        let paused = ts.iter().map(|t| t.to_string()).collect();
        Some(Record::Snapshot { paused, through, cancels: Cancels::default() })
    }
    fn cancel(id: &str, until: i64) -> Option<Record> {
        Some(Record::Cancel { target: Target::Task(id.into()), until })
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
    fn verdicts_say_whether_a_change_changed_anything() {
        let mut f = Fold::default();
        for (o, r) in [pause("a", "1"), pause("a", "2"), resume("a", "3"), resume("a", "4")].into_iter().enumerate() {
            f.push(o as u64, r);
        }
        assert_eq!(f.verdict("1"), Some(true));
        assert_eq!(f.verdict("2"), Some(false), "already paused");
        assert_eq!(f.verdict("3"), Some(true));
        assert_eq!(f.verdict("4"), Some(false), "already running");
        assert_eq!(f.verdict("5"), None);
    }

    #[test]
    fn a_snapshot_is_due_after_many_records() {
        let mut f = Fold::default();
        f.push(0, pause("a", "1"));
        for o in 1..=SNAPSHOT_EVERY {
            f.push(o, None);
        }
        assert_eq!(f.snapshot_due(SNAPSHOT_EVERY, 0), snap(&["a"], SNAPSHOT_EVERY));
        f.push(SNAPSHOT_EVERY + 1, snap(&["a"], SNAPSHOT_EVERY));
        assert_eq!(f.snapshot_due(SNAPSHOT_EVERY + 1, 0), None);
    }

    #[test]
    fn records_read_back_as_written() {
        let mut cancels = Cancels::default();
        cancels.add(Target::Group("g".into()), 9);
        let full = Some(Record::Snapshot { paused: BTreeSet::new(), through: 3, cancels });
        let group = Some(Record::Cancel { target: Target::Group("g1".into()), until: 4 });
        for r in
            [pause("t-x", "r"), resume("t", "r2"), snap(&["a", "b"], 7), snap(&[], 0), cancel("t1", 3), group, full]
        {
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
        ] {
            assert!(Record::from_json(bad).is_err(), "{}", String::from_utf8_lossy(bad));
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
        let snapshot = Some(Record::Snapshot { paused: BTreeSet::new(), through: 10, cancels });
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
    fn a_task_starts_only_when_known_running() {
        assert!(may_start(Some(false)));
        assert!(!may_start(Some(true)));
        assert!(!may_start(None));
    }
}
