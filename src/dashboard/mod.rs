//! The dashboard: a small web application served by the extension, for a person to see and act on
//! the task system (topics, processes, executions, the failed stores, schedules, live charts).
//!
//! One concept per file: `sources` (where executions and processes come from, as plain data),
//! `series` (sampled counters and the figures they give), `sampler` (the thread that samples every
//! few seconds), `auth` (token, Host, CSRF), `schedules`, `topics` and `groups` (the schedule, topic
//! and group actions it is handed by the services tier), `api` (the JSON API), `assets` (the page, its script
//! and style, built into the extension) and `server` (listening, routing, security headers).
//!
//! The process never forks, so it uses threads freely: one accepts, one per connection (bounded),
//! one samples. Calls on the process's broker session are made one at a time (`State::broker`).

pub mod api;
pub mod assets;
pub mod auth;
pub mod groups;
pub mod sampler;
pub mod schedules;
pub mod series;
pub mod server;
pub mod sources;
pub mod topics;

use std::net::SocketAddr;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

use crate::config::Settings;
use crate::metrics::status_doc::LimitRow;

/// How a dashboard is set up.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub listen: SocketAddr,
    pub token: Option<String>,
    /// Topics to show; more are found in the metrics of the addresses below.
    pub topics: Vec<String>,
    /// Metrics addresses (host:port) of the workers and schedulers to show. With neither these nor
    /// topics, the processes (and their topics) are found through the broker (`broker::processes`).
    pub metrics: Vec<String>,
    pub sample_every: Duration,
}

impl Options {
    /// Whether the processes are found through the broker rather than given.
    pub fn discovers(&self) -> bool {
        self.topics.is_empty() && self.metrics.is_empty()
    }

    /// Checks the options as a whole.
    pub fn check(&self) -> Result<(), String> {
        auth::check_start(&self.listen, self.token.as_deref())?;
        for t in &self.topics {
            crate::rules::check_topic(t)?;
        }
        Ok(())
    }
}

/// One topic as shown.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TopicRow {
    pub topic: String,
    /// Ready in the topic's queue (none when the queue does not exist or the broker did not answer).
    pub ready: Option<u32>,
    pub consumers: Option<u32>,
    pub failed: Option<u32>,
    /// Being run now, as the workers' metrics say.
    pub in_flight: Option<f64>,
    /// Mean wait of the tasks started in the last minute, in seconds.
    pub wait_s: Option<f64>,
    /// The original library's queues of the topic still holding messages (after a switch from it).
    pub legacy: Vec<LegacyQueue>,
    /// A worker of the topic shows it paused (`ebats topics:pause`).
    pub paused: bool,
    /// The rate and concurrency limits in force, as a worker of the topic shows them.
    pub limits: Vec<LimitRow>,
    /// Summed over the topic's workers that answered (none when none did): tasks held back by a
    /// limit (a full rate window, no free permit), duplicates not made, tasks given back by a pause.
    pub held_back_rate: Option<f64>,
    pub held_back_concurrency: Option<f64>,
    pub duplicates: Option<f64>,
    pub given_back: Option<f64>,
}

/// One of the original library's queues and the messages it holds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LegacyQueue {
    pub queue: String,
    pub messages: u32,
}

/// What the last sample saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct View {
    pub at_ms: i64,
    pub broker_up: bool,
    pub topics: Vec<TopicRow>,
    /// Delayed tasks of every topic (the delay levels are shared by the topics).
    pub delayed: u64,
    pub processes: Vec<sources::ProcessOf>,
    /// The metrics addresses sampled (given, or found through the broker).
    pub metrics: Vec<String>,
    /// Addresses that did not answer, and why.
    pub errors: Vec<String>,
}

/// Shared by the threads of one dashboard.
pub struct State {
    pub settings: Settings,
    pub opts: Options,
    /// The CSRF token of this process, put in the page.
    pub csrf: String,
    pub view: Mutex<View>,
    pub series: Mutex<series::Series>,
    /// The last read of the execution history.
    pub history: Mutex<sources::HistoryView>,
    /// Held around every call on the process's broker session (which refuses concurrent use).
    pub broker: Mutex<()>,
    /// What the schedules' page does, handed down by the services tier.
    pub schedules: Box<dyn schedules::ScheduleActions>,
    /// What the topics' page does (pause, resume), handed down by the services tier.
    pub topics: Box<dyn topics::TopicActions>,
    /// What the groups' pages do (list, show, cancel), handed down by the services tier.
    pub groups: Box<dyn groups::GroupActions>,
}

impl State {
    pub fn new(
        settings: Settings,
        opts: Options,
        schedules: Box<dyn schedules::ScheduleActions>,
        topics: Box<dyn topics::TopicActions>,
        groups: Box<dyn groups::GroupActions>,
    ) -> State {
        State {
            settings,
            opts,
            csrf: auth::random_secret(),
            view: Mutex::new(View::default()),
            series: Mutex::new(series::Series::default()),
            history: Mutex::new(sources::HistoryView::default()),
            broker: Mutex::new(()),
            schedules,
            topics,
            groups,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let o = Options {
            listen: "127.0.0.1:0".parse().unwrap(),
            token: None,
            topics: vec!["mail".into()],
            metrics: vec![],
            sample_every: Duration::from_secs(1),
        };
        assert!(o.check().is_ok());
        assert!(!o.discovers());
        assert!(Options { topics: vec![], ..o.clone() }.discovers());
        assert!(Options { topics: vec!["a b".into()], ..o.clone() }.check().is_err());
        assert!(Options { listen: "0.0.0.0:1".parse().unwrap(), ..o }.check().unwrap_err().contains("token"));
    }
}
