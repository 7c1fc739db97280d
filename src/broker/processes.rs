//! Finding the processes that serve metrics through the broker, without knowing their addresses.
//!
//! Each worker (its metrics process), scheduler and consumer serving metrics appends an
//! announcement (role, topics, address, pid, host, when it started) to the stream
//! `<prefix>.processes` when it starts and again every [`ANNOUNCE_EVERY`]. A reader appends a
//! marker of its own (`stream_read::marker`: it must know where the stream ends now), reads the
//! stream from a little more than [`FORGET_AFTER_MS`] back up to its marker, and keeps the newest
//! announcement per host and address that is recent enough: a process that died is still listed
//! (its probe fails) until it has been silent that long. The stream is small: retention of an hour and a few MB (`topology::PROCESSES_*`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::current::with_session;
use super::names::Names;
use super::stream_read::{self, Offset};
use super::{BrokerError, Decl, Outgoing, Session};
use crate::config::Settings;
use crate::wire::{new_id, now_ms, properties};

/// How often a process announces itself.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(10);
/// An address not announced for this long is forgotten.
pub const FORGET_AFTER_MS: i64 = 60_000;
const KIND: &str = "ebats.process";
const READ_PREFETCH: u16 = 200;

/// One announcement: who serves metrics where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announced {
    /// worker, scheduler or consumer.
    pub role: String,
    /// The worker's topic; the consumer's queue; none for a scheduler.
    pub topics: Vec<String>,
    /// Where it serves `/metrics` and `/status.json` (as bound: `0.0.0.0:9464` means every address).
    pub address: String,
    pub pid: i32,
    pub host: String,
    pub started_ms: i64,
    /// When this announcement was made.
    pub at_ms: i64,
}

impl Announced {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain data")
    }

    pub fn from_json(body: &[u8]) -> Result<Announced, String> {
        let a: Announced = serde_json::from_slice(body).map_err(|e| format!("not an announcement: {e}"))?;
        if a.address.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!("announcement with a bad address '{}'", a.address));
        }
        Ok(a)
    }

    /// The address to reach it at: as announced, or on its host when it listens on every address.
    pub fn probe_address(&self) -> String {
        match self.address.parse::<std::net::SocketAddr>() {
            Ok(a) if a.ip().is_unspecified() && !self.host.is_empty() => format!("{}:{}", self.host, a.port()),
            _ => self.address.clone(),
        }
    }
}

/// The newest announcement per host and address, made within `forget_after_ms` of `now_ms`,
/// ordered by role, host and address.
pub fn latest(records: impl IntoIterator<Item = Announced>, now_ms: i64, forget_after_ms: i64) -> Vec<Announced> {
    let mut out: Vec<Announced> = Vec::new();
    for r in records {
        if now_ms - r.at_ms > forget_after_ms {
            continue;
        }
        match out.iter_mut().find(|o| o.host == r.host && o.address == r.address) {
            Some(o) if o.at_ms <= r.at_ms => *o = r,
            Some(_) => {}
            None => out.push(r),
        }
    }
    out.sort_by(|a, b| (&a.role, &a.host, &a.address).cmp(&(&b.role, &b.host, &b.address)));
    out
}

fn message(names: &Names, body: Vec<u8>) -> Outgoing {
    Outgoing {
        exchange: String::new(),
        routing_key: names.processes_stream(),
        body,
        properties: properties(&new_id(), KIND),
        mandatory: true,
    }
}

/// Appends `a` to the stream, confirmed, on `session` (a session of the announcing thread's own).
pub fn announce(session: &mut Session, settings: &Settings, a: &Announced) -> Result<(), BrokerError> {
    let names = Names::new(&settings.prefix);
    session.declare(settings, &[Decl::Processes])?;
    session.publish(settings, &[message(&names, a.to_json().into_bytes())])
}

/// The processes announced lately under the settings' prefix, on this process's session.
pub fn discover(settings: &Settings) -> Result<Vec<Announced>, BrokerError> {
    with_session(|s| discover_on(s, settings))
}

/// [`discover`], on the session `s`: appends a marker and reads from a little more than
/// [`FORGET_AFTER_MS`] back up to it.
pub fn discover_on(s: &mut Session, settings: &Settings) -> Result<Vec<Announced>, BrokerError> {
    let names = Names::new(&settings.prefix);
    let stream = names.processes_stream();
    let id = new_id();
    let now = now_ms();
    s.declare(settings, &[Decl::Processes])?;
    s.publish(settings, &[stream_read::marker(&stream, &id)])?;
    let ch = s.channel(settings)?;
    let from = ((now - FORGET_AFTER_MS) / 1000 - 5).max(0) as u64;
    let t = settings.confirm_timeout.max(Duration::from_secs(10));
    let r = s.wait(t, "reading the processes stream", async {
        let mut consumer =
            stream_read::open(&ch, &stream, Offset::Time(from), READ_PREFETCH, &stream_read::tag("discover")).await?;
        let mut records = Vec::new();
        stream_read::read_to_marker(&ch, &mut consumer, READ_PREFETCH, "processes stream", &id, |_, d| {
            // Announcements only (an older reader's marker is something else).
            if d.properties.kind().as_ref().is_some_and(|k| k.as_str() == KIND) {
                match Announced::from_json(&d.data) {
                    Ok(a) => records.push(a),
                    Err(e) => crate::log::error(&format!("skipping a message of the processes stream: {e}")),
                }
            }
        })
        .await?;
        Ok(records)
    });
    // Closing the channel ends the consumer.
    let _ = s.block_on(ch.close(200, "read".into()));
    Ok(latest(r?, now_ms(), FORGET_AFTER_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(role: &str, host: &str, address: &str, pid: i32, at_ms: i64) -> Announced {
        Announced {
            role: role.into(),
            topics: vec![],
            address: address.into(),
            pid,
            host: host.into(),
            started_ms: 0,
            at_ms,
        }
    }

    #[test]
    fn newest_per_address_and_recent_only() {
        let now = 1_000_000;
        let records = vec![
            a("worker", "h1", "127.0.0.1:9001", 10, now - 30_000),
            a("worker", "h1", "127.0.0.1:9001", 11, now - 5_000), // the same address, restarted
            a("worker", "h1", "127.0.0.1:9001", 12, now - 20_000), // older, read later
            a("worker", "h2", "127.0.0.1:9001", 20, now - 1_000), // another host
            a("scheduler", "h1", "127.0.0.1:9002", 30, now - 70_000), // silent too long
            a("scheduler", "h1", "127.0.0.1:9003", 31, now),
        ];
        let got: Vec<(String, String, i32)> =
            latest(records, now, FORGET_AFTER_MS).into_iter().map(|r| (r.role, r.host, r.pid)).collect();
        assert_eq!(
            got,
            [
                ("scheduler".into(), "h1".into(), 31),
                ("worker".into(), "h1".into(), 11),
                ("worker".into(), "h2".into(), 20)
            ]
        );
    }

    #[test]
    fn records_and_probe_addresses() {
        let r = a("worker", "box", "0.0.0.0:9464", 1, 5);
        assert_eq!(Announced::from_json(r.to_json().as_bytes()).unwrap(), r);
        assert_eq!(r.probe_address(), "box:9464");
        assert_eq!(a("worker", "box", "127.0.0.1:9464", 1, 5).probe_address(), "127.0.0.1:9464");
        assert_eq!(a("worker", "box", "[::]:9464", 1, 5).probe_address(), "box:9464");
        assert!(Announced::from_json(b"{\"role\":1}").is_err());
        assert!(Announced::from_json(a("worker", "b", "nowhere", 1, 5).to_json().as_bytes()).is_err());
    }
}
