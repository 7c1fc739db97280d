//! CPU % of processes over the last few seconds, from successive readings of their CPU seconds:
//! each reading is kept a while, and a percentage compares the newest reading with the oldest one
//! still in the window. Before a second reading there is no window: the process's lifetime average.

use std::collections::{HashMap, VecDeque};

/// Readings older than this are dropped once a newer one can serve as the window's start.
pub const WINDOW_MS: u64 = 10_000;
/// A window shorter than this says too little: the lifetime average is used instead.
pub const MIN_SPAN_MS: u64 = 1_000;

/// A CPU percentage (100 = one core busy all the time) and the seconds it covers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percent {
    pub percent: f64,
    pub over_secs: f64,
}

#[derive(Default)]
pub struct CpuWindow {
    readings: HashMap<i32, VecDeque<(u64, f64)>>,
}

impl CpuWindow {
    /// Records that `pid` had used `cpu_secs` at `now_ms` (it started at `started_ms`) and says its
    /// CPU % over the window.
    pub fn percent(&mut self, pid: i32, now_ms: u64, cpu_secs: f64, started_ms: u64) -> Option<Percent> {
        let r = self.readings.entry(pid).or_default();
        // A reading from the future (the clock went back) or a smaller count (a new process with the
        // same pid) ends the window.
        if r.back().is_some_and(|(at, secs)| *at > now_ms || *secs > cpu_secs) {
            r.clear();
        }
        r.push_back((now_ms, cpu_secs));
        while r.len() > 2 && now_ms - r[1].0 >= WINDOW_MS {
            r.pop_front();
        }
        let (at, secs) = r[0];
        let (span_ms, used) = if now_ms - at >= MIN_SPAN_MS {
            (now_ms - at, cpu_secs - secs)
        } else if started_ms > 0 && now_ms > started_ms {
            (now_ms - started_ms, cpu_secs)
        } else {
            return None;
        };
        let span = span_ms as f64 / 1000.0;
        Some(Percent { percent: (used / span * 100.0).max(0.0), over_secs: span })
    }

    /// Forgets the processes not in `alive`.
    pub fn keep(&mut self, alive: &[i32]) {
        self.readings.retain(|pid, _| alive.contains(pid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_over_the_window() {
        let mut w = CpuWindow::default();
        let p =
            |w: &mut CpuWindow, now: u64, secs: f64| w.percent(7, now, secs, 100_000).map(|p| (p.percent, p.over_secs));
        // (now ms, cpu seconds, expected (percent, over seconds))
        type Row = (u64, f64, Option<(f64, f64)>);
        let rows: [Row; 6] = [
            (110_000, 5.0, Some((50.0, 10.0))),                // first reading: lifetime average
            (110_500, 5.25, Some((50.0, 10.5))),               // window too short yet: lifetime again
            (112_000, 6.0, Some((50.0, 2.0))),                 // 1 s of CPU over 2 s
            (120_000, 6.0, Some((10.0, 10.0))),                // still starts at 110.0 s
            (121_000, 6.0, Some((0.75 / 10.5 * 100.0, 10.5))), // 110.0 dropped: starts at 110.5 s
            (150_000, 9.0, Some((3.0 / 29.0 * 100.0, 29.0))),  // sparse readings: since the previous one
        ];
        for (now, secs, want) in rows {
            assert_eq!(p(&mut w, now, secs), want, "at {now}");
        }
        // the same pid counting less: a new process, lifetime average again
        assert_eq!(p(&mut w, 151_000, 1.0), Some((1.0 / 51.0 * 100.0, 51.0)));
        assert_eq!(w.percent(8, 5_000, 1.0, 0), None, "no start time, no window");
        w.keep(&[8]);
        assert!(w.readings.contains_key(&8) && !w.readings.contains_key(&7));
    }
}
