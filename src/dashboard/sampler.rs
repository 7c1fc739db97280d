//! The thread that samples, every few seconds: the metrics of every address given, and the depths
//! of every topic's queues (on a broker session of its own). It writes the dashboard's `View` and
//! adds a point to its series.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::series::Point;
use super::{sources, State, TopicRow, View};
use crate::broker::names::{Names, DELAY_LEVELS};
use crate::metrics::depth::Reader;
use crate::wire::now_ms;

/// The queues read for `topics`: each one's ready and failed queue, then the delay levels.
fn queues(names: &Names, topics: &BTreeSet<String>) -> Vec<(String, &'static str)> {
    let mut q = Vec::new();
    for t in topics {
        q.push((names.ready_queue(t), "ready"));
        q.push((names.failed_queue(t), "failed"));
    }
    q.extend((0..DELAY_LEVELS).map(|l| (names.delay_level(l), "delay")));
    q
}

/// Takes one sample.
pub fn sample(state: &State, reader: &mut Reader) {
    let scrapes: Vec<sources::Scrape> = state.opts.metrics.iter().map(|a| sources::scrape(a)).collect();
    let mut topics: BTreeSet<String> = state.opts.topics.iter().cloned().collect();
    let mut point = Point { at_ms: now_ms(), ..Default::default() };
    let mut view = View { at_ms: point.at_ms, ..Default::default() };
    for s in &scrapes {
        if let Some(e) = &s.error {
            view.errors.push(e.clone());
        }
        for (t, c) in &s.topics {
            if crate::rules::check_topic(t).is_ok() {
                topics.insert(t.clone());
                point.topics.entry(t.clone()).or_default().add(c);
            }
        }
        for p in &s.processes {
            if let Some(cpu) = p.cpu_seconds {
                point.cpu.insert((p.source.clone(), p.pid), cpu);
            }
            view.processes.push(p.clone());
        }
    }
    let names = Names::new(&state.settings.prefix);
    let depths = reader.read(&queues(&names, &topics));
    view.broker_up = depths.up;
    let by_name: BTreeMap<&str, (u32, u32)> =
        depths.queues.iter().map(|q| (q.queue.as_str(), (q.ready, q.consumers))).collect();
    view.delayed = depths.queues.iter().filter(|q| q.role == "delay").map(|q| q.ready as u64).sum();
    let (waits, cpu) = {
        let mut series = state.series.lock();
        series.push(point.clone());
        (series.waits(60_000), series.cpu_percent())
    };
    for t in &topics {
        let ready = by_name.get(names.ready_queue(t).as_str());
        let counts = point.topics.get(t);
        view.topics.push(TopicRow {
            topic: t.clone(),
            ready: ready.map(|r| r.0),
            consumers: ready.map(|r| r.1),
            failed: by_name.get(names.failed_queue(t).as_str()).map(|r| r.0),
            in_flight: counts.map(|c| c.in_flight),
            wait_s: waits.get(t).copied(),
        });
    }
    for p in &mut view.processes {
        p.cpu_percent = cpu.get(&(p.source.clone(), p.pid)).copied();
    }
    *state.view.lock() = view;
}

/// Samples every `state.opts.sample_every` until `stop` is raised.
pub fn run(state: Arc<State>, stop: Arc<AtomicBool>) {
    let mut reader = Reader::new(state.settings.clone());
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        sample(&state, &mut reader);
        while started.elapsed() < state.opts.sample_every && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
