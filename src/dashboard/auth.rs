//! Who may use the dashboard, and which requests may change something. Pure decisions on a request.
//!
//! - Bound to anything but loopback, a token is required (refused at start otherwise).
//! - With a token, every request carries it: `Authorization: Bearer <token>` (the scheme in any
//!   case), or the cookie set when the page was opened once as `/?token=<token>`. The query is
//!   decoded as a form, where `+` stands for a space; a token never holds a space (refused at
//!   start), so a space in the given value is read back as the `+` that was typed: a token with `+`
//!   may be given as it is or with `%2B`.
//! - Access is decided on the head alone, as soon as it is read (see `crate::http`).
//! - Without a token (loopback only), the Host header must name a loopback host, so that a page of
//!   another site cannot reach the dashboard through a DNS name rebound to 127.0.0.1.
//! - A POST carries the page's CSRF token (random per process) in `X-CSRF-Token`; when the browser
//!   says where it comes from (`Origin`, `Sec-Fetch-Site`), it must be this same origin.
//!
//! Secrets are compared in constant time.

use std::net::{IpAddr, SocketAddr};

use crate::http::Request;

/// The cookie that carries the token.
pub const COOKIE: &str = "ebats_dashboard";
/// The shortest token accepted.
pub const MIN_TOKEN: usize = 16;

/// Equal, in a time that depends on the lengths only.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// May the dashboard start on `listen` with `token`?
pub fn check_start(listen: &SocketAddr, token: Option<&str>) -> Result<(), String> {
    match token {
        Some(t) if t.len() < MIN_TOKEN => Err(format!(
            "the dashboard token must be at least {MIN_TOKEN} characters long (for instance: openssl rand -hex 16)"
        )),
        Some(t) if t.bytes().any(|c| !c.is_ascii_graphic() || c == b';' || c == b',' || c == b'"') => {
            Err("the dashboard token may hold printable ASCII characters only (no spaces, ';', ',' or '\"')".into())
        }
        None if !listen.ip().is_loopback() => Err(format!(
            "the dashboard listens on {listen}, which is not a loopback address: give a token (--token-file=F, \
             EBATS_DASHBOARD_TOKEN or ebats.dashboard_token) or listen on 127.0.0.1"
        )),
        _ => Ok(()),
    }
}

/// The token kept in the file `path`: its content without surrounding white space (a token holds
/// none), such as the final line break.
pub fn token_from_file(path: &str) -> Result<String, String> {
    let raw = std::fs::read(path).map_err(|e| format!("cannot read the dashboard token file '{path}': {e}"))?;
    let text = String::from_utf8(raw).map_err(|_| format!("the dashboard token file '{path}' is not text"))?;
    match text.trim() {
        "" => Err(format!("the dashboard token file '{path}' is empty")),
        t => Ok(t.to_string()),
    }
}

/// The host part of a Host header (`h:1`, `[::1]:8080`, `h`).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}

/// A Host header naming this machine's loopback.
pub fn loopback_host(host: &str) -> bool {
    let h = host_name(host);
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn cookie<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .filter(|(n, _)| n == "cookie")
        .flat_map(|(_, v)| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// The credentials of `Authorization: Bearer <token>`, the scheme in any case (RFC 9110 11.1).
fn bearer(req: &Request) -> Option<&str> {
    let (scheme, rest) = req.header("authorization")?.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// What to do with a request before routing it.
#[derive(Debug, PartialEq)]
pub enum Access {
    Allowed,
    /// `/?token=<right token>`: set the cookie and send the browser to the page without it.
    SetCookie,
    /// 401 (no or wrong token), 403 (a Host that is not loopback), with why.
    Denied(u16, &'static str),
}

pub fn access(req: &Request, token: Option<&str>) -> Access {
    let Some(token) = token else {
        return match req.header("host") {
            Some(h) if loopback_host(h) => Access::Allowed,
            _ => Access::Denied(403, "this dashboard answers requests for 127.0.0.1 or localhost only\n"),
        };
    };
    let t = token.as_bytes();
    if bearer(req).or_else(|| cookie(req, COOKIE)).is_some_and(|given| same_secret(given.trim().as_bytes(), t)) {
        return Access::Allowed;
    }
    let typed = || req.param("token").map(|g| g.replace(' ', "+"));
    if req.method == "GET" && req.path == "/" && typed().is_some_and(|g| same_secret(g.as_bytes(), t)) {
        return Access::SetCookie;
    }
    Access::Denied(401, "a token is needed: open /?token=<token> once, or send Authorization: Bearer <token>\n")
}

/// The cookie that keeps the token in the browser.
pub fn cookie_header(token: &str) -> String {
    format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict")
}

/// May this POST change something? `csrf` is the page's token.
pub fn post_allowed(req: &Request, csrf: &str) -> Result<(), &'static str> {
    if !req.header("x-csrf-token").is_some_and(|t| same_secret(t.as_bytes(), csrf.as_bytes())) {
        return Err("missing or wrong X-CSRF-Token: reload the page\n");
    }
    if let Some(site) = req.header("sec-fetch-site") {
        if site != "same-origin" && site != "none" {
            return Err("cross-site request refused\n");
        }
    }
    if let Some(origin) = req.header("origin") {
        let host = req.header("host").unwrap_or("");
        let from = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
        if from != Some(host) {
            return Err("request from another origin refused\n");
        }
    }
    Ok(())
}

/// A new random secret: two version-4 UUIDs (244 bits from the system's generator), as 64 hex digits.
pub fn random_secret() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    format!("{}{}", a.simple(), b.simple())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_head;

    fn req(head: &str) -> Request {
        parse_head(format!("{head}\r\n\r\n").as_bytes()).unwrap()
    }

    #[test]
    fn starting() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let v6: SocketAddr = "[::1]:8080".parse().unwrap();
        let good = Some("0123456789abcdef");
        assert!(check_start(&lo, None).is_ok());
        assert!(check_start(&v6, None).is_ok());
        assert!(check_start(&any, None).unwrap_err().contains("not a loopback"));
        assert!(check_start(&any, good).is_ok());
        assert!(check_start(&lo, Some("short")).unwrap_err().contains("16"));
        assert!(check_start(&any, Some("0123456789abcdef;")).is_err());
    }

    #[test]
    fn token_files() {
        let dir = std::env::temp_dir().join(format!("ebats-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = |name: &str, content: &[u8]| {
            let p = dir.join(name);
            std::fs::write(&p, content).unwrap();
            p.to_string_lossy().into_owned()
        };
        assert_eq!(token_from_file(&f("a", b"0123+456789abcdef\n")).unwrap(), "0123+456789abcdef");
        assert_eq!(token_from_file(&f("b", b"  t0k\r\n")).unwrap(), "t0k");
        assert!(token_from_file(&f("c", b"\n")).unwrap_err().contains("is empty"));
        assert!(token_from_file(&f("d", b"\xff\xfe")).unwrap_err().contains("not text"));
        let missing = dir.join("none").to_string_lossy().into_owned();
        assert!(token_from_file(&missing).unwrap_err().contains("cannot read the dashboard token file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secrets() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        let (a, b) = (random_secret(), random_secret());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn hosts() {
        for (h, ok) in [
            ("127.0.0.1:8080", true),
            ("localhost:1", true),
            ("LOCALHOST", true),
            ("[::1]:80", true),
            ("127.9.9.9", true),
            ("evil.example:8080", false),
            ("10.0.0.1:8080", false),
            ("", false),
        ] {
            assert_eq!(loopback_host(h), ok, "{h}");
        }
    }

    #[test]
    fn access_table() {
        let t = Some("0123456789abcdef");
        let plus = Some("0123+456789abcdef");
        for (head, token, want) in [
            ("GET / HTTP/1.1\r\nHost: 127.0.0.1:1", None, Access::Allowed),
            ("GET / HTTP/1.1\r\nHost: rebound.example:1", None, Access::Denied(403, "")),
            ("GET / HTTP/1.1", None, Access::Denied(403, "")),
            ("GET /api/state HTTP/1.1\r\nHost: h", t, Access::Denied(401, "")),
            ("GET /api/state HTTP/1.1\r\nAuthorization: Bearer 0123456789abcdef", t, Access::Allowed),
            ("GET /api/state HTTP/1.1\r\nAuthorization: Bearer 0123456789abcdeX", t, Access::Denied(401, "")),
            ("GET /api/state HTTP/1.1\r\nAuthorization: bearer 0123456789abcdef", t, Access::Allowed),
            ("GET /api/state HTTP/1.1\r\nAuthorization: BEARER   0123456789abcdef", t, Access::Allowed),
            ("GET /api/state HTTP/1.1\r\nAuthorization: Basic 0123456789abcdef", t, Access::Denied(401, "")),
            ("GET /api/state HTTP/1.1\r\nAuthorization: Bearer0123456789abcdef", t, Access::Denied(401, "")),
            ("GET /api/state HTTP/1.1\r\nCookie: a=b; ebats_dashboard=0123456789abcdef", t, Access::Allowed),
            ("GET /?token=0123456789abcdef HTTP/1.1", t, Access::SetCookie),
            ("GET /?token=wrong HTTP/1.1", t, Access::Denied(401, "")),
            ("POST /?token=0123456789abcdef HTTP/1.1", t, Access::Denied(401, "")),
            ("GET /?token=0123+456789abcdef HTTP/1.1", plus, Access::SetCookie),
            ("GET /?token=0123%2B456789abcdef HTTP/1.1", plus, Access::SetCookie),
            ("GET /?token=0123%2b456789abcdef HTTP/1.1", plus, Access::SetCookie),
            ("GET /?token=0123-456789abcdef HTTP/1.1", plus, Access::Denied(401, "")),
            ("GET /?token=0123456789abcdef HTTP/1.1", plus, Access::Denied(401, "")),
            ("GET /?x=1&token=0123+456789abcdef HTTP/1.1", plus, Access::SetCookie),
        ] {
            let got = access(&req(head), token);
            let same = match (&got, &want) {
                (Access::Denied(a, _), Access::Denied(b, _)) => a == b,
                (a, b) => a == b,
            };
            assert!(same, "{head}: {got:?}");
        }
    }

    #[test]
    fn posts() {
        let c = "s3cret";
        let base = "POST /api/x HTTP/1.1\r\nHost: 127.0.0.1:8080";
        assert!(post_allowed(&req(&format!("{base}\r\nX-CSRF-Token: s3cret")), c).is_ok());
        assert!(post_allowed(&req(base), c).is_err());
        assert!(post_allowed(&req(&format!("{base}\r\nX-CSRF-Token: s3creX")), c).is_err());
        let with = |h: &str| post_allowed(&req(&format!("{base}\r\nX-CSRF-Token: s3cret\r\n{h}")), c);
        assert!(with("Origin: http://127.0.0.1:8080").is_ok());
        assert!(with("Origin: http://evil.example").is_err());
        assert!(with("Origin: null").is_err());
        assert!(with("Sec-Fetch-Site: same-origin").is_ok());
        assert!(with("Sec-Fetch-Site: cross-site").is_err());
    }
}
