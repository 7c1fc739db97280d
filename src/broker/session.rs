//! One process's link to the broker: a tokio runtime, one connection reused by every call, its
//! publishing channel in confirm mode, and the set of names already declared. A process that only
//! publishes does so on a direct connection instead (`broker::direct`), and the lapin connection rests
//! between the declarations it is opened for: one connection per process either way. A process that
//! consumes on a direct connection publishes on one too, beside its lapin connection
//! ([`Session::publish_beside`]).

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lapin::{Channel, Connection};

use super::confirm::{Answer, Pending};
use super::connection;
use super::direct::{self, Direct};
use super::error::{BrokerError, ErrorKind};
use super::park::{self, Cut};
use super::stop::CutWaitsShort;
use super::topology::{Decl, Known};
use crate::config::{QueueType, Settings};

pub struct Link {
    pub connection: Arc<Connection>,
    pub(super) publisher: Channel,
    /// The broker refused a publish on `publisher`: it is replaced before the next publish. (On
    /// RabbitMQ 3.10 a channel whose first publish to a quorum queue met the queue's old leader, on
    /// a node just killed, refuses every later publish to that queue; a new channel asks again.)
    renew_publisher: bool,
    /// Used for more than declaring and publishing (a channel, a subscription, a store): kept open.
    /// Otherwise it is closed once the direct connection publishes (see [`Session::rest_link`]).
    busy: bool,
}

/// What was declared on the broker since the session last dropped its connections (a broker that
/// restarted since may have lost it: a connection lost drops them, and this with them).
#[derive(Default)]
struct Declared {
    keys: HashSet<String>,
    /// The last list of declarations found all done (prefix, queue type, list): a producer publishing
    /// the same kind of message again skips building and looking up their keys.
    all: Option<(String, QueueType, Vec<Decl>)>,
    /// What declaring learnt of the broker (the event exchange's type).
    known: Known,
}

impl Link {
    fn usable(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }
}

pub struct Session {
    pid: u32,
    runtime: tokio::runtime::Runtime,
    /// The settings the connections were made with: reused while they name the same endpoints.
    endpoint: Option<Settings>,
    link: Option<Link>,
    declared: Declared,
    /// Deferred publishes waiting for their confirm.
    pub(super) pending: Vec<Pending>,
    /// The connection publishing on this thread (`broker::direct`), beside the link's; opened on the
    /// first publish, dropped with the link.
    pub(super) direct: Option<Direct>,
    /// No direct connection on this link: its node is TLS, or one could not be opened (lapin's
    /// publishing channel publishes then).
    direct_off: bool,
    /// The broker refused a publish on the direct connection: it is replaced once nothing waits on it.
    renew_direct: bool,
    /// Answers of deferred publishes made on a direct connection since given up, by serial and id.
    pub(super) settled: HashMap<(u64, u64), Result<(), BrokerError>>,
    /// This process consumes (`subscription::on_direct`): it publishes on its direct connection even
    /// while the link has other uses, so that no publish of its crosses threads.
    publishes_beside: bool,
}

impl Session {
    pub fn new() -> Result<Session, BrokerError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ebats-io")
            .enable_all()
            .build()
            .map_err(|e| BrokerError::new(ErrorKind::Runtime, format!("cannot start the I/O runtime: {e}")))?;
        Ok(Session {
            pid: std::process::id(),
            runtime,
            endpoint: None,
            link: None,
            declared: Declared::default(),
            pending: Vec::new(),
            direct: None,
            direct_off: false,
            renew_direct: false,
            settled: HashMap::new(),
            publishes_beside: false,
        })
    }

    /// The process that built this session; a forked child must not use it.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn handle(&self) -> tokio::runtime::Handle {
        self.runtime.handle().clone()
    }

    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// Runs `f` on this thread (inside the runtime's context) until it is done, failing with a
    /// timeout naming `what` after `t`, or with `Stopped` when a stop cuts the wait short.
    pub fn wait<T>(
        &self,
        t: Duration,
        what: &str,
        f: impl Future<Output = Result<T, BrokerError>>,
    ) -> Result<T, BrokerError> {
        self.wait_progressing(t, what, &Cell::new(0), f)
    }

    /// [`Session::wait`] for a lot of answers that `f` counts in `progress`: the timeout is `t`
    /// without a new answer (see [`park::wait_progressing`]).
    pub fn wait_progressing<T>(
        &self,
        t: Duration,
        what: &str,
        progress: &Cell<usize>,
        f: impl Future<Output = Result<T, BrokerError>>,
    ) -> Result<T, BrokerError> {
        self.waited(t, progress, f).unwrap_or_else(|c| Err(c.error(t, what)))
    }

    /// Polls `f` on this thread inside the runtime's context (see [`park::wait_progressing`]).
    fn waited<F: Future>(&self, t: Duration, progress: &Cell<usize>, f: F) -> Result<F::Output, Cut> {
        let _ctx = self.runtime.enter();
        park::wait_progressing(f, t, progress)
    }

    /// Whether the session's connection (or, once that rests, its direct one) is up.
    pub fn is_connected(&self) -> bool {
        self.link.as_ref().is_some_and(Link::usable) || self.direct.as_ref().is_some_and(Direct::alive)
    }

    /// From now on this process publishes on a direct connection beside its link, whatever else the
    /// link is used for: a process that consumes on a direct connection (the worker, the Scheduler,
    /// the Consumer) then takes a message, publishes what it leads to and acks it without a thread
    /// hand-off. Over TLS, or when the direct connection cannot be opened, the link publishes.
    pub fn publish_beside(&mut self) {
        self.publishes_beside = true;
    }

    /// Whether the session's lapin connection was open and is lost (its heartbeats stopped, or it
    /// broke): a connection of the process's own to the same node, which exchanges no heartbeats,
    /// takes that as its own loss (`subscription::on_direct`).
    pub fn link_lost(&self) -> bool {
        self.link.as_ref().is_some_and(|l| !l.connection.status().connected())
    }

    /// Drops the connections (closing them in the background); the next call connects anew and
    /// declares again.
    pub fn disconnect(&mut self) {
        self.drop_direct(false);
        self.direct_off = false;
        self.declared = Declared::default();
        self.endpoint = None;
        self.drop_link();
    }

    /// Closes the lapin connection in the background.
    fn drop_link(&mut self) {
        if let Some(link) = self.link.take() {
            let conn = link.connection;
            self.runtime.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(1), conn.close(200, "bye".into())).await;
            });
        }
    }

    /// Closes the connection and waits (bounded) for the broker to see it closed.
    pub fn close(&mut self) {
        self.drop_direct(true);
        self.settled.clear();
        self.declared = Declared::default();
        self.endpoint = None;
        let pending = std::mem::take(&mut self.pending);
        if let Some(link) = self.link.take() {
            // Everything is dropped inside the runtime, so no lapin object reaches for a runtime of
            // its own on the way out (that would leave a thread behind in a worker parent).
            self.runtime.block_on(async move {
                let _ = tokio::time::timeout(Duration::from_secs(2), link.connection.close(200, "bye".into())).await;
                drop(pending);
                drop(link);
            });
        }
    }

    /// The live connection for these settings, connecting (or reconnecting) as needed; kept open
    /// from then on.
    pub fn link(&mut self, settings: &Settings) -> Result<&mut Link, BrokerError> {
        self.link_quietly(settings)?.busy = true;
        // One connection per process: once the link has other uses, it publishes too (unless the
        // process consumes: see [`Session::publish_beside`]).
        if self.direct.is_some() && !self.waits_on_direct() && !self.publishes_beside {
            self.drop_direct(true);
        }
        Ok(self.link.as_mut().expect("link set above"))
    }

    /// Everything is dropped when `settings` name other endpoints than the connections', or when the
    /// direct connection was closed while idle (the broker restarted: what was declared is asked again).
    fn check_connections(&mut self, settings: &Settings) {
        let moved = self.endpoint.as_ref().is_some_and(|e| !e.same_endpoint(settings));
        if moved || self.direct.as_ref().is_some_and(|d| !d.alive()) {
            self.disconnect();
        }
    }

    /// [`Session::link`] for declaring and publishing, which may let it rest afterwards.
    fn link_quietly(&mut self, settings: &Settings) -> Result<&mut Link, BrokerError> {
        self.check_connections(settings);
        let reuse = self.link.as_ref().is_some_and(Link::usable);
        if reuse {
            self.renew_publisher(settings)?;
        } else {
            // A link that died takes everything with it; one that rested left the direct connection
            // and what was declared, still good.
            if self.link.is_some() || self.direct.is_none() {
                self.disconnect();
            }
            // Every node within the connect timeout, and the channel after.
            let t = connection::connect_budget(settings) + settings.connect_timeout;
            let where_ = settings.masked_url();
            let _cut = CutWaitsShort::begin();
            let connecting = async {
                let conn = connection::connect(settings).await?;
                let ch = connection::confirmed_channel(&conn).await?;
                Ok((conn, ch))
            };
            // A node that gave up within its own connect timeout says so; only the whole budget
            // running out is named by it.
            let (connection, publisher) = match self.waited(t, &Cell::new(0), connecting) {
                Ok(r) => r?,
                Err(Cut::TimedOut) => {
                    let m =
                        format!("cannot connect to the broker at {where_}: no answer within {:.1} s", t.as_secs_f64());
                    return Err(BrokerError::new(ErrorKind::Timeout, m));
                }
                Err(c) => return Err(c.error(t, "connecting")),
            };
            self.link = Some(Link { connection: Arc::new(connection), publisher, renew_publisher: false, busy: false });
            self.endpoint = Some(settings.clone());
        }
        Ok(self.link.as_mut().expect("link set above"))
    }

    /// Marks the publishing channel for replacement after the broker refused a publish on it.
    pub(super) fn publish_refused(&mut self) {
        if let Some(l) = self.link.as_mut() {
            l.renew_publisher = true;
        }
        self.renew_direct = self.direct.is_some();
    }

    /// What publishes the next message: the direct connection when there is one (opened as needed,
    /// on the node the link went to) and the link is used for nothing else, else the link's
    /// publishing channel.
    pub(super) fn publishing_on(&mut self, settings: &Settings) -> Result<Option<Channel>, BrokerError> {
        // A direct connection gone while idle is found here, before publishing, not by a publish.
        self.check_connections(settings);
        if self.link.as_ref().is_some_and(|l| l.busy) && !self.publishes_beside {
            return self.link(settings).map(|l| Some(l.publisher.clone()));
        }
        let up = self.direct.is_some();
        if up && !self.renew_direct {
            return Ok(None);
        }
        let ch = self.link_quietly(settings)?.publisher.clone();
        Ok(if self.direct(settings).is_some() { None } else { Some(ch) })
    }

    /// A connection used for nothing but declaring and publishing is closed once the direct
    /// connection publishes: a process that only publishes (a web request's) holds one connection,
    /// and declares on a new one only for a kind of message it has not sent yet.
    pub(super) fn rest_link(&mut self) {
        let idle = self.link.as_ref().is_some_and(|l| !l.busy && Arc::strong_count(&l.connection) == 1);
        let lapin_pending = self.pending.iter().any(|p| matches!(p.answer, Answer::Lapin(_)));
        if idle && !lapin_pending && self.direct.as_ref().is_some_and(|d| d.broken().is_none()) {
            self.drop_link();
        }
    }

    /// The direct connection to publish on, opened as needed on the link's node; None when this link
    /// has none (lapin's publishing channel publishes). Called after [`Session::link`].
    fn direct(&mut self, settings: &Settings) -> Option<&mut Direct> {
        if self.direct.as_ref().is_some_and(|d| d.broken().is_some()) {
            self.drop_direct(false);
        }
        if self.renew_direct && !self.waits_on_direct() {
            self.drop_direct(true);
            self.renew_direct = false;
        }
        if self.direct.is_none() && !self.direct_off {
            let i = connection::last_node().filter(|&i| i < settings.nodes.len()).unwrap_or(0);
            let node = &settings.nodes[i];
            if direct::serves(node) {
                let keepalive = (settings.heartbeat > 0).then(|| Duration::from_secs(settings.heartbeat.into()));
                match Direct::open(node, &settings.masked_node(i), settings.connect_timeout, keepalive) {
                    Ok(d) => self.direct = Some(d),
                    Err(e) => {
                        crate::log::info(&format!("publishing on the shared connection: {e}"));
                        self.direct_off = true;
                    }
                }
            } else {
                self.direct_off = true;
            }
        }
        self.direct.as_mut()
    }

    /// Whether a deferred publish waits for its answer on a direct connection (closing it would lose it).
    fn waits_on_direct(&self) -> bool {
        self.pending.iter().any(|p| matches!(p.answer, Answer::Direct { .. }))
    }

    /// Gives the direct connection up (`graceful`: closed with the broker's close-ok, bounded), keeping
    /// the answers deferred publishes still wait for.
    pub(super) fn drop_direct(&mut self, graceful: bool) {
        let Some(d) = self.direct.take() else { return };
        let serial = d.serial();
        let why = closed_unanswered();
        let answers = if graceful { d.close(&why) } else { d.abandon(&why) };
        let wanted: HashSet<u64> = self
            .pending
            .iter()
            .filter_map(|p| match p.answer {
                Answer::Direct { serial: s, id } if s == serial => Some(id),
                _ => None,
            })
            .collect();
        for (id, r) in answers {
            if wanted.contains(&id) {
                self.settled.insert((serial, id), r);
            }
        }
    }

    /// Replaces a publishing channel marked by [`Session::publish_refused`], once no deferred
    /// publish waits for a confirm on it (closing it would lose their answers).
    fn renew_publisher(&mut self, settings: &Settings) -> Result<(), BrokerError> {
        let Some(link) = self.link.as_ref().filter(|l| l.renew_publisher && self.pending.is_empty()) else {
            return Ok(());
        };
        let conn = link.connection.clone();
        let r = self.wait(settings.confirm_timeout, "opening a channel", connection::confirmed_channel(&conn));
        let link = self.link.as_mut().expect("checked above");
        match r {
            Ok(ch) => {
                let old = std::mem::replace(&mut link.publisher, ch);
                link.renew_publisher = false;
                self.runtime.spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(1), old.close(200, "renewed".into())).await;
                });
                Ok(())
            }
            Err(e) => {
                self.disconnect();
                Err(e)
            }
        }
    }

    /// Forgets what was declared, so the next `declare` runs again (someone deleted a queue).
    pub fn forget_declarations(&mut self) {
        self.declared = Declared::default();
    }

    /// Declares what `decls` need, once per session's connections.
    pub fn declare(&mut self, settings: &Settings, decls: &[Decl]) -> Result<(), BrokerError> {
        self.check_connections(settings);
        let names = super::names::Names::new(&settings.prefix);
        let qt = settings.queue_type;
        let done = &mut self.declared;
        if done.all.as_ref().is_some_and(|(p, q, d)| *p == settings.prefix && *q == qt && d == decls) {
            return Ok(());
        }
        let todo: Vec<&Decl> = decls
            .iter()
            .filter(|d| !done.keys.contains(&d.key(&names, qt)) && !d.is_no_op(&names, &done.known))
            .collect();
        if todo.is_empty() {
            done.all = Some((settings.prefix.clone(), qt, decls.to_vec()));
            return Ok(());
        }
        let mut known = self.declared.known.clone();
        let conn = self.link_quietly(settings)?.connection.clone();
        let result = self.wait(settings.confirm_timeout, "declaring broker topology", async {
            Decl::declare_all_knowing(&conn, &todo, &names, qt, &mut known).await
        });
        self.declared.known = known;
        match result {
            Ok(()) => {
                for d in todo {
                    self.declared.keys.insert(d.key(&names, qt));
                }
                self.declared.all = Some((settings.prefix.clone(), qt, decls.to_vec()));
                Ok(())
            }
            Err(e) => {
                if !self.is_connected() || e.kind().breaks_connection() {
                    self.disconnect();
                }
                Err(e)
            }
        }
    }

    /// Messages waiting in a queue (passive declare); `NotFound` if it does not exist.
    pub fn queue_depth(&mut self, settings: &Settings, queue: &str) -> Result<u32, BrokerError> {
        self.queue_counts(settings, queue).map(|(ready, _)| ready)
    }

    /// Ready messages and consumers of a queue (passive declare); `NotFound` if it does not exist.
    /// (AMQP tells nothing of the messages delivered and not yet acked.)
    pub fn queue_counts(&mut self, settings: &Settings, queue: &str) -> Result<(u32, u32), BrokerError> {
        let conn = self.link(settings)?.connection.clone();
        self.wait(settings.confirm_timeout, "reading a queue's depth", async {
            let ch = connection::channel(&conn).await?;
            let counts = super::consumer::counts(&ch, queue).await?;
            let _ = ch.close(200, "done".into()).await;
            Ok(counts)
        })
    }

    /// A new channel in confirm mode on the live connection (for subscriptions and stores).
    pub fn channel(&mut self, settings: &Settings) -> Result<Channel, BrokerError> {
        let conn = self.link(settings)?.connection.clone();
        self.wait(settings.confirm_timeout, "opening a channel", connection::confirmed_channel(&conn))
    }
}

/// What a deferred publish whose connection was closed before its answer came fails with.
pub fn closed_unanswered() -> BrokerError {
    BrokerError::new(ErrorKind::ConnectionLost, "the publishing connection was closed before the broker answered")
}
