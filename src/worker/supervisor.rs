//! The worker's parent process: forks the children, replaces those that end, recycles them on
//! SIGHUP, and on SIGTERM/SIGINT asks them all to finish and waits. It holds no broker connection
//! and no runtime threads, so forking is safe.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::shared::{GivenBack, Shared};
use super::signals;
use crate::log;

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

struct Child {
    slot: usize,
    started: Instant,
}

fn describe(status: i32) -> (String, bool) {
    if libc::WIFEXITED(status) {
        let code = libc::WEXITSTATUS(status);
        (format!("exited with code {code}"), code == 0)
    } else if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        (format!("was killed by {} ({sig})", signals::name(sig)), false)
    } else {
        (format!("ended (status {status})"), false)
    }
}

/// Forks and supervises; `child` runs in each child with its slot number. Returns in the parent
/// once every child ended, and in a child that must go back to PHP.
pub fn run(opts: &Options, shared: &Shared, mut child: impl FnMut(usize) -> ChildEnd) {
    let watched = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGCHLD];
    let old_mask = signals::block(&watched);
    let mut children: HashMap<libc::pid_t, Child> = HashMap::new();
    let mut due: Vec<(usize, Instant)> = (0..opts.processes).map(|s| (s, Instant::now())).collect();
    let mut fast_failures = vec![0u32; opts.processes];
    let mut stopping: Option<Instant> = None;
    let mut recycle: VecDeque<libc::pid_t> = VecDeque::new();
    let mut recycling: Option<libc::pid_t> = None;
    let mut monitor = opts.monitor.map(crate::metrics::monitor::Monitor::new);

    loop {
        // Start the children that are due.
        let now = Instant::now();
        let (ready, later): (Vec<_>, Vec<_>) = due.into_iter().partition(|(_, at)| *at <= now);
        due = later;
        if stopping.is_none() {
            for (slot, _) in ready {
                // SAFETY: the parent is single-threaded here (no runtime, no connection), so the
                // child starts from a consistent copy.
                match unsafe { libc::fork() } {
                    0 => {
                        signals::unblock(&[libc::SIGCHLD]);
                        // TERM/INT/HUP stay blocked: the child collects them between tasks.
                        return match child(slot) {
                            ChildEnd::Exit(code) => {
                                // SAFETY: ends this child without running the parent's atexit
                                // handlers or PHP's shutdown a second time.
                                unsafe { libc::_exit(code) }
                            }
                            ChildEnd::ReturnToPhp => {}
                        };
                    }
                    -1 => {
                        log::error(&format!("fork failed: {}", std::io::Error::last_os_error()));
                        due.push((slot, now + Duration::from_secs(1)));
                    }
                    pid => {
                        log::info(&format!("worker child {pid} started (slot {slot})"));
                        shared.stats().child_started(slot, pid);
                        children.insert(pid, Child { slot, started: now });
                    }
                }
            }
        }

        // Reap the children that ended.
        loop {
            let mut status = 0;
            // SAFETY: plain waitpid on our own children.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            let Some(c) = children.remove(&pid) else {
                continue;
            };
            shared.stats().child_exited(c.slot, status);
            let (mut why, clean) = describe(status);
            // Died holding a task (whatever the exit code): the broker gives it back, and the
            // child that receives it counts this death against it.
            let held = shared.running(c.slot);
            if let Some(task_id) = &held {
                shared.mark(task_id, GivenBack::Crashed);
                shared.end(c.slot);
                why = format!("{why} while running task {task_id}");
            }
            let lived = c.started.elapsed();
            if recycling == Some(pid) {
                recycling = None;
            }
            recycle.retain(|p| *p != pid);
            if stopping.is_some() {
                log::info(&format!("worker child {pid} {why} (stopping)"));
                continue;
            }
            // A child that keeps dying right after start waits longer each time (up to 30 s). A
            // child killed by its task is not at fault: the task's deaths are counted instead.
            let delay = if !clean && held.is_none() && lived < Duration::from_secs(2) {
                fast_failures[c.slot] += 1;
                Duration::from_millis(250u64 << fast_failures[c.slot].min(7)).min(Duration::from_secs(30))
            } else {
                fast_failures[c.slot] = 0;
                Duration::ZERO
            };
            if clean {
                log::info(&format!("worker child {pid} {why} after {:.1} s; replacing it", lived.as_secs_f64()));
            } else {
                log::error(&format!(
                    "worker child {pid} {why} after {:.1} s; replacing it in {:.2} s",
                    lived.as_secs_f64(),
                    delay.as_secs_f64()
                ));
            }
            due.push((c.slot, Instant::now() + delay));
        }

        if let Some(since) = stopping {
            if children.is_empty() {
                break;
            }
            if opts.grace.is_some_and(|g| since.elapsed() > g) {
                log::error("grace period over: killing the remaining worker children");
                kill_all(&children, libc::SIGKILL);
                stopping = Some(Instant::now() + Duration::from_secs(3600));
            }
        }

        // Time limits: a child still running its task past the limit is killed; the task comes
        // back from the broker and its next worker counts the run as a failed attempt.
        if opts.watch_time_limits {
            for (pid, c) in &children {
                if let Some((task_id, limit)) = shared.overdue(c.slot) {
                    log::error(&format!(
                        "worker child {pid} ran task {task_id} past its time limit of {} s: killing it",
                        limit / 1000
                    ));
                    shared.stats().child_timed_out(c.slot);
                    shared.mark(&task_id, GivenBack::TimedOut);
                    shared.end(c.slot);
                    // SAFETY: signalling our own child.
                    unsafe { libc::kill(*pid, libc::SIGKILL) };
                }
            }
        }

        // Rolling recycle after SIGHUP: one child at a time, the next once its replacement runs.
        if stopping.is_none() && recycling.is_none() && due.is_empty() {
            if let Some(pid) = recycle.pop_front() {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(pid, libc::SIGTERM) };
                recycling = Some(pid);
            }
        }

        if let Some(m) = monitor.as_mut().filter(|_| stopping.is_none()) {
            m.tick(shared.stats());
        }

        let mut wait = if due.is_empty() { Duration::from_millis(500) } else { Duration::from_millis(50) };
        if let Some(m) = &monitor {
            wait = wait.min(m.due_in().max(Duration::from_millis(1)));
        }
        match signals::take(&watched, wait) {
            Some(s) if s == libc::SIGTERM || s == libc::SIGINT => {
                if stopping.is_none() {
                    log::info(&format!(
                        "{} received: asking {} worker children to finish",
                        signals::name(s),
                        children.len()
                    ));
                    stopping = Some(Instant::now());
                    due.clear();
                    kill_all(&children, libc::SIGTERM);
                } else {
                    log::info("second stop signal: killing the worker children");
                    kill_all(&children, libc::SIGKILL);
                }
            }
            Some(libc::SIGHUP) if stopping.is_none() => {
                log::info("SIGHUP received: recycling the worker children one by one");
                recycle = children.keys().copied().collect();
            }
            _ => {}
        }
    }
    signals::restore(&old_mask);
    log::info("all worker children ended");
}

fn kill_all(children: &HashMap<libc::pid_t, Child>, sig: i32) {
    for pid in children.keys() {
        // SAFETY: signalling our own children.
        unsafe { libc::kill(*pid, sig) };
    }
}
