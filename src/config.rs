//! Effective settings, resolved from php.ini, the environment and the legacy `AMQ_*` constants.
//!
//! Pure Rust: the PHP side hands in three lookup functions, so precedence is unit-tested here.

use std::ffi::CStr;
use std::time::Duration;

use lapin::uri::{AMQPScheme, AMQPUri};

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

/// Every setting, in the order `php --ri` shows them.
pub const ALL: [Setting; 12] = [
    URL,
    PREFIX,
    CONNECT_TIMEOUT,
    HEARTBEAT,
    CONFIRM_TIMEOUT,
    DEBUG,
    DEFERRED,
    METRICS,
    HISTORY,
    HISTORY_MAX_AGE,
    HISTORY_MAX_BYTES,
    HISTORY_PARAMS_BYTES,
];

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
    pub uri: AMQPUri,
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
    fn layered(&self, setting: &Setting) -> String {
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
    let url = src.layered(&URL);
    let mut uri = parse_url(&url)?;
    if let Some(h) = (src.constant)("AMQ_HOST") {
        uri.authority.host = h;
    }
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
    Ok(Settings { uri, prefix, connect_timeout, heartbeat, confirm_timeout, debug, deferred, metrics_address, history })
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
    pub fn tls(&self) -> bool {
        self.uri.scheme == AMQPScheme::AMQPS
    }

    /// The broker URL with the password replaced by `***`, for logs and `php --ri`.
    pub fn masked_url(&self) -> String {
        let scheme = if self.tls() { "amqps" } else { "amqp" };
        let a = &self.uri.authority;
        format!("{scheme}://{}:***@{}:{}/{}", a.userinfo.username, a.host, a.port, encode_vhost(&self.uri.vhost))
    }

    /// Identifies the broker endpoint: a connection is reused only while this stays the same.
    pub fn endpoint_key(&self) -> String {
        let a = &self.uri.authority;
        format!(
            "{:?}|{}|{}|{}|{}|{}|{}",
            self.uri.scheme, a.userinfo.username, a.userinfo.password, a.host, a.port, self.uri.vhost, self.heartbeat
        )
    }
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
        assert_eq!(s.uri.authority.host, "127.0.0.1");
        assert_eq!(s.uri.authority.port, 5672);
        assert_eq!(s.uri.vhost, "/");
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
        assert_eq!((s.uri.authority.host.as_str(), s.prefix.as_str()), ("ini-host", "ini"));
        let env = [("EBATS_AMQP_URL", "amqp://b:pb@env-host:2222/ev"), ("EBATS_PREFIX", "env")];
        let s = run(&ini, &env, &[]).unwrap();
        assert_eq!((s.uri.authority.host.as_str(), s.uri.vhost.as_str(), s.prefix.as_str()), ("env-host", "ev", "env"));
        let consts =
            [("AMQ_HOST", "c-host"), ("AMQ_PORT", "3333"), ("AMQ_USER", "cu"), ("AMQ_PASS", "cp"), ("AMQ_VHOST", "/")];
        let s = run(&ini, &env, &consts).unwrap();
        assert_eq!(s.uri.authority.host, "c-host");
        assert_eq!(s.uri.authority.port, 3333);
        assert_eq!(s.uri.authority.userinfo.username, "cu");
        assert_eq!(s.uri.authority.userinfo.password, "cp");
        assert_eq!(s.masked_url(), "amqp://cu:***@c-host:3333/%2f");
        // a constant overrides only its own part
        let s = run(&ini, &env, &[("AMQ_PORT", "4444")]).unwrap();
        assert_eq!((s.uri.authority.host.as_str(), s.uri.authority.port), ("env-host", 4444));
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
        assert_eq!(s.uri.authority.port, 5671);
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
        for s in &ALL {
            assert!(s.ini_name().starts_with("ebats."));
            assert_eq!(s.env, s.ini_name().replace('.', "_").to_ascii_uppercase());
        }
        // the defaults resolve to what the README documents
        let d = run(&[], &[], &[]).unwrap();
        assert_eq!(d.uri, URL.default_value().parse::<AMQPUri>().unwrap());
        assert_eq!((d.confirm_timeout, d.deferred), (Duration::from_secs(10), false));
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
