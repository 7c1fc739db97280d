//! The Rust tests beyond the unit tests, as one test binary: the broker layer, the schedule and groups
//! streams, the history and the subscriptions against the real broker, and the property tests of every
//! decoder of what comes from the broker.
//!
//! One binary, not one per file: each test binary is linked with the whole crate (thin LTO in the release
//! profile `scripts/test` uses), so one binary builds in a fraction of the time a dozen took.
//!
//! Run them one at a time (`RUST_TEST_THREADS=1`, as `scripts/test` does): many use the process's one
//! session (`broker::current`), and a test holding it makes another's call fail as Busy.

mod common;

mod broker;
mod cron_stream;
mod cron_verdicts;
mod direct;
mod groups_stream;
mod history;
mod legacy_props;
mod props;
mod subscription_cut;
mod subscription_direct;
mod subscription_prefetch;
