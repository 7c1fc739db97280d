//! The PHP side of the loops the Scheduler and the generic Consumer run: PHP signal handlers run
//! between ticks, SIGTERM/SIGINT (unless the application handles them) stop the loop, and a handler
//! that throws or calls exit() makes it leave so PHP unwinds.

use ext_php_rs::exception::PhpException;

use crate::php::args::{bad_input, broker_err};
use crate::php::call::{self, Thrown};
use crate::services::run::{Between, RunError};

/// A run's error as PHP's exception: a bad setup is the caller's (`TaskException`), a broker error
/// a `ConnectionedException`.
pub fn run_err(e: RunError) -> PhpException {
    match e {
        RunError::Setup(msg) => bad_input(msg),
        RunError::Broker(e) => broker_err(e),
    }
}

/// What PHP does between deliveries.
pub struct Php;

impl Between for Php {
    fn stop_signals(&self) -> Vec<i32> {
        call::unhandled_stop_signals()
    }

    /// Runs PHP signal handlers; true when PHP must unwind (a handler threw, which is put back so
    /// it reaches the caller of run(), or called exit()).
    fn tick(&mut self) -> bool {
        match call::dispatch_php_signals() {
            Ok(()) => false,
            Err(Thrown::Exit) => true,
            Err(Thrown::Exception { object, .. }) => {
                call::rethrow(object);
                true
            }
        }
    }
}
