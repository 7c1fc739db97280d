//! Helpers shared by the Rust tests that talk to the real broker (each test binary uses what it needs).
#![allow(dead_code)]

use ebats::broker::Session;
use ebats::config::{resolve, Settings, Sources};
use lapin::options::{BasicAckOptions, BasicGetOptions};

/// Settings under `prefix`, against `url` or else `$EBATS_AMQP_URL` (else the default broker), with a
/// short connect timeout.
pub fn settings(prefix: &str, url: Option<&str>) -> Settings {
    let url = url.map(str::to_string).or_else(|| std::env::var("EBATS_AMQP_URL").ok());
    resolve(&Sources {
        ini: &|_| None,
        env: &|k| match k {
            "EBATS_PREFIX" => Some(prefix.to_string()),
            "EBATS_AMQP_URL" => url.clone(),
            "EBATS_CONNECT_TIMEOUT" => Some("2".into()),
            _ => None,
        },
        constant: &|_| None,
    })
    .unwrap()
}

/// Takes (and acks) the next message of `queue`, if any.
pub fn get_body(s: &mut Session, st: &Settings, queue: &str) -> Option<Vec<u8>> {
    let ch = s.channel(st).unwrap();
    s.block_on(async {
        let m = ch.basic_get(queue.into(), BasicGetOptions { no_ack: false }).await.unwrap()?;
        m.delivery.acker.ack(BasicAckOptions::default()).await.unwrap();
        Some(m.delivery.data)
    })
}
