//! The broker layer against the real broker: confirmed publishing, the delay levels, errors.
//! Each test uses its own prefix and deletes what it declared.

use crate::common::{get_body, settings, wait_for, wait_until, Relay};
use std::time::{Duration, Instant};

use ebats::broker::names::{Names, DELAY_LEVELS};
use ebats::broker::{Decl, ErrorKind, Session};
use ebats::config::Settings;
use ebats::dispatch;
use ebats::wire::TaskMsg;
use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};

fn prefix(name: &str) -> String {
    format!("rt_{name}_{}", std::process::id())
}

fn cleanup(s: &mut Session, st: &Settings, topics: &[&str]) {
    let n = Names::new(&st.prefix);
    let mut queues = vec![n.events_queue(), n.unroutable()];
    let mut exchanges = vec![n.event_exchange(), n.task_exchange(), n.delay_exchange(), n.delay_due(), n.unroutable()];
    for l in 0..DELAY_LEVELS {
        queues.push(n.delay_level(l));
        exchanges.push(n.delay_level(l));
    }
    for t in topics {
        queues.push(n.ready_queue(t));
        queues.push(n.failed_queue(t));
    }
    let ch = s.channel(st).unwrap();
    s.block_on(async {
        for q in queues {
            let _ = ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
        }
        for x in exchanges {
            let _ = ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default()).await;
        }
    });
}

#[test]
fn task_lands_in_its_ready_queue_confirmed() {
    let st = settings(&prefix("ready"), None);
    let n = Names::new(&st.prefix);
    let mut s = Session::new().unwrap();
    let t = TaskMsg::new("demo", "closeOrder", serde_json::json!({"a": [1, 2]}), 0);
    let (decls, out) = dispatch::task(&n, &t, 0);
    s.declare(&st, &decls).unwrap();
    s.publish(&st, &[out]).unwrap();
    let body = get_body(&mut s, &st, &n.ready_queue("demo")).expect("the task is in its queue");
    let back = TaskMsg::parse(&body).unwrap();
    assert_eq!((back.id.as_str(), back.params.clone()), (t.id.as_str(), serde_json::json!({"a": [1, 2]})));
    cleanup(&mut s, &st, &["demo"]);
}

#[test]
fn short_delay_published_after_long_one_arrives_first() {
    let st = settings(&prefix("delay"), None);
    let n = Names::new(&st.prefix);
    let mut s = Session::new().unwrap();
    let long = TaskMsg::new("demo", "long", serde_json::Value::Null, 30);
    let short = TaskMsg::new("demo", "short", serde_json::Value::Null, 1);
    let start = Instant::now();
    for (t, d) in [(&long, 30), (&short, 1)] {
        let (decls, out) = dispatch::task(&n, t, d);
        s.declare(&st, &decls).unwrap();
        s.publish(&st, &[out]).unwrap();
    }
    let queue = n.ready_queue("demo");
    let body = wait_for("the 1 s task", Duration::from_secs(5), || get_body(&mut s, &st, &queue));
    let elapsed = start.elapsed();
    assert_eq!(TaskMsg::parse(&body).unwrap().name, "short");
    assert!(elapsed >= Duration::from_millis(950), "arrived after {elapsed:?}, before its delay");
    assert!(elapsed < Duration::from_secs(3), "arrived after {elapsed:?}");
    // The long one is still held by the broker, not in the ready queue.
    assert!(get_body(&mut s, &st, &queue).is_none());
    cleanup(&mut s, &st, &["demo"]);
}

#[test]
fn unroutable_publish_is_an_error() {
    let st = settings(&prefix("unroutable"), None);
    let mut s = Session::new().unwrap();
    let x = format!("{}.x", st.prefix);
    s.declare(&st, &[Decl::Exchange { name: x.clone(), kind: "direct".into() }]).unwrap();
    let out = ebats::broker::Outgoing {
        exchange: x.clone(),
        routing_key: "nobody".into(),
        body: b"{}".to_vec(),
        properties: Default::default(),
        mandatory: true,
    };
    let e = s.publish(&st, &[out]).expect_err("an unroutable message is an error");
    assert_eq!(e.kind(), ErrorKind::Unroutable, "{e}");
    let ch = s.channel(&st).unwrap();
    s.block_on(async { ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default()).await }).unwrap();
}

#[test]
fn closed_port_fails_fast_with_a_connect_error() {
    let st = settings(&prefix("down"), Some("amqp://guest:guest@127.0.0.1:1/%2f"));
    let mut s = Session::new().unwrap();
    let start = Instant::now();
    let e = s.declare(&st, &[Decl::Events]).expect_err("nothing listens on port 1");
    assert_eq!(e.kind(), ErrorKind::ConnectRefused, "{e}");
    assert!(e.is_recoverable());
    assert!(e.message().contains("127.0.0.1:1"), "{e}");
    assert!(e.message().contains("is RabbitMQ running on that host and port?"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

// ---- error kinds, each produced by the real broker ------------------------------------------------

fn url_with(user_pass: &str, port: u16, vhost: &str) -> String {
    format!("amqp://{user_pass}@127.0.0.1:{port}/{vhost}")
}

#[test]
fn wrong_password_is_credentials_refused_with_its_hint() {
    let st = settings(&prefix("pw"), Some(&url_with("guest:not_the_password", 5672, "%2f")));
    let mut s = Session::new().unwrap();
    let e = s.declare(&st, &[Decl::Events]).expect_err("a wrong password is refused");
    assert_eq!(e.kind(), ErrorKind::CredentialsRefused, "{e}");
    assert!(!e.is_recoverable());
    assert!(e.message().contains("wrong user name or password?"), "{e}");
    assert!(!e.message().contains("not_the_password"), "the password must not show: {e}");
}

#[test]
fn unknown_vhost_is_vhost_refused_with_its_hint() {
    let st = settings(&prefix("vhost"), Some(&url_with("guest:guest", 5672, "ebats_no_such_vhost_rt")));
    let mut s = Session::new().unwrap();
    let e = s.declare(&st, &[Decl::Events]).expect_err("an unknown vhost is refused");
    assert_eq!(e.kind(), ErrorKind::VhostRefused, "{e}");
    assert!(!e.is_recoverable());
    assert!(e.message().contains("does the vhost exist, and may this user use it?"), "{e}");
}

#[test]
fn missing_queue_is_not_found() {
    let st = settings(&prefix("missing"), None);
    let mut s = Session::new().unwrap();
    let e = s.queue_depth(&st, &format!("{}.no_such_queue", st.prefix)).expect_err("the queue does not exist");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    // The session's connection survives a closed channel.
    let n = Names::new(&st.prefix);
    s.declare(&st, &[Decl::Failed("demo".into())]).unwrap();
    assert_eq!(s.queue_depth(&st, &n.failed_queue("demo")).unwrap(), 0);
    cleanup(&mut s, &st, &["demo"]);
}

/// A channel the broker closed with an error (a passive declaration of a missing queue, as the probe
/// of the original library's queues makes) leaves its id marked with that error in lapin; once the ids
/// come round again (2,047 channels later on the same connection), a channel opened on it must still
/// open, not fail with the old 404.
#[test]
fn a_channel_opened_on_the_id_of_one_the_broker_closed_opens() {
    let st = settings(&prefix("reuse"), None);
    let mut s = Session::new().unwrap();
    let ch = s.channel(&st).unwrap();
    let missing = format!("{}.missing", st.prefix);
    let r = s.block_on(ch.queue_declare(
        missing.as_str().into(),
        QueueDeclareOptions { passive: true, ..Default::default() },
        FieldTable::default(),
    ));
    assert!(r.is_err(), "the queue does not exist");
    for i in 0..2_200 {
        let c = s.channel(&st).unwrap_or_else(|e| panic!("channel {i} after the 404: {e}"));
        let _ = s.block_on(c.close(200, "done".into()));
    }
}

#[test]
fn redeclare_with_other_arguments_is_inequivalent_naming_the_queue() {
    let st = settings(&prefix("clash"), None);
    let n = Names::new(&st.prefix);
    let mut s = Session::new().unwrap();
    let queue = n.failed_queue("demo");
    // The same name, not durable: ebats's durable declaration clashes with it.
    let ch = s.channel(&st).unwrap();
    s.block_on(async {
        ch.queue_declare(queue.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await
    })
    .unwrap();
    let e = s.declare(&st, &[Decl::Failed("demo".into())]).expect_err("the declarations clash");
    assert_eq!(e.kind(), ErrorKind::Inequivalent, "{e}");
    assert!(!e.is_recoverable());
    assert!(e.kind().stops_process());
    let m = e.message();
    assert!(m.starts_with(&format!("queue '{queue}' exists with other arguments, but ebats declares")), "{m}");
    assert!(m.contains("ebats.prefix") && m.contains(&format!("name={queue}")), "{m}");
    cleanup(&mut s, &st, &["demo"]);
}

/// Declares `name` as a durable exchange of `kind` by hand.
fn exchange_by_hand(s: &mut Session, st: &Settings, name: &str, kind: lapin::ExchangeKind) {
    let ch = s.channel(st).unwrap();
    s.block_on(async {
        let o = lapin::options::ExchangeDeclareOptions { durable: true, ..Default::default() };
        ch.exchange_declare(name.into(), kind, o, FieldTable::default()).await
    })
    .unwrap();
}

#[test]
fn an_exchange_of_another_type_is_named_with_the_type_it_has() {
    let st = settings(&prefix("xclash"), None);
    let n = Names::new(&st.prefix);
    let mut s = Session::new().unwrap();
    exchange_by_hand(&mut s, &st, &n.task_exchange(), lapin::ExchangeKind::Topic);
    let e = s.declare(&st, &[Decl::Topic("demo".into())]).expect_err("the types clash");
    assert_eq!(e.kind(), ErrorKind::Inequivalent, "{e}");
    let m = e.message();
    let x = n.task_exchange();
    assert!(
        m.starts_with(&format!(
            "exchange '{x}' exists as a topic exchange, but ebats declares a durable direct exchange"
        )),
        "{m}"
    );
    assert!(m.contains(&format!("rabbitmqadmin delete exchange name={x}")), "{m}");
    // The same for the event exchange in a type other than the original's direct one.
    exchange_by_hand(&mut s, &st, &n.event_exchange(), lapin::ExchangeKind::Headers);
    let e = s.declare(&st, &[Decl::Events]).expect_err("the types clash");
    assert_eq!(e.kind(), ErrorKind::Inequivalent, "{e}");
    assert!(e.message().contains("exists as a headers exchange, but ebats declares a durable fanout"), "{e}");
    cleanup(&mut s, &st, &["demo"]);
}

#[test]
fn the_original_direct_event_exchange_is_adopted_and_bound_per_event_name() {
    let st = settings(&prefix("adopt"), None);
    let n = Names::new(&st.prefix);
    let mut s = Session::new().unwrap();
    exchange_by_hand(&mut s, &st, &n.event_exchange(), lapin::ExchangeKind::Direct);
    let e = ebats::wire::EventMsg::new("order_paied", serde_json::json!({"id": 1}));
    let (decls, out) = dispatch::event(&n, &e);
    // The route of the event's name comes with the event.
    assert!(decls.contains(&Decl::EventRoute("order_paied".into())), "{decls:?}");
    dispatch::send(&st, &decls, std::slice::from_ref(&out)).expect("routed through the adopted exchange");
    // Another connection, another event name: bound as well, the exchange left direct.
    s.disconnect();
    let other = ebats::wire::EventMsg::new("order_shipped", serde_json::json!([]));
    let (decls, out2) = dispatch::event(&n, &other);
    s.declare(&st, &decls).unwrap();
    s.publish(&st, std::slice::from_ref(&out2)).unwrap();
    assert_eq!(s.queue_depth(&st, &n.events_queue()).unwrap(), 2);
    // Still direct: declaring it direct by hand is accepted.
    exchange_by_hand(&mut s, &st, &n.event_exchange(), lapin::ExchangeKind::Direct);
    cleanup(&mut s, &st, &[]);
}

#[test]
fn a_full_queue_that_rejects_publishes_is_a_nack() {
    let st = settings(&prefix("nack"), None);
    let mut s = Session::new().unwrap();
    let queue = format!("{}.full", st.prefix);
    let ch = s.channel(&st).unwrap();
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongInt(0));
    args.insert("x-overflow".into(), AMQPValue::LongString("reject-publish".into()));
    s.block_on(async { ch.queue_declare(queue.as_str().into(), QueueDeclareOptions::default(), args).await }).unwrap();
    let out = ebats::broker::Outgoing {
        exchange: String::new(),
        routing_key: queue.clone(),
        body: b"{}".to_vec(),
        properties: Default::default(),
        mandatory: true,
    };
    let e = s.publish(&st, std::slice::from_ref(&out)).expect_err("the queue rejects the message");
    assert_eq!(e.kind(), ErrorKind::Nacked, "{e}");
    // The next publish goes out on a new channel of the same connection, and is confirmed.
    assert!(s.is_connected(), "a refusal keeps the connection");
    let ch = s.channel(&st).unwrap();
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongInt(1));
    let open = format!("{queue}.open");
    s.block_on(async { ch.queue_declare(open.as_str().into(), QueueDeclareOptions::default(), args).await }).unwrap();
    s.publish(&st, &[ebats::broker::Outgoing { routing_key: open.clone(), ..out }]).expect("published after a refusal");
    s.block_on(async { ch.queue_delete(open.as_str().into(), QueueDeleteOptions::default()).await }).unwrap();
    s.block_on(async { ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await }).unwrap();
}

/// A listener that accepts connections and never answers: the connect timeout bounds the wait.
#[test]
fn silent_peer_is_a_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = std::thread::spawn(move || listener.accept().map(|(sock, _)| sock));
    let st = settings(&prefix("silent"), Some(&url_with("guest:guest", port, "%2f")));
    let mut s = Session::new().unwrap();
    let start = Instant::now();
    let e = s.declare(&st, &[Decl::Events]).expect_err("nobody answers");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.is_recoverable());
    assert!(start.elapsed() < Duration::from_secs(4), "{:?}", start.elapsed());
    drop(held.join());
}

#[test]
fn connection_reset_is_connection_lost_and_the_next_send_reconnects() {
    let relay = Relay::start();
    let st = settings(&prefix("reset"), Some(&url_with("guest:guest", relay.port, "%2f")));
    let n = Names::new(&st.prefix);
    let mut s = Session::new().unwrap();
    s.declare(&st, &[Decl::Failed("demo".into())]).unwrap();
    let ch = s.channel(&st).unwrap();
    relay.cut();
    wait_until("the session to see the cut", Duration::from_secs(5), || !s.is_connected());
    let e = s
        .block_on(ch.queue_declare(
            n.failed_queue("demo").as_str().into(),
            QueueDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        ))
        .expect_err("the connection is gone");
    let e = ebats::broker::BrokerError::lapin("queue.declare", &e);
    assert_eq!(e.kind(), ErrorKind::ConnectionLost, "{e}");
    assert!(e.is_recoverable());
    // dispatch sends again on a connection that broke while idle.
    let t = TaskMsg::new("demo", "afterCut", serde_json::Value::Null, 0);
    let (decls, out) = dispatch::task(&n, &t, 0);
    dispatch::send(&st, &decls, &[out]).expect("sent after the cut");
    let mut main = Session::new().unwrap();
    let st_main = settings(&st.prefix, None);
    let body = get_body(&mut main, &st_main, &n.ready_queue("demo")).expect("the task arrived");
    assert_eq!(TaskMsg::parse(&body).unwrap().id, t.id);
    cleanup(&mut main, &st_main, &["demo"]);
}

#[test]
fn calling_back_into_a_busy_session_is_busy() {
    let e = ebats::broker::current::with_session(|_| ebats::broker::current::with_session(|_| Ok(())))
        .expect_err("re-entrant use");
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
}

#[test]
fn announced_processes_are_discovered_newest_per_address() {
    use ebats::broker::processes::{announce, discover_on, Announced};
    let st = settings(&prefix("processes"), None);
    let mut s = Session::new().unwrap();
    let now = ebats::wire::now_ms();
    let rec = |address: &str, pid: i32, at_ms: i64| Announced {
        role: "worker".into(),
        topics: vec!["demo".into()],
        address: address.into(),
        pid,
        host: "h".into(),
        started_ms: now - 5_000,
        at_ms,
    };
    assert_eq!(discover_on(&mut s, &st).unwrap(), [], "nothing announced yet");
    for r in
        [rec("127.0.0.1:9001", 1, now - 2_000), rec("127.0.0.1:9001", 2, now), rec("127.0.0.1:9002", 3, now - 120_000)]
    {
        announce(&mut s, &st, &r).unwrap();
    }
    // The newest of 9001; 9002 has been silent too long.
    assert_eq!(discover_on(&mut s, &st).unwrap(), [rec("127.0.0.1:9001", 2, now)]);
    let ch = s.channel(&st).unwrap();
    let stream = Names::new(&st.prefix).processes_stream();
    s.block_on(async { ch.queue_delete(stream.as_str().into(), QueueDeleteOptions::default()).await }).unwrap();
}

/// Takes starts of a rate counter as fast as the broker answers for `secs` (the log holds 20, for 1 s):
/// the starts, the most in any 1 s (by the times the confirms arrived), and how long after the start 20
/// before it each start came, less 1 s (ms: mean, largest, smallest).
fn rate_counter_run(secs: u64) -> (usize, usize, f64, f64, f64) {
    use ebats::broker::rate::{Counters, Took};
    let st = settings(&prefix("rate"), None);
    let r = ebats::flow::limits::Rate::parse("20/s", 0).unwrap();
    let queue = Names::new(&st.prefix).rate_counter("demo", "t", 20, ebats::flow::rate::window_ms(&r));
    let mut counters = Counters::new();
    let mut starts: Vec<Instant> = Vec::new();
    let begin = Instant::now();
    while begin.elapsed() < Duration::from_secs(secs) {
        if counters.take(&st, &queue, &r).unwrap() == Took::Started {
            starts.push(Instant::now());
        }
    }
    let most = (0..starts.len())
        .map(|i| starts[i..].iter().take_while(|t| t.duration_since(starts[i]) < Duration::from_secs(1)).count())
        .max()
        .unwrap_or(0);
    let lags: Vec<f64> =
        (20..starts.len()).map(|i| starts[i].duration_since(starts[i - 20]).as_secs_f64() * 1000.0 - 1000.0).collect();
    let mean = lags.iter().sum::<f64>() / lags.len().max(1) as f64;
    let max = lags.iter().cloned().fold(f64::MIN, f64::max);
    let min = lags.iter().cloned().fold(f64::MAX, f64::min);
    let mut s = Session::new().unwrap();
    let ch = s.channel(&st).unwrap();
    s.block_on(async { ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await }).unwrap();
    (starts.len(), most, mean, max, min)
}

/// A rate counter lets at most its capacity start in any window, and expires its starts on time: at
/// least 95 % of the limit with work always waiting. `EBATS_RATE_MEASURE_SECS` runs it longer.
#[test]
fn a_rate_counter_holds_its_limit_and_reaches_it() {
    let secs: u64 = std::env::var("EBATS_RATE_MEASURE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let (n, most, mean, max, min) = rate_counter_run(secs);
    eprintln!(
        "rate counter: {n} starts in {secs} s (limit {}), at most {most} in any 1 s; a start came {mean:.1} ms \
         (mean), {max:.1} ms (most), {min:.1} ms (least) more than 1 s after the 20th before it",
        20 * secs
    );
    assert!(most <= 20, "{most} starts in one second");
    assert!(n as f64 >= 0.95 * 20.0 * secs as f64, "{n} starts in {secs} s");
    // In the same test: counters use the process's one session, which parallel tests would find busy.
    a_rate_counter_that_does_not_bind_takes_its_starts_in_blocks();
}

/// A limit that does not bind takes its starts a block at a time: far fewer messages in its log than
/// starts (printed: the mean cost of a start, and the messages).
fn a_rate_counter_that_does_not_bind_takes_its_starts_in_blocks() {
    use ebats::broker::rate::{Counters, Took};
    let st = settings(&prefix("rate_free"), None);
    let r = ebats::flow::limits::Rate::parse("1000000/s", 0).unwrap();
    let queue = Names::new(&st.prefix).rate_counter("demo", "t", r.count, ebats::flow::rate::window_ms(&r));
    let mut counters = Counters::new();
    assert_eq!(counters.take(&st, &queue, &r).unwrap(), Took::Started, "declared and taken");
    let n = 2000;
    let begin = Instant::now();
    for _ in 0..n {
        assert_eq!(counters.take(&st, &queue, &r).unwrap(), Took::Started);
    }
    let took = begin.elapsed();
    let mut s = Session::new().unwrap();
    let logged = s.queue_depth(&st, &queue).unwrap();
    eprintln!(
        "a start of a limit that does not bind: {:.2} µs; {n} starts logged as {logged} messages",
        took.as_secs_f64() * 1e6 / n as f64
    );
    if took < Duration::from_millis(1000) {
        // All still in the log (its TTL is 1.02 s).
        assert!(logged >= 1 && (logged as usize) < n / 10, "{logged} messages for {n} starts");
    }
    let ch = s.channel(&st).unwrap();
    s.block_on(async { ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await }).unwrap();
}

/// `take_on` on a session of its own.
fn take(s: &mut Session, st: &Settings, queue: &str, id: &str, for_secs: u64) -> ebats::flow::unique::Take {
    let conn = s.link(st).unwrap().connection.clone();
    s.block_on(ebats::broker::unique::take_on(&conn, queue, id, for_secs)).unwrap()
}

fn release(s: &mut Session, st: &Settings, queue: &str, id: &str) -> bool {
    let conn = s.link(st).unwrap().connection.clone();
    s.block_on(ebats::broker::unique::release_on(&conn, queue, id)).unwrap()
}

fn queue_exists(s: &mut Session, st: &Settings, queue: &str) -> bool {
    match s.queue_depth(st, queue) {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::NotFound => false,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_unique_key_is_taken_by_one_of_several_takers_at_once() {
    use ebats::flow::unique::Take;
    let st = settings(&prefix("unique_race"), None);
    let queue = Names::new(&st.prefix).unique_queue("demo", "order:1");
    let takers: Vec<_> = (0..8)
        .map(|i| {
            let (st, queue) = (st.clone(), queue.clone());
            std::thread::spawn(move || {
                let mut s = Session::new().unwrap();
                (format!("task{i}"), take(&mut s, &st, &queue, &format!("task{i}"), 60))
            })
        })
        .collect();
    let results: Vec<(String, Take)> = takers.into_iter().map(|t| t.join().unwrap()).collect();
    let winners: Vec<&String> = results.iter().filter(|(_, t)| *t == Take::Taken).map(|(id, _)| id).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (_, t) in &results {
        assert!(*t == Take::Taken || *t == Take::Held(winners[0].clone()), "{results:?}");
    }
    let mut s = Session::new().unwrap();
    assert_eq!(take(&mut s, &st, &queue, "late", 60), Take::Held(winners[0].clone()), "held until released");
    assert_eq!(take(&mut s, &st, &queue, winners[0], 60), Take::Held(winners[0].clone()), "its own id");
    assert!(release(&mut s, &st, &queue, winners[0]));
    assert!(!queue_exists(&mut s, &st, &queue), "a released key costs no queue");
    assert!(!queue_exists(&mut s, &st, &ebats::broker::names::unique_holder(&queue)), "nor its holder's");
    assert!(!release(&mut s, &st, &queue, winners[0]), "released twice: nothing to do");
}

#[test]
fn a_unique_key_is_released_only_by_its_holder() {
    use ebats::flow::unique::Take;
    let st = settings(&prefix("unique_release"), None);
    let queue = Names::new(&st.prefix).unique_queue("demo", "order:2");
    let mut s = Session::new().unwrap();
    assert_eq!(take(&mut s, &st, &queue, "a", 60), Take::Taken);
    assert!(!release(&mut s, &st, &queue, "b"), "another id releases nothing");
    assert_eq!(take(&mut s, &st, &queue, "c", 60), Take::Held("a".into()), "still held by its holder");
    assert!(release(&mut s, &st, &queue, "a"));
    assert_eq!(take(&mut s, &st, &queue, "c", 60), Take::Taken, "free once released");
    // Taken with another lifetime while held: a duplicate all the same; free, made again with its own.
    assert_eq!(take(&mut s, &st, &queue, "d", 30), Take::Held("c".into()));
    assert!(release(&mut s, &st, &queue, "c"));
    assert_eq!(take(&mut s, &st, &queue, "d", 30), Take::Taken);
    assert!(release(&mut s, &st, &queue, "d"));
}

#[test]
fn a_unique_key_frees_itself_after_its_lifetime() {
    use ebats::flow::unique::Take;
    let st = settings(&prefix("unique_expiry"), None);
    let queue = Names::new(&st.prefix).unique_queue("demo", "order:3");
    let mut s = Session::new().unwrap();
    assert_eq!(take(&mut s, &st, &queue, "lost", 1), Take::Taken);
    assert_eq!(take(&mut s, &st, &queue, "b", 1), Take::Held("lost".into()));
    wait_until("the key to expire", Duration::from_secs(10), || take(&mut s, &st, &queue, "b", 1) == Take::Taken);
    // Unused for its lifetime, its queue goes too (looking at it would be a use: time is what is tested).
    std::thread::sleep(Duration::from_millis(2500));
    assert!(!queue_exists(&mut s, &st, &queue), "an expired key's queue is deleted");
}

#[test]
fn at_most_n_permits_held_and_each_back_when_released_or_its_connection_closes() {
    use ebats::broker::permit::Permits;
    let st = settings(&prefix("permit"), None);
    let n = Names::new(&st.prefix);
    let slot = |i| n.permit("demo", "k.0a1b2c3d.c:1", i);
    let mut holders: Vec<Permits> = (0..4).map(|_| Permits::own(Session::new().unwrap())).collect();
    let mut got: Vec<_> = holders.iter_mut().map(|h| h.acquire(&st, 2, slot).unwrap()).collect();
    let held: Vec<usize> = (0..4).filter(|&i| got[i].is_some()).collect();
    let refused: Vec<usize> = (0..4).filter(|&i| got[i].is_none()).collect();
    assert_eq!(held.len(), 2, "two slots, two holders");
    assert_ne!(got[held[0]].as_ref().unwrap().queue(), got[held[1]].as_ref().unwrap().queue());
    assert!(holders[held[0]].holds(got[held[0]].as_ref().unwrap()));
    // A refused holder asks again on a new channel: still refused while both are held.
    assert_eq!(holders[refused[0]].acquire(&st, 2, slot).unwrap(), None);
    // Released: one other holder gets it.
    let p = got[held[0]].take().unwrap();
    holders[held[0]].release(&st, p).unwrap();
    let again =
        wait_for("the released permit", Duration::from_secs(5), || holders[refused[0]].acquire(&st, 2, slot).unwrap());
    assert_eq!(holders[refused[1]].acquire(&st, 2, slot).unwrap(), None, "still two holders at most");
    // The connection of a holder closes: its permit comes back by itself.
    holders[held[1]].close();
    let last = wait_for("the permit of a closed connection", Duration::from_secs(5), || {
        holders[refused[1]].acquire(&st, 2, slot).unwrap()
    });
    assert_ne!(again.queue(), last.queue());
    for h in &mut holders {
        h.close();
    }
}

#[test]
fn a_permit_handed_over_wakes_one_holder_waiting_in_its_line_who_takes_it_at_once() {
    use ebats::broker::permit::Permits;
    let st = settings(&prefix("permitline"), None);
    let n = Names::new(&st.prefix);
    let slot = |i| n.permit("demo", "t", i);
    let line = n.permit_line("demo", "t");
    let mut keeper = Permits::own(Session::new().unwrap());
    let held = keeper.acquire(&st, 1, slot).unwrap().expect("the one slot");
    assert_eq!(keeper.waiting(&st, &line).unwrap(), 0, "nobody waits yet");
    // Two holders refused, each waiting in the line (up to 4 s) on a thread of its own.
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let (st, line) = (st.clone(), line.clone());
            std::thread::spawn(move || {
                let n = Names::new(&st.prefix);
                let slot = |i| n.permit("demo", "t", i);
                let mut p = Permits::own(Session::new().unwrap());
                assert_eq!(p.acquire(&st, 1, slot).unwrap(), None, "held by the keeper");
                let start = Instant::now();
                let stopped = p.wait_turn(&st, &line, Duration::from_secs(4), &|| false);
                let waited = start.elapsed();
                let got = p.acquire(&st, 1, slot).unwrap();
                p.leave_line(&st);
                (stopped, waited, got.is_some(), p)
            })
        })
        .collect();
    wait_until("both in the line", Duration::from_secs(5), || keeper.waiting(&st, &line).unwrap() == 2);
    // Handed over: released, then one wake on the same channel.
    keeper.release(&st, held).unwrap();
    keeper.wake(&st, &line);
    let mut ends: Vec<_> = waiters.into_iter().map(|t| t.join().unwrap()).collect();
    ends.sort_by_key(|e| e.1);
    assert!(!ends[0].0 && !ends[1].0, "neither was stopped");
    assert!(ends[0].1 < Duration::from_secs(2) && ends[0].2, "the woken one took the permit at once: {:?}", ends[0].1);
    assert!(ends[1].1 >= Duration::from_secs(4) && !ends[1].2, "the other waited its whole wait: {:?}", ends[1].1);
    wait_until("the line empty once they left", Duration::from_secs(5), || keeper.waiting(&st, &line).unwrap() == 0);
    for (_, _, _, mut p) in ends {
        p.close();
    }
    let mut s = Session::new().unwrap();
    let ch = s.channel(&st).unwrap();
    s.block_on(ch.queue_delete(line.as_str().into(), QueueDeleteOptions::default())).unwrap();
    keeper.close();
}
