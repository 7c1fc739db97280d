//! A subscription consuming on its own connection (`broker::direct::consuming`, over plain AMQP):
//! deliveries whole (bodies larger than a frame, properties), a pause that stops them until the
//! consumer's cancel is answered and a resume that brings the rest, a second consumer, and a close
//! that gives back what was not acked. It uses the process's session (see `main.rs`).

use crate::common::{settings, wait_until};
use std::time::{Duration, Instant};

use ebats::broker::current::with_session;
use ebats::broker::names::Names;
use ebats::broker::subscription::{Spec, Subscription};
use ebats::broker::{Decl, Outgoing};
use ebats::config::Settings;
use lapin::message::Delivery;
use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;

const TICK: Duration = Duration::from_millis(100);

fn send(st: &Settings, queue: &str, bodies: &[Vec<u8>]) {
    let out: Vec<Outgoing> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| Outgoing {
            exchange: String::new(),
            routing_key: queue.into(),
            body: b.clone(),
            properties: BasicProperties::default().with_message_id(format!("m{i}").into()).with_delivery_mode(2),
            mandatory: true,
        })
        .collect();
    with_session(|s| s.publish(st, &out)).unwrap();
}

/// Messages ready in `queue`, and its consumers.
fn counts(st: &Settings, queue: &str) -> (u32, u32) {
    with_session(|s| s.queue_counts(st, queue)).unwrap()
}

fn next(sub: &mut Subscription) -> Delivery {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "nothing delivered");
        if let Some(d) = sub.next(TICK).unwrap() {
            return d;
        }
    }
}

#[test]
fn deliveries_come_whole_a_pause_holds_them_a_second_consumer_adds_and_a_close_gives_back() {
    let prefix = format!("rt_subdirect_{}", std::process::id());
    let st = settings(&prefix, None);
    let n = Names::new(&st.prefix);
    let queue = n.ready_queue("sd");
    let other = format!("{prefix}.other");
    let decls = [Decl::Topic("sd".into())];
    let spec = Spec { settings: &st, decls: &decls, queue: &queue, prefetch: 5, tag: "subdirect" };
    let mut sub = Subscription::open(&spec).expect("subscribed");

    // Whole, in order, with their properties: 300 KB spans three frames; an empty body has none.
    let bodies = vec![b"one".to_vec(), vec![b'x'; 300_000], Vec::new()];
    send(&st, &queue, &bodies);
    for (i, b) in bodies.iter().enumerate() {
        let d = next(&mut sub);
        assert_eq!(&d.data, b, "message {i}");
        assert_eq!(d.properties.message_id().as_ref().map(|s| s.to_string()), Some(format!("m{i}")));
        assert!(!d.redelivered);
        sub.ack(d.delivery_tag, false).unwrap();
    }
    assert!(sub.ready().is_none(), "nothing more");

    // Paused: what comes after the cancel stays in the queue, until the resume.
    sub.pause();
    assert!(sub.is_paused());
    let quiet = Instant::now() + Duration::from_millis(500);
    while Instant::now() < quiet {
        assert!(sub.next(TICK).unwrap().is_none(), "nothing while paused");
    }
    send(&st, &queue, &[b"later".to_vec()]);
    wait_until("the message waits in the queue", Duration::from_secs(5), || counts(&st, &queue) == (1, 0));
    sub.resume().unwrap();
    assert!(!sub.is_paused());
    let d = next(&mut sub);
    assert_eq!(d.data, b"later");
    sub.ack(d.delivery_tag, true).unwrap();

    // A second queue consumed beside, until cancelled.
    with_session(|s| {
        let ch = s.channel(&st)?;
        s.block_on(ch.queue_declare(other.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()))
            .unwrap();
        Ok(())
    })
    .unwrap();
    sub.consume_also(&other, "subdirect-also").unwrap();
    assert_eq!(sub.also_queue(), Some(other.as_str()));
    send(&st, &other, &[b"beside".to_vec()]);
    let d = next(&mut sub);
    assert_eq!(d.data, b"beside");
    sub.ack(d.delivery_tag, false).unwrap();
    sub.cancel_also();
    assert_eq!(sub.also_queue(), None);
    assert_eq!(counts(&st, &other).1, 0, "the second consumer is gone");

    // Taken, not acked, then closed: back in the queue.
    send(&st, &queue, &[b"held".to_vec()]);
    let d = next(&mut sub);
    assert_eq!(d.data, b"held");
    sub.close("done");
    wait_until("the unacked message back in the queue", Duration::from_secs(5), || counts(&st, &queue) == (1, 0));

    with_session(|s| {
        let ch = s.channel(&st)?;
        s.block_on(async {
            for q in [queue.clone(), other.clone(), n.unroutable()] {
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
