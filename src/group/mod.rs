//! Groups of tasks with completion events, decided on plain data (no broker here): the records of the
//! stream `<prefix>.groups` and what folding them gives ([`state`]), the ids a group's members and its
//! follow-up events take ([`member_id`], [`follow_up_id`]), and when a follow-up applies ([`When`]).
//!
//! # How a group completes exactly once
//!
//! **Records.** A group is opened by an `open` record (its id, its members' ids, its follow-ups, the
//! params they carry, where it came from), appended before or with its tasks: the Scheduler routing a
//! batch of events puts the `open`s of the batch's groups in ONE `batch` record, sent in the same
//! confirmed send as their tasks, ahead of them on the channel; `Group::create` likewise. Each task
//! carries its group (`TaskMsg::group`). A worker child that ends a grouped task for good (it succeeded,
//! failed after its retries, was moved as poison, or was cancelled) keeps `end {group, member, outcome}`
//! for the ack that covers the task; before that ack it appends the ends of the whole batch of acks as
//! ONE record and has its confirm before the ack is sent (a full batch while tasks keep coming: appended
//! at once, the worker going on; acked once its confirm is in, never before an earlier batch:
//! `worker::acks`; a record refused or unanswered: none of those acks is sent, and the tasks run
//! again). A `batch` record is one message: in the stream whole or not at all, and folded as its
//! records one by one, in order, so everything below holds for each of its records as for a record
//! alone (a stream may hold both forms).
//!
//! **Deterministic ids.** A routed event's members take ids derived from the event's id and their index
//! ([`member_id`]), and the group takes the event's id. An event routed twice (the Scheduler died before
//! its ack) opens the same group with the same members: the fold keeps the first `open` of a group id
//! and ignores the others, and the tasks published twice run twice under the same ids.
//!
//! **Counting once.** The fold keeps one outcome per member: the first `end` of a member decides it, a
//! second one (the task ran again after its worker was killed between the `end` and the ack) changes
//! nothing. An `end` read before its group's `open` (the stream may take the worker's record before the
//! Scheduler's on a cluster) is kept and applied when the `open` comes. A group is complete when each of
//! its members has an outcome; delayed and retried members count when they end, not when they are queued.
//!
//! **Deciding.** The leader of the periodic schedules (one Scheduler holding the token of
//! `<prefix>.cron.leader`, `services::periodic`) follows the stream. When a group is complete, it
//! publishes each follow-up that applies ([`When::applies`]) as ONE message, on the very channel that
//! holds the token, confirmed, to the fanout exchange `<prefix>.groups.done` bound both to the stream and
//! (exchange to exchange) to the event exchange: the follow-up event and its record (a header naming the
//! group and the follow-up) are one message, routed to both or to neither. A complete group with no
//! follow-up that applies needs nothing from the leader: every fold of the stream (the leader's, a new
//! leader's, `Group::status`) finds it done at its last end, as it finds a group whose follow-ups are
//! all recorded done at the last of them (earlier versions wrote a `done` record for it, which still
//! reads and then changes nothing). Once a group is due while
//! groups complete often, the leader reads on for a few milliseconds ([`window`]) and completes every
//! group due by then in one burst: a lone confirmed write costs the broker about ten times one
//! written with others.
//!
//! **Why each follow-up is published once**, as the firings are: the leader publishes only through the
//! token's channel. The broker gives the token to the next Scheduler only after it closed the old
//! leader's channel, and it handles a channel's publishes in order, so every follow-up the old leader got
//! in precedes the new leader's marker in the stream; anything later is refused on a dead channel. The
//! new leader appends a marker on its token channel and folds the stream up to it before deciding
//! anything, so it sees every follow-up already published and never publishes one again. A follow-up
//! published but not confirmed before a crash is in the stream or was never routed, never half (so the
//! follow-ups of groups completed together are published together and their confirms awaited after the
//! last: nothing here needs a confirm before the next publish). Its event
//! id is derived from the group and the follow-up ([`follow_up_id`]), so a consumer can drop a copy in the
//! one case left: the record lost with the stream itself.
//!
//! **What it costs and why it stays bounded.** A member costs its id in the `open` record and its `end`
//! (some 80 bytes) in the record of its batch of acks: one stream message and one confirm per batch (a
//! quarter of the prefetch, 16 to 64 tasks, at a prefetch above 1: `worker::ack_batch`), not per member; a group costs its `open` (some 100 bytes plus its
//! members' ids and params) in the record of its routing batch (up to the Scheduler's prefetch of
//! events, one message) and its follow-up messages, one each. So a grouped event whose group has one
//! follow-up adds about one stream message (the follow-up) to the ungrouped path, where each record
//! alone made three (`open`, `end`, follow-up). The leader acks its reading of the stream once per run
//! of records, not per message. The fold holds a group in flight
//! with its members and outcomes (measured by `bench/run --only groups`: 7.7 MB more resident memory for
//! 10,000 groups of 3 in flight, 0.4 MB for a group of 10,000; figures in the README); a done group is
//! kept whole for at most [`state::DONE_DETAIL_MS`] (the newest [`state::DONE_DETAILED`] only: every
//! fold closes the others as it goes), then as its id and counts (the newest [`state::CLOSED_KEPT`], for
//! [`state::DONE_KEEP_MS`] at most: a late copy of its `open` or `end` changes nothing), then forgotten.
//! The leader appends a snapshot of the fold every minute when something changed (every 90 s anyway): it
//! holds the groups in flight and the newest done ones whole, the other done ones as ids and counts, so
//! its size is bounded by the groups in flight. A reader (a new leader, `Group::status`) reads in two
//! passes up to a marker of its own: from a minute and a half back ([`look_back`]), only to find the
//! newest snapshot (no snapshot but the newest is parsed; a pass that starts at the stream's first
//! offset folds until it meets one); then it folds from that snapshot's state, from the offset just after
//! what the snapshot covers; the stream's start only when there is no snapshot. A reader that follows the
//! stream after skips the snapshots it meets. The stream
//! keeps `broker::topology::GROUPS_MAX_AGE` of records.

pub mod state;
pub mod window;

use serde::{Deserialize, Serialize};

/// A reader of the stream looks for the newest snapshot from this far back (the leader's last one is at
/// most a minute and a half old while a leader runs); without one there, it reads from the start.
pub const READ_BACK_SECS: u64 = 180;

/// How far back, in seconds before now, a reader looks for the newest snapshot, one after the other
/// until it finds one: first a little more than the longest a leader goes without writing one (a
/// read costs what was written since, so this one reads half as much), then [`READ_BACK_SECS`] (no
/// leader wrote one for a while, or the broker's clock, which stamps the stream, is behind ours).
pub fn look_back(now_secs: u64) -> [u64; 2] {
    [now_secs.saturating_sub(READ_BACK_SECS / 2 + 5), now_secs.saturating_sub(READ_BACK_SECS)]
}

/// When a follow-up is published: the group's members all succeeded, one failed (or was cancelled),
/// or always.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum When {
    Success,
    Failure,
    Always,
}

impl When {
    /// `success`/`then`, `failure`/`catch`, `always`/`finally`.
    pub fn parse(s: &str) -> Result<When, String> {
        match s {
            "success" | "then" => Ok(When::Success),
            "failure" | "catch" => Ok(When::Failure),
            "always" | "finally" => Ok(When::Always),
            _ => Err(format!(
                "'{}' is not a follow-up condition: use 'success' (then), 'failure' (catch) or 'always' (finally)",
                crate::rules::printable(s)
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            When::Success => "success",
            When::Failure => "failure",
            When::Always => "always",
        }
    }

    /// Whether a follow-up on this condition is published for a group that ended with `failed` members
    /// that failed or were cancelled.
    pub fn applies(self, failed: usize) -> bool {
        match self {
            When::Success => failed == 0,
            When::Failure => failed > 0,
            When::Always => true,
        }
    }
}

/// A follow-up of a group: the event published when it completes, and on what condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUp {
    pub when: When,
    pub event: String,
}

impl FollowUp {
    /// The key of this follow-up within its group (its record names it).
    pub fn key(&self) -> String {
        format!("{}.{}", self.when.as_str(), self.event)
    }
}

/// `base.suffix` when that is a valid id (`rules::check_id`), else a name-based UUID of it (32 hex
/// digits): the same inputs give the same id in every process.
pub fn derive_id(base: &str, suffix: &str) -> String {
    let id = format!("{base}.{suffix}");
    if crate::rules::check_id(&id).is_ok() {
        return id;
    }
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, id.as_bytes()).simple().to_string()
}

/// The id of member `index` of the group of the event `event_id`.
pub fn member_id(event_id: &str, index: usize) -> String {
    derive_id(event_id, &index.to_string())
}

/// The event id of a group's follow-up.
pub fn follow_up_id(group: &str, f: &FollowUp) -> String {
    derive_id(group, &f.key())
}

/// Makes `tasks` the members of the group `group` (each task carries it) and returns the group's
/// `open` record, to append before or with the tasks.
pub fn open(
    group: &str,
    tasks: &mut [crate::wire::TaskMsg],
    on: Vec<FollowUp>,
    params: serde_json::Value,
    origin: &str,
) -> state::Record {
    for t in tasks.iter_mut() {
        t.group = Some(group.to_string());
    }
    state::Record::Open {
        group: group.to_string(),
        members: tasks.iter().map(|t| t.id.clone()).collect(),
        on,
        params,
        origin: origin.to_string(),
    }
}

/// The `open` record of a group without the members that were not made (a unique task whose key
/// another task held): the group waits only for those that run.
pub fn only_members(open: state::Record, made: &[crate::wire::TaskMsg]) -> state::Record {
    match open {
        state::Record::Open { group, members, on, params, origin } => state::Record::Open {
            group,
            members: members.into_iter().filter(|m| made.iter().any(|t| &t.id == m)).collect(),
            on,
            params,
            origin,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_derived_the_same_way_and_stay_valid() {
        assert_eq!(member_id("e1", 0), "e1.0");
        assert_eq!(member_id("e1", 12), "e1.12");
        let long = "x".repeat(127);
        let a = member_id(&long, 3);
        assert_eq!(a.len(), 32);
        assert_eq!(a, member_id(&long, 3));
        assert_ne!(a, member_id(&long, 4));
        let f = FollowUp { when: When::Success, event: "done".into() };
        assert_eq!(follow_up_id("g", &f), "g.success.done");
        for id in [a, follow_up_id(&"y".repeat(128), &f)] {
            assert!(crate::rules::check_id(&id).is_ok(), "{id}");
        }
    }

    #[test]
    fn conditions() {
        let table = [
            ("then", When::Success, 0, true),
            ("success", When::Success, 1, false),
            ("catch", When::Failure, 0, false),
            ("failure", When::Failure, 2, true),
            ("finally", When::Always, 0, true),
            ("always", When::Always, 3, true),
        ];
        for (s, w, failed, applies) in table {
            assert_eq!(When::parse(s), Ok(w));
            assert_eq!(w.applies(failed), applies, "{s} {failed}");
        }
        assert!(When::parse("sometimes").is_err());
    }
}
