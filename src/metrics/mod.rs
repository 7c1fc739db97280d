//! Metrics in the Prometheus text format: what the worker's children count in shared memory
//! (`stats`), what the scheduler counts in its own process (`counters`), histograms (`hist`), CPU
//! and memory read from /proc (`procfs`), queue depths read from the broker (`depth`), the
//! exposition itself (`expo`, through the prometheus-client crate) and what `/metrics`, `/healthz`
//! and `/status.json` answer (`serve`, on the crate's one HTTP server, `crate::http`). For people and dashboards: the status
//! document (one serde type, `status_doc`; built by `status`, gathered by `readings`, with CPU % from
//! `cpu` and rates from `rate`), the
//! announcements that let `ebats status` find the processes (`announce`), fetching a status
//! (`fetch`), the worker parent's monitor line (`monitor`), and the memory limit of the process's
//! control group, which makes a worker child leave between tasks (`cgroup`).

pub mod announce;
pub mod cgroup;
pub mod counters;
pub mod cpu;
pub mod depth;
pub mod expo;
pub mod fetch;
pub mod hist;
pub mod monitor;
pub mod procfs;
pub mod rate;
pub mod readings;
pub mod serve;
pub mod stats;
pub mod status;
pub mod status_doc;

/// A metrics address: `ip:port` (`[ipv6]:port` for IPv6).
pub fn parse_address(s: &str) -> Result<std::net::SocketAddr, String> {
    s.trim().parse().map_err(|_| format!("invalid metrics address '{s}': expected ip:port, such as 127.0.0.1:9464"))
}

/// The address to serve metrics on: the one given to the worker or scheduler, else the setting
/// `ebats.metrics_address`; None when neither is set.
pub fn address(given: Option<std::net::SocketAddr>, setting: &str) -> Result<Option<std::net::SocketAddr>, String> {
    match given {
        Some(a) => Ok(Some(a)),
        None if setting.is_empty() => Ok(None),
        None => parse_address(setting).map(Some).map_err(|e| format!("ebats.metrics_address: {e}")),
    }
}

/// Binds the metrics listener, with a message that names the address.
pub fn bind(addr: std::net::SocketAddr) -> Result<std::net::TcpListener, String> {
    std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))
}
