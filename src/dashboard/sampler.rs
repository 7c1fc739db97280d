//! The thread that samples, every few seconds: the `/status.json` of every address
//! (given, or found through the broker when neither addresses nor topics are given), the depths of
//! every topic's queues (on a broker session of its own). It writes the dashboard's `View`, moves its
//! `HistoryView` on in time, and adds a point to its series. The execution history is followed by a
//! thread the sampler starts ([`sources::follow_history`]), on a connection of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::series::Point;
use super::{sources, LegacyQueue, State, TopicRow, View};
use crate::broker::names::{Names, DELAY_LEVELS};
use crate::metrics::depth::Reader;
use crate::metrics::status_doc::LimitRow;
use crate::wire::now_ms;

/// The queues read for `topics`: each one's ready and failed queue and the original library's ready
/// and delay queues (while a switch from it drains them), then the delay levels.
fn queues(names: &Names, topics: &BTreeSet<String>) -> Vec<(String, &'static str)> {
    let mut q = Vec::new();
    for t in topics {
        q.push((names.ready_queue(t), "ready"));
        q.push((names.failed_queue(t), "failed"));
        q.push((names.legacy_ready_queue(t), "legacy"));
        q.push((names.legacy_delay_queue(t), "legacy"));
    }
    q.extend((0..DELAY_LEVELS).map(|l| (names.delay_level(l), "delay")));
    q
}

/// How often processes are looked for through the broker (each look appends a marker to the
/// processes stream).
pub const DISCOVER_EVERY: Duration = Duration::from_secs(5);

/// What the sampler keeps between samples.
#[derive(Default)]
pub struct Memory {
    /// Addresses found through the broker, and the topics they announced.
    found: Vec<String>,
    found_topics: BTreeSet<String>,
    found_error: Option<String>,
    last_slow: Option<Instant>,
}

/// The read made at most every [`DISCOVER_EVERY`]: discovery, when it is on. It uses this process's
/// broker session (a read of a minute of the processes stream), so it holds `State::broker`.
fn slow_reads(state: &State, mem: &mut Memory) {
    if mem.last_slow.is_some_and(|t| t.elapsed() < DISCOVER_EVERY) {
        return;
    }
    mem.last_slow = Some(Instant::now());
    if state.opts.discovers() {
        let found = {
            let _one = state.broker.lock();
            crate::broker::processes::discover(&state.settings)
        };
        match found {
            Ok(list) => {
                mem.found = list.iter().map(|a| a.probe_address()).collect();
                mem.found.dedup();
                mem.found_topics =
                    list.iter().filter(|a| a.role == "worker").flat_map(|a| a.topics.iter().cloned()).collect();
                mem.found_error = None;
            }
            Err(e) => mem.found_error = Some(format!("finding the processes through the broker: {e}")),
        }
    }
}

/// Takes one sample.
pub fn sample(state: &State, reader: &mut Reader, mem: &mut Memory) {
    slow_reads(state, mem);
    state.history.lock().advance(now_ms());
    let addresses = if state.opts.discovers() { &mem.found } else { &state.opts.metrics };
    let scrapes: Vec<sources::Scrape> = addresses.iter().map(|a| sources::scrape(a)).collect();
    let mut topics: BTreeSet<String> = state.opts.topics.iter().cloned().collect();
    topics.extend(mem.found_topics.iter().cloned());
    let mut point = Point { at_ms: now_ms(), ..Default::default() };
    let mut limits: BTreeMap<String, Vec<LimitRow>> = BTreeMap::new();
    let mut view = View { at_ms: point.at_ms, metrics: addresses.clone(), ..Default::default() };
    view.errors.extend(mem.found_error.clone());
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
        for (t, l) in &s.limits {
            // Workers of one topic on other hosts may have set other limits in code: the first shown.
            limits.entry(t.clone()).or_insert_with(|| l.clone());
        }
        for p in &s.processes {
            if let Some(cpu) = p.row.cpu_seconds {
                point.cpu.insert((p.source.clone(), i64::from(p.row.pid)), cpu);
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
            legacy: legacy_waiting(&by_name, &names, t),
            paused: counts.is_some_and(|c| c.paused > 0.0),
            limits: limits.remove(t).unwrap_or_default(),
            held_back_rate: counts.map(|c| c.held_back_rate),
            held_back_concurrency: counts.map(|c| c.held_back_concurrency),
            duplicates: counts.map(|c| c.duplicates),
            given_back: counts.map(|c| c.given_back),
        });
    }
    for p in &mut view.processes {
        if p.row.cpu_percent.is_none() {
            p.row.cpu_percent = cpu.get(&(p.source.clone(), i64::from(p.row.pid))).copied();
        }
    }
    *state.view.lock() = view;
}

/// The original library's queues of topic `t` that hold messages (the others are not shown).
fn legacy_waiting(by_name: &BTreeMap<&str, (u32, u32)>, names: &Names, t: &str) -> Vec<LegacyQueue> {
    [names.legacy_ready_queue(t), names.legacy_delay_queue(t)]
        .into_iter()
        .filter_map(|q| by_name.get(q.as_str()).filter(|c| c.0 > 0).map(|c| LegacyQueue { messages: c.0, queue: q }))
        .collect()
}

/// Samples every `state.opts.sample_every` until `stop` is raised; follows the execution history
/// on a thread of its own meanwhile.
pub fn run(state: Arc<State>, stop: Arc<AtomicBool>) {
    let (st, sp) = (state.clone(), stop.clone());
    let history = std::thread::Builder::new()
        .name("ebats-dash-history".into())
        .spawn(move || sources::follow_history(&st.settings, &st.history, &|| sp.load(Ordering::Relaxed)));
    if let Err(e) = &history {
        state.history.lock().error = Some(format!("cannot start the history follower: {e}"));
    }
    let mut reader = Reader::new(state.settings.clone());
    let mut mem = Memory::default();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        sample(&state, &mut reader, &mut mem);
        while started.elapsed() < state.opts.sample_every && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if let Ok(h) = history {
        let _ = h.join();
    }
}
