//! What the worker declares before it forks: a stream or a topology that clashes with what exists on
//! the broker stops it here, before any child starts (a child meeting it would stop, and be replaced,
//! again and again); a broker away now does not stop it (its children declare what they need when they
//! can).

use super::StartError;
use crate::broker::stop::{self, CutWaitsShort};
use crate::broker::{current, Decl};
use crate::config::Settings;
use crate::worker::signals::StopOnSignals;

/// Declares the history stream (when kept) and the topic's queues. The waits for the broker end at
/// `stop_signals`: true when a stop was asked meanwhile.
pub fn declare(settings: &Settings, topic: &str, stop_signals: &[i32]) -> Result<bool, StartError> {
    let _stop = StopOnSignals::install(stop_signals);
    let _cut = CutWaitsShort::begin();
    if settings.history.enabled {
        match crate::history::writer::declare(settings) {
            Err(e) if e.kind().is_bad_setup() => return Err(StartError::Broker(e)),
            Err(_) if stop::requested().is_some() => return Ok(true),
            Err(e) => crate::log::error(&format!("execution history: cannot declare the stream now: {e}")),
            Ok(()) => {}
        }
    }
    let decls = [Decl::Topic(topic.to_string())];
    match current::with_session(|s| s.declare(settings, &decls)) {
        Err(e) if e.kind().stops_process() => return Err(StartError::Broker(e)),
        Err(_) if stop::requested().is_some() => return Ok(true),
        Err(e) => crate::log::error(&format!("worker cannot declare its queues now: {e}")),
        Ok(()) => {}
    }
    Ok(stop::requested().is_some())
}
