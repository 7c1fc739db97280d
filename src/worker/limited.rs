//! A worker child under concurrency limits: before a task runs it takes the permits its limits
//! need (`flow::concurrency::needs`, taken on the broker through `broker::permit`), waits in place
//! for a topic's permit, or has the task held back for a name's or a key's (`worker::held`); after
//! the task it gives its key permits back. Topic and name permits are kept across consecutive tasks
//! that need them (a limit that does not bind costs nothing per task) and given back when the child
//! is idle, when the next task does not need them, or after a while (others get their turn).
//!
//! A permit of a process that dies (kill -9, exit() in a handler, the parent killing it at its time
//! limit) goes with its connection: the broker frees it.

use std::time::{Duration, Instant};

use crate::broker::names::Names;
use crate::broker::permit::{Permit, Permits};
use crate::broker::{stop, BrokerError};
use crate::config::Settings;
use crate::flow::concurrency::{self, Need, Refused};
use crate::flow::limits::LimitSet;
use crate::log;
use crate::wire::TaskMsg;

/// What to do with a task, its permits considered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Run it: its permits are held. `waited`: it waited in place for one.
    Start { waited: bool },
    /// Publish it again to come back after this wait (a name or key limit is full), naming the limit.
    HoldBack { wait: Duration, limit: String },
    /// A stop was asked, or the topic paused, while it waited in place: give it back unstarted.
    GiveBack,
}

struct Kept {
    counter: String,
    permit: Permit,
    since: Instant,
}

/// The permits of a worker child.
#[derive(Default)]
pub struct Gate {
    permits: Permits,
    /// Topic and name permits kept between tasks.
    kept: Vec<Kept>,
    /// Key permits of the task running now.
    running: Vec<Permit>,
    /// When the last task ended (`None`: one runs, or none ran yet).
    ended: Option<Instant>,
}

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    /// Takes the permits `task` needs under `limits`. Waiting in place ends early (`GiveBack`) when
    /// a stop is asked or `interrupted` says so (its topic paused). On an error the permits taken
    /// for this task are given back and the task is to be delivered again.
    pub fn admit(
        &mut self,
        settings: &Settings,
        names: &Names,
        limits: &LimitSet,
        task: &TaskMsg,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Admit, BrokerError> {
        self.ended = None;
        let needs = concurrency::needs(&limits.for_task(&task.name, &task.params));
        self.give_back_kept(settings, |k| needs.iter().any(|n| n.kept && n.counter == k.counter), false);
        let admitted = self.take(settings, names, &task.topic, &needs, interrupted);
        if !matches!(admitted, Ok(Admit::Start { .. })) {
            self.finished(settings);
        }
        admitted
    }

    fn take(
        &mut self,
        settings: &Settings,
        names: &Names,
        topic: &str,
        needs: &[Need],
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Admit, BrokerError> {
        let mut waited = false;
        for need in needs {
            if need.kept && self.kept.iter().any(|k| k.counter == need.counter && self.permits.holds(&k.permit)) {
                continue;
            }
            let mut tries = 0;
            let permit = loop {
                if let Some(p) =
                    self.permits.acquire(settings, need.slots, |i| names.permit(topic, &need.counter, i))?
                {
                    break p;
                }
                match concurrency::when_refused(need.topic_wide, tries) {
                    Refused::HoldBack(wait) => return Ok(Admit::HoldBack { wait, limit: need.counter.clone() }),
                    Refused::WaitInPlace(wait) => {
                        waited = true;
                        if stop::pause(wait, wait, interrupted) {
                            return Ok(Admit::GiveBack);
                        }
                        tries += 1;
                    }
                }
            };
            match need.kept {
                true => {
                    self.kept.retain(|k| k.counter != need.counter);
                    self.kept.push(Kept { counter: need.counter.clone(), permit, since: Instant::now() })
                }
                false => self.running.push(permit),
            }
        }
        Ok(Admit::Start { waited })
    }

    /// Whether every permit the task about to start was given is still held: a permit lives with the
    /// connection it was taken on, which may have died while the task waited for its rate (a node
    /// killed, a cut). A task whose permits are gone must not start: the broker already gave its
    /// delivery, which came on that connection, to another process, which may hold them now.
    pub fn holds_all(&self) -> bool {
        self.running.iter().chain(self.kept.iter().map(|k| &k.permit)).all(|p| self.permits.holds(p))
    }

    /// The task ended (in any way its process lives through): its key permits go back, and kept
    /// permits held for long.
    pub fn finished(&mut self, settings: &Settings) {
        for p in std::mem::take(&mut self.running) {
            self.release(settings, p);
        }
        self.give_back_kept(settings, |_| true, false);
        self.ended = Some(Instant::now());
    }

    /// Nothing to run: kept permits go back once the child has been idle a moment.
    pub fn idle(&mut self, settings: &Settings) {
        if self.kept.is_empty() {
            return;
        }
        let idle = self.ended.map(|e| e.elapsed());
        self.give_back_kept(settings, |_| true, idle.is_some());
    }

    /// Gives back the kept permits `needed` says are not needed, those held long and, when `idle`
    /// (nothing to run since the last task ended), all once that has lasted long enough.
    fn give_back_kept(&mut self, settings: &Settings, needed: impl Fn(&Kept) -> bool, idle: bool) {
        let idle_for = self.ended.filter(|_| idle).map(|e| e.elapsed());
        let mut i = 0;
        while i < self.kept.len() {
            let k = &self.kept[i];
            let lost = !self.permits.holds(&k.permit);
            if lost || concurrency::give_back_kept(needed(k), idle_for, k.since.elapsed()) {
                let k = self.kept.swap_remove(i);
                if !lost {
                    self.release(settings, k.permit);
                }
            } else {
                i += 1;
            }
        }
    }

    /// Gives a permit back, trying twice; a permit that cannot be given back would be held until
    /// the connection closes, so the connection is closed (its unacked tasks come back).
    fn release(&mut self, settings: &Settings, p: Permit) {
        let Err(e) = self.permits.release(settings, p.clone()).or_else(|_| self.permits.release(settings, p.clone()))
        else {
            return;
        };
        log::error(&format!("cannot give back the permit '{}': {e}; reconnecting to free it", p.queue()));
        let _ = crate::broker::current::with_session(|s| {
            s.disconnect();
            Ok(())
        });
    }
}
