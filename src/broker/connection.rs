//! Opening a connection and a channel in confirm mode: written once, used by the session, the
//! subscriptions and the stores.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties};

use super::error::{BrokerError, ErrorKind};
use crate::config::Settings;
use crate::log;
use crate::nodes::attempt_order;

/// The node this process's last connection went to (`usize::MAX`: none yet). The next connection
/// starts after it, so one that dies moves to the next node.
static LAST_NODE: AtomicUsize = AtomicUsize::new(usize::MAX);

/// The node this process's last connection went to, if any.
pub fn last_node() -> Option<usize> {
    Some(LAST_NODE.load(Ordering::Relaxed)).filter(|&n| n != usize::MAX)
}

/// How long connecting may take in all: every node within the connect timeout.
pub fn connect_budget(settings: &Settings) -> Duration {
    settings.connect_timeout * settings.nodes.len() as u32
}

/// Connects to the first node that answers, in the order `ebats.amqp_url_order` gives, each
/// within the connect timeout; with several nodes the log names the one connected to. Fails with
/// every node's error (refusals carry their hint).
pub async fn connect(settings: &Settings) -> Result<Connection, BrokerError> {
    let n = settings.nodes.len();
    let last = Some(LAST_NODE.load(Ordering::Relaxed)).filter(|&l| l < n);
    let mut errors: Vec<BrokerError> = Vec::new();
    for i in attempt_order(n, settings.node_order, u64::from(std::process::id()), last) {
        match connect_node(settings, i).await {
            Ok(conn) => {
                LAST_NODE.store(i, Ordering::Relaxed);
                if n > 1 {
                    log::info(&format!("connected to broker node {} ({} of {n})", settings.masked_node(i), i + 1));
                }
                return Ok(conn);
            }
            Err(e) if n > 1 => {
                log::info(&format!("{e}; trying the next broker node"));
                errors.push(e);
            }
            Err(e) => return Err(e),
        }
    }
    // A refusal that needs a person wins over a node that was merely away.
    let kind = errors.iter().map(BrokerError::kind).find(|k| !k.is_recoverable()).unwrap_or(errors[n - 1].kind());
    let all: Vec<&str> = errors.iter().map(BrokerError::message).collect();
    Err(BrokerError::new(kind, format!("cannot connect to any of the {n} broker nodes: {}", all.join("; "))))
}

async fn connect_node(settings: &Settings, i: usize) -> Result<Connection, BrokerError> {
    let mut uri = settings.nodes[i].clone();
    uri.query.heartbeat = Some(settings.heartbeat);
    uri.query.connection_timeout = Some(settings.connect_timeout.as_millis() as u64);
    let props =
        ConnectionProperties::default().with_connection_name(format!("ebats pid {}", std::process::id()).into());
    let t = settings.connect_timeout;
    match tokio::time::timeout(t, Connection::connect_uri(uri, props)).await {
        Ok(r) => r.map_err(|e| BrokerError::connecting(&settings.masked_node(i), &e)),
        Err(_) => Err(BrokerError::new(
            ErrorKind::Timeout,
            format!(
                "cannot connect to the broker at {}: no answer within {:.1} s",
                settings.masked_node(i),
                t.as_secs_f64()
            ),
        )),
    }
}

/// A new channel on `conn`: the one way ebats opens one.
///
/// lapin marks the id of a channel the broker closed (a passive declaration of a missing queue, a
/// refused declaration) with that close's error and does not clear the mark when the channel goes;
/// once its ids come round (after `channel_max` channels on the connection), a channel given that id
/// fails at once with the old error, with no frame sent. The broker itself never answers `channel.open`
/// with a channel-level error, so such a failure is a stale mark: the next id is tried (the failed
/// channel keeps its id, so it is not given again), up to [`STALE_IDS`] times.
pub async fn channel(conn: &Connection) -> Result<Channel, BrokerError> {
    let mut stale = 0;
    loop {
        match conn.create_channel().await {
            Ok(ch) => return Ok(ch),
            Err(e) if stale < STALE_IDS && stale_mark(&e) => stale += 1,
            Err(e) => return Err(BrokerError::lapin("cannot open a channel", &e)),
        }
    }
}

/// Channel ids with a stale mark passed over at most in one [`channel`] call.
const STALE_IDS: u32 = 256;

/// Whether a failed `channel.open` is a stale mark on its id (see [`channel`]): a channel-level
/// (soft) protocol error, or a channel state error; never the connection's failure.
fn stale_mark(e: &lapin::Error) -> bool {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => matches!(amqp.kind(), lapin::protocol::AMQPErrorKind::Soft(_)),
        lapin::ErrorKind::InvalidChannelState(state, _) => {
            !matches!(state, lapin::ChannelState::Error | lapin::ChannelState::Reconnecting)
        }
        _ => false,
    }
}

/// A new channel on `conn` whose publishes the broker confirms.
pub async fn confirmed_channel(conn: &Connection) -> Result<Channel, BrokerError> {
    let ch = channel(conn).await?;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| BrokerError::lapin("confirm.select failed", &e))?;
    Ok(ch)
}

#[cfg(test)]
mod stale_mark_tests {
    use super::stale_mark;
    use lapin::protocol::{AMQPError, AMQPErrorKind, AMQPHardError, AMQPSoftError};
    use lapin::{ChannelState, ErrorKind};

    fn protocol(kind: AMQPErrorKind) -> lapin::Error {
        ErrorKind::ProtocolError(AMQPError::new(kind, "NOT_FOUND - no queue 'q'".into())).into()
    }

    #[test]
    fn only_a_channel_level_failure_is_a_stale_mark() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let cases: Vec<(&str, lapin::Error, bool)> = vec![
            ("a 404 the broker closed a channel with", protocol(AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)), true),
            ("a 406", protocol(AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)), true),
            (
                "a closed channel's state",
                ErrorKind::InvalidChannelState(ChannelState::Closing, "close-ok sent").into(),
                true,
            ),
            ("a connection-level error", protocol(AMQPErrorKind::Hard(AMQPHardError::CHANNELERROR)), false),
            ("the connection failed under it", ErrorKind::InvalidChannelState(ChannelState::Error, "x").into(), false),
            ("reconnecting", ErrorKind::InvalidChannelState(ChannelState::Reconnecting, "x").into(), false),
            ("a socket error", ErrorKind::IOError(std::sync::Arc::new(io)).into(), false),
            ("too many channels", ErrorKind::ChannelsLimitReached.into(), false),
        ];
        for (what, e, stale) in cases {
            assert_eq!(stale_mark(&e), stale, "{what}");
        }
    }
}
