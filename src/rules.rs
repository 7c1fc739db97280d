//! The rules on names and values that come from outside: the prefix, topics, task and event names,
//! delays and AMQP names. Checked on the way in (PHP arguments, settings) and on the way back (message
//! bodies read from the broker) by the same functions. Pure Rust, no dependency on the other layers.

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
    fn messages_show_names_escaped_and_short() {
        let e = check_topic("a\nb").unwrap_err();
        assert!(e.contains("a\\nb"), "{e}");
        assert!(!e.contains('\n'));
        let e = check_task_name(&"x-".repeat(100)).unwrap_err();
        assert!(e.len() < 200, "{e}");
    }
}
