//! The execution history against the real broker: records written without waiting, flushed, read back
//! with filters, followed; a stream with other retention refused by name.

mod common;

use std::time::Duration;

use ebats::broker::current::with_session;
use ebats::broker::ErrorKind;
use ebats::config::Settings;
use ebats::history::record::Run;
use ebats::history::{self, Query, Writer};
use ebats::wire::{now_ms, TaskMsg};
use lapin::options::QueueDeleteOptions;

fn settings(max_age: &str) -> Settings {
    let mut s = common::settings(&format!("rh_{}", &ebats::wire::new_id()[..8]), None);
    s.history.enabled = true;
    s.history.max_age = max_age.into();
    s.history.params_bytes = 16;
    s
}

fn delete_stream(st: &Settings) {
    let stream = ebats::broker::names::Names::new(&st.prefix).history_stream();
    with_session(|s| {
        let ch = s.channel(st)?;
        let _ = s.block_on(ch.queue_delete(stream.as_str().into(), QueueDeleteOptions::default()));
        Ok(())
    })
    .unwrap();
}

#[test]
fn records_are_written_flushed_read_and_followed() {
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
