//! What a leader fires at `now`: the ticks due now on time, at most one missed tick late, and a count of the
//! missed ticks it skips.
//!
//! - The window is (start, now], start being the later of the last tick already dealt with and the moment
//!   the schedule became active (added or resumed). A schedule with neither starts now: nothing in the past.
//! - A tick is on time when it is at most [`ON_TIME_MS`] old; every such tick fires.
//! - An older tick in the window was missed (no leader, a takeover, a stall). Only the newest missed tick may
//!   fire, late, and only if it is at most `catchup` seconds old; every other missed tick is skipped and
//!   counted (counted up to [`MAX_COUNTED`]: beyond that the count reads "at least").
//! - A paused schedule fires nothing. On resume the window starts at the resume: ticks that fell while it was
//!   paused are not caught up, and not counted as skipped either, since nothing missed them.
//! - A clock that goes back (now before start) fires nothing again: the window is empty.
//!
//! The caller fires [`Decision::to_fire`] in that order (oldest first, which the order rule of
//! [`super::firing`] needs), and passes [`Decision::handled_through`] as the next `last`.

use super::error::Error;
use super::schedule::Schedule;
use super::ticks::{between, latest_at_or_before, next_after, previous_before};

/// A tick this old or younger is on time.
pub const ON_TIME_MS: i64 = 1000;
/// Skipped ticks are counted up to this many.
pub const MAX_COUNTED: usize = 10_000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// The latest tick already dealt with: at takeover the last recorded firing of the schedule, afterwards
    /// the previous decision's `handled_through`.
    pub last: Option<i64>,
    /// When the schedule was added or last resumed, if known.
    pub active_since: Option<i64>,
    pub paused: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    pub count: usize,
    /// The count reached [`MAX_COUNTED`]: at least that many were skipped.
    pub at_least: bool,
    pub oldest: Option<i64>,
    pub newest: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// The newest missed tick, fired late.
    pub late: Option<i64>,
    /// Ticks due now, oldest first.
    pub on_time: Vec<i64>,
    pub skipped: Skipped,
    /// Every tick up to here is decided.
    pub handled_through: i64,
}

impl Decision {
    /// The ticks to fire, oldest first, each with its late flag.
    pub fn to_fire(&self) -> Vec<(i64, bool)> {
        self.late.map(|t| (t, true)).into_iter().chain(self.on_time.iter().map(|t| (*t, false))).collect()
    }
}

pub fn decide(s: &Schedule, state: &State, now: i64) -> Result<Decision, Error> {
    let start = match (state.last, state.active_since) {
        (None, None) => return Ok(Decision { handled_through: now, ..Decision::default() }),
        (a, b) => a.max(b).expect("one of them is set"),
    };
    let mut decision = Decision { handled_through: now.max(start), ..Decision::default() };
    if state.paused || now <= start {
        return Ok(decision);
    }
    // Newest first from now: the ticks on time, then the newest missed one.
    let mut cursor = latest_at_or_before(s, now)?.filter(|t| *t > start);
    while let Some(t) = cursor.filter(|t| now - t <= ON_TIME_MS) {
        decision.on_time.insert(0, t);
        cursor = previous_before(s, t)?.filter(|t| *t > start);
    }
    let Some(newest_missed) = cursor else { return Ok(decision) };
    let skipped_through = if now - newest_missed <= i64::from(s.catchup_secs()) * 1000 {
        decision.late = Some(newest_missed);
        previous_before(s, newest_missed)?.filter(|t| *t > start)
    } else {
        Some(newest_missed)
    };
    if let Some(newest) = skipped_through {
        let counted = between(s, start, newest, MAX_COUNTED)?;
        decision.skipped = Skipped {
            count: counted.ticks.len(),
            at_least: !counted.complete,
            oldest: next_after(s, start)?,
            newest: Some(newest),
        };
    }
    Ok(decision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cron::ticks::tests::{iso, ms, schedule_with};
    use serde_json::json;

    const MIN: i64 = 60_000;

    fn t0() -> i64 {
        ms("2026-06-01T12:00:00Z")
    }

    struct Case {
        what: &'static str,
        expr: &'static str,
        catchup: u32,
        last: Option<i64>,
        active_since: Option<i64>,
        paused: bool,
        now: i64,
        on_time: Vec<i64>,
        late: Option<i64>,
        skipped: usize,
    }

    fn case(what: &'static str, expr: &'static str, last: Option<i64>, now: i64) -> Case {
        Case {
            what,
            expr,
            catchup: 60,
            last,
            active_since: None,
            paused: false,
            now,
            on_time: vec![],
            late: None,
            skipped: 0,
        }
    }

    impl Case {
        fn catchup(mut self, secs: u32) -> Self {
            self.catchup = secs;
            self
        }
        fn since(mut self, t: i64) -> Self {
            self.active_since = Some(t);
            self
        }
        fn paused(mut self) -> Self {
            self.paused = true;
            self
        }
        fn on_time(mut self, ticks: &[i64]) -> Self {
            self.on_time = ticks.to_vec();
            self
        }
        fn late(mut self, t: i64) -> Self {
            self.late = Some(t);
            self
        }
        fn skipped(mut self, n: usize) -> Self {
            self.skipped = n;
            self
        }
    }

    #[test]
    fn decisions() {
        let t = t0();
        let cases = vec![
            case("a new schedule fires nothing in the past", "* * * * *", None, t + 300),
            case("the tick due now fires on time", "* * * * *", Some(t - MIN), t + 20).on_time(&[t]),
            case("exactly at the tick", "* * * * *", Some(t - MIN), t).on_time(&[t]),
            case("nothing due", "* * * * *", Some(t), t + 30_000),
            case("one missed tick within catch-up fires late", "* * * * *", Some(t - MIN), t + 30_000).late(t),
            case("only the newest missed tick fires late", "* * * * *", Some(t - 10 * MIN), t + 30_000)
                .late(t)
                .skipped(9),
            case("missed ticks older than catch-up are all skipped", "* * * * *", Some(t - 10 * MIN), t + 30_000)
                .catchup(20)
                .skipped(10),
            case("catch-up 0 never fires late", "* * * * *", Some(t - MIN), t + 1500).catchup(0).skipped(1),
            case("late is exactly catch-up old", "*/5 * * * *", Some(t - 5 * MIN), t + MIN).late(t),
            case("late is a millisecond too old", "*/5 * * * *", Some(t - 5 * MIN), t + MIN + 1).skipped(1),
            case("on time and late together", "* * * * * *", Some(t - 5000), t + 200)
                .on_time(&[t])
                .late(t - 1000)
                .skipped(3),
            case("two ticks on time", "* * * * * *", Some(t - 1000), t + 1000).on_time(&[t, t + 1000]),
            case("paused fires nothing", "* * * * *", Some(t - MIN), t + 10).paused(),
            case(
                "resumed: ticks while paused are neither caught up nor counted",
                "* * * * *",
                Some(t - 10 * MIN),
                t + 10,
            )
            .since(t - 30_000)
            .on_time(&[t]),
            case("resumed: a tick missed after the resume is caught up", "* * * * *", Some(t - 10 * MIN), t + 30_000)
                .since(t - 90_000)
                .late(t)
                .skipped(1),
            case("added, never fired: the first tick fires", "* * * * *", None, t + 5).since(t - 30_000).on_time(&[t]),
            case("added while no leader ran", "* * * * *", None, t + 30_000).since(t - 3_600_000).late(t).skipped(59),
            case("the clock went back", "* * * * *", Some(t), t - 5000),
        ];
        for c in cases {
            let s = schedule_with(c.expr, "UTC", json!({"catchup": c.catchup}));
            let state = State { last: c.last, active_since: c.active_since, paused: c.paused };
            let d = decide(&s, &state, c.now).unwrap();
            assert_eq!(d.on_time, c.on_time, "{}: on time", c.what);
            assert_eq!(d.late, c.late, "{}: late", c.what);
            assert_eq!(d.skipped.count, c.skipped, "{}: skipped", c.what);
            assert!(!d.skipped.at_least, "{}", c.what);
            let start = c.last.max(c.active_since).unwrap_or(c.now);
            assert_eq!(d.handled_through, c.now.max(start), "{}: handled through", c.what);
            for (tick, _) in d.to_fire() {
                assert!(tick > start && tick <= c.now, "{}: {} out of the window", c.what, iso(tick));
            }
        }
    }

    #[test]
    fn skipped_ticks_are_named_and_the_count_is_bounded() {
        let t = t0();
        let s = schedule_with("* * * * *", "UTC", json!({}));
        let d = decide(&s, &State { last: Some(t - 10 * MIN), ..State::default() }, t + 30_000).unwrap();
        assert_eq!(d.skipped, Skipped { count: 9, at_least: false, oldest: Some(t - 9 * MIN), newest: Some(t - MIN) });
        assert_eq!(d.to_fire(), vec![(t, true)]);

        let s = schedule_with("* * * * * *", "UTC", json!({"catchup": 0}));
        let d = decide(&s, &State { last: Some(t - 86_400_000), ..State::default() }, t + 500).unwrap();
        assert_eq!(d.on_time, vec![t]);
        assert_eq!(
            d.skipped,
            Skipped { count: MAX_COUNTED, at_least: true, oldest: Some(t - 86_399_000), newest: Some(t - 1000) }
        );
    }

    #[test]
    fn late_then_on_time_is_the_firing_order() {
        let t = t0();
        let s = schedule_with("* * * * * *", "UTC", json!({}));
        let d = decide(&s, &State { last: Some(t - 3000), ..State::default() }, t + 1000).unwrap();
        assert_eq!(d.to_fire(), vec![(t - 1000, true), (t, false), (t + 1000, false)]);
    }

    /// A leader that wakes at uneven times, sometimes seconds late, never fires a tick twice, fires in order,
    /// and accounts for every tick: fired or skipped.
    #[test]
    fn repeated_decisions_fire_each_tick_at_most_once() {
        let s = schedule_with("* * * * * *", "UTC", json!({"catchup": 2}));
        let t = t0();
        let mut state = State { active_since: Some(t), ..State::default() };
        let (mut fired, mut skipped, mut now, mut seed) = (Vec::new(), 0, t, 7u64);
        for _ in 0..400 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            // Mostly short sleeps, now and then a stall of up to 6 s.
            now += if seed >> 60 == 0 { (seed >> 40) as i64 % 6000 } else { (seed >> 40) as i64 % 700 };
            let d = decide(&s, &state, now).unwrap();
            for (tick, _) in d.to_fire() {
                assert!(fired.last().is_none_or(|l| tick > *l), "{} fired out of order", iso(tick));
                fired.push(tick);
            }
            skipped += d.skipped.count;
            state.last = Some(d.handled_through);
        }
        let all = between(&s, t, state.last.unwrap(), usize::MAX).unwrap().ticks;
        assert_eq!(fired.len() + skipped, all.len());
        assert!(skipped > 0 && fired.len() > skipped, "the walk stalls sometimes: {skipped} of {}", all.len());
    }

    #[test]
    fn a_catch_up_across_the_repeated_autumn_hour_fires_once() {
        // 02:30 in Berlin on 25 October 2026 happens twice; a fixed-time job runs at the first, 00:30 UTC.
        let s = schedule_with("30 2 * * *", "Europe/Berlin", json!({"catchup": 7200}));
        let last = ms("2026-10-24T00:30:00Z");
        let d = decide(&s, &State { last: Some(last), ..State::default() }, ms("2026-10-25T01:45:00Z")).unwrap();
        assert_eq!((d.late, d.on_time.len(), d.skipped.count), (Some(ms("2026-10-25T00:30:00Z")), 0, 0));
    }
}
