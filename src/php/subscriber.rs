//! The PHP side of the consume loop the Scheduler and the generic Consumer run: PHP signal
//! handlers run between ticks, SIGTERM/SIGINT (unless the application handles them) stop the
//! loop, and a handler that throws or calls exit() makes it return so PHP unwinds.

use ext_php_rs::prelude::*;
use lapin::message::Delivery;

use crate::broker::consume::{self, After, Finished, Host};
use crate::broker::subscription::{self, Subscription};
use crate::broker::BrokerError;
use crate::php::args::broker_err;
use crate::php::call::{self, Thrown};
use crate::worker::signals::StopOnSignals;

struct PhpHost<F, C> {
    on_message: F,
    check: C,
    failed: Option<BrokerError>,
}

impl<F: FnMut(&mut Subscription, Delivery) -> After<()>, C: FnMut() -> Option<BrokerError>> Host for PhpHost<F, C> {
    type Left = ();

    /// Runs PHP signal handlers; leaves when PHP must unwind (a handler threw, which is put back
    /// so it reaches the caller of run(), or called exit()), or when `check` gives an error the
    /// process must stop on.
    fn tick(&mut self) -> Option<()> {
        if let Some(e) = (self.check)() {
            self.failed = Some(e);
            return Some(());
        }
        match call::dispatch_php_signals() {
            Ok(()) => None,
            Err(Thrown::Exit) => Some(()),
            Err(Thrown::Exception { object, .. }) => {
                call::rethrow(object);
                Some(())
            }
        }
    }

    fn deliver(&mut self, sub: &mut Subscription, d: Delivery) -> After<()> {
        (self.on_message)(sub, d)
    }
}

/// Consumes until stopped. `what` names the process in the log ("scheduler", "consumer"); with
/// `first_open_fails`, a declaration refused the first time is the caller's exception (bad setup).
pub fn run(
    what: &str,
    subscription: subscription::Spec,
    first_open_fails: bool,
    on_message: impl FnMut(&mut Subscription, Delivery) -> After<()>,
) -> PhpResult<()> {
    run_checking(what, subscription, first_open_fails, || None, on_message)
}

/// [`run`], also leaving with an exception as soon as `check` (asked at every tick) gives an
/// error: one the process must stop on, met elsewhere (a thread of its own, a delivery).
pub fn run_checking(
    what: &str,
    subscription: subscription::Spec,
    first_open_fails: bool,
    check: impl FnMut() -> Option<BrokerError>,
    on_message: impl FnMut(&mut Subscription, Delivery) -> After<()>,
) -> PhpResult<()> {
    let _stop = StopOnSignals::install(&call::unhandled_stop_signals());
    let spec = consume::Spec { what, subscription, first_open_fails };
    let mut host = PhpHost { on_message, check, failed: None };
    match consume::run(&spec, &mut host) {
        Finished::Left(()) if host.failed.is_some() => Err(broker_err(host.failed.take().expect("checked"))),
        Finished::Stopped(_) | Finished::Left(()) => Ok(()),
        Finished::Failed(e) => Err(broker_err(e)),
    }
}
