//! The AMQP headers ebats writes and reads on messages, by name, and the bound on what a header
//! may hold. Every header value ebats writes goes through [`value`] (in
//! `wire::properties_with_headers`), so no header can outgrow the frame it must fit in.
//!
//! Why the bound: a message's properties travel in one frame (131,072 bytes by default,
//! `frame_max`), and a broker answers a larger one by closing the connection (`FRAME_ERROR`). A
//! failure reason or an exception message can be any length; the whole text belongs in the body
//! (the failed store's `failed.message`), a header holds its start. Names of the schedule stream's
//! headers (`x-ebats-cron`, `x-ebats-cron-trigger`) are in `cron/state.rs`. Pure.

use std::borrow::Cow;

/// Why a message is in a failed store (a task's, the unreadable events', a Consumer's): at most
/// [`MAX_VALUE`] bytes, cut and marked beyond that.
pub const ERROR: &str = "x-ebats-error";
/// When it was put there: Unix time in seconds, as a decimal string.
pub const FAILED_AT: &str = "x-ebats-failed-at";
/// A Consumer's failed queue: the class of what the callback threw.
pub const ERROR_CLASS: &str = "x-ebats-error-class";
/// A Consumer's failed queue: the exchange the message came from.
pub const EXCHANGE: &str = "x-ebats-exchange";
/// A Consumer's failed queue: the routing key the message came with.
pub const ROUTING_KEY: &str = "x-ebats-routing-key";
/// Written by the broker (quorum queues): deliveries of this message that were not acked.
pub const DELIVERY_COUNT: &str = "x-delivery-count";
/// A periodic schedule's firing (an event the cron leader published, and its record on the schedule
/// stream): the `cron::firing::Firing` record as JSON.
pub const CRON_FIRING: &str = "x-ebats-cron";
/// A triggered firing: `{"schedule":..,"id":..,"fired_at":ms}`.
pub const CRON_TRIGGER: &str = "x-ebats-cron-trigger";
/// A group's follow-up event (published by the leader, and its record on the groups stream):
/// `group::state::Record::Fired` as JSON (a group id and a follow-up key: well under the bound).
pub const GROUP_FOLLOW_UP: &str = "x-ebats-group";

/// The most bytes of one header value ebats writes. A Consumer's failed message carries four
/// headers of ebats: at most about 17 KiB of properties, well inside the default frame (128 KiB).
pub const MAX_VALUE: usize = 4096;

/// A header value as written: `v` when it fits in [`MAX_VALUE`] bytes, else its start and the
/// marker ` ... [cut: N bytes in all]`.
pub fn value(v: &str) -> Cow<'_, str> {
    crate::rules::bounded(v, MAX_VALUE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_bounded() {
        assert_eq!(value("boom"), "boom");
        let whole = "e".repeat(MAX_VALUE);
        assert_eq!(value(&whole), whole.as_str());
        for len in [MAX_VALUE + 1, 200_000, 20 << 20] {
            let v = value(&"e".repeat(len)).into_owned();
            assert!(v.len() <= MAX_VALUE, "{len}: {}", v.len());
            assert!(v.ends_with(&format!(" ... [cut: {len} bytes in all]")), "{len}");
        }
    }
}
