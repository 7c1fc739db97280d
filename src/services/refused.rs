//! Why a service refused a request, the one kind every management service shares (schedules, paused
//! topics and limits, cancels, groups): the caller's input cannot be done (the message is for people),
//! or the broker failed. PHP maps it to an exception (`php::args::refused`), the dashboard to its
//! answer (`dashboard::schedules::Failed`).

use crate::broker::BrokerError;
use crate::dashboard::schedules::Failed;

#[derive(Debug)]
pub enum Refused {
    /// The caller's input: what is wrong with it.
    Bad(String),
    Broker(BrokerError),
}

impl From<BrokerError> for Refused {
    fn from(e: BrokerError) -> Self {
        Refused::Broker(e)
    }
}

impl From<crate::cron::Error> for Refused {
    fn from(e: crate::cron::Error) -> Self {
        Refused::Bad(e.message().to_string())
    }
}

impl From<Refused> for Failed {
    fn from(e: Refused) -> Failed {
        match e {
            Refused::Broker(e) => Failed::Broker(e),
            Refused::Bad(m) => Failed::Bad(m),
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Broker(e) => write!(f, "{e}"),
            Refused::Bad(m) => f.write_str(m),
        }
    }
}
