//! Opening a connection and a channel in confirm mode: written once, used by the session, the
//! subscriptions and the stores.

use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties};

use super::error::BrokerError;
use crate::config::Settings;

/// Connects with the settings' heartbeat and connect timeout; refusals carry their hint.
pub async fn connect(settings: &Settings) -> Result<Connection, BrokerError> {
    let mut uri = settings.uri.clone();
    uri.query.heartbeat = Some(settings.heartbeat);
    uri.query.connection_timeout = Some(settings.connect_timeout.as_millis() as u64);
    let props =
        ConnectionProperties::default().with_connection_name(format!("ebats pid {}", std::process::id()).into());
    Connection::connect_uri(uri, props).await.map_err(|e| BrokerError::connecting(&settings.masked_url(), &e))
}

/// A new channel on `conn`.
pub async fn channel(conn: &Connection) -> Result<Channel, BrokerError> {
    conn.create_channel().await.map_err(|e| BrokerError::lapin("cannot open a channel", &e))
}

/// A new channel on `conn` whose publishes the broker confirms.
pub async fn confirmed_channel(conn: &Connection) -> Result<Channel, BrokerError> {
    let ch = channel(conn).await?;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| BrokerError::lapin("confirm.select failed", &e))?;
    Ok(ch)
}
