//! Listening, routing and the security headers of every answer, on the crate's HTTP server
//! (`crate::http`): one thread accepts; each connection is answered on a thread of its own, at most
//! `LIMITS.max_connections` at a time. Access (token, Host) is decided as soon as a request's head
//! is read, so a request without the token is answered before its body is read and keeps no slot.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{api, assets, auth, sampler, State};
use crate::http::{self, Handler, Limits, Request, Response};

/// The bounds of a dashboard request (a POST of the API is a small JSON object).
const LIMITS: Limits = Limits {
    head_within: Duration::from_secs(5),
    request_within: Duration::from_secs(10),
    max_body: 64 * 1024,
    max_connections: 32,
};

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

/// The answer to a request's head when it is not let in: no or a wrong token, a foreign Host, or
/// the token given as `/?token=` (answered with its cookie).
pub fn admit(state: &State, req: &Request) -> Option<Response> {
    match auth::access(req, state.opts.token.as_deref()) {
        auth::Access::Allowed => None,
        auth::Access::SetCookie => {
            let token = state.opts.token.as_deref().unwrap_or_default();
            Some(
                Response::text(303, "see /\n")
                    .with_header("Location", "/")
                    .with_header("Set-Cookie", auth::cookie_header(token)),
            )
        }
        auth::Access::Denied(status, why) => Some(Response::text(status, why)),
    }
}

/// The answer to a whole request that was let in.
pub fn route(state: &State, req: &Request) -> Response {
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

struct Dashboard(Arc<State>);

impl Handler for Dashboard {
    fn admit(&self, req: &Request) -> Option<Response> {
        admit(&self.0, req)
    }

    fn answer(&self, req: &Request) -> Response {
        route(&self.0, req)
    }

    fn dress(&self, r: Response) -> Response {
        secured(r)
    }
}

/// A running dashboard: its threads stop when it is dropped.
pub struct Running {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// Starts sampling and serving on `listener`.
pub fn start(state: Arc<State>, listener: TcpListener) -> std::io::Result<Running> {
    let stop = Arc::new(AtomicBool::new(false));
    let (st, sp) = (state.clone(), stop.clone());
    let sampler = std::thread::Builder::new().name("ebats-dash-sample".into()).spawn(move || sampler::run(st, sp))?;
    let sp = stop.clone();
    let acceptor = std::thread::Builder::new().name("ebats-dash-accept".into()).spawn(move || {
        http::serve(&listener, &LIMITS, &Dashboard(state), &|| sp.load(Ordering::Relaxed));
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
