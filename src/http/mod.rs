//! The one HTTP/1.1 server of the crate, for `/metrics`, `/healthz`, `/status.json` and the
//! dashboard: requests parsed by `httparse`, queries decoded by `form_urlencoded`, one request per
//! connection (always closed).
//!
//! - `request`: reading one request under a deadline for the whole head (and another for the whole
//!   request), a head of at most [`MAX_HEAD`] bytes (exactly: a head one byte longer is refused
//!   with 431), a body of at most a given size by `Content-Length` (no chunked bodies).
//! - `server`: the accept loop, connections answered concurrently up to a cap, the slow ones
//!   dropped first, and a stop that never waits on a client.
//!
//! What a server answers is a [`Handler`]: `admit` sees the head as soon as it is read (the
//! dashboard's token is checked there, before any body is read), `answer` the whole request.

mod request;
mod server;

pub use request::{parse_head, read_request, Limits, Request, MAX_HEAD};
pub use server::{place, serve, Placement, Stage};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// An answer: status, content type, body, and headers beyond Content-Type, Content-Length and
/// Connection.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
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

/// What a server answers.
pub trait Handler: Sync {
    /// Called as soon as the head is read, before any body: `Some` is the answer, given at once
    /// (the body is not read).
    fn admit(&self, _req: &Request) -> Option<Response> {
        None
    }

    /// The answer to a whole request.
    fn answer(&self, req: &Request) -> Response;

    /// Applied to every answer, the server's own (400, 408, 413, 431, 503) included.
    fn dress(&self, r: Response) -> Response {
        r
    }
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
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// How long, at most, [`answer`] waits for the client to close after the answer.
const LINGER: Duration = Duration::from_millis(500);

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
    // Closing with unread request bytes would reset the connection and could lose the answer: end
    // our side, then read what is left until the client closes, for a bounded time.
    let _ = s.shutdown(std::net::Shutdown::Write);
    let until = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match s.read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}
