//! Reading one request: the head under a deadline, parsed by `httparse`, then a bounded body.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::Response;

/// The longest request head (request line, headers and the blank line), in bytes.
pub const MAX_HEAD: usize = 8192;
/// The most header lines a request may have.
const MAX_HEADERS: usize = 64;

/// The bounds of one request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The whole head must have arrived within this time of the connection's acceptance.
    pub head_within: Duration,
    /// The whole request (head and body) must have arrived within this time.
    pub request_within: Duration,
    pub max_body: usize,
    /// Connections answered at once.
    pub max_connections: usize,
}

/// A request: method, path (percent-encoding kept), query string, headers, body.
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

    /// The first query parameter `key`, decoded as a form (`%XX` escapes, and `+` is a space).
    pub fn param(&self, key: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes()).find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
    }
}

/// What the bytes read so far hold.
enum Head {
    /// A whole head of this many bytes, parsed.
    Whole(usize, Request),
    /// Not all of it yet.
    Partial,
}

fn parse(buf: &[u8]) -> Result<Head, Response> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(Response::text(431, format!("request head larger than {MAX_HEAD} bytes\n")))
        }
        Ok(httparse::Status::Partial) => return Ok(Head::Partial),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Response::text(431, format!("more than {MAX_HEADERS} header lines\n")))
        }
        Err(e) => return Err(Response::text(400, format!("bad request: {e}\n"))),
    };
    if n > MAX_HEAD {
        return Err(Response::text(431, format!("request head larger than {MAX_HEAD} bytes\n")));
    }
    let target = req.path.unwrap_or("");
    if !target.starts_with('/') {
        return Err(Response::text(400, "bad request: the target must be a path\n"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut out = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).map_err(|_| Response::text(400, "a header value is not UTF-8\n"))?;
        out.push((h.name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let req = Request {
        method: req.method.unwrap_or("").to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers: out,
        body: Vec::new(),
    };
    Ok(Head::Whole(n, req))
}

/// A whole request head (for tests and callers holding the bytes).
pub fn parse_head(head: &[u8]) -> Result<Request, Response> {
    match parse(head)? {
        Head::Whole(_, r) => Ok(r),
        Head::Partial => Err(Response::text(400, "incomplete request head\n")),
    }
}

/// Reads from `s` into `buf` before `until`; Err(408) past it, Err(400) when the client closed.
fn fill(s: &mut TcpStream, buf: &mut Vec<u8>, until: Instant) -> Result<(), Response> {
    let late = || Response::text(408, "the request took too long\n");
    let left = until.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(late());
    }
    s.set_read_timeout(Some(left)).map_err(|_| Response::text(400, "connection lost\n"))?;
    let mut chunk = [0u8; 2048];
    match s.read(&mut chunk) {
        Ok(0) => Err(Response::text(400, "incomplete request\n")),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Err(late()),
        Err(_) => Err(Response::text(400, "connection lost\n")),
    }
}

/// Reads the head of a request on `s` (accepted at `since`), parsed, and what was read past it.
pub(super) fn read_head(s: &mut TcpStream, since: Instant, limits: &Limits) -> Result<(Request, Vec<u8>), Response> {
    let until = since + limits.head_within;
    let mut buf = Vec::with_capacity(1024);
    loop {
        fill(s, &mut buf, until)?;
        if let Head::Whole(n, req) = parse(&buf)? {
            return Ok((req, buf.split_off(n)));
        }
    }
}

/// Reads the body announced by the head of `req`, starting with `read` (what came with the head).
pub(super) fn read_body(
    s: &mut TcpStream,
    req: &mut Request,
    mut read: Vec<u8>,
    since: Instant,
    limits: &Limits,
) -> Result<(), Response> {
    if req.header("transfer-encoding").is_some() {
        return Err(Response::text(411, "send a Content-Length, not a chunked body\n"));
    }
    let len = match req.header("content-length") {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| Response::text(400, "bad Content-Length\n"))?,
    };
    if len > limits.max_body {
        return Err(Response::text(413, format!("request body larger than {} bytes\n", limits.max_body)));
    }
    let until = since + limits.request_within;
    while read.len() < len {
        fill(s, &mut read, until)?;
    }
    read.truncate(len);
    req.body = read;
    Ok(())
}

/// Reads a whole request accepted at `since`: the head, then its body.
pub fn read_request(s: &mut TcpStream, since: Instant, limits: &Limits) -> Result<Request, Response> {
    let (mut req, rest) = read_head(s, since, limits)?;
    read_body(s, &mut req, rest, since, limits)?;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    const LIMITS: Limits = Limits {
        head_within: Duration::from_millis(600),
        request_within: Duration::from_millis(900),
        max_body: 10,
        max_connections: 4,
    };

    #[test]
    fn heads() {
        let r = parse_head(b"POST /api/x?topic=a%20b&n=1+2&t=a%2Bb HTTP/1.1\r\nHost: h:1\r\nX-Csrf-Token:  t \r\n\r\n")
            .unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/api/x"));
        assert_eq!(r.header("host"), Some("h:1"));
        assert_eq!(r.header("x-csrf-token"), Some("t"));
        assert_eq!(r.param("topic").as_deref(), Some("a b"));
        assert_eq!(r.param("n").as_deref(), Some("1 2"));
        assert_eq!(r.param("t").as_deref(), Some("a+b"));
        assert_eq!(r.param("none"), None);
        let bad = parse_head(b"GET /?x=%zz%4 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(bad.param("x").as_deref(), Some("%zz%4"));
        for (head, status) in [
            (&b"GET / HTTP/1.1\r\nno colon\r\n\r\n"[..], 400),
            (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
            (b"GET metrics HTTP/1.1\r\n\r\n", 400),
            (b"hello\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n", 400),
        ] {
            assert_eq!(parse_head(head).err().map(|r| r.status), Some(status), "{}", String::from_utf8_lossy(head));
        }
        let many: String = (0..70).map(|i| format!("h{i}: v\r\n")).collect();
        assert_eq!(parse_head(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()).err().unwrap().status, 431);
    }

    /// A head of exactly `len` bytes.
    fn head_of(len: usize) -> Vec<u8> {
        let start = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        let pad = len - start.len() - 4;
        let mut h = start;
        h.extend(std::iter::repeat_n(b'a', pad));
        h.extend_from_slice(b"\r\n\r\n");
        assert_eq!(h.len(), len);
        h
    }

    /// Sends `bytes` (in pieces of `piece` bytes, `gap` apart) and reads the request on the server side.
    fn exchange(bytes: Vec<u8>, piece: usize, gap: Duration) -> Result<Request, u16> {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            for p in bytes.chunks(piece) {
                if s.write_all(p).is_err() {
                    return;
                }
                std::thread::sleep(gap);
            }
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        });
        let (mut s, _) = l.accept().unwrap();
        let got = read_request(&mut s, Instant::now(), &LIMITS).map_err(|r| r.status);
        drop(s);
        t.join().unwrap();
        got
    }

    #[test]
    fn head_size_is_exact() {
        let fast = Duration::ZERO;
        assert!(exchange(head_of(MAX_HEAD), MAX_HEAD, fast).is_ok());
        assert_eq!(exchange(head_of(MAX_HEAD + 1), MAX_HEAD + 1, fast).err(), Some(431));
        assert_eq!(exchange(head_of(9000), 9000, fast).err(), Some(431));
        // The same in small pieces.
        assert!(exchange(head_of(MAX_HEAD), 1000, fast).is_ok());
        assert_eq!(exchange(head_of(MAX_HEAD + 1), 1000, fast).err(), Some(431));
    }

    #[test]
    fn bodies_and_deadlines() {
        let fast = Duration::ZERO;
        let r = exchange(b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello".to_vec(), 100, fast).unwrap();
        assert_eq!(r.body, b"hello");
        for (req, want) in [
            (&b"POST /a HTTP/1.1\r\nContent-Length: 50\r\n\r\n"[..], 413),
            (b"POST /a HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
            (b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
        ] {
            assert_eq!(exchange(req.to_vec(), 100, fast).err(), Some(want));
        }
        // A head trickled one byte every 100 ms (2.5 s in all): each read is quick, the whole head is not.
        let started = Instant::now();
        assert_eq!(exchange(b"GET /metrics HTTP/1.1\r\n\r\n".to_vec(), 1, Duration::from_millis(100)).err(), Some(408));
        assert!(started.elapsed() < Duration::from_millis(2000), "{:?}", started.elapsed());
        // A body trickled past the whole-request deadline.
        // The head (40 bytes) and half the body at once, the rest after the whole-request deadline.
        let body = b"POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789".to_vec();
        assert!(exchange(body.clone(), 45, Duration::from_millis(200)).is_ok());
        assert_eq!(exchange(body, 45, Duration::from_millis(1000)).err(), Some(408));
    }
}
