//! A minimal HTTP/1.1 server for `/metrics` and `/healthz`: GET only, one request per
//! connection (always closed), a bounded request head, short timeouts. Connections are served one
//! after the other: a scrape is small and Prometheus scrapes rarely.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// The longest request head read.
const MAX_HEAD: usize = 8192;

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response { status, content_type: "text/plain; charset=utf-8", body: body.into() }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// What a request head asks for: `Ok(path)` for a GET (query string dropped), else the answer.
pub fn parse_request(head: &[u8]) -> Result<String, Response> {
    let text = String::from_utf8_lossy(head);
    let line = text.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    match (method, target, version) {
        (Some(m), Some(t), Some(v)) if v.starts_with("HTTP/1.") && t.starts_with('/') => {
            if m != "GET" && m != "HEAD" {
                return Err(Response::text(405, "only GET\n"));
            }
            Ok(t.split('?').next().unwrap_or("/").to_string())
        }
        _ => Err(Response::text(400, "bad request\n")),
    }
}

fn read_head(s: &mut TcpStream) -> Result<Vec<u8>, Response> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            return Ok(buf);
        }
        if buf.len() > MAX_HEAD {
            return Err(Response::text(431, "request too large\n"));
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return Err(Response::text(400, "incomplete request\n")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn answer(s: &mut TcpStream, r: &Response, head_only: bool) {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    let _ = s.write_all(head.as_bytes());
    if !head_only {
        let _ = s.write_all(r.body.as_bytes());
    }
    let _ = s.flush();
    // Closing with unread request bytes would reset the connection and could lose the answer:
    // end our side, then read (bounded) until the client closes.
    let _ = s.shutdown(std::net::Shutdown::Write);
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match s.read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

/// Serves until `keep_going` says no (checked after each connection). `route` answers a path.
pub fn serve(listener: &TcpListener, keep_going: &dyn Fn() -> bool, route: &mut dyn FnMut(&str) -> Response) {
    while keep_going() {
        if !serve_one(listener, keep_going, route) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Accepts one connection and answers it; false when accepting failed.
pub fn serve_one(
    listener: &TcpListener,
    keep_going: &dyn Fn() -> bool,
    route: &mut dyn FnMut(&str) -> Response,
) -> bool {
    let Ok((mut s, _)) = listener.accept() else {
        return false;
    };
    if !keep_going() {
        return true;
    }
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    match read_head(&mut s) {
        Err(r) => answer(&mut s, &r, false),
        Ok(head) => match parse_request(&head) {
            Err(r) => answer(&mut s, &r, false),
            Ok(path) => answer(&mut s, &route(&path), head.starts_with(b"HEAD ")),
        },
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert_eq!(parse_request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").ok(), Some("/metrics".into()));
        assert_eq!(parse_request(b"GET /healthz?x=1 HTTP/1.0\r\n\r\n").ok(), Some("/healthz".into()));
        assert_eq!(parse_request(b"POST /metrics HTTP/1.1\r\n\r\n").err().unwrap().status, 405);
        assert_eq!(parse_request(b"hello\r\n\r\n").err().unwrap().status, 400);
        assert_eq!(parse_request(b"GET metrics HTTP/1.1\r\n\r\n").err().unwrap().status, 400);
    }

    #[test]
    fn serves_and_bounds() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let get = |req: &[u8]| {
                let mut s = TcpStream::connect(addr).unwrap();
                let _ = s.write_all(req);
                let _ = s.shutdown(std::net::Shutdown::Write);
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                out
            };
            let a = get(b"GET /metrics HTTP/1.1\r\n\r\n");
            let b = get(&[b'a'; 9000]);
            let c = get(b"GET /nope HTTP/1.1\r\n\r\n");
            (a, b, c)
        });
        let mut n = 0;
        let mut route = |p: &str| {
            n += 1;
            if p == "/metrics" {
                Response::text(200, "m 1\n")
            } else {
                Response::text(404, "no\n")
            }
        };
        for _ in 0..3 {
            assert!(serve_one(&l, &|| true, &mut route));
        }
        let (a, b, c) = client.join().unwrap();
        assert!(a.starts_with("HTTP/1.1 200 OK\r\n") && a.ends_with("\r\n\r\nm 1\n"), "{a}");
        assert!(b.starts_with("HTTP/1.1 431"), "{b}");
        assert!(c.starts_with("HTTP/1.1 404"), "{c}");
        assert_eq!(n, 2);
    }
}
