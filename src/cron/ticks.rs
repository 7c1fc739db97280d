//! When a schedule fires: its ticks as UTC instants in epoch milliseconds (always whole seconds), computed on
//! the wall clock of the schedule's zone (daylight-saving rules in [`super::dst`]). Searches move along real
//! time, so each tick found after an instant is later than it, and each found before it is earlier.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::errors::CronError;

use super::error::{Error, ErrorKind};
use super::schedule::Schedule;

/// The ticks of one window, oldest first; `complete` is false when the window held more than the limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub ticks: Vec<i64>,
    pub complete: bool,
}

/// The first tick later than `after`; `None` when there is none before the year 5000.
pub fn next_after(s: &Schedule, after: i64) -> Result<Option<i64>, Error> {
    // Ticks are whole seconds, so a tick is later than `after` exactly when it is later than its whole second.
    match s.expression().cron().find_next_occurrence(&zoned(s, whole_second(after))?, false) {
        Ok(t) if t.timestamp_millis() > after => Ok(Some(t.timestamp_millis())),
        Ok(t) => Err(wrong_way(s, t.timestamp_millis(), "after", after)),
        Err(e) => none_or_error(e, after),
    }
}

/// The latest tick at or before `at`; `None` when there is none since the year 1.
pub fn latest_at_or_before(s: &Schedule, at: i64) -> Result<Option<i64>, Error> {
    // Ticks are whole seconds, so a tick is at or before `at` exactly when it is at or before its whole second.
    match s.expression().cron().find_previous_occurrence(&zoned(s, whole_second(at))?, true) {
        Ok(t) if t.timestamp_millis() <= at => Ok(Some(t.timestamp_millis())),
        Ok(t) => Err(wrong_way(s, t.timestamp_millis(), "at or before", at)),
        Err(e) => none_or_error(e, at),
    }
}

/// The latest tick earlier than `before`.
pub fn previous_before(s: &Schedule, before: i64) -> Result<Option<i64>, Error> {
    // Ticks are whole milliseconds.
    latest_at_or_before(s, before - 1)
}

/// The next `n` ticks after `after`, fewer when the schedule ends before the year 5000.
pub fn next_n(s: &Schedule, after: i64, n: usize) -> Result<Vec<i64>, Error> {
    let mut out = Vec::with_capacity(n);
    let mut at = after;
    while out.len() < n {
        match next_after(s, at)? {
            Some(t) => {
                out.push(t);
                at = t;
            }
            None => break,
        }
    }
    Ok(out)
}

/// The ticks in (`after`, `until`], at most `limit` of them.
pub fn between(s: &Schedule, after: i64, until: i64, limit: usize) -> Result<Window, Error> {
    let mut ticks = Vec::new();
    let mut at = after;
    while let Some(t) = next_after(s, at)? {
        if t > until {
            break;
        }
        if ticks.len() == limit {
            return Ok(Window { ticks, complete: false });
        }
        ticks.push(t);
        at = t;
    }
    Ok(Window { ticks, complete: true })
}

/// croner compares the instants of a repeated hour with a one-second slack, which misplaces a search that
/// starts at a fraction of a second (a backward search from 02:59:59.999 of the first pass returned 02:00 of
/// the second): it is only ever given whole seconds.
fn whole_second(ms: i64) -> i64 {
    ms - ms.rem_euclid(1000)
}

/// An instant as a date and time in the schedule's zone.
pub fn zoned(s: &Schedule, ms: i64) -> Result<DateTime<Tz>, Error> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.with_timezone(&s.zone()))
        .ok_or_else(|| Error::new(ErrorKind::Time, format!("instant {ms} ms is outside the supported range")))
}

/// The promise of every search (later than, not later than) guards the firing order; a search that breaks it
/// is an error rather than a tick.
fn wrong_way(s: &Schedule, got: i64, want: &str, at: i64) -> Error {
    Error::new(ErrorKind::Time, format!("the tick search of '{}' returned {got} ms, not {want} {at} ms", s.name()))
}

fn none_or_error<T>(e: CronError, at: i64) -> Result<Option<T>, Error> {
    match e {
        CronError::TimeSearchLimitExceeded => Ok(None),
        e => Err(Error::new(ErrorKind::Time, format!("cannot compute the ticks around {at} ms: {e}"))),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::{json, Map, Value};

    /// A schedule in `zone` (an IANA name).
    pub(crate) fn schedule(expr: &str, zone: &str) -> Schedule {
        schedule_with(expr, zone, json!({}))
    }

    pub(crate) fn schedule_with(expr: &str, zone: &str, settings: Value) -> Schedule {
        let mut map: Map<String, Value> = settings.as_object().expect("an object").clone();
        map.insert("timezone".into(), json!(zone));
        Schedule::parse(expr, "e", &map, || unreachable!("the zone is given")).expect(expr)
    }

    /// Epoch milliseconds of an RFC 3339 time.
    pub(crate) fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339).expect(rfc3339).timestamp_millis()
    }

    pub(crate) fn iso(ms: i64) -> String {
        Utc.timestamp_millis_opt(ms).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    fn isos(ticks: &[i64]) -> Vec<String> {
        ticks.iter().map(|t| iso(*t)).collect()
    }

    #[test]
    fn next_ticks_in_the_schedule_zone() {
        let cases: &[(&str, &str, &str, &[&str])] = &[
            ("0 9 * * *", "UTC", "2026-06-01T08:59:59.999Z", &["2026-06-01T09:00:00Z", "2026-06-02T09:00:00Z"]),
            ("0 9 * * *", "UTC", "2026-06-01T09:00:00Z", &["2026-06-02T09:00:00Z", "2026-06-03T09:00:00Z"]),
            ("0 9 * * *", "Asia/Tokyo", "2026-06-01T00:00:00Z", &["2026-06-02T00:00:00Z"]),
            ("0 9 * * *", "Asia/Kolkata", "2026-06-01T00:00:00Z", &["2026-06-01T03:30:00Z", "2026-06-02T03:30:00Z"]),
            ("*/20 * * * * *", "UTC", "2026-06-01T00:00:10.500Z", &["2026-06-01T00:00:20Z", "2026-06-01T00:00:40Z"]),
            ("@monthly", "America/New_York", "2026-01-15T00:00:00Z", &["2026-02-01T05:00:00Z", "2026-03-01T05:00:00Z"]),
            ("0 0 L * *", "UTC", "2026-02-01T00:00:00Z", &["2026-02-28T00:00:00Z", "2026-03-31T00:00:00Z"]),
            ("0 0 * * FRI#2", "UTC", "2026-01-01T00:00:00Z", &["2026-01-09T00:00:00Z", "2026-02-13T00:00:00Z"]),
            ("0 0 * * 5#L", "UTC", "2026-01-01T00:00:00Z", &["2026-01-30T00:00:00Z", "2026-02-27T00:00:00Z"]),
            ("0 0 1W * *", "UTC", "2026-02-02T00:00:00Z", &["2026-03-02T00:00:00Z", "2026-04-01T00:00:00Z"]),
            ("0 0 13 * +FRI", "UTC", "2026-01-01T00:00:00Z", &["2026-02-13T00:00:00Z", "2026-03-13T00:00:00Z"]),
            ("0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z", &["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]),
        ];
        for (expr, zone, after, want) in cases {
            let s = schedule(expr, zone);
            let got = next_n(&s, ms(after), want.len()).unwrap();
            assert_eq!(isos(&got), *want, "{expr} in {zone} after {after}");
        }
    }

    #[test]
    fn tokyo_nine_am_is_midnight_utc_of_the_same_day() {
        let s = schedule("0 9 * * *", "Asia/Tokyo");
        assert_eq!(iso(next_after(&s, ms("2026-05-31T23:59:59Z")).unwrap().unwrap()), "2026-06-01T00:00:00Z");
    }

    #[test]
    fn windows_are_half_open_and_limited() {
        let s = schedule("*/10 * * * * *", "UTC");
        let (a, b) = (ms("2026-06-01T00:00:00Z"), ms("2026-06-01T00:01:00Z"));
        let w = between(&s, a, b, 100).unwrap();
        assert!(w.complete);
        assert_eq!(w.ticks.len(), 6);
        assert_eq!((w.ticks[0], w.ticks[5]), (a + 10_000, b));
        let w = between(&s, a, b, 4).unwrap();
        assert_eq!((w.ticks.len(), w.complete), (4, false));
        let w = between(&s, a, b - 1, 6).unwrap();
        assert_eq!((w.ticks.len(), w.complete), (5, true));
        assert_eq!(between(&s, b, a, 10).unwrap(), Window { ticks: vec![], complete: true });
    }

    #[test]
    fn backward_searches() {
        let s = schedule("0 * * * *", "UTC");
        let at = ms("2026-06-01T10:00:00Z");
        assert_eq!(latest_at_or_before(&s, at).unwrap(), Some(at));
        assert_eq!(latest_at_or_before(&s, at + 1).unwrap(), Some(at));
        assert_eq!(latest_at_or_before(&s, at - 1).unwrap(), Some(at - 3_600_000));
        assert_eq!(previous_before(&s, at).unwrap(), Some(at - 3_600_000));
        assert_eq!(previous_before(&s, at + 1).unwrap(), Some(at));
    }

    #[test]
    fn the_ends_of_the_calendar() {
        let s = schedule("@yearly", "UTC");
        let e = next_after(&s, i64::MAX).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Time);
        assert_eq!(next_after(&s, ms("4999-06-01T00:00:00Z")).unwrap(), Some(ms("5000-01-01T00:00:00Z")));
        assert_eq!(next_after(&s, ms("5000-06-01T00:00:00Z")).unwrap(), None);
    }
}
