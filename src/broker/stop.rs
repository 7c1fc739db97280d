//! The one stop token of a process: every loop (worker child, Scheduler, Consumer) and every
//! wait for the broker made while opening a subscription asks it whether to stop.
//!
//! A stop is asked in one of two ways, and the token sees both: a signal handler raised the flag
//! (processes that let SIGTERM/SIGINT arrive: the Scheduler and the Consumer), or a stop signal is
//! pending while blocked (worker processes, which block them so no handler cuts PHP code short).
//! A thread that must end while its process goes on (the Scheduler's leadership thread) holds a
//! [`Part`]: the process's token, and a stop of its own.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The signals that ask a process to stop (SIGHUP asks a worker child to finish and be replaced).
pub const STOP_SIGNALS: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

static FLAG: AtomicI32 = AtomicI32::new(0);
/// How many [`CutWaitsShort`] guards are alive (they nest).
static CUT_WAITS: AtomicUsize = AtomicUsize::new(0);

/// Records that `sig` asked for a stop. Only an atomic store: safe inside a signal handler.
pub fn request(sig: i32) {
    FLAG.store(sig, Ordering::SeqCst);
}

/// Forgets an earlier request (a new loop starts).
pub fn reset() {
    FLAG.store(0, Ordering::SeqCst);
}

/// The signal that asked for a stop, if any (raised, or pending while blocked; not taken).
pub fn requested() -> Option<i32> {
    match FLAG.load(Ordering::SeqCst) {
        0 => pending_signal(),
        s => Some(s),
    }
}

fn pending_signal() -> Option<i32> {
    // SAFETY: sigpending fills a valid, initialised set; sigismember only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        if libc::sigpending(&mut set) != 0 {
            return None;
        }
        STOP_SIGNALS.iter().copied().find(|s| libc::sigismember(&set, *s) == 1)
    }
}

pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGCHLD => "SIGCHLD",
        _ => "signal",
    }
}

/// Waits `d`, in slices of at most `slice`, calling `between` after each; returns early (true)
/// when a stop is asked or `between` says to leave.
pub fn pause(d: Duration, slice: Duration, mut between: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + d;
    loop {
        if requested().is_some() || between() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(slice.min(deadline - now));
    }
}

/// How often async code looks at the token while it waits.
const ASYNC_LOOK: Duration = Duration::from_millis(100);

/// The stop of one part of a process (a thread that ends while the process goes on): stopped when
/// the process is asked to stop, or the part is. Clones share the part's stop.
#[derive(Clone, Debug, Default)]
pub struct Part(Arc<AtomicBool>);

impl Part {
    pub fn new() -> Part {
        Part::default()
    }

    /// Asks this part (and every clone) to stop.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst) || requested().is_some()
    }

    /// Resolves once stopped (looking every 100 ms), for async code to race against a wait.
    pub async fn wait(&self) {
        while !self.stopped() {
            tokio::time::sleep(ASYNC_LOOK).await;
        }
    }

    /// Waits `d` in async code, or less when stopped; true when stopped.
    pub async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => self.stopped(),
            _ = self.wait() => true,
        }
    }
}

/// While alive, waits for the broker on this process's session end early, with an error of kind
/// `Stopped`, when a stop is asked: for opening a subscription (connecting, declaring) and for any
/// connect (nothing was sent on a connection not yet made), never for a publish's confirm, whose
/// message may already be stored.
pub struct CutWaitsShort(());

impl CutWaitsShort {
    pub fn begin() -> CutWaitsShort {
        CUT_WAITS.fetch_add(1, Ordering::SeqCst);
        CutWaitsShort(())
    }
}

impl Drop for CutWaitsShort {
    fn drop(&mut self) {
        CUT_WAITS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// True when a wait for the broker should end now.
pub fn cuts_wait() -> bool {
    CUT_WAITS.load(Ordering::SeqCst) > 0 && requested().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_pause_and_cut_waits() {
        reset();
        assert_eq!(requested(), None);
        assert!(!pause(Duration::from_millis(30), Duration::from_millis(10), || false));
        let mut calls = 0;
        assert!(pause(Duration::from_secs(5), Duration::from_millis(10), || {
            calls += 1;
            calls == 3
        }));
        assert!(!cuts_wait());
        request(libc::SIGTERM);
        assert!(!cuts_wait(), "outside a subscription's opening, waits are not cut");
        {
            let _outer = CutWaitsShort::begin();
            {
                let _inner = CutWaitsShort::begin();
                assert!(cuts_wait());
            }
            assert!(cuts_wait(), "guards nest");
        }
        assert!(!cuts_wait());
        let start = Instant::now();
        assert!(pause(Duration::from_secs(5), Duration::from_millis(10), || false));
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(requested(), Some(libc::SIGTERM));
        reset();
        // In this test: the flag is the process's, and tests run in parallel.
        a_part_stops_on_its_own_or_with_the_process();
    }

    fn a_part_stops_on_its_own_or_with_the_process() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let part = Part::new();
        let clone = part.clone();
        assert!(!part.stopped());
        assert!(!rt.block_on(part.pause(Duration::from_millis(20))), "a pause runs out when nothing stops it");
        clone.stop();
        assert!(part.stopped(), "clones share the stop");
        let start = Instant::now();
        assert!(rt.block_on(part.pause(Duration::from_secs(5))));
        assert!(start.elapsed() < Duration::from_secs(1));
        let other = Part::new();
        request(libc::SIGINT);
        assert!(other.stopped(), "the process's stop stops every part");
        rt.block_on(other.wait());
        reset();
        assert!(!other.stopped());
    }
}
