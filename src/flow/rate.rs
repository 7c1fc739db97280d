//! A rate limit as a sliding log held by the broker: the arithmetic of it (pure). The broker side is
//! `broker::rate`; the worker child's use of it `worker::throttle`.
//!
//! A rate `count` per `per_ms` with a `burst` is a counter queue of at most `count + burst` bytes
//! (`x-max-length-bytes`, `x-overflow = reject-publish`), one byte per start, whose messages expire
//! `window_ms` after they were put in (`x-message-ttl`). A start is a confirmed publish to it (several
//! starts taken at once are one message of as many bytes: `rate_block`); a refusal (negative confirm)
//! means the log has no room for them and the task may not start now. Nothing refills it, nothing
//! leads: each message leaves by itself when it expires, so the limit holds across every process on
//! every host.
//!
//! The window is `per_ms × (count + burst) / count`, not `per_ms`: the log then lets `count + burst`
//! start at once after a quiet time (the burst) and `count` per `per_ms` when work keeps waiting
//! (`count + burst` per `window_ms`). With no burst the window is `per_ms`. Any `per_ms` holds at most
//! `count + burst` starts, since `per_ms ≤ window_ms`.
//!
//! Precision (measured on RabbitMQ 3.10, 20 per second, 10 s): a classic queue expires its head on a
//! timer set for that message and refuses exactly at its length, so the count is exact (quorum queues
//! are not: `broker::rate` says what was measured, and why counters are classic queues). What is lost is
//! the time between the head's expiry and the next take: a process that finds the log full waits
//! [`retry_after`] (a fraction of the gap between two starts, spread at random so that several
//! processes do not ask together) before asking again, so that the rate reached stays above 95 % of the
//! limit while the broker is asked at most a few times per slot per process.

use std::time::Duration;

use super::limits::{Applied, Rate};

/// The shortest and longest wait before asking a full log again.
pub const RETRY_MIN: Duration = Duration::from_millis(5);
pub const RETRY_MAX: Duration = Duration::from_secs(1);

/// The longest a task waits in place for its topic's rate; a longer wait holds it back instead, so
/// that no delivery stays unacked near the broker's consumer timeout (30 minutes by default).
pub const WAIT_IN_PLACE_MAX: Duration = Duration::from_secs(10);

/// An idle counter queue is deleted by the broker this long after its window (`x-expires`, idle =
/// not declared again; publishing does not count as use, so a live counter is declared again every
/// [`redeclare_after`]).
pub const IDLE_MS: u64 = 60_000;

/// How many starts the log holds (`x-max-length-bytes`, a byte per start).
pub fn capacity(rate: &Rate) -> u32 {
    rate.count.saturating_add(rate.burst)
}

/// The window of the log, in ms: see the module header.
pub fn window_ms(rate: &Rate) -> u64 {
    let count = u64::from(rate.count);
    (rate.per_ms * u64::from(capacity(rate))).div_ceil(count)
}

/// How long a start stays in the log (`x-message-ttl`), in ms: the window and a margin of 2 % (10 ms to
/// a second) for the time between the broker logging a start and the task starting, which varies by
/// a few milliseconds (and which a block of starts taken ahead may use up: `rate_block`): without it,
/// two starts a window apart in the log could start a little less than a window apart. Every start used
/// within the margin after it was logged, the starts of any `per_ms` were logged within `per_ms` plus
/// the margin, which is at most the TTL: they were all in the log together, so at most its capacity.
pub fn ttl_ms(rate: &Rate) -> u64 {
    let w = window_ms(rate);
    w + (w / 50).clamp(10, 1000)
}

/// `x-expires` of a counter queue: two windows and a minute without being declared.
pub fn expires_ms(rate: &Rate) -> u64 {
    ttl_ms(rate).saturating_mul(2).saturating_add(IDLE_MS)
}

/// A counter declared this long ago is declared again before its next take, so it never expires
/// while it is used.
pub fn redeclare_after(rate: &Rate) -> Duration {
    Duration::from_millis(expires_ms(rate) / 2)
}

/// How long to wait before asking a full log again: half the gap between two starts at the
/// limit's rate, between [`RETRY_MIN`] and [`RETRY_MAX`], times `spread` (0.5 to 1.5, random: callers
/// asking together drift apart).
pub fn retry_after(rate: &Rate, spread: f64) -> Duration {
    let gap_ms = rate.per_ms as f64 / f64::from(rate.count);
    let base = Duration::from_secs_f64(gap_ms / 2000.0).clamp(RETRY_MIN, RETRY_MAX);
    base.mul_f64(spread.clamp(0.5, 1.5))
}

/// How long a task held back (a name or key rate was full) stays away: the gap between two starts
/// of its limit, at least a second (the shortest delay) and at most a window.
pub fn hold_back_for(rate: &Rate) -> Duration {
    let gap = Duration::from_millis(rate.per_ms.div_ceil(u64::from(rate.count)));
    gap.clamp(Duration::from_secs(1), Duration::from_millis(window_ms(rate)).max(Duration::from_secs(1)))
}

/// A log found full for longer than its TTL and a second cannot be full (its oldest start has
/// expired): the channel asking may be refusing everything, and is replaced.
pub fn channel_stuck(rate: &Rate, full_for: Duration) -> bool {
    full_for > Duration::from_millis(ttl_ms(rate)) + Duration::from_secs(1)
}

/// The rate limits of a task in the order they are taken: name and key limits first (a full one holds
/// the task back, and a start taken before it of another limit is used for nothing), the topic's last
/// (a full one is waited for in place, and always given in the end).
pub fn in_order(applied: &[Applied]) -> Vec<(&Applied, &Rate)> {
    let rated = applied.iter().filter_map(|a| a.rate.as_ref().map(|r| (a, r)));
    let (topic, other): (Vec<_>, Vec<_>) = rated.partition(|(a, _)| waits_in_place(a));
    other.into_iter().chain(topic).collect()
}

/// A full topic limit is waited for in place (nothing else of the topic could start anyway), up to
/// [`WAIT_IN_PLACE_MAX`]; a full name or key limit holds the task back, so that tasks of other names
/// and keys go on.
pub fn waits_in_place(a: &Applied) -> bool {
    a.key.is_none() && a.counter == "t"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str, burst: u32) -> Rate {
        Rate::parse(text, burst).unwrap()
    }

    #[test]
    fn the_log_of_a_rate() {
        // (rate, burst) -> (capacity, window ms, ttl ms, expires ms)
        let table: &[(&str, u32, u32, u64, u64, u64)] = &[
            ("20/s", 0, 20, 1000, 1020, 62_040),
            ("20/s", 5, 25, 1250, 1275, 62_550),
            ("10/m", 0, 10, 60_000, 61_000, 182_000),
            ("3/s", 1, 4, 1334, 1360, 62_720),
            ("1/h", 0, 1, 3_600_000, 3_601_000, 7_262_000),
            ("1000/s", 0, 1000, 1000, 1020, 62_040),
            ("100/s", 0, 100, 1000, 1020, 62_040),
            ("1000000/s", 1000000, 2_000_000, 2000, 2040, 64_080),
        ];
        for &(text, burst, cap, window, ttl, expires) in table {
            let r = rate(text, burst);
            let got = (capacity(&r), window_ms(&r), ttl_ms(&r), expires_ms(&r));
            assert_eq!(got, (cap, window, ttl, expires), "{text} +{burst}");
            assert!(redeclare_after(&r) < Duration::from_millis(expires), "{text}");
        }
        let short = Rate::new(1, 10, 0).unwrap();
        assert_eq!((window_ms(&short), ttl_ms(&short)), (10, 20), "a margin of at least 10 ms");
    }

    #[test]
    fn any_limit_window_holds_at_most_count_plus_burst_and_the_long_run_is_count() {
        for (text, burst) in [("20/s", 0), ("20/s", 5), ("7/10s", 3), ("1/m", 2)] {
            let r = rate(text, burst);
            assert!(window_ms(&r) >= r.per_ms, "{text}: a window of the limit never holds more than the log");
            let long_run = f64::from(capacity(&r)) / window_ms(&r) as f64 * r.per_ms as f64;
            assert!((long_run - f64::from(r.count)).abs() < 0.01, "{text} +{burst}: {long_run}");
        }
    }

    #[test]
    fn waits_before_asking_again() {
        let ms = |d: Duration| d.as_millis();
        assert_eq!(ms(retry_after(&rate("20/s", 0), 1.0)), 25);
        assert_eq!(ms(retry_after(&rate("20/s", 0), 0.5)), 12);
        assert_eq!(ms(retry_after(&rate("20/s", 0), 9.0)), 37, "the spread is bounded");
        assert_eq!(ms(retry_after(&rate("1000/s", 0), 1.0)), 5, "never below the minimum");
        assert_eq!(ms(retry_after(&rate("1/h", 0), 1.0)), 1000, "never above the maximum");
        assert_eq!(ms(hold_back_for(&rate("20/s", 0))), 1000, "at least a second");
        assert_eq!(ms(hold_back_for(&rate("10/m", 0))), 6000);
        assert_eq!(ms(hold_back_for(&rate("1/h", 0))), 3_600_000);
    }

    #[test]
    fn name_and_key_limits_are_taken_before_the_topic_limit() {
        use crate::flow::key::Template;
        use crate::flow::limits::{Limit, LimitSet, Scope};
        let limit = |scope: Scope, rate: Option<&str>, concurrency: Option<u32>| Limit {
            topic: "demo".into(),
            scope,
            rate: rate.map(|r| Rate::parse(r, 0).unwrap()),
            concurrency,
        };
        let set = LimitSet::new(vec![
            limit(Scope::Topic, Some("20/s"), None),
            limit(Scope::Name("send".into()), None, Some(2)),
            limit(Scope::Key { name: None, template: Template::parse("c:{c}").unwrap() }, Some("1/s"), None),
            limit(Scope::Name("send".into()), Some("5/s"), None),
        ]);
        let applied = set.for_task("send", &serde_json::json!({"c": 1}));
        let order: Vec<(&str, bool)> =
            in_order(&applied).iter().map(|(a, _)| (a.limit.as_str(), waits_in_place(a))).collect();
        assert_eq!(order, [("demo/{c:{c}}", false), ("demo/send", false), ("demo", true)]);
        assert!(in_order(&set.for_task("other", &serde_json::json!({}))).len() == 1);
        assert!(in_order(&[]).is_empty());
    }

    #[test]
    fn a_log_full_for_longer_than_its_window_is_a_stuck_channel() {
        let r = rate("20/s", 0);
        assert!(!channel_stuck(&r, Duration::from_millis(2000)));
        assert!(channel_stuck(&r, Duration::from_millis(2100)));
    }
}
