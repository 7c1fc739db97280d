//! `Asynclib\Ebats\Status`: finding the workers, schedulers and consumers that serve metrics (through
//! their announcements on the broker) and fetching one's `/status.json`, for `ebats status`.

use std::time::Duration;

use ext_php_rs::prelude::*;
use ext_php_rs::types::Zval;
use serde_json::json;

use crate::broker::processes;
use crate::php::args::{bad_input, broker_err};
use crate::php::convert;
use crate::php::exceptions::{exception, Kind};
use crate::php::settings;

#[php_class]
#[php(name = "Asynclib\\Ebats\\Status")]
pub struct Status;

#[php_impl]
impl Status {
    /// The processes announced lately under the prefix, newest announcement per address: each
    /// `role`, `topics`, `address` (as bound), `probe` (where to reach it), `pid`, `host`,
    /// `started_ms`, `at_ms` (its last announcement).
    pub fn discover() -> PhpResult<Vec<Zval>> {
        let s = settings::current()?;
        let found = processes::discover(&s).map_err(broker_err)?;
        Ok(found
            .iter()
            .map(|a| {
                convert::to_zval(&json!({
                    "role": a.role, "topics": a.topics, "address": a.address, "probe": a.probe_address(),
                    "pid": a.pid, "host": a.host, "started_ms": a.started_ms, "at_ms": a.at_ms,
                }))
            })
            .collect())
    }

    /// The status document served at `$address` (`host:port`), see docs/monitoring/status.md. A bad
    /// address is a TaskException; no answer within `$timeout` seconds a ConnectionedException.
    #[php(defaults(timeout = 3.0))]
    pub fn fetch(address: String, timeout: f64) -> PhpResult<Zval> {
        crate::metrics::fetch::check_address(&address).map_err(bad_input)?;
        if !(timeout.is_finite() && timeout > 0.0 && timeout <= 60.0) {
            return Err(bad_input(format!("timeout must be between 0 and 60 seconds, got {timeout}")));
        }
        let doc = crate::metrics::fetch::status(&address, Duration::from_secs_f64(timeout))
            .map_err(|e| exception(Kind::Connectioned, e))?;
        let doc = serde_json::to_value(&doc).map_err(|e| exception(Kind::Task, e.to_string()))?;
        Ok(convert::to_zval(&doc))
    }
}
