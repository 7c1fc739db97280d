//! The worker's metrics process as its parent holds it: the listening socket's descriptor and the
//! process's id, from its fork (see `crate::metrics::serve::fork_worker_process`) to its reaping.

use std::os::fd::RawFd;

use super::StartError;
use crate::config::Settings;
use crate::worker::shared::Shared;

pub struct MetricsProcess {
    fd: RawFd,
    pid: libc::pid_t,
}

impl MetricsProcess {
    /// Binds the address given, else the setting's, and forks the process serving it; None when
    /// neither is set. Call it while the parent is single-threaded, before the first child.
    pub fn start_if_asked(
        given: Option<std::net::SocketAddr>,
        settings: &Settings,
        shared: &Shared,
        topic: &str,
        expected: usize,
        code_limits: &[crate::flow::limits::Limit],
    ) -> Result<Option<MetricsProcess>, StartError> {
        let Some(addr) = crate::metrics::address(given, &settings.metrics_address).map_err(StartError::setup)? else {
            return Ok(None);
        };
        let listener = crate::metrics::bind(addr).map_err(StartError::setup)?;
        let fd = std::os::fd::IntoRawFd::into_raw_fd(listener);
        let in_hand = |slot: usize| shared.in_hand(slot);
        let forked = crate::metrics::serve::fork_worker_process(
            fd,
            shared.stats(),
            &in_hand,
            settings,
            topic,
            expected,
            code_limits,
        );
        let pid = forked.map_err(|e| {
            // SAFETY: closing the listening socket this process owns.
            unsafe { libc::close(fd) };
            StartError::setup(format!("cannot start the metrics process: {e}"))
        })?;
        crate::log::info(&format!("metrics on http://{addr}/metrics (process {pid})"));
        Ok(Some(MetricsProcess { fd, pid }))
    }

    /// In a worker child: closes its copy of the listening socket, which belongs to the metrics process.
    pub fn close_in_child(&self) {
        // SAFETY: the child's copy of the descriptor is closed once, here, and never used.
        unsafe { libc::close(self.fd) };
    }

    /// In the parent, once its children ended: ends the metrics process, reaps it, closes the socket.
    pub fn end(self) {
        // SAFETY: the parent signals and reaps its own child, and closes a descriptor it owns.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            libc::close(self.fd);
        }
    }
}
