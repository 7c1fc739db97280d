//! `Asynclib\Ebats\Dashboard`: the dashboard in the browser, served by this process until
//! SIGTERM/SIGINT.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendHashTable, Zval};

use crate::broker::stop;
use crate::dashboard::{auth, server, Options, State};
use crate::php::args::bad_input;
use crate::php::call::{self, Thrown};
use crate::php::settings;
use crate::worker::signals::StopOnSignals;

const KEYS: &str = "listen, token, token_file, topics, metrics, sample_every";

fn listen_address(s: &str) -> PhpResult<SocketAddr> {
    let bad = || bad_input(format!("invalid dashboard address '{s}': expected host:port, such as 127.0.0.1:8080"));
    // A name not resolved within a few seconds is refused, as a name that does not resolve.
    let found = crate::broker::resolve::resolve_address(s.trim(), std::time::Duration::from_secs(5)).map_err(|e| {
        match e.kind() {
            std::io::ErrorKind::InvalidInput => bad(),
            _ => bad_input(format!("invalid dashboard address '{s}': {e}")),
        }
    })?;
    found.into_iter().next().ok_or_else(bad)
}

/// A list option: an array of strings, or one string of comma-separated items.
fn list(zv: &Zval, key: &str) -> PhpResult<Vec<String>> {
    let items: Vec<String> = if let Some(s) = zv.str() {
        s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect()
    } else if let Some(a) = zv.array() {
        let mut out = Vec::new();
        for v in a.values() {
            out.push(v.str().ok_or_else(|| bad_input(format!("'{key}' must hold strings")))?.trim().to_string());
        }
        out
    } else {
        return Err(bad_input(format!("'{key}' must be an array of strings or a comma-separated string")));
    };
    Ok(items)
}

fn options(arr: &ZendHashTable) -> PhpResult<Options> {
    let mut o = Options {
        listen: "127.0.0.1:8080".parse().expect("a valid address"),
        token: settings::dashboard_token(),
        topics: vec![],
        metrics: vec![],
        sample_every: Duration::from_secs(3),
    };
    let mut given_token = false;
    for (k, v) in arr.iter() {
        let key = k.to_string();
        let v = v.dereference();
        match key.as_str() {
            "token" | "token_file" if !v.is_null() && given_token => {
                return Err(bad_input("give the dashboard token once: 'token' or 'token_file', not both"))
            }
            "listen" => o.listen = listen_address(v.str().ok_or_else(|| bad_input("'listen' must be a string"))?)?,
            "token" if v.is_null() => {}
            "token" => {
                o.token = Some(v.str().ok_or_else(|| bad_input("'token' must be a string"))?.to_string());
                given_token = true;
            }
            "token_file" if v.is_null() => {}
            "token_file" => {
                let path = v.str().ok_or_else(|| bad_input("'token_file' must be a string"))?;
                o.token = Some(auth::token_from_file(path).map_err(bad_input)?);
                given_token = true;
            }
            "topics" => o.topics = list(v, "topics")?,
            "metrics" => {
                o.metrics = list(v, "metrics")?;
                for m in &o.metrics {
                    let ok = m.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                    if !ok {
                        return Err(bad_input(format!(
                            "invalid metrics address '{}': expected host:port",
                            crate::log::escape(m)
                        )));
                    }
                }
            }
            "sample_every" => {
                let secs = v.double().or_else(|| v.long().map(|l| l as f64)).unwrap_or(f64::NAN);
                if !(0.2..=60.0).contains(&secs) {
                    return Err(bad_input("'sample_every' must be a number of seconds from 0.2 to 60"));
                }
                o.sample_every = Duration::from_secs_f64(secs);
            }
            other => {
                return Err(bad_input(format!(
                    "unknown dashboard option '{}': the options are {KEYS}",
                    crate::log::escape(other)
                )))
            }
        }
    }
    o.check().map_err(bad_input)?;
    Ok(o)
}

#[php_class]
#[php(name = "Asynclib\\Ebats\\Dashboard")]
pub struct Dashboard {
    options: Options,
    listener: Option<TcpListener>,
}

#[php_impl]
impl Dashboard {
    /// Options: `listen` (host:port, default 127.0.0.1:8080), `token` or `token_file` (a file
    /// holding it; default: the setting `ebats.dashboard_token` / `EBATS_DASHBOARD_TOKEN`; required
    /// unless listening on loopback), `topics`, `metrics`
    /// (host:port of workers' and schedulers' metrics; with neither topics nor metrics, they are found
    /// through the broker), `sample_every` (seconds, default 3).
    pub fn __construct(options: Option<&ZendHashTable>) -> PhpResult<Self> {
        let options = match options {
            Some(a) => self::options(a)?,
            None => self::options(&ZendHashTable::new())?,
        };
        Ok(Dashboard { options, listener: None })
    }

    /// Binds the listening socket (once) and returns the dashboard's URL.
    pub fn listen(&mut self) -> PhpResult<String> {
        if self.listener.is_none() {
            let l = TcpListener::bind(self.options.listen)
                .map_err(|e| bad_input(format!("cannot listen on {}: {e}", self.options.listen)))?;
            self.listener = Some(l);
        }
        let addr = self.listener.as_ref().and_then(|l| l.local_addr().ok()).unwrap_or(self.options.listen);
        Ok(format!("http://{addr}/"))
    }

    /// Serves until SIGTERM or SIGINT (PHP signal handlers run meanwhile).
    pub fn run(&mut self) -> PhpResult<()> {
        self.listen()?;
        let listener = self.listener.take().expect("bound above");
        let settings = settings::current()?;
        let actions = Box::new(crate::services::schedules::Actions);
        let topics = Box::new(crate::services::flow::Actions);
        let groups = Box::new(crate::services::groups::Actions);
        let state = Arc::new(State::new(settings, self.options.clone(), actions, topics, groups));
        let _stop = StopOnSignals::install(&call::unhandled_stop_signals());
        let running =
            server::start(state, listener).map_err(|e| bad_input(format!("cannot start the dashboard: {e}")))?;
        let mut left = Ok(());
        let mut between = || match call::dispatch_php_signals() {
            Ok(()) => false,
            Err(Thrown::Exit) => true,
            Err(Thrown::Exception { object, .. }) => {
                left = Err(object);
                true
            }
        };
        while !stop::pause(Duration::from_secs(60), Duration::from_millis(100), &mut between) {}
        drop(running);
        if let Err(object) = left {
            call::rethrow(object);
        }
        Ok(())
    }
}
