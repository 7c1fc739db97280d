//! Why a worker could not start.

use crate::broker::BrokerError;

/// The variant is the kind: the bindings decide on it.
#[derive(Debug)]
pub enum StartError {
    /// A setting or an argument cannot be used (an address, a limit, memory that cannot be mapped).
    Setup(String),
    /// The broker refused what the worker declares (a clash, refused credentials).
    Broker(BrokerError),
}

impl StartError {
    pub fn setup(msg: impl Into<String>) -> StartError {
        StartError::Setup(msg.into())
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Setup(m) => f.write_str(m),
            StartError::Broker(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}
