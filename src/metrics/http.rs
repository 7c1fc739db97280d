//! A minimal HTTP/1.1 server for `/metrics` and `/healthz`: GET only, one request per
//! connection (always closed), a bounded request head, short timeouts. Connections are served one
//! after the other: a scrape is small and Prometheus scrapes rarely.
//!
//! The dashboard reads whole requests with [`read_request`]: headers, and a body of a bounded
//! `Content-Length` (no chunked bodies), and answers with headers of its own.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// The longest request head read.
const MAX_HEAD: usize = 8192;
/// The most header lines a request may have.
const MAX_HEADERS: usize = 64;

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// Headers beyond Content-Type, Content-Length and Connection.
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<String>) -> Response {
        Response { status, content_type, body: body.into(), headers: Vec::new() }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status, "text/plain; charset=utf-8", body)
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

/// A request read whole: method, path (percent-encoding kept), query string, headers, body.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Names in lower case, values trimmed, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The query parameter `key`, percent-decoded (`+` is a space).
    pub fn param(&self, key: &str) -> Option<String> {
        self.query.split('&').filter_map(|p| p.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| decode(v))
    }
}

/// Percent-decoding of a query value; bad escapes are kept as they are.
pub fn decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex =
            b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(x)) => {
                out.push(x);
                i += 2;
            }
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A request head with its header lines; the body is read after it.
pub fn parse_head(head: &[u8]) -> Result<Request, Response> {
    let text = std::str::from_utf8(head).map_err(|_| Response::text(400, "request head is not UTF-8\n"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if v.starts_with("HTTP/1.") && t.starts_with('/') && !m.is_empty() => {
            (m, t, v)
        }
        _ => return Err(Response::text(400, "bad request line\n")),
    };
    let _ = version;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    for l in lines {
        if l.is_empty() {
            break;
        }
        let Some((name, value)) = l.split_once(':') else {
            return Err(Response::text(400, "bad header line\n"));
        };
        if name.is_empty() || name.bytes().any(|c| c <= b' ' || c >= 0x7f) {
            return Err(Response::text(400, "bad header name\n"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        if headers.len() > MAX_HEADERS {
            return Err(Response::text(431, "too many headers\n"));
        }
    }
    Ok(Request { method: method.to_string(), path: path.to_string(), query: query.to_string(), headers, body: vec![] })
}

/// Where the head ends (the index after its blank line).
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Reads a whole request: the head, then a body of at most `max_body` bytes (by Content-Length).
pub fn read_request(s: &mut TcpStream, max_body: usize) -> Result<Request, Response> {
    let mut buf = read_head(s)?;
    let end = head_end(&buf).unwrap_or(buf.len());
    let mut req = parse_head(&buf[..end])?;
    if req.header("transfer-encoding").is_some() {
        return Err(Response::text(411, "send a Content-Length, not a chunked body\n"));
    }
    let len = match req.header("content-length") {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| Response::text(400, "bad Content-Length\n"))?,
    };
    if len > max_body {
        return Err(Response::text(413, format!("request body larger than {max_body} bytes\n")));
    }
    let mut body = buf.split_off(end);
    let mut chunk = [0u8; 4096];
    while body.len() < len {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return Err(Response::text(400, "incomplete request body\n")),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(len);
    req.body = body;
    Ok(req)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
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
        if head_end(&buf).is_some() {
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

/// Writes `r` (only its head for a HEAD request) and closes the connection.
pub fn answer(s: &mut TcpStream, r: &Response, head_only: bool) {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    for (name, value) in &r.headers {
        // Values are ours; a line break in one would split the head.
        head.push_str(&format!("{name}: {}\r\n", value.replace(['\r', '\n'], " ")));
    }
    head.push_str("\r\n");
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
    fn whole_requests() {
        let r =
            parse_head(b"POST /api/x?topic=a%20b&n=1+2 HTTP/1.1\r\nHost: h:1\r\nX-Csrf-Token:  t \r\n\r\n").unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/api/x"));
        assert_eq!(r.header("host"), Some("h:1"));
        assert_eq!(r.header("x-csrf-token"), Some("t"));
        assert_eq!(r.param("topic").as_deref(), Some("a b"));
        assert_eq!(r.param("n").as_deref(), Some("1 2"));
        assert_eq!(r.param("none"), None);
        assert_eq!(decode("%zz%4"), "%zz%4");
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nno colon\r\n\r\n").err().unwrap().status, 400);
        assert_eq!(parse_head(b"GET / HTTP/1.1 extra\r\n\r\n").err().unwrap().status, 400);
        let many: String = (0..70).map(|i| format!("h{i}: v\r\n")).collect();
        assert_eq!(parse_head(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()).err().unwrap().status, 431);

        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let send = move |req: &'static [u8]| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let _ = s.write_all(req);
                let _ = s.shutdown(std::net::Shutdown::Write);
            })
        };
        for (req, want) in [
            (&b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"[..], Ok(b"hello".to_vec())),
            (b"POST /a HTTP/1.1\r\nContent-Length: 50\r\n\r\n", Err(413)),
            (b"POST /a HTTP/1.1\r\nContent-Length: 8\r\n\r\nhi", Err(400)),
            (b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", Err(411)),
        ] {
            let t = send(req);
            let (mut s, _) = l.accept().unwrap();
            let got = read_request(&mut s, 10).map(|r| r.body).map_err(|r| r.status);
            assert_eq!(got, want);
            t.join().unwrap();
        }
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
