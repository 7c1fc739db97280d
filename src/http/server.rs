//! The accept loop and the connections it answers.
//!
//! Each connection is answered on a thread of its own, at most `Limits::max_connections` at once.
//! A slow client (slowloris: a byte every few seconds) cannot hold the server from others:
//!
//! - every connection has a deadline for its whole head and one for its whole request, however
//!   steadily its bytes trickle in (a per-read timeout alone would let it live for ever);
//! - when every slot is taken, a new connection takes the slot of the connection that has been
//!   reading its head the longest, which is dropped: its reading side is shut down, so that its
//!   thread's read ends at once, while its writing side stays open, so that a connection whose
//!   whole head was read just before it was dropped is still answered. A real client (Prometheus,
//!   a browser, curl) sends its head in one packet and leaves that stage within a millisecond of being accepted, and
//!   one whose whole head waits unread (its thread not yet run, on a loaded machine) counts as
//!   admitted, so what is dropped is a slow client, never one already admitted. Unauthenticated connections of
//!   the dashboard have no share of their own: the token is checked as soon as the head is read
//!   and a request without it is answered at once (its body never read), so the only connections
//!   that keep a slot for long are admitted ones. Slow ones hold slots only until a new connection
//!   needs one, so a flood of trickling connections churns among themselves while each fast
//!   request is served. Only when every slot holds an admitted request is a new connection
//!   refused (503).
//! - stopping does not wait on clients: every connection is shut down (its blocked read or write
//!   returns at once), and only answers being computed are waited for.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::request::{read_body, read_head, Limits};
use super::{answer, Handler, Response};

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stage {
    /// Reading the head, or being answered without being admitted (bad head, no token).
    Head,
    /// Admitted by the handler: reading its body or being answered.
    Admitted,
    /// Dropped to make room; its thread is ending.
    Dropped,
}

/// What to do with a new connection.
#[derive(Debug, PartialEq)]
pub enum Placement {
    /// A slot is free.
    Take,
    /// Drop the connection at this index (the one reading its head the longest) and take its slot.
    Evict(usize),
    /// Every slot holds an admitted request: answer 503.
    Refuse,
}

/// Where a new connection goes, given the connections now served (stage, when accepted).
pub fn place(conns: &[(Stage, Instant)], cap: usize) -> Placement {
    let live = conns.iter().filter(|(s, _)| *s != Stage::Dropped).count();
    if live < cap {
        return Placement::Take;
    }
    conns
        .iter()
        .enumerate()
        .filter(|(_, (s, _))| *s == Stage::Head)
        .min_by_key(|(_, (_, since))| *since)
        .map_or(Placement::Refuse, |(i, _)| Placement::Evict(i))
}

/// Whether the end of a request head (a blank line) waits unread in `s`'s socket buffer; never blocks.
fn head_waiting(s: &TcpStream) -> bool {
    let mut buf = [0u8; 2048];
    // SAFETY: `buf` is valid for writes of its length for the call; the descriptor is owned by `s`,
    // which outlives the call; MSG_PEEK leaves the data in the socket, MSG_DONTWAIT keeps it from blocking.
    let n =
        unsafe { libc::recv(s.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    n > 0 && buf[..n as usize].windows(4).any(|w| w == b"\r\n\r\n")
}

struct Conn {
    id: u64,
    stream: TcpStream,
    stage: Stage,
    since: Instant,
}

#[derive(Default)]
struct Table(Mutex<Vec<Conn>>);

impl Table {
    /// Takes a slot for `s` (accepted at `since`) under the id `id`; false when refused.
    fn enter(&self, id: u64, s: &TcpStream, since: Instant, cap: usize) -> bool {
        let mut conns = self.0.lock();
        // A connection whose whole head already waits in its socket is a real client whose thread has
        // not read it yet (a loaded machine): it is counted as admitted, never evicted for a newcomer.
        // Looked at only when every slot is taken (only then is one evicted).
        let full = conns.iter().filter(|c| c.stage != Stage::Dropped).count() >= cap;
        let seen: Vec<(Stage, Instant)> = conns
            .iter()
            .map(|c| match c.stage {
                Stage::Head if full && head_waiting(&c.stream) => (Stage::Admitted, c.since),
                stage => (stage, c.since),
            })
            .collect();
        match place(&seen, cap) {
            Placement::Refuse => return false,
            Placement::Evict(i) => {
                conns[i].stage = Stage::Dropped;
                // Its read ends; an answer to a head already read can still be written.
                let _ = conns[i].stream.shutdown(Shutdown::Read);
            }
            Placement::Take => {}
        }
        let Ok(stream) = s.try_clone() else { return false };
        conns.push(Conn { id, stream, stage: Stage::Head, since });
        true
    }

    /// Moves `id` to `to`, unless it was dropped.
    fn to(&self, id: u64, to: Stage) {
        let mut conns = self.0.lock();
        if let Some(c) = conns.iter_mut().find(|c| c.id == id && c.stage != Stage::Dropped) {
            c.stage = to;
        }
    }

    fn dropped(&self, id: u64) -> bool {
        self.0.lock().iter().any(|c| c.id == id && c.stage == Stage::Dropped)
    }

    fn leave(&self, id: u64) {
        self.0.lock().retain(|c| c.id != id);
    }

    fn shut_all(&self) {
        for c in self.0.lock().iter_mut() {
            c.stage = Stage::Dropped;
            let _ = c.stream.shutdown(Shutdown::Both);
        }
    }
}

/// Answers one connection. One dropped while its head was read whole (its thread had read it, but
/// not yet moved it out of [`Stage::Head`]) is still answered: it was a real client, and only its
/// reading side was shut down (a body it still has to send is not read: it is answered with an error).
fn connection(table: &Table, id: u64, mut s: TcpStream, since: Instant, limits: &Limits, handler: &dyn Handler) {
    let answered = match read_head(&mut s, since, limits) {
        // Dropped while its head trickled in: a slow client, told nothing.
        Err(_) if table.dropped(id) => None,
        Err(r) => Some((r, false)),
        Ok((mut req, rest)) => {
            let head_only = req.method == "HEAD";
            Some(match handler.admit(&req) {
                Some(r) => (r, head_only),
                None => {
                    table.to(id, Stage::Admitted);
                    match read_body(&mut s, &mut req, rest, since, limits) {
                        Err(r) => (r, false),
                        Ok(()) => (handler.answer(&req), head_only),
                    }
                }
            })
        }
    };
    if let Some((r, head_only)) = answered {
        answer(&mut s, &handler.dress(r), head_only);
    }
    table.leave(id);
}

/// Answers 503 without waiting on the client (the accept loop must not block on it).
fn refuse(s: TcpStream, handler: &dyn Handler) {
    let _ = s.set_nonblocking(true);
    let r = handler.dress(Response::text(503, "busy, try again\n"));
    let mut s = s;
    let mut head = format!("HTTP/1.1 503 Service Unavailable\r\nContent-Type: {}\r\n", r.content_type);
    for (name, value) in &r.headers {
        head.push_str(&format!("{name}: {}\r\n", value.replace(['\r', '\n'], " ")));
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n{}", r.body.len(), r.body));
    let _ = std::io::Write::write_all(&mut s, head.as_bytes());
}

/// Waits until `listener` may have a connection, for at most `d`.
fn wait_readable(listener: &TcpListener, d: Duration) {
    let mut fd = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd on a descriptor `listener` keeps open for the call's duration.
    unsafe { libc::poll(&mut fd, 1, d.as_millis() as libc::c_int) };
}

/// How often the accept loop asks `stop`.
const STOP_EVERY: Duration = Duration::from_millis(100);

/// Serves `listener` with `handler` until `stop` says so (asked every 100 ms); returns once every
/// connection is shut down and every answer being computed is given.
pub fn serve(listener: &TcpListener, limits: &Limits, handler: &dyn Handler, stop: &dyn Fn() -> bool) {
    if let Err(e) = listener.set_nonblocking(true) {
        crate::log::error(&format!("cannot serve HTTP: {e}"));
        return;
    }
    let table = Table::default();
    let mut next_id = 0u64;
    std::thread::scope(|scope| {
        while !stop() {
            let s = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    wait_readable(listener, STOP_EVERY);
                    continue;
                }
                Err(_) => {
                    // Out of descriptors, or a connection reset before it was accepted.
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            let since = Instant::now();
            let _ = s.set_nonblocking(false);
            let _ = s.set_write_timeout(Some(limits.request_within));
            next_id += 1;
            let id = next_id;
            if !table.enter(id, &s, since, limits.max_connections) {
                refuse(s, handler);
                continue;
            }
            let table = &table;
            let spawned = std::thread::Builder::new()
                .name("ebats-http".into())
                .spawn_scoped(scope, move || connection(table, id, s, since, limits, handler));
            if spawned.is_err() {
                table.leave(id);
            }
        }
        table.shut_all();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn placing() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        use Stage::*;
        for (conns, cap, want) in [
            (vec![], 2, Placement::Take),
            (vec![(Head, at(1))], 2, Placement::Take),
            (vec![(Admitted, at(1)), (Head, at(3)), (Head, at(2))], 3, Placement::Evict(2)),
            (vec![(Head, at(1)), (Dropped, at(0))], 1, Placement::Evict(0)),
            (vec![(Dropped, at(0)), (Admitted, at(5))], 2, Placement::Take),
            (vec![(Admitted, at(1)), (Admitted, at(2))], 2, Placement::Refuse),
            (vec![(Admitted, at(1)), (Dropped, at(0))], 1, Placement::Refuse),
        ] {
            assert_eq!(place(&conns, cap), want, "{conns:?}");
        }
    }

    struct Echo;
    impl Handler for Echo {
        fn admit(&self, req: &super::super::Request) -> Option<Response> {
            (req.header("authorization") != Some("ok")).then(|| Response::text(401, "no\n"))
        }
        fn answer(&self, req: &super::super::Request) -> Response {
            Response::text(200, format!("{} {}\n", req.path, String::from_utf8_lossy(&req.body)))
        }
    }

    fn get(addr: std::net::SocketAddr, req: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(req);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// Limits of the tests: 30 s for a head and for a request, bodies of 100 bytes at most.
    fn limits(max_connections: usize) -> Limits {
        Limits {
            head_within: Duration::from_secs(30),
            request_within: Duration::from_secs(30),
            max_body: 100,
            max_connections,
        }
    }

    /// Stops the server however the test ends, so that a failed assertion does not hang it.
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    /// Holds a request for `/held` in `admit` until released, telling when one is there.
    struct Holding {
        arrived: AtomicBool,
        released: AtomicBool,
    }
    impl Handler for Holding {
        fn admit(&self, req: &super::super::Request) -> Option<Response> {
            if req.path == "/held" {
                self.arrived.store(true, Ordering::SeqCst);
                while !self.released.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            None
        }
        fn answer(&self, req: &super::super::Request) -> Response {
            Response::text(200, format!("{}\n", req.path))
        }
    }

    #[test]
    fn a_head_read_whole_is_answered_even_when_its_slot_is_taken_meanwhile() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let limits = limits(2);
        let handler = Holding { arrived: AtomicBool::new(false), released: AtomicBool::new(false) };
        let stop = AtomicBool::new(false);
        std::thread::scope(|sc| {
            let server = sc.spawn(|| serve(&l, &limits, &handler, &|| stop.load(Ordering::Relaxed)));
            let stopping = Stop(&stop);
            let mut held = TcpStream::connect(addr).unwrap();
            held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            held.write_all(b"GET /held HTTP/1.1\r\n\r\n").unwrap();
            let t0 = Instant::now();
            while !handler.arrived.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(5));
            }
            // Its head read, its thread held before it is admitted: a silent newcomer takes the other
            // slot, and the next one the oldest slot still reading its head, which is the held one's.
            let silent = TcpStream::connect(addr).unwrap();
            let third = get(addr, b"GET /third HTTP/1.1\r\n\r\n");
            assert!(third.ends_with("/third\n"), "{third:?}");
            handler.released.store(true, Ordering::SeqCst);
            let mut got = String::new();
            let _ = held.read_to_string(&mut got);
            drop(stopping);
            server.join().unwrap();
            drop(silent);
            assert!(got.starts_with("HTTP/1.1 200 OK\r\n") && got.ends_with("/held\n"), "{got:?}");
        });
    }

    #[test]
    fn slow_clients_do_not_hold_it() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let limits = limits(4);
        let stop = AtomicBool::new(false);
        std::thread::scope(|sc| {
            let server = sc.spawn(|| serve(&l, &limits, &Echo, &|| stop.load(Ordering::Relaxed)));
            let stopping = Stop(&stop);
            // Twenty clients that send half a head and wait.
            let slow: Vec<TcpStream> = (0..20)
                .map(|_| {
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.write_all(b"GET / HT").unwrap();
                    s
                })
                .collect();
            for i in 0..5 {
                let started = Instant::now();
                let req = format!("POST /a{i} HTTP/1.1\r\nAuthorization: ok\r\nContent-Length: 2\r\n\r\nhi");
                let got = get(addr, req.as_bytes());
                assert!(got.starts_with("HTTP/1.1 200 OK\r\n") && got.ends_with(&format!("/a{i} hi\n")), "{got}");
                // Bounds far below the 30 s a held request would wait, with room for a loaded machine.
                assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
            }
            let got = get(addr, b"POST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\n");
            assert!(got.starts_with("HTTP/1.1 401"), "{got}");
            // Stopping does not wait for the slow clients, which are shut down.
            let started = Instant::now();
            drop(stopping);
            server.join().unwrap();
            assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
            for mut s in slow {
                let mut b = [0u8; 16];
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                assert!(matches!(s.read(&mut b), Ok(0) | Err(_)));
            }
        });
    }
}
