//! Fetching a process's `/status.json` (for `ebats status` and the dashboard): one GET over plain
//! TCP with a deadline for the whole exchange, the answer read to its end (the server closes every
//! connection) up to a size cap and parsed by `httparse`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::status_doc::StatusDoc;

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

/// The most header lines an answer may have.
const MAX_HEADERS: usize = 32;

/// The status code and the body of a whole HTTP/1.x answer (the connection closed after it),
/// parsed by `httparse`: the body is what follows the head, cut to its `Content-Length` when it has
/// one (an answer shorter than that is incomplete). Chunked answers are not read (ebats's server
/// never sends one).
pub fn split_answer(raw: &[u8]) -> Result<(u16, &[u8]), String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut answer = httparse::Response::new(&mut headers);
    let head = match answer.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("an incomplete HTTP answer".into()),
        Err(e) => return Err(format!("not an HTTP answer ({e})")),
    };
    let code = answer.code.ok_or("not an HTTP answer")?;
    let header = |name: &str| answer.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
    if header("transfer-encoding").is_some() {
        return Err("a chunked HTTP answer, which is not read".into());
    }
    let body = &raw[head..];
    match header("content-length") {
        None => Ok((code, body)),
        Some(v) => {
            let len = std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or("an HTTP answer with a bad Content-Length")?;
            body.get(..len).map(|b| (code, b)).ok_or_else(|| "an incomplete HTTP answer".into())
        }
    }
}

/// Reads until the peer closes, at most [`MAX_BODY`] bytes, each read bounded by what is left
/// before `deadline` (so a peer sending a byte at a time cannot stretch it).
fn read_to_end(s: &mut TcpStream, deadline: Instant) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while (raw.len() as u64) < MAX_BODY {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the deadline passed"));
        }
        s.set_read_timeout(Some(left))?;
        let want = chunk.len().min((MAX_BODY - raw.len() as u64) as usize);
        match s.read(&mut chunk[..want]) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(raw)
}

/// GET `path` from `address` within `timeout`: the status code and the body.
pub fn get(address: &str, path: &str, timeout: Duration) -> Result<(u16, Vec<u8>), String> {
    check_address(address)?;
    let deadline = Instant::now() + timeout;
    let addrs = crate::broker::resolve::resolve_address(address, timeout)
        .map_err(|e| format!("cannot resolve {address}: {e}"))?;
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
        let _ = s.set_write_timeout(Some(left));
        let req = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).map_err(|e| format!("cannot ask {address}: {e}"))?;
        let raw = read_to_end(&mut s, deadline).map_err(|e| format!("no answer from {address}: {e}"))?;
        let (code, body) = split_answer(&raw).map_err(|e| format!("{address} gave {e}"))?;
        return Ok((code, body.to_vec()));
    }
    Err(last)
}

/// The status document served at `address`.
pub fn status(address: &str, timeout: Duration) -> Result<StatusDoc, String> {
    match get(address, "/status.json", timeout)? {
        (200, body) => serde_json::from_slice(&body)
            .map_err(|e| format!("{address} gave an answer that is not a status document: {e}")),
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
        // answer -> (code, body) or the start of the error
        type Row<'a> = (&'a [u8], Result<(u16, &'a [u8]), &'a str>);
        let rows: [Row; 13] = [
            (b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n{}", Ok((200, b"{}"))),
            (b"HTTP/1.0 404 Not Found\r\n\r\n", Ok((404, b""))),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", Ok((200, b"{}"))),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}junk", Ok((200, b"{}"))),
            (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length:  0 \r\n\r\n", Ok((503, b""))),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", Err("an incomplete HTTP answer")),
            (b"HTTP/1.1 200 OK\r\nContent-Length: two\r\n\r\n{}", Err("an HTTP answer with a bad")),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}", Err("a chunked")),
            (b"HTTP/1.1 200 OK\r\n", Err("an incomplete HTTP answer")),
            (b"", Err("an incomplete HTTP answer")),
            (b"SSH-2.0\r\n\r\n", Err("not an HTTP answer")),
            (b"HTTP/1.1 2000 OK\r\n\r\n", Err("not an HTTP answer")),
            (b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n", Err("not an HTTP answer")),
        ];
        for (raw, want) in rows {
            let got = split_answer(raw);
            match want {
                Ok(w) => assert_eq!(got, Ok(w), "{}", String::from_utf8_lossy(raw)),
                Err(start) => assert!(
                    got.as_ref().is_err_and(|e| e.starts_with(start)),
                    "{} gave {got:?}",
                    String::from_utf8_lossy(raw)
                ),
            }
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("H{i}: v\r\n")).collect();
        let raw = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
        assert!(split_answer(raw.as_bytes()).unwrap_err().starts_with("not an HTTP answer"));
    }

    #[test]
    fn a_trickling_answer_ends_at_the_deadline() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            // One byte every 100 ms, each read of the client well within a per-read timeout.
            for _ in 0..60 {
                if c.write_all(b"H").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let started = Instant::now();
        let e = get(&addr, "/status.json", Duration::from_millis(800)).unwrap_err();
        assert!(e.starts_with("no answer from"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
        server.join().unwrap();
    }

    #[test]
    fn nothing_listening() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        assert!(status(&addr, Duration::from_secs(1)).unwrap_err().starts_with("cannot connect to"));
    }
}
