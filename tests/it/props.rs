//! Property tests of everything that decodes what comes from the broker: task and event bodies
//! (`wire`), the schedule stream's records and firings (`cron::state`, `cron::firing`, which
//! `services::periodic::stream::item_of` reads from bodies and headers) and the failed store's headers. Whatever
//! the bytes: no panic, an error that says what is wrong; what ebats writes reads back the same.
//! (ebats reads no `x-death` header: a dead-lettered delay message is read as the task body it is.)
//! The PHP value conversion needs PHP: tests/php/ConvertFuzzTest.php.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;

use ebats::broker::store;
use ebats::cron::firing::Firing;
use ebats::cron::state::Record;
use ebats::rules::MAX_DELAY;
use ebats::wire::{round_ms, EventMsg, RetryRule, TaskMsg};

const CASES: u32 = 1024;

/// Any JSON value, nested a few levels: the shapes a foreign producer (or garbage) can send.
fn json_value() -> impl Strategy<Value = Value> {
    crate::common::json::json_value(3, 24, "[a-z_]{0,8}".boxed())
}

/// A JSON object with the task fields, each of them present, missing, or of a wrong type.
fn task_like() -> impl Strategy<Value = Value> {
    let field = |good: BoxedStrategy<Value>| prop_oneof![good, json_value(), Just(Value::Null)].prop_map(Some).boxed();
    let maybe = |s: BoxedStrategy<Option<Value>>| prop_oneof![Just(None), s];
    (
        maybe(field("[A-Za-z0-9_-]{1,20}".prop_map(Value::from).boxed())),
        maybe(field("[A-Za-z_][A-Za-z0-9_]{0,20}".prop_map(Value::from).boxed())),
        maybe(field(any::<u64>().prop_map(Value::from).boxed())),
        maybe(field(any::<i64>().prop_map(Value::from).boxed())),
        maybe(field(json_value().prop_map(|v| json!({"max": v, "interval": v})).boxed())),
        maybe(field(json_value().boxed())),
    )
        .prop_map(|(topic, name, delay, attempt, retry, params)| {
            let mut o = Map::new();
            for (k, v) in [
                ("topic", topic),
                ("name", name),
                ("delay", delay),
                ("attempt", attempt),
                ("retry", retry),
                ("params", params),
            ] {
                if let Some(v) = v {
                    o.insert(k.to_string(), v);
                }
            }
            Value::Object(o)
        })
}

fn valid_task() -> impl Strategy<Value = TaskMsg> {
    (
        "[A-Za-z0-9_-]{1,40}",
        "[A-Za-z_][A-Za-z0-9_]{0,40}",
        json_value(),
        0..=MAX_DELAY as u64,
        1..=u32::MAX,
        0..=u32::MAX,
        0..=u32::MAX,
        prop::option::of((prop::option::of(any::<u32>()), prop::option::of(0..=MAX_DELAY as u64))),
        prop::option::of(json_value().prop_filter("not null", |v| !v.is_null())),
        prop::option::of(".{1,20}"),
        0.0f64..4e9,
        prop::option::of(("[!-~]{1,100}", 1..=ebats::wire::MAX_UNIQUE_FOR, 0.0f64..4e9)),
    )
        .prop_map(
            |(topic, name, params, delay, attempt, service_errors, redeliveries, retry, error, event, t, unique)| {
                let mut m = TaskMsg::new(&topic, &name, params, delay);
                m.attempt = attempt;
                m.service_errors = service_errors;
                m.redeliveries = redeliveries;
                m.retry = retry.map(|(max, interval)| RetryRule { max, interval });
                m.error = error;
                m.event_id = event.as_ref().map(|_| ebats::wire::new_id());
                m.event = event;
                m.created_at = round_ms(t);
                m.unique = unique.map(|(key, for_secs, until)| ebats::wire::UniqueKey {
                    key,
                    for_secs,
                    until: round_ms(until),
                });
                m
            },
        )
}

/// Any header value the broker could hand over, strings sometimes holding JSON.
fn amqp_value() -> impl Strategy<Value = AMQPValue> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..80).prop_map(|b| AMQPValue::LongString(LongString::from(b))),
        json_value().prop_map(|v| AMQPValue::LongString(LongString::from(v.to_string()))),
        "[ -~]{0,40}".prop_map(|s| AMQPValue::ShortString(ShortString::from(s))),
        any::<i32>().prop_map(AMQPValue::LongInt),
        any::<u32>().prop_map(AMQPValue::LongUInt),
        any::<i64>().prop_map(AMQPValue::LongLongInt),
        any::<u64>().prop_map(AMQPValue::Timestamp),
        any::<f64>().prop_map(AMQPValue::Double),
        any::<bool>().prop_map(AMQPValue::Boolean),
        Just(AMQPValue::Void),
    ]
}

/// Properties whose headers hold any values under the keys ebats reads (and others).
fn properties() -> impl Strategy<Value = BasicProperties> {
    let key = prop_oneof![
        Just("x-stream-offset"),
        Just(ebats::headers::CRON_FIRING),
        Just(ebats::headers::CRON_TRIGGER),
        Just(ebats::headers::ERROR),
        Just(ebats::headers::FAILED_AT),
        Just("x-death"),
    ];
    (prop::collection::vec((key, amqp_value()), 0..5), prop::option::of(any::<u64>())).prop_map(|(kv, ts)| {
        let mut t = FieldTable::default();
        for (k, v) in kv {
            t.insert(k.into(), v);
        }
        let p = BasicProperties::default().with_headers(t);
        match ts {
            Some(ts) => p.with_timestamp(ts),
            None => p,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn task_bodies_of_any_bytes_decode_or_say_why(body in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Err(e) = TaskMsg::parse(&body) {
            prop_assert!(e.starts_with("task body"), "{e}");
        }
    }

    #[test]
    fn task_bodies_of_any_json_decode_or_say_why(v in prop_oneof![json_value(), task_like()]) {
        let body = serde_json::to_vec(&v).unwrap();
        match TaskMsg::parse(&body) {
            Ok(t) => {
                prop_assert!(ebats::rules::check_topic(&t.topic).is_ok());
                prop_assert!(ebats::rules::check_task_name(&t.name).is_ok());
                prop_assert!(t.delay <= MAX_DELAY as u64 && t.attempt >= 1);
                // what was read writes back and reads the same
                prop_assert_eq!(TaskMsg::parse(&t.to_json()).unwrap(), TaskMsg { created_at: round_ms(t.created_at), ..t });
            }
            Err(e) => prop_assert!(e.starts_with("task body") && !e.contains('\n'), "{e}"),
        }
    }

    #[test]
    fn tasks_round_trip(t in valid_task(), extra in prop::collection::vec(("x_[a-z]{1,6}", json_value()), 0..3)) {
        let mut t = t;
        t.extra = extra.into_iter().collect();
        prop_assert_eq!(TaskMsg::parse(&t.to_json()).unwrap(), t);
    }

    #[test]
    fn event_bodies_of_any_bytes_or_json_decode_or_say_why(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
            (json_value(), json_value()).prop_map(|(e, p)| serde_json::to_vec(&json!({"event": e, "params": p})).unwrap()),
        ]
    ) {
        match EventMsg::parse(&body) {
            Ok(e) => prop_assert!(ebats::rules::check_event_name(&e.event).is_ok()),
            Err(e) => prop_assert!(e.starts_with("event body"), "{e}"),
        }
    }

    #[test]
    fn events_round_trip(name in "[^\\p{Cc}]{1,60}", params in json_value(), t in 0.0f64..4e9) {
        let mut e = EventMsg::new(&name, params);
        e.created_at = round_ms(t);
        prop_assert_eq!(EventMsg::parse(&e.to_json()).unwrap(), e);
    }

    #[test]
    fn stream_records_of_any_bytes_decode_or_say_why(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
            (prop_oneof![Just("add"), Just("update"), Just("remove"), Just("trigger"), Just("code"), Just("skipped"),
                Just("marker"), Just("snapshot"), Just("other")], json_value(), json_value())
                .prop_map(|(ty, a, b)| serde_json::to_vec(&json!({"v": 1, "type": ty, "at": a, "name": b, "id": b,
                    "schedule": a, "schedules": b, "state": a, "count": b})).unwrap()),
        ]
    ) {
        if let Err(e) = Record::from_json(&body) {
            prop_assert!(e.to_string().contains("schedule record is invalid"), "{e}");
        }
    }

    #[test]
    fn stream_records_round_trip(
        name in "[a-z_][a-z0-9_.-]{0,30}",
        id in "[0-9a-f]{32}",
        count in any::<u64>(),
        oldest in prop::option::of(any::<i64>()),
        newest in prop::option::of(any::<i64>()),
        at in any::<i64>(),
        which in 0..6usize,
    ) {
        let r = match which {
            0 => Record::Remove { name },
            1 => Record::Pause { name },
            2 => Record::Resume { name },
            3 => Record::Trigger { name, id },
            4 => Record::Skipped { name, count, oldest, newest },
            _ => Record::Marker { id },
        };
        prop_assert_eq!(Record::from_json(r.to_json(at).as_bytes()).unwrap(), (r, at));
    }

    #[test]
    fn firings_of_any_text_decode_or_say_why(
        text in prop_oneof![
            ".{0,120}",
            json_value().prop_map(|v| v.to_string()),
            (json_value(), json_value(), json_value()).prop_map(|(s, t, l)| json!({"v": 1, "schedule": s, "tick": t,
                "fired_at": t, "late": l, "event_id": s}).to_string()),
        ]
    ) {
        if let Err(e) = Firing::from_json(&text) {
            prop_assert!(e.to_string().contains("firing record is invalid"), "{e}");
        }
    }

    #[test]
    fn firings_round_trip(name in "[a-z_][a-z0-9_.-]{0,30}", tick in any::<i64>(), fired_at in any::<i64>(), late in any::<bool>()) {
        let f = Firing::new(&name, tick, fired_at, late);
        prop_assert_eq!(Firing::from_json(&f.to_json()).unwrap(), f);
    }

    #[test]
    fn stream_messages_with_any_headers_decode_or_say_why(p in properties(), body in prop::collection::vec(any::<u8>(), 0..80)) {
        let _ = ebats::services::periodic::stream::offset_in(&p);
        if let Err(e) = ebats::services::periodic::stream::item_from(&p, &body) {
            prop_assert!(e.to_string().contains("is invalid"), "{e}");
        }
    }

    #[test]
    fn stream_offsets_read_every_integer_type(n in 0..i32::MAX) {
        for v in [AMQPValue::LongInt(n), AMQPValue::LongUInt(n as u32), AMQPValue::LongLongInt(n as i64)] {
            let mut t = FieldTable::default();
            t.insert("x-stream-offset".into(), v);
            prop_assert_eq!(ebats::services::periodic::stream::offset_in(&BasicProperties::default().with_headers(t)), Some(n as u64));
        }
    }

    #[test]
    fn failed_store_headers_of_any_type_are_read_or_ignored(p in properties()) {
        let _ = store::header_in(&p, ebats::headers::ERROR);
        let at = store::failed_at(&p);
        match store::header_in(&p, ebats::headers::FAILED_AT).and_then(|t| t.parse::<f64>().ok()) {
            Some(h) => prop_assert!(at == Some(h) || h.is_nan()),
            None => prop_assert_eq!(at, p.timestamp().map(|t| t as f64), "no usable header: the timestamp"),
        }
    }

    #[test]
    fn failed_store_headers_round_trip(reason in ".{0,80}", at in 0.0f64..4e9) {
        let mut t = FieldTable::default();
        t.insert(ebats::headers::ERROR.into(), AMQPValue::LongString(LongString::from(reason.clone())));
        t.insert(ebats::headers::FAILED_AT.into(), AMQPValue::LongString(LongString::from(at.to_string())));
        let p = BasicProperties::default().with_headers(t);
        prop_assert_eq!(store::header_in(&p, ebats::headers::ERROR), Some(reason));
        prop_assert_eq!(store::failed_at(&p), Some(at));
    }

    #[test]
    fn written_headers_are_bounded(unit in "[a-zé✓]{1,3}", n in 0usize..6000) {
        let value = unit.repeat(n);
        let p = ebats::wire::properties_with_headers("id", "k", &[(ebats::headers::ERROR, value.clone())]);
        let back = store::header_in(&p, ebats::headers::ERROR).unwrap();
        prop_assert!(back.len() <= ebats::headers::MAX_VALUE);
        if value.len() <= ebats::headers::MAX_VALUE {
            prop_assert_eq!(back, value);
        } else {
            let marker = format!(" ... [cut: {} bytes in all]", value.len());
            prop_assert!(back.ends_with(&marker), "{}", back);
            prop_assert!(value.starts_with(&back[..back.len() - marker.len()]));
        }
    }
}
