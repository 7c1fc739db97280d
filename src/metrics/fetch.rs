//! Fetching a process's `/status.json` (for `ebats status` and the dashboard): one GET over plain
//! TCP with a deadline, the answer read to its end (the server closes every connection).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The longest answer read.
const MAX_BODY: u64 = 4 * 1024 * 1024;

/// A `host:port` as `ebats status --metrics` takes it (a name or an IP; IPv6 in brackets).
pub fn check_address(address: &str) -> Result<(), String> {
    let bad = || format!("invalid metrics address '{address}': expected host:port, such as 127.0.0.1:9464");
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.contains(char::is_whitespace) || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad());
    }
    Ok(())
}

/// The status line's code and the body of an HTTP/1.x answer.
pub fn split_answer(raw: &[u8]) -> Result<(u16, &[u8]), String> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("an incomplete HTTP answer")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let code = head
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1."))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or("not an HTTP answer")?;
    Ok((code, &raw[end + 4..]))
}

/// GET `path` from `address` within `timeout`: the status code and the body.
pub fn get(address: &str, path: &str, timeout: Duration) -> Result<(u16, Vec<u8>), String> {
    check_address(address)?;
    let deadline = Instant::now() + timeout;
    let addrs: Vec<_> = address.to_socket_addrs().map_err(|e| format!("cannot resolve {address}: {e}"))?.collect();
    let mut last = format!("cannot resolve {address}");
    for a in addrs {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let mut s = match TcpStream::connect_timeout(&a, left) {
            Ok(s) => s,
            Err(e) => {
                last = format!("cannot connect to {address}: {e}");
                continue;
            }
        };
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let _ = s.set_read_timeout(Some(left));
        let _ = s.set_write_timeout(Some(left));
        let req = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).map_err(|e| format!("cannot ask {address}: {e}"))?;
        let mut raw = Vec::new();
        s.take(MAX_BODY).read_to_end(&mut raw).map_err(|e| format!("no answer from {address}: {e}"))?;
        let (code, body) = split_answer(&raw).map_err(|e| format!("{address} gave {e}"))?;
        return Ok((code, body.to_vec()));
    }
    Err(last)
}

/// The status document served at `address`.
pub fn status(address: &str, timeout: Duration) -> Result<serde_json::Value, String> {
    match get(address, "/status.json", timeout)? {
        (200, body) => {
            serde_json::from_slice(&body).map_err(|e| format!("{address} gave a status that is not JSON: {e}"))
        }
        (code, _) => Err(format!("{address} answered {code} to /status.json (an ebats older than `status`?)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        for ok in ["127.0.0.1:9464", "localhost:1", "[::1]:9464", "box.example:65535"] {
            assert_eq!(check_address(ok), Ok(()), "{ok}");
        }
        for bad in ["", "9464", ":9464", "host:", "host:0", "host:70000", "host:x", "a b:1"] {
            assert!(check_address(bad).unwrap_err().contains("invalid metrics address"), "{bad}");
        }
    }

    #[test]
    fn answers() {
        assert_eq!(split_answer(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n{}"), Ok((200, &b"{}"[..])));
        assert_eq!(split_answer(b"HTTP/1.0 404 Not Found\r\n\r\n"), Ok((404, &b""[..])));
        assert!(split_answer(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(split_answer(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[test]
    fn nothing_listening() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        assert!(status(&addr, Duration::from_secs(1)).unwrap_err().starts_with("cannot connect to"));
    }
}
