//! Publishing with no thread hand-off: a connection of the process's own, whose socket the calling
//! (PHP) thread writes and reads itself.
//!
//! # Why
//!
//! On the session's lapin connection a confirmed publish crosses threads three times: the PHP thread
//! hands its frames to lapin's I/O thread, the runtime's reactor wakes that thread when the answer
//! arrives, and it wakes the PHP thread with the confirm (`bench/RESULTS.md`, the profile of a publish).
//! On a 2-core machine each crossing is often a context switch. Here a publish is one `write` of its
//! frames and a `read` that sleeps in the kernel until the broker's `basic.ack` is there: what a
//! client doing its I/O on the PHP thread pays, nothing more. A batch is one write of every message's
//! frames and reads until the last is answered.
//!
//! # What it does and what it leaves to the session
//!
//! Publishing with confirms: the handshake (PLAIN login, no heartbeat: see below), one channel in
//! confirm mode, `basic.publish` with its content, and the broker's answers (`basic.ack`/`nack`,
//! `basic.return`, `channel.close`, `connection.close`, `connection.blocked`). A connection of the
//! other [`Purpose`] consumes instead ([`consuming`]); a message the broker sends, a delivery or a
//! return, is put together from its frames by [`content`] (pure). Declaring and everything else stay
//! on the session's lapin connection. The session publishes here only while that connection has no
//! other use, and closes it once a publish went out here, so a process that only publishes holds this
//! one connection (`Session::publishing_on`, `rest_link`); once the lapin connection has other uses
//! it publishes there, and this one is closed, unless the process consumes on a direct connection
//! (`Session::publish_beside`): then it keeps publishing here. This connection asks for no
//! heartbeats (nothing would send them while PHP runs other code between publishes): the kernel's TCP
//! keepalive stands for them ([`keep_alive`]); one the broker closed or reset meanwhile, or that the
//! keepalive gave up, is seen before the next publish ([`Direct::alive`]) and replaced. A
//! channel the broker closed (a publish to a missing exchange) is opened anew before the next
//! publish; the connection is given up on any other failure, and the session opens another one on
//! its next publish. The confirms' bookkeeping is [`confirms`] (pure).
//!
//! # Guarantees kept
//!
//! A publish returns only once the broker confirmed it, as on the lapin channel; a refusal, a return
//! or a closed channel fails the publishes it concerns with the same kinds and messages
//! (`broker::confirm::{unroutable, refused}`, `error::reply_kind`); a wait ends at its timeout or
//! when a stop cuts it short (checked as often as `park` does). After a fork the child never
//! touches its parent's socket: the session it inherited is forgotten (`current.rs`), and so is this.

pub mod confirms;
pub mod consuming;
pub mod content;

use std::io::{ErrorKind as Io, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use amq_protocol::frame::{gen_frame, parse_frame, AMQPContentHeader, AMQPFrame, WriteContext};
use amq_protocol::protocol::{basic, channel, confirm, connection, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use amq_protocol::uri::{AMQPScheme, AMQPUri};

use super::error::{reply_kind, BrokerError, ErrorKind, Stage};
use super::park::{Cut, STOP_CHECK};
use super::publisher::Outgoing;
use confirms::Confirms;
use consuming::Received;
use content::{Arrived, Content, Head};

/// How long after the broker's last answer the connection is taken as up without a look at its
/// socket ([`Direct::alive`]): a lot published right after another costs no system call for it.
const FRESH: Duration = Duration::from_millis(100);

/// The one channel publishes go on (opened again on the same id after the broker closed it).
const CHANNEL: u16 = 1;

/// The largest frame asked for (the broker may offer less).
const FRAME_MAX: u32 = 131_072;

/// The size of a frame's header (type, channel, size) and end octet.
const FRAME_OVERHEAD: usize = 8;

/// Each connection's number, unique in the process: a publish is named by it and its id.
static SERIAL: AtomicU64 = AtomicU64::new(1);

/// Whether a node can be published to directly: plain `amqp://` (TLS stays with lapin).
pub fn serves(uri: &AMQPUri) -> bool {
    uri.scheme == AMQPScheme::AMQP
}

/// What a direct connection is for: publishing (its channel in confirm mode) or consuming
/// (`consuming.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Publishing,
    Consuming,
}

impl Purpose {
    fn word(self) -> &'static str {
        match self {
            Purpose::Publishing => "publishing",
            Purpose::Consuming => "consuming",
        }
    }
}

pub struct Direct {
    serial: u64,
    purpose: Purpose,
    stream: TcpStream,
    /// The largest body a frame carries.
    body_max: usize,
    channel_open: bool,
    out: Vec<u8>,
    /// Bytes read; those before `parsed` are frames already taken out.
    input: Vec<u8>,
    parsed: usize,
    confirms: Confirms,
    /// The message being read (a delivery, or a publish the broker returns).
    content: Content,
    /// What a consuming connection received and not yet given out.
    received: Received,
    /// Why the broker closed the channel, when it did (a publishing one is opened anew before the next
    /// publish; a consuming one ends its subscription).
    channel_closed: Option<BrokerError>,
    /// Why the connection cannot be used any more.
    broken: Option<BrokerError>,
    /// When the broker's last bytes were read.
    last_read: Instant,
    /// [`Direct::alive`] saw the socket closed or reset by the broker (answers may still be unread).
    hung_up: std::cell::Cell<bool>,
}

impl Direct {
    /// Connects to `uri` (`where_`: how errors name it) and opens a confirm channel, within `timeout`.
    /// With `keepalive`, the kernel probes the idle socket that often (see [`keep_alive`]).
    pub fn open(
        uri: &AMQPUri,
        where_: &str,
        timeout: Duration,
        keepalive: Option<Duration>,
    ) -> Result<Direct, BrokerError> {
        Direct::connect(uri, where_, timeout, keepalive, Purpose::Publishing)
    }

    /// Connects and opens the channel for `purpose`.
    fn connect(
        uri: &AMQPUri,
        where_: &str,
        timeout: Duration,
        keepalive: Option<Duration>,
        purpose: Purpose,
    ) -> Result<Direct, BrokerError> {
        let deadline = Instant::now() + timeout;
        let refused = |e: std::io::Error| {
            let kind = if e.kind() == Io::TimedOut { ErrorKind::Timeout } else { ErrorKind::ConnectRefused };
            BrokerError::not_connected(where_, kind, e)
        };
        let host = uri.authority.host.as_str();
        let addrs = super::resolve::resolve(host, uri.authority.port, remaining(deadline)).map_err(refused)?;
        let mut last = None;
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, remaining(deadline).max(Duration::from_millis(1))) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = match (stream, last) {
            (Some(s), _) => s,
            (None, Some(e)) => return Err(refused(e)),
            (None, None) => return Err(refused(std::io::Error::new(Io::NotFound, "no address"))),
        };
        let setup = |s: &TcpStream| -> std::io::Result<()> {
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(STOP_CHECK))?;
            s.set_write_timeout(Some(timeout.max(Duration::from_millis(1))))?;
            keepalive.map_or(Ok(()), |every| keep_alive(s, every))
        };
        setup(&stream).map_err(refused)?;
        let mut d = Direct {
            serial: SERIAL.fetch_add(1, Ordering::Relaxed),
            purpose,
            stream,
            body_max: FRAME_MAX as usize - FRAME_OVERHEAD,
            channel_open: false,
            out: Vec::with_capacity(4096),
            input: Vec::with_capacity(4096),
            parsed: 0,
            confirms: Confirms::default(),
            content: Content::default(),
            received: Received::default(),
            channel_closed: None,
            broken: None,
            last_read: Instant::now(),
            hung_up: std::cell::Cell::new(false),
        };
        d.handshake(uri, where_, deadline)?;
        d.open_channel(deadline)?;
        Ok(d)
    }

    fn handshake(&mut self, uri: &AMQPUri, where_: &str, deadline: Instant) -> Result<(), BrokerError> {
        let failed = |e: BrokerError| {
            let kind = match e.kind() {
                // The socket cut during the login: the broker's answer to a refused one.
                ErrorKind::ConnectionLost => ErrorKind::ConnectRefused,
                k => k,
            };
            BrokerError::not_connected(where_, kind, e.message())
        };
        self.out.extend_from_slice(b"AMQP\x00\x00\x09\x01");
        self.write_out().map_err(failed)?;
        match self.next_method(deadline, Stage::Connect).map_err(failed)? {
            AMQPClass::Connection(connection::AMQPMethod::Start(s)) => {
                if !s.mechanisms.to_string().split(' ').any(|m| m == "PLAIN") {
                    return Err(failed(BrokerError::new(
                        ErrorKind::CredentialsRefused,
                        format!("the broker does not offer PLAIN login (it offers {})", s.mechanisms),
                    )));
                }
            }
            other => return Err(failed(unexpected(&other, "connection.start"))),
        }
        let user = &uri.authority.userinfo;
        self.put_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: client_properties(self.purpose),
                mechanism: "PLAIN".into(),
                response: format!("\0{}\0{}", user.username, user.password).into(),
                locale: "en_US".into(),
            })),
        );
        self.write_out().map_err(failed)?;
        let tune = match self.next_method(deadline, Stage::Connect).map_err(failed)? {
            AMQPClass::Connection(connection::AMQPMethod::Tune(t)) => t,
            other => return Err(failed(unexpected(&other, "connection.tune"))),
        };
        let frame_max = if tune.frame_max == 0 { FRAME_MAX } else { tune.frame_max.min(FRAME_MAX) };
        self.body_max = frame_max as usize - FRAME_OVERHEAD;
        self.put_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: tune.channel_max,
                frame_max,
                heartbeat: 0,
            })),
        );
        self.put_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: uri.vhost.as_str().into(),
            })),
        );
        self.write_out().map_err(failed)?;
        match self.next_method(deadline, Stage::Connect).map_err(failed)? {
            AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)) => Ok(()),
            other => Err(failed(unexpected(&other, "connection.open-ok"))),
        }
    }

    /// Opens the channel, in confirm mode for publishing (again after the broker closed it: its
    /// `close-ok` was sent, so its id is free).
    fn open_channel(&mut self, deadline: Instant) -> Result<(), BrokerError> {
        let ch = CHANNEL;
        self.put_method(ch, AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})));
        let mut answers = vec!["channel.open-ok"];
        if self.purpose == Purpose::Publishing {
            self.put_method(ch, AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select { nowait: false })));
            answers.push("confirm.select-ok");
        }
        self.write_out()?;
        for expected in answers {
            match self.next_method(deadline, Stage::Open)? {
                AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)) if expected == "channel.open-ok" => {}
                AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_)) if expected == "confirm.select-ok" => {}
                other => return Err(self.give_up(unexpected(&other, expected))),
            }
        }
        self.confirms.channel_opened();
        self.channel_open = true;
        self.channel_closed = None;
        Ok(())
    }

    /// This connection's number in the process.
    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// Why it cannot be used any more, if so.
    pub fn broken(&self) -> Option<&BrokerError> {
        self.broken.as_ref()
    }

    /// Whether the connection is still up as far as can be told without waiting: not given up, and
    /// the broker has not closed or reset the socket (even with answers still unread before the end).
    /// Within [`FRESH`] of the broker's last answer it is taken as up without asking the socket (a
    /// publish that finds it gone after all fails as lost and is sent again on a new connection), unless
    /// an earlier look saw it closed: answers read after the close came in do not make it up again.
    pub fn alive(&self) -> bool {
        if self.broken.is_some() || self.hung_up.get() {
            return false;
        }
        if self.last_read.elapsed() < FRESH {
            return true;
        }
        let mut fd = libc::pollfd { fd: self.stream.as_raw_fd(), events: libc::POLLRDHUP, revents: 0 };
        // SAFETY: `fd` is one valid pollfd for the stream's descriptor, open for as long as `self`
        // is; a timeout of 0 never blocks.
        let n = unsafe { libc::poll(&mut fd, 1, 0) };
        // A poll that failed (interrupted) tells nothing: the next read will.
        let up = n <= 0 || fd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) == 0;
        self.hung_up.set(!up);
        up
    }

    /// Publishes still waiting for the broker's answer.
    pub fn waiting(&self) -> usize {
        self.confirms.waiting()
    }

    /// Writes `messages` (one write for all of them, the channel opened anew first if the broker
    /// closed it); returns their ids, to be awaited with [`Direct::wait`] and taken with
    /// [`Direct::take`].
    pub fn send(&mut self, messages: &[Outgoing], timeout: Duration) -> Result<Vec<u64>, BrokerError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        if !self.channel_open {
            self.open_channel(Instant::now() + timeout)?;
        }
        let mut ids = Vec::with_capacity(messages.len());
        for m in messages {
            self.put_message(m);
            ids.push(self.confirms.sent(m.sent()));
        }
        self.write_out()?;
        Ok(ids)
    }

    /// Reads the broker's answers until none of `ids` waits any more; fails with a timeout after
    /// `timeout` without a new answer, or when a stop cuts the wait short.
    pub fn wait(&mut self, ids: &[u64], timeout: Duration, what: &str) -> Result<(), BrokerError> {
        let mut seen = self.confirms.answers();
        let mut deadline = Instant::now() + timeout;
        loop {
            self.handle_input()?;
            if !ids.iter().any(|id| self.confirms.waits(*id)) {
                return Ok(());
            }
            if let Some(e) = &self.broken {
                return Err(e.clone());
            }
            if self.confirms.answers() != seen {
                seen = self.confirms.answers();
                deadline = Instant::now() + timeout;
            }
            if Instant::now() >= deadline {
                return Err(Cut::TimedOut.error(timeout, what));
            }
            if super::stop::cuts_wait() {
                return Err(Cut::Stopped.error(timeout, what));
            }
            self.fill()?;
        }
    }

    /// Handles the answers the socket already holds, without waiting for more: one `recv` that does
    /// not block.
    pub fn read_answers(&mut self) -> Result<(), BrokerError> {
        self.fill_now()?;
        self.handle_input()
    }

    /// The answer to publish `id`, once it came.
    pub fn take(&mut self, id: u64) -> Option<Result<(), BrokerError>> {
        self.confirms.take(id)
    }

    /// Closes the connection, waiting (bounded) for the broker's `close-ok`; what still waits fails
    /// with `why`. Returns every answer not taken yet.
    pub fn close(mut self, why: &BrokerError) -> Vec<(u64, Result<(), BrokerError>)> {
        self.close_in_place(why);
        self.confirms.drain(why).collect()
    }

    /// [`Direct::close`], leaving the connection given up in place (with `why` when the broker's
    /// `close-ok` did not come): every frame written before has been read by the broker once it came.
    pub fn close_in_place(&mut self, why: &BrokerError) {
        if self.broken.is_none() {
            self.put_method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                    reply_code: 200,
                    reply_text: "bye".into(),
                    class_id: 0,
                    method_id: 0,
                })),
            );
            if self.write_out().is_ok() {
                let deadline = Instant::now() + Duration::from_secs(1);
                while self.broken.is_none() && Instant::now() < deadline {
                    if self.handle_input().is_err() || self.fill().is_err() {
                        break;
                    }
                }
            }
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        self.give_up(why.clone());
    }

    /// Gives the connection up at once (no close handshake: the broker may be gone); what still
    /// waits fails with `why`. Returns every answer not taken yet.
    pub fn abandon(mut self, why: &BrokerError) -> Vec<(u64, Result<(), BrokerError>)> {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        self.give_up(why.clone());
        self.confirms.drain(why).collect()
    }

    /// Frames of a `basic.publish` with its content, appended to the output.
    fn put_message(&mut self, m: &Outgoing) {
        let ch = CHANNEL;
        self.put_method(
            ch,
            AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: m.exchange.as_str().into(),
                routing_key: m.routing_key.as_str().into(),
                mandatory: m.mandatory,
                immediate: false,
            })),
        );
        let header =
            AMQPContentHeader { class_id: 60, body_size: m.body.len() as u64, properties: m.properties.clone() };
        self.put(&AMQPFrame::Header(ch, header));
        for part in m.body.chunks(self.body_max) {
            // A body frame by hand: the body is copied once, into the output.
            self.out.push(3);
            self.out.extend_from_slice(&ch.to_be_bytes());
            self.out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            self.out.extend_from_slice(part);
            self.out.push(0xCE);
        }
    }

    fn put_method(&mut self, ch: u16, method: AMQPClass) {
        self.put(&AMQPFrame::Method(ch, method));
    }

    fn put(&mut self, frame: &AMQPFrame) {
        let out = std::mem::take(&mut self.out);
        match gen_frame(frame)(WriteContext::from(out)) {
            Ok(ctx) => self.out = ctx.write,
            // Writing into a vector does not fail; should it, nothing is sent on this connection again.
            Err(e) => {
                self.give_up(BrokerError::new(ErrorKind::Runtime, format!("cannot write a frame: {e}")));
            }
        }
    }

    /// Writes what was put, all of it.
    fn write_out(&mut self) -> Result<(), BrokerError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        let r = self.stream.write_all(&self.out);
        self.out.clear();
        r.map_err(|e| self.give_up(io_lost("writing to the broker", e)))
    }

    /// Reads what the socket has (waiting up to [`STOP_CHECK`] for something).
    fn fill(&mut self) -> Result<(), BrokerError> {
        self.read_in(0)
    }

    /// Reads what the socket already has, without waiting: one system call, where a look first
    /// (`poll`) and a read would be two.
    fn fill_now(&mut self) -> Result<(), BrokerError> {
        self.read_in(libc::MSG_DONTWAIT)
    }

    /// One `recv` with `flags` into the input.
    fn read_in(&mut self, flags: libc::c_int) -> Result<(), BrokerError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        let mut buf = [0u8; 16 * 1024];
        // SAFETY: `buf` is valid for writes of its length for the call; the descriptor is owned by
        // `self.stream`, open for as long as `self` is.
        let n = unsafe { libc::recv(self.stream.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
        let read = if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n as usize) };
        match read {
            Ok(0) => Err(self.give_up(BrokerError::new(ErrorKind::ConnectionLost, "the broker closed the connection"))),
            Ok(n) => {
                if self.parsed > 0 {
                    self.input.drain(..self.parsed);
                    self.parsed = 0;
                }
                self.input.extend_from_slice(&buf[..n]);
                self.last_read = Instant::now();
                Ok(())
            }
            Err(e) if matches!(e.kind(), Io::WouldBlock | Io::TimedOut | Io::Interrupted) => Ok(()),
            Err(e) => Err(self.give_up(io_lost("reading from the broker", e))),
        }
    }

    /// The next whole frame read, if one is there.
    fn next_frame(&mut self) -> Result<Option<AMQPFrame>, BrokerError> {
        let input = &self.input[self.parsed..];
        if input.len() < 7 {
            return Ok(None);
        }
        if input.starts_with(b"AMQP") {
            return Err(self.give_up(BrokerError::new(
                ErrorKind::ConnectRefused,
                "the broker does not speak AMQP 0-9-1 (it answered with another protocol header)",
            )));
        }
        let size = u32::from_be_bytes([input[3], input[4], input[5], input[6]]) as usize;
        let total = 7 + size + 1;
        if input.len() < total {
            return Ok(None);
        }
        // Frames are taken from the front without moving what follows: the bytes taken are dropped
        // at the next read.
        let parsed = parse_frame(&input[..total]).map(|(_, f)| f);
        self.parsed += total;
        match parsed {
            Ok(f) => Ok(Some(f)),
            Err(e) => Err(self.give_up(BrokerError::new(ErrorKind::Runtime, format!("cannot read a frame: {e}")))),
        }
    }

    /// The next method read (answering the broker's closes), within `deadline`.
    fn next_method(&mut self, deadline: Instant, stage: Stage) -> Result<AMQPClass, BrokerError> {
        loop {
            while let Some(f) = self.next_frame()? {
                if let AMQPFrame::Method(_, m) = f {
                    if let Some(e) = self.closing(&m, stage) {
                        return Err(e);
                    }
                    return Ok(m);
                }
            }
            if Instant::now() >= deadline {
                return Err(self.give_up(BrokerError::new(ErrorKind::Timeout, "no answer from the broker in time")));
            }
            if super::stop::cuts_wait() {
                return Err(self.give_up(BrokerError::new(ErrorKind::Stopped, "stopped while connecting")));
            }
            self.fill()?;
        }
    }

    /// Handles every whole frame read: answers, returns, deliveries, consumers' news, closes.
    fn handle_input(&mut self) -> Result<(), BrokerError> {
        while let Some(f) = self.next_frame()? {
            let whole = match f {
                AMQPFrame::Method(_, m) => self.method(m).map(|_| None),
                AMQPFrame::Header(_, h) => self.content.header(h),
                AMQPFrame::Body(_, b) => self.content.body(&b),
                _ => Ok(None),
            };
            match whole {
                Ok(Some(a)) => self.arrived(a),
                Ok(None) => {}
                Err(why) => {
                    return Err(self.give_up(BrokerError::new(
                        ErrorKind::Runtime,
                        format!("the broker's frames made no sense: {why}"),
                    )))
                }
            }
        }
        self.write_out()
    }

    fn method(&mut self, m: AMQPClass) -> Result<(), String> {
        if self.closing(&m, Stage::Open).is_some() {
            return Ok(());
        }
        match m {
            AMQPClass::Basic(basic::AMQPMethod::Ack(a)) => self.confirms.answer(a.delivery_tag, a.multiple, true),
            AMQPClass::Basic(basic::AMQPMethod::Nack(n)) => self.confirms.answer(n.delivery_tag, n.multiple, false),
            AMQPClass::Basic(basic::AMQPMethod::Return(r)) => self.content.method(Head::Return(r))?,
            AMQPClass::Basic(basic::AMQPMethod::Deliver(d)) => self.content.method(Head::Deliver(d))?,
            AMQPClass::Basic(basic::AMQPMethod::Cancel(c)) => {
                // The broker cancelled a consumer (its queue was deleted): answered when it asks.
                if !c.nowait {
                    let ok = basic::CancelOk { consumer_tag: c.consumer_tag.clone() };
                    self.put_method(CHANNEL, AMQPClass::Basic(basic::AMQPMethod::CancelOk(ok)));
                }
                self.received.cancelled(c.consumer_tag.as_str());
            }
            // `basic.qos-ok`, `basic.consume-ok`, `basic.cancel-ok`: what a consumer's call waits for.
            // `connection.blocked` and the rest: a blocked broker answers later, or the wait times out.
            other => self.received.answer(other),
        }
        Ok(())
    }

    /// A whole message: a delivery for the consumer, or a returned publish for the confirms.
    fn arrived(&mut self, a: Arrived) {
        match a.head {
            Head::Deliver(d) => self.received.delivered(d, a.properties, a.body),
            Head::Return(r) => {
                let id = a.properties.message_id().as_ref().map(|s| s.to_string());
                self.confirms.returned(
                    r.exchange.as_str(),
                    r.routing_key.as_str(),
                    id.as_deref(),
                    r.reply_code,
                    r.reply_text.as_str(),
                );
            }
        }
    }

    /// A close from the broker: answered, and its error (what waits on the channel fails with it).
    fn closing(&mut self, m: &AMQPClass, stage: Stage) -> Option<BrokerError> {
        match m {
            AMQPClass::Channel(channel::AMQPMethod::Close(c)) => {
                let e = BrokerError::new(
                    reply_kind(c.reply_code, false, stage),
                    format!("the broker closed the {} channel: {} {}", self.purpose.word(), c.reply_code, c.reply_text),
                );
                self.put_method(CHANNEL, AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})));
                self.confirms.fail_all(&e);
                self.channel_closed = Some(e.clone());
                self.channel_gone();
                Some(e)
            }
            AMQPClass::Connection(connection::AMQPMethod::Close(c)) => {
                let e = BrokerError::new(
                    reply_kind(c.reply_code, true, stage),
                    format!("the broker closed the connection: {} {}", c.reply_code, c.reply_text),
                );
                self.put_method(0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})));
                let _ = self.stream.write_all(&self.out);
                self.out.clear();
                Some(self.give_up(e))
            }
            AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)) => {
                Some(self.give_up(BrokerError::new(ErrorKind::ConnectionLost, "the connection was closed")))
            }
            _ => None,
        }
    }

    /// Marks the connection unusable with `e` (what waits fails with it); returns `e`.
    fn give_up(&mut self, e: BrokerError) -> BrokerError {
        if self.broken.is_none() {
            self.confirms.fail_all(&e);
            self.broken = Some(e.clone());
            self.channel_gone();
        }
        e
    }

    /// The channel is closed: a message cut short by it is dropped, and so are deliveries not given
    /// out (they can no longer be acked: the broker gives them to another consumer).
    fn channel_gone(&mut self) {
        self.channel_open = false;
        self.content = Content::default();
        self.received.channel_closed();
    }
}

/// TCP keepalive on `s`: after `every` without traffic the kernel probes the broker every `every`, and
/// gives the socket up after 3 probes unanswered. It stands for the heartbeats this connection does
/// not exchange: an idle process (a web server's worker between requests) keeps its path through
/// firewalls that drop quiet connections, and a broker gone without a word is found (the socket
/// errs, which [`Direct::alive`] sees) before a publish waits on it for its whole timeout.
fn keep_alive(s: &TcpStream, every: Duration) -> std::io::Result<()> {
    let secs = every.as_secs().clamp(1, i32::MAX as u64) as libc::c_int;
    let fd = std::os::fd::AsRawFd::as_raw_fd(s);
    for (level, name, value) in [
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1),
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, secs),
        (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, secs),
        (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 3),
    ] {
        // SAFETY: `fd` is the open socket of `s`, borrowed for the call; the option's value is a
        // c_int that lives across the call, and its size is passed with it.
        let r = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The time left until `deadline`.
fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn io_lost(what: &str, e: std::io::Error) -> BrokerError {
    let kind =
        if matches!(e.kind(), Io::TimedOut | Io::WouldBlock) { ErrorKind::Timeout } else { ErrorKind::ConnectionLost };
    BrokerError::new(kind, format!("{what} failed: {e}"))
}

fn unexpected(m: &AMQPClass, expected: &str) -> BrokerError {
    let got = format!("{m:?}");
    let got: String = got.chars().take(120).collect();
    BrokerError::new(ErrorKind::Runtime, format!("the broker answered {got} where {expected} was expected"))
}

/// What the connection says of itself: its name (as the lapin connection's, marked), and what it
/// understands (confirms, negative ones, being blocked, a refused login answered by a close).
fn client_properties(purpose: Purpose) -> FieldTable {
    let mut caps = FieldTable::default();
    let understood = [
        "publisher_confirms",
        "basic.nack",
        "connection.blocked",
        "authentication_failure_close",
        "consumer_cancel_notify",
    ];
    for c in understood {
        caps.insert(c.into(), AMQPValue::Boolean(true));
    }
    let mut props = FieldTable::default();
    props.insert("product".into(), AMQPValue::LongString(LongString::from("ebats")));
    props.insert(
        "connection_name".into(),
        AMQPValue::LongString(format!("ebats pid {} ({})", std::process::id(), purpose.word()).into()),
    );
    props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    props
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_amqp_is_served() {
        let plain: AMQPUri = "amqp://guest:guest@127.0.0.1:5672/%2f".parse().unwrap();
        let tls: AMQPUri = "amqps://guest:guest@127.0.0.1:5671/%2f".parse().unwrap();
        assert!(serves(&plain));
        assert!(!serves(&tls));
    }
}
