//! Publishing on the calling thread's own connection (`broker::direct`) against the real broker: what
//! the broker answers reaches the publish it concerns, the connection survives what only closes its
//! channel, and the session falls back to it or away from it as its connection comes and goes.
//! Each test uses its own prefix and deletes what it declared.

use crate::common::{get_body, settings, wait_until, Relay};
use std::time::Duration;

use ebats::broker::confirm::Lot;
use ebats::broker::direct::Direct;
use ebats::broker::{ErrorKind, Outgoing, Session};
use ebats::config::Settings;
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;

const T: Duration = Duration::from_secs(5);

fn prefix(name: &str) -> String {
    format!("rt_direct_{name}_{}", std::process::id())
}

fn open(st: &Settings) -> Direct {
    Direct::open(&st.nodes[0], &st.masked_node(0), T, Some(Duration::from_secs(10))).expect("connected")
}

fn to_queue(queue: &str, body: Vec<u8>, id: &str) -> Outgoing {
    Outgoing {
        exchange: String::new(),
        routing_key: queue.into(),
        body,
        properties: BasicProperties::default().with_message_id(id.into()).with_delivery_mode(2),
        mandatory: true,
    }
}

fn declare_queue(s: &mut Session, st: &Settings, queue: &str) {
    let ch = s.channel(st).unwrap();
    s.block_on(ch.queue_declare(queue.into(), QueueDeclareOptions::default(), FieldTable::default())).unwrap();
}

fn delete_queue(s: &mut Session, st: &Settings, queue: &str) {
    let ch = s.channel(st).unwrap();
    let _ = s.block_on(ch.queue_delete(queue.into(), QueueDeleteOptions::default()));
}

fn kinds(d: &mut Direct, ids: &[u64]) -> Vec<Result<(), ErrorKind>> {
    ids.iter().map(|id| d.take(*id).expect("answered").map_err(|e| e.kind())).collect()
}

#[test]
fn a_lot_arrives_whole_and_in_order_bodies_larger_than_a_frame_included() {
    let st = settings(&prefix("lot"), None);
    let mut s = Session::new().unwrap();
    let queue = format!("{}.q", st.prefix);
    declare_queue(&mut s, &st, &queue);
    let mut d = open(&st);
    // 300 KB spans three frames of 128 KB; an empty body has no body frame at all.
    let bodies: Vec<Vec<u8>> = (0..40)
        .map(|i| {
            if i == 7 {
                vec![b'x'; 300_000]
            } else if i == 8 {
                Vec::new()
            } else {
                format!("m{i}").into_bytes()
            }
        })
        .collect();
    let lot: Vec<Outgoing> =
        bodies.iter().enumerate().map(|(i, b)| to_queue(&queue, b.clone(), &format!("m{i}"))).collect();
    let ids = d.send(&lot, T).unwrap();
    d.wait(&ids, T, "confirming").unwrap();
    assert_eq!(kinds(&mut d, &ids), vec![Ok(()); 40]);
    assert_eq!(d.waiting(), 0);
    for (i, b) in bodies.iter().enumerate() {
        assert_eq!(get_body(&mut s, &st, &queue).as_ref(), Some(b), "message {i}");
    }
    delete_queue(&mut s, &st, &queue);
    d.close(&ebats::broker::BrokerError::new(ErrorKind::ConnectionLost, "closed"));
}

#[test]
fn each_returned_message_fails_its_own_publish_and_no_other() {
    let st = settings(&prefix("returned"), None);
    let mut s = Session::new().unwrap();
    let queue = format!("{}.q", st.prefix);
    declare_queue(&mut s, &st, &queue);
    let mut d = open(&st);
    let nowhere = format!("{}.nobody", st.prefix);
    let lot: Vec<Outgoing> = (0..12)
        .map(|i| to_queue(if i % 3 == 1 { &nowhere } else { &queue }, format!("m{i}").into_bytes(), &format!("m{i}")))
        .collect();
    let ids = d.send(&lot, T).unwrap();
    d.wait(&ids, T, "confirming").unwrap();
    let want: Vec<Result<(), ErrorKind>> =
        (0..12).map(|i| if i % 3 == 1 { Err(ErrorKind::Unroutable) } else { Ok(()) }).collect();
    assert_eq!(kinds(&mut d, &ids), want);
    delete_queue(&mut s, &st, &queue);
}

#[test]
fn a_missing_exchange_fails_what_waits_on_the_channel_and_the_next_publish_opens_another() {
    let st = settings(&prefix("missing"), None);
    let mut s = Session::new().unwrap();
    let queue = format!("{}.q", st.prefix);
    declare_queue(&mut s, &st, &queue);
    let mut d = open(&st);
    let mut lost = to_queue("k", b"x".to_vec(), "lost");
    lost.exchange = format!("{}.no_such_exchange", st.prefix);
    let ids = d.send(&[lost], T).unwrap();
    let e = d.wait(&ids, T, "confirming").map(|_| ()).and_then(|_| d.take(ids[0]).unwrap()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(d.broken().is_none(), "a closed channel keeps the connection: {e}");
    // Closes in a row: each time the channel is opened again, and the connection stays.
    let mut lost = to_queue("k", b"x".to_vec(), "lost");
    lost.exchange = format!("{}.no_such_exchange", st.prefix);
    for i in 0..300 {
        let ids = d.send(std::slice::from_ref(&lost), T).unwrap_or_else(|e| panic!("close {i}: {e}"));
        let _ = d.wait(&ids, T, "confirming");
        let e = d.take(ids[0]).expect("answered").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "close {i}: {e}");
    }
    let ids = d.send(&[to_queue(&queue, b"after".to_vec(), "after")], T).unwrap();
    d.wait(&ids, T, "confirming").unwrap();
    assert_eq!(kinds(&mut d, &ids), [Ok(())]);
    assert_eq!(get_body(&mut s, &st, &queue).as_deref(), Some(&b"after"[..]));
    delete_queue(&mut s, &st, &queue);
}

#[test]
fn a_refused_login_and_an_unknown_vhost_say_so() {
    let bad = settings(&prefix("login"), Some("amqp://guest:wrong@127.0.0.1:5672/%2f"));
    let e = Direct::open(&bad.nodes[0], &bad.masked_node(0), T, None).err().expect("refused");
    assert_eq!(e.kind(), ErrorKind::CredentialsRefused, "{e}");
    let vhost = settings(&prefix("vhost"), Some("amqp://guest:guest@127.0.0.1:5672/no_such_vhost_here"));
    let e = Direct::open(&vhost.nodes[0], &vhost.masked_node(0), T, None).err().expect("refused");
    assert_eq!(e.kind(), ErrorKind::VhostRefused, "{e}");
}

#[test]
fn a_cut_connection_fails_what_waits_and_the_session_publishes_on_a_new_one() {
    let relay = Relay::start();
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", relay.port);
    let st = settings(&prefix("cut"), Some(&url));
    let st_admin = settings(&st.prefix, None);
    let mut admin = Session::new().unwrap();
    let queue = format!("{}.q", st.prefix);
    declare_queue(&mut admin, &st_admin, &queue);
    // A session that only publishes: on its direct connection, through the relay.
    let mut s = Session::new().unwrap();
    s.publish(&st, &[to_queue(&queue, b"before".to_vec(), "before")]).expect("published");
    // Deferred publishes, then the cut before their confirms are awaited: each is a failure that may
    // have been stored (or, if its confirm came first, a success), never a hang.
    s.publish_deferred(
        Lot::Request,
        &st,
        &[to_queue(&queue, b"d1".to_vec(), "d1"), to_queue(&queue, b"d2".to_vec(), "d2")],
    )
    .expect("handed over");
    relay.cut();
    wait_until("the session to see the cut", T, || !s.is_connected());
    let (ok, failed) = s.flush(Lot::Request, &st);
    assert_eq!(ok + failed.len(), 2);
    for f in &failed {
        assert!(f.maybe_stored, "{:?}", f.error);
        assert_eq!(f.error.kind(), ErrorKind::ConnectionLost, "{}", f.error);
    }
    s.publish(&st, &[to_queue(&queue, b"after".to_vec(), "after")]).expect("published on new connections");
    let mut bodies = Vec::new();
    while let Some(b) = get_body(&mut admin, &st_admin, &queue) {
        bodies.push(String::from_utf8(b).unwrap());
    }
    assert_eq!(bodies.first().map(String::as_str), Some("before"));
    assert_eq!(bodies.last().map(String::as_str), Some("after"));
    delete_queue(&mut admin, &st_admin, &queue);
}

#[test]
fn deferred_publishes_are_confirmed_by_one_flush_in_their_lot() {
    let st = settings(&prefix("deferred"), None);
    let mut admin = Session::new().unwrap();
    let queue = format!("{}.q", st.prefix);
    declare_queue(&mut admin, &st, &queue);
    let mut s = Session::new().unwrap();
    for i in 0..250 {
        let lot = if i % 5 == 0 { Lot::BeforeAcks } else { Lot::Request };
        s.publish_deferred(lot, &st, &[to_queue(&queue, format!("m{i}").into_bytes(), &format!("m{i}"))]).unwrap();
    }
    assert_eq!((s.pending(Lot::Request), s.pending(Lot::BeforeAcks)), (200, 50));
    let (ok, failed) = s.flush(Lot::BeforeAcks, &st);
    assert_eq!((ok, failed.len(), s.pending(Lot::Request)), (50, 0, 200));
    let (ok, failed) = s.flush(Lot::Request, &st);
    assert_eq!((ok, failed.len()), (200, 0));
    let (ready, _) = admin.queue_counts(&st, &queue).unwrap();
    assert_eq!(ready, 250);
    delete_queue(&mut admin, &st, &queue);
}

#[test]
fn a_deferred_publish_still_waiting_is_answered_after_the_session_takes_other_uses() {
    // Deferred publishes on the direct connection, then a channel (the link has other uses from then
    // on, and publishes itself): the flush still gets the direct connection's answers.
    let st = settings(&prefix("busy"), None);
    let mut s = Session::new().unwrap();
    let mut admin = Session::new().unwrap();
    let queue = format!("{}.q", st.prefix);
    declare_queue(&mut admin, &st, &queue);
    s.publish_deferred(Lot::Request, &st, &[to_queue(&queue, b"d".to_vec(), "d")]).unwrap();
    let _ch = s.channel(&st).unwrap();
    s.publish(&st, &[to_queue(&queue, b"on the link".to_vec(), "l")]).unwrap();
    assert_eq!(s.flush(Lot::Request, &st).0, 1);
    s.publish(&st, &[to_queue(&queue, b"after".to_vec(), "a")]).unwrap();
    assert_eq!(admin.queue_counts(&st, &queue).unwrap().0, 3);
    delete_queue(&mut admin, &st, &queue);
}

/// Runs `each` on a new session publishing on the direct connection, then on one publishing on the
/// lapin channel (a session whose link has other uses), with a queue (`.q`, counted at the end: it
/// must hold `kept` messages) and the name of one that does not exist (`.missing`).
fn on_both_paths(name: &str, kept: u32, mut each: impl FnMut(&mut Session, &Settings, &str, &str, bool)) {
    let st = settings(&prefix(name), None);
    let mut admin = Session::new().unwrap();
    let queue = format!("{}.q", st.prefix);
    let missing = format!("{}.missing", st.prefix);
    declare_queue(&mut admin, &st, &queue);
    for on_lapin in [false, true] {
        let mut s = Session::new().unwrap();
        let _ch = on_lapin.then(|| s.channel(&st).unwrap());
        each(&mut s, &st, &queue, &missing, on_lapin);
    }
    assert_eq!(admin.queue_counts(&st, &queue).unwrap().0, kept);
    delete_queue(&mut admin, &st, &queue);
}

#[test]
fn settle_ready_takes_the_answers_already_in_and_leaves_the_rest_and_other_lots_waiting() {
    on_both_paths("ready", 4, |s, st, queue, missing, on_lapin| {
        let history = [to_queue(queue, b"h1".to_vec(), "h1"), to_queue(missing, b"h2".to_vec(), "h2")];
        s.publish_deferred(Lot::History, st, &history).unwrap();
        s.publish_deferred(Lot::Request, st, &[to_queue(queue, b"r".to_vec(), "r")]).unwrap();
        let (mut ok, mut failed) = (Vec::new(), Vec::new());
        wait_until("both history publishes settled", T, || {
            let (o, f) = s.settle_ready(Lot::History, st);
            ok.extend(o);
            failed.extend(f);
            ok.len() + failed.len() >= 2
        });
        let ok: Vec<_> = ok.iter().map(|s| s.id.as_deref()).collect();
        assert_eq!(ok, [Some("h1")], "on lapin: {on_lapin}");
        assert_eq!(failed.iter().map(|f| f.sent.id.as_deref()).collect::<Vec<_>>(), [Some("h2")]);
        assert_eq!(failed[0].error.kind(), ErrorKind::Unroutable, "{}", failed[0].error);
        assert_eq!((s.pending(Lot::History), s.pending(Lot::Request)), (0, 1));
        assert!(s.settle_ready(Lot::History, st).0.is_empty(), "nothing settles twice");
        let (ok, failed) = s.flush(Lot::Request, st);
        assert_eq!((ok, failed.len()), (1, 0));
    });
}

#[test]
fn flush_one_awaits_the_named_publish_and_leaves_the_others_of_its_lot_waiting() {
    on_both_paths("one", 4, |s, st, queue, missing, on_lapin| {
        let ends = [
            to_queue(queue, b"a".to_vec(), "a"),
            to_queue(missing, b"b".to_vec(), "b"),
            to_queue(queue, b"c".to_vec(), "c"),
        ];
        s.publish_deferred(Lot::BeforeAcks, st, &ends).unwrap();
        let (ok, failed) = s.flush_one(Lot::BeforeAcks, st, "a");
        assert_eq!((ok, failed.len()), (1, 0), "on lapin: {on_lapin}");
        assert_eq!(s.pending(Lot::BeforeAcks), 2, "the others wait on");
        let (ok, failed) = s.flush_one(Lot::BeforeAcks, st, "b");
        assert_eq!((ok, failed.len()), (0, 1));
        assert_eq!(failed[0].error.kind(), ErrorKind::Unroutable, "{}", failed[0].error);
        let (ok, failed) = s.flush_one(Lot::BeforeAcks, st, "a");
        assert_eq!((ok, failed.len()), (0, 0), "nothing settles twice");
        let (ok, failed) = s.flush(Lot::BeforeAcks, st);
        assert_eq!((ok, failed.len()), (1, 0));
    });
}
