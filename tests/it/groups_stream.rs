//! The groups stream against the real broker: a reader finds the newest snapshot and folds on from just
//! after what it covers (`broker::group_stream::Newest`). It uses the process's session (see `main.rs`).

use crate::common::settings;
use ebats::broker::group_stream::{self, record_message, snapshot_message};
use ebats::broker::names::Names;
use ebats::broker::{Decl, Session};
use ebats::dispatch;
use ebats::group::state::{Fold, Outcome, Record, State};
use ebats::group::{FollowUp, When};
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};

fn open(group: &str, members: &[&str]) -> Record {
    Record::Open {
        group: group.into(),
        members: members.iter().map(|m| m.to_string()).collect(),
        on: vec![FollowUp { when: When::Always, event: "fin".into() }],
        params: serde_json::json!({}),
        origin: "ev".into(),
    }
}

fn end(group: &str, member: &str) -> Record {
    Record::End { group: group.into(), member: member.into(), outcome: Outcome::Succeeded }
}

/// The state of `records` folded from the stream's start.
fn folded(records: &[Record]) -> State {
    let mut f = Fold::default();
    for (k, r) in records.iter().enumerate() {
        f.push(k as u64, Some((r.clone(), 1)));
    }
    f.state
}

/// A reader takes the newest snapshot of a young stream (its first offset within the reader's look
/// back) and applies what follows what it covers. Offsets: 0 open g0, 1 a snapshot, 2 open g1, 3 end
/// g1.a, 4 open g2 (not covered), 5 a snapshot through 3 (it knows a group `gs` that no record opened),
/// 6 end g1.b. Then a snapshot that does not read makes the reader fold the stream from its start
/// (`gs` unknown). Without any snapshot, the first pass's fold is the state (`group_stream`'s unit test).
#[test]
fn a_reader_starts_from_the_newest_snapshot() {
    let st = settings(&format!("rt_groups_{}", std::process::id()), None);
    let n = Names::new(&st.prefix);
    let append = |records: &[Record]| group_stream::append(&st, records).unwrap();
    let snapshot = |state: &State, through: u64| {
        dispatch::send(&st, &[Decl::Groups], &[snapshot_message(&n, state, through)]).unwrap();
    };

    append(&[open("g0", &["x"])]);
    snapshot(&folded(&[open("g0", &["x"])]), 0);
    append(&[open("g1", &["a", "b"]), end("g1", "a"), open("g2", &["c"])]);
    let mut newest = folded(&[open("g0", &["x"]), open("g1", &["a", "b"]), end("g1", "a")]);
    newest.groups.extend(folded(&[open("gs", &["y"])]).groups);
    snapshot(&newest, 3);
    append(&[end("g1", "b")]);

    let fold = group_stream::read_state(&st).unwrap();
    let ids: Vec<&String> = fold.state.groups.keys().collect();
    assert_eq!(ids, ["g0", "g1", "g2", "gs"], "the newest snapshot, and what it does not cover");
    assert!(fold.state.groups["g1"].complete(), "g1's second end, after the snapshot, is applied");
    assert_eq!(fold.state.groups["g2"].counts().pending, 1);

    let mut bad = record_message(&n, &Record::Done { group: "g9".into() });
    bad.properties = bad.properties.with_type("ebats.group.snapshot".into());
    bad.body = b"{\"v\":1,\"type\":\"snapshot\"}".to_vec();
    dispatch::send(&st, &[Decl::Groups], &[bad]).unwrap();
    let fold = group_stream::read_state(&st).unwrap();
    let ids: Vec<&String> = fold.state.groups.keys().collect();
    assert_eq!(ids, ["g0", "g1", "g2"], "every record, from the start");
    assert!(fold.state.groups["g1"].complete());

    let mut s = Session::new().unwrap();
    let ch = s.channel(&st).unwrap();
    s.block_on(async {
        for q in [n.groups_stream(), n.events_queue()] {
            let _ = ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
        }
        for x in [n.groups_done(), n.event_exchange()] {
            let _ = ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default()).await;
        }
    });
}
