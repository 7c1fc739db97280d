//! What `/metrics` and `/healthz` show for a worker and for a scheduler, and where they are served.
//!
//! Worker: the parent forks children and must stay single-threaded to fork safely, so it serves
//! nothing itself. Before its first child it forks a metrics process, which owns the listening
//! socket, reads the shared counters, /proc, and the broker (on a connection of its own), and may
//! use threads freely since it never forks. It dies with the parent (PR_SET_PDEATHSIG), and the
//! parent kills it when it returns.
//!
//! Scheduler and Consumer: they never fork, so a thread of their own serves (and answers each
//! connection on a thread of its own, see `crate::http`); those threads share no lock with the
//! consume loop (it reads relaxed atomics and opens its own broker session); the one
//! lock it takes, the periodic schedules' counter table, it holds only to copy that table.

use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::announce::Announcer;
use super::counters::{self as c, get};
use super::cpu::CpuWindow;
use super::depth::{Depths, Reader};
use super::expo::{render, Family, Kind, Value};
use super::readings::{self, ThreadPlace, WorkerPlace};
use super::stats::{Snap, Stats, HELD, OUTCOMES, REASONS};
use super::status;
use super::status_doc::{StatusDoc, Totals};
use super::{hist, procfs};
use crate::broker::flow_stream::Watch;
use crate::broker::names::{Names, DELAY_LEVELS};
use crate::broker::processes::Announced;
use crate::config::Settings;
use crate::flow::limits::Limit;
use crate::flow::record::Source;
use crate::http::{self, Handler, Limits, Request, Response};

const NOT_FOUND: &str = "not found: try /metrics, /healthz or /status.json\n";

/// The bounds of a metrics request: a GET with its head in one packet, from a few scrapers and
/// probes at once.
const LIMITS: Limits = Limits {
    head_within: Duration::from_secs(5),
    request_within: Duration::from_secs(5),
    max_body: 0,
    max_connections: 16,
};

/// The metrics endpoints as an HTTP handler: GET or HEAD only; `route` answers a path.
struct Endpoints<F>(F);

impl<F: Fn(&str) -> Response + Sync> Handler for Endpoints<F> {
    fn admit(&self, req: &Request) -> Option<Response> {
        (req.method != "GET" && req.method != "HEAD")
            .then(|| Response::text(405, "only GET\n").with_header("Allow", "GET, HEAD"))
    }

    fn answer(&self, req: &Request) -> Response {
        (self.0)(&req.path)
    }
}

fn json_response(doc: &StatusDoc) -> Response {
    match serde_json::to_string(doc) {
        Ok(text) => Response::new(200, "application/json", text + "\n"),
        Err(e) => Response::text(500, format!("cannot write the status document: {e}\n")),
    }
}

/// Announces the process serving on `listener` (see `broker::processes`); a failure to start the
/// thread is logged, and the process serves anyway.
fn announce(
    settings: &Settings,
    listener: &TcpListener,
    role: &str,
    topics: Vec<String>,
    pid: i32,
    started_ms: u64,
) -> Option<Announcer> {
    let address = listener.local_addr().ok()?.to_string();
    let record = Announced {
        role: role.into(),
        topics,
        address,
        pid,
        host: procfs::hostname(),
        started_ms: started_ms as i64,
        at_ms: 0,
    };
    Announcer::start(settings.clone(), record)
        .map_err(|e| crate::log::error(&format!("cannot start announcing this process: {e}")))
        .ok()
}

fn now_ms() -> u64 {
    crate::wire::now_ms().max(0) as u64
}

fn process_families(procs: &[(String, String, i32)]) -> Vec<Family> {
    let mut cpu =
        Family::new("ebats_process_cpu_seconds", "CPU time (user + system) used by the process.", Kind::Counter);
    let mut rss = Family::new("ebats_process_resident_memory_bytes", "Resident memory of the process.", Kind::Gauge);
    for (role, slot, pid) in procs {
        let p = pid.to_string();
        let l = [("role", role.as_str()), ("slot", slot.as_str()), ("pid", p.as_str())];
        if let Some(s) = procfs::cpu_seconds(*pid) {
            cpu.add(&l, Value::Float(s));
        }
        if let Some(b) = procfs::resident_bytes(*pid) {
            rss.add(&l, Value::Int(b));
        }
    }
    vec![cpu, rss]
}

fn queue_families(d: &Depths) -> Vec<Family> {
    let mut up = Family::new("ebats_broker_up", "1 when the broker answered the last depth read.", Kind::Gauge);
    up.add(&[], Value::Int(d.up as u64));
    let mut ready = Family::new(
        "ebats_queue_messages_ready",
        "Messages ready in the queue (from a passive declare; unacked messages are not included).",
        Kind::Gauge,
    );
    let mut consumers = Family::new("ebats_queue_consumers", "Consumers of the queue.", Kind::Gauge);
    for q in &d.queues {
        let l = [("queue", q.queue.as_str()), ("role", q.role)];
        ready.add(&l, Value::Int(q.ready as u64));
        consumers.add(&l, Value::Int(q.consumers as u64));
    }
    vec![up, ready, consumers]
}

/// The queues a worker of `topic` reports: its ready queue, the delay levels, its failed store.
pub fn worker_queues(names: &Names, topic: &str) -> Vec<(String, &'static str)> {
    let mut q = vec![(names.ready_queue(topic), "ready")];
    q.extend((0..DELAY_LEVELS).map(|l| (names.delay_level(l), "delay")));
    q.push((names.failed_queue(topic), "failed"));
    q
}

/// The families of a worker's limits: what they held back and the limits in force.
fn limit_families(topic: &str, s: &Snap, in_force: &[(Limit, Source)]) -> Vec<Family> {
    let mut held =
        Family::new("ebats_tasks_held_back", "Tasks held back (or waited for) by a limit, by reason.", Kind::Counter);
    for (r, n) in HELD.iter().zip(s.held_back) {
        held.add(&[("topic", topic), ("reason", r)], Value::Int(n));
    }
    let mut rate = Family::new(
        "ebats_topic_limit_rate",
        "Starts per second a rate limit in force allows (its burst apart), by limit id and source.",
        Kind::Gauge,
    );
    let mut conc = Family::new(
        "ebats_topic_limit_concurrency",
        "Tasks at once a concurrency limit in force allows, by limit id and source.",
        Kind::Gauge,
    );
    for (l, source) in in_force {
        let id = l.id();
        let labels = [("topic", topic), ("limit", id.as_str()), ("source", source.as_str())];
        if let Some(r) = &l.rate {
            rate.add(&labels, Value::Float(r.per_second()));
        }
        if let Some(c) = l.concurrency {
            conc.add(&labels, Value::Int(u64::from(c)));
        }
    }
    vec![
        held,
        Family::new("ebats_tasks_duplicate", "Tasks not made: one with their unique key was there.", Kind::Counter)
            .with(&[("topic", topic)], Value::Int(s.duplicates)),
        Family::new("ebats_topic_limits", "Rate and concurrency limits in force for the topic.", Kind::Gauge)
            .with(&[("topic", topic)], Value::Int(in_force.len() as u64)),
        rate,
        conc,
    ]
}

/// The families of a worker, from what its processes counted and the limits in force for its topic.
pub fn worker_families(topic: &str, expected: usize, s: &Snap, in_force: &[(Limit, Source)]) -> Vec<Family> {
    let t = [("topic", topic)];
    let mut tasks = Family::new("ebats_tasks", "Task runs by task name and outcome.", Kind::Counter);
    let mut run = Family::new("ebats_task_run_seconds", "Run time of tasks.", Kind::Histogram);
    for (name, outcomes, h) in &s.tasks {
        for (o, n) in OUTCOMES.iter().zip(outcomes) {
            tasks.add(&[("topic", topic), ("task", name), ("outcome", o)], Value::Int(*n));
        }
        run.add(&[("topic", topic), ("task", name)], Value::Hist(h.clone()));
    }
    let mut wait = s.wait.clone();
    if wait.counts.is_empty() {
        wait.counts = vec![0; hist::BOUNDS.len() + 1];
    }
    let mut exits = Family::new("ebats_worker_child_exits", "Worker children that ended, by reason.", Kind::Counter);
    for (r, n) in REASONS.iter().zip(s.exits) {
        exits.add(&[("topic", topic), ("reason", r)], Value::Int(n));
    }
    vec![
        tasks,
        run,
        Family::new("ebats_task_wait_seconds", "Time from a task's creation to its start.", Kind::Histogram)
            .with(&t, Value::Hist(wait)),
        Family::new("ebats_tasks_in_flight", "Tasks being run now.", Kind::Gauge).with(&t, Value::Int(s.in_flight)),
        Family::new("ebats_worker_children", "Worker children running.", Kind::Gauge)
            .with(&t, Value::Int(s.children.len() as u64)),
        Family::new("ebats_worker_children_expected", "Worker children the worker keeps running.", Kind::Gauge)
            .with(&t, Value::Int(expected as u64)),
        Family::new("ebats_worker_child_starts", "Worker children started.", Kind::Counter)
            .with(&t, Value::Int(s.starts)),
        exits,
        Family::new("ebats_topic_paused", "1 while the worker's children know its topic paused.", Kind::Gauge)
            .with(&t, Value::Int(s.paused as u64)),
        Family::new("ebats_tasks_given_back", "Tasks given back unstarted, by reason.", Kind::Counter)
            .with(&[("topic", topic), ("reason", "paused")], Value::Int(s.given_back)),
        Family::new("ebats_tasks_cancelled", "Tasks not run: cancelled before they started.", Kind::Counter)
            .with(&t, Value::Int(s.cancelled)),
    ]
    .into_iter()
    .chain(limit_families(topic, s, in_force))
    .collect()
}

/// The families of a scheduler, from this process's counters.
pub fn scheduler_families() -> Vec<Family> {
    let mut events = Family::new("ebats_scheduler_events", "Events taken by the scheduler, by outcome.", Kind::Counter);
    events.add(&[("outcome", "routed")], Value::Int(get(&c::EVENTS_ROUTED)));
    events.add(&[("outcome", "unknown")], Value::Int(get(&c::EVENTS_UNKNOWN)));
    events.add(&[("outcome", "unreadable")], Value::Int(get(&c::EVENTS_UNREADABLE)));
    let mut fired = Family::new("ebats_cron_firings", "Periodic schedule firings.", Kind::Counter);
    let mut late = Family::new("ebats_cron_late", "Periodic schedule firings later than their time.", Kind::Counter);
    let mut skipped = Family::new("ebats_cron_skipped", "Periodic schedule ticks skipped.", Kind::Counter);
    for (name, t) in c::cron() {
        let l = [("schedule", name.as_str())];
        fired.add(&l, Value::Int(t.fired));
        late.add(&l, Value::Int(t.late));
        skipped.add(&l, Value::Int(t.skipped));
    }
    let mut dups = Family::new(
        "ebats_tasks_duplicate",
        "Tasks of events not made: one with their unique key was there.",
        Kind::Counter,
    );
    for (topic, n) in c::duplicates() {
        dups.add(&[("topic", topic.as_str())], Value::Int(n));
    }
    let mut out = vec![
        events,
        Family::new("ebats_scheduler_tasks_made", "Tasks made from events.", Kind::Counter)
            .with(&[], Value::Int(get(&c::TASKS_MADE))),
        dups,
        fired,
        late,
        skipped,
        Family::new(
            "ebats_group_completions",
            "Groups of tasks this scheduler completed while leading.",
            Kind::Counter,
        )
        .with(&[], Value::Int(get(&c::GROUP_COMPLETIONS))),
    ];
    if c::leader() == Some(true) {
        out.push(
            Family::new(
                "ebats_groups_open",
                "Groups of tasks in flight, as the leading scheduler folds them.",
                Kind::Gauge,
            )
            .with(&[], Value::Int(get(&c::GROUPS_OPEN))),
        );
    }
    if let Some(l) = c::leader() {
        out.push(
            Family::new("ebats_scheduler_leader", "1 while this scheduler leads the periodic schedules.", Kind::Gauge)
                .with(&[], Value::Int(l as u64)),
        );
    }
    out
}

/// Forks the worker's metrics process, serving on the listening socket `fd` until the parent
/// ends. Call it in the parent while it is single-threaded, before the first worker child.
/// `in_hand` says the id and start (Unix ms) of the task a child slot runs; `code` the limits the
/// worker's code set (the process follows the flow stream for the limits in force, as the children do).
/// One function on purpose: all the forked process does between `fork` and `_exit` (it never returns
/// to PHP) reads in one place, its three endpoints included.
pub fn fork_worker_process(
    fd: RawFd,
    stats: &Stats,
    in_hand: &(dyn Fn(usize) -> Option<(String, u64)> + Sync),
    settings: &Settings,
    topic: &str,
    expected: usize,
    code: &[Limit],
) -> std::io::Result<libc::pid_t> {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let parent_started = now_ms();
    // SAFETY: the caller forks from a single-threaded process (no runtime, no connection), so the
    // child starts from a consistent copy; it never returns to PHP and leaves with _exit.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => {
            // SAFETY: plain syscalls on this process: die with the parent, reset signal handling
            // inherited from PHP (this process runs no PHP code), and check the parent still lives.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != parent {
                    libc::_exit(0);
                }
                libc::signal(libc::SIGTERM, libc::SIG_DFL);
                libc::signal(libc::SIGINT, libc::SIG_IGN);
                libc::signal(libc::SIGHUP, libc::SIG_IGN);
                libc::signal(libc::SIGCHLD, libc::SIG_DFL);
                let mut all: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut all);
                libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
            }
            // SAFETY: `fd` is the listening socket the parent bound; this process owns its copy.
            let listener = unsafe { TcpListener::from_raw_fd(fd) };
            let names = Names::new(&settings.prefix);
            let queues = worker_queues(&names, topic);
            let reader = Mutex::new(Reader::new(settings.clone()));
            // SAFETY: getpid has no preconditions.
            let me = unsafe { libc::getpid() };
            let _announcer = announce(settings, &listener, "worker", vec![topic.to_string()], parent, parent_started);
            let flow = Watch::start(settings, topic, code.to_vec());
            let (host, address) =
                (procfs::hostname(), listener.local_addr().map(|a| a.to_string()).unwrap_or_default());
            let place = WorkerPlace {
                topic,
                host: &host,
                address: &address,
                expected,
                parent: (parent, parent_started),
                metrics: (me, now_ms()),
            };
            let cpu = Mutex::new(CpuWindow::default());
            let endpoints = Endpoints(|path: &str| match path {
                "/status.json" => {
                    let depths = reader.lock().read(&queues);
                    let in_force = flow.limits_with_sources();
                    let input =
                        readings::worker_input(&place, &stats.snap(), &in_force, depths, &mut cpu.lock(), in_hand);
                    json_response(&status::document(&input))
                }
                "/metrics" => {
                    let snap = stats.snap();
                    let depths = reader.lock().read(&queues);
                    let mut procs = vec![("parent".to_string(), String::new(), parent)];
                    procs.extend(snap.children.iter().map(|(slot, pid)| ("child".to_string(), slot.to_string(), *pid)));
                    let mut f = worker_families(topic, expected, &snap, &flow.limits_with_sources());
                    f.extend(process_families(&procs));
                    f.extend(queue_families(&depths));
                    Response::new(200, super::expo::CONTENT_TYPE, render(f))
                }
                "/healthz" => {
                    let running = stats.snap().children.len();
                    let up = reader.lock().read(&queues).up;
                    if running >= expected && up {
                        Response::text(200, format!("ok: {running} of {expected} children running, broker reachable\n"))
                    } else {
                        Response::text(
                            503,
                            format!(
                                "unhealthy: {running} of {expected} children running, broker {}\n",
                                if up { "reachable" } else { "unreachable" }
                            ),
                        )
                    }
                }
                _ => Response::text(404, NOT_FOUND),
            });
            // The process ends with its parent (or by SIGTERM): it serves until then.
            http::serve(&listener, &LIMITS, &endpoints, &|| false);
            // SAFETY: leaves this process without running the parent's exit handlers.
            unsafe { libc::_exit(0) }
        }
        pid => Ok(pid),
    }
}

/// The families of a consumer, from this process's counters.
pub fn consumer_families() -> Vec<Family> {
    vec![Family::new("ebats_consumer_messages", "Messages handled by the consumer, by outcome.", Kind::Counter)
        .with(&[("outcome", "handled")], Value::Int(get(&c::CONSUMER_HANDLED)))
        .with(&[("outcome", "failed")], Value::Int(get(&c::CONSUMER_FAILED)))]
}

/// What a scheduler or a consumer serves: its families for `/metrics`, its sums for `/status.json`.
pub struct Role {
    pub name: &'static str,
    pub families: fn() -> Vec<Family>,
    pub figures: fn() -> (Totals, serde_json::Map<String, serde_json::Value>),
}

pub const SCHEDULER: Role =
    Role { name: "scheduler", families: scheduler_families, figures: readings::scheduler_figures };
pub const CONSUMER: Role = Role { name: "consumer", families: consumer_families, figures: readings::consumer_figures };

/// The metrics server of a scheduler or a consumer, on a thread of its own (and its announcer, on
/// another); stopped when dropped.
pub struct ThreadServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _announcer: Option<Announcer>,
}

impl ThreadServer {
    /// Starts serving on `given`, else on the address of the setting `ebats.metrics_address`; `None`
    /// when neither is set. The error says what is wrong with the address or why it cannot be served.
    pub fn start_if_asked(
        given: Option<std::net::SocketAddr>,
        settings: &Settings,
        role: &'static Role,
        topics: Vec<String>,
        queues: Vec<(String, &'static str)>,
    ) -> Result<Option<ThreadServer>, String> {
        let Some(addr) = super::address(given, &settings.metrics_address)? else { return Ok(None) };
        let listener = super::bind(addr)?;
        let server = ThreadServer::start(listener, settings.clone(), role, topics, queues)
            .map_err(|e| format!("cannot start the metrics server: {e}"))?;
        crate::log::info(&format!("metrics on http://{addr}/metrics"));
        Ok(Some(server))
    }

    /// Serves the role's families with this process's CPU and memory and the depths of `queues`,
    /// and its status; announces it on the processes stream.
    pub fn start(
        listener: TcpListener,
        settings: Settings,
        role: &'static Role,
        topics: Vec<String>,
        queues: Vec<(String, &'static str)>,
    ) -> std::io::Result<ThreadServer> {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        let started = now_ms();
        let announcer = announce(&settings, &listener, role.name, topics.clone(), me, started);
        let thread = std::thread::Builder::new().name("ebats-metrics".into()).spawn(move || {
            let reader = Mutex::new(Reader::new(settings));
            let (host, address) = (procfs::hostname(), addr.to_string());
            let cpu = Mutex::new(CpuWindow::default());
            let endpoints = Endpoints(|path: &str| match path {
                "/status.json" => {
                    let place = ThreadPlace {
                        role: role.name,
                        topics: &topics,
                        host: &host,
                        address: &address,
                        pid: me,
                        started_ms: started,
                    };
                    let depths = reader.lock().read(&queues);
                    let input = readings::thread_input(&place, role.figures, depths, &mut cpu.lock());
                    json_response(&status::document(&input))
                }
                "/metrics" => {
                    let mut f = (role.families)();
                    f.extend(process_families(&[(role.name.into(), String::new(), me)]));
                    f.extend(queue_families(&reader.lock().read(&queues)));
                    Response::new(200, super::expo::CONTENT_TYPE, render(f))
                }
                "/healthz" => {
                    if reader.lock().read(&queues).up {
                        Response::text(200, "ok: broker reachable\n")
                    } else {
                        Response::text(503, "unhealthy: broker unreachable\n")
                    }
                }
                _ => Response::text(404, NOT_FOUND),
            });
            http::serve(&listener, &LIMITS, &endpoints, &|| flag.load(Ordering::Relaxed));
        })?;
        Ok(ThreadServer { stop, thread: Some(thread), _announcer: announcer })
    }
}

impl Drop for ThreadServer {
    fn drop(&mut self) {
        // The accept loop sees the flag within 100 ms, shuts its connections down and returns
        // without waiting on any client.
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_exposition_has_every_outcome() {
        let stats = Stats::new().unwrap();
        stats.child_started(0, 42);
        stats.task_begin(0, "ship", 0.2);
        stats.task_end(0, crate::outcome::STATE_SUCC, 0.003);
        let text = render(worker_families("demo", 2, &stats.snap(), &[]));
        for o in OUTCOMES {
            assert!(
                text.contains(&format!("ebats_tasks_total{{topic=\"demo\",task=\"ship\",outcome=\"{o}\"}}")),
                "{text}"
            );
        }
        assert!(text.contains("ebats_tasks_total{topic=\"demo\",task=\"ship\",outcome=\"succeeded\"} 1\n"), "{text}");
        assert!(text.contains("ebats_task_wait_seconds_count{topic=\"demo\"} 1\n"), "{text}");
        assert!(text.contains("ebats_worker_children{topic=\"demo\"} 1\n"), "{text}");
        assert!(text.contains("ebats_worker_child_starts_total{topic=\"demo\"} 1\n"), "{text}");
        assert!(text.contains("ebats_topic_paused{topic=\"demo\"} 0\n"), "{text}");
        assert!(text.contains("ebats_tasks_given_back_total{topic=\"demo\",reason=\"paused\"} 0\n"), "{text}");
        assert!(text.contains("ebats_tasks_held_back_total{topic=\"demo\",reason=\"rate\"} 0\n"), "{text}");
        assert!(text.contains("ebats_topic_limits{topic=\"demo\"} 0\n"), "{text}");
        stats.set_paused(0, true);
        stats.given_back();
        stats.held_back(crate::metrics::stats::Held::Concurrency);
        stats.duplicate();
        let limit = |spec| crate::flow::record::parse_limit("demo", &spec, true).unwrap();
        let in_force = [
            (limit(serde_json::json!({"rate": "600/m", "name": "send"})), Source::Code),
            (limit(serde_json::json!({"concurrency": 2, "key": "{c}"})), Source::RunTime),
        ];
        let text = render(worker_families("demo", 2, &stats.snap(), &in_force));
        assert!(text.contains("ebats_topic_paused{topic=\"demo\"} 1\n"), "{text}");
        assert!(text.contains("ebats_tasks_given_back_total{topic=\"demo\",reason=\"paused\"} 1\n"), "{text}");
        for line in [
            "ebats_tasks_held_back_total{topic=\"demo\",reason=\"concurrency\"} 1\n",
            "ebats_tasks_duplicate_total{topic=\"demo\"} 1\n",
            "ebats_topic_limits{topic=\"demo\"} 2\n",
            "ebats_topic_limit_rate{topic=\"demo\",limit=\"demo/send\",source=\"code\"} 10",
            "ebats_topic_limit_concurrency{topic=\"demo\",limit=\"demo/{{c}}\",source=\"run time\"} 2\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn queues_of_a_worker() {
        let q = worker_queues(&Names::new("p"), "t");
        assert_eq!(q.first().unwrap(), &("p.task.t".to_string(), "ready"));
        assert_eq!(q.last().unwrap(), &("p.failed.t".to_string(), "failed"));
        assert_eq!(q.len(), DELAY_LEVELS as usize + 2);
    }
}
