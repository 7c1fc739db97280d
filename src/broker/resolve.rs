//! Host names resolved within a deadline.
//!
//! The C library's `getaddrinfo` takes no timeout: with a name server that does not answer it blocks
//! for `timeout × attempts` of `resolv.conf` for each server (30 s and more), whatever the caller's
//! connect timeout says. An address is taken as it is; a name is resolved on a thread of its own,
//! which the caller waits for at most until its deadline. A thread left behind ends when the C library
//! gives up, and its answer is dropped.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::time::Duration;

/// The addresses of `host` (a name, or an IPv4 or IPv6 address, bracketed or not) with `port`, or
/// an error of kind `TimedOut` when the name is not resolved `within`.
pub fn resolve(host: &str, port: u16, within: Duration) -> io::Result<Vec<SocketAddr>> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = mpsc::sync_channel(1);
    let name = bare.to_string();
    std::thread::Builder::new().name("ebats-resolve".into()).spawn(move || {
        let _ = tx.send((name.as_str(), port).to_socket_addrs().map(Iterator::collect));
    })?;
    match rx.recv_timeout(within) {
        Ok(r) => r,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the name '{bare}' was not resolved within {:.1} s", within.as_secs_f64()),
        )),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Err(io::Error::other(format!("the name '{bare}' was not resolved")))
        }
    }
}

/// The addresses of `address` (`host:port`, an IPv6 host in brackets), as [`resolve`] gives them.
pub fn resolve_address(address: &str, within: Duration) -> io::Result<Vec<SocketAddr>> {
    let bad = || io::Error::new(io::ErrorKind::InvalidInput, format!("'{address}' is not host:port"));
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse::<u16>().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    resolve(host, port, within)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_taken_as_they_are() {
        let table =
            [("127.0.0.1", 5672, "127.0.0.1:5672"), ("::1", 15672, "[::1]:15672"), ("[::1]", 5671, "[::1]:5671")];
        for (host, port, want) in table {
            let got = resolve(host, port, Duration::ZERO).unwrap();
            assert_eq!(got, vec![want.parse::<SocketAddr>().unwrap()], "{host}");
        }
    }

    #[test]
    fn host_and_port() {
        assert_eq!(resolve_address("127.0.0.1:9000", Duration::ZERO).unwrap(), vec!["127.0.0.1:9000".parse().unwrap()]);
        assert_eq!(resolve_address("[::1]:9000", Duration::ZERO).unwrap(), vec!["[::1]:9000".parse().unwrap()]);
        for bad in ["localhost", ":9000", "localhost:port", "localhost:70000"] {
            let e = resolve_address(bad, Duration::from_secs(1)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}: {e}");
        }
        let local = resolve_address("localhost:9000", Duration::from_secs(5)).unwrap();
        assert!(local.iter().all(|a| a.ip().is_loopback() && a.port() == 9000), "{local:?}");
    }

    #[test]
    fn a_name_not_resolved_in_time_is_a_timeout() {
        // No time at all for a name: the answer cannot be there yet.
        let e = resolve("localhost", 1, Duration::ZERO).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(e.to_string().contains("'localhost' was not resolved within 0.0 s"), "{e}");
    }
}
