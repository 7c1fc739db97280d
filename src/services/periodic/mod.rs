//! Periodic firing on the broker: reading and writing the schedule stream ([`stream`]) and leadership
//! and firing ([`leader`], a thread with a connection of its own in every Scheduler); the leader also
//! completes groups of tasks ([`groups`], argued in `crate::group`). The decisions
//! (ticks, catch-up, a firing's identity, the stream's fold) are pure, in `crate::cron`; why a tick
//! fires at most once is argued below and kept true by [`leader`].
//!
//! # How the broker side is meant to work
//!
//! **Leadership.** A durable queue `<prefix>.cron.leader` with `x-single-active-consumer` holds one token
//! message. Every scheduler consumes it (manual ack, prefetch 2); the broker delivers only to the active
//! consumer, so a scheduler learns it leads when the token is delivered, and leads while it holds the token
//! unacked. A token that arrives while one is already held is acked away (two schedulers starting at once may
//! both publish one). When the leader's channel or connection closes (exit, kill -9, a cut, missed heartbeats)
//! the broker requeues the token and activates the next consumer: a takeover within the heartbeat timeout
//! (the leadership connection uses a third of it, see [`leader`]). A scheduler publishes a token only when
//! none is waiting in the queue, so reconnecting adds none.
//!
//! **Storage.** One RabbitMQ stream `<prefix>.cron` is the log: schedule changes (add, update, remove, pause,
//! resume, trigger; with their time, so `active_since` is known; the leader replaces that time by its own
//! clock's when it reads a change live, and any reader takes it as at most its present) and firings.
//!
//! **Changes.** A writer appends a change with a request id and folds the stream up to that record: whether
//! the change took effect there is its answer (`cron::state::Folder::verdict`). Every reader folds the stream
//! in the same order, so two adds of one name get one "added" and one "exists already", and an update that
//! lands after a remove is answered "no schedule". No leader needs to run for a change to be answered.
//!
//! **Code.** A Scheduler appends the schedules its process declares in code when it starts
//! (`cron::state::Record::Code`); without an owner they only add or change, with one they replace that owner's
//! set. So a scheduler declaring nothing removes nothing, whoever leads. Folding it gives the current set
//! and the last fired ticks (`cron::state::Fold`). The leader appends a snapshot of the fold every minute, with the
//! offset it covers (`through`): a record appended by a client while the leader was writing can land before
//! the snapshot in the stream without being in it. A reader that starts at offset 0 folds everything and
//! ignores snapshots; one that starts later (a few minutes back, by timestamp) takes the first snapshot it meets
//! and applies again what it read before it past `through` (`cron::state::Folder`); with no snapshot there it reads
//! from the start. When retention deleted the start and no snapshot follows, what is left is all there is
//! for any reader: it is folded, with an error logged. A message that cannot be read is skipped. Retention
//! (`x-max-age`) deletes whole segments, never the newest.
//!
//! **Firing.** A firing is a single publish, on the very channel that holds the token, with publisher confirms,
//! to a fanout exchange bound both to the stream and (exchange to exchange) to the event exchange: the event
//! and its record are one message, routed to both or to neither. Its message id is `cron::firing::event_id`.
//!
//! **Takeover.** The new leader appends a marker to the stream and reads until it meets it, folds the last fired
//! ticks, then asks `cron::catchup::decide` what to fire; it fires only ticks later than the last recorded one.
//! A firing record claiming a tick beyond the reader's clock + `cron::state::MAX_TICK_AHEAD_MS` is ignored: a
//! genuine one never does (a tick is fired when due), and anyone who may publish can write the stream.
//!
//! **Why each tick fires at most once, even while two schedulers both believe they lead** (a partition, a
//! paused process): a scheduler can only fire through the channel that holds the token. The broker activates
//! the next consumer only after it has closed the old leader's channel, and it handles a channel's publishes
//! in order, so every firing the old leader got in precedes the new leader's marker in the stream; anything it
//! tries later is refused on a dead channel. The new leader reads past its marker, so it sees those firings
//! and `cron::firing::may_fire` refuses their ticks. A tick published but not confirmed before a crash is in the
//! stream or was never routed, never half. The derived event id lets consumers drop a duplicate in the one
//! case left: a record lost with the stream itself.

pub mod groups;
pub mod leader;
pub mod stream;
