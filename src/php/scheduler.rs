//! `EventManager` (what tasks each event makes) and `Scheduler` (routes events to tasks).

use std::time::Duration;

use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendClassObject, Zval};
use parking_lot::Mutex;

use crate::broker::consume::After;
use crate::broker::names::Names;
use crate::broker::subscription;
use crate::broker::{Decl, Outgoing};
use crate::dispatch;
use crate::log;
use crate::metrics::counters;
use crate::php::args::bad_input;
use crate::php::args::{checked, int_arg, string_arg};
use crate::php::producer::{merge_decls, Task};
use crate::php::settings;
use crate::php::subscriber;
use crate::rules;
use crate::wire::TaskMsg;

#[derive(Clone, Debug, PartialEq)]
struct TaskDef {
    name: String,
    topic: String,
    delay: i64,
}

/// Registrations of this process, in the order they were made.
static REGISTRY: Mutex<Vec<(String, Vec<TaskDef>)>> = Mutex::new(Vec::new());

fn tasks_for(event: &str) -> Vec<TaskDef> {
    REGISTRY.lock().iter().find(|(e, _)| e == event).map(|(_, t)| t.clone()).unwrap_or_default()
}

#[php_class]
#[php(name = "Asynclib\\Ebats\\EventManager")]
pub struct EventManager;

#[php_impl]
impl EventManager {
    /// Registers task `$task_name` on `$topic` for `$event`, delayed by `$delay` seconds.
    pub fn register(event: &Zval, task_name: &Zval, topic: &Zval, delay: Option<&Zval>) -> PhpResult<()> {
        let event = string_arg(event, "Argument #1 ($event)")?;
        let task_name = string_arg(task_name, "Argument #2 ($task_name)")?;
        let topic = string_arg(topic, "Argument #3 ($topic)")?;
        let delay = int_arg(delay, 0, "Argument #4 ($delay)")?;
        checked(rules::check_event_name(&event))?;
        checked(rules::check_task_name(&task_name))?;
        checked(rules::check_topic(&topic))?;
        checked(rules::check_delay(delay))?;
        let def = TaskDef { name: task_name, topic, delay };
        let mut reg = REGISTRY.lock();
        match reg.iter_mut().find(|(e, _)| *e == event) {
            Some((_, defs)) => {
                if !defs.contains(&def) {
                    defs.push(def)
                }
            }
            None => reg.push((event, vec![def])),
        }
        Ok(())
    }

    /// Publishes `$event` with `$options` as its parameters at every tick of `$expression`; settings `name`,
    /// `timezone`, `catchup`. Returns the schedule's name.
    pub fn cron(expression: &Zval, event: &Zval, options: Option<&Zval>, settings: Option<&Zval>) -> PhpResult<String> {
        crate::php::schedules::declare_in_code(expression, event, options, settings)
    }

    /// Names the application whose schedules this process declares with cron(): a Scheduler of this
    /// process then appends them as that application's whole set (its schedules no longer declared are
    /// removed). Without an owner, declarations only add or change schedules.
    #[php(name = "cronOwner")]
    pub fn cron_owner(owner: &Zval) -> PhpResult<()> {
        crate::php::schedules::set_code_owner(owner)
    }

    /// The tasks registered for `$event` (each a Task with an empty params array).
    #[php(name = "getTasks")]
    pub fn get_tasks(event: String) -> PhpResult<Vec<Task>> {
        tasks_for(&event).iter().map(|d| Task::make(&d.topic, &d.name, d.delay)).collect()
    }

    /// The names of all events with registered tasks.
    #[php(name = "getEvents")]
    pub fn get_events() -> Vec<String> {
        REGISTRY.lock().iter().map(|(e, _)| e.clone()).collect()
    }
}

#[php_class]
#[php(name = "Asynclib\\Ebats\\Scheduler")]
pub struct Scheduler {
    prefetch: u16,
    metrics: Option<std::net::SocketAddr>,
}

/// The task messages one event makes (none for an event without tasks; an unreadable event goes to
/// the store of unreadable events, as it came), added to `decls` and `msgs`.
fn plan(
    settings: &crate::config::Settings,
    names: &Names,
    d: &lapin::message::Delivery,
    decls: &mut Vec<Decl>,
    msgs: &mut Vec<Outgoing>,
) {
    counters::taken();
    let body = &d.data;
    let content_type = d.properties.content_type().as_ref().map(|s| s.as_str());
    let message_id = d.properties.message_id().as_ref().map(|s| s.as_str());
    let event = match crate::wire::read_event(d.routing_key.as_str(), content_type, message_id, body) {
        Ok(e) => e,
        Err(e) => {
            let id = crate::wire::new_id();
            log::error(&format!(
                "scheduler moved an unreadable event to '{}' (id={id}): {e}",
                names.unreadable_events()
            ));
            let (ds, out) = dispatch::unreadable_event(names, &id, body, &e);
            merge_decls(decls, ds);
            msgs.push(out);
            counters::add(&counters::EVENTS_UNREADABLE, 1);
            return;
        }
    };
    let defs = tasks_for(&event.event);
    if defs.is_empty() {
        counters::add(&counters::EVENTS_UNKNOWN, 1);
        log::info(&format!("event '{}' id={} has no registered task; acked", event.event, event.id));
        return;
    }
    counters::add(&counters::EVENTS_ROUTED, 1);
    counters::add(&counters::TASKS_MADE, defs.len() as u64);
    for d in &defs {
        let mut t = TaskMsg::new(&d.topic, &d.name, event.params.clone(), d.delay as u64);
        t.event = Some(event.event.clone());
        t.event_id = Some(event.id.clone());
        let (ds, out) = dispatch::task(names, &t, d.delay as u64);
        merge_decls(decls, ds);
        msgs.push(out);
        if settings.debug {
            log::debug(&format!(
                "event '{}' id={} -> task {}/{} id={} delay={}s",
                event.event, event.id, d.topic, d.name, t.id, d.delay
            ));
        }
    }
}

#[php_impl]
impl Scheduler {
    pub const EXCHANGE_EVENT: &'static str = "ebats.core.event";
    pub const EXCHANGE_TASK: &'static str = "ebats.task.ready";
    pub const EXCHANGE_DELAY: &'static str = "ebats.task.delay";
    pub const QUEUE_EVENT: &'static str = "ebats.events";

    pub fn __construct() -> Self {
        Scheduler { prefetch: 256, metrics: None }
    }

    /// Serve `/metrics` (Prometheus) and `/healthz` on `ip:port` while running (default: the
    /// setting `ebats.metrics_address`; off when neither is set).
    #[php(name = "setMetricsAddress")]
    pub fn set_metrics_address(
        self_: &mut ZendClassObject<Scheduler>,
        address: String,
    ) -> PhpResult<&mut ZendClassObject<Scheduler>> {
        self_.metrics = Some(crate::metrics::parse_address(&address).map_err(bad_input)?);
        Ok(self_)
    }

    /// Consumes events and routes each to its tasks, until the process is stopped.
    pub fn run(&self) -> PhpResult<()> {
        let settings = settings::current()?;
        let names = Names::new(&settings.prefix);
        let queue = names.events_queue();
        let _metrics = crate::metrics::serve::ThreadServer::start_if_asked(
            self.metrics,
            &settings,
            &crate::metrics::serve::SCHEDULER,
            Vec::new(),
            vec![(queue.clone(), "events")],
        )
        .map_err(bad_input)?;
        log::info(&format!("scheduler consuming '{queue}' ({} event(s) registered)", REGISTRY.lock().len()));
        let tag = format!("ebats-scheduler-{}", std::process::id());
        // The events queue receives every registered event and every periodic schedule's event
        // (bound once per name on the original library's direct event exchange).
        let mut decls = vec![Decl::Events];
        let routed = REGISTRY.lock().iter().map(|(e, _)| e.clone()).collect::<Vec<_>>();
        let scheduled = crate::php::schedules::code_schedules().defs.into_iter().map(|d| d.event);
        merge_decls(&mut decls, routed.into_iter().chain(scheduled).map(Decl::EventRoute).collect());
        let subscription = subscription::Spec {
            settings: &settings,
            decls: &decls,
            queue: &queue,
            prefetch: self.prefetch,
            tag: &tag,
        };
        // Leadership of the periodic schedules, on a thread and a connection of its own.
        let rt = crate::broker::current::with_session(|s| Ok(s.handle())).map_err(crate::php::args::broker_err)?;
        let cron = crate::services::periodic::leader::Participant::start(
            settings.clone(),
            crate::php::schedules::code_schedules(),
            rt,
        );
        // An error the process must stop on, met while routing (the tasks' topology clashes).
        let fatal = std::cell::RefCell::new(None);
        let check = || fatal.borrow_mut().take().or_else(|| cron.failed());
        let r = subscriber::run_checking("scheduler", subscription, false, check, |sub, first| {
            // Route every event already here in one go: publish all their tasks, wait once for
            // the confirms, then ack the events.
            let mut batch = vec![first];
            while batch.len() < self.prefetch as usize {
                match sub.ready() {
                    Some(d) => batch.push(d),
                    None => break,
                }
            }
            let (mut decls, mut msgs) = (Vec::new(), Vec::new());
            for d in &batch {
                plan(&settings, &names, d, &mut decls, &mut msgs);
            }
            let last = batch.last().expect("at least one").delivery_tag;
            let sent = if msgs.is_empty() { Ok(()) } else { dispatch::send(&settings, &decls, &msgs) };
            match sent {
                Ok(()) => match sub.ack(last, true) {
                    Ok(()) => After::Next,
                    Err(e) => {
                        log::error(&format!("event ack failed: {e}"));
                        After::Reopen
                    }
                },
                Err(e) if e.kind().stops_process() => {
                    log::error(&format!("scheduler cannot route {} event(s): {e}; they go back", batch.len()));
                    let _ = sub.requeue(last, true);
                    *fatal.borrow_mut() = Some(e);
                    After::Next
                }
                Err(e) => {
                    log::error(&format!(
                        "scheduler could not publish the tasks of {} event(s): {e}; they go back",
                        batch.len()
                    ));
                    let _ = sub.requeue(last, true);
                    std::thread::sleep(Duration::from_millis(500));
                    After::Next
                }
            }
        });
        cron.stop();
        r
    }
}
