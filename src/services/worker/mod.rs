//! The worker's assembly: from a worker's setup and the settings to a running supervisor. It
//! declares what the worker needs before the fork, maps the memory its processes share, forks the
//! metrics process, then hands the children to the supervisor (`crate::worker::supervisor`), each
//! running the task loop (`crate::worker::child`) with the handler it was given.

mod before_fork;
mod error;
mod metrics_process;

use std::time::Duration;

pub use error::StartError;

use crate::broker::current;
use crate::config::Settings;
use crate::outcome::Policy;
use crate::worker::child::{self, Handler, Limits, Stopped};
use crate::worker::shared::Shared;
use crate::worker::supervisor::{self, ChildEnd};
use metrics_process::MetricsProcess;

/// What a worker was asked to be.
#[derive(Debug, Clone)]
pub struct Setup {
    pub topic: String,
    pub processes: usize,
    pub policy: Policy,
    pub limits: Limits,
    /// After a stop request, how long children may finish before they are killed; None waits.
    pub grace: Option<Duration>,
    /// Where `/metrics` is served; None: the setting `ebats.metrics_address` (off when empty).
    pub metrics: Option<std::net::SocketAddr>,
    /// Seconds between monitor lines; None: the setting `ebats.monitor_interval`.
    pub monitor: Option<u64>,
    /// The stop signals no application handler takes: they end the waits for the broker before the fork.
    pub stop_signals: Vec<i32>,
}

/// Which process `run` returned in.
#[derive(Debug, PartialEq, Eq)]
pub enum Returned {
    /// The parent, after its children ended (or after a stop asked before any started).
    Parent,
    /// A child whose handler called `exit()`: it goes back to PHP, which unwinds it.
    ChildForPhp,
}

/// Runs the worker: forks the children and supervises them until SIGTERM or SIGINT. Returns in the
/// parent once every child ended, and in a child whose handler aborted.
pub fn run(setup: &Setup, settings: &Settings, handler: &mut dyn Handler) -> Result<Returned, StartError> {
    let monitor = match setup.monitor {
        Some(s) => s,
        None => crate::config::monitor_interval(&settings.monitor_interval).map_err(StartError::setup)?,
    };
    if before_fork::declare(settings, &setup.topic, &setup.stop_signals)? {
        return Ok(Returned::Parent); // asked to stop while waiting for the broker: no child was started
    }
    // The parent must hold no connection and no runtime threads when it forks.
    current::shutdown();
    let opts = supervisor::Options {
        processes: setup.processes,
        grace: setup.grace,
        watch_time_limits: setup.limits.time_limit_secs > 0,
        monitor: (monitor > 0).then(|| Duration::from_secs(monitor)),
    };
    let shared =
        Shared::new(opts.processes).map_err(|e| StartError::setup(format!("cannot map shared memory: {e}")))?;
    let metrics = MetricsProcess::start_if_asked(
        setup.metrics,
        settings,
        &shared,
        &setup.topic,
        opts.processes,
        &setup.limits.flow,
    )?;
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // Both the parent (after its children stopped) and a child leaving for PHP (after `exit()` in
    // a handler) come back here and return to the script.
    supervisor::run(&opts, &shared, |slot| {
        if let Some(m) = &metrics {
            m.close_in_child();
        }
        run_child(setup, settings, &shared, slot, handler)
    });
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != parent {
        return Ok(Returned::ChildForPhp); // a child that exits leaves inside the supervisor
    }
    if let Some(m) = metrics {
        m.end();
    }
    Ok(Returned::Parent)
}

/// One child's life: the task loop, then how the process leaves.
fn run_child(setup: &Setup, settings: &Settings, shared: &Shared, slot: usize, handler: &mut dyn Handler) -> ChildEnd {
    let tracking = child::Tracking { shared, index: slot };
    let end = match child::run(settings, &setup.topic, &setup.policy, &setup.limits, &tracking, handler) {
        Stopped::Asked => ChildEnd::Exit(0),
        Stopped::Recycle(why) => {
            crate::log::info(&format!("worker child (slot {slot}) recycling: {why}"));
            ChildEnd::Exit(0)
        }
        Stopped::Aborted => return ChildEnd::ReturnToPhp,
    };
    current::shutdown();
    end
}
