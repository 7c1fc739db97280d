//! Periodic schedules, the pure core: expressions and settings ([`expression`], [`settings`], [`name`],
//! [`zone`], [`schedule`]), fire times ([`ticks`], with the daylight-saving rules in [`dst`]), what to fire
//! after a gap ([`catchup`]), the identity and record of a firing ([`firing`]) and the stream's records and
//! their fold ([`state`]): no broker, no PHP. On the broker, in the services tier: reading and writing the
//! stream, leadership and firing (`crate::services::periodic`, where how they work and why a tick fires at
//! most once are argued, next to the code that does it); managing schedules (`crate::services::schedules`).

pub mod catchup;
pub mod dst;
pub mod error;
pub mod expression;
pub mod firing;
pub mod name;
pub mod schedule;
pub mod settings;
pub mod state;
pub mod ticks;
pub mod zone;

pub use error::{Error, ErrorKind};
pub use schedule::Schedule;
