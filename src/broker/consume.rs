//! The consume loop every long-running process shares (worker child, Scheduler, Consumer): open
//! a subscription, hand each delivery to the host, open it again after a cut, back off while the
//! broker refuses, and stop as soon as the stop token says so, whatever the state.
//!
//! What is particular to a host (running PHP signal handlers, batching acks, recycling) comes in
//! through [`Host`]; this file knows nothing of PHP or of worker processes.

use std::time::{Duration, Instant};

use lapin::message::Delivery;

use super::current::with_session;
use super::error::{BrokerError, ErrorKind};
use super::stop::{self, CutWaitsShort};
use super::subscription::{self, Subscription};
use crate::log;

/// How long a wait for a delivery lasts before the loop looks at the stop token and ticks.
pub const TICK: Duration = Duration::from_millis(100);

/// What the loop does after a delivery.
pub enum After<L> {
    Next,
    /// The channel or connection failed: open the subscription anew.
    Reopen,
    /// Leave the loop with this, the subscription left as it is.
    Leave(L),
}

/// How the loop ended.
pub enum Finished<L> {
    /// A stop was asked (the signal).
    Stopped(i32),
    /// The host left.
    Left(L),
    /// Opening failed the first time and the spec asked for that to be the caller's error.
    Failed(BrokerError),
}

pub trait Host {
    type Left;
    /// Runs at least every [`TICK`], also while waiting to reconnect; `Some` leaves at once.
    fn tick(&mut self) -> Option<Self::Left> {
        None
    }
    /// A subscription was opened (the first time, or again after a cut).
    fn opened(&mut self, _sub: &mut Subscription) {}
    /// Nothing is ready and the loop is about to wait: false when the subscription broke.
    fn idle(&mut self, _sub: &mut Subscription) -> bool {
        true
    }
    /// How long the loop then waits for a delivery before it looks again (ticks, a stop, `idle`).
    fn patience(&self) -> Duration {
        TICK
    }
    fn deliver(&mut self, sub: &mut Subscription, d: Delivery) -> After<Self::Left>;
    /// A stop was asked: last words on the open subscription before it closes.
    fn stopping(&mut self, _sub: &mut Subscription) {}
}

pub struct Spec<'a> {
    /// "worker", "scheduler" or "consumer", for the log.
    pub what: &'a str,
    pub subscription: subscription::Spec<'a>,
    /// A declaration the broker refuses the first time (the caller's setup is wrong: this user
    /// may not use it) ends the loop instead of being retried. A declaration that clashes with
    /// what exists ([`ErrorKind::stops_process`]) always ends it. Connection failures and refused
    /// logins are always retried.
    pub first_open_fails: bool,
}

/// Waits before opening again: promptly (1 s) after a failure that may pass by itself, with
/// capped exponential back-off while the broker refuses (credentials, vhost, access).
#[derive(Debug)]
pub struct Backoff {
    refused: Duration,
}

pub const RETRY: Duration = Duration::from_secs(1);
pub const REFUSED_MAX: Duration = Duration::from_secs(30);

impl Default for Backoff {
    fn default() -> Self {
        Backoff { refused: RETRY }
    }
}

impl Backoff {
    /// The wait after `e`.
    pub fn after(&mut self, e: &BrokerError) -> Duration {
        if e.is_recoverable() {
            self.refused = RETRY;
            return RETRY;
        }
        let d = self.refused;
        self.refused = (d * 2).min(REFUSED_MAX);
        d
    }

    pub fn reset(&mut self) {
        self.refused = RETRY;
    }
}

/// Waits `d` in ticks; `Err` with how to end when a stop is asked or the host leaves.
fn pause<H: Host>(d: Duration, host: &mut H) -> Result<(), Finished<H::Left>> {
    let deadline = Instant::now() + d;
    loop {
        if let Some(sig) = stop::requested() {
            return Err(Finished::Stopped(sig));
        }
        if let Some(l) = host.tick() {
            return Err(Finished::Left(l));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        std::thread::sleep(TICK.min(deadline - now));
    }
}

fn drop_connection() {
    let _ = with_session(|s| {
        s.disconnect();
        Ok(())
    });
}

pub fn run<H: Host>(spec: &Spec, host: &mut H) -> Finished<H::Left> {
    // Broker handles dropped below (deliveries, consumers, channels) need the runtime's context.
    let rt = match with_session(|s| Ok(s.handle())) {
        Ok(rt) => rt,
        Err(e) => return Finished::Failed(e),
    };
    let _ctx = rt.enter();
    let mut backoff = Backoff::default();
    let mut first = true;
    loop {
        let mut sub = match open(spec, host, &mut backoff, first) {
            Ok(Some(sub)) => sub,
            Ok(None) => continue,
            Err(end) => return end,
        };
        first = false;
        backoff.reset();
        host.opened(&mut sub);
        let sub = match deliver_all(spec, host, sub) {
            Ok(broken) => broken,
            Err(end) => return end,
        };
        drop(sub);
        drop_connection();
        if let Err(end) = pause(Duration::from_millis(500), host) {
            return end;
        }
    }
}

/// One attempt at opening the subscription: `Ok(None)` after a failure worth another attempt (waited out
/// as `backoff` says), `Err` with how to end.
fn open<H: Host>(
    spec: &Spec,
    host: &mut H,
    backoff: &mut Backoff,
    first: bool,
) -> Result<Option<Subscription>, Finished<H::Left>> {
    pause(Duration::ZERO, host)?;
    let opened = {
        // Connecting and declaring end early when a stop is asked.
        let _cut = CutWaitsShort::begin();
        Subscription::open(&spec.subscription)
    };
    match opened {
        Ok(sub) => Ok(Some(sub)),
        Err(e) if e.kind() == ErrorKind::Stopped => Ok(None),
        Err(e) if e.kind().stops_process() => Err(Finished::Failed(e)),
        Err(e) if first && spec.first_open_fails && e.kind().is_bad_setup() => Err(Finished::Failed(e)),
        Err(e) => {
            let d = backoff.after(&e);
            let queue = spec.subscription.queue;
            log::error(&format!("{} cannot consume '{queue}': {e}; retrying in {} s", spec.what, d.as_secs_f64()));
            pause(d, host)?;
            Ok(None)
        }
    }
}

/// Hands each delivery of `sub` to the host until the subscription breaks (`Ok`, with it, to be opened
/// anew) or the loop ends (`Err`, with how).
fn deliver_all<H: Host>(spec: &Spec, host: &mut H, mut sub: Subscription) -> Result<Subscription, Finished<H::Left>> {
    let queue = spec.subscription.queue;
    loop {
        if let Some(l) = host.tick() {
            return Err(Finished::Left(l));
        }
        if let Some(sig) = stop::requested() {
            log::info(&format!("{} stopping ({})", spec.what, stop::signal_name(sig)));
            host.stopping(&mut sub);
            sub.close("stopping");
            return Err(Finished::Stopped(sig));
        }
        // A delivery already here is taken at once; only an idle loop waits (in ticks).
        let d = match sub.ready() {
            Some(d) => d,
            None => {
                if !host.idle(&mut sub) {
                    return Ok(sub);
                }
                match sub.next(host.patience()) {
                    Ok(Some(d)) => d,
                    Ok(None) => continue,
                    Err(e) => {
                        log::error(&format!("{} lost its consumer on '{queue}': {e}; reconnecting", spec.what));
                        return Ok(sub);
                    }
                }
            }
        };
        match host.deliver(&mut sub, d) {
            After::Next => {}
            After::Reopen => return Ok(sub),
            // Left open: the process is on its way out (PHP unwinding, a recycled child closing
            // its session), and a task whose handler called exit() must stay with this process
            // until it dies, so that its parent sees which task it held.
            After::Leave(l) => return Err(Finished::Left(l)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_back_off_doubling_to_a_cap_and_cuts_retry_promptly() {
        let mut b = Backoff::default();
        let refused = BrokerError::new(ErrorKind::CredentialsRefused, "no");
        let waits: Vec<u64> = (0..7).map(|_| b.after(&refused).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        let lost = BrokerError::new(ErrorKind::ConnectionLost, "reset");
        assert_eq!(b.after(&lost), RETRY);
        assert_eq!(b.after(&refused), RETRY, "a recoverable failure starts the back-off again");
        b.after(&refused);
        b.reset();
        assert_eq!(b.after(&BrokerError::new(ErrorKind::VhostRefused, "no")), RETRY);
    }
}
