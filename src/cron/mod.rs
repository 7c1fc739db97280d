//! Periodic schedules, the pure core (no broker, no PHP).

pub mod catchup;
pub mod dst;
pub mod error;
pub mod expression;
pub mod name;
pub mod schedule;
pub mod settings;
pub mod ticks;
pub mod zone;

pub use error::{Error, ErrorKind};
pub use schedule::Schedule;
