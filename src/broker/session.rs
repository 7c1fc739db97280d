//! One process's link to the broker: a tokio runtime, one connection, a publishing channel in
//! confirm mode, and the set of names already declared on that connection.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};

use super::topology::Decl;
use crate::config::Settings;

#[derive(Debug, Clone, PartialEq)]
pub enum BrokerError {
    /// The broker could not be reached, or refused the login or the vhost.
    Connect(String),
    /// The broker refused or could not route a message, or a channel operation failed.
    Refused(String),
    /// No answer in the configured time.
    Timeout(String),
    /// A mandatory message came back: no queue is bound for it.
    Unroutable(String),
}

impl std::fmt::Display for BrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrokerError::Connect(m)
            | BrokerError::Refused(m)
            | BrokerError::Timeout(m)
            | BrokerError::Unroutable(m) => f.write_str(m),
        }
    }
}

/// A message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub exchange: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    pub properties: BasicProperties,
    /// Unroutable messages come back and the publish fails instead of vanishing.
    pub mandatory: bool,
}

pub struct Link {
    key: String,
    pub connection: std::sync::Arc<Connection>,
    publisher: Channel,
    declared: HashSet<String>,
}

impl Link {
    fn usable(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }
}

pub struct Session {
    pid: u32,
    runtime: tokio::runtime::Runtime,
    link: Option<Link>,
    /// Deferred publishes waiting for their confirm.
    pending: Vec<(Sent, Deferred)>,
}

fn rt_error<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> BrokerError + '_ {
    move |e| BrokerError::Refused(format!("{what}: {e}"))
}

impl Session {
    pub fn new() -> std::io::Result<Session> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ebats-io")
            .enable_all()
            .build()?;
        Ok(Session { pid: std::process::id(), runtime, link: None, pending: Vec::new() })
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

    pub fn is_connected(&self) -> bool {
        self.link.as_ref().is_some_and(Link::usable)
    }

    /// Drops the connection (closing it in the background); the next call connects anew.
    pub fn disconnect(&mut self) {
        if let Some(link) = self.link.take() {
            let conn = link.connection;
            self.runtime.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(1), conn.close(200, "bye".into())).await;
            });
        }
    }

    /// Closes the connection and waits (bounded) for the broker to see it closed.
    pub fn close(&mut self) {
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

    /// The live connection for these settings, connecting (or reconnecting) as needed.
    pub fn link(&mut self, settings: &Settings) -> Result<&mut Link, BrokerError> {
        let key = settings.endpoint_key();
        let reuse = self.link.as_ref().is_some_and(|l| l.key == key && l.usable());
        if !reuse {
            self.disconnect();
            let (connection, publisher) = self.runtime.block_on(connect(settings))?;
            self.link =
                Some(Link { key, connection: std::sync::Arc::new(connection), publisher, declared: HashSet::new() });
        }
        Ok(self.link.as_mut().expect("link set above"))
    }

    /// Forgets what was declared, so the next `declare` runs again (someone deleted a queue).
    pub fn forget_declarations(&mut self) {
        if let Some(l) = self.link.as_mut() {
            l.declared.clear();
        }
    }

    /// Declares what `decls` need, once per connection.
    pub fn declare(&mut self, settings: &Settings, decls: &[Decl]) -> Result<(), BrokerError> {
        let names = super::names::Names::new(&settings.prefix);
        let timeout = settings.confirm_timeout;
        let link = self.link(settings)?;
        let todo: Vec<&Decl> = decls.iter().filter(|d| !link.declared.contains(&d.key(&names))).collect();
        if todo.is_empty() {
            return Ok(());
        }
        let conn = link.connection.clone();
        let result = self.runtime.block_on(async {
            // A failed declare closes the channel it ran on: run them on a throw-away channel.
            let decl_ch = conn.create_channel().await.map_err(rt_error("cannot open a channel"))?;
            let r = with_timeout(timeout, "declaring broker topology", async {
                for d in &todo {
                    d.declare(&decl_ch, &names).await?;
                }
                Ok(())
            })
            .await;
            let _ = decl_ch.close(200, "done".into()).await;
            r
        });
        match result {
            Ok(()) => {
                let link = self.link.as_mut().expect("link set above");
                for d in todo {
                    link.declared.insert(d.key(&names));
                }
                Ok(())
            }
            Err(e) => {
                if !self.is_connected() {
                    self.disconnect();
                }
                Err(e)
            }
        }
    }

    /// Publishes every message and returns once the broker confirmed all of them.
    pub fn publish(&mut self, settings: &Settings, messages: &[Outgoing]) -> Result<(), BrokerError> {
        match self.publish_routed(settings, messages)?.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// Publishes every message and waits for all confirms. Messages the broker returned as
    /// unroutable are listed (index and error); any other failure is the error.
    pub fn publish_routed(
        &mut self,
        settings: &Settings,
        messages: &[Outgoing],
    ) -> Result<Vec<(usize, BrokerError)>, BrokerError> {
        let timeout = settings.confirm_timeout;
        let ch = self.link(settings)?.publisher.clone();
        let _ctx = self.runtime.enter();
        let r = wait_or(timeout, "waiting for the broker to confirm a publish", async {
            let confirms = send_all(&ch, messages).await?;
            let mut unroutable = Vec::new();
            for (i, (m, c)) in messages.iter().zip(confirms).enumerate() {
                match settle(&Sent::of(m), c).await {
                    Ok(()) => {}
                    Err(e @ BrokerError::Unroutable(_)) => unroutable.push((i, e)),
                    Err(e) => return Err(e),
                }
            }
            Ok(unroutable)
        });
        self.after_error(&r);
        r
    }

    /// Hands the messages to the connection and returns at once; their confirms are awaited by
    /// [`Session::flush`] (at the latest when the PHP request ends).
    pub fn publish_deferred(&mut self, settings: &Settings, messages: &[Outgoing]) -> Result<(), BrokerError> {
        let timeout = settings.confirm_timeout;
        let ch = self.link(settings)?.publisher.clone();
        let pending = &mut self.pending;
        let _ctx = self.runtime.enter();
        let r = wait_or(timeout, "handing a message to the connection", async {
            // Only the first poll of each publish, which queues its frames: waiting until the I/O
            // thread has written them is left to `flush`, with the confirm.
            for m in messages {
                let (ch, owned) = (ch.clone(), m.clone());
                let mut publishing: Deferred = Box::pin(async move { send(&ch, &owned).await });
                let state = match futures_lite::future::poll_once(publishing.as_mut()).await {
                    Some(Err(e)) => return Err(e),
                    Some(Ok(confirm)) => Box::pin(async move { Ok(confirm) }),
                    None => publishing,
                };
                pending.push((Sent::of(m), state));
            }
            Ok(())
        });
        self.after_error(&r);
        r
    }

    /// Messages published deferred whose confirm has not been awaited yet.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Awaits the confirms of every deferred publish; returns how many were confirmed and the
    /// failures (one line each).
    pub fn flush(&mut self, settings: &Settings) -> (usize, Vec<String>) {
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return (0, Vec::new());
        }
        let total = pending.len();
        let deadline = settings.confirm_timeout;
        let _ctx = self.runtime.enter();
        let mut failures = Vec::new();
        for (sent, publishing) in pending {
            let r = wait_or(deadline, "waiting for the broker to confirm a deferred publish", async {
                settle(&sent, publishing.await?).await
            });
            if let Err(e) = r {
                failures.push(e.to_string());
            }
        }
        if !failures.is_empty() && !self.is_connected() {
            self.disconnect();
        }
        (total - failures.len(), failures)
    }

    fn after_error<T>(&mut self, r: &Result<T, BrokerError>) {
        match r {
            Err(BrokerError::Timeout(_)) | Err(BrokerError::Connect(_)) => self.disconnect(),
            Err(_) if !self.is_connected() => self.disconnect(),
            _ => {}
        }
    }

    /// Opens a consumer on its own channel with the given prefetch.
    pub fn consume(
        &mut self,
        settings: &Settings,
        queue: &str,
        prefetch: u16,
        tag: &str,
    ) -> Result<(Channel, Consumer), BrokerError> {
        let timeout = settings.connect_timeout.max(settings.confirm_timeout);
        let conn = self.link(settings)?.connection.clone();
        self.runtime.block_on(with_timeout(timeout, "opening a consumer", async {
            let ch = conn.create_channel().await.map_err(rt_error("cannot open a channel"))?;
            ch.basic_qos(prefetch, BasicQosOptions::default()).await.map_err(rt_error("basic.qos failed"))?;
            ch.confirm_select(ConfirmSelectOptions::default()).await.map_err(rt_error("confirm.select failed"))?;
            let consumer = ch
                .basic_consume(queue.into(), tag.into(), BasicConsumeOptions::default(), FieldTable::default())
                .await
                .map_err(rt_error(&format!("cannot consume from queue '{queue}'")))?;
            Ok((ch, consumer))
        }))
    }

    /// Messages waiting in a queue (passive declare), or an error if it does not exist.
    pub fn queue_depth(&mut self, settings: &Settings, queue: &str) -> Result<u32, BrokerError> {
        let conn = self.link(settings)?.connection.clone();
        self.runtime.block_on(with_timeout(settings.confirm_timeout, "reading a queue's depth", async {
            let ch = conn.create_channel().await.map_err(rt_error("cannot open a channel"))?;
            let q = ch
                .queue_declare(
                    queue.into(),
                    QueueDeclareOptions { passive: true, ..Default::default() },
                    FieldTable::default(),
                )
                .await
                .map_err(rt_error(&format!("queue '{queue}'")))?;
            let _ = ch.close(200, "done".into()).await;
            Ok(q.message_count())
        }))
    }

    /// A new channel on the live connection (for listing and replaying stores).
    pub fn channel(&mut self, settings: &Settings) -> Result<Channel, BrokerError> {
        let conn = self.link(settings)?.connection.clone();
        self.runtime.block_on(with_timeout(settings.confirm_timeout, "opening a channel", async {
            let ch = conn.create_channel().await.map_err(rt_error("cannot open a channel"))?;
            ch.confirm_select(ConfirmSelectOptions::default()).await.map_err(rt_error("confirm.select failed"))?;
            Ok(ch)
        }))
    }
}

/// A deferred publish: resolves to its confirm once its frames are written.
type Deferred = std::pin::Pin<Box<dyn Future<Output = Result<lapin::PublisherConfirm, BrokerError>> + Send>>;

/// What a confirm failure message needs to name the message.
pub struct Sent {
    exchange: String,
    routing_key: String,
}

impl Sent {
    fn of(m: &Outgoing) -> Sent {
        Sent { exchange: m.exchange.clone(), routing_key: m.routing_key.clone() }
    }
}

async fn send(ch: &Channel, m: &Outgoing) -> Result<lapin::PublisherConfirm, BrokerError> {
    ch.basic_publish(
        m.exchange.as_str().into(),
        m.routing_key.as_str().into(),
        BasicPublishOptions { mandatory: m.mandatory, immediate: false },
        &m.body,
        m.properties.clone(),
    )
    .await
    .map_err(rt_error("publish failed"))
}

/// Publishes all messages, in order. The first poll of a publish queues its frames (so the
/// delivery tags follow the messages); awaiting each publish before starting the next would wait
/// for the I/O thread to write every message in turn.
async fn send_all(ch: &Channel, messages: &[Outgoing]) -> Result<Vec<lapin::PublisherConfirm>, BrokerError> {
    type Sending<'a> =
        std::pin::Pin<Box<dyn Future<Output = Result<lapin::PublisherConfirm, BrokerError>> + Send + 'a>>;
    let mut sending: Vec<Sending> = messages.iter().map(|m| Box::pin(send(ch, m)) as Sending).collect();
    let mut first = Vec::with_capacity(sending.len());
    for f in sending.iter_mut() {
        first.push(futures_lite::future::poll_once(f.as_mut()).await);
    }
    let mut confirms = Vec::with_capacity(sending.len());
    for (f, ready) in sending.iter_mut().zip(first) {
        confirms.push(match ready {
            Some(r) => r?,
            None => f.await?,
        });
    }
    Ok(confirms)
}

async fn settle(m: &Sent, c: lapin::PublisherConfirm) -> Result<(), BrokerError> {
    match c.await.map_err(rt_error("publish failed"))? {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(ret)) => Err(BrokerError::Unroutable(format!(
            "message to exchange '{}' with routing key '{}' is unroutable ({} {}): no queue is bound for it",
            m.exchange, m.routing_key, ret.reply_code, ret.reply_text
        ))),
        Confirmation::Nack(_) => Err(BrokerError::Refused(format!(
            "the broker refused the message to exchange '{}' (negative confirm)",
            m.exchange
        ))),
        Confirmation::NotRequested => Err(BrokerError::Refused("publisher confirms are not enabled".into())),
    }
}

/// A delivery that has already arrived, without waiting for one.
pub fn ready_delivery(consumer: &mut Consumer) -> Option<lapin::message::Delivery> {
    match super::park::wait(consumer.next(), Duration::ZERO) {
        Some(Some(Ok(d))) => Some(d),
        _ => None,
    }
}

/// Waits for the next delivery at most `tick`; `Ok(None)` when the tick passed with nothing.
pub fn next_delivery(consumer: &mut Consumer, tick: Duration) -> Result<Option<lapin::message::Delivery>, BrokerError> {
    match super::park::wait(consumer.next(), tick) {
        None => Ok(None),
        Some(None) => Err(BrokerError::Connect("the consumer was cancelled or its connection closed".into())),
        Some(Some(Err(e))) => Err(BrokerError::Connect(format!("consumer failed: {e}"))),
        Some(Some(Ok(d))) => Ok(Some(d)),
    }
}

/// Runs `f` on this thread, failing with a timeout error naming `what` after `t`.
fn wait_or<T>(t: Duration, what: &str, f: impl Future<Output = Result<T, BrokerError>>) -> Result<T, BrokerError> {
    super::park::wait(f, t)
        .unwrap_or_else(|| Err(BrokerError::Timeout(format!("timed out after {:.1} s {what}", t.as_secs_f64()))))
}

pub async fn with_timeout<T>(
    t: Duration,
    what: &str,
    f: impl Future<Output = Result<T, BrokerError>>,
) -> Result<T, BrokerError> {
    match tokio::time::timeout(t, f).await {
        Ok(r) => r,
        Err(_) => Err(BrokerError::Timeout(format!("timed out after {:.1} s {what}", t.as_secs_f64()))),
    }
}

async fn connect(settings: &Settings) -> Result<(Connection, Channel), BrokerError> {
    let mut uri = settings.uri.clone();
    uri.query.heartbeat = Some(settings.heartbeat);
    uri.query.connection_timeout = Some(settings.connect_timeout.as_millis() as u64);
    let where_ = settings.masked_url();
    let props =
        ConnectionProperties::default().with_connection_name(format!("ebats pid {}", std::process::id()).into());
    let t = settings.connect_timeout;
    let conn = match tokio::time::timeout(t, Connection::connect_uri(uri, props)).await {
        Err(_) => {
            return Err(BrokerError::Connect(format!(
                "cannot connect to the broker at {where_}: no answer within {:.1} s",
                t.as_secs_f64()
            )))
        }
        Ok(Err(e)) => {
            return Err(BrokerError::Connect(format!("cannot connect to the broker at {where_}: {}", explain(&e))))
        }
        Ok(Ok(c)) => c,
    };
    let ch = with_timeout(t, "opening a channel", async {
        let ch = conn.create_channel().await.map_err(rt_error("cannot open a channel"))?;
        ch.confirm_select(ConfirmSelectOptions::default()).await.map_err(rt_error("confirm.select failed"))?;
        Ok(ch)
    })
    .await?;
    Ok((conn, ch))
}

/// Adds the likely cause to the errors users meet most.
fn explain(e: &lapin::Error) -> String {
    let s = e.to_string();
    let low = s.to_ascii_lowercase();
    if low.contains("access_refused") || low.contains("403") || low.contains("auth") {
        format!("{s} (wrong user name or password?)")
    } else if low.contains("not_allowed") || low.contains("vhost") || low.contains("530") {
        format!("{s} (does the vhost exist, and may this user use it?)")
    } else if low.contains("refused") {
        format!("{s} (is RabbitMQ running on that host and port?)")
    } else {
        s
    }
}
