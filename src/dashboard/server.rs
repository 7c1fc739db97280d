//! Listening, routing and the security headers of every answer. One thread accepts; each
//! connection is answered on a thread of its own, at most `MAX_CONNECTIONS` at a time.

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{api, assets, auth, sampler, State};
use crate::metrics::http::{answer, read_request, Request, Response};

/// Connections answered at once; more are told to come back.
const MAX_CONNECTIONS: usize = 32;
/// The largest request body (a POST of the API is a small JSON object).
const MAX_BODY: usize = 64 * 1024;

/// The Content-Security-Policy: only this origin's script and style, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn secured(r: Response) -> Response {
    r.with_header("Content-Security-Policy", CSP)
        .with_header("X-Frame-Options", "DENY")
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header("Referrer-Policy", "no-referrer")
        .with_header("Cache-Control", "no-store")
}

/// The answer to one request.
pub fn route(state: &State, req: &Request) -> Response {
    match auth::access(req, state.opts.token.as_deref()) {
        auth::Access::Allowed => {}
        auth::Access::SetCookie => {
            let token = state.opts.token.as_deref().unwrap_or_default();
            return Response::text(303, "see /\n")
                .with_header("Location", "/")
                .with_header("Set-Cookie", auth::cookie_header(token));
        }
        auth::Access::Denied(status, why) => return Response::text(status, why),
    }
    match req.method.as_str() {
        "GET" | "HEAD" if req.path.starts_with("/api/") => api::get(state, req),
        "GET" | "HEAD" => assets::asset(&req.path, &state.csrf).unwrap_or_else(|| Response::text(404, "not found\n")),
        "POST" if req.path.starts_with("/api/") => match auth::post_allowed(req, &state.csrf) {
            Ok(()) => api::post(state, req),
            Err(why) => Response::text(403, why),
        },
        _ => Response::text(405, "GET, or POST to the API\n").with_header("Allow", "GET, HEAD, POST"),
    }
}

fn serve_connection(state: &State, mut s: TcpStream) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    let (r, head_only) = match read_request(&mut s, MAX_BODY) {
        Ok(req) => (route(state, &req), req.method == "HEAD"),
        Err(r) => (r, false),
    };
    answer(&mut s, &secured(r), head_only);
}

/// A running dashboard: its threads stop when it is dropped.
pub struct Running {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// Starts sampling and serving on `listener`.
pub fn start(state: Arc<State>, listener: TcpListener) -> std::io::Result<Running> {
    listener.set_nonblocking(true)?;
    let stop = Arc::new(AtomicBool::new(false));
    let (st, sp) = (state.clone(), stop.clone());
    let sampler = std::thread::Builder::new().name("ebats-dash-sample".into()).spawn(move || sampler::run(st, sp))?;
    let sp = stop.clone();
    let acceptor = std::thread::Builder::new().name("ebats-dash-accept".into()).spawn(move || {
        let busy = Arc::new(AtomicUsize::new(0));
        while !sp.load(Ordering::Relaxed) {
            let s = match listener.accept() {
                Ok((s, _)) => s,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            if busy.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                busy.fetch_sub(1, Ordering::SeqCst);
                let mut s = s;
                let _ = s.set_nonblocking(false);
                answer(&mut s, &Response::text(503, "busy, try again\n"), false);
                continue;
            }
            let (st, b) = (state.clone(), busy.clone());
            let spawned = std::thread::Builder::new().name("ebats-dash-conn".into()).spawn(move || {
                serve_connection(&st, s);
                b.fetch_sub(1, Ordering::SeqCst);
            });
            if spawned.is_err() {
                busy.fetch_sub(1, Ordering::SeqCst);
            }
        }
    })?;
    Ok(Running { stop, threads: vec![sampler, acceptor] })
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
