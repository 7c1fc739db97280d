//! Signals as data: the worker's processes block SIGTERM, SIGINT and SIGHUP and collect them with
//! `sigtimedwait`, so no handler ever runs in the middle of PHP code or a broker call, and a PHP
//! handler that sleeps is not cut short by a shutdown request.

use std::time::Duration;

pub const STOP_SIGNALS: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

fn set_of(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset writes to it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in signals {
            libc::sigaddset(&mut set, *s);
        }
        set
    }
}

/// Blocks `signals` for the calling thread (and the threads it starts later); returns the old mask.
pub fn block(signals: &[i32]) -> libc::sigset_t {
    let set = set_of(signals);
    // SAFETY: both pointers are to valid sigset_t values.
    unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        old
    }
}

pub fn unblock(signals: &[i32]) {
    let set = set_of(signals);
    // SAFETY: a valid set; the old mask is not wanted.
    unsafe {
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

pub fn restore(mask: &libc::sigset_t) {
    // SAFETY: `mask` came from `block`.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, mask, std::ptr::null_mut());
    }
}

/// Takes one pending signal of `signals` (which must be blocked), waiting at most `wait`.
pub fn take(signals: &[i32], wait: Duration) -> Option<i32> {
    let set = set_of(signals);
    let ts = libc::timespec { tv_sec: wait.as_secs() as libc::time_t, tv_nsec: wait.subsec_nanos() as libc::c_long };
    // SAFETY: valid set and timespec; no siginfo wanted.
    let s = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (s > 0).then_some(s)
}

/// True when a stop signal is pending (blocked and not yet taken), without taking it.
pub fn stop_pending() -> bool {
    // SAFETY: sigpending fills a valid set; sigismember only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        if libc::sigpending(&mut set) != 0 {
            return false;
        }
        STOP_SIGNALS.iter().any(|s| libc::sigismember(&set, *s) == 1)
    }
}

pub fn name(sig: i32) -> &'static str {
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

static STOP_FLAG: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn set_stop_flag(sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP_FLAG.store(sig, std::sync::atomic::Ordering::SeqCst);
}

/// While alive, the given signals only raise a flag, so a long-running loop (scheduler,
/// consumer) can stop between messages; dropping it restores what was there. The caller leaves
/// out signals the application handles itself.
pub struct StopOnSignals {
    saved: Vec<(i32, libc::sigaction)>,
}

impl StopOnSignals {
    pub fn install(signals: &[i32]) -> StopOnSignals {
        STOP_FLAG.store(0, std::sync::atomic::Ordering::SeqCst);
        let mut saved = Vec::new();
        for &sig in signals {
            // SAFETY: sigaction with valid pointers; the handler only stores an atomic.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                    continue;
                }
                if old.sa_sigaction == libc::SIG_IGN {
                    continue;
                }
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = set_stop_flag as *const () as usize;
                libc::sigemptyset(&mut new.sa_mask);
                new.sa_flags = libc::SA_RESTART;
                if libc::sigaction(sig, &new, std::ptr::null_mut()) == 0 {
                    saved.push((sig, old));
                }
            }
        }
        StopOnSignals { saved }
    }

    /// The stop signal received, if any.
    pub fn requested(&self) -> Option<i32> {
        match STOP_FLAG.load(std::sync::atomic::Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }
}

impl Drop for StopOnSignals {
    fn drop(&mut self) {
        for (sig, old) in &self.saved {
            // SAFETY: restoring the action read in `install`.
            unsafe { libc::sigaction(*sig, old, std::ptr::null_mut()) };
        }
    }
}
