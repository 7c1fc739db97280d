//! Effective settings, resolved from php.ini, the environment and the legacy `AMQ_*` constants.
//!
//! Pure Rust: the PHP side hands in three lookup functions, so precedence is unit-tested here.

use std::time::Duration;

use lapin::uri::{AMQPScheme, AMQPUri};

pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const DEFAULT_PREFIX: &str = "ebats";

/// Every setting with its php.ini name and environment variable name.
pub const INI_URL: &str = "ebats.amqp_url";
pub const INI_PREFIX: &str = "ebats.prefix";
pub const INI_CONNECT_TIMEOUT: &str = "ebats.connect_timeout";
pub const INI_HEARTBEAT: &str = "ebats.heartbeat";
pub const INI_CONFIRM_TIMEOUT: &str = "ebats.confirm_timeout";
pub const INI_DEBUG: &str = "ebats.debug";
pub const INI_DEFERRED: &str = "ebats.deferred_confirms";

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
}

/// Where a value may come from. Each returns `None` when the source does not set it.
pub struct Sources<'a> {
    pub ini: &'a dyn Fn(&str) -> Option<String>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub constant: &'a dyn Fn(&str) -> Option<String>,
}

fn env_name(ini: &str) -> String {
    ini.replace('.', "_").to_ascii_uppercase()
}

impl Sources<'_> {
    /// php.ini, then the environment: the later wins when set and not empty.
    fn layered(&self, ini: &str) -> Option<String> {
        let from_env = (self.env)(&env_name(ini)).filter(|v| !v.is_empty());
        from_env.or_else(|| (self.ini)(ini).filter(|v| !v.is_empty()))
    }
}

fn parse_secs(name: &str, v: &str) -> Result<Duration, String> {
    match v.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 3600.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("{name} must be a number of seconds between 0 and 3600, got '{v}'")),
    }
}

pub fn parse_bool(v: &str) -> bool {
    matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "on" | "yes")
}

pub fn resolve(src: &Sources) -> Result<Settings, String> {
    let url = src.layered(INI_URL).unwrap_or_else(|| DEFAULT_URL.to_string());
    let mut uri: AMQPUri = url.parse().map_err(|e| format!("invalid broker URL '{}': {e}", mask_url_str(&url)))?;
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
    let prefix = src.layered(INI_PREFIX).unwrap_or_else(|| DEFAULT_PREFIX.to_string());
    crate::rules::check_prefix(&prefix)?;
    let connect_timeout = match src.layered(INI_CONNECT_TIMEOUT) {
        Some(v) => parse_secs(INI_CONNECT_TIMEOUT, &v)?,
        None => Duration::from_secs(3),
    };
    let confirm_timeout = match src.layered(INI_CONFIRM_TIMEOUT) {
        Some(v) => parse_secs(INI_CONFIRM_TIMEOUT, &v)?,
        None => Duration::from_secs(10),
    };
    let heartbeat = match src.layered(INI_HEARTBEAT) {
        Some(v) => {
            v.trim().parse::<u16>().map_err(|_| format!("{INI_HEARTBEAT} must be 0..65535 seconds, got '{v}'"))?
        }
        None => 10,
    };
    let debug =
        (src.constant)("EBATS_DEBUG").or_else(|| src.layered(INI_DEBUG)).map(|v| parse_bool(&v)).unwrap_or(false);
    let deferred = src.layered(INI_DEFERRED).map(|v| parse_bool(&v)).unwrap_or(false);
    Ok(Settings { uri, prefix, connect_timeout, heartbeat, confirm_timeout, debug, deferred })
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

/// Masks a password in a URL that may not parse.
fn mask_url_str(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].find(':') {
            Some(c) => format!("{}:***{}", &url[..s + 3 + c], &url[at..]),
            None => url.to_string(),
        },
        _ => url.to_string(),
    }
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
        let ini = [(INI_URL, "amqp://a:pa@ini-host:1111/iv"), (INI_PREFIX, "ini")];
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
        let s = run(&[(INI_PREFIX, "ini")], &[("EBATS_PREFIX", "")], &[]).unwrap();
        assert_eq!(s.prefix, "ini");
        assert!(run(&[], &[("EBATS_AMQP_URL", "http://x")], &[]).is_err());
        assert!(run(&[], &[], &[("AMQ_PORT", "port")]).unwrap_err().contains("AMQ_PORT"));
        assert!(run(&[(INI_CONNECT_TIMEOUT, "-1")], &[], &[]).is_err());
        assert!(run(&[(INI_PREFIX, "a b")], &[], &[]).is_err());
        let err = run(&[], &[("EBATS_AMQP_URL", "amqp://u:secret@h:bad/")], &[]).unwrap_err();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn debug_from_constant_then_env_then_ini() {
        assert!(run(&[(INI_DEBUG, "1")], &[], &[]).unwrap().debug);
        assert!(!run(&[(INI_DEBUG, "1")], &[("EBATS_DEBUG", "0")], &[]).unwrap().debug);
        assert!(run(&[], &[("EBATS_DEBUG", "0")], &[("EBATS_DEBUG", "1")]).unwrap().debug);
    }

    #[test]
    fn tls_scheme() {
        let s = run(&[], &[("EBATS_AMQP_URL", "amqps://u:p@h/v")], &[]).unwrap();
        assert!(s.tls());
        assert_eq!(s.uri.authority.port, 5671);
    }
}
