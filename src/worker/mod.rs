//! The worker's process model: a supervising parent, children that run tasks, signals as data.

pub mod child;
pub mod paused;
pub mod shared;
pub mod signals;
pub mod supervisor;
