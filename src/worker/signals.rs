//! Signals as data: the worker's processes block SIGTERM, SIGINT and SIGHUP and collect them with
//! `sigtimedwait`, so no handler ever runs in the middle of PHP code or a broker call, and a PHP
//! handler that sleeps is not cut short by a shutdown request.

use std::time::Duration;

use crate::broker::stop;

pub use crate::broker::stop::{signal_name as name, STOP_SIGNALS};

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

extern "C" fn raise_stop(sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    stop::request(sig);
}

/// While alive, the given signals only raise the stop token's flag, so a long-running loop
/// (scheduler, consumer) stops at its next tick; dropping it restores what was there. The caller
/// leaves out signals the application handles itself.
pub struct StopOnSignals {
    saved: Vec<(i32, libc::sigaction)>,
}

impl StopOnSignals {
    pub fn install(signals: &[i32]) -> StopOnSignals {
        stop::reset();
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
                new.sa_sigaction = raise_stop as *const () as usize;
                libc::sigemptyset(&mut new.sa_mask);
                new.sa_flags = libc::SA_RESTART;
                if libc::sigaction(sig, &new, std::ptr::null_mut()) == 0 {
                    saved.push((sig, old));
                }
            }
        }
        StopOnSignals { saved }
    }
}

impl Drop for StopOnSignals {
    fn drop(&mut self) {
        for (sig, old) in &self.saved {
            // SAFETY: restoring the action read in `install`.
            unsafe { libc::sigaction(*sig, old, std::ptr::null_mut()) };
        }
        // The loop is over: code that runs after it (publishing, say) is not cut short.
        stop::reset();
    }
}
