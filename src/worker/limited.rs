//! A worker child under concurrency limits: before a task runs it takes the permits its limits
//! need (`flow::concurrency::needs`, taken on the broker through `broker::permit`), waits in place
//! for a topic's permit (in its waiting line, `broker::permit_line`), or has the task held back for
//! a name's or a key's (`worker::held`); after the task it gives its key permits back. Topic and name
//! permits are kept across consecutive tasks that need them (a limit that does not bind costs
//! nothing per task) and given back when the child is idle or the next task does not need them; a
//! topic's permit held a second is handed over to a child waiting for it (woken through the line,
//! this child standing aside a moment), a name's permit held a second is given back.
//!
//! A permit of a process that dies (kill -9, exit() in a handler, the parent killing it at its time
//! limit) goes with its connection: the broker frees it.

use std::time::{Duration, Instant};

use crate::broker::names::Names;
use crate::broker::permit::{Permit, Permits};
use crate::broker::{stop, BrokerError};
use crate::config::Settings;
use crate::flow::concurrency::{self, GiveBack, Need, Refused};
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
    /// The waiting line of a topic's permit (`Names::permit_line`); a name's permit has none.
    line: Option<String>,
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
    /// The counter whose permit this child last handed over to a waiting one, and when.
    handed_over: Option<(String, Instant)>,
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
        self.permits.leave_line(settings);
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
            let line = need.topic_wide.then(|| names.permit_line(topic, &need.counter));
            // Just handed over to a waiting child: that one asks first.
            let mut aside = self
                .handed_over
                .take()
                .filter(|(c, _)| line.is_some() && *c == need.counter)
                .and_then(|(_, at)| concurrency::STAND_ASIDE.checked_sub(at.elapsed()))
                .filter(|left| !left.is_zero());
            let mut tries = 0;
            let permit = loop {
                if aside.is_none() {
                    if let Some(p) =
                        self.permits.acquire(settings, need.slots, |i| names.permit(topic, &need.counter, i))?
                    {
                        break p;
                    }
                }
                let refused = match aside.take() {
                    Some(wait) => Refused::WaitInPlace(wait),
                    None => concurrency::when_refused(need.topic_wide, tries),
                };
                match refused {
                    Refused::HoldBack(wait) => return Ok(Admit::HoldBack { wait, limit: need.counter.clone() }),
                    Refused::WaitInPlace(wait) => {
                        waited = true;
                        let stopped = match &line {
                            Some(line) => self.permits.wait_turn(settings, line, wait, interrupted),
                            None => stop::pause(wait, wait, interrupted),
                        };
                        if stopped {
                            return Ok(Admit::GiveBack);
                        }
                        tries += 1;
                    }
                }
            };
            match need.kept {
                true => {
                    self.kept.retain(|k| k.counter != need.counter);
                    let counter = need.counter.clone();
                    self.kept.push(Kept { counter, permit, since: Instant::now(), line })
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

    /// Gives back the kept permits `needed` says are not needed, those held long that others wait for
    /// and, when `idle` (nothing to run since the last task ended), all once that has lasted long
    /// enough. A topic's permit given back wakes one of the children waiting in place for it.
    fn give_back_kept(&mut self, settings: &Settings, needed: impl Fn(&Kept) -> bool, idle: bool) {
        let idle_for = self.ended.filter(|_| idle).map(|e| e.elapsed());
        let mut i = 0;
        while i < self.kept.len() {
            let k = &self.kept[i];
            if !self.permits.holds(&k.permit) {
                self.kept.swap_remove(i);
                continue;
            }
            let why = concurrency::give_back_kept(needed(k), idle_for, k.since.elapsed());
            let back = match why {
                None => {
                    i += 1;
                    continue;
                }
                Some(GiveBack::HeldLong) => {
                    let waiting = k.line.as_deref().map(|l| self.permits.waiting(settings, l).map_err(|_| ()));
                    concurrency::hand_over(waiting)
                }
                Some(GiveBack::Unneeded | GiveBack::Idle) => true,
            };
            if !back {
                // Held long, and nobody waits for it: kept, and asked about again after as long.
                self.kept[i].since = Instant::now();
                i += 1;
                continue;
            }
            let k = self.kept.swap_remove(i);
            self.release(settings, k.permit);
            if let Some(line) = &k.line {
                self.permits.wake(settings, line);
                if why == Some(GiveBack::HeldLong) {
                    self.handed_over = Some((k.counter, Instant::now()));
                }
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
