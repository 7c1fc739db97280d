//! A subscription's prefetch changed while it consumes (the worker's adapted prefetch): every
//! message is delivered once, whatever the old consumer had been sent before it was cancelled,
//! and what it held can be taken out to give back, as can all it holds when it is cancelled. It uses the process's session (see `main.rs`).

use crate::common::settings;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ebats::broker::current::with_session;
use ebats::broker::names::Names;
use ebats::broker::subscription::{Spec, Subscription};
use ebats::broker::Decl;
use ebats::config::Settings;
use ebats::dispatch;
use ebats::wire::TaskMsg;
use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;

fn publish(st: &Settings, n: &Names, count: usize) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut out = Vec::new();
    let mut decls = Vec::new();
    for i in 0..count {
        let t = TaskMsg::new("pf", "x", serde_json::json!({ "i": i }), 0);
        ids.insert(t.id.clone());
        let (d, o) = dispatch::task(n, &t, 0);
        decls = d;
        out.push(o);
    }
    with_session(|s| {
        s.declare(st, &decls)?;
        s.publish(st, &out)
    })
    .unwrap();
    ids
}

/// Messages ready in `queue` (not delivered to a consumer).
fn ready(st: &Settings, queue: &str) -> u32 {
    with_session(|s| {
        let ch = s.channel(st)?;
        Ok(s.block_on(async {
            let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
            ch.queue_declare(queue.into(), passive, FieldTable::default()).await.map(|q| q.message_count()).unwrap()
        }))
    })
    .unwrap()
}

/// Takes deliveries until `want` ids were seen (acking each); the ids seen and how many came redelivered.
fn take(sub: &mut Subscription, want: usize) -> (Vec<String>, usize) {
    let (mut ids, mut redelivered) = (Vec::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ids.len() < want {
        assert!(Instant::now() < deadline, "only {} of {want} delivered", ids.len());
        if let Some(d) = sub.next(Duration::from_millis(100)).unwrap() {
            ids.push(TaskMsg::parse(&d.data).unwrap().id);
            redelivered += usize::from(d.redelivered);
            sub.ack(d.delivery_tag, false).unwrap();
        }
    }
    (ids, redelivered)
}

#[test]
fn a_new_prefetch_loses_and_repeats_nothing_and_what_was_held_goes_back() {
    let prefix = format!("rt_subpf_{}", std::process::id());
    let st = settings(&prefix, None);
    let n = Names::new(&st.prefix);
    let queue = n.ready_queue("pf");
    let decls = [Decl::Topic("pf".into())];
    let spec = Spec { settings: &st, decls: &decls, queue: &queue, prefetch: 1, tag: "subpf" };
    let mut sub = Subscription::open(&spec).expect("subscribed");

    // Raised while one delivery is taken and more wait.
    let sent = publish(&st, &n, 30);
    let (mut seen, _) = take(&mut sub, 1);
    sub.set_prefetch(10).unwrap();
    seen.extend(take(&mut sub, 29).0);
    assert_eq!(seen.len(), 30);
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), sent, "every message once");
    assert!(sub.ready().is_none(), "nothing more");

    // Lowered while the consumer holds 10 (taken ahead, not run): they go back, and come again.
    let sent = publish(&st, &n, 12);
    let (mut seen, _) = take(&mut sub, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(&st, &queue) > 1 {
        assert!(Instant::now() < deadline, "the consumer did not take its prefetch");
        std::thread::sleep(Duration::from_millis(20));
    }
    sub.set_prefetch(1).unwrap();
    let held = sub.take_replaced();
    assert_eq!(held.len(), 10, "the 10 taken ahead are taken out");
    for d in &held {
        sub.requeue(d.delivery_tag, false).unwrap();
    }
    let (rest, redelivered) = take(&mut sub, 11);
    seen.extend(rest);
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), sent, "every message, none lost");
    assert_eq!(seen.len(), 12, "none twice");
    assert_eq!(redelivered, 10, "those given back come again, marked redelivered");

    // Cancelled while it holds some (a worker leaving): every delivery not taken comes out at once,
    // none is still on its way, and nothing more comes.
    sub.set_prefetch(10).unwrap();
    let sent = publish(&st, &n, 6);
    let (first, _) = take(&mut sub, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(&st, &queue) > 0 {
        assert!(Instant::now() < deadline, "the consumer did not take its prefetch");
        std::thread::sleep(Duration::from_millis(20));
    }
    let held = sub.cancel_and_take().unwrap();
    let mut ids: BTreeSet<String> = held.iter().map(|d| TaskMsg::parse(&d.data).unwrap().id).collect();
    ids.extend(first);
    assert_eq!((held.len(), ids), (5, sent), "the 5 held come out, with the one taken every message");
    for d in &held {
        sub.ack(d.delivery_tag, false).unwrap();
    }
    assert!(sub.next(Duration::from_millis(200)).map(|d| d.is_none()).unwrap_or(true), "nothing after the cancel");

    sub.close("done");
    with_session(|s| {
        let ch = s.channel(&st)?;
        s.block_on(async {
            for q in [queue.clone(), n.unroutable()] {
                let _ = ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
            }
            for x in [n.task_exchange(), n.delay_due(), n.unroutable()] {
                let _ = ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default()).await;
            }
        });
        Ok(())
    })
    .unwrap();
}
