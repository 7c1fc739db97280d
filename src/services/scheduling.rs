//! Scheduling: the event registry of this process (which tasks each event makes) and the
//! Scheduler, which consumes events and routes each to its tasks.
//!
//! What an event makes is decided by [`route`] (pure, table-tested) and what a batch's send means
//! by [`after_send`]; [`run`] is the loop around them.

use std::net::SocketAddr;
use std::time::Duration;

use lapin::message::Delivery;
use parking_lot::Mutex;

use crate::broker::consume::{After, TICK};
use crate::broker::names::Names;
use crate::broker::subscription::{self, Subscription};
use crate::broker::{stop, BrokerError, Decl, Outgoing};
use crate::config::Settings;
use crate::cron::state::CodeSet;
use crate::dispatch::{self, merge_decls};
use crate::flow::unique::{made as made_of, Made, Unique};
use crate::group::state::Record;
use crate::group::{FollowUp, When};
use crate::log;
use crate::metrics::counters;
use crate::rules;
use crate::services::run::{self, Between, RunError};
use crate::wire::{EventMsg, TaskMsg, UniqueKey};
use serde_json::Value;

/// A task an event makes: its name, its topic, its delay in seconds, whether it is unique and the
/// limit it carries.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskDef {
    pub name: String,
    pub topic: String,
    pub delay: u64,
    pub unique: Option<Unique>,
    /// A limit its tasks carry (`flow::carried`).
    pub limit: Option<Value>,
}

/// Registrations of this process, in the order they were made.
static REGISTRY: Mutex<Vec<(String, Vec<TaskDef>)>> = Mutex::new(Vec::new());

/// Registers task `task_name` on `topic` for `event`, delayed by `delay` seconds, with `options`
/// (`unique`, `unique_for`: see `flow::unique`; `limit`: `flow::carried`) (a registration made before is
/// kept once). The error
/// says which value breaks which rule.
pub fn register(event: String, task_name: String, topic: String, delay: i64, options: &Value) -> Result<(), String> {
    rules::check_event_name(&event)?;
    rules::check_task_name(&task_name)?;
    rules::check_topic(&topic)?;
    let delay = rules::check_delay(delay)?;
    let unique = Unique::from_options(options)?;
    let limit = crate::flow::carried::from_options(&topic, &task_name, options)?;
    let def = TaskDef { name: task_name, topic, delay, unique, limit };
    let mut reg = REGISTRY.lock();
    match reg.iter_mut().find(|(e, _)| *e == event) {
        Some((_, defs)) if defs.contains(&def) => {}
        Some((_, defs)) => defs.push(def),
        None => reg.push((event, vec![def])),
    }
    Ok(())
}

/// Follow-ups registered, by event, in the order they were registered.
static FOLLOW_UPS: Mutex<Vec<(String, Vec<FollowUp>)>> = Mutex::new(Vec::new());

/// Registers `follow_up` to be published once every task `event` made has ended, on the condition
/// `when` (`success`/`then`, `failure`/`catch`, `always`/`finally`): the tasks of each such event become a
/// group (`crate::group`). A registration made before is kept once.
pub fn then(event: String, follow_up: String, when: &str) -> Result<(), String> {
    rules::check_event_name(&event)?;
    rules::check_event_name(&follow_up)?;
    let f = FollowUp { when: When::parse(when)?, event: follow_up };
    let mut reg = FOLLOW_UPS.lock();
    match reg.iter_mut().find(|(e, _)| *e == event) {
        Some((_, fs)) if fs.contains(&f) => {}
        Some((_, fs)) => fs.push(f),
        None => reg.push((event, vec![f])),
    }
    Ok(())
}

/// The follow-ups registered for `event`.
pub fn follow_ups_for(event: &str) -> Vec<FollowUp> {
    FOLLOW_UPS.lock().iter().find(|(e, _)| e == event).map(|(_, f)| f.clone()).unwrap_or_default()
}

/// The tasks registered for `event`, in the order they were registered.
pub fn tasks_for(event: &str) -> Vec<TaskDef> {
    REGISTRY.lock().iter().find(|(e, _)| e == event).map(|(_, t)| t.clone()).unwrap_or_default()
}

/// The names of all events with registered tasks, in the order they were first registered.
pub fn events() -> Vec<String> {
    REGISTRY.lock().iter().map(|(e, _)| e.clone()).collect()
}

/// The lines about events no task is registered for ([`log::Throttle`]).
static UNKNOWN: once_cell::sync::Lazy<parking_lot::Mutex<log::Throttle>> =
    once_cell::sync::Lazy::new(|| parking_lot::Mutex::new(log::Throttle::new(std::time::Duration::from_secs(60))));

/// What one delivered event becomes.
#[derive(Debug)]
pub enum Route {
    /// The body could not be read (the reason): it goes to the store of unreadable events, as it came.
    Unreadable(String),
    /// No task is registered for the event: it is acked and nothing is sent.
    Unknown(EventMsg),
    /// The tasks it makes (each with a new id, the event's params, name and id), in registration order;
    /// with follow-ups registered, they are a group (ids derived from the event's id, the group's
    /// `open` record to append with them).
    Tasks(EventMsg, Vec<TaskMsg>, Option<Record>),
}

/// What an event read (or not) from a body makes, given the tasks and follow-ups registered for it.
/// A unique task carries its key (none when the params give none: it is made as a plain task). The
/// tasks of a group and unique tasks take ids derived from the event's (`group::member_id`), the same
/// each time the event is routed. Pure but for the other tasks' ids and the times.
pub fn route(read: Result<EventMsg, String>, defs: &[TaskDef], on: &[FollowUp]) -> Route {
    let event = match read {
        Ok(e) => e,
        Err(reason) => return Route::Unreadable(reason),
    };
    if defs.is_empty() {
        return Route::Unknown(event);
    }
    let tasks = defs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut t = TaskMsg::new(&d.topic, &d.name, event.params.clone(), d.delay);
            t.event = Some(event.event.clone());
            t.event_id = Some(event.id.clone());
            t.limit = d.limit.clone();
            if let Some(u) = &d.unique {
                // Routed again (its tasks could not all be sent), it finds the key it took its own.
                t.unique = u.key_of(&event.params).ok();
                t.id = crate::group::member_id(&event.id, i);
            }
            t
        })
        .collect::<Vec<_>>();
    if on.is_empty() {
        return Route::Tasks(event, tasks, None);
    }
    let mut tasks = tasks;
    for (i, t) in tasks.iter_mut().enumerate() {
        t.id = crate::group::member_id(&event.id, i);
    }
    let open = crate::group::open(&event.id, &mut tasks, on.to_vec(), event.params.clone(), &event.event);
    Route::Tasks(event, tasks, Some(open))
}

/// What happens to a batch of events once their tasks were sent (or not).
#[derive(Debug, PartialEq, Eq)]
pub enum Settle {
    /// Every task is confirmed: ack the events.
    Ack,
    /// The tasks' topology clashes: the events go back and the process stops with the error.
    RequeueAndStop,
    /// Sending failed for now: the events go back and the loop pauses before the next batch.
    RequeueAfter(Duration),
}

/// The pause after a batch whose tasks could not be sent.
pub const SEND_PAUSE: Duration = Duration::from_millis(500);

/// What a batch's send result means for its events.
pub fn after_send(sent: &Result<(), BrokerError>) -> Settle {
    match sent {
        Ok(()) => Settle::Ack,
        Err(e) if e.kind().stops_process() => Settle::RequeueAndStop,
        Err(_) => Settle::RequeueAfter(SEND_PAUSE),
    }
}

/// Keys taken by tasks of a batch of events (task id, topic, key), released when the batch's tasks
/// could not be sent (its events go back and are routed again).
type Taken = Vec<(String, String, UniqueKey)>;

/// Adds what one delivered event makes to `decls` and `msgs` (nothing for an event without tasks;
/// an unreadable event goes to the store of unreadable events, as it came) and its group's `open` record
/// to `opens`, counting and logging it.
/// A unique task takes its key first and is dropped (counted) when another task holds it.
fn plan(
    settings: &Settings,
    names: &Names,
    d: &Delivery,
    decls: &mut Vec<Decl>,
    msgs: &mut Vec<Outgoing>,
    opens: &mut Vec<Record>,
    taken: &mut Taken,
) -> Result<(), BrokerError> {
    counters::taken();
    let content_type = d.properties.content_type().as_ref().map(|s| s.as_str());
    let message_id = d.properties.message_id().as_ref().map(|s| s.as_str());
    let read = crate::wire::read_event(d.routing_key.as_str(), content_type, message_id, &d.data);
    let defs = read.as_ref().map(|e| tasks_for(&e.event)).unwrap_or_default();
    let on = read.as_ref().map(|e| follow_ups_for(&e.event)).unwrap_or_default();
    match route(read, &defs, &on) {
        Route::Unreadable(reason) => {
            let id = crate::wire::new_id();
            log::error(&format!(
                "scheduler moved an unreadable event to '{}' (id={id}): {reason}",
                names.unreadable_events()
            ));
            let (ds, out) = dispatch::unreadable_event(names, &id, &d.data, &reason);
            merge_decls(decls, ds);
            msgs.push(out);
            counters::add(&counters::EVENTS_UNREADABLE, 1);
        }
        Route::Unknown(event) => {
            counters::add(&counters::EVENTS_UNKNOWN, 1);
            // A line per name a minute at most (each is counted in the metrics): events no task is
            // registered for may come at the rate of events (a group's follow-up no task is for).
            let now = std::time::Instant::now();
            let admitted =
                if settings.debug { Some(String::new()) } else { UNKNOWN.lock().admit_said(&event.event, now) };
            if let Some(more) = admitted {
                log::info(&format!("event '{}' id={} has no registered task; acked{more}", event.event, event.id));
            }
        }
        Route::Tasks(event, tasks, open) => {
            counters::add(&counters::EVENTS_ROUTED, 1);
            let mut made = Vec::with_capacity(tasks.len());
            for (t, def) in tasks.into_iter().zip(&defs) {
                if let Some(key) = &t.unique {
                    let took = crate::broker::unique::take(settings, &t.topic, key, &t.id)?;
                    if let Made::Duplicate(holder) = made_of(&t.id, took) {
                        counters::duplicate(&t.topic);
                        log::info(&format!(
                            "event '{}' id={}: task {}/{} not made, its unique key '{}' is held by task {holder}",
                            event.event, event.id, t.topic, t.name, key.key
                        ));
                        continue;
                    }
                    taken.push((t.id.clone(), t.topic.clone(), key.clone()));
                } else if def.unique.is_some() {
                    log::error(&format!(
                        "event '{}' id={}: task {}/{} made without its unique key: the event's params give none",
                        event.event, event.id, t.topic, t.name
                    ));
                }
                made.push(t);
            }
            if let Some(open) = open {
                // A member not made (a duplicate) is not waited for.
                opens.push(crate::group::only_members(open, &made));
            }
            counters::add(&counters::TASKS_MADE, made.len() as u64);
            for t in &made {
                let (ds, out) = dispatch::task(names, t, t.delay);
                merge_decls(decls, ds);
                msgs.push(out);
                if settings.debug {
                    log::debug(&format!(
                        "event '{}' id={} -> task {}/{} id={} delay={}s",
                        event.event, event.id, t.topic, t.name, t.id, t.delay
                    ));
                }
            }
        }
    }
    Ok(())
}

/// How a Scheduler runs.
pub struct Options {
    /// How many events it takes at once (and routes in one go).
    pub prefetch: u16,
    /// Where it serves `/metrics` and `/healthz` (else the setting `ebats.metrics_address`).
    pub metrics: Option<SocketAddr>,
}

/// The declarations of the events queue: it receives every registered event and every periodic
/// schedule's event (bound once per name on the original library's direct event exchange).
fn events_decls(code: &CodeSet) -> Vec<Decl> {
    let mut decls = vec![Decl::Events];
    let scheduled = code.defs.iter().map(|d| d.event.clone());
    merge_decls(&mut decls, events().into_iter().chain(scheduled).map(Decl::EventRoute).collect());
    decls
}

/// Routes every event already here in one go: publishes all their tasks, waits once for the
/// confirms, then acks the events (or gives them back). An error the process must stop on is put
/// in `fatal`.
fn route_batch(
    settings: &Settings,
    names: &Names,
    prefetch: u16,
    sub: &mut Subscription,
    first: Delivery,
    fatal: &mut Option<BrokerError>,
) -> After<()> {
    let mut batch = vec![first];
    while batch.len() < prefetch as usize {
        match sub.ready() {
            Some(d) => batch.push(d),
            None => break,
        }
    }
    let (mut decls, mut msgs, mut opens, mut taken) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let planned =
        batch.iter().try_for_each(|d| plan(settings, names, d, &mut decls, &mut msgs, &mut opens, &mut taken));
    if let Some(opens) = Record::batch(opens) {
        // The groups of the batch opened by one record, ahead of their tasks on the channel, in the same
        // confirmed send (`crate::group`).
        merge_decls(&mut decls, vec![Decl::Groups]);
        msgs.insert(0, crate::broker::group_stream::record_message(names, &opens));
    }
    let last = batch.last().expect("at least one").delivery_tag;
    let sent = match planned {
        Err(e) => Err(e),
        Ok(()) if msgs.is_empty() => Ok(()),
        Ok(()) => dispatch::send(settings, &decls, &msgs),
    };
    if sent.is_err() {
        release(settings, taken);
    }
    match after_send(&sent) {
        Settle::Ack => match sub.ack(last, true) {
            Ok(()) => After::Next,
            Err(e) => {
                log::error(&format!("event ack failed: {e}"));
                After::Reopen
            }
        },
        Settle::RequeueAndStop => {
            let e = sent.err();
            let shown = e.as_ref().map(ToString::to_string).unwrap_or_default();
            log::error(&format!("scheduler cannot route {} event(s): {shown}; they go back", batch.len()));
            let _ = sub.requeue(last, true);
            *fatal = e;
            After::Next
        }
        Settle::RequeueAfter(pause) => {
            let shown = sent.err().map(|e| e.to_string()).unwrap_or_default();
            log::error(&format!(
                "scheduler could not publish the tasks of {} event(s): {shown}; they go back",
                batch.len()
            ));
            let _ = sub.requeue(last, true);
            stop::pause(pause, TICK, || false);
            After::Next
        }
    }
}

/// Releases the keys a batch took for tasks it could not send (best effort: a key not released frees
/// itself after its lifetime; routed again, the event's task finds it its own).
fn release(settings: &Settings, taken: Taken) {
    for (id, topic, key) in taken {
        if let Err(e) = crate::broker::unique::release(settings, &topic, &key, &id) {
            log::error(&format!("scheduler could not release the unique key '{}' of task {id}: {e}", key.key));
        }
    }
}

/// Consumes events and routes each to its tasks, until the process is stopped; also takes part
/// in the leadership of the periodic schedules (a thread and a connection of its own).
pub fn run(settings: &Settings, options: Options, between: &mut dyn Between) -> Result<(), RunError> {
    let names = Names::new(&settings.prefix);
    let queue = names.events_queue();
    let _metrics = crate::metrics::serve::ThreadServer::start_if_asked(
        options.metrics,
        settings,
        &crate::metrics::serve::SCHEDULER,
        Vec::new(),
        vec![(queue.clone(), "events")],
    )
    .map_err(RunError::Setup)?;
    log::info(&format!("scheduler consuming '{queue}' ({} event(s) registered)", REGISTRY.lock().len()));
    let tag = format!("ebats-scheduler-{}", std::process::id());
    // The periodic schedules this process declared in code, appended when it starts.
    let code = super::schedules::code_schedules();
    let decls = events_decls(&code);
    let subscription =
        subscription::Spec { settings, decls: &decls, queue: &queue, prefetch: options.prefetch, tag: &tag };
    let rt = crate::broker::current::with_session(|s| Ok(s.handle()))?;
    let cron = super::periodic::leader::Participant::start(settings.clone(), code, rt);
    // An error the process must stop on, met while routing (the tasks' topology clashes).
    let fatal = std::cell::RefCell::new(None);
    let check = || fatal.borrow_mut().take().or_else(|| cron.failed());
    let r = run::until_stopped("scheduler", subscription, false, between, check, |sub, first| {
        route_batch(settings, &names, options.prefetch, sub, first, &mut fatal.borrow_mut())
    });
    cron.stop();
    Ok(r?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::broker::ErrorKind;

    fn def(name: &str, topic: &str, delay: u64) -> TaskDef {
        TaskDef { name: name.into(), topic: topic.into(), delay, unique: None, limit: None }
    }

    fn event(name: &str, id: &str) -> EventMsg {
        EventMsg { id: id.into(), event: name.into(), params: json!({"a": 1}), created_at: 1.0 }
    }

    /// (topic, name, delay, params, event, event id) of each task made.
    type Made = Vec<(String, String, u64, serde_json::Value, Option<String>, Option<String>)>;

    /// What is read, the tasks registered, what the event becomes and the tasks it makes.
    type Row = (Result<EventMsg, String>, Vec<TaskDef>, &'static str, Made);

    fn made(r: &Route) -> (&'static str, Made) {
        match r {
            Route::Unreadable(_) => ("unreadable", vec![]),
            Route::Unknown(_) => ("unknown", vec![]),
            Route::Tasks(_, ts, _) => (
                "tasks",
                ts.iter()
                    .map(|t| {
                        (
                            t.topic.clone(),
                            t.name.clone(),
                            t.delay,
                            t.params.clone(),
                            t.event.clone(),
                            t.event_id.clone(),
                        )
                    })
                    .collect(),
            ),
        }
    }

    #[test]
    fn what_an_event_makes() {
        let task = |topic: &str, name: &str, delay| {
            (topic.to_string(), name.to_string(), delay, json!({"a": 1}), Some("paid".into()), Some("e1".into()))
        };
        let table: Vec<Row> = vec![
            (Err("not JSON".into()), vec![def("mail", "shop", 0)], "unreadable", vec![]),
            (Ok(event("paid", "e1")), vec![], "unknown", vec![]),
            (Ok(event("paid", "e1")), vec![def("mail", "shop", 0)], "tasks", vec![task("shop", "mail", 0)]),
            (
                Ok(event("paid", "e1")),
                vec![def("mail", "shop", 0), def("invoice", "billing", 30), def("remind", "shop", 86400)],
                "tasks",
                vec![task("shop", "mail", 0), task("billing", "invoice", 30), task("shop", "remind", 86400)],
            ),
        ];
        for (read, defs, kind, tasks) in table {
            let r = route(read, &defs, &[]);
            assert_eq!(made(&r), (kind, tasks), "{defs:?}");
            if let Route::Tasks(_, ts, _) = &r {
                let mut ids: Vec<_> = ts.iter().map(|t| t.id.clone()).collect();
                ids.dedup();
                assert_eq!(ids.len(), ts.len(), "every task has an id of its own");
                assert!(ts.iter().all(|t| t.attempt == 1));
            }
        }
    }

    #[test]
    fn an_event_with_follow_ups_makes_a_group_of_its_tasks_under_derived_ids() {
        let on = vec![FollowUp { when: When::Always, event: "fulfilled".into() }];
        let defs = vec![def("mail", "shop", 0), def("invoice", "billing", 30)];
        let routed = |id: &str| match route(Ok(event("paid", id)), &defs, &on) {
            Route::Tasks(_, ts, Some(open)) => (ts, open),
            other => panic!("{other:?}"),
        };
        let (ts, open) = routed("e1");
        assert_eq!(ts.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["e1.0", "e1.1"]);
        assert!(ts.iter().all(|t| t.group.as_deref() == Some("e1")));
        let Record::Open { group, members, origin, .. } = &open else { panic!("{open:?}") };
        assert_eq!(
            (group.as_str(), members.clone(), origin.as_str()),
            ("e1", vec!["e1.0".into(), "e1.1".into()], "paid")
        );
        // Routed again (the Scheduler died before its ack): the same group and members.
        assert_eq!(routed("e1").1, open);
        assert!(matches!(route(Ok(event("paid", "e1")), &defs, &[]), Route::Tasks(_, _, None)));
    }

    #[test]
    fn follow_ups_are_registered_once_and_checked() {
        let ev = "scheduling.unit.then";
        then(ev.into(), "after".into(), "then").unwrap();
        then(ev.into(), "after".into(), "success").unwrap();
        then(ev.into(), "failed".into(), "catch").unwrap();
        assert_eq!(follow_ups_for(ev).len(), 2);
        assert!(then(ev.into(), "x".into(), "later").is_err());
        assert!(then(ev.into(), "".into(), "always").is_err());
        assert!(follow_ups_for("scheduling.unit.none").is_empty());
    }

    #[test]
    fn a_unique_task_of_an_event_carries_its_key_and_a_stable_id() {
        let unique = Some(Unique::new("order:{a}", Some(60)).unwrap());
        let defs = [TaskDef { unique: unique.clone(), ..def("mail", "shop", 0) }, def("log", "shop", 0)];
        let routed = |e: EventMsg| match route(Ok(e), &defs, &[]) {
            Route::Tasks(_, ts, _) => ts,
            r => panic!("{r:?}"),
        };
        let once = routed(event("paid", "e1"));
        let again = routed(event("paid", "e1"));
        assert_eq!(once[0].unique.as_ref().map(|k| (k.key.as_str(), k.for_secs)), Some(("order:1", 60)));
        assert_eq!(once[0].id, again[0].id, "routed again: the same id");
        assert_ne!(once[0].id, routed(event("paid", "e2"))[0].id, "another event: another id");
        assert_eq!(once[1].unique, None);
        assert_ne!(once[1].id, again[1].id, "a plain task: a new id each time");
        let keyless = EventMsg { params: json!({"b": 1}), ..event("paid", "e3") };
        assert_eq!(routed(keyless)[0].unique, None, "no key in the params: made without one");
    }

    #[test]
    fn what_a_send_means_for_the_events() {
        let err = |k| Err(BrokerError::new(k, "x"));
        let table = [
            (Ok(()), Settle::Ack),
            (err(ErrorKind::Inequivalent), Settle::RequeueAndStop),
            (err(ErrorKind::ConnectionLost), Settle::RequeueAfter(SEND_PAUSE)),
            (err(ErrorKind::Nacked), Settle::RequeueAfter(SEND_PAUSE)),
            (err(ErrorKind::Timeout), Settle::RequeueAfter(SEND_PAUSE)),
            (err(ErrorKind::AccessRefused), Settle::RequeueAfter(SEND_PAUSE)),
        ];
        for (sent, settle) in table {
            assert_eq!(after_send(&sent), settle, "{sent:?}");
        }
    }

    #[test]
    fn registry_keeps_order_and_one_of_each() {
        let ev = "scheduling.unit.registry";
        let none = json!([]);
        register(ev.into(), "a".into(), "t".into(), 0, &none).unwrap();
        register(ev.into(), "b".into(), "t".into(), 5, &none).unwrap();
        register(ev.into(), "a".into(), "t".into(), 0, &none).unwrap();
        assert_eq!(tasks_for(ev), vec![def("a", "t", 0), def("b", "t", 5)]);
        assert!(events().iter().any(|e| e == ev));
        assert!(tasks_for("scheduling.unit.none").is_empty());
        let bad = [("", "a", "t", 0), (ev, "", "t", 0), (ev, "a", "", 0), (ev, "a", "t", -1)];
        for (e, n, t, d) in bad {
            assert!(register(e.into(), n.into(), t.into(), d, &none).is_err(), "{e:?} {n:?} {t:?} {d}");
        }
        assert!(register(ev.into(), "a".into(), "t".into(), 0, &json!({"unique": "{"})).is_err());
        assert_eq!(tasks_for(ev).len(), 2, "a refused registration adds nothing");
    }
}
