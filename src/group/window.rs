//! When the leader stops following the groups stream to complete what is due. Each follow-up the
//! broker gets alone costs it about ten times one written with others (a confirmed lone write: stream
//! 160 µs, durable queue 340 µs, against 17 µs and 80 µs in a burst; `bench/RESULTS.md`), and at a
//! high rate groups complete one by one. So once a run of records makes something due, the leader
//! keeps reading what arrives for a short window, and publishes the follow-ups of every group due by
//! then in one burst (their confirms awaited after the last). The window adds at most [`WINDOW`] to a
//! group's completion latency; it closes early once [`WINDOW_DUE`] groups are due. Nothing due, no
//! window: a run that completes nothing is acked at once. Nor when groups complete rarely (the last
//! completion [`QUIET`] ago or more): a burst would not form, and the group would only wait.

use std::time::Duration;

/// How long the leader keeps reading once a group is due, at most.
pub const WINDOW: Duration = Duration::from_millis(5);

/// Groups due that close the window at once (a burst big enough to be written together anyway).
pub const WINDOW_DUE: usize = 128;

/// The leader completed nothing for this long: groups complete rarely, no window.
pub const QUIET: Duration = Duration::from_millis(10);

/// How long the leader still reads before completing, `due` groups being due for `since` (the time
/// since the first of them became due) and its last completion `idle` ago (`None`: none yet):
/// `None` when it completes now.
pub fn keep_reading(due: usize, since: Duration, idle: Option<Duration>) -> Option<Duration> {
    if due == 0 || due >= WINDOW_DUE || idle.is_none_or(|idle| idle >= QUIET) {
        return None;
    }
    WINDOW.checked_sub(since).filter(|left| !left.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_the_window_closes() {
        let ms = Duration::from_millis;
        let busy = Some(ms(2));
        let table = [
            // (due, since, last completion ago, reads on for)
            (0, ms(0), busy, None),
            (0, ms(3), busy, None),
            (1, ms(0), busy, Some(ms(5))),
            (1, ms(2), busy, Some(ms(3))),
            (127, ms(4), Some(ms(9)), Some(ms(1))),
            (1, ms(5), busy, None),
            (3, ms(9), busy, None),
            (128, ms(0), busy, None),
            (1000, ms(1), busy, None),
            // Groups completing rarely, or the first one: completed at once.
            (1, ms(0), Some(ms(10)), None),
            (5, ms(0), Some(ms(500)), None),
            (1, ms(0), None, None),
        ];
        for (due, since, idle, left) in table {
            assert_eq!(keep_reading(due, since, idle), left, "{due} due for {since:?}, idle {idle:?}");
        }
    }
}
