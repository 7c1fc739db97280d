//! Running a long-lived consumer of a queue (the Scheduler, the Consumer) in a process whose own
//! language has work between deliveries: its signal handlers, and a way to make the loop leave so
//! it can unwind. That work comes down as a [`Between`]; the loop itself is `broker::consume`.

use lapin::message::Delivery;

use crate::broker::consume::{self, After, Finished, Host};
use crate::broker::subscription::{self, Subscription};
use crate::broker::BrokerError;
use crate::worker::signals::StopOnSignals;

/// What the calling language does while the loop runs (PHP: `src/php/subscriber.rs`).
pub trait Between {
    /// The stop signals the application does not handle itself: while the loop runs they only ask
    /// it to stop.
    fn stop_signals(&self) -> Vec<i32>;
    /// Runs the language's own work between deliveries (PHP's signal handlers); true when the loop
    /// must leave at once so the language can unwind (a handler threw or called `exit()`).
    fn tick(&mut self) -> bool;
}

/// Why a service that runs until stopped did not start or ended with an error.
#[derive(Debug)]
pub enum RunError {
    /// The caller's setup is wrong (a metrics address that cannot be served); nothing was consumed.
    Setup(String),
    /// A broker error the process must stop on (a clash, a refused first declaration).
    Broker(BrokerError),
}

impl From<BrokerError> for RunError {
    fn from(e: BrokerError) -> Self {
        RunError::Broker(e)
    }
}

struct Loop<'a, C, F> {
    between: &'a mut dyn Between,
    check: C,
    on_message: F,
    failed: Option<BrokerError>,
}

impl<C: FnMut() -> Option<BrokerError>, F: FnMut(&mut Subscription, Delivery) -> After<()>> Host for Loop<'_, C, F> {
    type Left = ();

    /// Leaves when `check` gives an error the process must stop on, or when the language must unwind.
    fn tick(&mut self) -> Option<()> {
        if let Some(e) = (self.check)() {
            self.failed = Some(e);
            return Some(());
        }
        self.between.tick().then_some(())
    }

    fn deliver(&mut self, sub: &mut Subscription, d: Delivery) -> After<()> {
        (self.on_message)(sub, d)
    }
}

/// Consumes until stopped, leaving with an error as soon as `check` (asked at every tick) gives
/// one: an error the process must stop on, met elsewhere (a thread of its own, a delivery). `what`
/// names the process in the log; with `first_open_fails`, a declaration refused the first time is
/// the caller's error (bad setup). Ok when stopped or when the language must unwind.
pub fn until_stopped(
    what: &str,
    subscription: subscription::Spec,
    first_open_fails: bool,
    between: &mut dyn Between,
    check: impl FnMut() -> Option<BrokerError>,
    on_message: impl FnMut(&mut Subscription, Delivery) -> After<()>,
) -> Result<(), BrokerError> {
    let _stop = StopOnSignals::install(&between.stop_signals());
    let spec = consume::Spec { what, subscription, first_open_fails };
    let mut host = Loop { between, check, on_message, failed: None };
    match consume::run(&spec, &mut host) {
        Finished::Left(()) => host.failed.take().map_or(Ok(()), Err),
        Finished::Stopped(_) => Ok(()),
        Finished::Failed(e) => Err(e),
    }
}
