//! The execution history against the real broker: records written without waiting, flushed, read back
//! with filters, followed; a stream with other retention refused by name.

use crate::common::{poll, wait_until};
use std::time::Duration;

/// How long the waits on the follower and the view may take, on a loaded machine.
const LONG: Duration = Duration::from_secs(30);

use ebats::broker::current::with_session;
use ebats::broker::ErrorKind;
use ebats::config::Settings;
use ebats::history::record::Run;
use ebats::history::{self, Query, Writer};
use ebats::wire::{now_ms, TaskMsg};
use lapin::options::QueueDeleteOptions;

/// The history's tests share the process's one broker session, which serves one call at a time: they
/// run one after another even when the binary's tests are run on several threads.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

fn settings(max_age: &str) -> Settings {
    let mut s = crate::common::settings(&format!("rh_{}", &ebats::wire::new_id()[..8]), None);
    s.history.enabled = true;
    s.history.max_age = max_age.into();
    s.history.params_bytes = 16;
    s
}

fn delete_stream(st: &Settings) {
    delete_queue(st, &ebats::broker::names::Names::new(&st.prefix).history_stream());
}

#[test]
fn records_are_written_flushed_read_and_followed() {
    let _one = one_at_a_time();
    let st = settings("1D");
    history::writer::declare(&st).unwrap();
    let mut w = Writer::new(&st).expect("history on");
    let tasks: Vec<TaskMsg> = ["a", "b", "a"]
        .iter()
        .map(|n| TaskMsg::new("demo", n, serde_json::json!({"big": "x".repeat(40)}), 0))
        .collect();
    for (i, t) in tasks.iter().enumerate() {
        let status = if i == 1 { 1 } else { 0 };
        w.write(t, &Run { millis: 2.5, message: "m", class: None, status, end_ms: now_ms() });
    }
    assert_eq!(w.flush(Duration::from_secs(10)), 0, "every record confirmed");
    assert!(history::read(&st, &Query::default()).unwrap().len() == 3, "three records in one batch");

    let all = history::read(&st, &Query::default()).unwrap();
    assert_eq!(
        all.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>()
    );
    assert!(all.iter().all(|r| r.params_truncated && r.params.as_str().is_some_and(|p| p.len() == 16)));
    let q = |f: Query| history::read(&st, &f).unwrap().len();
    assert_eq!(q(Query { task: Some("a".into()), ..Query::default() }), 2);
    assert_eq!(q(Query { status: Some(1), ..Query::default() }), 1);
    assert_eq!(q(Query { id: Some(tasks[1].id.clone()), ..Query::default() }), 1);
    assert_eq!(q(Query { since_ms: Some(now_ms() + 60_000), ..Query::default() }), 0);
    let newest = history::read(&st, &Query { limit: Some(1), ..Query::default() }).unwrap();
    assert_eq!(newest[0].id, tasks[2].id);

    // following from the start (since) sees the records there and a new one
    let late = TaskMsg::new("demo", "late", serde_json::json!([]), 0);
    let mut seen = Vec::new();
    let mut written = false;
    history::follow(
        &st,
        &Query { since_ms: Some(0), ..Query::default() },
        || false,
        |r| {
            seen.push(r.id.clone());
            if seen.len() == 3 && !written {
                written = true;
                w.write(&late, &Run { millis: 1.0, message: "ok.", class: None, status: 0, end_ms: now_ms() });
                w.flush(Duration::from_secs(10));
            }
            r.id != late.id
        },
    )
    .unwrap();
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[3], late.id);

    // the same stream asked for with another retention: refused, naming it
    let mut other = st.clone();
    other.history.max_age = "2D".into();
    let e = history::writer::declare(&other).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Inequivalent);
    assert!(
        e.to_string().contains(&format!("the history stream '{}.history' exists with other arguments", st.prefix)),
        "{e}"
    );
    delete_stream(&st);
    assert_eq!(history::read(&st, &Query::default()).unwrap_err().kind(), ErrorKind::NotFound);
}

/// Appends `n` messages of `per` records each to the history stream, as workers' batches, in runs
/// of 500 confirmed publishes; returns the records of the last message.
fn fill(st: &Settings, n: usize, per: usize, task: &str) -> Vec<ebats::history::Record> {
    let stream = ebats::broker::names::Names::new(&st.prefix).history_stream();
    let mut last = Vec::new();
    for start in (0..n).step_by(500) {
        let msgs: Vec<ebats::broker::Outgoing> = (start..(start + 500).min(n))
            .map(|i| {
                let records: Vec<ebats::history::Record> = (0..per)
                    .map(|j| {
                        let t = TaskMsg::new("demo", task, serde_json::json!([i, j]), 0);
                        let run = Run { millis: 1.0, message: "ok", class: None, status: 0, end_ms: now_ms() };
                        ebats::history::Record::of(&t, &run, 64, 1, "h")
                    })
                    .collect();
                let body = serde_json::to_vec(&records).unwrap();
                last = records;
                ebats::broker::Outgoing {
                    exchange: String::new(),
                    routing_key: stream.clone(),
                    body,
                    properties: ebats::wire::properties(&ebats::wire::new_id(), "ebats.history"),
                    mandatory: true,
                }
            })
            .collect();
        with_session(|s| s.publish(st, &msgs)).unwrap();
    }
    last
}

/// The newest records are found from the end of the stream: `--limit 5` reads a bounded number of
/// messages however long the stream is (300 k records here), and reads that cross several windows
/// give exactly what a read of the whole stream gives.
#[test]
fn newest_records_are_read_from_the_end() {
    let _one = one_at_a_time();
    let st = settings("1D");
    history::writer::declare(&st).unwrap();
    fill(&st, 3000, 100, "bulk");
    // A few small batches last, as workers write them.
    let mut newest = Vec::new();
    for _ in 0..3 {
        newest.extend(fill(&st, 1, 4, "late"));
    }
    let ids = |l: &[ebats::history::Record]| l.iter().map(|r| r.id.clone()).collect::<Vec<_>>();

    let (five, stats) = history::reader::read_counted(&st, &Query { limit: Some(5), ..Query::default() }).unwrap();
    assert_eq!(ids(&five), ids(&newest[newest.len() - 5..]));
    assert!(stats.to >= 3002, "the marker comes after every message: {stats:?}");
    assert!(stats.messages <= 80, "5 records of a stream of 3003 messages: {stats:?}");

    let mut all = Vec::new();
    history::scan(&st, None, |r| all.push(r)).unwrap();
    assert_eq!(all.len(), 300_012);
    for limit in [1, 12, 13, 250, 7_000, 40_000] {
        let (got, stats) =
            history::reader::read_counted(&st, &Query { limit: Some(limit), ..Query::default() }).unwrap();
        assert_eq!(ids(&got), ids(&all[all.len() - limit..]), "limit {limit}: {stats:?}");
        assert!(stats.messages as usize <= 100 + 5 * limit / 100, "limit {limit}: {stats:?}");
    }
    // A filter that matches only old records reads back to them, and to the start when asked more.
    let bulk = |limit| Query { task: Some("bulk".into()), limit: Some(limit), ..Query::default() };
    let (got, _) = history::reader::read_counted(&st, &bulk(3)).unwrap();
    assert_eq!(ids(&got), ids(&all[all.len() - 15..all.len() - 12]));
    let (got, stats) = history::reader::read_counted(&st, &bulk(1_000_000)).unwrap();
    assert_eq!(got.len(), 300_000);
    assert_eq!(stats.from, 0, "{stats:?}");
    delete_stream(&st);
}

/// A stream of small segments: `bytes` of retention (`None`: none), 2,000 messages of 300 bytes.
/// Each new segment starts with a chunk of the broker's own that takes an offset and is never
/// delivered, so offsets have gaps.
///
/// Made again, under a new name, when a publish is not confirmed: RabbitMQ 3.10's retention server
/// crashes when a stream it is to trim was deleted meanwhile (`osiris_retention`: `missing_file`, seen
/// right after the trimmed stream's test deleted its stream), and its supervisor restarts every
/// stream's writer, dropping what was in flight. What this builds is the subject, not that.
fn small_segments(st: &Settings, name: &str, bytes: Option<i64>) -> String {
    let mut tries = 0;
    loop {
        tries += 1;
        let stream = format!("{}.{name}{tries}", st.prefix);
        match fill_small_segments(st, &stream, bytes) {
            Ok(()) => return stream,
            Err(e) if tries < 3 && e.kind() == ErrorKind::Timeout => {
                eprintln!("the stream '{stream}' was not written ({e}); made again");
                delete_queue(st, &stream);
            }
            Err(e) => panic!("the stream '{stream}' was not written: {e}"),
        }
    }
}

fn fill_small_segments(st: &Settings, stream: &str, bytes: Option<i64>) -> Result<(), ebats::broker::BrokerError> {
    use lapin::options::QueueDeclareOptions;
    use lapin::types::{AMQPValue, FieldTable};
    with_session(|s| {
        let ch = s.channel(st)?;
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), AMQPValue::LongString("stream".into()));
        if let Some(b) = bytes {
            args.insert("x-max-length-bytes".into(), AMQPValue::LongLongInt(b));
        }
        args.insert("x-stream-max-segment-size-bytes".into(), AMQPValue::LongLongInt(8_000));
        let opts = QueueDeclareOptions { durable: true, ..Default::default() };
        s.block_on(ch.queue_declare(stream.into(), opts, args)).unwrap();
        Ok(())
    })?;
    for batch in 0..20 {
        let msgs: Vec<ebats::broker::Outgoing> = (0..100)
            .map(|i| ebats::broker::Outgoing {
                exchange: String::new(),
                routing_key: stream.to_string(),
                body: format!("{batch}:{i}:{}", "x".repeat(300)).into_bytes(),
                properties: ebats::wire::properties(&ebats::wire::new_id(), "ebats.test"),
                mandatory: true,
            })
            .collect();
        with_session(|s| s.publish(st, &msgs))?;
    }
    Ok(())
}

/// Every message's offset, read forwards from the stream's first.
fn offsets_forwards(st: &Settings, stream: &str) -> Vec<u64> {
    use ebats::broker::stream_read::{self, Offset, Read};
    let mut all = Vec::new();
    let r = Read { stream, what: "test stream", from: Offset::First, prefetch: 500, within: LONG };
    with_session(|s| stream_read::read_to_now(s, st, &r, |o, _| all.push(o))).unwrap();
    all
}

/// Every message's offset, read backwards to the stream's start, in stream order; and what was read.
fn offsets_backwards(st: &Settings, stream: &str) -> (Vec<u64>, ebats::broker::stream_read::ReadBack) {
    use ebats::broker::stream_read::{self, Back};
    let (mut newest, mut windows) = (Vec::new(), Vec::<Vec<u64>>::new());
    let stats = with_session(|s| {
        stream_read::read_back(s, st, stream, "test stream", 500, |b| {
            match (b, windows.last_mut()) {
                (Back::Message(o, _), Some(w)) => w.push(o),
                (Back::Message(o, _), None) => newest.push(o),
                (Back::WindowDone, _) => windows.push(Vec::new()),
            }
            false
        })
    })
    .unwrap();
    // Windows come newest first, each oldest first.
    let mut all: Vec<u64> = windows.into_iter().rev().flatten().collect();
    all.extend(newest);
    (all, stats)
}

fn delete_queue(st: &Settings, name: &str) {
    with_session(|s| {
        let ch = s.channel(st)?;
        let _ = s.block_on(ch.queue_delete(name.into(), QueueDeleteOptions::default()));
        Ok(())
    })
    .unwrap();
}

/// Offsets have gaps where segments start: a read back gives every message however its windows fall
/// on them. Each read appends a marker, so the 30 reads start their windows at 30 successive
/// offsets and sweep across the gaps (a window that began on one was once taken for the stream's start).
#[test]
fn a_read_back_gives_every_message_across_segment_starts() {
    let _one = one_at_a_time();
    let st = settings("1D");
    let stream = small_segments(&st, "segments", None);
    let forwards = offsets_forwards(&st, &stream);
    assert_eq!(forwards.len(), 2000);
    assert!(forwards.last() > Some(&2000), "segment starts take offsets: {:?}", forwards.last());
    for read in 0..30 {
        let (backwards, stats) = offsets_backwards(&st, &stream);
        assert_eq!(stats.from, 0, "read {read}: {stats:?}");
        assert!(
            backwards == forwards,
            "read {read}: {stats:?}, {} offsets against {}",
            backwards.len(),
            forwards.len()
        );
    }
    delete_queue(&st, &stream);
}

/// A stream whose oldest segments retention took: a read back that wants everything ends at the
/// stream's first offset and gives every message from there on, each once.
#[test]
fn a_read_back_ends_where_retention_left_the_stream() {
    let _one = one_at_a_time();
    let st = settings("1D");
    let stream = small_segments(&st, "trimmed", Some(40_000));
    let (backwards, stats) = offsets_backwards(&st, &stream);
    let forwards = offsets_forwards(&st, &stream);
    assert!(stats.from > 0, "retention took the oldest messages: {stats:?}");
    assert_eq!(backwards.first(), Some(&stats.from), "{stats:?}");
    // The forward read came later: retention may have taken more meanwhile, never given less.
    let tail: Vec<u64> = backwards.iter().copied().filter(|o| Some(o) >= forwards.first()).collect();
    assert_eq!(tail, forwards, "{stats:?}");
    delete_queue(&st, &stream);
}

/// A broker node in front of the real one that the test can kill: its connections are cut and it
/// accepts no more (connections to it are refused).
struct Node {
    port: u16,
    live: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    dead: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Node {
    fn start() -> Node {
        use std::sync::atomic::Ordering::SeqCst;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let node = Node { port, live: Default::default(), conns: Default::default(), dead: Default::default() };
        let (live, conns, dead) = (node.live.clone(), node.conns.clone(), node.dead.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                if dead.load(SeqCst) {
                    return; // the listener goes with the thread: later connections are refused
                }
                let broker = std::net::TcpStream::connect("127.0.0.1:5672").unwrap();
                conns.lock().unwrap().extend([client.try_clone().unwrap(), broker.try_clone().unwrap()]);
                live.fetch_add(1, SeqCst);
                let (mut c, mut b) = (client.try_clone().unwrap(), broker.try_clone().unwrap());
                let l = live.clone();
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c, &mut b);
                    let _ = b.shutdown(std::net::Shutdown::Both);
                    l.fetch_sub(1, SeqCst);
                });
                let (mut b, mut c) = (broker, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut b, &mut c);
                    let _ = c.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        node
    }

    fn live(&self) -> usize {
        self.live.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn kill(&self) {
        self.dead.store(true, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port)); // wakes the acceptor to leave
    }
}

/// `history --follow` (History::follow) moves to the next node of the list when its node dies and
/// reads on after the last record it gave: nothing lost, nothing given twice, no error.
#[test]
fn a_follower_moves_to_the_next_node_when_its_node_dies() {
    let _one = one_at_a_time();
    let st = settings("1D");
    history::writer::declare(&st).unwrap();
    let nodes = [Node::start(), Node::start()];
    let mut fst = st.clone();
    let urls: Vec<String> = nodes.iter().map(|n| format!("amqp://guest:guest@127.0.0.1:{}/%2f", n.port)).collect();
    fst.nodes = urls.iter().map(|u| u.parse().unwrap()).collect();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let follower = {
        let (seen, fst) = (seen.clone(), fst.clone());
        std::thread::spawn(move || {
            history::follow(
                &fst,
                &Query { task: Some("f".into()), ..Query::default() },
                || false,
                |r| {
                    seen.lock().unwrap().push(r.params.to_string());
                    r.params != serde_json::json!(["end"])
                },
            )
        })
    };
    let write = |p: &str| {
        let mut w = Writer::new(&st).unwrap();
        let t = TaskMsg::new("demo", "f", serde_json::json!([p]), 0);
        w.write(&t, &Run { millis: 1.0, message: "ok", class: None, status: 0, end_ms: now_ms() });
        assert_eq!(w.flush(Duration::from_secs(10)), 0);
    };
    // The follower's own connection is the one left on a node once the existence check's is gone.
    wait_until("the follower to connect", LONG, || nodes.iter().map(Node::live).sum::<usize>() >= 1);
    let mut n = 0;
    wait_until("the follower to read a record", LONG, || {
        // The follower may attach after a record is written: one more is written until one is read.
        n += 1;
        write(&format!("r{n}"));
        poll(Duration::from_millis(100), || (!seen.lock().unwrap().is_empty()).then_some(())).is_some()
    });
    with_session(|s| {
        s.disconnect();
        Ok(())
    })
    .unwrap();
    wait_until("one connection left on the nodes", LONG, || nodes.iter().map(Node::live).sum::<usize>() == 1);
    let on = nodes.iter().position(|n| n.live() == 1).unwrap();
    nodes[on].kill();
    write("after");
    write("end");
    let r = follower.join().unwrap();
    assert!(r.is_ok(), "{r:?}");
    let seen = seen.lock().unwrap().clone();
    let tail: Vec<&str> = seen.iter().rev().take(2).rev().map(String::as_str).collect();
    assert_eq!(tail, ["[\"after\"]", "[\"end\"]"]);
    let unique: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no record given twice: {seen:?}");
    delete_stream(&st);
}

/// The dashboard follows the history on a connection of its own: while it reads a long history it
/// never holds the process's broker session (what /api/schedules and /api/failed use), it shows the
/// newest records once caught up, and a record appended later is added without reading again.
#[test]
fn the_dashboard_follows_the_history_without_holding_the_session() {
    let _one = one_at_a_time();
    use ebats::dashboard::sources::{follow_history, HistoryView};
    let st = settings("1D");
    history::writer::declare(&st).unwrap();
    fill(&st, 2000, 100, "bulk");
    let newest = fill(&st, 1, 3, "late");
    let view = std::sync::Arc::new(parking_lot::Mutex::new(HistoryView::default()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let follower = {
        let (st, view, stop) = (st.clone(), view.clone(), stop.clone());
        std::thread::spawn(move || {
            follow_history(&st, &view, &|| stop.load(std::sync::atomic::Ordering::Relaxed));
        })
    };
    let stream = ebats::broker::names::Names::new(&st.prefix).history_stream();
    wait_until("the view to reach the newest record", LONG, || {
        // The process's session stays free while the follower reads: a call on it is not held up.
        let t = std::time::Instant::now();
        with_session(|s| s.queue_counts(&st, &stream)).unwrap();
        assert!(t.elapsed() < Duration::from_secs(5), "a call on the session waited {:?}", t.elapsed());
        view.lock().recent.front().is_some_and(|e| e.id == newest[2].id)
    });
    let v = view.lock().clone();
    assert!(v.on && v.error.is_none(), "{v:?}");
    assert_eq!(v.recent.len(), ebats::dashboard::sources::KEPT);
    let late = fill(&st, 1, 1, "later");
    wait_until("the view to add a record appended later", LONG, || {
        view.lock().recent.front().is_some_and(|e| e.id == late[0].id)
    });
    assert_eq!(view.lock().recent[1].id, newest[2].id, "added to what was read, nothing read twice");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    follower.join().unwrap();
    delete_stream(&st);
}
