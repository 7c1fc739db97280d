//! Helpers shared by the Rust tests that talk to the real broker (each test binary uses what it needs).
#![allow(dead_code)]

use ebats::broker::Session;
use ebats::config::{resolve, Settings, Sources};
use lapin::options::{BasicAckOptions, BasicGetOptions};
use std::time::{Duration, Instant};

/// Calls `f` every 10 ms until it gives something, and returns that; `None` once `timeout` has passed.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10).min(deadline - now));
    }
}

/// [`poll`], failing the test (naming `what`) when `timeout` passes first.
pub fn wait_for<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    poll(timeout, f).unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Waits until `ok()` is true, failing the test (naming `what`) when `timeout` passes first.
pub fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    wait_for(what, timeout, || ok().then_some(()))
}

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

/// A TCP relay to the broker whose connections the test can reset.
pub struct Relay {
    pub port: u16,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Relay {
    pub fn start() -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = conns.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(broker) = std::net::TcpStream::connect("127.0.0.1:5672") else { return };
                kept.lock().unwrap().extend([client.try_clone().unwrap(), broker.try_clone().unwrap()]);
                for (mut from, mut to) in [(client.try_clone().unwrap(), broker.try_clone().unwrap()), (broker, client)]
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Relay { port, conns }
    }

    /// Cuts every relayed connection at once.
    pub fn cut(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}
pub mod json;
