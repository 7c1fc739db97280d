//! The loop the Scheduler and the generic Consumer share: consume a queue, run PHP signal
//! handlers between messages, stop on SIGTERM/SIGINT, reconnect after a broker failure.

use std::time::Duration;

use ext_php_rs::prelude::*;
use lapin::message::Delivery;
use lapin::{Channel, Consumer};
use tokio::runtime::Handle;

use crate::broker::process::with_session;
use crate::broker::session::next_delivery;
use crate::broker::Decl;
use crate::config::Settings;
use crate::log;
use crate::php::args::broker_err;
use crate::php::call::{self, Thrown};
use crate::worker::signals::{self, StopOnSignals};

/// The open consumer a message came from.
pub struct Open<'a> {
    pub rt: &'a Handle,
    pub ch: &'a Channel,
    pub consumer: &'a mut Consumer,
}

/// What the loop does after a message.
pub enum After {
    Next,
    /// The channel or connection failed: open anew.
    Reconnect,
    /// `exit()` ran in PHP: return at once so the engine unwinds.
    Leave,
}

pub struct Spec<'a> {
    /// "scheduler" or "consumer", for logs and the consumer tag.
    pub what: &'a str,
    pub settings: &'a Settings,
    pub decls: &'a [Decl],
    pub queue: &'a str,
    pub prefetch: u16,
    /// A failure to open the consumer the first time is the caller's exception (bad setup).
    pub first_open_throws: bool,
}

/// Runs PHP signal handlers; Err when PHP must unwind (a handler threw, which is put back so it
/// reaches the caller of run(), or called exit()).
fn php_tick() -> Result<(), ()> {
    match call::dispatch_php_signals() {
        Ok(()) => Ok(()),
        Err(Thrown::Exit) => Err(()),
        Err(Thrown::Exception { object, .. }) => {
            call::rethrow(object);
            Err(())
        }
    }
}

/// Waits `d` in ticks of 100 ms, running PHP signal handlers; Err when PHP must unwind.
fn wait(d: Duration) -> Result<(), ()> {
    let ticks = (d.as_millis() / 100).max(1);
    for _ in 0..ticks {
        std::thread::sleep(Duration::from_millis(100));
        php_tick()?;
    }
    Ok(())
}

pub fn run(spec: &Spec, mut on_message: impl FnMut(&mut Open, Delivery) -> After) -> PhpResult<()> {
    let tag = format!("ebats-{}-{}", spec.what, std::process::id());
    // SIGTERM/SIGINT (unless the application handles them) stop the loop between messages.
    let stop = StopOnSignals::install(&call::unhandled_stop_signals());
    // Broker handles dropped below (consumers, channels) need the runtime's context.
    let handle = with_session(|s| Ok(s.handle())).map_err(broker_err)?;
    let _ctx = handle.enter();
    let mut first = true;
    loop {
        let opened = with_session(|s| {
            s.declare(spec.settings, spec.decls)?;
            let (ch, c) = s.consume(spec.settings, spec.queue, spec.prefetch, &tag)?;
            Ok((s.handle(), ch, c))
        });
        let (rt, ch, mut consumer) = match opened {
            Ok(x) => x,
            Err(e) if first && spec.first_open_throws => return Err(broker_err(e)),
            Err(e) => {
                log::error(&format!("{} cannot consume '{}': {e}; retrying in 1 s", spec.what, spec.queue));
                if wait(Duration::from_secs(1)).is_err() {
                    return Ok(());
                }
                continue;
            }
        };
        first = false;
        loop {
            if php_tick().is_err() {
                return Ok(());
            }
            if let Some(sig) = stop.requested() {
                log::info(&format!("{} stopping ({})", spec.what, signals::name(sig)));
                let _ = rt.block_on(ch.close(200, "stopping".into()));
                return Ok(());
            }
            let d = match next_delivery(&mut consumer, Duration::from_millis(100)) {
                Ok(Some(d)) => d,
                Ok(None) => continue,
                Err(e) => {
                    log::error(&format!("{} lost its consumer on '{}': {e}; reconnecting", spec.what, spec.queue));
                    break;
                }
            };
            match on_message(&mut Open { rt: &rt, ch: &ch, consumer: &mut consumer }, d) {
                After::Next => {}
                After::Reconnect => break,
                After::Leave => return Ok(()),
            }
        }
        let _ = with_session(|s| {
            s.disconnect();
            Ok(())
        });
        if wait(Duration::from_millis(500)).is_err() {
            return Ok(());
        }
    }
}
