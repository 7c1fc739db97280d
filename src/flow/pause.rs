//! Paused topics: the records of the stream `<prefix>.flow` and what folding them gives (the set of
//! paused topics), and whether a worker may start a task now. Pure; the stream is read and written in
//! `broker::flow_stream`.
//!
//! Records are JSON objects `{"v":1,"type":...,"at":ms,...}`: `pause` and `resume` of a topic (with the
//! writer's request id, so it can find its own record), and `snapshot`: the whole set of paused topics
//! as folded through the offset `through`. Markers (`broker::stream_read::marker`) carry no record.
//!
//! A fold that starts at the stream's offset 0 applies every change in order and ignores snapshots
//! (they say what it already knows). One that starts later (retention deleted the start) keeps the
//! changes it reads until the first snapshot, takes the snapshot's set, and applies again on top the
//! changes read before it that it does not cover (offset after `through`). Every reader folds the same
//! records in the stream's order, so all reach the same set.

use std::collections::BTreeSet;

use serde_json::{json, Value};

/// A reader that read more records than this since the last snapshot appends one (see `flow`).
pub const SNAPSHOT_EVERY: u64 = 1000;

/// A record of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Pause { topic: String, rid: String },
    Resume { topic: String, rid: String },
    Snapshot { paused: BTreeSet<String>, through: u64 },
}

impl Record {
    pub fn to_json(&self, at: i64) -> String {
        match self {
            Record::Pause { topic, rid } => json!({"v":1,"type":"pause","topic":topic,"rid":rid,"at":at}),
            Record::Resume { topic, rid } => json!({"v":1,"type":"resume","topic":topic,"rid":rid,"at":at}),
            Record::Snapshot { paused, through } => {
                json!({"v":1,"type":"snapshot","paused":paused,"through":through,"at":at})
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
                Ok(Record::Snapshot { paused, through })
            }
            other => Err(format!("unknown record type {other:?}")),
        }
    }
}

/// The paused topics, folded from the stream.
#[derive(Debug, Clone, Default)]
pub struct Fold {
    paused: BTreeSet<String>,
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
            Some(Record::Snapshot { paused, through }) => {
                self.since_snapshot = 0;
                if !self.grounded {
                    self.paused = paused;
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

    /// Whether the change with request id `rid` changed the state (a pause of a running topic, a
    /// resume of a paused one); `None` when it was not met.
    pub fn verdict(&self, rid: &str) -> Option<bool> {
        self.applied.iter().rev().find(|(r, _)| r == rid).map(|(_, c)| *c)
    }

    /// The snapshot to append now, read through `through`, when too many records follow the last one.
    pub fn snapshot_due(&self, through: u64) -> Option<Record> {
        (self.grounded && self.since_snapshot > SNAPSHOT_EVERY)
            .then(|| Record::Snapshot { paused: self.paused.clone(), through })
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
        Some(Record::Snapshot { paused: ts.iter().map(|t| t.to_string()).collect(), through })
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
        assert_eq!(f.snapshot_due(SNAPSHOT_EVERY), snap(&["a"], SNAPSHOT_EVERY));
        f.push(SNAPSHOT_EVERY + 1, snap(&["a"], SNAPSHOT_EVERY));
        assert_eq!(f.snapshot_due(SNAPSHOT_EVERY + 1), None);
    }

    #[test]
    fn records_read_back_as_written() {
        for r in [pause("t-x", "r"), resume("t", "r2"), snap(&["a", "b"], 7), snap(&[], 0)] {
            let r = r.unwrap();
            assert_eq!(Record::from_json(r.to_json(5).as_bytes()), Ok(r));
        }
        for bad in [
            &b"x"[..],
            br#"{"type":"pause","rid":"r"}"#,
            br#"{"type":"pause","topic":"a b","rid":"r"}"#,
            br#"{"type":"nap"}"#,
            br#"{"type":"snapshot","paused":[1],"through":0}"#,
        ] {
            assert!(Record::from_json(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_task_starts_only_when_known_running() {
        assert!(may_start(Some(false)));
        assert!(!may_start(Some(true)));
        assert!(!may_start(None));
    }
}
