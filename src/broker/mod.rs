//! The broker layer, no PHP. From the ground up: `names` (pure), `error` (the one error type),
//! `stop` (the stop token), `park` (waiting on this thread), `connection` (connect, channel in
//! confirm mode), `session` (runtime, connection reuse, declare cache) and `current` (this
//! process's session), `confirm` and `publisher` (confirmed, batched, deferred publishing), `direct`
//! (publishing on the calling thread's own socket, no hand-off), `resolve` (host names
//! resolved within a deadline),
//! `last_first` (awaiting a lot of publishes or confirms with one wake-up),
//! `consumer` (a consumer for async code), `subscription` and `consume` (consuming, and the loop every
//! long-running process shares), `stream_read` (the one stream reader),
//! `topology` (what is declared), `rate` (the counter queues of rate limits), `store` (the failed store) and `processes` (announcing and
//! discovering the processes that serve metrics).

pub mod confirm;
pub mod connection;
pub mod consume;
pub mod consumer;
pub mod current;
pub mod direct;
pub mod error;
pub mod flow_stream;
pub mod group_stream;
pub mod last_first;
pub mod legacy_topology;
pub mod names;
pub mod park;
pub mod permit;
pub mod permit_line;
pub mod processes;
pub mod publisher;
pub mod rate;
pub mod resolve;
pub mod session;
pub mod stop;
pub mod store;
pub mod stream_read;
pub mod subscription;
pub mod topology;
pub mod unique;

pub use error::{BrokerError, ErrorKind};
pub use publisher::Outgoing;
pub use session::Session;
pub use topology::Decl;
