//! Names of every exchange and queue ebats uses, under a configurable prefix, and the checks on
//! user-given names that go into them.

/// Number of binary delay levels: level n holds a message 2^n seconds, so delays up to 2^28-1 s.
pub const DELAY_LEVELS: u32 = 28;
pub const MAX_DELAY: i64 = (1 << DELAY_LEVELS) - 1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        Names { prefix: prefix.to_string() }
    }
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn event_exchange(&self) -> String {
        format!("{}.core.event", self.prefix)
    }
    pub fn events_queue(&self) -> String {
        format!("{}.events", self.prefix)
    }
    pub fn task_exchange(&self) -> String {
        format!("{}.task.ready", self.prefix)
    }
    pub fn ready_queue(&self, topic: &str) -> String {
        format!("{}.task.{topic}", self.prefix)
    }
    /// Entry of the delay levels; a delayed task is published here with [`delay_routing_key`].
    pub fn delay_exchange(&self) -> String {
        format!("{}.task.delay", self.prefix)
    }
    /// Exchange and queue of one delay level (the queue holds its messages 2^level seconds).
    pub fn delay_level(&self, level: u32) -> String {
        format!("{}.delay.L{level}", self.prefix)
    }
    /// Where messages leave the last level; bound `#.<topic>` to each topic's ready queue.
    pub fn delay_due(&self) -> String {
        format!("{}.delay.due", self.prefix)
    }
    /// Alternate exchange and queue for anything the due exchange cannot route.
    pub fn unroutable(&self) -> String {
        format!("{}.unroutable", self.prefix)
    }
    pub fn failed_queue(&self, topic: &str) -> String {
        format!("{}.failed.{topic}", self.prefix)
    }
    pub fn consumer_failed_queue(&self, queue: &str) -> String {
        format!("{}.failed.consumer.{queue}", self.prefix)
    }
}

/// Routing key of a delayed message: DELAY_LEVELS binary digits, most significant first, then the topic.
/// Level n looks at digit n (counted from the right): 1 sends the message through that level's queue.
pub fn delay_routing_key(delay_secs: u64, topic: &str) -> String {
    let mut key = String::with_capacity(DELAY_LEVELS as usize * 2 + topic.len());
    for level in (0..DELAY_LEVELS).rev() {
        key.push(if delay_secs >> level & 1 == 1 { '1' } else { '0' });
        key.push('.');
    }
    key.push_str(topic);
    key
}

/// Binding pattern on level `level`'s exchange matching keys whose digit for that level is `digit`.
pub fn delay_level_pattern(level: u32, digit: char) -> String {
    let mut p = "*.".repeat((DELAY_LEVELS - 1 - level) as usize);
    p.push(digit);
    p.push_str(".#");
    p
}

pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty()
        || prefix.len() > 64
        || !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
    {
        return Err(format!("prefix must be 1 to 64 characters of A-Z a-z 0-9 _ - . , got '{prefix}'"));
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

fn printable(s: &str) -> String {
    s.chars().take(64).flat_map(char::escape_default).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_key_digits() {
        let k = delay_routing_key(10, "demo");
        assert_eq!(k.len(), 28 * 2 + 4);
        assert!(k.ends_with("1.0.1.0.demo"), "{k}");
        assert!(k.starts_with("0.0.0."));
        assert_eq!(delay_routing_key(MAX_DELAY as u64, "t"), format!("{}t", "1.".repeat(28)));
    }

    #[test]
    fn patterns_pick_their_digit() {
        assert_eq!(delay_level_pattern(27, '1'), "1.#");
        assert_eq!(delay_level_pattern(0, '0'), format!("{}0.#", "*.".repeat(27)));
        // the digit level n looks at is the one delay_routing_key wrote for bit n
        let key = delay_routing_key(1 << 5, "x");
        let words: Vec<&str> = key.split('.').collect();
        assert_eq!(words[(DELAY_LEVELS - 1 - 5) as usize], "1");
        assert_eq!(words.iter().filter(|w| **w == "1").count(), 1);
    }

    #[test]
    fn name_checks() {
        assert!(check_topic("demo_1-x").is_ok());
        assert!(check_topic("").is_err());
        assert!(check_topic("a.b").is_err());
        assert!(check_task_name("closeOrder").is_ok());
        assert!(check_task_name("1x").is_err());
        assert!(check_task_name("a-b").is_err());
        assert!(check_event_name("order.paied").is_ok());
        assert!(check_event_name("a\nb").is_err());
        assert!(check_delay(-1).is_err());
        assert_eq!(check_delay(10), Ok(10));
        assert!(check_delay(MAX_DELAY + 1).is_err());
    }
}
