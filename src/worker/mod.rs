//! The worker's process model: a supervising parent, children that run tasks, signals as data.

pub mod child;
pub mod prefetch;
pub mod shared;
pub mod signals;
pub mod supervisor;
