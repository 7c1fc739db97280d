//! Flow control decided on plain data (no broker here): which topics are paused and which tasks are
//! cancelled, folded from the records of the stream `<prefix>.flow`, and whether a worker may start a
//! task of its topic now.
//!
//! Why a stream of records rather than a durable object holding the state: the pause must reach every
//! worker of a topic on every host within a second and survive worker and broker restarts, on classic
//! and quorum setups and on a cluster. A stream is replicated on every node of a cluster whatever the
//! queue type, keeps its records through a broker restart, is read by any number of processes at once
//! without taking anything from the others, and pushes what is appended to every follower
//! (`broker::stream_read::follow`): no polling. A queue whose existence means "paused" would need a
//! poll per worker per second, cannot be listed over AMQP, and a classic one lives on one node; a
//! message holding the state can be held by one consumer at a time only.
//!
//! What it costs and why it cannot grow without bound: a record is about 150 bytes (a pause, a resume,
//! a snapshot, a marker); every change appends the change and a snapshot of the whole state, and every
//! reader that folds the stream to now (each worker child when it starts, each `Topics` call) appends a
//! marker. The stream keeps at most `broker::topology::FLOW_MAX_BYTES` in segments of
//! `FLOW_SEGMENT_BYTES` (retention deletes the oldest whole segment), so at least 3 MiB (some 15,000
//! records) are always there; a reader that meets more than [`record::SNAPSHOT_EVERY`] records after the
//! last snapshot appends one, so the part retention leaves always holds a snapshot, and a fold that
//! starts after the stream's first offset takes its state from it ([`record::Fold`]). A worker child
//! reads at most the retained part (4 MiB) when it starts, then only what is appended.
//!
//! Cancels (`cancel`) are records of the same stream, so the one watcher of each child follows them
//! too and a cancel made while no worker ran is known to the first child that starts. A cancel is
//! about 100 bytes and is not followed by a snapshot of its own (the state it adds can be 10,000
//! entries); a snapshot, which carries the cancels in force, still comes at least every
//! [`record::SNAPSHOT_EVERY`] records, so the retained part always holds one.

pub mod cancel;
pub mod carried;
pub mod concurrency;
pub mod key;
pub mod limits;
pub mod pause;
pub mod rate;
pub mod rate_block;
pub mod record;
pub mod unique;
