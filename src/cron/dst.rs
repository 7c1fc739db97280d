//! Daylight saving: the rules croner applies, and the tests that hold it to them.
//!
//! A job is **fixed-time** when its seconds, minute and hour fields are each a single value (`30 2 * * *`,
//! `@daily`), and an **interval** job when any of them is a wildcard, step, range or list (`*/15 * * * *`,
//! `* 2 * * *`, `@hourly`).
//!
//! - **Spring gap** (the clock jumps forward; e.g. 02:00-02:59 does not exist in Berlin on 29 March 2026):
//!   a fixed-time job whose time falls in the gap runs once, at the first instant after the gap (02:30 runs at
//!   03:00 CEST); an interval job's times in the gap do not exist and are not run (`0 * * * *` runs at 01:00
//!   then 03:00; `* 2 * * *` does not run that day at all, and with a 30-minute shift, as on Lord Howe Island,
//!   `0 * * * *` loses 02:00 though 02:30-02:59 exist).
//! - **Autumn repeat** (the clock goes back; e.g. 02:00-02:59 happens twice in Berlin on 25 October 2026): a
//!   fixed-time job runs once, in the first pass (02:30 CEST, not 02:30 CET); an interval job runs in both
//!   passes, so its runs stay evenly spaced in real time (`*/20 * * * *` runs every 20 minutes straight
//!   through). A scheduler that starts during the second pass does not run a fixed-time job whose first pass
//!   is already over.
//!
//! Ticks are UTC instants, so the repeated hour never makes a tick come twice: each pass is its own instant.

#[cfg(test)]
mod tests {
    use crate::cron::ticks::tests::{iso, ms, schedule};
    use crate::cron::ticks::{latest_at_or_before, next_n, previous_before};

    /// (zone, expression, search after, expected ticks in UTC)
    type Row = (&'static str, &'static str, &'static str, &'static [&'static str]);

    fn check(rows: &[Row]) {
        for (zone, expr, after, want) in rows {
            let s = schedule(expr, zone);
            let got: Vec<String> = next_n(&s, ms(after), want.len()).unwrap().into_iter().map(iso).collect();
            assert_eq!(got, *want, "'{expr}' in {zone} after {after}");
        }
    }

    #[test]
    fn spring_gap() {
        check(&[
            // Berlin, 29 March 2026: 02:00 CET becomes 03:00 CEST at 01:00 UTC.
            ("Europe/Berlin", "30 2 * * *", "2026-03-28T12:00:00Z", &["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]),
            ("Europe/Berlin", "0 30 2 * * *", "2026-03-28T12:00:00Z", &["2026-03-29T01:00:00Z"]),
            ("Europe/Berlin", "0 2 * * *", "2026-03-28T12:00:00Z", &["2026-03-29T01:00:00Z", "2026-03-30T00:00:00Z"]),
            (
                "Europe/Berlin",
                "0 * * * *",
                "2026-03-28T23:30:00Z",
                &["2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"],
            ),
            (
                "Europe/Berlin",
                "*/30 * * * *",
                "2026-03-29T00:15:00Z",
                &["2026-03-29T00:30:00Z", "2026-03-29T01:00:00Z", "2026-03-29T01:30:00Z"],
            ),
            ("Europe/Berlin", "* 2 * * *", "2026-03-28T12:00:00Z", &["2026-03-30T00:00:00Z", "2026-03-30T00:01:00Z"]),
            // New York, 8 March 2026: 02:00 EST becomes 03:00 EDT at 07:00 UTC.
            (
                "America/New_York",
                "30 2 * * *",
                "2026-03-07T12:00:00Z",
                &["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"],
            ),
            (
                "America/New_York",
                "0 * * * *",
                "2026-03-08T05:30:00Z",
                &["2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z"],
            ),
            // Sydney, 4 October 2026: 02:00 AEST becomes 03:00 AEDT at 16:00 UTC on 3 October.
            (
                "Australia/Sydney",
                "30 2 * * *",
                "2026-10-03T00:00:00Z",
                &["2026-10-03T16:00:00Z", "2026-10-04T15:30:00Z"],
            ),
            (
                "Australia/Sydney",
                "0 * * * *",
                "2026-10-03T14:30:00Z",
                &["2026-10-03T15:00:00Z", "2026-10-03T16:00:00Z"],
            ),
            // Lord Howe, 4 October 2026: 02:00 (+10:30) becomes 02:30 (+11) at 15:30 UTC on 3 October.
            (
                "Australia/Lord_Howe",
                "15 2 * * *",
                "2026-10-03T00:00:00Z",
                &["2026-10-03T15:30:00Z", "2026-10-04T15:15:00Z"],
            ),
            (
                "Australia/Lord_Howe",
                "*/15 * * * *",
                "2026-10-03T15:00:00Z",
                &["2026-10-03T15:15:00Z", "2026-10-03T15:30:00Z", "2026-10-03T15:45:00Z"],
            ),
            (
                "Australia/Lord_Howe",
                "0 * * * *",
                "2026-10-03T14:00:00Z",
                &["2026-10-03T14:30:00Z", "2026-10-03T16:00:00Z"],
            ),
        ]);
    }

    #[test]
    fn autumn_repeat() {
        check(&[
            // Berlin, 25 October 2026: 03:00 CEST becomes 02:00 CET at 01:00 UTC; 02:00-02:59 happens twice.
            ("Europe/Berlin", "30 2 * * *", "2026-10-24T12:00:00Z", &["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]),
            (
                "Europe/Berlin",
                "0 30 2 * * *",
                "2026-10-24T12:00:00Z",
                &["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
            ),
            // Started in the second pass, after the first pass's 02:15: the next run is the next day's.
            ("Europe/Berlin", "15 2 * * *", "2026-10-25T01:05:00Z", &["2026-10-26T01:15:00Z"]),
            // Started in the first pass, before 02:30 CEST: it runs at 02:30 CEST, once.
            ("Europe/Berlin", "30 2 * * *", "2026-10-25T00:05:00Z", &["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]),
            (
                "Europe/Berlin",
                "0 * * * *",
                "2026-10-24T22:30:00Z",
                &["2026-10-24T23:00:00Z", "2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z"],
            ),
            (
                "Europe/Berlin",
                "*/20 * * * *",
                "2026-10-24T23:50:00Z",
                &[
                    "2026-10-25T00:00:00Z",
                    "2026-10-25T00:20:00Z",
                    "2026-10-25T00:40:00Z",
                    "2026-10-25T01:00:00Z",
                    "2026-10-25T01:20:00Z",
                    "2026-10-25T01:40:00Z",
                    "2026-10-25T02:00:00Z",
                ],
            ),
            // Interval job started in the second pass: it goes on from there.
            (
                "Europe/Berlin",
                "*/20 * * * *",
                "2026-10-25T01:05:00Z",
                &["2026-10-25T01:20:00Z", "2026-10-25T01:40:00Z"],
            ),
            // New York, 1 November 2026: 02:00 EDT becomes 01:00 EST at 06:00 UTC; 01:00-01:59 happens twice.
            (
                "America/New_York",
                "30 1 * * *",
                "2026-10-31T12:00:00Z",
                &["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"],
            ),
            (
                "America/New_York",
                "*/30 * * * *",
                "2026-11-01T04:45:00Z",
                &[
                    "2026-11-01T05:00:00Z",
                    "2026-11-01T05:30:00Z",
                    "2026-11-01T06:00:00Z",
                    "2026-11-01T06:30:00Z",
                    "2026-11-01T07:00:00Z",
                ],
            ),
            // Sydney, 5 April 2026: 03:00 AEDT becomes 02:00 AEST at 16:00 UTC on 4 April.
            (
                "Australia/Sydney",
                "30 2 * * *",
                "2026-04-04T00:00:00Z",
                &["2026-04-04T15:30:00Z", "2026-04-05T16:30:00Z"],
            ),
            (
                "Australia/Sydney",
                "0 * * * *",
                "2026-04-04T13:30:00Z",
                &["2026-04-04T14:00:00Z", "2026-04-04T15:00:00Z", "2026-04-04T16:00:00Z", "2026-04-04T17:00:00Z"],
            ),
            // Lord Howe, 5 April 2026: 02:00 (+11) becomes 01:30 (+10:30) at 15:00 UTC on 4 April;
            // 01:30-01:59 happens twice.
            (
                "Australia/Lord_Howe",
                "45 1 * * *",
                "2026-04-04T00:00:00Z",
                &["2026-04-04T14:45:00Z", "2026-04-05T15:15:00Z"],
            ),
            (
                "Australia/Lord_Howe",
                "*/15 * * * *",
                "2026-04-04T14:10:00Z",
                &[
                    "2026-04-04T14:15:00Z",
                    "2026-04-04T14:30:00Z",
                    "2026-04-04T14:45:00Z",
                    "2026-04-04T15:00:00Z",
                    "2026-04-04T15:15:00Z",
                    "2026-04-04T15:30:00Z",
                ],
            ),
            (
                "Australia/Lord_Howe",
                "0 * * * *",
                "2026-04-04T13:30:00Z",
                &["2026-04-04T14:00:00Z", "2026-04-04T15:30:00Z"],
            ),
        ]);
    }

    /// The catch-up decision searches backwards from now; it must see the same ticks as a forward search.
    #[test]
    fn backward_searches_see_the_forward_ticks() {
        let rows = [
            ("Europe/Berlin", "30 2 * * *", "2026-03-27T00:00:00Z"),
            ("Europe/Berlin", "*/20 * * * *", "2026-03-28T22:00:00Z"),
            ("Europe/Berlin", "30 2 * * *", "2026-10-23T00:00:00Z"),
            ("Europe/Berlin", "*/20 * * * *", "2026-10-24T22:00:00Z"),
            ("Europe/Berlin", "* 2 * * *", "2026-10-24T23:30:00Z"),
            ("America/New_York", "30 1 * * *", "2026-10-30T00:00:00Z"),
            ("America/New_York", "*/30 * * * *", "2026-11-01T03:00:00Z"),
            ("America/New_York", "30 2 * * *", "2026-03-06T00:00:00Z"),
            ("Australia/Sydney", "0 * * * *", "2026-04-04T10:00:00Z"),
            ("Australia/Lord_Howe", "*/15 * * * *", "2026-04-04T12:00:00Z"),
            ("Australia/Lord_Howe", "15 2 * * *", "2026-10-01T00:00:00Z"),
        ];
        for (zone, expr, from) in rows {
            let s = schedule(expr, zone);
            let forward = next_n(&s, ms(from), 40).unwrap();
            let end = *forward.last().unwrap();
            let mut backward = vec![latest_at_or_before(&s, end).unwrap().unwrap()];
            while backward.len() < forward.len() {
                let t = previous_before(&s, *backward.last().unwrap()).unwrap().unwrap();
                backward.push(t);
            }
            backward.reverse();
            let show = |v: &[i64]| v.iter().map(|t| iso(*t)).collect::<Vec<_>>();
            assert_eq!(show(&backward), show(&forward), "'{expr}' in {zone} from {from}");
            // And the latest tick at or before an instant between two ticks is the earlier one.
            for pair in forward.windows(2) {
                assert_eq!(latest_at_or_before(&s, pair[1] - 1).unwrap(), Some(pair[0]), "'{expr}' in {zone}");
            }
        }
    }
}
