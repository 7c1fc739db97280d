//! The rules on names and values that come from outside: the prefix, topics, task and event names,
//! task and event ids, delays and AMQP names. Checked on the way in (PHP arguments, settings) and on the
//! way back (message bodies read from the broker) by the same functions; and how a text is cut to a
//! bound where ebats writes it. Pure Rust, no dependency on the other layers.

use std::borrow::Cow;

/// Number of binary delay levels: level n holds a message 2^n seconds, so delays up to 2^28-1 s.
pub const DELAY_LEVELS: u32 = 28;
pub const MAX_DELAY: i64 = (1 << DELAY_LEVELS) - 1;

pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty()
        || prefix.len() > 64
        || !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
    {
        return Err(format!("prefix must be 1 to 64 characters of A-Z a-z 0-9 _ - . , got '{}'", printable(prefix)));
    }
    Ok(())
}

/// Topics become queue names and routing-key words and name the task class, so: no dots, no spaces.
pub fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("topic must not be empty".into());
    }
    if topic.len() > 128 || !topic.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(format!("topic '{}' is invalid: use 1 to 128 characters of A-Z a-z 0-9 _ -", printable(topic)));
    }
    Ok(())
}

/// Task names become PHP method names (`<name>Task`).
pub fn check_task_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("task name must not be empty".into());
    }
    let first_ok = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if name.len() > 128 || !first_ok || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!(
            "task name '{}' is invalid: use 1 to 128 characters of A-Z a-z 0-9 _, not starting with a digit",
            printable(name)
        ));
    }
    Ok(())
}

pub fn check_event_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("event name must not be empty".into());
    }
    if name.len() > 255 || name.chars().any(|c| c.is_control()) {
        return Err(format!("event name '{}' is invalid: use 1 to 255 printable characters", printable(name)));
    }
    Ok(())
}

/// The longest task or event id ebats reads, in bytes (ebats writes 32 hex digits; other producers
/// may write a UUID with dashes, a ULID, their own order number...).
pub const MAX_ID_LEN: usize = 128;

/// A task or event id: 1 to [`MAX_ID_LEN`] printable ASCII characters, no spaces. Ids go into the
/// AMQP `message_id` (at most 255 bytes), the worker's shared memory (a fixed slot per id), log lines
/// and listings, so they are bounded and plain.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "id '{}' is invalid: use 1 to {MAX_ID_LEN} printable ASCII characters without spaces",
            printable(id)
        ));
    }
    Ok(())
}

pub fn check_delay(delay: i64) -> Result<u64, String> {
    if !(0..=MAX_DELAY).contains(&delay) {
        return Err(format!("delay must be between 0 and {MAX_DELAY} seconds, got {delay}"));
    }
    Ok(delay as u64)
}

/// AMQP names (exchanges, queues, routing keys) are at most 255 bytes.
pub fn check_amqp_name(what: &str, name: &str) -> Result<(), String> {
    if name.len() > 255 {
        return Err(format!("{what} is longer than 255 bytes"));
    }
    Ok(())
}

/// At most the first 64 characters of `s`, control and non-ASCII characters escaped, for messages.
pub fn printable(s: &str) -> String {
    s.chars().take(64).flat_map(char::escape_default).collect()
}

/// `text` as it is when it fits in `max` bytes; else its start, cut at a character boundary, and a
/// marker saying it was cut and how long the whole was (` ... [cut: 20971520 bytes in all]`), the
/// two together at most `max` bytes. Used wherever ebats writes a text it did not make (exception
/// messages) into a place of bounded size: AMQP headers, bodies, history records, log lines.
pub fn bounded(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut marker = format!(" ... [cut: {} bytes in all]", text.len());
    if marker.len() > max {
        marker.clear();
    }
    let mut end = max - marker.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{marker}", &text[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_checks() {
        assert!(check_topic("demo_1-x").is_ok());
        assert!(check_topic("").is_err());
        assert!(check_topic("a.b").is_err());
        assert!(check_topic("a.b#").is_err());
        assert!(check_topic("../../x").is_err());
        assert!(check_topic("Foo\\Bar").is_err());
        assert!(check_topic(&"t".repeat(129)).is_err());
        assert!(check_task_name("closeOrder").is_ok());
        assert!(check_task_name("1x").is_err());
        assert!(check_task_name("a-b").is_err());
        assert!(check_task_name("ok;evil").is_err());
        assert!(check_event_name("order.paied").is_ok());
        assert!(check_event_name("a\nb").is_err());
        assert!(check_event_name(&"e".repeat(256)).is_err());
        assert!(check_delay(-1).is_err());
        assert_eq!(check_delay(10), Ok(10));
        assert!(check_delay(MAX_DELAY + 1).is_err());
        assert!(check_prefix("t_ab.c-1").is_ok());
        assert!(check_prefix("a b").is_err());
        assert!(check_prefix("").is_err());
        assert!(check_amqp_name("queue name", &"q".repeat(255)).is_ok());
        assert!(check_amqp_name("queue name", &"q".repeat(256)).is_err());
    }

    #[test]
    fn task_ids() {
        let table: [(String, bool); 13] = [
            ("x".into(), true),
            ("9b2e7c1d3f4a4b5c8d6e0f1a2b3c4d5e".into(), true),
            ("9b2e7c1d-3f4a-4b5c-8d6e-0f1a2b3c4d5e".into(), true),
            ("01ARZ3NDEKTSV4RRFFQ69G5FAV".into(), true),
            ("order:42/retry#1".into(), true),
            ("i".repeat(MAX_ID_LEN), true),
            ("i".repeat(MAX_ID_LEN + 1), false),
            ("".into(), false),
            ("a b".into(), false),
            ("a\nb".into(), false),
            ("a\u{1b}[2Jb".into(), false),
            ("caf\u{e9}".into(), false),
            ("nul\0".into(), false),
        ];
        for (id, ok) in &table {
            assert_eq!(check_id(id).is_ok(), *ok, "{id:?}");
        }
        let e = check_id(&"i".repeat(200)).unwrap_err();
        assert!(e.contains("1 to 128") && e.len() < 200, "{e}");
        assert!(!check_id("a\nb").unwrap_err().contains('\n'));
    }

    #[test]
    fn texts_bounded_and_marked() {
        // (text, max, expected)
        let table: [(&str, usize, &str); 5] = [
            ("short", 10, "short"),
            ("exactly10!", 10, "exactly10!"),
            ("0123456789abcdefghijklmnopqrstuvwxyz0123456789", 40, "0123456789abc ... [cut: 46 bytes in all]"),
            // never inside a character: each é is two bytes
            ("éééééééééééééééééééééééééééééééééééé", 40, "éééééé ... [cut: 72 bytes in all]"),
            // a bound smaller than the marker: the start only
            ("0123456789abcdef", 8, "01234567"),
        ];
        for (text, max, expected) in table {
            let b = bounded(text, max);
            assert_eq!(b, expected, "{text} at {max}");
            assert!(b.len() <= max);
        }
        let big = "x".repeat(20 << 20);
        let b = bounded(&big, 4096);
        assert!(b.len() <= 4096 && b.len() > 4000 && b.ends_with(&format!("[cut: {} bytes in all]", 20 << 20)));
    }

    #[test]
    fn messages_show_names_escaped_and_short() {
        let e = check_topic("a\nb").unwrap_err();
        assert!(e.contains("a\\nb"), "{e}");
        assert!(!e.contains('\n'));
        let e = check_task_name(&"x-".repeat(100)).unwrap_err();
        assert!(e.len() < 200, "{e}");
    }
}
