//! Table tests of the serialize reader and the original's bodies. Every byte string marked "PHP" was
//! written by PHP 8.2's own serialize() (no extension loaded), pasted as it came.

use serde_json::json;

use super::body::*;
use super::serial::*;

fn parse_ok(b: &[u8]) -> PhpValue {
    parse(b, &Limits::default()).unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(b)))
}

fn parse_err(b: &[u8]) -> SerialError {
    match parse(b, &Limits::default()) {
        Ok(v) => panic!("{} read as {v:?}", String::from_utf8_lossy(b)),
        Err(e) => e,
    }
}

fn s(b: &[u8]) -> PhpValue {
    PhpValue::Str(b.to_vec())
}

fn ks(b: &[u8]) -> PhpKey {
    PhpKey::Str(b.to_vec())
}

#[test]
fn scalars_as_php_writes_them() {
    use PhpValue::*;
    let table: &[(&[u8], PhpValue)] = &[
        (b"N;", Null),
        (b"b:1;", Bool(true)),
        (b"b:0;", Bool(false)),
        (b"i:42;", Int(42)),
        (b"i:-7;", Int(-7)),
        (b"i:-9223372036854775808;", Int(i64::MIN)),
        (b"i:9223372036854775807;", Int(i64::MAX)),
        (b"i:+007;", Int(7)), // PHP reads these too
        (b"d:0.1;", Float(0.1)),
        (b"d:1;", Float(1.0)),
        (b"d:1.0E+25;", Float(1e25)),
        (b"d:1.5E-7;", Float(1.5e-7)),
        (b"d:.5;", Float(0.5)),
        (b"d:5.;", Float(5.0)),
        (b"d:+1.5e+3;", Float(1500.0)),
        (b"d:INF;", Float(f64::INFINITY)),
        (b"d:-INF;", Float(f64::NEG_INFINITY)),
        (b"s:12:\"h\xc3\xa9llo \"q\";}\";", s("héllo \"q\";}".as_bytes())),
        (b"s:3:\"\x00\xff\xfe\";", s(b"\x00\xff\xfe")),
        (b"s:0:\"\";", s(b"")),
    ];
    for (bytes, want) in table {
        assert_eq!(&parse_ok(bytes), want, "{}", String::from_utf8_lossy(bytes));
    }
    assert!(matches!(parse_ok(b"d:NAN;"), Float(f) if f.is_nan()));
    assert!(matches!(parse_ok(b"d:-0;"), Float(f) if f == 0.0 && f.is_sign_negative()));
}

#[test]
fn arrays_and_objects_as_php_writes_them() {
    use PhpValue::*;
    // PHP: serialize([1, "a", null])
    assert_eq!(
        parse_ok(b"a:3:{i:0;i:1;i:1;s:1:\"a\";i:2;N;}"),
        Array(vec![(PhpKey::Int(0), Int(1)), (PhpKey::Int(1), s(b"a")), (PhpKey::Int(2), Null)])
    );
    assert_eq!(parse_ok(b"a:0:{}"), Array(vec![]));
    // PHP: serialize(['a'=>1, 5=>'x', '7'=>true, '07'=>2, '-1'=>3])
    assert_eq!(
        parse_ok(b"a:5:{s:1:\"a\";i:1;i:5;s:1:\"x\";i:7;b:1;s:2:\"07\";i:2;i:-1;i:3;}"),
        Array(vec![
            (ks(b"a"), Int(1)),
            (PhpKey::Int(5), s(b"x")),
            (PhpKey::Int(7), Bool(true)),
            (ks(b"07"), Int(2)),
            (PhpKey::Int(-1), Int(3)),
        ])
    );
    // A numeric string key is the integer key PHP makes of it.
    assert_eq!(
        parse_ok(b"a:2:{s:1:\"0\";i:5;s:2:\"-0\";i:6;}"),
        Array(vec![(PhpKey::Int(0), Int(5)), (ks(b"-0"), Int(6))])
    );
    // PHP: serialize((object)['a'=>1, '0'=>'z'])
    assert_eq!(
        parse_ok(b"O:8:\"stdClass\":2:{s:1:\"a\";i:1;s:1:\"0\";s:1:\"z\";}"),
        Object { class: "stdClass".into(), props: vec![(b"a".to_vec(), Int(1)), (b"0".to_vec(), s(b"z"))] }
    );
    // Older PHP: integer property names.
    assert_eq!(
        parse_ok(b"O:8:\"stdClass\":1:{i:3;N;}"),
        Object { class: "stdClass".into(), props: vec![(b"3".to_vec(), Null)] }
    );
}

#[test]
fn numeric_keys_follow_php() {
    for (k, want) in [
        ("0", Some(0)),
        ("17", Some(17)),
        ("-3", Some(-3)),
        ("9223372036854775807", Some(i64::MAX)),
        ("-9223372036854775808", Some(i64::MIN)),
        ("9223372036854775808", None),
        ("07", None),
        ("-0", None),
        ("+1", None),
        (" 1", None),
        ("1 ", None),
        ("", None),
        ("-", None),
        ("1e3", None),
    ] {
        assert_eq!(numeric_key(k.as_bytes()), want, "{k:?}");
    }
}

#[test]
fn refused_with_a_reason_and_where() {
    let table: &[(&[u8], usize, &str)] = &[
        (b"", 0, "input ends where a value"),
        (b"N", 1, "input ends where ';'"),
        (b"N;N;", 2, "2 bytes after the end"),
        (b"b:2;", 2, "a boolean is 0 or 1"),
        (b"i:;", 2, "malformed integer"),
        (b"i:1x;", 3, "expected ';'"),
        (b"i:9223372036854775808;", 2, "out of the 64-bit range"),
        (b"i:-9223372036854775809;", 2, "out of the 64-bit range"),
        (b"d:;", 2, "malformed float"),
        (b"d:1e;", 2, "malformed float '1e'"),
        (b"d:inf;", 2, "malformed float"),
        (b"d:1.2.3;", 2, "malformed float"),
        (b"d:--1;", 2, "malformed float"),
        (b"s:6:\"abc\";", 5, "string of 6 bytes declared, only 5 bytes remain"),
        (b"s:5:\"abc\";", 10, "input ends where '\"' was expected after the string's bytes"),
        (b"s:2:\"abc\";", 7, "is the declared length right?"),
        (b"s:99999999999999999999999:\"\";", 2, "string length out of range"),
        (b"s:-1:\"\";", 2, "malformed string length"),
        (b"S:1:\"a\";", 0, "escaped strings"),
        (b"a:1:{i:0;N;", 11, "input ends where '}'"),
        (b"a:2:{i:0;N;}", 0, "2 entries declared"),
        (b"a:99999:{i:0;N;}", 0, "99999 entries declared"),
        (b"a:1:{d:1;N;}", 5, "an array key is an integer or a string"),
        (b"a:2:{i:0;N;i:0;N;}", 11, "duplicate array key"),
        (b"a:2:{i:7;N;s:1:\"7\";N;}", 11, "duplicate array key"),
        (b"a:1:{i:0;r:1;}", 9, "references"),
        (b"a:1:{i:0;R:1;}", 9, "references"),
        (b"C:3:\"Foo\":0:{}", 0, "custom-serialized"),
        (b"E:7:\"Foo:Bar\";", 0, "enums"),
        (b"O:3:\"Foo\":0:{}", 0, "class 'Foo' are refused"),
        (b"O:8:\"stdclass\":0:{}", 0, "class 'stdclass' are refused"),
        (b"O:9:\"Exception\":0:{}", 0, "class 'Exception'"),
        (b"O:8:\"stdClass\":1:{s:4:\"\x00*\x00a\";N;}", 18, "no private or protected"),
        (b"O:8:\"stdClass\":2:{s:1:\"a\";N;s:1:\"a\";N;}", 28, "duplicate property"),
        (b"O:80:\"stdClass\":0:{}", 6, "class name of 80 bytes declared"),
        (b"x", 0, "unexpected 'x'"),
        (b"\xff", 0, "unexpected byte 0xff"),
    ];
    for (bytes, offset, reason) in table {
        let e = parse_err(bytes);
        assert!(e.reason.contains(reason), "{}: {e}", String::from_utf8_lossy(bytes));
        assert_eq!(e.offset, *offset, "{}: {e}", String::from_utf8_lossy(bytes));
        assert_eq!(e.to_string(), format!("at byte {}: {}", e.offset, e.reason));
    }
}

#[test]
fn limits() {
    let deep = |n: usize| {
        let mut b = "a:1:{i:0;".repeat(n).into_bytes();
        b.extend_from_slice(b"N;");
        b.extend(std::iter::repeat_n(b'}', n));
        b
    };
    let l = Limits { max_depth: 3, ..Limits::default() };
    assert!(parse(&deep(3), &l).is_ok());
    let e = parse(&deep(4), &l).unwrap_err();
    assert_eq!((e.offset, e.reason.as_str()), (27, "nested deeper than 3 levels"));
    // Whatever the setting, nesting stops at HARD_MAX_DEPTH.
    let l = Limits { max_depth: usize::MAX, ..Limits::default() };
    assert!(parse(&deep(HARD_MAX_DEPTH), &l).is_ok());
    assert!(parse(&deep(HARD_MAX_DEPTH + 1), &l).unwrap_err().reason.contains("deeper than 512"));
    assert!(parse(&deep(100_000), &Limits::default()).unwrap_err().reason.contains("deeper than 128"));

    let l = Limits { max_elements: 3, ..Limits::default() };
    assert!(parse(b"a:3:{i:0;N;i:1;N;i:2;N;}", &l).is_ok());
    assert!(parse(b"a:2:{i:0;a:1:{i:0;N;}i:1;N;}", &l).is_ok());
    let e = parse(b"a:2:{i:0;a:2:{i:0;N;i:1;N;}i:1;N;}", &l).unwrap_err();
    assert_eq!((e.offset, e.reason.as_str()), (9, "more than 3 array or object entries"));

    let l = Limits { max_bytes: 4, ..Limits::default() };
    assert!(parse(b"i:1;", &l).is_ok());
    assert_eq!(parse(b"i:10;", &l).unwrap_err().reason, "input of 5 bytes is over the limit of 4 bytes");
}

// ---- bodies ------------------------------------------------------------------------------------

/// PHP: serialize(['etime'=>1700000000, 'body'=>['order'=>12, 'items'=>[['sku'=>'A1','qty'=>2]],
/// 'note'=>'ünï', 'price'=>9.99]])
const EVENT: &[u8] = b"a:2:{s:5:\"etime\";i:1700000000;s:4:\"body\";a:4:{s:5:\"order\";i:12;s:5:\"items\";a:1:{i:0;a:2:{s:3:\"sku\";s:2:\"A1\";s:3:\"qty\";i:2;}}s:4:\"note\";s:5:\"\xc3\xbcn\xc3\xaf\";s:5:\"price\";d:9.99;}}";
/// PHP: serialize(['etime'=>1700000001, 'body'=>new Asynclib\Ebats\Task('0123456789abcdef0123456789abcdef',
/// 'closeOrder', 'order', ['id'=>5,'tags'=>['a','b']], 0)])
const TASK: &[u8] = b"a:2:{s:5:\"etime\";i:1700000001;s:4:\"body\";O:19:\"Asynclib\\Ebats\\Task\":5:{s:23:\"\x00Asynclib\\Ebats\\Task\x00id\";s:32:\"0123456789abcdef0123456789abcdef\";s:25:\"\x00Asynclib\\Ebats\\Task\x00name\";s:10:\"closeOrder\";s:26:\"\x00Asynclib\\Ebats\\Task\x00topic\";s:5:\"order\";s:27:\"\x00Asynclib\\Ebats\\Task\x00params\";a:2:{s:2:\"id\";i:5;s:4:\"tags\";a:2:{i:0;s:1:\"a\";i:1;s:1:\"b\";}}s:26:\"\x00Asynclib\\Ebats\\Task\x00delay\";i:0;}}";
/// PHP: the same with ('fedcba9876543210fedcba9876543210', 'remind', 'mail', [], 60000), etime 1700000002
const TASK_DELAYED: &[u8] = b"a:2:{s:5:\"etime\";i:1700000002;s:4:\"body\";O:19:\"Asynclib\\Ebats\\Task\":5:{s:23:\"\x00Asynclib\\Ebats\\Task\x00id\";s:32:\"fedcba9876543210fedcba9876543210\";s:25:\"\x00Asynclib\\Ebats\\Task\x00name\";s:6:\"remind\";s:26:\"\x00Asynclib\\Ebats\\Task\x00topic\";s:4:\"mail\";s:27:\"\x00Asynclib\\Ebats\\Task\x00params\";a:0:{}s:26:\"\x00Asynclib\\Ebats\\Task\x00delay\";i:60000;}}";
/// PHP: serialize(['etime'=>1700000065, 'body'=>'plain text data'])
const PUBLISH: &[u8] = b"a:2:{s:5:\"etime\";i:1700000065;s:4:\"body\";s:15:\"plain text data\";}";

fn task_body(props: &[String]) -> Vec<u8> {
    let (n, props) = (props.len(), props.concat());
    format!("a:2:{{s:5:\"etime\";i:1;s:4:\"body\";O:19:\"Asynclib\\Ebats\\Task\":{n}:{{{props}}}}}")
        .replace("\\0", "\0")
        .into_bytes()
}

fn prop(name: &str, value: &str) -> String {
    format!("s:{}:\"\\0Asynclib\\Ebats\\Task\\0{name}\";{value}", 21 + name.len())
}

fn good_props() -> Vec<String> {
    vec![
        prop("id", "s:32:\"0123456789abcdef0123456789abcdef\";"),
        prop("name", "s:2:\"go\";"),
        prop("topic", "s:1:\"t\";"),
        prop("params", "a:0:{}"),
        prop("delay", "i:0;"),
    ]
}

#[test]
fn the_originals_bodies() {
    let e = decode_event(EVENT).unwrap();
    assert_eq!(e.etime, 1_700_000_000);
    assert_eq!(e.params, json!({"order": 12, "items": [{"sku": "A1", "qty": 2}], "note": "ünï", "price": 9.99}));

    let t = decode_task(TASK).unwrap();
    assert_eq!(
        t,
        LegacyTask {
            etime: 1_700_000_001,
            id: "0123456789abcdef0123456789abcdef".into(),
            name: "closeOrder".into(),
            topic: "order".into(),
            params: json!({"id": 5, "tags": ["a", "b"]}),
            delay_ms: 0,
        }
    );
    let t = decode_task(TASK_DELAYED).unwrap();
    assert_eq!((t.name.as_str(), t.topic.as_str(), t.delay_ms, t.params), ("remind", "mail", 60_000, json!([])));

    assert_eq!(decode_publish(PUBLISH).unwrap(), (1_700_000_065, json!("plain text data")));
    assert_eq!(decode_publish(EVENT).unwrap().1, decode_event(EVENT).unwrap().params);

    // Properties in another order, and a null delay, read the same.
    let mut props = good_props();
    props.reverse();
    props[0] = prop("delay", "N;");
    assert_eq!(decode_task(&task_body(&props)).unwrap().delay_ms, 0);
}

#[test]
fn php_values_become_the_json_ebats_makes_of_them() {
    let ev = |body: &str| decode_event(format!("a:2:{{s:5:\"etime\";i:1;s:4:\"body\";{body}}}").as_bytes());
    let table: &[(&str, serde_json::Value)] = &[
        ("a:0:{}", json!([])),
        ("a:2:{i:0;s:1:\"a\";i:1;s:1:\"b\";}", json!(["a", "b"])),
        // PHP: [1=>'a', 0=>'b'] is not a list
        ("a:2:{i:1;s:1:\"a\";i:0;s:1:\"b\";}", json!({"1": "a", "0": "b"})),
        ("a:1:{i:1;N;}", json!({"1": null})),
        ("a:2:{s:1:\"0\";b:1;s:1:\"1\";b:0;}", json!([true, false])),
        ("a:1:{s:1:\"f\";d:1;}", json!({"f": 1.0})),
        ("O:8:\"stdClass\":0:{}", json!({})),
        ("O:8:\"stdClass\":1:{s:1:\"0\";a:1:{s:1:\"x\";O:8:\"stdClass\":0:{}}}", json!({"0": {"x": {}}})),
    ];
    for (body, want) in table {
        assert_eq!(&ev(body).unwrap().params, want, "{body}");
    }
    let refused: &[(&str, &str)] = &[
        ("a:1:{s:1:\"x\";d:INF;}", "INF cannot be represented in JSON at params[x]"),
        ("a:1:{i:0;a:1:{i:0;d:NAN;}}", "NAN cannot be represented in JSON at params[0][0]"),
        ("a:1:{s:1:\"x\";d:-INF;}", "-INF cannot be represented in JSON at params[x]"),
        ("a:1:{s:1:\"x\";s:1:\"\u{ff}\";}", ""),
        ("a:1:{s:1:\"y\";s:1:\"\\xff\";}", "string is not valid UTF-8 at params[y]"),
        ("a:1:{s:1:\"\\xff\";i:1;}", "an array key is not valid UTF-8 at params[\\u{fffd}]"),
        ("i:1;", "the event's params are an integer, not an array"),
        ("s:1:\"x\";", "the event's params are a string, not an array"),
    ];
    for (body, want) in refused {
        if want.is_empty() {
            continue; // a UTF-8 literal, only there to show the escaping below is the byte 0xff
        }
        let bytes = format!("a:2:{{s:5:\"etime\";i:1;s:4:\"body\";{body}}}").replace("\\xff", "\u{1}");
        let bytes: Vec<u8> = bytes.into_bytes().into_iter().map(|b| if b == 1 { 0xff } else { b }).collect();
        let e = decode_event(&bytes).unwrap_err();
        assert_eq!(e.reason, *want, "{body}");
    }
}

// Over 60 lines: one table of cases.
#[test]
fn bodies_of_another_shape_are_refused_with_a_reason() {
    use LegacyErrorKind::*;
    let env = |inner: &str| format!("a:2:{{s:5:\"etime\";i:1;s:4:\"body\";{inner}}}").into_bytes();
    let cases: Vec<(Vec<u8>, LegacyErrorKind, &str)> = vec![
        (b"{\"v\":1}".to_vec(), Syntax, "not a readable PHP serialize() body at byte 0: unexpected '{'"),
        (b"i:5;".to_vec(), Shape, "the event is an integer, not the array ['etime', 'body']"),
        (b"a:1:{s:4:\"body\";a:0:{}}".to_vec(), Shape, "the event has no 'etime'"),
        (b"a:1:{s:5:\"etime\";i:1;}".to_vec(), Shape, "the event has no 'body'"),
        (b"a:2:{s:5:\"etime\";s:1:\"1\";s:4:\"body\";a:0:{}}".to_vec(), Shape, "the event's etime is a string"),
        (b"a:3:{s:5:\"etime\";i:1;s:4:\"body\";a:0:{}s:1:\"x\";N;}".to_vec(), Shape, "a key 'x' besides"),
        (b"a:2:{i:0;i:1;s:4:\"body\";a:0:{}}".to_vec(), Shape, "a key 0 besides"),
        (
            env("a:1:{i:0;O:19:\"Asynclib\\Ebats\\Task\":0:{}}"),
            Value,
            "an object of class Asynclib\\Ebats\\Task cannot be in params at params[0]",
        ),
        (env("a:1:{i:0;O:3:\"Foo\":0:{}}"), Syntax, "class 'Foo' are refused"),
        (env("a:1:{i:0;a:0:{}}}"), Syntax, "1 bytes after the end"),
    ];
    for (body, kind, want) in cases {
        let e = decode_event(&body).unwrap_err();
        assert_eq!(e.kind, kind, "{e}");
        assert!(e.reason.contains(want), "{e}");
        assert_eq!(e.serial.is_some(), kind == Syntax);
    }

    let g = good_props();
    let with = |i: usize, p: String| {
        let mut v = g.clone();
        v[i] = p;
        task_body(&v)
    };
    let without = |i: usize| {
        let mut v = g.clone();
        v.remove(i);
        task_body(&v)
    };
    assert!(decode_task(&task_body(&g)).is_ok());
    let task_cases: Vec<(Vec<u8>, &str)> = vec![
        (EVENT.to_vec(), "the task body holds an array, not a Asynclib\\Ebats\\Task object"),
        (env("O:8:\"stdClass\":0:{}"), "holds an object of class stdClass"),
        (without(0), "the task has no property 'id'"),
        (without(4), "the task has no property 'delay'"),
        (task_body(&[g.clone(), vec!["s:1:\"x\";N;".into()]].concat()), "a property 'x' that is not one of"),
        (with(0, "s:2:\"id\";s:32:\"0123456789abcdef0123456789abcdef\";".into()), "a property 'id' that is not"),
        (
            with(0, "s:5:\"\\0*\\0id\";s:32:\"0123456789abcdef0123456789abcdef\";".into()),
            "a property '\\u{0}*\\u{0}id'",
        ),
        (with(0, prop("id", "s:3:\"abc\";")), "the task id 'abc' is not 32 hex digits"),
        (with(0, prop("id", "s:32:\"0123456789abcdef0123456789abcdeg\";")), "is not 32 hex digits"),
        (with(0, prop("id", "i:5;")), "the task's id is an integer, not a string"),
        (with(1, prop("name", "s:3:\"1ab\";")), "task name '1ab' is invalid"),
        (with(2, prop("topic", "s:3:\"a.b\";")), "topic 'a.b' is invalid"),
        (with(3, prop("params", "d:NAN;")), "NAN cannot be represented in JSON at params"),
        (with(4, prop("delay", "i:-1;")), "the task's delay is negative (-1 ms)"),
        (with(4, prop("delay", "s:1:\"5\";")), "the task's delay is a string, not an integer"),
    ];
    for (body, want) in task_cases {
        let e = decode_task(&body).unwrap_err();
        assert!(e.reason.contains(want), "{}: {e}", String::from_utf8_lossy(&body));
    }
    // A Task object is not an event.
    assert!(decode_event(TASK).unwrap_err().reason.contains("cannot be in params"));
}

#[test]
fn the_sniff() {
    assert!(looks_legacy(Some("text/plain"), EVENT));
    assert!(looks_legacy(None, TASK));
    assert!(looks_legacy(Some("text/plain; charset=utf-8"), PUBLISH));
    assert!(looks_legacy(Some("TEXT/PLAIN"), PUBLISH));
    assert!(!looks_legacy(Some("application/json"), EVENT));
    assert!(!looks_legacy(Some("application/json"), b"{\"v\":1}"));
    assert!(!looks_legacy(None, b"{\"v\":1}"));
    assert!(!looks_legacy(None, b"[1]"));
    assert!(!looks_legacy(None, b" a:2:{"));
    assert!(!looks_legacy(None, b"a:"));
    assert!(!looks_legacy(None, b"a:x"));
    assert!(!looks_legacy(None, b""));
}

#[test]
fn encoders_write_what_php_writes() {
    // PHP: serialize(['etime'=>5, 'body'=>json_decode($json, true)]) for each $json
    let table: &[(&str, &[u8])] = &[
        (r#"{"a":1,"b":[1,2,{"c":null}],"d":1.5,"e":"x"}"#, b"a:2:{s:5:\"etime\";i:5;s:4:\"body\";a:4:{s:1:\"a\";i:1;s:1:\"b\";a:3:{i:0;i:1;i:1;i:2;i:2;a:1:{s:1:\"c\";N;}}s:1:\"d\";d:1.5;s:1:\"e\";s:1:\"x\";}}"),
        (r#"{"0":"a","1":"b"}"#, b"a:2:{s:5:\"etime\";i:5;s:4:\"body\";a:2:{i:0;s:1:\"a\";i:1;s:1:\"b\";}}"),
        (r#"{"1":"a","0":"b"}"#, b"a:2:{s:5:\"etime\";i:5;s:4:\"body\";a:2:{i:1;s:1:\"a\";i:0;s:1:\"b\";}}"),
        ("{}", b"a:2:{s:5:\"etime\";i:5;s:4:\"body\";a:0:{}}"),
        ("[]", b"a:2:{s:5:\"etime\";i:5;s:4:\"body\";a:0:{}}"),
        (r#"{"9223372036854775808":1,"x":18446744073709551615,"f":1e100,"g":-0.0,"h":0.00001}"#, b"a:2:{s:5:\"etime\";i:5;s:4:\"body\";a:5:{s:19:\"9223372036854775808\";i:1;s:1:\"x\";d:1.8446744073709552E+19;s:1:\"f\";d:1.0E+100;s:1:\"g\";d:-0;s:1:\"h\";d:1.0E-5;}}"),
    ];
    for (j, want) in table {
        let v: serde_json::Value = serde_json::from_str(j).unwrap();
        assert_eq!(encode_event(&v, 5), *want, "{j}");
    }
    assert_eq!(encode_task(&decode_task(TASK).unwrap()), TASK);
    assert_eq!(encode_task(&decode_task(TASK_DELAYED).unwrap()), TASK_DELAYED);
    let e = decode_event(EVENT).unwrap();
    assert_eq!(encode_event(&e.params, e.etime), EVENT);
}

#[test]
fn floats_as_php_writes_them() {
    // PHP: serialize($f) for each
    let table: &[(f64, &str)] = &[
        (0.1, "0.1"),
        (1.0, "1"),
        (-0.0, "-0"),
        (0.0, "0"),
        (1e25, "1.0E+25"),
        (1.5e-7, "1.5E-7"),
        (0.0001, "0.0001"),
        (0.00001, "1.0E-5"),
        (1e15, "1000000000000000"),
        (1e16, "10000000000000000"),
        (1e17, "1.0E+17"),
        (123456789012345678.0, "1.2345678901234568E+17"),
        (12345678901234567890.0, "1.2345678901234567E+19"),
        (-2.5, "-2.5"),
        (5e-324, "5.0E-324"),
        (f64::MAX, "1.7976931348623157E+308"),
        (100.0, "100"),
        (0.00012345, "0.00012345"),
        (9.99, "9.99"),
        (f64::INFINITY, "INF"),
        (f64::NEG_INFINITY, "-INF"),
        (f64::NAN, "NAN"),
    ];
    for (f, want) in table {
        assert_eq!(php_float(*f), *want, "{f:e}");
    }
}
