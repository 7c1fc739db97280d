//! The broker layer's one error type: a kind that code decides on, and a message for people.
//!
//! Every lapin error and every AMQP reply code is mapped here, once. Nothing anywhere decides on
//! an error's text.

use std::fmt;
use std::time::Duration;

use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::ChannelState;

/// What went wrong, as code needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Nothing listening at the broker's address, or the address cannot be reached.
    ConnectRefused,
    /// The broker refused the user name or password.
    CredentialsRefused,
    /// The broker refused access to the vhost (it does not exist, or this user may not use it).
    VhostRefused,
    /// An open connection broke (reset, closed by the broker, missed heartbeats, used after it died).
    ConnectionLost,
    /// A queue or exchange does not exist (404).
    NotFound,
    /// A precondition failed (406) other than a declaration that clashes with what exists.
    PreconditionFailed,
    /// A declaration clashes with what exists on the broker (an exchange of another type, a queue
    /// with other arguments): probed, and the message names the object, what exists, what was
    /// wanted and what fixes it. Nothing retries it; a long-running process stops.
    Inequivalent,
    /// The user may not use this resource (403 on a queue or an exchange).
    AccessRefused,
    /// Another connection holds the resource (405 RESOURCE_LOCKED: an exclusive queue declared by
    /// another connection). The broker closed the channel.
    Locked,
    /// The broker closed the channel with another reply code, or the channel was used after it closed.
    ChannelClosed { reply_code: u16 },
    /// No answer in the configured time.
    Timeout,
    /// A mandatory message came back: no queue is bound for it.
    Unroutable,
    /// The broker refused a published message (negative confirm).
    Nacked,
    /// The process's session is in use by the caller itself (a callback calling back in).
    Busy,
    /// A stop was asked (SIGTERM, SIGINT) while waiting for the broker.
    Stopped,
    /// The caller asked for something that cannot be (an unknown exchange type).
    Invalid,
    /// A local failure: the I/O runtime, a protocol error of the client library.
    Runtime,
}

impl ErrorKind {
    /// True when trying again soon, on a fresh connection, may work without anyone changing a
    /// setting: the broker was away, a connection or channel broke, an answer was late. Refusals
    /// (credentials, vhost, access, declarations that clash) need a person and are retried slowly.
    pub fn is_recoverable(self) -> bool {
        matches!(
            self,
            ErrorKind::ConnectRefused
                | ErrorKind::ConnectionLost
                | ErrorKind::ChannelClosed { .. }
                | ErrorKind::Timeout
                | ErrorKind::NotFound
        )
    }

    /// True when the broker refused what the caller declared or asked for: retrying will not
    /// help until the code or the broker's permissions change.
    pub fn is_bad_setup(self) -> bool {
        matches!(
            self,
            ErrorKind::PreconditionFailed | ErrorKind::Inequivalent | ErrorKind::AccessRefused | ErrorKind::Invalid
        )
    }

    /// True when a long-running process (Scheduler, cron leader, worker, Consumer) must stop at
    /// once instead of trying again: what it declares clashes with what exists, and only a person
    /// (a setting, a command) can change that.
    pub fn stops_process(self) -> bool {
        matches!(self, ErrorKind::Inequivalent)
    }

    /// True when the connection the error was met on can no longer be trusted (or never was
    /// made): the session drops it and connects anew on the next call.
    pub fn breaks_connection(self) -> bool {
        matches!(
            self,
            ErrorKind::ConnectRefused
                | ErrorKind::CredentialsRefused
                | ErrorKind::VhostRefused
                | ErrorKind::ConnectionLost
                | ErrorKind::Timeout
        )
    }

    /// True when a publish already handed to the broker may have been stored although it failed:
    /// no answer came (a timeout, the connection or channel lost while waiting), or the broker
    /// refused it (a quorum queue whose leader died refuses a message the new leader may still
    /// commit: seen in the cluster suite).
    pub fn may_leave_publish_stored(self) -> bool {
        matches!(
            self,
            ErrorKind::Timeout | ErrorKind::ConnectionLost | ErrorKind::ChannelClosed { .. } | ErrorKind::Nacked
        )
    }

    /// The likely cause, for the errors users meet most.
    fn hint(self) -> Option<&'static str> {
        match self {
            ErrorKind::CredentialsRefused => Some("wrong user name or password?"),
            ErrorKind::VhostRefused => Some("does the vhost exist, and may this user use it?"),
            ErrorKind::ConnectRefused => Some("is RabbitMQ running on that host and port?"),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerError {
    kind: ErrorKind,
    message: String,
}

impl BrokerError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> BrokerError {
        BrokerError { kind, message: message.into() }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn is_recoverable(&self) -> bool {
        self.kind.is_recoverable()
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// A lapin error met while doing `what` ("cannot open a channel"), with its kind.
    pub fn lapin(what: &str, e: &lapin::Error) -> BrokerError {
        let kind = kind_of(e, Stage::Open);
        BrokerError::new(kind, format!("{what}: {e}"))
    }

    /// A lapin error met while connecting: a refusal there is about the login or the vhost.
    pub fn connecting(where_: &str, e: &lapin::Error) -> BrokerError {
        BrokerError::not_connected(where_, kind_of(e, Stage::Connect), e)
    }

    /// Connecting to `where_` failed with `kind` for `why`; the likely cause follows where there is one.
    pub fn not_connected(where_: &str, kind: ErrorKind, why: impl fmt::Display) -> BrokerError {
        let mut message = format!("cannot connect to the broker at {where_}: {why}");
        if let Some(hint) = kind.hint() {
            message = format!("{message} ({hint})");
        }
        BrokerError::new(kind, message)
    }

    /// No answer within `t` while doing `what` ("waiting for the broker to confirm a publish").
    pub fn timeout(t: Duration, what: &str) -> BrokerError {
        BrokerError::new(ErrorKind::Timeout, format!("timed out after {:.1} s {what}", t.as_secs_f64()))
    }

    /// Puts `context` in front of the message, keeping the kind.
    pub fn context(self, context: &str) -> BrokerError {
        BrokerError { kind: self.kind, message: format!("{context}: {}", self.message) }
    }
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BrokerError {}

/// Where an error was met: while connecting (login, vhost) or on an open connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Open,
}

/// The kind of a lapin error.
pub fn kind_of(e: &lapin::Error, stage: Stage) -> ErrorKind {
    use lapin::ErrorKind as L;
    match e.kind() {
        L::ProtocolError(amqp) => reply_kind(amqp.get_id(), is_hard(amqp.kind()), stage),
        L::IOError(io) => io_kind(io.kind(), stage),
        L::InvalidConnectionState(_) | L::MissingHeartbeatError => ErrorKind::ConnectionLost,
        // A channel goes to `Error` (or `Reconnecting`) when its connection failed under it.
        L::InvalidChannelState(ChannelState::Error | ChannelState::Reconnecting, _) => ErrorKind::ConnectionLost,
        L::InvalidChannelState(..) | L::InvalidChannel(_) => ErrorKind::ChannelClosed { reply_code: 0 },
        L::AuthProviderError(_) => ErrorKind::CredentialsRefused,
        _ => ErrorKind::Runtime,
    }
}

fn is_hard(k: &AMQPErrorKind) -> bool {
    matches!(k, AMQPErrorKind::Hard(_))
}

fn io_kind(k: std::io::ErrorKind, stage: Stage) -> ErrorKind {
    use std::io::ErrorKind as Io;
    match k {
        Io::ConnectionRefused
        | Io::HostUnreachable
        | Io::NetworkUnreachable
        | Io::AddrNotAvailable
        | Io::NotFound
        | Io::NetworkDown => ErrorKind::ConnectRefused,
        Io::TimedOut => ErrorKind::Timeout,
        // The broker may cut the socket instead of answering a refused login.
        _ if stage == Stage::Connect => ErrorKind::ConnectRefused,
        _ => ErrorKind::ConnectionLost,
    }
}

/// The kind of an AMQP reply code the broker closed a channel or the connection with.
pub fn reply_kind(code: u16, connection_level: bool, stage: Stage) -> ErrorKind {
    let soft = AMQPSoftError::from_id(code);
    let hard = AMQPHardError::from_id(code);
    match (soft, hard) {
        (Some(AMQPSoftError::ACCESSREFUSED), _) if stage == Stage::Connect => ErrorKind::CredentialsRefused,
        (_, Some(AMQPHardError::NOTALLOWED)) if stage == Stage::Connect => ErrorKind::VhostRefused,
        (_, Some(AMQPHardError::INVALIDPATH)) if stage == Stage::Connect => ErrorKind::VhostRefused,
        (Some(AMQPSoftError::ACCESSREFUSED), _) => ErrorKind::AccessRefused,
        (Some(AMQPSoftError::NOTFOUND), _) => ErrorKind::NotFound,
        (Some(AMQPSoftError::RESOURCELOCKED), _) => ErrorKind::Locked,
        (Some(AMQPSoftError::PRECONDITIONFAILED), _) => ErrorKind::PreconditionFailed,
        (Some(AMQPSoftError::NOROUTE), _) => ErrorKind::Unroutable,
        (_, Some(AMQPHardError::CONNECTIONFORCED)) => ErrorKind::ConnectionLost,
        _ if connection_level => ErrorKind::ConnectionLost,
        _ => ErrorKind::ChannelClosed { reply_code: code },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::protocol::AMQPError;

    fn protocol(code: u16) -> lapin::Error {
        lapin::ErrorKind::ProtocolError(AMQPError::from_id(code, "text".into()).unwrap()).into()
    }

    fn io(k: std::io::ErrorKind) -> lapin::Error {
        std::io::Error::from(k).into()
    }

    #[test]
    fn login_and_vhost_refusals_while_connecting() {
        assert_eq!(kind_of(&protocol(403), Stage::Connect), ErrorKind::CredentialsRefused);
        assert_eq!(kind_of(&protocol(530), Stage::Connect), ErrorKind::VhostRefused);
        let e = BrokerError::connecting("amqp://guest:***@h:1/%2f", &protocol(403));
        assert!(e.message().ends_with("(wrong user name or password?)"), "{e}");
        let e = BrokerError::connecting("amqp://guest:***@h:1/v", &protocol(530));
        assert!(e.message().ends_with("(does the vhost exist, and may this user use it?)"), "{e}");
    }

    #[test]
    fn nothing_listening() {
        let e = BrokerError::connecting("h:1", &io(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(e.kind(), ErrorKind::ConnectRefused);
        assert!(e.message().ends_with("(is RabbitMQ running on that host and port?)"), "{e}");
        assert!(e.is_recoverable());
    }

    #[test]
    fn connection_reset_is_a_lost_connection() {
        for k in
            [std::io::ErrorKind::ConnectionReset, std::io::ErrorKind::BrokenPipe, std::io::ErrorKind::UnexpectedEof]
        {
            let e = BrokerError::lapin("publish failed", &io(k));
            assert_eq!(e.kind(), ErrorKind::ConnectionLost, "{k:?}");
            assert!(e.is_recoverable());
        }
        assert_eq!(kind_of(&lapin::ErrorKind::MissingHeartbeatError.into(), Stage::Open), ErrorKind::ConnectionLost);
        assert_eq!(kind_of(&protocol(320), Stage::Open), ErrorKind::ConnectionLost);
        let broken_under = lapin::ErrorKind::InvalidChannelState(ChannelState::Error, "publish").into();
        assert_eq!(kind_of(&broken_under, Stage::Open), ErrorKind::ConnectionLost);
        let closed = lapin::ErrorKind::InvalidChannelState(ChannelState::Closed, "publish").into();
        assert_eq!(kind_of(&closed, Stage::Open), ErrorKind::ChannelClosed { reply_code: 0 });
    }

    #[test]
    fn channel_closed_with_its_reply_code() {
        assert_eq!(kind_of(&protocol(404), Stage::Open), ErrorKind::NotFound);
        assert_eq!(kind_of(&protocol(406), Stage::Open), ErrorKind::PreconditionFailed);
        assert_eq!(kind_of(&protocol(403), Stage::Open), ErrorKind::AccessRefused);
        assert_eq!(kind_of(&protocol(405), Stage::Open), ErrorKind::Locked);
        assert_eq!(kind_of(&protocol(311), Stage::Open), ErrorKind::ChannelClosed { reply_code: 311 });
        assert!(!ErrorKind::Locked.is_recoverable());
        assert_eq!(reply_kind(504, true, Stage::Open), ErrorKind::ConnectionLost);
        assert!(!ErrorKind::PreconditionFailed.is_recoverable());
        assert!(!ErrorKind::AccessRefused.is_recoverable());
    }

    #[test]
    fn only_a_clash_with_what_exists_stops_a_process() {
        let table = [
            (ErrorKind::Inequivalent, true),
            (ErrorKind::PreconditionFailed, false),
            (ErrorKind::AccessRefused, false),
            (ErrorKind::CredentialsRefused, false),
            (ErrorKind::ConnectionLost, false),
            (ErrorKind::NotFound, false),
            (ErrorKind::Timeout, false),
        ];
        for (kind, stops) in table {
            assert_eq!(kind.stops_process(), stops, "{kind:?}");
        }
        assert!(ErrorKind::Inequivalent.is_bad_setup());
        assert!(!ErrorKind::Inequivalent.is_recoverable());
    }

    #[test]
    fn timeout_nack_and_refusals_are_kinds_of_their_own() {
        let e = BrokerError::timeout(Duration::from_millis(1500), "waiting for the broker to confirm a publish");
        assert_eq!(
            (e.kind(), e.message()),
            (ErrorKind::Timeout, "timed out after 1.5 s waiting for the broker to confirm a publish")
        );
        assert!(e.is_recoverable());
        let nack = BrokerError::new(ErrorKind::Nacked, "negative confirm");
        assert!(!nack.is_recoverable());
        assert!(!ErrorKind::CredentialsRefused.is_recoverable());
        assert!(!ErrorKind::VhostRefused.is_recoverable());
        assert!(!ErrorKind::Busy.is_recoverable());
        assert!(!ErrorKind::Stopped.is_recoverable());
    }

    #[test]
    fn context_keeps_the_kind() {
        let e = BrokerError::new(ErrorKind::NotFound, "no queue 'x'").context("cannot consume");
        assert_eq!((e.kind(), e.message()), (ErrorKind::NotFound, "cannot consume: no queue 'x'"));
    }
}
