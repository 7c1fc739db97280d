//! The services tier: what PHP, the CLI (through PHP) and the dashboard share.
//!
//! Between the bindings (`src/php/`, which only convert values and map errors to exceptions) and the
//! layers below (the worker's process model, metrics, history, the dashboard, dispatch, the broker).
//! Each service is plain Rust, takes plain values and returns errors with a kind; what it needs from PHP
//! (a handler, a callback) comes down as a trait object or a closure. Calls go down, never up: where a
//! lower module needs a service (the dashboard managing schedules), the service is handed down to it.

pub mod cancel;
pub mod consuming;
pub mod flow;
pub mod groups;
pub mod limits;
pub mod periodic;
pub mod publishing;
pub mod refused;
pub mod run;
pub mod schedules;
pub mod scheduling;
pub mod worker;
