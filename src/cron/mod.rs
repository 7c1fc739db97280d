//! Periodic schedules, the pure core: expressions and settings ([`expression`], [`settings`], [`name`],
//! [`zone`], [`schedule`]), fire times ([`ticks`], with the daylight-saving rules in [`dst`]), what to fire
//! after a gap ([`catchup`]) and the identity and record of a firing ([`firing`]). No broker, no PHP.
//!
//! # How the broker side is meant to work
//!
//! **Leadership.** A durable queue `<prefix>.cron.leader` with `x-single-active-consumer` holds one token
//! message. Every scheduler consumes it (manual ack, prefetch 2); the broker delivers only to the active
//! consumer, so a scheduler learns it leads when the token is delivered, and leads while it holds the token
//! unacked. A token that arrives while one is already held is acked away (two schedulers starting at once may
//! both publish one). When the leader's channel or connection closes (exit, kill -9, a cut, missed heartbeats)
//! the broker requeues the token and activates the next consumer: a takeover within the heartbeat timeout.
//!
//! **Storage.** One RabbitMQ stream `<prefix>.cron` is the log: schedule changes (add, update, remove, pause,
//! resume, trigger; with their time, so `active_since` is known) and firings. Folding it gives the current set
//! and [`firing::LastFired`]. The leader appends a snapshot of both now and then; the stream's retention keeps
//! more than one snapshot interval, and a reader folds from the first snapshot it meets.
//!
//! **Firing.** A firing is a single publish, on the very channel that holds the token, with publisher confirms,
//! to a fanout exchange bound both to the stream and (exchange to exchange) to the event exchange: the event
//! and its record are one message, routed to both or to neither. Its message id is [`firing::event_id`].
//!
//! **Takeover.** The new leader appends a marker to the stream and reads until it meets it, folds the last fired
//! ticks, then asks [`catchup::decide`] what to fire; it fires only ticks later than the last recorded one.
//!
//! **Why each tick fires at most once, even while two schedulers both believe they lead** (a partition, a
//! paused process): a scheduler can only fire through the channel that holds the token. The broker activates
//! the next consumer only after it has closed the old leader's channel, and it handles a channel's publishes
//! in order, so every firing the old leader got in precedes the new leader's marker in the stream; anything it
//! tries later is refused on a dead channel. The new leader reads past its marker, so it sees those firings
//! and [`firing::may_fire`] refuses their ticks. A tick published but not confirmed before a crash is in the
//! stream or was never routed, never half. The derived event id lets consumers drop a duplicate in the one
//! case left: a record lost with the stream itself.

pub mod catchup;
pub mod dst;
pub mod error;
pub mod expression;
pub mod firing;
pub mod leader;
pub mod name;
pub mod schedule;
pub mod settings;
pub mod state;
pub mod stream;
pub mod ticks;
pub mod zone;

pub use error::{Error, ErrorKind};
pub use schedule::Schedule;
