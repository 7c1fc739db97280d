//! The worker's parent process: forks the children, replaces those that end, recycles them on
//! SIGHUP, and on SIGTERM/SIGINT asks them all to finish and waits. It holds no broker connection
//! and no runtime threads, so forking is safe.
//!
//! Its loop is a round of named steps over one state (`Supervisor`): start the children that are
//! due, reap those that ended, end the grace period, enforce the time limits, recycle the next
//! child, log the monitor lines, then wait for a signal and handle it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::child_end::{self, End};
use super::shared::{GivenBack, Shared};
use super::signals;
use crate::log;
use crate::metrics::monitor::Monitor;

#[derive(Debug, Clone)]
pub struct Options {
    pub processes: usize,
    /// After a stop request, how long children may finish their task before SIGKILL; None waits.
    pub grace: Option<Duration>,
    /// Set when tasks have a time limit: the parent checks the children's tasks against it.
    pub watch_time_limits: bool,
    /// Log a monitor line per child this often (None: never).
    pub monitor: Option<Duration>,
}

/// What the code run in a child asks for when it is done.
pub enum ChildEnd {
    /// Leave the process with this code at once.
    Exit(i32),
    /// Go back to PHP (a pending `exit()` must unwind through the engine).
    ReturnToPhp,
}

/// The signals the parent takes as data between its steps.
const WATCHED: [i32; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGCHLD];

struct Child {
    slot: usize,
    started: Instant,
}

/// Where a fork left the process that made it.
enum Forked {
    /// In the parent: go on supervising.
    Parent,
    /// In a child whose code asked to go back to PHP: `run` returns there.
    ChildForPhp,
}

/// The parent's state between two rounds of its loop.
struct Supervisor<'a> {
    opts: &'a Options,
    shared: &'a Shared,
    children: HashMap<libc::pid_t, Child>,
    /// Slots to start a child in, and from when.
    due: Vec<(usize, Instant)>,
    /// Per slot: children that ended unclean right after their start, in a row.
    fast_failures: Vec<u32>,
    /// Since when the children are asked to finish (a stop signal came).
    stopping: Option<Instant>,
    /// After SIGHUP: the children still to recycle, one at a time.
    recycle: VecDeque<libc::pid_t>,
    /// The child being recycled now.
    recycling: Option<libc::pid_t>,
    monitor: Option<Monitor>,
}

/// Forks and supervises; `child` runs in each child with its slot number. Returns in the parent
/// once every child ended, and in a child that must go back to PHP.
pub fn run(opts: &Options, shared: &Shared, mut child: impl FnMut(usize) -> ChildEnd) {
    let old_mask = signals::block(&WATCHED);
    let mut s = Supervisor::new(opts, shared);
    loop {
        if let Forked::ChildForPhp = s.start_due(&mut child) {
            return;
        }
        s.reap();
        if s.stopping.is_some() && s.children.is_empty() {
            break;
        }
        s.end_grace();
        s.enforce_time_limits();
        s.recycle_next();
        s.tick_monitor();
        let wait = s.wait();
        if let Some(sig) = signals::take(&WATCHED, wait) {
            s.on_signal(sig);
        }
    }
    signals::restore(&old_mask);
    log::info("all worker children ended");
}

impl<'a> Supervisor<'a> {
    fn new(opts: &'a Options, shared: &'a Shared) -> Supervisor<'a> {
        Supervisor {
            opts,
            shared,
            children: HashMap::new(),
            due: (0..opts.processes).map(|s| (s, Instant::now())).collect(),
            fast_failures: vec![0; opts.processes],
            stopping: None,
            recycle: VecDeque::new(),
            recycling: None,
            monitor: opts.monitor.map(Monitor::new),
        }
    }

    /// Starts the children that are due (none while stopping).
    fn start_due(&mut self, child: &mut impl FnMut(usize) -> ChildEnd) -> Forked {
        let now = Instant::now();
        let (ready, later): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.due).into_iter().partition(|(_, at)| *at <= now);
        self.due = later;
        if self.stopping.is_some() {
            return Forked::Parent;
        }
        for (slot, _) in ready {
            // SAFETY: the parent is single-threaded here (no runtime, no connection), so the
            // child starts from a consistent copy.
            match unsafe { libc::fork() } {
                0 => return in_child(slot, child),
                -1 => {
                    log::error(&format!("fork failed: {}", std::io::Error::last_os_error()));
                    self.due.push((slot, now + Duration::from_secs(1)));
                }
                pid => {
                    log::info(&format!("worker child {pid} started (slot {slot})"));
                    self.shared.stats().child_started(slot, pid);
                    self.children.insert(pid, Child { slot, started: now });
                }
            }
        }
        Forked::Parent
    }

    /// Reaps the children that ended and schedules their replacements.
    fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: plain waitpid on our own children.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            if let Some(c) = self.children.remove(&pid) {
                self.ended(pid, c, status);
            }
        }
    }

    /// A child `pid` ended with `status`: what it held is marked, its replacement made due.
    fn ended(&mut self, pid: libc::pid_t, c: Child, status: i32) {
        self.shared.stats().child_exited(c.slot, status);
        let end = End::read(status);
        let mut why = end.describe();
        // Died holding a task (whatever the exit code): the broker gives it back, and the
        // child that receives it counts this death against it.
        let held = self.shared.running(c.slot);
        if let Some(task_id) = &held {
            self.shared.mark(task_id, GivenBack::Crashed);
            self.shared.end(c.slot);
            why = format!("{why} while running task {task_id}");
        }
        let lived = c.started.elapsed();
        if self.recycling == Some(pid) {
            self.recycling = None;
        }
        self.recycle.retain(|p| *p != pid);
        if self.stopping.is_some() {
            log::info(&format!("worker child {pid} {why} (stopping)"));
            return;
        }
        let (delay, failures) = child_end::restart_delay(end, held.is_some(), lived, self.fast_failures[c.slot]);
        self.fast_failures[c.slot] = failures;
        if end.clean() {
            log::info(&format!("worker child {pid} {why} after {:.1} s; replacing it", lived.as_secs_f64()));
        } else {
            log::error(&format!(
                "worker child {pid} {why} after {:.1} s; replacing it in {:.2} s",
                lived.as_secs_f64(),
                delay.as_secs_f64()
            ));
        }
        self.due.push((c.slot, Instant::now() + delay));
    }

    /// While stopping: once the grace period is over, the children still running are killed.
    fn end_grace(&mut self) {
        let Some(since) = self.stopping else { return };
        if self.opts.grace.is_some_and(|g| since.elapsed() > g) {
            log::error("grace period over: killing the remaining worker children");
            self.kill_all(libc::SIGKILL);
            self.stopping = Some(Instant::now() + Duration::from_secs(3600));
        }
    }

    /// A child still running its task past the limit is killed; the task comes back from the
    /// broker and its next worker counts the run as a failed attempt.
    fn enforce_time_limits(&self) {
        if !self.opts.watch_time_limits {
            return;
        }
        for (pid, c) in &self.children {
            if let Some((task_id, limit)) = self.shared.overdue(c.slot) {
                log::error(&format!(
                    "worker child {pid} ran task {task_id} past its time limit of {} s: killing it",
                    limit / 1000
                ));
                self.shared.stats().child_timed_out(c.slot);
                self.shared.mark(&task_id, GivenBack::TimedOut);
                self.shared.end(c.slot);
                // SAFETY: signalling our own child.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
        }
    }

    /// Rolling recycle after SIGHUP: one child at a time, the next once its replacement runs.
    fn recycle_next(&mut self) {
        if self.stopping.is_some() || self.recycling.is_some() || !self.due.is_empty() {
            return;
        }
        if let Some(pid) = self.recycle.pop_front() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            self.recycling = Some(pid);
        }
    }

    fn tick_monitor(&mut self) {
        if let Some(m) = self.monitor.as_mut().filter(|_| self.stopping.is_none()) {
            m.tick(self.shared.stats());
        }
    }

    /// How long to wait for a signal: briefly while children are due, up to the next monitor line.
    fn wait(&self) -> Duration {
        let wait = if self.due.is_empty() { Duration::from_millis(500) } else { Duration::from_millis(50) };
        match &self.monitor {
            Some(m) => wait.min(m.due_in().max(Duration::from_millis(1))),
            None => wait,
        }
    }

    /// SIGTERM/SIGINT: the children are asked to finish (a second one kills them); SIGHUP: recycle
    /// them one by one. SIGCHLD only wakes the loop.
    fn on_signal(&mut self, sig: i32) {
        match sig {
            libc::SIGTERM | libc::SIGINT if self.stopping.is_none() => {
                log::info(&format!(
                    "{} received: asking {} worker children to finish",
                    signals::name(sig),
                    self.children.len()
                ));
                self.stopping = Some(Instant::now());
                self.due.clear();
                self.kill_all(libc::SIGTERM);
            }
            libc::SIGTERM | libc::SIGINT => {
                log::info("second stop signal: killing the worker children");
                self.kill_all(libc::SIGKILL);
            }
            libc::SIGHUP if self.stopping.is_none() => {
                log::info("SIGHUP received: recycling the worker children one by one");
                self.recycle = self.children.keys().copied().collect();
            }
            _ => {}
        }
    }

    fn kill_all(&self, sig: i32) {
        for pid in self.children.keys() {
            // SAFETY: signalling our own children.
            unsafe { libc::kill(*pid, sig) };
        }
    }
}

/// In a fresh child: run its code, then leave the process or go back to PHP.
fn in_child(slot: usize, child: &mut impl FnMut(usize) -> ChildEnd) -> Forked {
    signals::unblock(&[libc::SIGCHLD]);
    // TERM/INT/HUP stay blocked: the child collects them between tasks.
    match child(slot) {
        ChildEnd::Exit(code) => {
            // SAFETY: ends this child without running the parent's atexit handlers or PHP's
            // shutdown a second time.
            unsafe { libc::_exit(code) }
        }
        ChildEnd::ReturnToPhp => Forked::ChildForPhp,
    }
}
