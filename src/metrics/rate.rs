//! Counts over the last minute, lock-free and fit for shared memory: sixty one-second cells, each
//! holding the second it counts (high 32 bits) and its count (low 32 bits) in one atomic word, so a
//! writer moving a cell to a new second and another writer adding to it never lose a count.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::shm::atomics;

/// Seconds a ring covers.
pub const SPAN: u64 = 60;

atomics! {
    /// Zeroed memory is an empty ring.
    pub struct MinuteRing {
        cells: [AtomicU64; SPAN as usize],
    }
}

impl MinuteRing {
    pub const fn new() -> MinuteRing {
        MinuteRing { cells: [const { AtomicU64::new(0) }; SPAN as usize] }
    }
}

impl Default for MinuteRing {
    fn default() -> Self {
        MinuteRing::new()
    }
}

fn stamp(now_s: u64) -> u64 {
    now_s & 0xffff_ffff
}

impl MinuteRing {
    /// One more at second `now_s` (Unix time).
    pub fn add(&self, now_s: u64) {
        let cell = &self.cells[(now_s % SPAN) as usize];
        let s = stamp(now_s);
        let mut v = cell.load(Ordering::Relaxed);
        loop {
            let new = if v >> 32 == s { v + 1 } else { s << 32 | 1 };
            match cell.compare_exchange_weak(v, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => v = now,
            }
        }
    }

    /// How many were added in the minute ending at second `now_s` (that second included).
    pub fn count(&self, now_s: u64) -> u64 {
        let now = stamp(now_s);
        self.cells
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .filter(|v| {
                let at = v >> 32;
                at <= now && now - at < SPAN
            })
            .map(|v| v & 0xffff_ffff)
            .sum()
    }

    /// Forgets everything (a new process takes the slot).
    pub fn clear(&self) {
        for c in &self.cells {
            c.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_last_sixty_seconds() {
        let r = MinuteRing::default();
        let t0 = 1_700_000_000;
        // (second, how many added then, count expected then); t0+60 reuses t0's cell
        let rows = [(t0, 3, 3), (t0 + 1, 2, 5), (t0 + 59, 1, 6), (t0 + 60, 4, 7), (t0 + 61, 0, 5), (t0 + 200, 0, 0)];
        for (at, n, want) in rows {
            for _ in 0..n {
                r.add(at);
            }
            assert_eq!(r.count(at), want, "at +{}", at - t0);
        }
        assert_eq!(r.count(t0 + 59), 3, "a cell of a later second is not counted earlier");
        r.clear();
        assert_eq!(r.count(t0 + 60), 0);
    }

    #[test]
    fn writers_on_many_threads_lose_nothing() {
        let r = std::sync::Arc::new(MinuteRing::default());
        let t0 = 1_700_000_000;
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for k in 0..1000 {
                        r.add(t0 + (k + i) % 3);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(r.count(t0 + 2), 4000);
    }
}
