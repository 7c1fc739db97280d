//! Starts of a rate limit taken ahead, a block at a time (pure). `flow::rate` says why a start logged in
//! the counter may be used up to the log's margin (`x-message-ttl` minus the window) after the broker
//! logged it without ever letting more than `count + burst` start in a window: a block of `n` starts is
//! one message of `n` bytes, logged at once (`x-max-length-bytes` with `reject-publish` refuses exactly
//! the message that would not fit), usable until the take was sent plus that margin.
//!
//! So a worker whose limit does not bind pays one broker round trip per block instead of per task; one
//! whose limit binds takes single starts, as it would without blocks. The size adapts to what the process
//! uses within the margin: it doubles after a block used up in time, halves after a block whose starts
//! expired unused, and falls to one when the log refused a block (it is nearly full: a bigger block would
//! only be refused again). It never exceeds [`max_size`], a thousandth of the log: measured with 2 worker
//! processes at 200 per second (`bench/run`, row "rate reached"), blocks of up to a twentieth of the log
//! lowered the rate reached from 185 to 174 a second, single starts did not; so a limit of fewer than
//! 2,000 starts per window takes single starts, and a high limit (the one a worker should not feel)
//! takes them in blocks.

use std::time::{Duration, Instant};

use super::limits::Rate;
use super::rate;

/// The largest block of `rate`: a thousandth of its log, at least one start.
pub fn max_size(rate: &Rate) -> u32 {
    (rate::capacity(rate) / 1000).max(1)
}

/// How long after a take was sent its starts may be used: the log's margin.
pub fn usable_for(rate: &Rate) -> Duration {
    Duration::from_millis(rate::ttl_ms(rate) - rate::window_ms(rate))
}

/// The starts of one counter taken ahead, and the size of the next block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Starts taken and not used yet.
    left: u32,
    /// Until when they may be used (`None`: no block taken yet, or settled).
    until: Option<Instant>,
    /// The size of the next block (0 after a refusal: settles to one).
    size: u32,
}

impl Default for Block {
    fn default() -> Self {
        Block { left: 0, until: None, size: 1 }
    }
}

impl Block {
    /// Uses a start taken ahead when one is left and still usable at `now`.
    pub fn use_one(&mut self, now: Instant) -> bool {
        if self.left > 0 && self.until.is_some_and(|u| now <= u) {
            self.left -= 1;
            return true;
        }
        false
    }

    /// How many starts the next take asks for, at most [`max_size`] of `rate`; settles the block before
    /// it (used up: the next is twice as big; starts left unused: half as big).
    pub fn next_size(&mut self, rate: &Rate) -> u32 {
        if self.until.take().is_some() {
            self.size = if self.left == 0 { self.size.saturating_mul(2) } else { self.size / 2 };
            self.left = 0;
        }
        self.size = self.size.clamp(1, max_size(rate));
        self.size
    }

    /// A take of `granted` starts (one of them used now) sent at `sent` was logged.
    pub fn taken(&mut self, granted: u32, sent: Instant, rate: &Rate) {
        self.left = granted.saturating_sub(1);
        self.until = Some(sent + usable_for(rate));
    }

    /// The log refused a block of more than one start: the next take asks for one, even when a single
    /// start was taken instead and used up (0 settles to 1, doubled or halved).
    pub fn refused(&mut self) {
        self.size = 0;
    }

    /// Nothing is left to use at `now` (the block may be forgotten).
    pub fn spent(&self, now: Instant) -> bool {
        self.left == 0 || self.until.is_none_or(|u| now > u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str, burst: u32) -> Rate {
        Rate::parse(text, burst).unwrap()
    }

    #[test]
    fn the_largest_block_is_a_thousandth_of_the_log() {
        let table: &[(&str, u32, u32, u64)] = &[
            // rate, burst -> largest block, usable for (ms)
            ("20/s", 0, 1, 20),
            ("20/s", 5, 1, 25),
            ("200/s", 0, 1, 20),
            ("1000/s", 0, 1, 20),
            ("5000/s", 0, 5, 20),
            ("50000/s", 0, 50, 20),
            ("1000000/s", 0, 1000, 20),
            ("10/m", 0, 1, 1000),
            ("1/s", 0, 1, 20),
        ];
        for &(text, burst, size, ms) in table {
            let r = rate(text, burst);
            assert_eq!((max_size(&r), usable_for(&r)), (size, Duration::from_millis(ms)), "{text} +{burst}");
        }
    }

    #[test]
    fn a_block_grows_while_it_is_used_up_and_shrinks_when_it_is_not() {
        let r = rate("50000/s", 0);
        let t0 = Instant::now();
        let mut b = Block::default();
        let mut sizes = vec![];
        // Six blocks used up in time, one left half unused, one refused.
        for round in 0..8 {
            let size = b.next_size(&r);
            sizes.push(size);
            if round == 7 {
                b.refused();
                break;
            }
            b.taken(size, t0, &r);
            let uses = if round == 6 { size / 2 } else { size - 1 };
            for _ in 0..uses {
                assert!(b.use_one(t0));
            }
        }
        assert_eq!(sizes, [1, 2, 4, 8, 16, 32, 50, 25]);
        assert_eq!(b.next_size(&r), 1, "a refusal asks for one start next");
        // A refused block, a single start taken instead and used up: one again, then growing.
        b.taken(1, t0, &r);
        b.refused();
        assert_eq!(b.next_size(&r), 1);
        b.taken(1, t0, &r);
        assert_eq!(b.next_size(&r), 2);
    }

    #[test]
    fn starts_are_usable_only_within_the_margin() {
        let r = rate("50000/s", 0);
        let t0 = Instant::now();
        let mut b = Block::default();
        assert!(!b.use_one(t0), "nothing taken yet");
        assert!(b.spent(t0));
        b.taken(3, t0, &r);
        assert!(!b.spent(t0));
        assert!(b.use_one(t0 + Duration::from_millis(20)), "at the end of the margin");
        assert!(!b.use_one(t0 + Duration::from_millis(21)), "after it");
        assert!(b.spent(t0 + Duration::from_millis(21)));
        b.taken(1, t0, &r);
        assert!(!b.use_one(t0), "a block of one was used by its take");
    }

    #[test]
    fn a_binding_limit_takes_single_starts() {
        let r = rate("20/s", 0);
        let mut b = Block::default();
        for _ in 0..5 {
            assert_eq!(b.next_size(&r), 1);
            b.taken(1, Instant::now(), &r);
        }
    }
}
