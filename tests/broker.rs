//! The broker layer against the real broker: confirmed publishing, the delay levels, errors.
//! Each test uses its own prefix and deletes what it declared.

use std::time::{Duration, Instant};

use ebats::broker::names::{Names, DELAY_LEVELS};
use ebats::broker::{BrokerError, Decl, Session};
use ebats::config::{resolve, Settings, Sources};
use ebats::dispatch;
use ebats::wire::TaskMsg;
use lapin::options::{BasicAckOptions, BasicGetOptions, ExchangeDeleteOptions, QueueDeleteOptions};

fn settings(prefix: &str, url: Option<&str>) -> Settings {
    let url = url.map(str::to_string).or_else(|| std::env::var("EBATS_AMQP_URL").ok());
    resolve(&Sources {
        ini: &|_| None,
        env: &|k| match k {
            "EBATS_PREFIX" => Some(prefix.to_string()),
            "EBATS_AMQP_URL" => url.clone(),
            "EBATS_CONNECT_TIMEOUT" => Some("2".into()),
            _ => None,
        },
        constant: &|_| None,
    })
    .unwrap()
}

fn prefix(name: &str) -> String {
    format!("rt_{name}_{}", std::process::id())
}

fn get_body(s: &mut Session, st: &Settings, queue: &str) -> Option<Vec<u8>> {
    let ch = s.channel(st).unwrap();
    s.block_on(async {
        let m = ch.basic_get(queue.into(), BasicGetOptions { no_ack: false }).await.unwrap()?;
        m.delivery.acker.ack(BasicAckOptions::default()).await.unwrap();
        Some(m.delivery.data)
    })
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
    let body = loop {
        if let Some(b) = get_body(&mut s, &st, &queue) {
            break b;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "the 1 s task did not arrive within 5 s");
        std::thread::sleep(Duration::from_millis(20));
    };
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
    match s.publish(&st, &[out]) {
        Err(BrokerError::Unroutable(m)) => assert!(m.contains("unroutable"), "{m}"),
        other => panic!("expected an unroutable error, got {other:?}"),
    }
    let ch = s.channel(&st).unwrap();
    s.block_on(async { ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default()).await }).unwrap();
}

#[test]
fn closed_port_fails_fast_with_a_connect_error() {
    let st = settings(&prefix("down"), Some("amqp://guest:guest@127.0.0.1:1/%2f"));
    let mut s = Session::new().unwrap();
    let start = Instant::now();
    match s.declare(&st, &[Decl::Events]) {
        Err(BrokerError::Connect(m)) => assert!(m.contains("127.0.0.1:1"), "{m}"),
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(5));
}
