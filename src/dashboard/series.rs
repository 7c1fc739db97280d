//! The counters sampled every few seconds over the last hour, and what they give: tasks per minute,
//! failures, run and wait times, CPU use. Pure: points in, figures out. A counter that went down was
//! reset (its process restarted): its new value is what was counted since.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use super::sources::TopicCounts;

/// How far back points are kept.
pub const KEEP_MS: i64 = 3_600_000;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Point {
    pub at_ms: i64,
    /// Counters per topic, summed over every address.
    pub topics: BTreeMap<String, TopicCounts>,
    /// CPU seconds per (address, pid).
    pub cpu: BTreeMap<(String, i64), f64>,
}

impl Point {
    fn total(&self) -> TopicCounts {
        let mut t = TopicCounts::default();
        for c in self.topics.values() {
            t.add(c);
        }
        t
    }
}

/// One point of the charts: over the interval ending at `at_ms`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChartPoint {
    pub at_ms: i64,
    pub per_min: f64,
    pub failed: f64,
    /// Mean run time of the runs of the interval; none without runs.
    pub avg_run_ms: Option<f64>,
}

fn delta(old: f64, new: f64) -> f64 {
    if new >= old {
        new - old
    } else {
        new
    }
}

#[derive(Debug, Default)]
pub struct Series {
    points: VecDeque<Point>,
}

impl Series {
    pub fn push(&mut self, p: Point) {
        let cut = p.at_ms - KEEP_MS;
        self.points.push_back(p);
        while self.points.front().is_some_and(|f| f.at_ms < cut) {
            self.points.pop_front();
        }
    }

    pub fn latest(&self) -> Option<&Point> {
        self.points.back()
    }

    /// The oldest point at most `over_ms` before the latest, and the latest.
    fn span(&self, over_ms: i64) -> Option<(&Point, &Point)> {
        let last = self.points.back()?;
        let first = self.points.iter().find(|p| p.at_ms >= last.at_ms - over_ms)?;
        Some((first, last))
    }

    /// How long the points cover.
    pub fn covered_ms(&self) -> i64 {
        match (self.points.front(), self.points.back()) {
            (Some(a), Some(b)) => b.at_ms - a.at_ms,
            _ => 0,
        }
    }

    /// Tasks run per minute over the last `over_ms`; none before two points.
    pub fn per_minute(&self, over_ms: i64) -> Option<f64> {
        let (a, b) = self.span(over_ms)?;
        if b.at_ms <= a.at_ms {
            return None;
        }
        Some(delta(a.total().done, b.total().done) * 60_000.0 / (b.at_ms - a.at_ms) as f64)
    }

    /// Failed runs over the last `over_ms` (as far as the points reach).
    pub fn failed(&self, over_ms: i64) -> f64 {
        let mut sum = 0.0;
        let Some(last) = self.points.back() else { return 0.0 };
        let mut prev: Option<&Point> = None;
        for p in self.points.iter().filter(|p| p.at_ms >= last.at_ms - over_ms) {
            if let Some(q) = prev {
                sum += delta(q.total().failed, p.total().failed);
            }
            prev = Some(p);
        }
        sum
    }

    /// The mean wait (created to started) of each topic's tasks started over the last `over_ms`.
    pub fn waits(&self, over_ms: i64) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        let Some((a, b)) = self.span(over_ms) else { return out };
        for (topic, new) in &b.topics {
            let old = a.topics.get(topic).cloned().unwrap_or_default();
            let n = delta(old.wait_count, new.wait_count);
            if n > 0.0 {
                out.insert(topic.clone(), delta(old.wait_sum, new.wait_sum) / n);
            }
        }
        out
    }

    /// CPU use of each process between the last two points, in percent of one core.
    pub fn cpu_percent(&self) -> BTreeMap<(String, i64), f64> {
        let mut out = BTreeMap::new();
        let n = self.points.len();
        if n < 2 {
            return out;
        }
        let (a, b) = (&self.points[n - 2], &self.points[n - 1]);
        let secs = (b.at_ms - a.at_ms) as f64 / 1000.0;
        if secs <= 0.0 {
            return out;
        }
        for (k, new) in &b.cpu {
            if let Some(old) = a.cpu.get(k) {
                out.insert(k.clone(), delta(*old, *new) / secs * 100.0);
            }
        }
        out
    }

    /// Throughput and run time per interval, oldest first, grouped in `step_ms` buckets.
    pub fn chart(&self, step_ms: i64) -> Vec<ChartPoint> {
        let mut out = Vec::new();
        let mut from: Option<&Point> = None;
        for p in &self.points {
            let Some(a) = from else {
                from = Some(p);
                continue;
            };
            if p.at_ms - a.at_ms < step_ms && !std::ptr::eq(p, self.points.back().expect("not empty")) {
                continue;
            }
            let (x, y) = (a.total(), p.total());
            let n = delta(x.run_count, y.run_count);
            let ms = (p.at_ms - a.at_ms).max(1) as f64;
            out.push(ChartPoint {
                at_ms: p.at_ms,
                per_min: delta(x.done, y.done) * 60_000.0 / ms,
                failed: delta(x.failed, y.failed),
                avg_run_ms: (n > 0.0).then(|| delta(x.run_sum, y.run_sum) / n * 1000.0),
            });
            from = Some(p);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at_ms: i64, done: f64, failed: f64, run: (f64, f64), wait: (f64, f64), cpu: f64) -> Point {
        let c = TopicCounts {
            done,
            failed,
            run_sum: run.0,
            run_count: run.1,
            wait_sum: wait.0,
            wait_count: wait.1,
            ..Default::default()
        };
        Point {
            at_ms,
            topics: [("t".to_string(), c)].into_iter().collect(),
            cpu: [(("a".to_string(), 1), cpu)].into_iter().collect(),
        }
    }

    #[test]
    fn figures_from_points() {
        let mut s = Series::default();
        assert_eq!(s.per_minute(60_000), None);
        s.push(point(0, 0.0, 0.0, (0.0, 0.0), (0.0, 0.0), 1.0));
        s.push(point(30_000, 30.0, 1.0, (3.0, 30.0), (6.0, 30.0), 2.0));
        s.push(point(60_000, 60.0, 4.0, (6.0, 60.0), (6.0, 30.0), 2.5));
        assert_eq!(s.per_minute(60_000), Some(60.0));
        assert_eq!(s.failed(3_600_000), 4.0);
        assert_eq!(s.waits(60_000)["t"], 0.2);
        assert_eq!(s.waits(10_000).get("t"), None, "no task started in the last 10 s");
        assert_eq!(s.cpu_percent()[&("a".to_string(), 1)], 0.5 / 30.0 * 100.0);
        let c = s.chart(30_000);
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].per_min, c[0].failed, c[0].avg_run_ms), (60.0, 1.0, Some(100.0)));
        // A restart: the counters start again from zero.
        s.push(point(90_000, 6.0, 0.0, (0.6, 6.0), (0.0, 0.0), 0.1));
        assert_eq!(s.chart(30_000).last().unwrap().per_min, 12.0);
        assert_eq!(s.failed(3_600_000), 4.0);
    }

    #[test]
    fn keeps_an_hour() {
        let mut s = Series::default();
        for i in 0..1000 {
            s.push(point(i * 5_000, 0.0, 0.0, (0.0, 0.0), (0.0, 0.0), 0.0));
        }
        assert_eq!(s.covered_ms(), KEEP_MS);
    }
}
