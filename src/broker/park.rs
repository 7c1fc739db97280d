//! Waiting for a broker future on the calling (PHP) thread, with a deadline.
//!
//! lapin resolves its futures from its own I/O thread through the waker, so the PHP thread can
//! poll them itself and sleep until woken. Going through the tokio runtime's `block_on` with a tokio
//! timeout would also wake the runtime's timer thread for every message: one more thread hand-off
//! on the hottest paths (publishing, taking the next task).

use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Why a wait ended without the future's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    TimedOut,
    /// A stop was asked while waits are cut short (see [`super::stop::CutWaitsShort`]).
    Stopped,
}

impl Cut {
    /// The error of a wait for `what` (at most `t`) that this ended.
    pub fn error(self, t: Duration, what: &str) -> super::BrokerError {
        match self {
            Cut::TimedOut => super::BrokerError::timeout(t, what),
            Cut::Stopped => super::BrokerError::new(super::ErrorKind::Stopped, format!("stopped while {what}")),
        }
    }
}

/// How often a sleeping wait looks at the stop token.
pub const STOP_CHECK: Duration = Duration::from_millis(50);

/// Polls `f` on this thread until it is ready, `timeout` has passed, or a stop cuts it short.
pub fn wait<F: Future>(f: F, timeout: Duration) -> Result<F::Output, Cut> {
    wait_progressing(f, timeout, &Cell::new(0))
}

/// [`wait`] for a lot of answers (`f` counts them in `progress`): it times out only after `timeout`
/// without a new one, as if each answer were awaited with its own deadline.
pub fn wait_progressing<F: Future>(f: F, timeout: Duration, progress: &Cell<usize>) -> Result<F::Output, Cut> {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    let mut deadline = Instant::now() + timeout;
    let mut seen = progress.get();
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return Ok(v);
        }
        let now = Instant::now();
        if progress.get() != seen {
            seen = progress.get();
            deadline = now + timeout;
        }
        if now >= deadline {
            return Err(Cut::TimedOut);
        }
        if super::stop::cuts_wait() {
            return Err(Cut::Stopped);
        }
        // A wake-up between the poll and here leaves the token set: park returns at once.
        thread::park_timeout((deadline - now).min(STOP_CHECK));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_future_and_timeout() {
        assert_eq!(wait(async { 7 }, Duration::from_millis(10)), Ok(7));
        let start = Instant::now();
        assert_eq!(wait(std::future::pending::<()>(), Duration::from_millis(120)), Err(Cut::TimedOut));
        assert!(start.elapsed() >= Duration::from_millis(120));
    }

    #[test]
    fn a_lot_times_out_only_after_a_pause_in_its_progress() {
        let progress = Cell::new(0);
        let start = Instant::now();
        // Six steps of 30 ms each under a deadline of 100 ms: each step moves it.
        let steps = async {
            for _ in 0..6 {
                let t = Instant::now();
                while t.elapsed() < Duration::from_millis(30) {
                    futures_lite::future::yield_now().await;
                }
                progress.set(progress.get() + 1);
            }
            7
        };
        assert_eq!(wait_progressing(steps, Duration::from_millis(100), &progress), Ok(7));
        assert!(start.elapsed() >= Duration::from_millis(180));
        let stuck = async {
            progress.set(progress.get() + 1);
            std::future::pending::<()>().await
        };
        assert_eq!(wait_progressing(stuck, Duration::from_millis(50), &progress), Err(Cut::TimedOut));
    }

    #[test]
    fn woken_from_another_thread() {
        let (tx, rx) = futures_lite::future::block_on(async { async_channel_pair() });
        let h = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            tx.send(5).unwrap();
        });
        assert_eq!(wait(async move { rx.await.unwrap() }, Duration::from_secs(5)), Ok(5));
        h.join().unwrap();
    }

    fn async_channel_pair() -> (tokio::sync::oneshot::Sender<i32>, tokio::sync::oneshot::Receiver<i32>) {
        tokio::sync::oneshot::channel()
    }
}
