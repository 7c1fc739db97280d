//! Taking part in leadership, and leading: a thread of the Scheduler process with its own connection.
//!
//! It publishes a token to `<prefix>.cron.leader` and consumes that queue (single active consumer, prefetch
//! 2). Holding a token unacked is leading; a second token that arrives is acked away. While leading it
//! folds the stream to its marker, appends the set of schedules declared in code, fires every due tick on
//! the token's channel (confirmed), follows the stream live for changes, and appends a snapshot every
//! minute. It reads the groups stream up to a marker of its own meanwhile, and completes groups once it
//! has (`super::groups`): a stream holding many groups takes seconds to read, and the firings do not wait
//! for it. A stop closes the connection: the broker requeues the token for the next scheduler.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};

use super::groups::GroupsLeading;
use super::stream::{self, now_ms, READ_BACK_SECS};
use crate::broker::confirm::settle;
use crate::broker::consume::Backoff;
use crate::broker::names::Names;
use crate::broker::stop::Part;
use crate::broker::stream_read::{Delivery, Offset};
use crate::broker::{connection, consumer, BrokerError, Decl, ErrorKind, Outgoing};
use crate::broker::{group_stream, publisher};
use crate::config::Settings;
use crate::cron::catchup::{decide, State};
use crate::cron::firing::{may_fire, Firing};
use crate::cron::schedule::Schedule;
use crate::cron::state::{claims_too_much, CodeSet, Folder, Item, Record};
use crate::cron::ticks::{next_after, zoned};
use crate::log;
use crate::metrics::counters;

/// How often the leader looks at the stop token while nothing else happens.
const STOP_CHECK: Duration = Duration::from_millis(100);
const SNAPSHOT_EVERY: Duration = Duration::from_secs(60);

/// The leadership thread of a Scheduler.
pub struct Participant {
    /// Its stop: the process's stop token, or [`Participant::stop`].
    part: Part,
    thread: Option<JoinHandle<()>>,
    /// What stopped the thread for good (a declaration that clashes with what exists).
    failed: Arc<parking_lot::Mutex<Option<BrokerError>>>,
}

impl Participant {
    pub fn start(settings: Settings, code: CodeSet, rt: tokio::runtime::Handle) -> Participant {
        let part = Part::new();
        let failed = Arc::new(parking_lot::Mutex::new(None));
        let (p, f) = (part.clone(), failed.clone());
        let thread = std::thread::Builder::new()
            .name("ebats-cron".into())
            .spawn(move || {
                if let Err(e) = rt.block_on(run(settings, code, p)) {
                    *f.lock() = Some(e);
                }
            })
            .ok();
        if thread.is_none() {
            log::error("cron: cannot start the leadership thread; this scheduler will not lead");
        }
        Participant { part, thread, failed }
    }

    /// The error that ended the thread for good, once (the Scheduler stops on it).
    pub fn failed(&self) -> Option<BrokerError> {
        self.failed.lock().take()
    }

    /// Gives the token back and waits for the thread (it checks every 100 ms).
    pub fn stop(mut self) {
        self.part.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Takes part until a stop, trying again after failures (waiting as `Backoff` says); an error no retry
/// can help (a declaration that clashes with what exists) ends it.
async fn run(settings: Settings, code: CodeSet, part: Part) -> Result<(), BrokerError> {
    let mut backoff = Backoff::default();
    // The set declared in code is appended once per process, at its first connection.
    let mut code = Some(code);
    while !part.stopped() {
        match participate(&settings, &mut code, &mut backoff, &part).await {
            Ok(()) => return Ok(()),
            Err(e) if e.kind().stops_process() => {
                log::error(&format!("cron: {e}; not trying again"));
                return Err(e);
            }
            Err(e) => {
                let wait = backoff.after(&e);
                log::error(&format!("cron: {e}; trying again in {} s", wait.as_secs_f64()));
                part.pause(wait).await;
            }
        }
    }
    Ok(())
}

/// `f`, cut short (with `Stopped`) by a stop, and bounded by `t`.
async fn bounded<T>(
    part: &Part,
    t: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<T, BrokerError>>,
) -> Result<T, BrokerError> {
    tokio::select! {
        r = tokio::time::timeout(t, f) => r.unwrap_or_else(|_| Err(BrokerError::timeout(t, what))),
        _ = part.wait() => Err(BrokerError::new(ErrorKind::Stopped, format!("stopped while {what}"))),
    }
}

pub(super) async fn publish(ch: &Channel, m: &Outgoing) -> Result<(), BrokerError> {
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
    part: &Part,
) -> Result<(), BrokerError> {
    let conn =
        bounded(part, connection::connect_budget(settings), "connecting", connection::connect(&leadership(settings)))
            .await;
    let conn = match conn {
        Err(e) if e.kind() == ErrorKind::Stopped => return Ok(()),
        r => r?,
    };
    let r = async {
        let mut joined = Joined::open(&conn, settings, code, part).await?;
        backoff.reset();
        log::info(&format!("cron: taking part in leadership on '{}'", joined.names.cron_leader()));
        joined.take_part(&conn, part).await
    }
    .await;
    // Whatever ended the loop, this process holds no token any more.
    counters::set_leader(false);
    counters::set_groups(None);
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.close(200, "bye".into())).await;
    if let Err(e) = &r {
        if e.kind() == ErrorKind::Stopped {
            return Ok(());
        }
    }
    r
}

/// What wakes the leadership loop.
enum Wake {
    Token(Result<Delivery, BrokerError>),
    Stream(Result<Delivery, BrokerError>),
    Groups(Result<Delivery, BrokerError>),
    /// The groups stream was read up to the leader's marker: the groups are led from now on.
    GroupsTaken(Result<GroupsLeading, BrokerError>),
    Tick,
}

/// A leader's reading of the groups stream up to its marker, under way while the schedules already
/// fire: a stream holding many groups (an hour of them closed, each in every snapshot) takes seconds
/// to read, and the firings must not wait for it.
type TakingGroups<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<GroupsLeading, BrokerError>> + Send + 'a>>;

/// Taking part on one connection: the token's channel and its consumer, and the leading state once
/// the token came.
struct Joined {
    names: Names,
    /// How long a broker call may take.
    t: Duration,
    token_ch: Channel,
    tokens: Consumer,
    leading: Option<Leading>,
    /// Lines per group completed (`EBATS_DEBUG`).
    debug: bool,
}

impl Joined {
    /// Declares the leader queue and the stream, puts a token in when none waits, appends the set
    /// declared in code (once per process), and consumes the token queue.
    async fn open(
        conn: &Connection,
        settings: &Settings,
        code: &mut Option<CodeSet>,
        part: &Part,
    ) -> Result<Joined, BrokerError> {
        let names = Names::new(&settings.prefix);
        let t = settings.connect_timeout.max(settings.confirm_timeout);
        let queue = names.cron_leader();
        let tag = format!("ebats-cron-{}", std::process::id());
        let (token_ch, tokens) = bounded(part, t, "opening the leadership channel", async {
            Decl::declare_all(conn, &[&Decl::Cron, &Decl::Groups], &names, settings.queue_type).await?;
            let token_ch = connection::confirmed_channel(conn).await?;
            // A token only when none waits in the queue: one waiting (given back by a scheduler that
            // left, or by this one's last connection) will come; one held by the leader is not counted,
            // and the leader acks a second one away. So reconnecting adds no token.
            if consumer::waiting(&token_ch, &queue).await? == 0 {
                publish(&token_ch, &stream::token_message(&names)).await?;
            }
            if let Some(set) = code.as_ref().filter(|c| c.owner.is_some() || !c.defs.is_empty()) {
                let record = Record::Code { owner: set.owner.clone(), defs: set.defs.clone() };
                publish(&token_ch, &stream::record_message(&names, &record, now_ms())).await?;
            }
            *code = None;
            let context = format!("cannot consume '{queue}'");
            let tokens = consumer::open(&token_ch, &queue, 2, &tag, FieldTable::default(), &context).await?;
            Ok((token_ch, tokens))
        })
        .await?;
        Ok(Joined { names, t, token_ch, tokens, leading: None, debug: settings.debug })
    }

    /// Until a stop (Ok) or a failure: a token makes this process lead, the stream read live
    /// changes what it fires, and every wake fires what is due.
    async fn take_part(&mut self, conn: &Connection, part: &Part) -> Result<(), BrokerError> {
        let mut taking_groups: Option<TakingGroups> = None;
        loop {
            if part.stopped() {
                if self.leading.is_some() {
                    log::info("cron: stopping; giving the leadership back");
                }
                return Ok(());
            }
            match self.next_wake(&mut taking_groups).await {
                Wake::Token(d) => {
                    if self.token(d?, conn, part).await? {
                        taking_groups = Some(self.take_over_groups(conn));
                    }
                }
                Wake::Stream(d) => {
                    let l = self.leading.as_mut().expect("reading only while leading");
                    l.follow(d?).await?;
                }
                Wake::Groups(d) => {
                    let l = self.leading.as_mut().expect("reading only while leading");
                    l.groups.as_mut().expect("reading only once taken over").follow_all(d?).await?;
                }
                Wake::GroupsTaken(g) => {
                    taking_groups = None;
                    let l = self.leading.as_mut().expect("taking over only while leading");
                    l.groups = Some(g?);
                }
                Wake::Tick => {}
            }
            if let Some(l) = self.leading.as_mut() {
                l.fire_due(&self.token_ch, &self.names).await?;
                if let Some(g) = l.groups.as_mut() {
                    g.complete(&self.token_ch, &self.names).await?;
                }
            }
        }
    }

    /// How long reading a stream up to the leader's marker may take.
    fn take_over_within(&self) -> Duration {
        self.t.max(Duration::from_secs(30))
    }

    /// The groups stream read up to a marker of this leader's (`GroupsLeading::take_over`), bounded in
    /// time as the taking over of the schedules is.
    fn take_over_groups<'a>(&self, conn: &'a Connection) -> TakingGroups<'a> {
        let (ch, names, t, debug) = (self.token_ch.clone(), self.names.clone(), self.take_over_within(), self.debug);
        Box::pin(async move {
            let what = "taking over the groups";
            tokio::time::timeout(t, GroupsLeading::take_over(conn, &ch, &names, debug))
                .await
                .unwrap_or_else(|_| Err(BrokerError::timeout(t, what)))
        })
    }

    /// A token, the next message of the stream (while leading), or the time to look again (the next
    /// tick, at most [`STOP_CHECK`] away).
    async fn next_wake(&mut self, taking_groups: &mut Option<TakingGroups<'_>>) -> Wake {
        let wake = self.leading.as_ref().map(|l| l.wake).unwrap_or(STOP_CHECK).min(STOP_CHECK);
        let (reader, groups) = match self.leading.as_mut() {
            Some(l) => (Some(&mut l.reader), l.groups.as_mut().map(|g| &mut g.reader)),
            None => (None, None),
        };
        let taken = async {
            match taking_groups.as_mut() {
                Some(f) => f.await,
                None => std::future::pending().await,
            }
        };
        let stream_next = async {
            match reader {
                Some(r) => consumer::next(r, "schedule stream").await,
                None => std::future::pending().await,
            }
        };
        let groups_next = async {
            match groups {
                Some(r) => consumer::next(r, group_stream::WHAT).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            d = consumer::next(&mut self.tokens, "leadership queue") => Wake::Token(d),
            d = stream_next => Wake::Stream(d),
            d = groups_next => Wake::Groups(d),
            g = taken => Wake::GroupsTaken(g),
            _ = tokio::time::sleep(wake) => Wake::Tick,
        }
    }

    /// A token delivered: the first makes this process lead (true: the groups are to be taken over);
    /// a second one (two schedulers started at once) is acked away, one is enough.
    async fn token(&mut self, d: Delivery, conn: &Connection, part: &Part) -> Result<bool, BrokerError> {
        if self.leading.is_some() {
            consumer::ack(&self.token_ch, d.delivery_tag, false).await?;
            return Ok(false);
        }
        let taking = Leading::take_over(conn, &self.token_ch, &self.names);
        self.leading = Some(bounded(part, self.take_over_within(), "taking over", taking).await?);
        counters::set_leader(true);
        Ok(true)
    }
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
    /// The groups of tasks, completed by the leader once it read the groups stream up to its marker
    /// (none until then: the schedules fire meanwhile).
    groups: Option<GroupsLeading>,
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
            groups: None,
        };
        l.rebuild();
        let from_code =
            l.folder.fold.schedules.values().filter(|e| e.source == crate::cron::state::Source::Code).count();
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
    async fn follow(&mut self, d: Delivery) -> Result<(), BrokerError> {
        consumer::ack(&self.reader_ch, d.delivery_tag, true).await?;
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

    /// Fires every schedule's due ticks, then the triggers, then writes what it noted (skipped ticks,
    /// a snapshot now and then); sets when to wake next.
    async fn fire_due(&mut self, token_ch: &Channel, names: &Names) -> Result<(), BrokerError> {
        let now = now_ms();
        let mut next_wake = i64::MAX;
        let names_now: Vec<String> = self.schedules.keys().cloned().collect();
        for name in names_now {
            if let Some(wake) = self.fire_schedule(&name, token_ch, names, now).await? {
                next_wake = next_wake.min(wake);
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

    /// Fires the due ticks of schedule `name` (each once: `may_fire` against the last one recorded),
    /// notes the ticks it skipped; the time of its next tick, when it is active.
    async fn fire_schedule(
        &mut self,
        name: &str,
        token_ch: &Channel,
        names: &Names,
        now: i64,
    ) -> Result<Option<i64>, BrokerError> {
        let (s, entry) = match (self.schedules.get(name), self.folder.fold.schedules.get(name)) {
            (Some(s), Some(e)) => (s.clone(), e.clone()),
            _ => return Ok(None),
        };
        let recorded = self.folder.fold.last_tick.get(name).copied();
        let last = self.handled.get(name).copied().max(recorded);
        let state = State { last, active_since: entry.active_since, paused: entry.paused };
        let d = match decide(&s, &state, now) {
            Ok(d) => d,
            Err(e) => {
                log::error(&format!("cron: schedule '{name}': {e}"));
                return Ok(None);
            }
        };
        for (tick, late) in d.to_fire() {
            if !may_fire(self.folder.fold.last_tick.get(name).copied(), tick) {
                continue;
            }
            let firing = Firing::new(name, tick, now_ms(), late);
            publish(token_ch, &stream::firing_message(names, &entry.def, &firing)).await?;
            self.folder.fold.fired(&firing);
            counters::cron_fired(name);
            if late {
                counters::cron_late(name);
            }
            log_fired(&s, &entry.def.event, &firing);
        }
        if d.skipped.count > 0 {
            counters::cron_skipped(name, d.skipped.count as u64);
            let at_least = if d.skipped.at_least { "at least " } else { "" };
            log::info(&format!(
                "cron: skipped {at_least}{} missed tick(s) of '{name}' (older than its catch-up of {} s)",
                d.skipped.count,
                s.catchup_secs()
            ));
            self.outbox.push(Record::Skipped {
                name: name.to_string(),
                count: d.skipped.count as u64,
                oldest: d.skipped.oldest,
                newest: d.skipped.newest,
            });
        }
        self.handled.insert(name.to_string(), d.handled_through);
        if entry.paused {
            return Ok(None);
        }
        Ok(next_after(&s, d.handled_through).ok().flatten())
    }

    async fn fire_triggers(&mut self, token_ch: &Channel, names: &Names, now: i64) -> Result<(), BrokerError> {
        for t in self.folder.fold.triggers.clone() {
            let Some(entry) = self.folder.fold.schedules.get(&t.schedule).cloned() else { continue };
            let item = Item::Triggered { schedule: t.schedule.clone(), id: t.id.clone(), fired_at: now_ms() };
            if now - t.at > i64::from(entry.def.catchup) * 1000 + crate::cron::catchup::ON_TIME_MS {
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

/// The log line of a firing: on time, or late (a catch-up).
fn log_fired(s: &Schedule, event: &str, firing: &Firing) {
    let name = &firing.schedule;
    let when = zoned(s, firing.tick).map(|t| t.to_rfc3339()).unwrap_or_default();
    let id = &firing.event_id;
    if firing.late {
        log::info(&format!(
            "cron: fired '{name}' late: tick {when}, {} ms after it (catch-up), event '{event}' id={id}",
            firing.lateness_ms()
        ));
    } else {
        log::info(&format!("cron: fired '{name}' tick {when} ({} ms), event '{event}' id={id}", firing.lateness_ms()));
    }
}
