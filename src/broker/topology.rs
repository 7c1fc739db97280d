//! What ebats declares on the broker. Every declaration is durable and idempotent; the session
//! runs each once per connection.

use lapin::options::{ExchangeBindOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, ExchangeKind};

use super::connection;
use super::error::{BrokerError, ErrorKind};
use super::names::{delay_level_pattern, Names, DELAY_LEVELS};
use crate::config::QueueType;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decl {
    /// The event exchange and the events queue. An event exchange that exists as the original
    /// library's `direct` exchange is adopted (see [`EventExchange`]).
    Events,
    /// The events queue receives the event of this name: nothing more on ebats's fanout event
    /// exchange; on the original's `direct` one, a binding with the name as key.
    EventRoute(String),
    /// The task exchange and one topic's ready queue, also bound to the delay levels' exit.
    Topic(String),
    /// The delay levels.
    Delay,
    /// One topic's failed store.
    Failed(String),
    /// The store of event bodies the scheduler could not read.
    UnreadableEvents,
    /// A queue holding what a generic consumer could not handle.
    ConsumerFailed(String),
    /// A user's exchange (for `Core\Publish` and `Core\Consumer`).
    Exchange { name: String, kind: String },
    /// A user's queue bound to a user's exchange with these keys.
    BoundQueue { queue: String, exchange: String, keys: Vec<String> },
    /// The periodic schedules: their stream, the leadership queue and the firing exchange (bound to
    /// the stream and to the event exchange, so a firing reaches both or neither).
    Cron,
    /// The stream where processes serving metrics announce themselves.
    Processes,
    /// The stream of execution records, with its retention (`x-max-age`, `x-max-length-bytes` when
    /// not 0). One that exists with other arguments is refused by the broker: an error naming it.
    History { max_age: String, max_bytes: u64 },
    /// The stream of paused topics (`flow::pause`), kept to a size (see `src/flow/mod.rs`).
    Flow,
    /// The stream of groups of tasks and the exchange of their follow-ups (bound to the stream and to
    /// the event exchange, so a follow-up reaches both or neither; see `src/group/mod.rs`).
    Groups,
}

/// Stream retention: segments whose every record is older than this are deleted (the leader appends
/// a snapshot of the whole state every minute, so the newest segment always holds one).
pub const CRON_MAX_AGE: &str = "7D";
/// Segment size of the stream: retention deletes whole segments.
pub const CRON_SEGMENT_BYTES: i64 = 16 * 1024 * 1024;
/// Retention of the processes stream: announcements are read a minute back at most.
pub const PROCESSES_MAX_AGE: &str = "1h";
pub const PROCESSES_SEGMENT_BYTES: i64 = 1024 * 1024;
pub const PROCESSES_MAX_BYTES: i64 = 8 * 1024 * 1024;
/// Retention of the stream of paused topics: by size only (a pause lasts as long as it lasts).
pub const FLOW_SEGMENT_BYTES: i64 = 1024 * 1024;
pub const FLOW_MAX_BYTES: i64 = 4 * 1024 * 1024;
/// Retention of the groups stream: the leader appends a snapshot of the groups in flight every minute
/// while they change, so what retention deletes is always covered by a newer snapshot.
pub const GROUPS_MAX_AGE: &str = "7D";
pub const GROUPS_SEGMENT_BYTES: i64 = 16 * 1024 * 1024;

fn stream_args(max_age: &str, segment: i64, max_bytes: Option<i64>) -> FieldTable {
    let mut a = FieldTable::default();
    a.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("stream")));
    a.insert("x-max-age".into(), AMQPValue::LongString(LongString::from(max_age)));
    a.insert("x-stream-max-segment-size-bytes".into(), AMQPValue::LongLongInt(segment));
    if let Some(b) = max_bytes {
        a.insert("x-max-length-bytes".into(), AMQPValue::LongLongInt(b));
    }
    a
}

/// Segment size of the history stream: retention deletes whole segments, so a size limit should be
/// several times this.
pub const HISTORY_SEGMENT_BYTES: i64 = 8 * 1024 * 1024;

impl Decl {
    /// Identifies a declaration made under a prefix with a queue type, for the once-per-connection cache.
    pub fn key(&self, names: &Names, qt: QueueType) -> String {
        format!("{}|{}|{self:?}", names.prefix(), qt.name())
    }

    /// True when what is `known` of the broker on this connection makes the declaration a no-op (an
    /// event's route on ebats's own fanout exchange), so that no channel is opened for it: a web
    /// request publishing a new event name costs no round trip more.
    pub fn is_no_op(&self, names: &Names, known: &Known) -> bool {
        matches!(self, Decl::EventRoute(_))
            && known.event_exchange(&names.event_exchange()) == Some(EventExchange::Fanout)
    }

    /// Declares `decls` in turn on a channel of their own (a failed declaration closes its channel),
    /// queues of type `qt` (streams stay streams).
    pub async fn declare_all(conn: &Connection, decls: &[&Decl], n: &Names, qt: QueueType) -> Result<(), BrokerError> {
        Decl::declare_all_knowing(conn, decls, n, qt, &mut Known::default()).await
    }

    /// [`Decl::declare_all`], starting from what is `known` of the broker on this connection and
    /// adding what declaring learnt.
    pub async fn declare_all_knowing(
        conn: &Connection,
        decls: &[&Decl],
        n: &Names,
        qt: QueueType,
        known: &mut Known,
    ) -> Result<(), BrokerError> {
        let ch = connection::channel(conn).await?;
        let mut q = Queues { conn, ch, qt, known: std::mem::take(known) };
        let mut r = Ok(());
        for d in decls {
            r = d.declare(&mut q, n).await;
            if r.is_err() {
                break;
            }
        }
        *known = q.known;
        let _ = q.ch.close(200, "done".into()).await;
        r
    }

    async fn declare(&self, q: &mut Queues<'_>, n: &Names) -> Result<(), BrokerError> {
        match self {
            Decl::Events => events(q, n).await.map(|_| ()),
            Decl::EventRoute(event) => event_route(q, n, event).await,
            Decl::Topic(t) => topic(q, n, t).await,
            Decl::Delay => delay(q, n).await,
            Decl::Failed(topic) => q.declare(&n.failed_queue(topic), FieldTable::default(), Owner::Ebats).await,
            Decl::UnreadableEvents => q.declare(&n.unreadable_events(), FieldTable::default(), Owner::Ebats).await,
            Decl::ConsumerFailed(queue) => {
                q.declare(&n.consumer_failed_queue(queue), FieldTable::default(), Owner::Ebats).await
            }
            Decl::Exchange { name, kind } => {
                q.exchange(name, exchange_kind(kind)?, FieldTable::default(), Owner::Caller).await
            }
            Decl::Cron => cron(q, n).await,
            Decl::History { max_age, max_bytes } => history(q, n, max_age, *max_bytes).await,
            Decl::Processes => {
                let args = stream_args(PROCESSES_MAX_AGE, PROCESSES_SEGMENT_BYTES, Some(PROCESSES_MAX_BYTES));
                queue(&q.ch, &n.processes_stream(), args).await
            }
            Decl::Flow => {
                let mut args = FieldTable::default();
                args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("stream")));
                args.insert("x-stream-max-segment-size-bytes".into(), AMQPValue::LongLongInt(FLOW_SEGMENT_BYTES));
                args.insert("x-max-length-bytes".into(), AMQPValue::LongLongInt(FLOW_MAX_BYTES));
                queue(&q.ch, &n.flow_stream(), args).await
            }
            Decl::Groups => groups(q, n).await,
            Decl::BoundQueue { queue, exchange: x, keys } => {
                q.declare(queue, FieldTable::default(), Owner::Caller).await?;
                for k in keys {
                    bind(&q.ch, queue, x, k).await?;
                }
                Ok(())
            }
        }
    }
}

/// [`Decl::EventRoute`]: known once the event exchange was declared on this connection, nothing to do on
/// ebats's fanout exchange, one binding on the original's direct one.
async fn event_route(q: &mut Queues<'_>, n: &Names, event: &str) -> Result<(), BrokerError> {
    let kind = match q.known.event_exchange(&n.event_exchange()) {
        Some(k) => k,
        None => events(q, n).await?,
    };
    match kind {
        EventExchange::Fanout => Ok(()),
        EventExchange::Direct => bind(&q.ch, &n.events_queue(), &n.event_exchange(), event).await,
    }
}

/// [`Decl::Topic`]: the task exchange, the topic's ready queue bound to it and to the delay levels' exit.
async fn topic(q: &mut Queues<'_>, n: &Names, topic: &str) -> Result<(), BrokerError> {
    q.exchange(&n.task_exchange(), ExchangeKind::Direct, FieldTable::default(), Owner::Ebats).await?;
    q.declare(&n.ready_queue(topic), FieldTable::default(), Owner::Ebats).await?;
    // The original library's queues of this topic, if any, handed over first.
    super::legacy_topology::adopt_topic(q.conn, n, topic).await?;
    bind(&q.ch, &n.ready_queue(topic), &n.task_exchange(), topic).await?;
    due_exchange(q, n).await?;
    bind(&q.ch, &n.ready_queue(topic), &n.delay_due(), &format!("#.{topic}")).await
}

/// [`Decl::Delay`]: the levels, lower levels first (each level binds to the one below), then the delay
/// exchange in front of the highest.
async fn delay(q: &mut Queues<'_>, n: &Names) -> Result<(), BrokerError> {
    due_exchange(q, n).await?;
    for level in 0..DELAY_LEVELS {
        delay_level(q, n, level).await?;
    }
    // The original library's direct exchange of that name is converted first.
    super::legacy_topology::ensure_delay_exchange(q.conn, n).await?;
    q.exchange(&n.delay_exchange(), ExchangeKind::Topic, FieldTable::default(), Owner::Ebats).await?;
    exchange_bind(&q.ch, &n.delay_level(DELAY_LEVELS - 1), &n.delay_exchange(), "#").await
}

/// Level `level`'s exchange and queue. The queue holds messages 2^level s, then dead-letters them (routing
/// key kept) to the next lower level's exchange; every message in a level queue has the same TTL, so the
/// queue expires in order and a short delay never waits behind a long one.
async fn delay_level(q: &mut Queues<'_>, n: &Names, level: u32) -> Result<(), BrokerError> {
    let name = n.delay_level(level);
    let next = if level == 0 { n.delay_due() } else { n.delay_level(level - 1) };
    q.exchange(&name, ExchangeKind::Topic, FieldTable::default(), Owner::Ebats).await?;
    q.declare(&name, delay_level_args(level, &next, q.qt), Owner::Ebats).await?;
    bind(&q.ch, &name, &name, &delay_level_pattern(level, '1')).await?;
    exchange_bind(&q.ch, &next, &name, &delay_level_pattern(level, '0')).await
}

/// The arguments of level `level`'s queue, dead-lettering to `next`.
fn delay_level_args(level: u32, next: &str, qt: QueueType) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(1000i64 << level));
    args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(LongString::from(next)));
    if qt == QueueType::Quorum {
        // Dead-lettering that keeps a message until the next level has it.
        args.insert("x-dead-letter-strategy".into(), AMQPValue::LongString("at-least-once".into()));
        args.insert("x-overflow".into(), AMQPValue::LongString("reject-publish".into()));
    }
    args
}

/// [`Decl::Cron`]: the schedule stream, the leadership token's queue and the firing exchange.
async fn cron(q: &mut Queues<'_>, n: &Names) -> Result<(), BrokerError> {
    events(q, n).await?;
    queue(&q.ch, &n.cron_stream(), stream_args(CRON_MAX_AGE, CRON_SEGMENT_BYTES, None)).await?;
    let mut leader = FieldTable::default();
    leader.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    q.declare(&n.cron_leader(), leader, Owner::Ebats).await?;
    q.exchange(&n.cron_fire(), ExchangeKind::Fanout, FieldTable::default(), Owner::Ebats).await?;
    bind(&q.ch, &n.cron_stream(), &n.cron_fire(), "").await?;
    // The firing keeps its routing key (the event's name) through this binding, so it
    // reaches the events queue whatever the event exchange's type.
    exchange_bind(&q.ch, &n.event_exchange(), &n.cron_fire(), "").await
}

/// [`Decl::Groups`]: the groups stream and the follow-ups' exchange.
async fn groups(q: &mut Queues<'_>, n: &Names) -> Result<(), BrokerError> {
    events(q, n).await?;
    queue(&q.ch, &n.groups_stream(), stream_args(GROUPS_MAX_AGE, GROUPS_SEGMENT_BYTES, None)).await?;
    q.exchange(&n.groups_done(), ExchangeKind::Fanout, FieldTable::default(), Owner::Ebats).await?;
    bind(&q.ch, &n.groups_stream(), &n.groups_done(), "").await?;
    // The follow-up keeps its routing key (the event's name) through this binding.
    exchange_bind(&q.ch, &n.event_exchange(), &n.groups_done(), "").await
}

/// [`Decl::History`]: the history stream; one that exists with other arguments is named with the settings
/// that make it.
async fn history(q: &mut Queues<'_>, n: &Names, max_age: &str, max_bytes: u64) -> Result<(), BrokerError> {
    let name = n.history_stream();
    queue(&q.ch, &name, history_args(max_age, max_bytes)).await.map_err(|e| match e.kind() {
        ErrorKind::PreconditionFailed => BrokerError::new(
            ErrorKind::Inequivalent,
            format!(
                "the history stream '{name}' exists with other arguments than x-max-age={max_age}, \
                 x-max-length-bytes={} (ebats.history_max_age, ebats.history_max_bytes): set those to \
                 what it was made with, or delete the stream to make it anew ({e})",
                if max_bytes > 0 { max_bytes.to_string() } else { "(none)".into() }
            ),
        ),
        _ => e,
    })
}

/// The history stream's arguments: `max_bytes` 0 sets no size limit.
fn history_args(max_age: &str, max_bytes: u64) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("stream")));
    args.insert("x-max-age".into(), AMQPValue::LongString(LongString::from(max_age)));
    if max_bytes > 0 {
        args.insert("x-max-length-bytes".into(), AMQPValue::LongLongInt(max_bytes as i64));
    }
    args.insert("x-stream-max-segment-size-bytes".into(), AMQPValue::LongLongInt(HISTORY_SEGMENT_BYTES));
    args
}

pub fn exchange_kind(kind: &str) -> Result<ExchangeKind, BrokerError> {
    Ok(match kind {
        "direct" => ExchangeKind::Direct,
        "fanout" => ExchangeKind::Fanout,
        "topic" => ExchangeKind::Topic,
        "headers" => ExchangeKind::Headers,
        other => {
            return Err(BrokerError::new(
                ErrorKind::Invalid,
                format!("unknown exchange type '{other}': use direct, fanout, topic or headers"),
            ))
        }
    })
}

/// The event exchange and the events queue; the type the event exchange has.
async fn events(q: &mut Queues<'_>, n: &Names) -> Result<EventExchange, BrokerError> {
    let kind = event_exchange(q, n).await?;
    q.declare(&n.events_queue(), FieldTable::default(), Owner::Ebats).await?;
    if kind == EventExchange::Fanout {
        bind(&q.ch, &n.events_queue(), &n.event_exchange(), "").await?;
    }
    Ok(kind)
}

/// The type of the event exchange, declared as ebats's fanout exchange unless it exists as the
/// original library's direct one, which is adopted (once per connection it is found so).
async fn event_exchange(q: &mut Queues<'_>, n: &Names) -> Result<EventExchange, BrokerError> {
    let name = n.event_exchange();
    if let Some(k) = q.known.event_exchange(&name) {
        // Declared already on this connection: the exchange is left as it is.
        return Ok(k);
    }
    let e = match declare_exchange(&q.ch, &name, ExchangeKind::Fanout, FieldTable::default()).await {
        Ok(()) => {
            q.known.set_event_exchange(&name, EventExchange::Fanout);
            return Ok(EventExchange::Fanout);
        }
        Err(e) => e,
    };
    if e.kind() != ErrorKind::PreconditionFailed {
        return Err(e);
    }
    // The refusal closed the channel: the rest goes on a new one.
    q.ch = connection::channel(q.conn).await?;
    match declare_exchange(&q.ch, &name, ExchangeKind::Direct, FieldTable::default()).await {
        Ok(()) => {
            if !ADOPTED_LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                crate::log::info(&format!(
                    "event exchange '{name}' exists as the original library's direct exchange: adopted; the events \
                     queue '{}' is bound to it once per event name",
                    n.events_queue()
                ));
            }
            q.known.set_event_exchange(&name, EventExchange::Direct);
            Ok(EventExchange::Direct)
        }
        Err(_) => {
            q.ch = connection::channel(q.conn).await?;
            Err(q.exchange_clash(&name, ExchangeKind::Fanout, FieldTable::default(), Owner::Ebats, &e).await)
        }
    }
}

static ADOPTED_LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

async fn due_exchange(q: &Queues<'_>, n: &Names) -> Result<(), BrokerError> {
    // Anything the exit of the delay levels cannot route lands in the unroutable queue, not nowhere.
    q.exchange(&n.unroutable(), ExchangeKind::Fanout, FieldTable::default(), Owner::Ebats).await?;
    q.declare(&n.unroutable(), FieldTable::default(), Owner::Ebats).await?;
    bind(&q.ch, &n.unroutable(), &n.unroutable(), "").await?;
    let mut args = FieldTable::default();
    args.insert("alternate-exchange".into(), AMQPValue::LongString(LongString::from(n.unroutable().as_str())));
    q.exchange(&n.delay_due(), ExchangeKind::Topic, args, Owner::Ebats).await
}

fn err(what: String) -> impl FnOnce(lapin::Error) -> BrokerError {
    move |e| BrokerError::lapin(&what, &e)
}

async fn declare_exchange(ch: &Channel, name: &str, kind: ExchangeKind, args: FieldTable) -> Result<(), BrokerError> {
    ch.exchange_declare(
        ShortString::from(name),
        kind,
        ExchangeDeclareOptions { durable: true, ..Default::default() },
        args,
    )
    .await
    .map_err(err(format!("cannot declare exchange '{name}'")))
}

/// What the event exchange is on a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventExchange {
    /// ebats's own: every event reaches the events queue, bound once.
    Fanout,
    /// The original library's, adopted: the events queue is bound once per event name
    /// ([`Decl::EventRoute`]), as the original's Scheduler did.
    Direct,
}

/// What declaring learnt of the broker, kept with the connection it was learnt on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    /// The event exchange declared last (a process may use several prefixes) and its type.
    event_exchange: Option<(String, EventExchange)>,
}

impl Known {
    /// The type of the event exchange `name`, when declared on this connection.
    pub fn event_exchange(&self, name: &str) -> Option<EventExchange> {
        self.event_exchange.as_ref().filter(|(n, _)| n == name).map(|(_, k)| *k)
    }

    fn set_event_exchange(&mut self, name: &str, kind: EventExchange) {
        self.event_exchange = Some((name.to_string(), kind));
    }
}

/// Who names an object, which decides what fixes a clash: ebats's own objects live under the
/// prefix; the caller's come from `Core\Publish` and `Core\Consumer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Ebats,
    Caller,
}

/// The name RabbitMQ gives an exchange type.
pub fn kind_name(kind: &ExchangeKind) -> &str {
    match kind {
        ExchangeKind::Direct => "direct",
        ExchangeKind::Fanout => "fanout",
        ExchangeKind::Topic => "topic",
        ExchangeKind::Headers => "headers",
        ExchangeKind::Custom(s) => s.as_str(),
    }
}

/// The message of a declaration the broker refused as inequivalent: the object, what exists (as
/// far as probing told), what was wanted, and what fixes it.
pub fn clash_message(object: &str, name: &str, exists: &str, wanted: &str, owner: Owner, broker: &str) -> String {
    let fix = match (owner, object) {
        (Owner::Ebats, _) => format!(
            "it was made by another program (or the original library) under the same prefix: give ebats a prefix \
             of its own (ebats.prefix), or delete the {object} (rabbitmqadmin delete {object} name={name}) and ebats \
             declares it anew"
        ),
        (Owner::Caller, "exchange") => {
            format!("call setExchange() with the type it has, or delete it (rabbitmqadmin delete exchange name={name})")
        }
        (Owner::Caller, _) => format!(
            "consume it with the arguments it has, use another queue name in setQueue(), or delete it once empty \
             (rabbitmqadmin delete queue name={name})"
        ),
    };
    format!("{object} '{name}' exists {exists}, but ebats declares {wanted}: {fix} (broker: {broker})")
}

/// Where queues are declared, and with which type.
struct Queues<'a> {
    conn: &'a Connection,
    ch: Channel,
    qt: QueueType,
    known: Known,
}

const EXCHANGE_KINDS: [ExchangeKind; 4] =
    [ExchangeKind::Direct, ExchangeKind::Fanout, ExchangeKind::Topic, ExchangeKind::Headers];

impl Queues<'_> {
    /// Declares a durable exchange of `kind` with `args`. One that exists otherwise is an error
    /// naming it and what it is, never a retry.
    async fn exchange(
        &self,
        name: &str,
        kind: ExchangeKind,
        args: FieldTable,
        owner: Owner,
    ) -> Result<(), BrokerError> {
        match declare_exchange(&self.ch, name, kind.clone(), args.clone()).await {
            Err(e) if e.kind() == ErrorKind::PreconditionFailed => {
                Err(self.exchange_clash(name, kind, args, owner, &e).await)
            }
            r => r,
        }
    }

    /// The error for an exchange declaration refused with 406 (`e`): declaring it as each other
    /// type, with the same arguments, on a channel of its own, succeeds (changing nothing) exactly
    /// when it exists as that type.
    async fn exchange_clash(
        &self,
        name: &str,
        wanted: ExchangeKind,
        args: FieldTable,
        owner: Owner,
        e: &BrokerError,
    ) -> BrokerError {
        let mut found = None;
        for kind in EXCHANGE_KINDS.iter().filter(|k| **k != wanted) {
            let Ok(ch) = connection::channel(self.conn).await else { break };
            if declare_exchange(&ch, name, kind.clone(), args.clone()).await.is_ok() {
                let _ = ch.close(200, "probed".into()).await;
                found = Some(kind.clone());
                break;
            }
        }
        let exists = match &found {
            Some(k) => format!("as a {} exchange", kind_name(k)),
            None => "with other properties or arguments".to_string(),
        };
        let wanted = format!("a durable {} exchange", kind_name(&wanted));
        BrokerError::new(ErrorKind::Inequivalent, clash_message("exchange", name, &exists, &wanted, owner, e.message()))
    }

    /// Declares a durable queue of this type with `args`. A queue that exists with the other type
    /// is an error naming it and saying how to migrate; one that exists with other arguments an
    /// error naming it: never a silent mix, never a retry.
    async fn declare(&self, name: &str, args: FieldTable, owner: Owner) -> Result<(), BrokerError> {
        let e = match queue(&self.ch, name, typed(args.clone(), self.qt)).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if e.kind() != ErrorKind::PreconditionFailed {
            return Err(e);
        }
        // 406: the queue exists with other arguments. Declaring it as the other type succeeds
        // (changing nothing) exactly when only its type differs.
        let other = match self.qt {
            QueueType::Classic => QueueType::Quorum,
            QueueType::Quorum => QueueType::Classic,
        };
        let probe = async {
            let ch = connection::channel(self.conn).await?;
            let r = queue(&ch, name, typed(args, other)).await;
            if r.is_ok() {
                let _ = ch.close(200, "probed".into()).await;
            }
            r
        };
        match probe.await {
            Ok(()) => Err(type_mismatch(name, other, self.qt)),
            Err(_) => Err(BrokerError::new(
                ErrorKind::Inequivalent,
                clash_message(
                    "queue",
                    name,
                    "with other arguments",
                    &format!("a durable {} queue with its own arguments", self.qt.name()),
                    owner,
                    e.message(),
                ),
            )),
        }
    }
}

/// The error for a queue that exists as `found` while `ebats.queue_type` asks for `wanted`.
pub fn type_mismatch(name: &str, found: QueueType, wanted: QueueType) -> BrokerError {
    BrokerError::new(
        ErrorKind::Inequivalent,
        format!(
            "queue '{name}' exists as a {} queue but ebats.queue_type is {}: set ebats.queue_type={} again, or, to \
             migrate: stop the workers and consumers of that queue, let it drain (or move its messages, see the \
             README, \"Running on a cluster\"), delete it, and start them again with the new setting",
            found.name(),
            wanted.name(),
            found.name()
        ),
    )
}

/// `args` with what a queue of type `qt` needs.
fn typed(mut args: FieldTable, qt: QueueType) -> FieldTable {
    if qt == QueueType::Quorum {
        args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    }
    args
}

async fn queue(ch: &Channel, name: &str, args: FieldTable) -> Result<(), BrokerError> {
    ch.queue_declare(ShortString::from(name), QueueDeclareOptions { durable: true, ..Default::default() }, args)
        .await
        .map(|_| ())
        .map_err(err(format!("cannot declare queue '{name}'")))
}

async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str) -> Result<(), BrokerError> {
    ch.queue_bind(
        ShortString::from(queue),
        ShortString::from(exchange),
        ShortString::from(key),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(err(format!("cannot bind queue '{queue}' to exchange '{exchange}'")))
}

async fn exchange_bind(ch: &Channel, dest: &str, source: &str, key: &str) -> Result<(), BrokerError> {
    ch.exchange_bind(
        ShortString::from(dest),
        ShortString::from(source),
        ShortString::from(key),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(err(format!("cannot bind exchange '{dest}' to '{source}'")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(t: &FieldTable) -> Vec<&str> {
        t.inner().keys().map(|k| k.as_str()).collect()
    }

    #[test]
    fn delay_level_arguments() {
        // (level, queue type, TTL in ms, argument names)
        let table = [
            (0, QueueType::Classic, 1000, vec!["x-dead-letter-exchange", "x-message-ttl"]),
            (3, QueueType::Classic, 8000, vec!["x-dead-letter-exchange", "x-message-ttl"]),
            (
                27,
                QueueType::Quorum,
                1000i64 << 27,
                vec!["x-dead-letter-exchange", "x-dead-letter-strategy", "x-message-ttl", "x-overflow"],
            ),
        ];
        for (level, qt, ttl, names) in table {
            let a = delay_level_args(level, "p.next", qt);
            assert_eq!(keys(&a), names, "level {level} {qt:?}");
            assert_eq!(a.inner().get("x-message-ttl"), Some(&AMQPValue::LongLongInt(ttl)), "level {level}");
            assert_eq!(
                a.inner().get("x-dead-letter-exchange"),
                Some(&AMQPValue::LongString("p.next".into())),
                "level {level}"
            );
        }
    }

    #[test]
    fn history_arguments() {
        let with = history_args("7D", 1 << 30);
        assert_eq!(keys(&with), ["x-max-age", "x-max-length-bytes", "x-queue-type", "x-stream-max-segment-size-bytes"]);
        assert_eq!(with.inner().get("x-max-length-bytes"), Some(&AMQPValue::LongLongInt(1 << 30)));
        assert_eq!(with.inner().get("x-max-age"), Some(&AMQPValue::LongString("7D".into())));
        let without = history_args("1h", 0);
        assert_eq!(keys(&without), ["x-max-age", "x-queue-type", "x-stream-max-segment-size-bytes"]);
    }
}
