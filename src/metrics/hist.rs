//! Histograms kept in atomics (they live in memory shared by several processes): a count per
//! bucket and a sum in microseconds, turned into Prometheus' cumulative buckets at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::shm::atomics;

/// Upper bounds of the buckets, in seconds (a last, unbounded bucket follows).
pub const BOUNDS: [f64; 17] =
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0];

/// Index of the bucket that counts `secs` (BOUNDS.len() for the unbounded one).
pub fn bucket(secs: f64) -> usize {
    BOUNDS.iter().position(|b| secs <= *b).unwrap_or(BOUNDS.len())
}

atomics! {
    pub struct Hist {
        counts: [AtomicU64; BOUNDS.len() + 1],
        sum_us: AtomicU64,
    }
}

/// A histogram as read at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistSnap {
    /// Per bucket, not cumulative; the last is the unbounded one.
    pub counts: Vec<u64>,
    pub sum: f64,
}

impl Hist {
    pub fn observe(&self, secs: f64) {
        let secs = if secs.is_finite() && secs > 0.0 { secs } else { 0.0 };
        self.counts[bucket(secs)].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
    }

    pub fn snap(&self) -> HistSnap {
        HistSnap {
            counts: self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
            sum: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

impl HistSnap {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds another histogram's counts (same buckets).
    pub fn add(&mut self, other: &HistSnap) {
        if self.counts.is_empty() {
            self.counts = vec![0; other.counts.len()];
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum += other.sum;
    }

    /// (upper bound, count) per bucket, the unbounded one last, as the encoder takes them (it
    /// writes them cumulated, as Prometheus wants).
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        self.counts.iter().enumerate().map(|(i, c)| (BOUNDS.get(i).copied().unwrap_or(f64::INFINITY), *c)).collect()
    }

    /// Cumulative (upper bound, count) pairs, the unbounded bucket last.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        self.counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                total += c;
                (BOUNDS.get(i).copied().unwrap_or(f64::INFINITY), total)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_take_their_upper_bound() {
        assert_eq!(bucket(0.0), 0);
        assert_eq!(bucket(0.001), 0);
        assert_eq!(bucket(0.0011), 1);
        assert_eq!(bucket(1.0), 8);
        assert_eq!(bucket(3600.0), 16);
        assert_eq!(bucket(3600.5), 17);
    }

    #[test]
    fn observe_and_cumulate() {
        // SAFETY (test): zeroed memory is a valid state for atomics.
        let h: Hist = unsafe { std::mem::zeroed() };
        for s in [0.002, 0.002, 0.3, 7200.0, f64::NAN] {
            h.observe(s);
        }
        let s = h.snap();
        assert_eq!(s.count(), 5);
        assert!((s.sum - 7200.304).abs() < 1e-6, "{}", s.sum);
        let c = s.cumulative();
        assert_eq!(c[0], (0.001, 1)); // the NaN counts as 0
        assert_eq!(c[1], (0.005, 3));
        assert_eq!(c[7], (0.5, 4));
        assert_eq!(*c.last().unwrap(), (f64::INFINITY, 5));
        let mut sum = HistSnap::default();
        sum.add(&s);
        sum.add(&s);
        assert_eq!(sum.count(), 10);
    }
}
