//! A subscription whose connection is cut while the process is busy: the end of the consumer may be
//! seen by `ready()` (taking what has already arrived) rather than by `next()`; either way the
//! consume loop must learn it, or it waits on a dead consumer for ever (a Scheduler routing a steady
//! flow of events did, after a broker restart). It uses the process's session (see `main.rs`).

use crate::common::{settings, wait_until, Relay};
use std::time::{Duration, Instant};

use ebats::broker::current::with_session;
use ebats::broker::names::Names;
use ebats::broker::subscription::{Spec, Subscription};
use ebats::broker::{Decl, Session};
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};

#[test]
fn the_end_of_a_consumer_seen_by_ready_is_reported_by_next() {
    let relay = Relay::start();
    let prefix = format!("rt_subcut_{}", std::process::id());
    let st = settings(&prefix, Some(&format!("amqp://guest:guest@127.0.0.1:{}/%2f", relay.port)));
    let n = Names::new(&st.prefix);
    let queue = n.ready_queue("cut");
    let decls = [Decl::Topic("cut".into())];
    let spec = Spec { settings: &st, decls: &decls, queue: &queue, prefetch: 10, tag: "subcut" };
    let mut sub = Subscription::open(&spec).expect("subscribed through the relay");
    assert!(sub.next(Duration::from_millis(100)).unwrap().is_none(), "nothing to deliver yet");

    relay.cut();
    wait_until("the session to see the cut", Duration::from_secs(5), || {
        !with_session(|s| Ok(s.is_connected())).unwrap()
    });
    // Busy (the behaviour under test, not a wait): only ready() looks at the consumer for a while, as between
    // deliveries.
    let busy = Instant::now() + Duration::from_millis(500);
    while Instant::now() < busy {
        assert!(sub.ready().is_none(), "no delivery after the cut");
        std::thread::sleep(Duration::from_millis(5));
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let e = loop {
        match sub.next(Duration::from_millis(100)) {
            Err(e) => break e,
            Ok(None) => assert!(Instant::now() < deadline, "next() never reports the dead consumer"),
            Ok(Some(_)) => panic!("a delivery on a cut connection"),
        }
    };
    assert!(e.is_recoverable(), "{e}");
    assert!(sub.next(Duration::from_millis(10)).is_err(), "and keeps reporting it");
    drop(sub);

    let main_st = settings(&prefix, None);
    let mut main = Session::new().unwrap();
    let ch = main.channel(&main_st).unwrap();
    main.block_on(async {
        for q in [queue.clone(), n.unroutable()] {
            let _ = ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
        }
        for x in [n.task_exchange(), n.delay_due(), n.unroutable()] {
            let _ = ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default()).await;
        }
    });
}
