//! Property tests of the reader of the original library's bodies (`legacy::serial`, `legacy::body`):
//! random bytes, every truncation and byte flip of valid bodies, hostile inputs (deep nesting, huge
//! declared lengths and counts) are refused without a panic, each in bounded time; what the encoders
//! write reads back as the JSON ebats itself would make of the same PHP value. A proptest corpus in
//! place of cargo-fuzz (which needs a nightly toolchain).

use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::{json, Value};

use ebats::legacy::body::{
    decode_event, decode_publish, decode_task, encode_event, encode_task, looks_legacy, LegacyTask,
};
use ebats::legacy::serial::{numeric_key, parse, Limits, PhpValue};

const CASES: u32 = 1024;

/// Far above what any of these inputs needs on a loaded machine, far below a hang.
const BOUND: Duration = Duration::from_secs(5);

/// Any JSON value, nested a few levels, with keys that may look like integers.
fn json_value() -> impl Strategy<Value = Value> {
    crate::common::json::json_value(4, 32, prop_oneof!["[a-z_]{0,8}", "-?[0-9]{1,3}", ".{0,4}"].boxed())
}

/// What PHP makes of a JSON value with json_decode($j, true), then ebats' PHP-to-JSON conversion: an
/// object's canonical integer keys become integer keys, an array with the keys 0..n-1 in order is a
/// list, an integer beyond i64 a float.
fn as_php_sees_it(v: &Value) -> Value {
    match v {
        Value::Number(n) if n.as_i64().is_none() => json!(n.as_f64().unwrap()),
        Value::Array(items) => Value::Array(items.iter().map(as_php_sees_it).collect()),
        Value::Object(map) => {
            let is_list = map.keys().enumerate().all(|(i, k)| numeric_key(k.as_bytes()) == Some(i as i64));
            if is_list {
                Value::Array(map.values().map(as_php_sees_it).collect())
            } else {
                Value::Object(map.iter().map(|(k, v)| (k.clone(), as_php_sees_it(v))).collect())
            }
        }
        other => other.clone(),
    }
}

fn valid_task() -> impl Strategy<Value = LegacyTask> {
    (
        any::<i64>(),
        "[0-9a-f]{32}",
        "[A-Za-z_][A-Za-z0-9_]{0,20}",
        "[A-Za-z0-9_-]{1,20}",
        json_value(),
        0..=i64::MAX as u64,
    )
        .prop_map(|(etime, id, name, topic, params, delay_ms)| LegacyTask {
            etime,
            id,
            name,
            topic,
            params,
            delay_ms,
        })
}

/// Every reader on the same bytes: none may panic or take long.
fn read_all(bytes: &[u8]) {
    let t0 = Instant::now();
    let _ = parse(bytes, &Limits::default());
    let _ = decode_event(bytes);
    let _ = decode_task(bytes);
    let _ = decode_publish(bytes);
    let _ = looks_legacy(None, bytes);
    assert!(t0.elapsed() < BOUND, "{} bytes took {:?}", bytes.len(), t0.elapsed());
}

/// The bytes of valid bodies of every kind, for truncations and flips.
fn valid_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (json_value(), any::<i64>()).prop_map(|(v, t)| encode_event(&v, t)),
        valid_task().prop_map(|t| encode_task(&t)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        read_all(&bytes);
    }

    /// Random text made of the format's own characters reaches deeper into the reader than random bytes.
    #[test]
    fn random_format_text_never_panics(text in "([aOsidbNCrRE]:[0-9]{0,3}:?\"?[a-z]{0,3}\"?[;:{}]{0,2}){0,24}") {
        read_all(text.as_bytes());
    }

    #[test]
    fn events_read_back_as_php_would_see_them(params in json_value(), etime in any::<i64>()) {
        let bytes = encode_event(&params, etime);
        prop_assert!(looks_legacy(Some("text/plain"), &bytes));
        let e = decode_event(&bytes);
        match as_php_sees_it(&params) {
            want @ (Value::Array(_) | Value::Object(_)) => {
                let e = e.unwrap();
                prop_assert_eq!(e.etime, etime);
                prop_assert_eq!(e.params, want);
            }
            _ => prop_assert!(e.unwrap_err().reason.contains("not an array")),
        }
        let (t, data) = decode_publish(&bytes).unwrap();
        prop_assert_eq!((t, data), (etime, as_php_sees_it(&params)));
    }

    #[test]
    fn tasks_read_back(t in valid_task()) {
        let bytes = encode_task(&t);
        let back = decode_task(&bytes).unwrap();
        prop_assert_eq!(back, LegacyTask { params: as_php_sees_it(&t.params), ..t });
    }

    /// Each value ends in ';' or '}', so no strict prefix of a body is a whole value.
    #[test]
    fn every_truncation_is_refused(bytes in valid_body()) {
        for len in 0..bytes.len() {
            let e = parse(&bytes[..len], &Limits::default()).unwrap_err();
            prop_assert!(e.offset <= len, "offset {} of {len}", e.offset);
            read_all(&bytes[..len]);
        }
    }

    #[test]
    fn flipped_bytes_never_panic(bytes in valid_body(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let mut b = bytes;
        for (i, v) in flips {
            let i = i.index(b.len());
            b[i] = v;
        }
        read_all(&b);
    }

    /// A declared length or count of any size, with little behind it.
    #[test]
    fn huge_declared_sizes_are_refused(n in any::<u64>(), tag in prop::sample::select(vec!["s:", "a:", "O:"]), tail in ".{0,16}") {
        let b = format!("{tag}{n}:{{\"{tail}");
        prop_assume!(n as usize > b.len());
        let t0 = Instant::now();
        prop_assert!(parse(b.as_bytes(), &Limits::default()).is_err());
        prop_assert!(t0.elapsed() < BOUND);
    }
}

/// Nesting to any depth stops at the limit, without recursion beyond it.
#[test]
fn deep_nesting_is_refused() {
    for (open, close) in [("a:1:{i:0;", "}"), ("O:8:\"stdClass\":1:{s:1:\"a\";", "}"), ("a:1:{s:4:\"body\";", "}")] {
        let n = 100_000;
        let mut b = open.repeat(n);
        b.push_str("N;");
        b.push_str(&close.repeat(n));
        let t0 = Instant::now();
        let e = parse(b.as_bytes(), &Limits::default()).unwrap_err();
        assert_eq!(e.reason, "nested deeper than 128 levels");
        assert_eq!(e.offset, 128 * open.len());
        read_all(b.as_bytes());
        // The same truncated, as a stream cut off mid-way would be.
        read_all(&b.as_bytes()[..b.len() / 2]);
        assert!(t0.elapsed() < BOUND);
    }
}

/// Hostile shapes, each refused with its reason.
#[test]
fn hostile_inputs_are_refused() {
    let cases: &[(&[u8], &str)] = &[
        (b"s:18446744073709551615:\"", "declared, only 0 bytes remain"),
        (b"s:18446744073709551616:\"", "string length out of range"),
        (b"a:18446744073709551615:{", "more than 100000 array or object entries"),
        (b"a:99999:{i:0;N;}", "99999 entries declared, the 7 bytes left cannot hold them"),
        (b"a:100000000:{i:0;N;}", "more than 100000 array or object entries"),
        (b"O:8:\"stdClass\":4294967295:{", "more than 100000"),
        (b"O:18446744073709551615:\"", "class name of 18446744073709551615 bytes declared"),
        (b"a:1:{i:0;r:1;}", "references"),
        (b"a:2:{i:0;a:0:{}i:1;R:2;}", "references"),
        (b"O:16:\"GuzzleHttp\\Psr7\":0:{}", "are refused"),
        (b"O:8:\"stdClass\":1:{s:1:\"a\";O:11:\"SplFileInfo\":0:{}}", "class 'SplFileInfo' are refused"),
        (b"C:11:\"ArrayObject\":21:{x:i:0;a:0:{};m:a:0:{}}", "custom-serialized"),
        (b"E:11:\"Suit:Hearts\";", "enums"),
        (b"i:99999999999999999999999999999999;", "out of the 64-bit range"),
    ];
    for (bytes, want) in cases {
        let e = parse(bytes, &Limits::default()).unwrap_err();
        assert!(e.reason.contains(want), "{}: {e}", String::from_utf8_lossy(bytes));
        read_all(bytes);
    }
    // The element limit counts every level: many small arrays add up.
    let many = format!(
        "a:20000:{{{}}}",
        (0..20000).map(|i| format!("i:{i};a:5:{{i:0;N;i:1;N;i:2;N;i:3;N;i:4;N;}}")).collect::<String>()
    );
    assert!(parse(many.as_bytes(), &Limits::default()).unwrap_err().reason.contains("more than 100000"));
    // 16 MiB of string is read; one byte more is not.
    let max = Limits::default().max_bytes;
    let body = |n: usize| format!("s:{n}:\"{}\";", "x".repeat(n));
    let fits = max - body(0).len() - 8;
    assert!(matches!(parse(body(fits).as_bytes(), &Limits::default()), Ok(PhpValue::Str(s)) if s.len() == fits));
    assert!(parse(body(max).as_bytes(), &Limits::default()).unwrap_err().reason.contains("over the limit"));
}
