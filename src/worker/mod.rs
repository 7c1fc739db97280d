//! The worker's process model: a supervising parent, children that run tasks, signals as data.
//! What the parent and the children decide is in pure functions: `delivery` (what a child does
//! with a delivery), `child_end` (how a child's end is read, when its replacement starts) and
//! `recycle` (when a child leaves after a task). Limits: `throttle` (rates before a task starts) and
//! `held` (a task held back by a limit of its name or key). A child's acks, after the group ends they
//! cover: `acks` (its batches: `ack_batch`); the original library's queues and task bodies: `legacy`.

pub mod ack_batch;
pub mod acks;
pub mod cancelled;
pub mod child;
pub mod child_end;
pub mod delivery;
pub mod give_back;
pub mod held;
pub mod legacy;
pub mod limited;
pub mod paused;
pub mod prefetch;
pub mod recycle;
pub mod shared;
pub mod signals;
pub mod supervisor;
pub mod throttle;
