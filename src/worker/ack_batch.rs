//! How many finished tasks a worker child acks together (one `basic.ack multiple`, and one record
//! of their group ends before it: `worker::acks`). A larger batch means fewer acks and,
//! for group members, fewer end records: each is one stream write and one confirm, which the broker
//! pays for whatever it holds. The batch grows with the prefetch (a quarter of it, so that two
//! batches in flight, one acked while the next fills, leave half of the buffer to the broker), and
//! is bounded by time: a batch whose first task ended [`ACK_WAIT`] ago is acked with the task that
//! ends next, so that slow tasks are not held back behind a batch that fills slowly. The child acks
//! whatever is done anyway whenever it would wait for a task.

use std::time::Duration;

/// The batch at a prefetch above 1, at least.
pub const MIN: usize = 16;
/// The batch at most.
pub const MAX: usize = 64;
/// A batch whose first task ended this long ago is acked at the next task's end.
pub const ACK_WAIT: Duration = Duration::from_millis(20);

/// The batch at `prefetch`: every task at prefetch 1 (or 0, not known), else a quarter of the
/// prefetch, within [`MIN`] and [`MAX`].
pub fn size(prefetch: u16) -> usize {
    if prefetch <= 1 {
        return 1;
    }
    (usize::from(prefetch) / 4).clamp(MIN, MAX)
}

/// Whether `count` finished tasks, the first of them finished `oldest` ago, are acked now.
pub fn full(count: usize, size: usize, oldest: Duration) -> bool {
    count >= size || (count > 0 && oldest >= ACK_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_grows_with_the_prefetch() {
        let table = [(0, 1), (1, 1), (2, 16), (64, 16), (65, 16), (100, 25), (200, 50), (256, 64), (1000, 64)];
        for (prefetch, batch) in table {
            assert_eq!(size(prefetch), batch, "prefetch {prefetch}");
        }
    }

    #[test]
    fn a_batch_is_acked_when_full_or_old() {
        let ms = Duration::from_millis;
        let table = [
            // (count, size, oldest, acked now)
            (0, 16, ms(0), false),
            (0, 16, ms(100), false),
            (1, 1, ms(0), true),
            (15, 16, ms(19), false),
            (16, 16, ms(0), true),
            (2, 25, ms(20), true),
            (1, 25, ms(500), true),
            (24, 25, ms(5), false),
        ];
        for (count, size, oldest, acked) in table {
            assert_eq!(full(count, size, oldest), acked, "{count} of {size}, oldest {oldest:?}");
        }
    }
}
