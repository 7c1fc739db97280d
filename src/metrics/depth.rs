//! Queue depths and consumer counts read from the broker at scrape time, on a session of the
//! scraping thread's own, cached for a short while so that frequent scrapes cost the broker little.
//!
//! AMQP (a passive queue declare) gives the ready messages and the consumers of a queue; the
//! messages delivered and not yet acked are known to the broker's management API only, which
//! ebats does not use: the workers' own `ebats_tasks_in_flight` counts those being run.

use std::time::{Duration, Instant};

use crate::broker::{ErrorKind, Session};
use crate::config::Settings;

/// How long a read is reused.
pub const CACHE_FOR: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq)]
pub struct QueueStat {
    pub queue: String,
    /// ready, delay, failed or events.
    pub role: &'static str,
    pub ready: u32,
    pub consumers: u32,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Depths {
    /// The broker answered.
    pub up: bool,
    /// The queues that exist, of those asked for.
    pub queues: Vec<QueueStat>,
}

pub struct Reader {
    settings: Settings,
    session: Option<Session>,
    cached: Option<(Instant, Depths)>,
}

impl Reader {
    pub fn new(settings: Settings) -> Reader {
        Reader { settings, session: None, cached: None }
    }

    /// The depths of `wanted` (queue name, role), from the cache when fresh.
    pub fn read(&mut self, wanted: &[(String, &'static str)]) -> Depths {
        if let Some((at, d)) = &self.cached {
            if at.elapsed() < CACHE_FOR {
                return d.clone();
            }
        }
        let d = self.read_now(wanted);
        self.cached = Some((Instant::now(), d.clone()));
        d
    }

    fn read_now(&mut self, wanted: &[(String, &'static str)]) -> Depths {
        if self.session.is_none() {
            match Session::new() {
                Ok(s) => self.session = Some(s),
                Err(e) => {
                    crate::log::error(&format!("metrics: {e}"));
                    return Depths::default();
                }
            }
        }
        let session = self.session.as_mut().expect("set above");
        let mut d = Depths { up: true, queues: Vec::new() };
        for (queue, role) in wanted {
            match session.queue_counts(&self.settings, queue) {
                Ok((ready, consumers)) => d.queues.push(QueueStat { queue: queue.clone(), role, ready, consumers }),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    crate::log::error(&format!("metrics: cannot read the queue depths: {e}"));
                    session.disconnect();
                    return Depths::default();
                }
            }
        }
        d
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(mut s) = self.session.take() {
            s.close();
        }
    }
}
