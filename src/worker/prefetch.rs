//! How many tasks a worker child takes ahead when `setPrefetch()` was not called: as many as it can
//! run in [`BUDGET`], judged from the tasks it ran.
//!
//! A child starts at 1, so the first tasks of a queue are spread over idle children and a long task
//! never has another waiting behind it. Once it has run [`LOOK`] tasks at a prefetch, the prefetch
//! becomes what fills [`BUDGET`] at their mean duration (at most [`MAX`]): short tasks are then not
//! paced by the broker round trip (ack, then the next delivery). A task that took [`BUDGET`] or more
//! brings it back to 1 at once. What a buffer holds is thus about [`BUDGET`] of work as far as the
//! child has seen: a task that waits behind a long one in a busy child's buffer waits for that task,
//! never for a queue of them, and with long tasks no task waits at all.
//!
//! A change is applied by consuming again at the new prefetch (RabbitMQ applies `basic.qos` only to
//! consumers started after it), so a change is made only when the prefetch at least doubles or
//! halves.

use std::time::Duration;

/// The work a child's buffer may hold.
pub const BUDGET: Duration = Duration::from_millis(20);
/// The largest prefetch chosen (a no-op task takes ~30 µs: 100 of them are ~3 ms).
pub const MAX: u16 = 100;
/// Tasks run at a prefetch before it may grow or shrink on their mean.
pub const LOOK: u32 = 8;

/// What a child saw since its prefetch last changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub tasks: u32,
    /// The sum of their durations, in µs.
    pub total_us: u64,
    /// The last one's duration, in µs.
    pub last_us: u64,
}

/// The prefetch to use next, or `None` to keep `current`.
pub fn next(current: u16, seen: Seen) -> Option<u16> {
    let budget = BUDGET.as_micros() as u64;
    if seen.last_us >= budget {
        return (current > 1).then_some(1);
    }
    if seen.tasks < LOOK {
        return None;
    }
    let mean = (seen.total_us / u64::from(seen.tasks)).max(1);
    let want = (budget / mean).clamp(1, u64::from(MAX)) as u16;
    let far = want >= current.saturating_mul(2) || want.saturating_mul(2) <= current;
    far.then_some(want)
}

/// A child's adaptive prefetch: tasks seen, and the prefetch they lead to.
#[derive(Debug, Clone)]
pub struct Adaptive {
    current: u16,
    seen: Seen,
}

impl Default for Adaptive {
    fn default() -> Self {
        Adaptive { current: 1, seen: Seen::default() }
    }
}

impl Adaptive {
    /// The prefetch a subscription opens with.
    pub const START: u16 = 1;

    pub fn current(&self) -> u16 {
        self.current
    }

    /// A task took `took`: the prefetch to change to, if any (then counted from anew).
    pub fn ran(&mut self, took: Duration) -> Option<u16> {
        let us = took.as_micros().min(u128::from(u64::MAX / 2)) as u64;
        self.seen.tasks += 1;
        self.seen.total_us = self.seen.total_us.saturating_add(us);
        self.seen.last_us = us;
        let to = next(self.current, self.seen)?;
        self.current = to;
        self.seen = Seen::default();
        Some(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(tasks: u32, mean_us: u64, last_us: u64) -> Seen {
        Seen { tasks, total_us: mean_us * u64::from(tasks), last_us }
    }

    #[test]
    fn next_prefetch() {
        let cases: &[(&str, u16, Seen, Option<u16>)] = &[
            ("too few tasks seen", 1, seen(7, 30, 30), None),
            ("no-op tasks: the largest", 1, seen(8, 30, 30), Some(MAX)),
            ("1 ms tasks: 20 of them fill the budget", 1, seen(8, 1_000, 1_000), Some(20)),
            ("already there", 20, seen(8, 1_000, 1_000), None),
            ("less than double: kept", 16, seen(8, 1_000, 1_000), None),
            ("half: shrinks", 40, seen(8, 1_000, 1_000), Some(20)),
            ("5 ms tasks", 1, seen(8, 5_000, 5_000), Some(4)),
            ("10 ms tasks", 1, seen(8, 10_000, 10_000), Some(2)),
            ("15 ms tasks stay at 1", 1, seen(8, 15_000, 15_000), None),
            ("a long task: back to 1 at once", MAX, seen(1, 1_000_000, 1_000_000), Some(1)),
            ("a task of exactly the budget", MAX, seen(3, 50, 20_000), Some(1)),
            ("long tasks at 1: unchanged", 1, seen(1, 1_000_000, 1_000_000), None),
            ("slow mean, short last: shrinks", MAX, seen(8, 12_000, 100), Some(1)),
            ("zero durations", 1, seen(8, 0, 0), Some(MAX)),
        ];
        for (what, current, s, want) in cases {
            assert_eq!(next(*current, *s), *want, "{what}");
        }
    }

    #[test]
    fn adaptive_grows_after_short_tasks_and_drops_on_a_long_one() {
        let mut a = Adaptive::default();
        assert_eq!(a.current(), Adaptive::START);
        let short = Duration::from_micros(40);
        let changes: Vec<Option<u16>> = (0..LOOK).map(|_| a.ran(short)).collect();
        assert_eq!(changes[..LOOK as usize - 1], vec![None; LOOK as usize - 1][..]);
        assert_eq!(changes[LOOK as usize - 1], Some(MAX));
        assert_eq!(a.current(), MAX);
        assert_eq!(a.ran(short), None, "counted anew after a change");
        assert_eq!(a.ran(Duration::from_secs(1)), Some(1));
        assert_eq!(a.ran(Duration::from_secs(1)), None);
        assert_eq!(a.current(), 1);
    }
}
