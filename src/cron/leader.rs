//! Taking part in leadership, and leading: a thread of the Scheduler process with its own connection.
//!
//! It publishes a token to `<prefix>.cron.leader` and consumes that queue (single active consumer, prefetch
//! 2). Holding a token unacked is leading; a second token that arrives is acked away. While leading it
//! folds the stream to its marker, appends the set of schedules declared in code, fires every due tick on
//! the token's channel (confirmed), follows the stream live for changes, and appends a snapshot every
//! minute. A stop closes the connection: the broker requeues the token for the next scheduler.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};

use super::catchup::{decide, State};
use super::firing::{may_fire, Firing};
use super::schedule::Schedule;
use super::state::{claims_too_much, CodeSet, Folder, Item, Record};
use super::stream::{self, now_ms, READ_BACK_SECS};
use super::ticks::{next_after, zoned};
use crate::broker::confirm::settle;
use crate::broker::consume::Backoff;
use crate::broker::names::Names;
use crate::broker::publisher;
use crate::broker::stream_read::Offset;
use crate::broker::{connection, stop, BrokerError, Decl, ErrorKind, Outgoing};
use crate::config::Settings;
use crate::log;
use crate::metrics::counters;

/// How often the leader looks at the stop token while nothing else happens.
const STOP_CHECK: Duration = Duration::from_millis(100);
const SNAPSHOT_EVERY: Duration = Duration::from_secs(60);

/// The leadership thread of a Scheduler.
pub struct Participant {
    quit: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// What stopped the thread for good (a declaration that clashes with what exists).
    failed: Arc<parking_lot::Mutex<Option<BrokerError>>>,
}

impl Participant {
    pub fn start(settings: Settings, code: CodeSet, rt: tokio::runtime::Handle) -> Participant {
        let quit = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(parking_lot::Mutex::new(None));
        let (q, f) = (quit.clone(), failed.clone());
        let thread = std::thread::Builder::new()
            .name("ebats-cron".into())
            .spawn(move || {
                if let Err(e) = rt.block_on(run(settings, code, q)) {
                    *f.lock() = Some(e);
                }
            })
            .ok();
        if thread.is_none() {
            log::error("cron: cannot start the leadership thread; this scheduler will not lead");
        }
        Participant { quit, thread, failed }
    }

    /// The error that ended the thread for good, once (the Scheduler stops on it).
    pub fn failed(&self) -> Option<BrokerError> {
        self.failed.lock().take()
    }

    /// Gives the token back and waits for the thread (it checks every 100 ms).
    pub fn stop(mut self) {
        self.quit.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn stopping(quit: &AtomicBool) -> bool {
    quit.load(Ordering::SeqCst) || stop::requested().is_some()
}

/// Takes part until a stop, trying again after failures (waiting as `Backoff` says); an error no retry
/// can help (a declaration that clashes with what exists) ends it.
async fn run(settings: Settings, code: CodeSet, quit: Arc<AtomicBool>) -> Result<(), BrokerError> {
    let mut backoff = Backoff::default();
    // The set declared in code is appended once per process, at its first connection.
    let mut code = Some(code);
    while !stopping(&quit) {
        match participate(&settings, &mut code, &mut backoff, &quit).await {
            Ok(()) => return Ok(()),
            Err(e) if e.kind().stops_process() => {
                log::error(&format!("cron: {e}; not trying again"));
                return Err(e);
            }
            Err(e) => {
                let wait = backoff.after(&e);
                log::error(&format!("cron: {e}; trying again in {} s", wait.as_secs_f64()));
                let until = Instant::now() + wait;
                while Instant::now() < until && !stopping(&quit) {
                    tokio::time::sleep(STOP_CHECK).await;
                }
            }
        }
    }
    Ok(())
}

/// `f`, cut short (with `Stopped`) by a stop, and bounded by `t`.
async fn bounded<T>(
    quit: &AtomicBool,
    t: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<T, BrokerError>>,
) -> Result<T, BrokerError> {
    let watch = async {
        while !stopping(quit) {
            tokio::time::sleep(STOP_CHECK).await;
        }
    };
    tokio::select! {
        r = tokio::time::timeout(t, f) => r.unwrap_or_else(|_| Err(BrokerError::timeout(t, what))),
        _ = watch => Err(BrokerError::new(ErrorKind::Stopped, format!("stopped while {what}"))),
    }
}

async fn publish(ch: &Channel, m: &Outgoing) -> Result<(), BrokerError> {
    settle(&m.sent(), publisher::send(ch, m).await?).await
}

/// The settings of the leadership connection: a third of the heartbeat timeout (at least 1 s; 0, off, stays
/// off). The broker gives the token to another scheduler only once it has closed the leader's connection,
/// and it closes a silent one (a leader paused by SIGSTOP, or cut off without a close) two to three
/// heartbeat timeouts after it last heard from it: at a third, that is within the timeout the settings
/// give (measured: 8.3 s at 10 s, 2.4 s at 3 s).
fn leadership(settings: &Settings) -> Settings {
    let mut s = settings.clone();
    if s.heartbeat > 0 {
        s.heartbeat = (s.heartbeat / 3).max(1);
    }
    s
}

/// One connection's life: follow, lead when the token comes, until a stop (Ok) or a failure (Err).
async fn participate(
    settings: &Settings,
    code: &mut Option<CodeSet>,
    backoff: &mut Backoff,
    quit: &AtomicBool,
) -> Result<(), BrokerError> {
    let names = Names::new(&settings.prefix);
    let t = settings.connect_timeout.max(settings.confirm_timeout);
    let conn =
        bounded(quit, connection::connect_budget(settings), "connecting", connection::connect(&leadership(settings)))
            .await;
    let conn = match conn {
        Err(e) if e.kind() == ErrorKind::Stopped => return Ok(()),
        r => r?,
    };
    let r = async {
        let token_ch = bounded(quit, t, "opening the leadership channel", async {
            Decl::declare_all(&conn, &[&Decl::Cron], &names, settings.queue_type).await?;
            let token_ch = connection::confirmed_channel(&conn).await?;
            // A token only when none waits in the queue: one waiting (given back by a scheduler that
            // left, or by this one's last connection) will come; one held by the leader is not counted,
            // and the leader acks a second one away. So reconnecting adds no token.
            let queue = names.cron_leader();
            let waiting = token_ch
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| BrokerError::lapin(&format!("cannot look at '{queue}'"), &e))?
                .message_count();
            if waiting == 0 {
                publish(&token_ch, &stream::token_message(&names)).await?;
            }
            if let Some(set) = code.as_ref().filter(|c| c.owner.is_some() || !c.defs.is_empty()) {
                let record = Record::Code { owner: set.owner.clone(), defs: set.defs.clone() };
                publish(&token_ch, &stream::record_message(&names, &record, now_ms())).await?;
            }
            *code = None;
            token_ch.basic_qos(2, BasicQosOptions::default()).await.map_err(|e| BrokerError::lapin("basic.qos failed", &e))?;
            Ok(token_ch)
        })
        .await?;
        let tag = format!("ebats-cron-{}", std::process::id());
        let queue = names.cron_leader();
        let mut tokens = token_ch
            .basic_consume(queue.as_str().into(), tag.as_str().into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
            .map_err(|e| BrokerError::lapin(&format!("cannot consume '{queue}'"), &e))?;
        backoff.reset();
        log::info(&format!("cron: taking part in leadership on '{queue}'"));
        let mut leading: Option<Leading> = None;
        loop {
            if stopping(quit) {
                if leading.is_some() {
                    log::info("cron: stopping; giving the leadership back");
                }
                return Ok(());
            }
            let wake = leading.as_ref().map(|l| l.wake).unwrap_or(STOP_CHECK).min(STOP_CHECK);
            let stream_next = async {
                match leading.as_mut() {
                    Some(l) => l.reader.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                d = tokens.next() => match d {
                    Some(Ok(d)) if leading.is_some() => {
                        // A second token (two schedulers started at once): one is enough.
                        d.acker.ack(BasicAckOptions::default()).await.map_err(|e| BrokerError::lapin("ack failed", &e))?;
                    }
                    Some(Ok(_held)) => {
                        leading = Some(bounded(quit, t.max(Duration::from_secs(30)), "taking over", Leading::take_over(&conn, &token_ch, &names)).await?);
                        counters::set_leader(true);
                    }
                    Some(Err(e)) => return Err(BrokerError::lapin("the leadership consumer failed", &e)),
                    None => return Err(BrokerError::new(ErrorKind::ConnectionLost, "the leadership consumer was closed")),
                },
                d = stream_next => {
                    let l = leading.as_mut().expect("reading only while leading");
                    match d {
                        Some(Ok(d)) => l.follow(d).await?,
                        Some(Err(e)) => return Err(BrokerError::lapin("reading the schedule stream failed", &e)),
                        None => return Err(BrokerError::new(ErrorKind::ConnectionLost, "the schedule stream reader was closed")),
                    }
                }
                _ = tokio::time::sleep(wake) => {}
            }
            if let Some(l) = leading.as_mut() {
                l.fire_due(&token_ch, &names).await?;
            }
        }
    }
    .await;
    // Whatever ended the loop, this process holds no token any more.
    counters::set_leader(false);
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.close(200, "bye".into())).await;
    if let Err(e) = &r {
        if e.kind() == ErrorKind::Stopped {
            return Ok(());
        }
    }
    r
}

struct Leading {
    folder: Folder,
    schedules: BTreeMap<String, Schedule>,
    handled: HashMap<String, i64>,
    reader_ch: Channel,
    reader: Consumer,
    last_offset: u64,
    last_snapshot: Instant,
    /// How long until the next tick (at most [`STOP_CHECK`] is waited anyway).
    wake: Duration,
    /// Records to append on the token's channel (skips, snapshots).
    outbox: Vec<Record>,
}

impl Leading {
    async fn take_over(conn: &Connection, token_ch: &Channel, names: &Names) -> Result<Leading, BrokerError> {
        let started = Instant::now();
        let marker = crate::wire::new_id();
        publish(token_ch, &stream::record_message(names, &Record::Marker { id: marker.clone() }, now_ms())).await?;
        let back = (now_ms() / 1000) as u64 - READ_BACK_SECS;
        let mut read = None;
        for from in [Offset::Time(back), Offset::First] {
            let ch = connection::channel(conn).await?;
            let tag = format!("ebats-cron-follow-{}", std::process::id());
            let mut reader = stream::open_reader(&ch, names, from, &tag).await?;
            let mut folder = Folder::new(now_ms());
            let last = stream::read_to_marker(&ch, &mut reader, &mut folder, &marker).await?;
            if from == Offset::First && folder.finish_from_first() {
                log::error(stream::STREAM_START_GONE);
            }
            if folder.complete {
                read = Some((folder, ch, reader, last.unwrap_or(0)));
                break;
            }
            let _ = ch.close(200, "no snapshot here".into()).await;
        }
        let Some((folder, reader_ch, reader, last_offset)) = read else {
            return Err(BrokerError::new(ErrorKind::Runtime, "the schedule stream could not be folded"));
        };
        let mut l = Leading {
            folder,
            schedules: BTreeMap::new(),
            handled: HashMap::new(),
            reader_ch,
            reader,
            last_offset,
            // The first snapshot right away.
            last_snapshot: Instant::now() - SNAPSHOT_EVERY,
            wake: Duration::ZERO,
            outbox: Vec::new(),
        };
        l.rebuild();
        let from_code = l.folder.fold.schedules.values().filter(|e| e.source == super::state::Source::Code).count();
        log::info(&format!(
            "cron: took over the leadership ({} schedule(s), {from_code} from code; stream read in {} ms)",
            l.schedules.len(),
            started.elapsed().as_millis()
        ));
        Ok(l)
    }

    /// The schedules to fire, rebuilt from the fold.
    fn rebuild(&mut self) {
        self.schedules.clear();
        for (name, e) in &self.folder.fold.schedules {
            match e.def.schedule() {
                Ok(s) => {
                    self.schedules.insert(name.clone(), s);
                }
                Err(err) => log::error(&format!("cron: schedule '{name}' cannot be used: {err}")),
            }
        }
        self.handled.retain(|name, _| self.folder.fold.schedules.contains_key(name));
    }

    /// A message read live from the stream.
    async fn follow(&mut self, d: lapin::message::Delivery) -> Result<(), BrokerError> {
        self.reader_ch
            .basic_ack(d.delivery_tag, BasicAckOptions { multiple: true })
            .await
            .map_err(|e| BrokerError::lapin("ack failed", &e))?;
        self.last_offset = stream::offset_of(&d).unwrap_or(self.last_offset);
        let now = now_ms();
        let item = match stream::item_of(&d) {
            // A change read live is timed by this leader's clock, not by its writer's: a writer's clock ahead
            // or behind neither delays a schedule nor makes a trigger look old.
            Ok(Item::Record(r, _, rid)) => Item::Record(r, now, rid),
            Ok(Item::Fired(f)) if claims_too_much(f.tick, now) => {
                log::error(&format!(
                    "cron: ignoring a firing of '{}' read from the schedule stream: its tick {} is too far ahead",
                    f.schedule, f.tick
                ));
                return Ok(());
            }
            Ok(item) => item,
            Err(e) => {
                log::error(&format!("cron: skipping a message of the schedule stream: {e}"));
                return Ok(());
            }
        };
        let changes = match &item {
            Item::Record(r, _, _) => {
                !matches!(r, Record::Skipped { .. } | Record::Marker { .. } | Record::Snapshot { .. })
            }
            _ => false,
        };
        if let Item::Record(r, _, _) = &item {
            if changes {
                log::info(&format!("cron: schedule change '{}' read", r.kind()));
            }
        }
        // A change refused (a name taken, a schedule gone) was answered to its writer, who folds it too.
        let _ = self.folder.fold.apply(&item);
        if changes {
            self.rebuild();
        }
        Ok(())
    }

    async fn fire_due(&mut self, token_ch: &Channel, names: &Names) -> Result<(), BrokerError> {
        let now = now_ms();
        let mut next_wake = i64::MAX;
        let names_now: Vec<String> = self.schedules.keys().cloned().collect();
        for name in names_now {
            let (s, entry) = match (self.schedules.get(&name), self.folder.fold.schedules.get(&name)) {
                (Some(s), Some(e)) => (s.clone(), e.clone()),
                _ => continue,
            };
            let recorded = self.folder.fold.last_tick.get(&name).copied();
            let last = self.handled.get(&name).copied().max(recorded);
            let state = State { last, active_since: entry.active_since, paused: entry.paused };
            let d = match decide(&s, &state, now) {
                Ok(d) => d,
                Err(e) => {
                    log::error(&format!("cron: schedule '{name}': {e}"));
                    continue;
                }
            };
            for (tick, late) in d.to_fire() {
                if !may_fire(self.folder.fold.last_tick.get(&name).copied(), tick) {
                    continue;
                }
                let firing = Firing::new(&name, tick, now_ms(), late);
                publish(token_ch, &stream::firing_message(names, &entry.def, &firing)).await?;
                self.folder.fold.fired(&firing);
                counters::cron_fired(&name);
                if late {
                    counters::cron_late(&name);
                }
                let when = zoned(&s, tick).map(|t| t.to_rfc3339()).unwrap_or_default();
                if late {
                    log::info(&format!(
                        "cron: fired '{name}' late: tick {when}, {} ms after it (catch-up), event '{}' id={}",
                        firing.lateness_ms(),
                        entry.def.event,
                        firing.event_id
                    ));
                } else {
                    log::info(&format!(
                        "cron: fired '{name}' tick {when} ({} ms), event '{}' id={}",
                        firing.lateness_ms(),
                        entry.def.event,
                        firing.event_id
                    ));
                }
            }
            if d.skipped.count > 0 {
                counters::cron_skipped(&name, d.skipped.count as u64);
                let at_least = if d.skipped.at_least { "at least " } else { "" };
                log::info(&format!(
                    "cron: skipped {at_least}{} missed tick(s) of '{name}' (older than its catch-up of {} s)",
                    d.skipped.count,
                    s.catchup_secs()
                ));
                self.outbox.push(Record::Skipped {
                    name: name.clone(),
                    count: d.skipped.count as u64,
                    oldest: d.skipped.oldest,
                    newest: d.skipped.newest,
                });
            }
            self.handled.insert(name.clone(), d.handled_through);
            if !entry.paused {
                if let Ok(Some(t)) = next_after(&s, d.handled_through) {
                    next_wake = next_wake.min(t);
                }
            }
        }
        self.fire_triggers(token_ch, names, now).await?;
        if self.last_snapshot.elapsed() >= SNAPSHOT_EVERY {
            self.last_snapshot = Instant::now();
            self.outbox.push(Record::Snapshot { through: self.last_offset, state: Box::new(self.folder.fold.clone()) });
        }
        for r in std::mem::take(&mut self.outbox) {
            publish(token_ch, &stream::record_message(names, &r, now_ms())).await?;
        }
        let wait = (next_wake.saturating_sub(now_ms())).max(0) as u64;
        self.wake = Duration::from_millis(wait);
        Ok(())
    }

    async fn fire_triggers(&mut self, token_ch: &Channel, names: &Names, now: i64) -> Result<(), BrokerError> {
        for t in self.folder.fold.triggers.clone() {
            let Some(entry) = self.folder.fold.schedules.get(&t.schedule).cloned() else { continue };
            let item = Item::Triggered { schedule: t.schedule.clone(), id: t.id.clone(), fired_at: now_ms() };
            if now - t.at > i64::from(entry.def.catchup) * 1000 + super::catchup::ON_TIME_MS {
                log::info(&format!(
                    "cron: skipped the trigger of '{}' asked {} ms ago (older than its catch-up)",
                    t.schedule,
                    now - t.at
                ));
                self.folder.fold.triggers.retain(|x| x.id != t.id);
                continue;
            }
            publish(token_ch, &stream::trigger_message(names, &entry.def, &t.id, now_ms())).await?;
            log::info(&format!("cron: fired '{}' on demand, event '{}' id={}", t.schedule, entry.def.event, t.id));
            let _ = self.folder.fold.apply(&item);
        }
        Ok(())
    }
}
