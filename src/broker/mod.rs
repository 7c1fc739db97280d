//! The broker layer: connections, topology, confirmed publishing and consuming. Pure Rust, no PHP.

pub mod names;
pub mod park;
pub mod process;
pub mod session;
pub mod store;
pub mod topology;

pub use session::{BrokerError, Outgoing, Session};
pub use topology::Decl;
