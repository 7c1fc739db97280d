//! Effective settings, resolved from php.ini, the environment and the legacy `AMQ_*` constants.
//!
//! Pure Rust: the PHP side hands in three lookup functions, so precedence is unit-tested here.

use std::ffi::CStr;
use std::time::Duration;

use lapin::uri::{AMQPScheme, AMQPUri};

use crate::nodes::NodeOrder;

/// One setting: its php.ini name, its environment variable and its default, written only here.
/// php.ini registration, `php --ri` and [`resolve`] all read this table.
pub struct Setting {
    pub ini: &'static CStr,
    pub env: &'static str,
    pub default: &'static CStr,
}

impl Setting {
    pub fn ini_name(&self) -> &'static str {
        self.ini.to_str().expect("setting names are ASCII")
    }

    pub fn default_value(&self) -> &'static str {
        self.default.to_str().expect("setting defaults are ASCII")
    }
}

pub const URL: Setting =
    Setting { ini: c"ebats.amqp_url", env: "EBATS_AMQP_URL", default: c"amqp://guest:guest@127.0.0.1:5672/%2f" };
pub const PREFIX: Setting = Setting { ini: c"ebats.prefix", env: "EBATS_PREFIX", default: c"ebats" };
pub const CONNECT_TIMEOUT: Setting =
    Setting { ini: c"ebats.connect_timeout", env: "EBATS_CONNECT_TIMEOUT", default: c"3" };
pub const HEARTBEAT: Setting = Setting { ini: c"ebats.heartbeat", env: "EBATS_HEARTBEAT", default: c"10" };
pub const CONFIRM_TIMEOUT: Setting =
    Setting { ini: c"ebats.confirm_timeout", env: "EBATS_CONFIRM_TIMEOUT", default: c"10" };
/// Also read from the application's constant of the same name as the environment variable.
pub const DEBUG: Setting = Setting { ini: c"ebats.debug", env: "EBATS_DEBUG", default: c"0" };
pub const DEFERRED: Setting =
    Setting { ini: c"ebats.deferred_confirms", env: "EBATS_DEFERRED_CONFIRMS", default: c"0" };

/// Where workers and schedulers serve `/metrics` and `/healthz` (`ip:port`); empty: nowhere.
pub const METRICS: Setting = Setting { ini: c"ebats.metrics_address", env: "EBATS_METRICS_ADDRESS", default: c"" };

/// Workers append a record of every execution to the stream `<prefix>.history`.
pub const HISTORY: Setting = Setting { ini: c"ebats.history", env: "EBATS_HISTORY", default: c"0" };
/// Retention of the history stream by age, in RabbitMQ's `x-max-age` form (`7D`, `12h`, `1Y`...).
pub const HISTORY_MAX_AGE: Setting =
    Setting { ini: c"ebats.history_max_age", env: "EBATS_HISTORY_MAX_AGE", default: c"7D" };
/// Retention of the history stream by size in bytes (`x-max-length-bytes`); 0: by age only.
pub const HISTORY_MAX_BYTES: Setting =
    Setting { ini: c"ebats.history_max_bytes", env: "EBATS_HISTORY_MAX_BYTES", default: c"0" };
/// A record keeps at most this many bytes of the task's params (as JSON); longer ones are cut and marked.
pub const HISTORY_PARAMS_BYTES: Setting =
    Setting { ini: c"ebats.history_params_bytes", env: "EBATS_HISTORY_PARAMS_BYTES", default: c"4096" };

/// Seconds between a worker parent's monitor lines (one per child: CPU %, memory, tasks done); 0: off.
pub const MONITOR: Setting = Setting { ini: c"ebats.monitor_interval", env: "EBATS_MONITOR_INTERVAL", default: c"0" };
/// The longest monitor interval, in seconds.
pub const MAX_MONITOR_INTERVAL: u64 = 86_400;
/// The token the dashboard asks for (required when it listens on anything but loopback); empty: none.
pub const DASHBOARD_TOKEN: Setting =
    Setting { ini: c"ebats.dashboard_token", env: "EBATS_DASHBOARD_TOKEN", default: c"" };
/// How a list of broker URLs is walked: `ordered` or `shuffle` (see `nodes.rs`).
pub const URL_ORDER: Setting =
    Setting { ini: c"ebats.amqp_url_order", env: "EBATS_AMQP_URL_ORDER", default: c"ordered" };
/// The type of the ready, event, failed and delay queues: `classic` or `quorum`.
pub const QUEUE_TYPE: Setting = Setting { ini: c"ebats.queue_type", env: "EBATS_QUEUE_TYPE", default: c"classic" };
/// The format producers write events and tasks in: `ebats` (JSON, to ebats's queues) or `original`
/// (the original library's, to its queues, while its Schedulers and Workers still consume).
pub const WRITE_FORMAT: Setting = Setting { ini: c"ebats.write_format", env: "EBATS_WRITE_FORMAT", default: c"ebats" };

/// Where the original library (the pure-PHP `Asynclib`) kept its retry counters, a file per task
/// id: a worker reading a task in the original's format takes its attempt count from there.
pub const LEGACY_COUNTERS: Setting =
    Setting { ini: c"ebats.legacy_counter_dir", env: "EBATS_LEGACY_COUNTER_DIR", default: c"/tmp/ebats" };

/// Every setting, in the order `php --ri` shows them.
pub const ALL: &[Setting] = &[
    URL,
    URL_ORDER,
    PREFIX,
    CONNECT_TIMEOUT,
    HEARTBEAT,
    CONFIRM_TIMEOUT,
    DEBUG,
    DEFERRED,
    METRICS,
    QUEUE_TYPE,
    WRITE_FORMAT,
    DASHBOARD_TOKEN,
    MONITOR,
    HISTORY,
    HISTORY_MAX_AGE,
    HISTORY_MAX_BYTES,
    HISTORY_PARAMS_BYTES,
    LEGACY_COUNTERS,
];

/// The type of the queues ebats declares for tasks and events (`ebats.queue_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueType {
    Classic,
    /// Replicated by Raft on a cluster; deliveries counted by the broker (`x-delivery-count`).
    Quorum,
}

impl QueueType {
    pub fn parse(v: &str) -> Result<QueueType, String> {
        match v.trim().to_ascii_lowercase().as_str() {
            "classic" => Ok(QueueType::Classic),
            "quorum" => Ok(QueueType::Quorum),
            _ => Err(format!("ebats.queue_type must be 'classic' or 'quorum', got '{v}'")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }
}

/// What producers write (`ebats.write_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFormat {
    /// ebats's JSON bodies, to ebats's topology.
    Ebats,
    /// The original library's serialize() bodies, routed as the original routed them, so that its
    /// Schedulers and Workers still running during a switch read them.
    Original,
}

impl WriteFormat {
    pub fn parse(v: &str) -> Result<WriteFormat, String> {
        match v.trim().to_ascii_lowercase().as_str() {
            "ebats" => Ok(WriteFormat::Ebats),
            "original" => Ok(WriteFormat::Original),
            _ => Err(format!("{} must be 'ebats' or 'original', got '{v}'", WRITE_FORMAT.ini_name())),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            WriteFormat::Ebats => "ebats",
            WriteFormat::Original => "original",
        }
    }
}

/// The execution history's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistorySettings {
    /// Workers write a record of every execution.
    pub enabled: bool,
    /// `x-max-age` of the stream, checked: digits then one of Y M D h m s.
    pub max_age: String,
    /// `x-max-length-bytes` of the stream; 0: not set.
    pub max_bytes: u64,
    /// Bytes of params (as JSON) a record keeps.
    pub params_bytes: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The broker nodes, in the order written (never empty); `node_order` says how they are tried.
    pub nodes: Vec<AMQPUri>,
    pub node_order: NodeOrder,
    pub queue_type: QueueType,
    pub write_format: WriteFormat,
    pub prefix: String,
    pub connect_timeout: Duration,
    pub heartbeat: u16,
    pub confirm_timeout: Duration,
    pub debug: bool,
    /// Publishes return before their confirm; confirms are awaited at the end of the request.
    pub deferred: bool,
    /// Where workers and schedulers serve metrics, unless they are given an address of their own;
    /// empty: nowhere. Checked when a worker or scheduler starts (a bad one must not stop publishing).
    pub metrics_address: String,
    /// Seconds between a worker parent's monitor lines, as set ([`monitor_interval`] reads it);
    /// checked when a worker starts, like `metrics_address`.
    pub monitor_interval: String,
    pub history: HistorySettings,
}

/// Where a value may come from. Each returns `None` when the source does not set it.
pub struct Sources<'a> {
    pub ini: &'a dyn Fn(&str) -> Option<String>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub constant: &'a dyn Fn(&str) -> Option<String>,
}

impl Sources<'_> {
    /// The environment, else php.ini (each only when set and not empty), else the default.
    pub fn layered(&self, setting: &Setting) -> String {
        let from_env = (self.env)(setting.env).filter(|v| !v.is_empty());
        from_env
            .or_else(|| (self.ini)(setting.ini_name()).filter(|v| !v.is_empty()))
            .unwrap_or_else(|| setting.default_value().to_string())
    }
}

fn parse_secs(setting: &Setting, v: &str) -> Result<Duration, String> {
    match v.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 3600.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("{} must be a number of seconds between 0 and 3600, got '{v}'", setting.ini_name())),
    }
}

fn parse_bool(v: &str) -> bool {
    matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "on" | "yes")
}

pub fn resolve(src: &Sources) -> Result<Settings, String> {
    let nodes = nodes(src)?;
    let node_order = NodeOrder::parse(&src.layered(&URL_ORDER))?;
    let queue_type = QueueType::parse(&src.layered(&QUEUE_TYPE))?;
    let write_format = WriteFormat::parse(&src.layered(&WRITE_FORMAT))?;
    let prefix = src.layered(&PREFIX);
    crate::rules::check_prefix(&prefix)?;
    let connect_timeout = parse_secs(&CONNECT_TIMEOUT, &src.layered(&CONNECT_TIMEOUT))?;
    let confirm_timeout = parse_secs(&CONFIRM_TIMEOUT, &src.layered(&CONFIRM_TIMEOUT))?;
    let v = src.layered(&HEARTBEAT);
    let heartbeat =
        v.trim().parse::<u16>().map_err(|_| format!("{} must be 0..65535 seconds, got '{v}'", HEARTBEAT.ini_name()))?;
    let debug = parse_bool(&(src.constant)(DEBUG.env).unwrap_or_else(|| src.layered(&DEBUG)));
    let deferred = parse_bool(&src.layered(&DEFERRED));
    let metrics_address = src.layered(&METRICS).trim().to_string();
    let history = history(src)?;
    let monitor_interval = src.layered(&MONITOR).trim().to_string();
    Ok(Settings {
        nodes,
        node_order,
        queue_type,
        write_format,
        prefix,
        connect_timeout,
        heartbeat,
        confirm_timeout,
        debug,
        deferred,
        metrics_address,
        monitor_interval,
        history,
    })
}

/// The broker nodes: the URL setting's list, with the original library's `AMQ_*` constants over it.
fn nodes(src: &Sources) -> Result<Vec<AMQPUri>, String> {
    let mut nodes = parse_urls(&src.layered(&URL))?;
    // AMQ_HOST may list several hosts (comma-separated): one node each, the rest of the first URL kept.
    if let Some(h) = (src.constant)("AMQ_HOST") {
        let hosts: Vec<&str> = h.split(',').map(str::trim).collect();
        if hosts.iter().any(|h| h.is_empty()) {
            return Err(format!("AMQ_HOST must be a host name or a comma-separated list of them, got '{h}'"));
        }
        let base = nodes[0].clone();
        nodes = hosts
            .iter()
            .map(|h| AMQPUri {
                authority: lapin::uri::AMQPAuthority { host: h.to_string(), ..base.authority.clone() },
                ..base.clone()
            })
            .collect();
    }
    for uri in &mut nodes {
        if let Some(p) = (src.constant)("AMQ_PORT") {
            uri.authority.port = p.trim().parse().map_err(|_| format!("AMQ_PORT must be a port number, got '{p}'"))?;
        }
        if let Some(u) = (src.constant)("AMQ_USER") {
            uri.authority.userinfo.username = u;
        }
        if let Some(p) = (src.constant)("AMQ_PASS") {
            uri.authority.userinfo.password = p;
        }
        if let Some(v) = (src.constant)("AMQ_VHOST") {
            uri.vhost = v;
        }
    }
    Ok(nodes)
}

/// Seconds between monitor lines (0: none), from the setting's text.
pub fn monitor_interval(v: &str) -> Result<u64, String> {
    v.trim().parse::<u64>().ok().filter(|s| *s <= MAX_MONITOR_INTERVAL).ok_or_else(|| {
        format!("{} must be a whole number of seconds from 0 to {MAX_MONITOR_INTERVAL}, got '{v}'", MONITOR.ini_name())
    })
}

fn history(src: &Sources) -> Result<HistorySettings, String> {
    let v = src.layered(&HISTORY);
    let enabled = match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => true,
        "0" | "false" | "off" | "no" => false,
        _ => return Err(format!("{} must be 0 or 1 (on or off), got '{v}'", HISTORY.ini_name())),
    };
    let max_age = src.layered(&HISTORY_MAX_AGE).trim().to_string();
    check_max_age(&max_age).map_err(|why| {
        format!("{} must be like 7D, 12h or 30m ({why}), got '{max_age}'", HISTORY_MAX_AGE.ini_name())
    })?;
    let v = src.layered(&HISTORY_MAX_BYTES);
    let max_bytes = v.trim().parse::<u64>().ok().filter(|b| *b <= 1 << 50).ok_or_else(|| {
        format!("{} must be a number of bytes (0: no limit), got '{v}'", HISTORY_MAX_BYTES.ini_name())
    })?;
    let v = src.layered(&HISTORY_PARAMS_BYTES);
    let params_bytes = v.trim().parse::<usize>().ok().filter(|b| *b <= 1 << 20).ok_or_else(|| {
        format!("{} must be a number of bytes between 0 and 1048576, got '{v}'", HISTORY_PARAMS_BYTES.ini_name())
    })?;
    Ok(HistorySettings { enabled, max_age, max_bytes, params_bytes })
}

/// RabbitMQ's `x-max-age`: a whole number above 0 and one unit of Y, M, D, h, m, s.
fn check_max_age(v: &str) -> Result<(), &'static str> {
    let Some(unit) = v.chars().last() else { return Err("empty") };
    if !matches!(unit, 'Y' | 'M' | 'D' | 'h' | 'm' | 's') {
        return Err("the unit is one of Y, M, D, h, m, s");
    }
    match v[..v.len() - 1].parse::<u64>() {
        Ok(n) if n > 0 && v[..v.len() - 1].bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err("a whole number above 0, then the unit"),
    }
}

/// Percent-encodes a vhost for a URL (`/` becomes `%2f`).
fn encode_vhost(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02x}"),
        })
        .collect()
}

impl Settings {
    /// The first node: what `ebats_config()` shows as host, port, user and vhost.
    pub fn uri(&self) -> &AMQPUri {
        &self.nodes[0]
    }

    /// True when any node is reached over TLS.
    pub fn tls(&self) -> bool {
        self.nodes.iter().any(|u| u.scheme == AMQPScheme::AMQPS)
    }

    /// Every broker URL, comma-separated, passwords replaced by `***`, for logs and `php --ri`.
    pub fn masked_url(&self) -> String {
        self.nodes.iter().map(masked).collect::<Vec<_>>().join(",")
    }

    /// One node's URL, password replaced by `***`.
    pub fn masked_node(&self, i: usize) -> String {
        masked(&self.nodes[i])
    }

    /// Whether `other` names the same broker endpoints (nodes' scheme, user, password, host, port and
    /// vhost, their order, the heartbeat): a connection is reused only while this holds. Compared
    /// field by field, without building anything: it is asked on every publish.
    pub fn same_endpoint(&self, other: &Settings) -> bool {
        let same = |a: &AMQPUri, b: &AMQPUri| {
            let (x, y) = (&a.authority, &b.authority);
            a.scheme == b.scheme
                && x.userinfo.username == y.userinfo.username
                && x.userinfo.password == y.userinfo.password
                && x.host == y.host
                && x.port == y.port
                && a.vhost == b.vhost
        };
        self.nodes.len() == other.nodes.len()
            && self.nodes.iter().zip(&other.nodes).all(|(a, b)| same(a, b))
            && self.node_order == other.node_order
            && self.heartbeat == other.heartbeat
    }
}

fn masked(u: &AMQPUri) -> String {
    let scheme = if u.scheme == AMQPScheme::AMQPS { "amqps" } else { "amqp" };
    let a = &u.authority;
    format!("{scheme}://{}:***@{}:{}/{}", a.userinfo.username, a.host, a.port, encode_vhost(&u.vhost))
}

/// A comma-separated list of broker URLs (one URL is a list of one). Each is checked; an error names
/// the entry (its place and, masked, its text).
///
/// The last list that parsed is remembered with its nodes: the settings are read on every publish,
/// and parsing the same URL again each time was a large part of a publish's own work. (Only the PHP
/// thread reads settings, so no fork can find the lock taken.)
fn parse_urls(list: &str) -> Result<Vec<AMQPUri>, String> {
    static LAST: parking_lot::Mutex<Option<(String, Vec<AMQPUri>)>> = parking_lot::Mutex::new(None);
    if let Some((_, nodes)) = LAST.lock().as_ref().filter(|(text, _)| text == list) {
        return Ok(nodes.clone());
    }
    let nodes = parse_url_list(list)?;
    *LAST.lock() = Some((list.to_string(), nodes.clone()));
    Ok(nodes)
}

fn parse_url_list(list: &str) -> Result<Vec<AMQPUri>, String> {
    let entries: Vec<&str> = list.split(',').collect();
    let n = entries.len();
    let mut nodes = Vec::with_capacity(n);
    for (i, entry) in entries.iter().enumerate() {
        let place = if n > 1 { format!("entry {} of {n} in ebats.amqp_url: ", i + 1) } else { String::new() };
        if entry.trim().is_empty() {
            return Err(format!("{place}invalid broker URL '': empty (a stray comma?)"));
        }
        nodes.push(parse_url(entry.trim()).map_err(|e| format!("{place}{e}"))?);
    }
    Ok(nodes)
}

/// The broker URL. Refused, with the URL masked in the message: a URL not starting with `amqp://` or
/// `amqps://`, and one with an `@` after the host (user information in the wrong place, which would
/// otherwise show up as part of the vhost).
fn parse_url(url: &str) -> Result<AMQPUri, String> {
    let refuse = |why: &str| format!("invalid broker URL '{}': {why}", mask_unparsable_url(url));
    let trimmed = url.trim();
    let lower = trimmed.to_ascii_lowercase();
    let Some(after_scheme) =
        ["amqp://", "amqps://"].iter().find(|s| lower.starts_with(**s)).map(|s| &trimmed[s.len()..])
    else {
        return Err(refuse("the URL must start with amqp:// or amqps://"));
    };
    let authority_end = after_scheme.find(['/', '?', '#']).unwrap_or(after_scheme.len());
    if after_scheme[authority_end..].contains('@') {
        return Err(refuse(
            "'@' after the host: write amqp://user:password@host:port/vhost, with '/', '?', '#' and '@' in the \
             password or vhost percent-encoded",
        ));
    }
    // The parser's message may quote the URL: never with its password.
    url.parse().map_err(|e: String| refuse(&e.replace(url, &mask_unparsable_url(url))))
}

/// A URL that did not parse, fit for a message: whatever looks like user information (everything
/// between `//`, or the start, and the last `@`) becomes `***`. Without an `@`, a `:` after the
/// host-like part that is not followed by a port number hides the rest.
pub fn mask_unparsable_url(url: &str) -> String {
    if let Some(at) = url.rfind('@') {
        let start = url[..at].find("//").map(|i| i + 2).unwrap_or(0);
        return format!("{}***{}", &url[..start], &url[at..]);
    }
    let start = url.find("//").map(|i| i + 2).unwrap_or(0);
    let Some(colon) = url[start..].find(':').map(|i| start + i) else {
        return url.to_string();
    };
    let after = &url[colon + 1..];
    let port = after.split(['/', '?', '#']).next().unwrap_or("");
    if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
        return url.to_string();
    }
    format!("{}***", &url[..colon + 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(ini: &[(&str, &str)], env: &[(&str, &str)], consts: &[(&str, &str)]) -> Result<Settings, String> {
        let ini: HashMap<String, String> = ini.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let consts: HashMap<String, String> = consts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        resolve(&Sources {
            ini: &|k| ini.get(k).cloned(),
            env: &|k| env.get(k).cloned(),
            constant: &|k| consts.get(k).cloned(),
        })
    }

    #[test]
    fn defaults() {
        let s = run(&[], &[], &[]).unwrap();
        assert_eq!(s.uri().authority.host, "127.0.0.1");
        assert_eq!(s.uri().authority.port, 5672);
        assert_eq!(s.uri().vhost, "/");
        assert_eq!(s.prefix, "ebats");
        assert_eq!(s.heartbeat, 10);
        assert_eq!(s.connect_timeout, Duration::from_secs(3));
        assert!(!s.debug);
        assert_eq!(s.masked_url(), "amqp://guest:***@127.0.0.1:5672/%2f");
    }

    #[test]
    fn env_beats_ini_and_constants_beat_both() {
        let ini = [(URL.ini_name(), "amqp://a:pa@ini-host:1111/iv"), (PREFIX.ini_name(), "ini")];
        let s = run(&ini, &[], &[]).unwrap();
        assert_eq!((s.uri().authority.host.as_str(), s.prefix.as_str()), ("ini-host", "ini"));
        let env = [("EBATS_AMQP_URL", "amqp://b:pb@env-host:2222/ev"), ("EBATS_PREFIX", "env")];
        let s = run(&ini, &env, &[]).unwrap();
        assert_eq!(
            (s.uri().authority.host.as_str(), s.uri().vhost.as_str(), s.prefix.as_str()),
            ("env-host", "ev", "env")
        );
        let consts =
            [("AMQ_HOST", "c-host"), ("AMQ_PORT", "3333"), ("AMQ_USER", "cu"), ("AMQ_PASS", "cp"), ("AMQ_VHOST", "/")];
        let s = run(&ini, &env, &consts).unwrap();
        assert_eq!(s.uri().authority.host, "c-host");
        assert_eq!(s.uri().authority.port, 3333);
        assert_eq!(s.uri().authority.userinfo.username, "cu");
        assert_eq!(s.uri().authority.userinfo.password, "cp");
        assert_eq!(s.masked_url(), "amqp://cu:***@c-host:3333/%2f");
        // a constant overrides only its own part
        let s = run(&ini, &env, &[("AMQ_PORT", "4444")]).unwrap();
        assert_eq!((s.uri().authority.host.as_str(), s.uri().authority.port), ("env-host", 4444));
    }

    #[test]
    fn empty_env_falls_back_and_bad_values_are_errors() {
        let s = run(&[(PREFIX.ini_name(), "ini")], &[("EBATS_PREFIX", "")], &[]).unwrap();
        assert_eq!(s.prefix, "ini");
        assert!(run(&[], &[("EBATS_AMQP_URL", "http://x")], &[]).is_err());
        assert!(run(&[], &[], &[("AMQ_PORT", "port")]).unwrap_err().contains("AMQ_PORT"));
        assert!(run(&[(CONNECT_TIMEOUT.ini_name(), "-1")], &[], &[]).is_err());
        assert!(run(&[(PREFIX.ini_name(), "a b")], &[], &[]).is_err());
        let err = run(&[], &[("EBATS_AMQP_URL", "amqp://u:secret@h:bad/")], &[]).unwrap_err();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn debug_from_constant_then_env_then_ini() {
        assert!(run(&[(DEBUG.ini_name(), "1")], &[], &[]).unwrap().debug);
        assert!(!run(&[(DEBUG.ini_name(), "1")], &[("EBATS_DEBUG", "0")], &[]).unwrap().debug);
        assert!(run(&[], &[("EBATS_DEBUG", "0")], &[("EBATS_DEBUG", "1")]).unwrap().debug);
    }

    #[test]
    fn monitor_intervals() {
        assert_eq!(run(&[], &[], &[]).unwrap().monitor_interval, "0");
        // (text, seconds or None for an error)
        for (v, want) in [
            ("0", Some(0)),
            (" 5 ", Some(5)),
            ("86400", Some(86_400)),
            ("86401", None),
            ("-1", None),
            ("1.5", None),
            ("x", None),
        ] {
            assert_eq!(monitor_interval(v).ok(), want, "{v}");
        }
        assert!(monitor_interval("x").unwrap_err().contains("ebats.monitor_interval"));
    }

    #[test]
    fn history_settings() {
        let d = run(&[], &[], &[]).unwrap().history;
        assert_eq!(d, HistorySettings { enabled: false, max_age: "7D".into(), max_bytes: 0, params_bytes: 4096 });
        let env = [
            ("EBATS_HISTORY", "on"),
            ("EBATS_HISTORY_MAX_AGE", "12h"),
            ("EBATS_HISTORY_MAX_BYTES", "1000000"),
            ("EBATS_HISTORY_PARAMS_BYTES", "0"),
        ];
        let h = run(&[], &env, &[]).unwrap().history;
        assert_eq!(h, HistorySettings { enabled: true, max_age: "12h".into(), max_bytes: 1_000_000, params_bytes: 0 });
        let bad = [
            ("EBATS_HISTORY", "maybe", "ebats.history "),
            ("EBATS_HISTORY_MAX_AGE", "7", "ebats.history_max_age"),
            ("EBATS_HISTORY_MAX_AGE", "0D", "ebats.history_max_age"),
            ("EBATS_HISTORY_MAX_AGE", "7d", "ebats.history_max_age"),
            ("EBATS_HISTORY_MAX_AGE", "-1D", "ebats.history_max_age"),
            ("EBATS_HISTORY_MAX_AGE", "+1D", "ebats.history_max_age"),
            ("EBATS_HISTORY_MAX_BYTES", "-5", "ebats.history_max_bytes"),
            ("EBATS_HISTORY_MAX_BYTES", "1G", "ebats.history_max_bytes"),
            ("EBATS_HISTORY_PARAMS_BYTES", "2000000", "ebats.history_params_bytes"),
        ];
        for (k, v, name) in bad {
            let e = run(&[], &[(k, v)], &[]).unwrap_err();
            assert!(e.contains(name) && e.contains(v), "{k}={v}: {e}");
        }
    }

    #[test]
    fn tls_scheme() {
        let s = run(&[], &[("EBATS_AMQP_URL", "amqps://u:p@h/v")], &[]).unwrap();
        assert!(s.tls());
        assert_eq!(s.uri().authority.port, 5671);
    }

    #[test]
    fn the_table_names_every_setting_once() {
        let mut inis: Vec<&str> = ALL.iter().map(Setting::ini_name).collect();
        let mut envs: Vec<&str> = ALL.iter().map(|s| s.env).collect();
        inis.sort();
        inis.dedup();
        envs.sort();
        envs.dedup();
        assert_eq!((inis.len(), envs.len()), (ALL.len(), ALL.len()));
        for s in ALL {
            assert!(s.ini_name().starts_with("ebats."));
            assert_eq!(s.env, s.ini_name().replace('.', "_").to_ascii_uppercase());
        }
        // the defaults resolve to what the README documents
        let d = run(&[], &[], &[]).unwrap();
        assert_eq!(*d.uri(), URL.default_value().parse::<AMQPUri>().unwrap());
        assert_eq!((d.confirm_timeout, d.deferred), (Duration::from_secs(10), false));
    }

    #[test]
    fn a_list_parsed_again_gives_the_same_nodes_and_another_list_its_own() {
        let hosts = |list: &str| -> Result<Vec<String>, String> {
            parse_urls(list).map(|n| n.iter().map(|u| format!("{}:{}", u.authority.host, u.authority.port)).collect())
        };
        let table: [(&str, Result<&[&str], &str>); 6] = [
            ("amqp://h1/v", Ok(&["h1:5672"])),
            ("amqp://h1/v", Ok(&["h1:5672"])),
            ("amqp://h2:5681/v,amqp://h3/v", Ok(&["h2:5681", "h3:5672"])),
            ("amqp://h1/v,", Err("entry 2 of 2 in ebats.amqp_url: invalid broker URL '': empty")),
            ("amqp://h1/v", Ok(&["h1:5672"])),
            ("http://h1/v", Err("invalid broker URL 'http://h1/v'")),
        ];
        for (list, want) in table {
            match (hosts(list), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{list}"),
                (Err(got), Err(want)) => assert!(got.starts_with(want), "{list}: {got}"),
                (got, want) => panic!("{list}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_list_of_urls_is_one_node_each_and_a_bad_entry_is_named() {
        let list = "amqp://u:pw@h1:5681/v, amqps://u:pw@h2:5682/v ,amqp://u:pw@h3/v";
        let s = run(&[], &[("EBATS_AMQP_URL", list)], &[]).unwrap();
        let hosts: Vec<(&str, u16)> = s.nodes.iter().map(|u| (u.authority.host.as_str(), u.authority.port)).collect();
        assert_eq!(hosts, [("h1", 5681), ("h2", 5682), ("h3", 5672)]);
        assert!(s.tls());
        assert_eq!(s.masked_node(1), "amqps://u:***@h2:5682/v");
        assert_eq!(s.masked_url(), "amqp://u:***@h1:5681/v,amqps://u:***@h2:5682/v,amqp://u:***@h3:5672/v");
        let one = |url: &str| run(&[], &[("EBATS_AMQP_URL", url)], &[]).unwrap();
        assert!(s.same_endpoint(&one(list)), "the same list is the same endpoint");
        assert!(!s.same_endpoint(&one("amqp://u:pw@h1:5681/v")), "fewer nodes");
        let table = [
            ("amqp://u:pw@h1:5681/v", "amqp://u:pw@h1:5681/v", true),
            ("amqp://u:pw@h1:5681/v", "amqp://u:pw@h1:5681/v?frame_max=8192", true),
            ("amqp://u:pw@h1:5681/v", "amqps://u:pw@h1:5681/v", false),
            ("amqp://u:pw@h1:5681/v", "amqp://x:pw@h1:5681/v", false),
            ("amqp://u:pw@h1:5681/v", "amqp://u:px@h1:5681/v", false),
            ("amqp://u:pw@h1:5681/v", "amqp://u:pw@h2:5681/v", false),
            ("amqp://u:pw@h1:5681/v", "amqp://u:pw@h1:5682/v", false),
            ("amqp://u:pw@h1:5681/v", "amqp://u:pw@h1:5681/w", false),
            ("amqp://h1,amqp://h2", "amqp://h2,amqp://h1", false),
        ];
        for (a, b, want) in table {
            assert_eq!(one(a).same_endpoint(&one(b)), want, "{a} / {b}");
        }
        let order = run(&[], &[("EBATS_AMQP_URL", list), ("EBATS_AMQP_URL_ORDER", "shuffle")], &[]).unwrap();
        assert!(!s.same_endpoint(&order), "another node order");
        let beat = run(&[], &[("EBATS_AMQP_URL", list), ("EBATS_HEARTBEAT", "7")], &[]).unwrap();
        assert!(!s.same_endpoint(&beat), "another heartbeat");
        let table = [
            (
                "amqp://h1/v,http://u:S3cret@h2/v",
                "entry 2 of 2 in ebats.amqp_url: invalid broker URL 'http://***@h2/v'",
            ),
            ("amqp://h1/v,,amqp://h3/v", "entry 2 of 3 in ebats.amqp_url: invalid broker URL '': empty"),
            ("amqp://h1/v,", "entry 2 of 2 in ebats.amqp_url: invalid broker URL '': empty"),
            (
                "amqp://u:S3cret@h1:x/v,amqp://h2",
                "entry 1 of 2 in ebats.amqp_url: invalid broker URL 'amqp://***@h1:x/v'",
            ),
        ];
        for (list, want) in table {
            let e = run(&[], &[("EBATS_AMQP_URL", list)], &[]).unwrap_err();
            assert!(e.starts_with(want), "{list} -> {e}");
            assert!(!e.contains(SECRET), "{e}");
        }
        // the constants: AMQ_HOST may list hosts; the others apply to every node
        let consts = [("AMQ_HOST", "a, b"), ("AMQ_PORT", "5699"), ("AMQ_PASS", "cp")];
        let s = run(&[], &[("EBATS_AMQP_URL", "amqp://u:pw@h1:1/v,amqp://u:pw@h2:2/w")], &consts).unwrap();
        assert_eq!(s.masked_url(), "amqp://u:***@a:5699/v,amqp://u:***@b:5699/v");
        assert!(s.nodes.iter().all(|u| u.authority.userinfo.password == "cp"));
        assert!(run(&[], &[], &[("AMQ_HOST", "a,")]).unwrap_err().contains("AMQ_HOST"));
    }

    #[test]
    fn order_and_queue_type() {
        let d = run(&[], &[], &[]).unwrap();
        assert_eq!((d.node_order, d.queue_type), (NodeOrder::Ordered, QueueType::Classic));
        let s = run(&[(QUEUE_TYPE.ini_name(), "Quorum")], &[("EBATS_AMQP_URL_ORDER", "shuffle")], &[]).unwrap();
        assert_eq!((s.node_order, s.queue_type), (NodeOrder::Shuffle, QueueType::Quorum));
        assert!(run(&[], &[("EBATS_QUEUE_TYPE", "stream")], &[]).unwrap_err().contains("ebats.queue_type"));
        assert!(run(&[], &[("EBATS_AMQP_URL_ORDER", "x")], &[]).unwrap_err().contains("ebats.amqp_url_order"));
    }

    #[test]
    fn write_format() {
        assert_eq!(run(&[], &[], &[]).unwrap().write_format, WriteFormat::Ebats);
        let s = run(&[(WRITE_FORMAT.ini_name(), "Original")], &[], &[]).unwrap();
        assert_eq!(s.write_format, WriteFormat::Original);
        let s = run(&[(WRITE_FORMAT.ini_name(), "original")], &[("EBATS_WRITE_FORMAT", "ebats")], &[]).unwrap();
        assert_eq!(s.write_format, WriteFormat::Ebats);
        let e = run(&[], &[("EBATS_WRITE_FORMAT", "json")], &[]).unwrap_err();
        assert_eq!(e, "ebats.write_format must be 'ebats' or 'original', got 'json'");
    }

    const SECRET: &str = "S3cret";

    #[test]
    fn unparsable_urls_never_show_the_password() {
        let shapes = [
            "amqp//user:S3cret@127.0.0.1/v",
            "amqp:/user:S3cret@127.0.0.1/v",
            "amqp:///user:S3cret@127.0.0.1/v",
            "amqp://user:pa/S3cret@127.0.0.1/v",
            "amqp://user:pa?S3cret@127.0.0.1/v",
            "amqp://user:pa#S3cret@127.0.0.1/v",
            "amqp://127.0.0.1/user:S3cret@x",
            "amqp:user:S3cret@127.0.0.1/v",
            "amqp://user:S3cret@127.0.0.1:bad/v",
            "amqp://user:S3cret@127.0.0.1:99999/v",
            "amqp://user:S3cret@@127.0.0.1/v",
            "amqp://user:S3c@ret@127.0.0.1/v",
            "amqp://user:S3cret@[::1/v",
            "amqp://user:S3cret",
            "amqp://user:S3cret/127.0.0.1",
            "user:S3cret@127.0.0.1",
            "S3cret:x@127.0.0.1",
            "S3cret@127.0.0.1",
            "http://user:S3cret@127.0.0.1/",
            "AMQP//user:S3cret@host",
            " amqp//user:S3cret@host ",
            "amqp://user:S3cret@host/v?auth_mechanism=nope",
            "amqp://user:S3cret@host/v?heartbeat=x",
            "//user:S3cret@",
            "amqp://user:S3cret@",
            "amqp://:S3cret@/",
        ];
        for url in shapes {
            let masked = mask_unparsable_url(url);
            assert!(!masked.contains(SECRET), "{url} -> {masked}");
            if let Err(e) = run(&[], &[("EBATS_AMQP_URL", url)], &[]) {
                assert!(!e.to_lowercase().contains(&SECRET.to_lowercase()), "{url} -> {e}");
                assert!(e.starts_with("invalid broker URL"), "{url} -> {e}");
            } else {
                let s = run(&[], &[("EBATS_AMQP_URL", url)], &[]).unwrap();
                assert!(!s.masked_url().contains(SECRET), "{url} -> {}", s.masked_url());
            }
            if let Err(e) = run(&[(URL.ini_name(), url)], &[], &[]) {
                assert!(!e.to_lowercase().contains(&SECRET.to_lowercase()), "{url} -> {e}");
            }
        }
        assert_eq!(mask_unparsable_url("amqp//user:S3cret@127.0.0.1/v"), "amqp//***@127.0.0.1/v");
        assert_eq!(mask_unparsable_url("user:S3cret@h"), "***@h");
        assert_eq!(mask_unparsable_url("amqp://user:S3cret"), "amqp://user:***");
        // nothing that looks like a password: shown as it is
        assert_eq!(mask_unparsable_url("amqp://host:5672/v"), "amqp://host:5672/v");
        assert_eq!(mask_unparsable_url("http//x"), "http//x");
        let e = run(&[], &[("EBATS_AMQP_URL", "amqp//user:S3cret@127.0.0.1/v")], &[]).unwrap_err();
        assert_eq!(e, "invalid broker URL 'amqp//***@127.0.0.1/v': the URL must start with amqp:// or amqps://");
    }
}
