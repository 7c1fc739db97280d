//! Rate limits in a worker child: before a task starts, once its permits are held (`worker::limited`,
//! given back when the rate does not let it start), a start is taken from the counter of each
//! rate limit that applies to it (`broker::rate`, in the order of `flow::rate::in_order`). A full name
//! or key limit holds the task back (`held`); a full topic limit is waited for in place, asking again
//! after `flow::rate::retry_after`, while neither a stop nor a pause of the topic is asked (and up to
//! `flow::rate::WAIT_IN_PLACE_MAX`, then it is held back too). A worker
//! without limits does nothing here beyond one `is_empty()`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::broker::names::Names;
use crate::broker::rate::{Counters, Took};
use crate::broker::{stop, BrokerError};
use crate::config::Settings;
use crate::flow::limits::LimitSet;
use crate::flow::rate;
use crate::wire::TaskMsg;

/// What the limits let a task do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Start it.
    Run,
    /// A name or key limit is full: hold it back for this long (the limit's id for the log).
    HoldBack { wait: Duration, limit: String },
    /// A stop or a pause came while it waited for its topic's limit: give it back unstarted.
    GiveBack { paused: bool },
}

/// The rate limits of a worker child's topic and its counters on the broker.
pub struct Throttle {
    names: Names,
    topic: String,
    counters: Counters,
    seed: u64,
}

/// How often a wait in place looks at the stop token and the pause.
const LOOK_EVERY: Duration = Duration::from_millis(5);

impl Throttle {
    pub fn new(names: Names, topic: &str) -> Throttle {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let seed = (nanos ^ u64::from(std::process::id()).rotate_left(32)) | 1;
        Throttle { names, topic: topic.to_string(), counters: Counters::new(), seed }
    }

    /// A number from 0.5 to 1.5 (xorshift), spreading the waits of processes that ask together.
    fn spread(&mut self) -> f64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        0.5 + (self.seed % 1000) as f64 / 1000.0
    }

    /// Takes a start of each rate limit of `limits` that applies to `task`. `paused` says whether its
    /// topic is paused now.
    /// `waited` is set when the task waited in place.
    pub fn admit(
        &mut self,
        settings: &Settings,
        limits: &LimitSet,
        task: &TaskMsg,
        mut paused: impl FnMut() -> bool,
        waited: &mut bool,
    ) -> Result<Admit, BrokerError> {
        if limits.is_empty() {
            return Ok(Admit::Run);
        }
        let applied = limits.for_task(&task.name, &task.params);
        for (a, r) in rate::in_order(&applied) {
            let queue = self.names.rate_counter(&self.topic, &a.counter, rate::capacity(r), rate::window_ms(r));
            let since = Instant::now();
            loop {
                if self.counters.take(settings, &queue, r)? == Took::Started {
                    break;
                }
                if !rate::waits_in_place(a) || since.elapsed() >= rate::WAIT_IN_PLACE_MAX {
                    return Ok(Admit::HoldBack { wait: rate::hold_back_for(r), limit: a.limit.clone() });
                }
                *waited = true;
                let wait = rate::retry_after(r, self.spread());
                let mut now_paused = false;
                if stop::pause(wait, LOOK_EVERY, || {
                    now_paused = paused();
                    now_paused
                }) {
                    return Ok(Admit::GiveBack { paused: now_paused });
                }
            }
        }
        Ok(Admit::Run)
    }
}
