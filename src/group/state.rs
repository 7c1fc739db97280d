//! The records of the stream `<prefix>.groups` and what folding them gives: the groups in flight with
//! their members' outcomes, the groups done, and which follow-ups are due. Pure; the stream is read and
//! written in `broker::group_stream`, decided on in `services::groups`.
//!
//! Records are JSON objects `{"v":1,"type":...,"at":ms,...}`: `open`, `end`, `done` (written by
//! earlier versions only, read still: a group is done at its last end when no follow-up applies),
//! `snapshot` (the whole fold as read through the offset `through`), `batch` (`records`: `open`s and
//! `end`s written as one message, applied in order; its `at` for all of them); a published follow-up is
//! an event message whose header `crate::headers::GROUP_FOLLOW_UP` holds [`Record::Fired`]. Markers
//! carry no record.
//!
//! A fold that starts at the stream's offset 0 applies every record and ignores snapshots. One that
//! starts later keeps the records it reads until the first snapshot, takes the snapshot's state, and
//! applies on top those read before it that it does not cover (offset after `through`); one that met no
//! snapshot is not [`Fold::grounded`] and its reader reads again from the start. A reader that found the
//! newest snapshot first starts from its state ([`Fold::from_snapshot`]) at the offset after `through`
//! (`broker::group_stream::Newest`). Applying a record twice
//! changes nothing (ends count once per member, opens once per group), so every reader reaches the same
//! state.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::FollowUp;

/// A done group is kept whole (for its status, members included) at most this long after it was done...
pub const DONE_DETAIL_MS: i64 = 600 * 1000;
/// ... and only the newest this many of them: the others are kept as [`Closed`] (a leader prunes before
/// each snapshot, so a snapshot stays small however fast groups complete).
pub const DONE_DETAILED: usize = 1000;
/// A done group's id and counts are kept this long (a late copy of its `open` or of an `end` changes
/// nothing); an `end` whose group was never opened is dropped after it too.
pub const DONE_KEEP_MS: i64 = 3600 * 1000;
/// ... and only the newest this many: each is some 130 bytes of every snapshot, which stays well below
/// the largest message a broker takes (16 MiB by default on RabbitMQ 4) however fast groups complete. A
/// late copy of an `open` comes from an event routed again after its Scheduler died before its ack,
/// which the broker redelivers at once: far sooner than this many groups later at any rate measured.
pub const CLOSED_KEPT: usize = 50_000;

/// How a member ended for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Succeeded,
    Failed,
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// A record of the stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Record {
    Open {
        group: String,
        members: Vec<String>,
        on: Vec<FollowUp>,
        #[serde(default)]
        params: Value,
        /// The event whose tasks the group is (empty for a group made by hand).
        #[serde(default)]
        origin: String,
    },
    End {
        group: String,
        member: String,
        outcome: Outcome,
    },
    /// A follow-up published (the header of its event message).
    Fired {
        group: String,
        key: String,
    },
    /// A complete group no follow-up applies to: written by earlier versions only (every fold now finds
    /// such a group done at its last end); read, and changing nothing then.
    Done {
        group: String,
    },
    Snapshot {
        through: u64,
        state: Box<State>,
    },
    /// Several `open`, `end` or `done` records written as one (a Scheduler's routing batch, a worker's
    /// batch of acks; the `done`s of a burst, by an earlier version's leader): all of them or none are
    /// in the stream, applied in their order.
    Batch {
        records: Vec<Record>,
    },
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "v")]
    _version: i64,
    #[serde(default)]
    at: i64,
    #[serde(flatten)]
    record: Record,
}

/// A record as written: borrowed, so that writing one copies nothing.
#[derive(Serialize)]
struct Written<'a> {
    v: i64,
    at: i64,
    #[serde(flatten)]
    record: &'a Record,
}

/// A snapshot as written and read, apart from [`Envelope`]: a snapshot holds every group the fold
/// knows (megabytes), and reading it through `Envelope` (a flattened, tagged enum) would first build a
/// generic tree of all of it; writing it from a borrowed [`State`] copies nothing.
#[derive(Serialize, Deserialize)]
struct SnapshotBody<S> {
    v: i64,
    #[serde(default)]
    at: i64,
    #[serde(rename = "type")]
    kind: String,
    through: u64,
    state: S,
}

const SNAPSHOT: &str = "snapshot";

/// The body of a snapshot of `state` read through the offset `through`, written at `at` (read back by
/// [`Record::from_json`] or [`snapshot_from_json`] as a [`Record::Snapshot`]).
pub fn snapshot_json(state: &State, through: u64, at: i64) -> String {
    let body = SnapshotBody { v: 1, at, kind: SNAPSHOT.to_string(), through, state };
    serde_json::to_string(&body).expect("a snapshot always serializes")
}

/// A snapshot's body (one whose message says it is a snapshot), read straight into its [`State`]: the
/// offset it was read through, the state and its time.
pub fn snapshot_from_json(body: &[u8]) -> Result<(u64, Box<State>, i64), String> {
    let b: SnapshotBody<Box<State>> =
        serde_json::from_slice(body).map_err(|e| format!("not a snapshot of the groups: {e}"))?;
    if b.kind != SNAPSHOT {
        return Err(format!("not a snapshot of the groups: a '{}' record", crate::rules::printable(&b.kind)));
    }
    Ok((b.through, b.state, b.at))
}

impl Record {
    /// `records` as one record: none for none, the record itself for one, else a [`Record::Batch`].
    pub fn batch(mut records: Vec<Record>) -> Option<Record> {
        match records.len() {
            0 => None,
            1 => records.pop(),
            _ => Some(Record::Batch { records }),
        }
    }

    pub fn to_json(&self, at: i64) -> String {
        serde_json::to_string(&Written { v: 1, at, record: self }).expect("a record always serializes")
    }

    /// The record in a body and its time; an error naming what is wrong (ids and names are checked
    /// with the rules they were written with).
    pub fn from_json(body: &[u8]) -> Result<(Record, i64), String> {
        let e: Envelope = serde_json::from_slice(body).map_err(|e| format!("not a group record: {e}"))?;
        e.record.check()?;
        Ok((e.record, e.at))
    }

    fn check(&self) -> Result<(), String> {
        use crate::rules::{check_event_name, check_id};
        match self {
            Record::Open { group, members, on, .. } => {
                check_id(group)?;
                members.iter().try_for_each(|m| check_id(m))?;
                on.iter().try_for_each(|f| check_event_name(&f.event))
            }
            Record::End { group, member, .. } => check_id(group).and_then(|_| check_id(member)),
            Record::Fired { group, .. } | Record::Done { group } => check_id(group),
            Record::Snapshot { .. } => Ok(()),
            Record::Batch { records } => records.iter().try_for_each(|r| match r {
                Record::Open { .. } | Record::End { .. } | Record::Done { .. } => r.check(),
                _ => Err("a batch of group records holds only 'open', 'end' and 'done' records".to_string()),
            }),
        }
    }
}

/// A group as folded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub members: Vec<String>,
    pub on: Vec<FollowUp>,
    pub params: Value,
    pub origin: String,
    pub opened_at: i64,
    /// The outcome of each member that ended (the first `end` of a member).
    pub ends: BTreeMap<String, Outcome>,
    /// The keys of the follow-ups published.
    pub fired: BTreeSet<String>,
    pub done_at: Option<i64>,
}

/// How far a group has got.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub total: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub cancelled: usize,
    pub pending: usize,
}

impl Group {
    pub fn counts(&self) -> Counts {
        let mut c = Counts { total: self.members.len(), ..Counts::default() };
        for o in self.ends.values() {
            match o {
                Outcome::Succeeded => c.succeeded += 1,
                Outcome::Failed => c.failed += 1,
                Outcome::Cancelled => c.cancelled += 1,
            }
        }
        c.pending = c.total - self.ends.len();
        c
    }

    /// Every member ended.
    pub fn complete(&self) -> bool {
        self.ends.len() == self.members.len()
    }

    /// The members that ended with `outcome`, in the group's order.
    pub fn with_outcome(&self, outcome: Outcome) -> Vec<&str> {
        self.members.iter().filter(|m| self.ends.get(*m) == Some(&outcome)).map(String::as_str).collect()
    }

    /// The state of a member: `pending` or its outcome.
    pub fn member_state(&self, member: &str) -> &'static str {
        self.ends.get(member).map(|o| o.as_str()).unwrap_or("pending")
    }

    /// The follow-ups that apply to the group as it ended.
    fn applying(&self) -> impl Iterator<Item = &FollowUp> {
        let c = self.counts();
        self.on.iter().filter(move |f| f.when.applies(c.failed + c.cancelled))
    }

    /// The follow-ups to publish now: a complete group's that apply and were not published.
    pub fn due(&self) -> Vec<FollowUp> {
        if !self.complete() || self.done_at.is_some() {
            return Vec::new();
        }
        self.applying().filter(|f| !self.fired.contains(&f.key())).cloned().collect()
    }

    /// What the follow-ups carry: the group's params (an object: with `_group` added; anything else
    /// under `params`) and its outcome under `_group`.
    pub fn follow_up_params(&self, id: &str) -> Value {
        let c = self.counts();
        let outcome = serde_json::json!({
            "id": id, "origin": self.origin, "total": c.total, "succeeded": c.succeeded,
            "failed": c.failed, "cancelled": c.cancelled,
            "failed_ids": self.with_outcome(Outcome::Failed),
            "cancelled_ids": self.with_outcome(Outcome::Cancelled),
        });
        let mut o = match &self.params {
            Value::Object(o) => o.clone(),
            Value::Null => serde_json::Map::new(),
            Value::Array(a) if a.is_empty() => serde_json::Map::new(),
            other => [("params".to_string(), other.clone())].into_iter().collect(),
        };
        o.insert("_group".into(), outcome);
        Value::Object(o)
    }
}

/// What every reader folds to (and what a snapshot holds).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Groups in flight, and done ones for [`DONE_DETAIL_MS`].
    pub groups: BTreeMap<String, Group>,
    /// Ends read before their group's `open`: group -> (first read at, member -> outcome).
    pub early: BTreeMap<String, (i64, BTreeMap<String, Outcome>)>,
    /// Groups done longer ago: when, and their counts.
    pub closed: BTreeMap<String, Closed>,
}

/// A group done and pruned: when it was done and how it ended (counts unknown, zero, when the fold met
/// only its follow-up).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closed {
    pub at: i64,
    pub counts: Counts,
}

impl State {
    /// Applies a record written at `at`; true when it changed something.
    fn apply(&mut self, r: Record, at: i64) -> bool {
        match r {
            Record::Open { group, members, on, params, origin } => {
                if self.closed.contains_key(&group) || self.groups.contains_key(&group) {
                    return false;
                }
                let mut g = Group {
                    members,
                    on,
                    params,
                    origin,
                    opened_at: at,
                    ends: BTreeMap::new(),
                    fired: BTreeSet::new(),
                    done_at: None,
                };
                if let Some((_, ends)) = self.early.remove(&group) {
                    for (m, o) in ends {
                        if g.members.contains(&m) {
                            g.ends.insert(m, o);
                        }
                    }
                }
                // An empty group is complete at once.
                Self::settle(&mut g, at);
                self.groups.insert(group, g);
                true
            }
            Record::End { group, member, outcome } => {
                if self.closed.contains_key(&group) {
                    return false;
                }
                match self.groups.get_mut(&group) {
                    Some(g) if g.done_at.is_none() && g.members.contains(&member) && !g.ends.contains_key(&member) => {
                        g.ends.insert(member, outcome);
                        Self::settle(g, at);
                        true
                    }
                    Some(_) => false,
                    None => {
                        let (_, ends) = self.early.entry(group).or_insert_with(|| (at, BTreeMap::new()));
                        let new = !ends.contains_key(&member);
                        ends.entry(member).or_insert(outcome);
                        new
                    }
                }
            }
            Record::Fired { group, key } => match self.groups.get_mut(&group) {
                Some(g) => {
                    let new = g.fired.insert(key);
                    Self::settle(g, at);
                    new
                }
                None => self.close_unknown(group, at),
            },
            Record::Done { group } => match self.groups.get_mut(&group) {
                Some(g) if g.done_at.is_none() => {
                    g.done_at = Some(at);
                    true
                }
                Some(_) => false,
                None => self.close_unknown(group, at),
            },
            // Applied record by record by the fold (`Fold::apply`).
            Record::Snapshot { .. } | Record::Batch { .. } => false,
        }
    }

    /// Marks a complete group with nothing left to publish as done: its follow-ups that apply are all
    /// published, or none applies. The latter needs no record: every fold of the stream finds the group
    /// done at its last end (streams written before may also hold a `done` record for it, which then
    /// changes nothing).
    fn settle(g: &mut Group, at: i64) {
        if g.done_at.is_none() && g.complete() && g.due().is_empty() {
            g.done_at = Some(at);
        }
    }

    /// A follow-up or `done` of a group the fold does not hold: closed (true when it was not yet).
    fn close_unknown(&mut self, group: String, at: i64) -> bool {
        if self.closed.contains_key(&group) {
            return false;
        }
        self.early.remove(&group);
        self.closed.insert(group, Closed { at, counts: Counts::default() });
        true
    }

    /// Forgets what is old at `now`: done groups' details ([`State::close_done`]), closed groups after
    /// [`DONE_KEEP_MS`] or beyond the newest [`CLOSED_KEPT`], and the ends of groups never opened after
    /// [`DONE_KEEP_MS`].
    pub fn prune(&mut self, now: i64) {
        self.close_done(now);
        self.closed.retain(|_, c| now - c.at <= DONE_KEEP_MS);
        if self.closed.len() > CLOSED_KEPT {
            let mut by_age: Vec<(i64, String)> = self.closed.iter().map(|(id, c)| (c.at, id.clone())).collect();
            by_age.sort_unstable();
            for (_, id) in by_age.into_iter().take(self.closed.len() - CLOSED_KEPT) {
                self.closed.remove(&id);
            }
        }
        self.early.retain(|_, (first, _)| now - *first <= DONE_KEEP_MS);
    }

    /// Keeps done groups whole for [`DONE_DETAIL_MS`], the newest [`DONE_DETAILED`] only; the others
    /// as [`Closed`] (their id and counts).
    pub fn close_done(&mut self, now: i64) {
        let mut done: Vec<(i64, String)> =
            self.groups.iter().filter_map(|(id, g)| g.done_at.map(|d| (d, id.clone()))).collect();
        done.sort_unstable_by(|a, b| b.cmp(a));
        for (k, (d, id)) in done.into_iter().enumerate() {
            if k >= DONE_DETAILED || now - d > DONE_DETAIL_MS {
                if let Some(g) = self.groups.remove(&id) {
                    self.closed.insert(id, Closed { at: d, counts: g.counts() });
                }
            }
        }
    }

    /// The groups complete whose follow-ups are still to be published.
    pub fn waiting(&self) -> impl Iterator<Item = (&String, &Group)> {
        self.groups.iter().filter(|(_, g)| g.done_at.is_none() && g.complete())
    }

    /// Whether the group is done (held whole or closed).
    pub fn is_done(&self, id: &str) -> bool {
        self.closed.contains_key(id) || self.groups.get(id).is_some_and(|g| g.done_at.is_some())
    }

    /// Groups in flight (not done).
    pub fn open_count(&self) -> usize {
        self.groups.values().filter(|g| g.done_at.is_none()).count()
    }
}

/// The stream folded, message by message.
#[derive(Debug, Default)]
pub struct Fold {
    pub state: State,
    /// The fold knows the whole state: it started at offset 0, or met a snapshot.
    grounded: bool,
    started: bool,
    /// Records read before the first snapshot by a fold that started after offset 0.
    pending: Vec<(u64, Record, i64)>,
    /// How many changes were applied (a leader appends a snapshot when this moved).
    pub changes: u64,
    /// The groups changed since the caller last took them ([`Fold::take_touched`]).
    touched: BTreeSet<String>,
    /// Groups done since done groups were last closed ([`Fold::apply`]).
    done_unclosed: usize,
    /// Groups that became done by a record this fold applied (not by a snapshot it took).
    pub completed: u64,
}

impl Fold {
    /// Takes the message at `offset`: a record written at `at`, or `None` for a marker or a message that
    /// is not one.
    pub fn push(&mut self, offset: u64, record: Option<(Record, i64)>) {
        if !self.started {
            self.started = true;
            self.grounded = offset == 0;
        }
        match record {
            Some((Record::Snapshot { through, state }, _)) if !self.grounded => {
                self.state = *state;
                self.touched.extend(self.state.groups.keys().cloned());
                self.grounded = true;
                for (o, r, at) in std::mem::take(&mut self.pending) {
                    if o > through {
                        self.apply(r, at);
                    }
                }
            }
            // A snapshot read by a grounded fold says nothing new (applying it changes nothing).
            Some((r, at)) if self.grounded => self.apply(r, at),
            Some((r, at)) => self.pending.push((offset, r, at)),
            None => {}
        }
    }

    /// A fold that starts from a snapshot's state (read on from the offset after what it covers).
    pub fn from_snapshot(state: State) -> Fold {
        let touched = state.groups.keys().cloned().collect();
        Fold { state, grounded: true, started: true, touched, ..Fold::default() }
    }

    /// Applies a record directly (what the leader itself published).
    pub fn apply(&mut self, r: Record, at: i64) {
        if let Record::Batch { records } = r {
            return records.into_iter().for_each(|r| self.apply(r, at));
        }
        let group = match &r {
            Record::Open { group, .. } | Record::End { group, .. } => Some(group.clone()),
            Record::Fired { group, .. } | Record::Done { group } => Some(group.clone()),
            Record::Snapshot { .. } | Record::Batch { .. } => None,
        };
        let was_done = group.as_deref().is_none_or(|id| self.state.is_done(id));
        if self.state.apply(r, at) {
            self.changes += 1;
            let ends_a_group = !was_done && group.as_deref().is_some_and(|id| self.state.is_done(id));
            self.touched.extend(group);
            // Done groups beyond those kept whole are closed as the fold goes, whoever folds: a fold of
            // a stream where thousands of groups completed (a new leader's, a reader's with no snapshot
            // to start from, the leader's own between snapshots) never holds more than twice
            // DONE_DETAILED of them whole (some 1.5 KB each, closed some 150 bytes).
            if ends_a_group {
                self.completed += 1;
                self.done_unclosed += 1;
                if self.done_unclosed >= DONE_DETAILED {
                    self.state.close_done(at);
                    self.done_unclosed = 0;
                }
            }
        }
    }

    /// The groups that changed since the last call (all of them after a snapshot was taken).
    pub fn take_touched(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.touched)
    }

    /// How many of the groups changed since [`Fold::take_touched`] have follow-ups to publish
    /// ([`Group::due`]).
    pub fn due(&self) -> usize {
        self.touched.iter().filter(|id| self.state.groups.get(*id).is_some_and(|g| !g.due().is_empty())).count()
    }

    /// Whether a snapshot at `offset` would be taken ([`Fold::push`]); a reader need not read one
    /// that would not.
    pub fn takes_snapshot_at(&self, offset: u64) -> bool {
        match self.started {
            false => offset != 0,
            true => !self.grounded,
        }
    }

    /// Whether the fold knows the whole state.
    pub fn grounded(&self) -> bool {
        self.grounded
    }

    /// Read from the stream's first offset to now: what is left is all there is (retention deleted the
    /// start and no snapshot followed), folded.
    pub fn finish_from_first(&mut self) {
        if !self.grounded {
            self.grounded = true;
            for (_, r, at) in std::mem::take(&mut self.pending) {
                self.apply(r, at);
            }
        }
    }

    /// The snapshot of the state read through `through`.
    pub fn snapshot(&self, through: u64) -> Record {
        Record::Snapshot { through, state: Box::new(self.state.clone()) }
    }
}

#[cfg(test)]
mod tests {
    use super::super::When;
    use super::*;
    use serde_json::json;

    fn f(when: When, event: &str) -> FollowUp {
        FollowUp { when, event: event.into() }
    }
    fn open(g: &str, members: &[&str], on: Vec<FollowUp>) -> Option<(Record, i64)> {
        let members = members.iter().map(|m| m.to_string()).collect();
        Some((Record::Open { group: g.into(), members, on, params: json!({"a": 1}), origin: "ev".into() }, 1))
    }
    fn end(g: &str, m: &str, o: Outcome) -> Option<(Record, i64)> {
        Some((Record::End { group: g.into(), member: m.into(), outcome: o }, 2))
    }
    fn fired(g: &str, key: &str) -> Option<(Record, i64)> {
        Some((Record::Fired { group: g.into(), key: key.into() }, 3))
    }
    use Outcome::*;

    fn fold(first: u64, records: Vec<Option<(Record, i64)>>) -> Fold {
        let mut fo = Fold::default();
        for (k, r) in records.into_iter().enumerate() {
            fo.push(first + k as u64, r);
        }
        fo.finish_from_first();
        fo
    }

    /// (records, group, (succeeded, failed, cancelled, pending), keys due, done)
    #[test]
    fn folds_count_each_member_once_and_say_what_is_due() {
        let then = || vec![f(When::Success, "ok"), f(When::Failure, "ko"), f(When::Always, "fin")];
        type Case = (Vec<Option<(Record, i64)>>, (usize, usize, usize, usize), Vec<&'static str>, bool);
        let table: Vec<Case> = vec![
            (vec![open("g", &["a", "b"], then())], (0, 0, 0, 2), vec![], false),
            (vec![open("g", &["a", "b"], then()), end("g", "a", Succeeded)], (1, 0, 0, 1), vec![], false),
            // A member that ends twice (rerun after a kill -9) counts once, its first outcome.
            (
                vec![open("g", &["a", "b"], then()), end("g", "a", Failed), end("g", "a", Succeeded)],
                (0, 1, 0, 1),
                vec![],
                false,
            ),
            (
                vec![open("g", &["a", "b"], then()), end("g", "a", Succeeded), end("g", "b", Succeeded)],
                (2, 0, 0, 0),
                vec!["success.ok", "always.fin"],
                false,
            ),
            (
                vec![open("g", &["a", "b"], then()), end("g", "a", Succeeded), end("g", "b", Cancelled)],
                (1, 0, 1, 0),
                vec!["failure.ko", "always.fin"],
                false,
            ),
            // An end before its open counts when the open comes; a second open changes nothing.
            (
                vec![
                    end("g", "b", Failed),
                    open("g", &["a", "b"], then()),
                    open("g", &["x"], vec![]),
                    end("g", "a", Succeeded),
                ],
                (1, 1, 0, 0),
                vec!["failure.ko", "always.fin"],
                false,
            ),
            // An end of no member is ignored.
            (vec![open("g", &["a"], then()), end("g", "zz", Succeeded)], (0, 0, 0, 1), vec![], false),
            // Published follow-ups are not due again; all of them published: done.
            (
                vec![open("g", &["a"], then()), end("g", "a", Succeeded), fired("g", "success.ok")],
                (1, 0, 0, 0),
                vec!["always.fin"],
                false,
            ),
            (
                vec![
                    open("g", &["a"], then()),
                    end("g", "a", Succeeded),
                    fired("g", "success.ok"),
                    fired("g", "always.fin"),
                    fired("g", "always.fin"),
                ],
                (1, 0, 0, 0),
                vec![],
                true,
            ),
            // Ends after done change nothing.
            (
                vec![
                    open("g", &["a"], vec![f(When::Always, "fin")]),
                    end("g", "a", Failed),
                    fired("g", "always.fin"),
                    end("g", "a", Succeeded),
                ],
                (0, 1, 0, 0),
                vec![],
                true,
            ),
            // An open read again after the group was done opens nothing.
            (
                vec![
                    open("g", &["a"], vec![f(When::Always, "fin")]),
                    end("g", "a", Failed),
                    fired("g", "always.fin"),
                    open("g", &["a"], vec![f(When::Always, "fin")]),
                ],
                (0, 1, 0, 0),
                vec![],
                true,
            ),
        ];
        for (i, (records, (s, fa, c, p), due, done)) in table.into_iter().enumerate() {
            let fo = fold(0, records);
            let g = &fo.state.groups["g"];
            let counts = g.counts();
            assert_eq!((counts.succeeded, counts.failed, counts.cancelled, counts.pending), (s, fa, c, p), "case {i}");
            let keys: Vec<String> = g.due().iter().map(FollowUp::key).collect();
            assert_eq!(keys, due, "case {i}");
            assert_eq!(g.done_at.is_some(), done, "case {i}");
        }
    }

    #[test]
    fn a_complete_group_without_a_follow_up_that_applies_is_done_at_its_last_end() {
        // (records, done at)
        type Case = (Vec<Option<(Record, i64)>>, Option<i64>);
        let table: Vec<Case> = vec![
            (vec![open("g", &["a"], vec![f(When::Success, "ok")]), end("g", "a", Failed)], Some(2)),
            (vec![open("g", &["a"], vec![]), end("g", "a", Succeeded)], Some(2)),
            // Its ends before its open: done at the open.
            (vec![end("g", "a", Succeeded), open("g", &["a"], vec![f(When::Failure, "bad")])], Some(1)),
            // A `done` record (written by earlier versions) after it changes nothing.
            (
                vec![
                    open("g", &["a"], vec![f(When::Success, "ok")]),
                    end("g", "a", Failed),
                    Some((Record::Done { group: "g".into() }, 4)),
                ],
                Some(2),
            ),
            // A follow-up that applies: done once it is published, not before.
            (vec![open("g", &["a"], vec![f(When::Failure, "bad")]), end("g", "a", Failed)], None),
            // Not complete: not done.
            (vec![open("g", &["a", "b"], vec![]), end("g", "a", Failed)], None),
        ];
        for (i, (records, done_at)) in table.into_iter().enumerate() {
            let fo = fold(0, records);
            let g = &fo.state.groups["g"];
            assert_eq!(g.done_at, done_at, "case {i}");
            assert_eq!(fo.state.waiting().count(), usize::from(done_at.is_none() && g.complete()), "case {i}");
            assert_eq!(fo.state.is_done("g"), done_at.is_some(), "case {i}");
            assert_eq!(fo.completed, u64::from(done_at.is_some()), "case {i}: counted once");
        }
    }

    /// (records, groups due; after taking what was touched, then more records, groups due)
    #[test]
    fn groups_due_are_those_touched_with_something_to_publish() {
        let on = || vec![f(When::Always, "fin")];
        type Case = (Vec<Option<(Record, i64)>>, usize, Vec<Option<(Record, i64)>>, usize);
        let table: Vec<Case> = vec![
            (vec![open("g", &["a", "b"], on()), end("g", "a", Succeeded)], 0, vec![], 0),
            (vec![open("g", &["a"], on()), end("g", "a", Succeeded)], 1, vec![], 0),
            // A group without a follow-up that applies is due nothing: it is done.
            (vec![open("g", &["a"], vec![f(When::Success, "ok")]), end("g", "a", Failed)], 0, vec![], 0),
            (
                vec![open("g", &["a"], on()), open("h", &["a"], on()), end("g", "a", Succeeded), end("h", "a", Failed)],
                2,
                vec![],
                0,
            ),
            // Published: no longer due; another completed after the take: due.
            (
                vec![open("g", &["a"], on()), open("h", &["a"], on()), end("g", "a", Succeeded)],
                1,
                vec![fired("g", "always.fin"), end("h", "a", Succeeded)],
                1,
            ),
            // A second end of a done group touches nothing.
            (
                vec![open("g", &["a"], on()), end("g", "a", Succeeded), fired("g", "always.fin")],
                0,
                vec![end("g", "a", Failed)],
                0,
            ),
        ];
        for (i, (first, due, then, due_then)) in table.into_iter().enumerate() {
            let mut fo = fold(0, first);
            assert_eq!(fo.due(), due, "case {i}");
            let _ = fo.take_touched();
            for r in then {
                fo.push(100, r);
            }
            assert_eq!(fo.due(), due_then, "case {i} after");
        }
    }

    /// A reader that starts from the newest snapshot and folds what follows what it covers reaches the
    /// state of one that folded everything, and completes what that one would.
    #[test]
    fn a_fold_from_a_snapshot_goes_on_as_the_whole_fold() {
        let on = || vec![f(When::Always, "fin")];
        let before = vec![open("g", &["a", "b"], on()), end("g", "a", Succeeded), open("h", &["c"], on())];
        let after = vec![end("g", "b", Failed), end("h", "c", Succeeded), fired("h", "always.fin")];
        let mut whole = fold(0, before.clone());
        let mut late = Fold::from_snapshot(fold(0, before).state);
        assert!(late.grounded() && !late.takes_snapshot_at(3));
        assert_eq!(late.take_touched().into_iter().collect::<Vec<_>>(), ["g", "h"]);
        for (k, r) in after.into_iter().enumerate() {
            whole.push(3 + k as u64, r.clone());
            late.push(3 + k as u64, r);
        }
        assert_eq!(late.state, whole.state);
        assert_eq!((late.due(), whole.due()), (1, 1));
    }

    #[test]
    fn a_late_fold_starts_at_the_first_snapshot() {
        let mut base = fold(0, vec![open("g", &["a", "b"], vec![f(When::Always, "fin")]), end("g", "a", Succeeded)]);
        let snap = Some((base.snapshot(11), 5));
        // Read from offset 10: the end of b at 10 is not covered by a snapshot through 9, is by one through 11.
        for (through, pending) in [(9, 0), (11, 1)] {
            let snap = Some((Record::Snapshot { through, state: Box::new(base.state.clone()) }, 5));
            let mut fo = Fold::default();
            fo.push(10, end("g", "b", Succeeded));
            assert!(!fo.grounded());
            fo.push(12, snap);
            assert!(fo.grounded());
            assert_eq!(fo.state.groups["g"].counts().pending, pending, "through {through}");
        }
        // From offset 0 a snapshot is not taken.
        base.push(12, snap);
        assert_eq!(base.state.groups["g"].counts().pending, 1);
        // Which snapshots a fold would take: one read first (not at offset 0), or before any other
        // after a later start; none once it knows the whole state.
        let mut fo = Fold::default();
        assert!(!fo.takes_snapshot_at(0) && fo.takes_snapshot_at(10));
        fo.push(10, end("g", "b", Succeeded));
        assert!(fo.takes_snapshot_at(12));
        fo.push(12, Some((Record::Snapshot { through: 11, state: Box::new(base.state.clone()) }, 5)));
        assert!(!fo.takes_snapshot_at(13));
        // No snapshot after a later start: not grounded until read from the first offset.
        let mut fo = Fold::default();
        fo.push(10, open("h", &["a"], vec![]));
        assert!(!fo.grounded());
        fo.finish_from_first();
        assert!(fo.state.groups.contains_key("h"));
    }

    #[test]
    fn old_groups_are_forgotten_but_never_done_twice() {
        let mut fo = fold(
            0,
            vec![open("g", &["a"], vec![f(When::Always, "fin")]), end("g", "a", Succeeded), fired("g", "always.fin")],
        );
        fo.state.prune(3 + DONE_DETAIL_MS + 1);
        assert!(fo.state.groups.is_empty());
        let counts = Counts { total: 1, succeeded: 1, ..Counts::default() };
        assert_eq!(fo.state.closed.get("g"), Some(&Closed { at: 3, counts }));
        fo.push(10, open("g", &["a"], vec![f(When::Always, "fin")]));
        assert!(fo.state.groups.is_empty(), "a late open of a done group opens nothing");
        fo.push(11, end("x", "m", Failed));
        assert_eq!(fo.state.early.len(), 1);
        fo.state.prune(3 + DONE_KEEP_MS + 1);
        assert!(fo.state.closed.is_empty() && fo.state.early.is_empty());
        // Beyond the newest CLOSED_KEPT, the oldest closed groups are forgotten first.
        for k in 0..CLOSED_KEPT as i64 + 3 {
            fo.state.closed.insert(format!("c{k}"), Closed { at: 1000 + k, counts: Counts::default() });
        }
        fo.state.prune(1000);
        assert_eq!(fo.state.closed.len(), CLOSED_KEPT);
        assert!(!fo.state.closed.contains_key("c2") && fo.state.closed.contains_key("c3"));
    }

    #[test]
    fn only_the_newest_done_groups_keep_their_details() {
        let mut fo = Fold::default();
        let n = DONE_DETAILED as i64 + 5;
        for k in 0..n {
            let g = format!("g{k}");
            fo.apply(
                Record::Open {
                    group: g.clone(),
                    members: vec!["a".into()],
                    on: vec![],
                    params: json!({}),
                    origin: String::new(),
                },
                k,
            );
            fo.apply(Record::End { group: g, member: "a".into(), outcome: Failed }, k);
        }
        fo.state.close_done(n);
        assert_eq!((fo.state.groups.len(), fo.state.closed.len()), (DONE_DETAILED, 5));
        // The fold closes them as it goes: never more than twice DONE_DETAILED whole.
        let mut going = Fold::default();
        for k in 0..3 * DONE_DETAILED as i64 {
            let g = format!("g{k}");
            let members = vec!["a".into()];
            going.apply(
                Record::Open { group: g.clone(), members, on: vec![], params: json!({}), origin: String::new() },
                k,
            );
            going.apply(Record::End { group: g, member: "a".into(), outcome: Succeeded }, k);
            assert!(going.state.groups.len() <= 2 * DONE_DETAILED, "{k}");
        }
        assert_eq!(going.state.groups.len() + going.state.closed.len(), 3 * DONE_DETAILED);
        assert!(fo.state.closed.contains_key("g0") && fo.state.groups.contains_key(&format!("g{}", n - 1)));
        assert_eq!(fo.state.closed["g0"].counts.failed, 1);
        // A follow-up of a group never seen closes it.
        fo.apply(Record::Fired { group: "zz".into(), key: "always.x".into() }, 1);
        assert_eq!(fo.state.closed["zz"].at, 1);
    }

    /// A batch is its records applied in order: each member counted once, wherever its ends are.
    #[test]
    fn a_batch_record_folds_as_its_records_one_by_one() {
        let rec = |r: Option<(Record, i64)>| r.unwrap().0;
        let batch =
            |rs: Vec<Option<(Record, i64)>>| Some((Record::batch(rs.into_iter().map(rec).collect()).unwrap(), 2));
        let on = || vec![f(When::Always, "fin")];
        // (records, pending of g, due keys of g)
        type Case = (Vec<Option<(Record, i64)>>, usize, Vec<&'static str>);
        let table: Vec<Case> = vec![
            (vec![batch(vec![open("g", &["a", "b"], on()), open("h", &["c"], on())])], 2, vec![]),
            (
                vec![open("g", &["a", "b"], on()), batch(vec![end("g", "a", Succeeded), end("h", "c", Failed)])],
                1,
                vec![],
            ),
            // A batch read again (sent twice) and single ends mixed with it count each member once.
            (
                vec![
                    batch(vec![open("g", &["a", "b"], on()), open("h", &["c"], on())]),
                    batch(vec![end("g", "a", Succeeded), end("g", "b", Failed)]),
                    batch(vec![end("g", "a", Failed), end("g", "b", Succeeded)]),
                    end("g", "b", Succeeded),
                ],
                0,
                vec!["always.fin"],
            ),
            // Ends before their open, in one batch and the next.
            (
                vec![batch(vec![end("g", "a", Succeeded), end("g", "b", Succeeded)]), open("g", &["a", "b"], on())],
                0,
                vec!["always.fin"],
            ),
        ];
        for (i, (records, pending, due)) in table.into_iter().enumerate() {
            let fo = fold(0, records);
            let g = &fo.state.groups["g"];
            assert_eq!(g.counts().pending, pending, "case {i}");
            assert_eq!(g.due().iter().map(FollowUp::key).collect::<Vec<_>>(), due, "case {i}");
        }
        let both = fold(
            0,
            vec![
                batch(vec![open("g", &["a", "b"], on())]),
                batch(vec![end("g", "a", Succeeded), end("g", "b", Failed)]),
            ],
        );
        assert_eq!(both.state.groups["g"].counts().failed, 1);
        // Dones of one burst, as one record (as earlier versions wrote them): they change nothing, each
        // group being done at its last end already.
        let done = |g: &str| Record::Done { group: g.into() };
        let dones = fold(
            0,
            vec![
                batch(vec![open("g", &["a"], vec![]), open("h", &["b"], vec![])]),
                batch(vec![end("g", "a", Succeeded), end("h", "b", Failed)]),
                Some((Record::batch(vec![done("g"), done("h")]).unwrap(), 3)),
            ],
        );
        assert!(dones.state.groups.values().all(|g| g.done_at.is_some()), "{:?}", dones.state.groups);
        // A fold that starts later keeps a batch until its snapshot, like any record.
        let mut late = Fold::default();
        late.push(10, batch(vec![end("g", "a", Succeeded), end("g", "b", Succeeded)]));
        late.push(11, Some((fold(0, vec![open("g", &["a", "b"], on())]).snapshot(9), 3)));
        assert_eq!(late.state.groups["g"].due().len(), 1);
        // None, one, several.
        assert_eq!(Record::batch(vec![]), None);
        assert_eq!(Record::batch(vec![rec(end("g", "a", Failed))]), Some(rec(end("g", "a", Failed))));
    }

    #[test]
    fn follow_ups_carry_the_params_and_the_outcome() {
        let fo = fold(0, vec![open("g", &["a", "b"], vec![]), end("g", "a", Succeeded), end("g", "b", Failed)]);
        let p = fo.state.groups["g"].follow_up_params("g");
        assert_eq!(p["a"], json!(1));
        assert_eq!(p["_group"]["failed_ids"], json!(["b"]));
        assert_eq!(p["_group"]["total"], json!(2));
        let mut g = fo.state.groups["g"].clone();
        g.params = json!([1, 2]);
        assert_eq!(g.follow_up_params("g")["params"], json!([1, 2]));
    }

    #[test]
    fn records_read_back_as_written() {
        let snap = fold(0, vec![open("g", &["a"], vec![f(When::Failure, "x")]), end("g", "a", Cancelled)]).snapshot(4);
        for r in [
            open("g", &["a", "b"], vec![f(When::Always, "e")]),
            end("g", "a", Failed),
            fired("g", "k"),
            Some((snap, 1)),
            Some((
                Record::batch(vec![open("g", &["a"], vec![]).unwrap().0, end("h", "b", Succeeded).unwrap().0]).unwrap(),
                1,
            )),
            Some((
                Record::batch(vec![Record::Done { group: "g".into() }, Record::Done { group: "h".into() }]).unwrap(),
                1,
            )),
        ] {
            let (r, _) = r.unwrap();
            assert_eq!(Record::from_json(r.to_json(5).as_bytes()), Ok((r, 5)));
        }
        // A snapshot written from the state itself reads back the same both ways, and only a snapshot
        // is read as one.
        let state = fold(0, vec![open("g", &["a", "b"], vec![f(When::Always, "e")]), end("g", "a", Failed)]).state;
        let body = snapshot_json(&state, 7, 5);
        let want = Ok((Record::Snapshot { through: 7, state: Box::new(state) }, 5));
        let read =
            snapshot_from_json(body.as_bytes()).map(|(through, state, at)| (Record::Snapshot { through, state }, at));
        assert_eq!(read, want);
        assert_eq!(Record::from_json(body.as_bytes()), want);
        let open_record = open("g", &["a"], vec![]).unwrap().0.to_json(1);
        assert!(snapshot_from_json(open_record.as_bytes()).is_err());
        assert!(snapshot_from_json(
            br#"{"v":1,"type":"nap","through":1,"state":{"groups":{},"early":{},"closed":{}}}"#
        )
        .unwrap_err()
        .contains("'nap'"));
        for bad in [
            &b"x"[..],
            br#"{"v":1,"type":"end","group":"g","member":"a b","outcome":"failed"}"#,
            br#"{"v":1,"type":"end","group":"g","member":"a","outcome":"maybe"}"#,
            br#"{"v":1,"type":"open","group":"g","members":["a"],"on":[{"when":"always","event":""}]}"#,
            br#"{"v":1,"type":"nap"}"#,
            // A batch holds opens, ends and dones only, each checked: a follow-up's record is its event's
            // message.
            br#"{"v":1,"type":"batch","records":[{"type":"fired","group":"g","key":"k"}]}"#,
            br#"{"v":1,"type":"batch","records":[{"type":"done","group":"g h"}]}"#,
            br#"{"v":1,"type":"batch","records":[{"type":"batch","records":[]}]}"#,
            br#"{"v":1,"type":"batch","records":[{"type":"end","group":"g","member":"a b","outcome":"failed"}]}"#,
        ] {
            assert!(Record::from_json(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
