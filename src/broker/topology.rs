//! What ebats declares on the broker. Every declaration is durable and idempotent; the session
//! runs each once per connection.

use lapin::options::{ExchangeBindOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use super::error::{BrokerError, ErrorKind};
use super::names::{delay_level_pattern, Names, DELAY_LEVELS};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decl {
    /// The event exchange and the events queue.
    Events,
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
    /// The stream of execution records, with its retention (`x-max-age`, `x-max-length-bytes` when
    /// not 0). One that exists with other arguments is refused by the broker: an error naming it.
    History { max_age: String, max_bytes: u64 },
}

/// Stream retention: segments whose every record is older than this are deleted (the leader appends
/// a snapshot of the whole state every minute, so the newest segment always holds one).
pub const CRON_MAX_AGE: &str = "7D";
/// Segment size of the stream: retention deletes whole segments.
pub const CRON_SEGMENT_BYTES: i64 = 16 * 1024 * 1024;

/// Segment size of the history stream: retention deletes whole segments, so a size limit should be
/// several times this.
pub const HISTORY_SEGMENT_BYTES: i64 = 8 * 1024 * 1024;

impl Decl {
    /// Identifies a declaration made under a prefix, for the once-per-connection cache.
    pub fn key(&self, names: &Names) -> String {
        format!("{}|{self:?}", names.prefix())
    }

    pub async fn declare(&self, ch: &Channel, n: &Names) -> Result<(), BrokerError> {
        match self {
            Decl::Events => events(ch, n).await,
            Decl::Topic(topic) => {
                exchange(ch, &n.task_exchange(), ExchangeKind::Direct, FieldTable::default()).await?;
                queue(ch, &n.ready_queue(topic), FieldTable::default()).await?;
                bind(ch, &n.ready_queue(topic), &n.task_exchange(), topic).await?;
                due_exchange(ch, n).await?;
                bind(ch, &n.ready_queue(topic), &n.delay_due(), &format!("#.{topic}")).await
            }
            Decl::Delay => {
                due_exchange(ch, n).await?;
                // Level n's queue holds messages 2^n s, then dead-letters them (routing key kept) to
                // the next lower level's exchange; every message in a level queue has the same TTL,
                // so the queue expires in order and a short delay never waits behind a long one. Lower levels
                // first: each level binds to the one below.
                for level in 0..DELAY_LEVELS {
                    let name = n.delay_level(level);
                    let next = if level == 0 { n.delay_due() } else { n.delay_level(level - 1) };
                    exchange(ch, &name, ExchangeKind::Topic, FieldTable::default()).await?;
                    let mut args = FieldTable::default();
                    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(1000i64 << level));
                    args.insert(
                        "x-dead-letter-exchange".into(),
                        AMQPValue::LongString(LongString::from(next.as_str())),
                    );
                    queue(ch, &name, args).await?;
                    bind(ch, &name, &name, &delay_level_pattern(level, '1')).await?;
                    exchange_bind(ch, &next, &name, &delay_level_pattern(level, '0')).await?;
                }
                exchange(ch, &n.delay_exchange(), ExchangeKind::Topic, FieldTable::default()).await?;
                exchange_bind(ch, &n.delay_level(DELAY_LEVELS - 1), &n.delay_exchange(), "#").await
            }
            Decl::Failed(topic) => queue(ch, &n.failed_queue(topic), FieldTable::default()).await,
            Decl::UnreadableEvents => queue(ch, &n.unreadable_events(), FieldTable::default()).await,
            Decl::ConsumerFailed(q) => queue(ch, &n.consumer_failed_queue(q), FieldTable::default()).await,
            Decl::Exchange { name, kind } => exchange(ch, name, exchange_kind(kind)?, FieldTable::default()).await,
            Decl::Cron => {
                events(ch, n).await?;
                let mut stream = FieldTable::default();
                stream.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("stream")));
                stream.insert("x-max-age".into(), AMQPValue::LongString(LongString::from(CRON_MAX_AGE)));
                stream.insert("x-stream-max-segment-size-bytes".into(), AMQPValue::LongLongInt(CRON_SEGMENT_BYTES));
                queue(ch, &n.cron_stream(), stream).await?;
                let mut leader = FieldTable::default();
                leader.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
                queue(ch, &n.cron_leader(), leader).await?;
                exchange(ch, &n.cron_fire(), ExchangeKind::Fanout, FieldTable::default()).await?;
                bind(ch, &n.cron_stream(), &n.cron_fire(), "").await?;
                exchange_bind(ch, &n.event_exchange(), &n.cron_fire(), "").await
            }
            Decl::History { max_age, max_bytes } => {
                let name = n.history_stream();
                let mut args = FieldTable::default();
                args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("stream")));
                args.insert("x-max-age".into(), AMQPValue::LongString(LongString::from(max_age.as_str())));
                if *max_bytes > 0 {
                    args.insert("x-max-length-bytes".into(), AMQPValue::LongLongInt(*max_bytes as i64));
                }
                args.insert("x-stream-max-segment-size-bytes".into(), AMQPValue::LongLongInt(HISTORY_SEGMENT_BYTES));
                queue(ch, &name, args).await.map_err(|e| match e.kind() {
                    ErrorKind::PreconditionFailed => BrokerError::new(
                        ErrorKind::PreconditionFailed,
                        format!(
                            "the history stream '{name}' exists with other arguments than x-max-age={max_age}, \
                             x-max-length-bytes={} (ebats.history_max_age, ebats.history_max_bytes): set those to \
                             what it was made with, or delete the stream to make it anew ({e})",
                            if *max_bytes > 0 { max_bytes.to_string() } else { "(none)".into() }
                        ),
                    ),
                    _ => e,
                })
            }
            Decl::BoundQueue { queue: q, exchange: x, keys } => {
                queue(ch, q, FieldTable::default()).await?;
                for k in keys {
                    bind(ch, q, x, k).await?;
                }
                Ok(())
            }
        }
    }
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

async fn events(ch: &Channel, n: &Names) -> Result<(), BrokerError> {
    exchange(ch, &n.event_exchange(), ExchangeKind::Fanout, FieldTable::default()).await?;
    queue(ch, &n.events_queue(), FieldTable::default()).await?;
    bind(ch, &n.events_queue(), &n.event_exchange(), "").await
}

async fn due_exchange(ch: &Channel, n: &Names) -> Result<(), BrokerError> {
    // Anything the exit of the delay levels cannot route lands in the unroutable queue, not nowhere.
    exchange(ch, &n.unroutable(), ExchangeKind::Fanout, FieldTable::default()).await?;
    queue(ch, &n.unroutable(), FieldTable::default()).await?;
    bind(ch, &n.unroutable(), &n.unroutable(), "").await?;
    let mut args = FieldTable::default();
    args.insert("alternate-exchange".into(), AMQPValue::LongString(LongString::from(n.unroutable().as_str())));
    exchange(ch, &n.delay_due(), ExchangeKind::Topic, args).await
}

fn err(what: String) -> impl FnOnce(lapin::Error) -> BrokerError {
    move |e| BrokerError::lapin(&what, &e)
}

async fn exchange(ch: &Channel, name: &str, kind: ExchangeKind, args: FieldTable) -> Result<(), BrokerError> {
    ch.exchange_declare(
        ShortString::from(name),
        kind,
        ExchangeDeclareOptions { durable: true, ..Default::default() },
        args,
    )
    .await
    .map_err(err(format!("cannot declare exchange '{name}'")))
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
