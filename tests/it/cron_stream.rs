//! The schedule stream against the real broker. It uses the process's session, as the broker layer's
//! tests do: the binary runs its tests one at a time (see `main.rs`).

use crate::common::{get_body, settings};
use ebats::broker::names::Names;
use ebats::broker::{Decl, Session};

use ebats::dispatch;
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};

/// The schedule stream: records appended (confirmed) and a firing published to the firing exchange are folded
/// back in order by a reader that stops at its marker; the firing also reaches the events queue.
#[test]
fn schedule_stream_appends_and_folds_and_a_firing_reaches_the_events() {
    use ebats::cron::firing::Firing;
    use ebats::cron::state::{Def, Record};
    use ebats::services::periodic::stream;

    let st = settings(&format!("rt_cron_{}", std::process::id()), None);
    let n = Names::new(&st.prefix);
    let settings_of = |name: &str| serde_json::json!({"name": name, "timezone": "UTC"}).as_object().unwrap().clone();
    let (a, _) =
        Def::declare("* * * * * *", "tick", serde_json::json!([]), &settings_of("a"), || unreachable!()).unwrap();
    let (b, _) =
        Def::declare("@daily", "daily", serde_json::json!({"x": 1}), &settings_of("b"), || unreachable!()).unwrap();
    ({
        stream::append(
            &st,
            &[Record::Add { def: a.clone() }, Record::Add { def: b.clone() }, Record::Pause { name: "b".into() }],
        )
    })
    .unwrap();
    let firing = Firing::new("a", 1_782_000_000_000, 1_782_000_000_003, true);
    (dispatch::send(&st, &[Decl::Cron], &[stream::firing_message(&n, &a, &firing)])).unwrap();
    (stream::append(&st, &[Record::Remove { name: "a".into() }])).unwrap();

    let folder = (stream::read_state(&st)).unwrap();
    assert!(folder.complete);
    let fold = folder.fold;
    assert_eq!(fold.schedules.keys().collect::<Vec<_>>(), ["b"]);
    assert!(fold.schedules["b"].paused);
    assert_eq!(fold.schedules["b"].def, b);
    assert!(!fold.last_tick.contains_key("a"), "a removed schedule's last tick is forgotten");

    let mut s = Session::new().unwrap();
    let body = get_body(&mut s, &st, &n.events_queue()).expect("the firing is an event");
    let event = ebats::wire::EventMsg::parse(&body).unwrap();
    assert_eq!((event.event.as_str(), event.id.as_str()), ("tick", firing.event_id.as_str()));

    let ch = s.channel(&st).unwrap();
    s.block_on(async {
        for q in [n.cron_stream(), n.cron_leader()] {
            let _ = ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
        }
        for q in [n.events_queue()] {
            let _ = ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
        }
        for x in [n.cron_fire(), n.event_exchange()] {
            let _ = ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default()).await;
        }
    });
}
