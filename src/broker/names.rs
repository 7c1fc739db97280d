//! Names of every exchange and queue ebats uses, under a configurable prefix (the rules on the
//! user-given names that go into them are in `crate::rules`).

pub use crate::rules::{DELAY_LEVELS, MAX_DELAY};

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
    /// Event bodies the scheduler could not read, kept as they came.
    pub fn unreadable_events(&self) -> String {
        format!("{}.events.unreadable", self.prefix)
    }
    pub fn consumer_failed_queue(&self, queue: &str) -> String {
        format!("{}.failed.consumer.{queue}", self.prefix)
    }
    /// The stream of schedule changes and firings.
    pub fn cron_stream(&self) -> String {
        format!("{}.cron", self.prefix)
    }
    /// The stream of execution records (the history).
    pub fn history_stream(&self) -> String {
        format!("{}.history", self.prefix)
    }
    /// The single-active-consumer queue holding the leadership token.
    pub fn cron_leader(&self) -> String {
        format!("{}.cron.leader", self.prefix)
    }
    /// Fanout exchange of firings, bound to the stream and to the event exchange.
    pub fn cron_fire(&self) -> String {
        format!("{}.cron.fire", self.prefix)
    }
    /// The stream where processes serving metrics announce themselves.
    pub fn processes_stream(&self) -> String {
        format!("{}.processes", self.prefix)
    }
    /// The original library's ready queue of a topic (bound to the task exchange with key `topic`).
    /// The stream of paused topics.
    pub fn flow_stream(&self) -> String {
        format!("{}.flow", self.prefix)
    }
    /// The stream of groups of tasks (`group::state`).
    pub fn groups_stream(&self) -> String {
        format!("{}.groups", self.prefix)
    }
    /// Fanout exchange of groups' follow-ups, bound to the groups stream and to the event exchange.
    pub fn groups_done(&self) -> String {
        format!("{}.groups.done", self.prefix)
    }

    /// The counter queue of a rate limit (`broker::rate`): the counter's name within the topic, and the
    /// log's shape (capacity in bytes, `b`, and window), so a changed limit starts a log of its own. A
    /// name longer than AMQP allows names the counter by a digest of it.
    pub fn rate_counter(&self, topic: &str, counter: &str, capacity: u32, window_ms: u64) -> String {
        let name = format!("{}.rate.{topic}.{counter}.{capacity}b-{window_ms}", self.prefix);
        if name.len() <= 255 {
            return name;
        }
        let digest = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, counter.as_bytes()).simple().to_string();
        format!("{}.rate.{topic}.d.{digest}.{capacity}b-{window_ms}", self.prefix)
    }

    /// The classic queue that holds a unique key of `topic` while a task holds it (at most one
    /// message: the holder's id). `key` is a `flow::key::Key::name`; a name that would leave no room
    /// for [`unique_holder`]'s suffix within AMQP's 255 bytes uses a digest of the topic and key
    /// instead (the same in every process).
    pub fn unique_queue(&self, topic: &str, key: &str) -> String {
        let name = format!("{}.unique.{topic}.{key}", self.prefix);
        if name.len() <= 253 {
            return name;
        }
        let digest = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("{topic}.{key}").as_bytes());
        format!("{}.unique.~{}", self.prefix, digest.simple())
    }

    pub fn legacy_ready_queue(&self, topic: &str) -> String {
        format!("{}.{topic}R", self.prefix)
    }
    /// The original library's delay queue of a topic (per-message TTL, dead-letters to the task
    /// exchange with key `topic`).
    pub fn legacy_delay_queue(&self, topic: &str) -> String {
        format!("{}.{topic}D", self.prefix)
    }
    /// An exclusive queue held by the one process converting the original's delay exchange.
    pub fn switch_lock(&self) -> String {
        format!("{}.switch.lock", self.prefix)
    }
    /// Slot `i` of a concurrency limit's counter (`flow::limits::Applied::counter`): an exclusive
    /// queue, held by one connection at a time. A name that would pass 255 bytes names the counter
    /// by a digest of it.
    pub fn permit(&self, topic: &str, counter: &str, i: u32) -> String {
        self.slot_name(topic, counter, &i.to_string())
    }

    /// The waiting line of a concurrency limit's counter: a queue the children waiting in place for
    /// one of its permits consume (their number tells a holder that someone waits), where a holder
    /// giving a permit back puts a message that wakes one of them (`broker::permit_line`).
    pub fn permit_line(&self, topic: &str, counter: &str) -> String {
        self.slot_name(topic, counter, "waiting")
    }

    /// `<prefix>.slot.<topic>.<counter>.<last>`, the counter named by a digest of it when that would
    /// pass 255 bytes.
    fn slot_name(&self, topic: &str, counter: &str, last: &str) -> String {
        let name = format!("{}.slot.{topic}.{counter}.{last}", self.prefix);
        if name.len() <= 255 {
            return name;
        }
        let digest = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, counter.as_bytes()).simple().to_string();
        format!("{}.slot.{topic}.~{digest}.{last}", self.prefix)
    }
}

/// The queue beside a unique key's queue that tells who holds it (`~` is in no key name but a
/// digest's first character, so no key's queue has this name).
pub fn unique_holder(key_queue: &str) -> String {
    format!("{key_queue}~h")
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
    fn unique_queues_fit_an_amqp_name() {
        let n = Names::new("p");
        assert_eq!(n.unique_queue("demo", "order:42"), "p.unique.demo.order:42");
        let long = Names::new(&"p".repeat(64));
        let (topic, key) = ("t".repeat(128), "k".repeat(100));
        let q = long.unique_queue(&topic, &key);
        assert!(unique_holder(&q).len() <= 255 && q.starts_with(&format!("{}.unique.~", "p".repeat(64))), "{q}");
        assert_eq!(q, long.unique_queue(&topic, &key), "stable");
        assert_ne!(q, long.unique_queue(&topic, &"j".repeat(100)));
    }

    #[test]
    fn permit_names_stay_valid() {
        let n = Names::new("p");
        assert_eq!(n.permit("demo", "k.0a1b2c3d.c:7", 2), "p.slot.demo.k.0a1b2c3d.c:7.2");
        let long = format!("k.0a1b2c3d.{}", "x".repeat(100));
        let a = Names::new(&"p".repeat(64)).permit(&"t".repeat(128), &long, 999_999);
        assert!(a.len() <= 255 && a.ends_with(".999999"), "{a}");
        assert_ne!(a, Names::new(&"p".repeat(64)).permit(&"t".repeat(128), &format!("{long}y"), 999_999));
        assert_eq!(n.permit_line("demo", "t"), "p.slot.demo.t.waiting");
        let line = Names::new(&"p".repeat(64)).permit_line(&"t".repeat(128), &long);
        assert!(line.len() <= 255 && line.ends_with(".waiting"), "{line}");
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
}
