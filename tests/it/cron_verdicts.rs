//! The schedule stream against the real broker, as its readers and writers must cope with it: an unreadable
//! first message, changes answered where they land. It uses the process's session (see `main.rs`).

use crate::common::settings;
use ebats::broker::names::Names;
use ebats::broker::{Decl, Session};

use ebats::dispatch;
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};

/// An unreadable message at offset 0 of a new stream is skipped: the fold from the start is whole without a
/// snapshot. A change is answered where it lands: the second add of a name is refused.
#[test]
fn an_unreadable_first_message_is_skipped_and_changes_get_their_verdict() {
    use ebats::broker::Outgoing;
    use ebats::cron::state::{Def, Record};
    use ebats::services::periodic::stream;

    let st = settings(&format!("rt_cron_junk_{}", std::process::id()), None);
    let n = Names::new(&st.prefix);
    let junk = Outgoing {
        exchange: String::new(),
        routing_key: n.cron_stream(),
        body: b"not a record".to_vec(),
        properties: ebats::wire::properties("junk", "junk"),
        mandatory: true,
    };
    dispatch::send(&st, &[Decl::Cron], &[junk]).unwrap();
    let folder = stream::read_state(&st).expect("the stream is read from its start");
    assert!(folder.complete && folder.fold.schedules.is_empty());

    let settings_of = |name: &str| serde_json::json!({"name": name, "timezone": "UTC"}).as_object().unwrap().clone();
    let (a, _) = Def::declare("@hourly", "one", serde_json::json!([]), &settings_of("a"), || unreachable!()).unwrap();
    let first = stream::request(&st, &Record::Add { def: a.clone() }).unwrap();
    assert_eq!(first.verdict, Some(Ok(())));
    let second = stream::request(&st, &Record::Add { def: a }).unwrap();
    assert_eq!(second.verdict, Some(Err("a schedule named 'a' exists already".to_string())));
    let gone = stream::request(&st, &Record::Pause { name: "b".into() }).unwrap();
    assert_eq!(gone.verdict, Some(Err("no schedule is named 'b'".to_string())));

    let mut s = Session::new().unwrap();
    let ch = s.channel(&st).unwrap();
    s.block_on(async {
        for q in [n.cron_stream(), n.cron_leader(), n.events_queue()] {
            let _ = ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
        }
        for x in [n.cron_fire(), n.event_exchange()] {
            let _ = ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default()).await;
        }
    });
}
