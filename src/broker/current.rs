//! The process's one session, created on first use and rebuilt in a forked child.

use parking_lot::Mutex;

use super::error::{BrokerError, ErrorKind};
use super::session::Session;

static SESSION: Mutex<Option<Session>> = Mutex::new(None);

/// Runs `f` with this process's session.
///
/// After a fork the inherited session belongs to threads that do not exist in the child: using it
/// hangs and dropping it hangs, so the child forgets it (leaking its memory once) and builds its own.
/// Re-entrant calls (a PHP callback run from inside `f` calling back in) get an error, not a deadlock.
pub fn with_session<R>(f: impl FnOnce(&mut Session) -> Result<R, BrokerError>) -> Result<R, BrokerError> {
    let mut guard = SESSION.try_lock().ok_or_else(|| {
        BrokerError::new(ErrorKind::Busy, "the broker session is busy (called from inside a running broker call)")
    })?;
    let pid = std::process::id();
    if guard.as_ref().is_some_and(|s| s.pid() != pid) {
        std::mem::forget(guard.take());
    }
    if guard.is_none() {
        *guard = Some(Session::new()?);
    }
    f(guard.as_mut().expect("session set above"))
}

/// Closes the connection and stops the runtime's threads, so that the process can fork cleanly.
pub fn shutdown() {
    let mut guard = SESSION.lock();
    if let Some(mut s) = guard.take() {
        if s.pid() == std::process::id() {
            s.close();
            drop(s);
        } else {
            std::mem::forget(s);
        }
    }
}

/// Deferred publishes of `lot` of this process still waiting for their confirm (0 without a session).
pub fn pending_here(lot: super::confirm::Lot) -> usize {
    SESSION
        .try_lock()
        .and_then(|g| g.as_ref().filter(|s| s.pid() == std::process::id()).map(|s| s.pending(lot)))
        .unwrap_or(0)
}
