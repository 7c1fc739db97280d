//! Concurrency permits held on the broker: a limit of N at once is N slots, each an exclusive queue
//! (`Names::permit`, no messages ever). Declaring one succeeds for one connection only; any other
//! gets 405 RESOURCE_LOCKED ([`ErrorKind::Locked`]), which closes that channel, so permits use a
//! channel of their own, opened again after a refusal. A permit is released by deleting its queue,
//! and the broker deletes it itself when the connection that holds it dies (kill -9, a lost host, a
//! cut): the permit comes back within the broker's own detection of a dead connection (the
//! heartbeat), never after a timeout of ours that could let two run at once.
//!
//! Permits are taken on the process's session connection, the one its consumer uses, so a lost
//! connection gives back its unacked tasks and its permits together.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};

use super::current::with_session;
use super::error::{BrokerError, ErrorKind};
use super::park::{self, Cut, STOP_CHECK};
use super::session::Session;
use super::{connection, permit_line, stop};
use crate::config::Settings;
use crate::log;

/// One slot taken, on the connection of generation `generation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    queue: String,
    generation: u64,
}

impl Permit {
    pub fn queue(&self) -> &str {
        &self.queue
    }
}

/// Permits taken on one connection: the channel they are taken on, and which connection that is.
#[derive(Default)]
pub struct Permits {
    /// A session of their own; `None`: the process's session.
    own: Option<Session>,
    conn: Option<Arc<Connection>>,
    ch: Option<Channel>,
    /// Counts the connections permits were taken on: a permit of an earlier one is gone.
    generation: u64,
    /// The channel of the waiting lines (`broker::permit_line`), on the same connection: not the
    /// permits' one, which a refusal closes.
    line_ch: Option<Channel>,
    /// The line this holder waits in, and its consumer there.
    in_line: Option<(String, Consumer)>,
    /// The lines' failures logged, once a minute each at most (they may recur at every wait).
    said: Option<log::Throttle>,
}

impl Permits {
    /// Permits taken on the process's session connection.
    pub fn new() -> Permits {
        Permits::default()
    }

    /// Permits taken on a session of their own (its own connection): several holders in one process.
    pub fn own(session: Session) -> Permits {
        Permits { own: Some(session), ..Permits::default() }
    }

    /// Closes the session of its own (every permit taken on it goes back); nothing for the process's.
    pub fn close(&mut self) {
        if let Some(s) = self.own.as_mut() {
            s.close();
        }
    }

    fn on<R>(&mut self, f: impl FnOnce(&mut Session) -> Result<R, BrokerError>) -> Result<R, BrokerError> {
        match self.own.as_mut() {
            Some(s) => f(s),
            None => with_session(f),
        }
    }

    /// Whether `p` is still held: its connection is the current one and still open.
    pub fn holds(&self, p: &Permit) -> bool {
        p.generation == self.generation && self.conn.as_ref().is_some_and(|c| c.status().connected())
    }

    /// Takes one of the `n` slots named by `slot(i)`, trying them from a random start; `None` when
    /// every slot is held by another connection.
    pub fn acquire(
        &mut self,
        settings: &Settings,
        n: u32,
        slot: impl Fn(u32) -> String,
    ) -> Result<Option<Permit>, BrokerError> {
        let start = (uuid::Uuid::new_v4().as_u128() % u128::from(n.max(1))) as u32;
        for j in 0..n {
            let queue = slot((start + j) % n);
            let ch = self.channel(settings)?;
            let declared = self.on(|s| {
                s.wait(settings.confirm_timeout, "taking a concurrency permit", async {
                    ch.queue_declare(
                        queue.as_str().into(),
                        QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| BrokerError::lapin(&format!("cannot declare the permit '{queue}'"), &e))
                })
            });
            match declared {
                Ok(_) => return Ok(Some(Permit { queue, generation: self.generation })),
                Err(e) => {
                    // The broker closed the channel (a refusal) or it is in doubt: a new one next time.
                    self.ch = None;
                    if e.kind() != ErrorKind::Locked {
                        return Err(e);
                    }
                }
            }
        }
        Ok(None)
    }

    /// Gives a permit back (its queue deleted, not waiting for the answer: a later declaration on
    /// the same channel comes after it). A permit of a connection that is gone went with it.
    pub fn release(&mut self, settings: &Settings, p: Permit) -> Result<(), BrokerError> {
        if !self.holds(&p) {
            return Ok(());
        }
        let ch = self.channel(settings)?;
        if !self.holds(&p) {
            return Ok(());
        }
        self.on(|s| {
            s.wait(settings.confirm_timeout, "releasing a concurrency permit", async {
                ch.queue_delete(p.queue.as_str().into(), QueueDeleteOptions { nowait: true, ..Default::default() })
                    .await
                    .map_err(|e| BrokerError::lapin(&format!("cannot delete the permit '{}'", p.queue), &e))
            })
        })
        .map(|_| ())
        .inspect_err(|_| self.ch = None)
    }

    /// Waits in place at most `wait` for a permit whose counter has the waiting line `line`: in that
    /// line (joined at the first call, left by [`Permits::leave_line`]), so that a holder giving a
    /// permit back wakes it, which ends the wait at once. True when a stop was asked or `interrupted`
    /// said to leave. A line that cannot be joined is logged and the wait is a plain one.
    pub fn wait_turn(
        &mut self,
        settings: &Settings,
        line: &str,
        wait: Duration,
        interrupted: &dyn Fn() -> bool,
    ) -> bool {
        if let Err(e) = self.join(settings, line) {
            self.complain("waiting in place without a turn", &e);
            return stop::pause(wait, wait, interrupted);
        }
        let deadline = Instant::now() + wait;
        loop {
            if stop::requested().is_some() || interrupted() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let Some((_, consumer)) = self.in_line.as_mut() else { return stop::pause(left, left, interrupted) };
            match park::wait(permit_line::woken(consumer), left.min(STOP_CHECK)) {
                Ok(true) => return false,
                // Its channel or connection closed: a plain wait; the next call joins again.
                Ok(false) => {
                    self.in_line = None;
                    return stop::pause(left, left, interrupted);
                }
                Err(Cut::Stopped) => return true,
                Err(Cut::TimedOut) => {}
            }
        }
    }

    /// Joins `line`, leaving another one first; nothing when already in it.
    fn join(&mut self, settings: &Settings, line: &str) -> Result<(), BrokerError> {
        let open = self.line_ch.as_ref().is_some_and(|c| c.status().connected());
        match &self.in_line {
            Some((l, _)) if l == line && open => return Ok(()),
            Some(_) => self.leave_line(settings),
            None => {}
        }
        let ch = self.line_channel(settings)?;
        let tag = format!("line-{}-{}", std::process::id(), self.generation);
        let consumer = self
            .on(|s| s.wait(settings.confirm_timeout, "joining a waiting line", permit_line::join(&ch, line, &tag)))?;
        self.in_line = Some((line.to_string(), consumer));
        Ok(())
    }

    /// Leaves the waiting line this holder is in, if any (a wake already sent to it is lost: a turn,
    /// not a permit).
    pub fn leave_line(&mut self, settings: &Settings) {
        let Some((_, consumer)) = self.in_line.take() else { return };
        let Some(ch) = self.line_ch.clone().filter(|c| c.status().connected()) else { return };
        if self
            .on(|s| s.wait(settings.confirm_timeout, "leaving a waiting line", permit_line::leave(&ch, &consumer)))
            .is_err()
        {
            self.line_ch = None;
        }
    }

    /// How many wait in place on `line` (see [`permit_line::declare`]).
    pub fn waiting(&mut self, settings: &Settings, line: &str) -> Result<u32, BrokerError> {
        let ch = self.line_channel(settings)?;
        self.on(|s| s.wait(settings.confirm_timeout, "counting a waiting line", permit_line::declare(&ch, line)))
            .inspect_err(|_| self.line_ch = None)
    }

    /// Wakes one of those waiting on `line` (not confirmed: a hint); a failure is logged. Sent on the
    /// permits' channel, after the release of the permit it is about: the broker deletes that permit's
    /// queue before it routes the wake, so the woken child does not find the permit still held.
    pub fn wake(&mut self, settings: &Settings, line: &str) {
        let woke = self.channel(settings).and_then(|ch| {
            self.on(|s| s.wait(settings.confirm_timeout, "waking a waiting child", permit_line::wake(&ch, line)))
        });
        if let Err(e) = woke {
            self.ch = None;
            self.complain("a permit given back woke nobody", &e);
        }
    }

    /// Logs a failure of the waiting lines: a line a minute at most for `what`, with how many were
    /// left out. The lines are a hint; their failures cost turns, never a permit.
    fn complain(&mut self, what: &str, e: &BrokerError) {
        let said = self.said.get_or_insert_with(|| log::Throttle::new(Duration::from_secs(60)));
        if let Some(more) = said.admit_said(what, Instant::now()) {
            log::error(&format!("{what}: {e}{more}"));
        }
    }

    /// The waiting lines' channel, opened on the session's connection when there is none (or it closed).
    fn line_channel(&mut self, settings: &Settings) -> Result<Channel, BrokerError> {
        if let Some(ch) = self.line_ch.as_ref().filter(|c| c.status().connected()) {
            return Ok(ch.clone());
        }
        self.in_line = None;
        let (_, ch) = self.open_channel(settings, "opening a channel for waiting lines")?;
        self.line_ch = Some(ch.clone());
        Ok(ch)
    }

    /// A new channel on the session's connection, and that connection.
    fn open_channel(&mut self, settings: &Settings, what: &str) -> Result<(Arc<Connection>, Channel), BrokerError> {
        self.on(|s| {
            let conn = s.link(settings)?.connection.clone();
            let ch = s.wait(settings.confirm_timeout, what, connection::channel(&conn))?;
            Ok((conn, ch))
        })
    }

    /// The permits' channel, opened on the session's connection when there is none (or it closed).
    fn channel(&mut self, settings: &Settings) -> Result<Channel, BrokerError> {
        if let Some(ch) = self.ch.as_ref().filter(|c| c.status().connected()) {
            return Ok(ch.clone());
        }
        let (conn, ch) = self.open_channel(settings, "opening a channel for permits")?;
        if !self.conn.as_ref().is_some_and(|c| Arc::ptr_eq(c, &conn)) {
            self.generation += 1;
            self.conn = Some(conn);
        }
        self.ch = Some(ch.clone());
        Ok(ch)
    }
}
