//! Reads the effective settings in PHP: php.ini entries, the environment and the application's
//! legacy constants; registers the `ebats.*` ini entries; `php --ri ebats`; `ebats_config()`.

use std::ffi::{c_char, c_int, CStr};

use ext_php_rs::boxed::ZBox;
use ext_php_rs::flags::IniEntryPermission;
use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendHashTable, Zval};
use ext_php_rs::zend::{IniEntryDef, IniEntryDefs, ModuleEntry};
use ext_php_rs::{info_table_end, info_table_row, info_table_start};

use crate::config::{self, Settings, Sources};
use crate::php::exceptions::{exception, Kind};

const INI_LEN: usize = config::ALL.len() + 1;

/// The php.ini entries of every setting of the table, then the end marker.
const fn ini_defs() -> [IniEntryDef; INI_LEN] {
    const END: IniEntryDef = IniEntryDef::end();
    let mut defs = [END; INI_LEN];
    let mut i = 0;
    while i < config::ALL.len() {
        defs[i] = IniEntryDef::new(config::ALL[i].ini, config::ALL[i].default, IniEntryPermission::All);
        i += 1;
    }
    defs
}

static INI: IniEntryDefs<INI_LEN> = IniEntryDefs::new(ini_defs());

pub fn register_ini(module_number: i32) {
    IniEntryDef::register(INI.as_slice(), module_number);
}

extern "C" {
    // Both are exported by the PHP binary (ZEND_API) on every build this extension supports.
    fn zend_ini_string_ex(name: *const c_char, name_length: usize, orig: c_int, exists: *mut bool) -> *mut c_char;
    fn zend_get_constant_str(name: *const c_char, name_len: usize) -> *mut ext_php_rs::ffi::zval;
}

fn ini(name: &str) -> Option<String> {
    let mut exists = false;
    // SAFETY: the name is passed with its length (no NUL needed); the returned pointer, when not
    // null, is a NUL-terminated string owned by the ini table, copied before returning.
    let p = unsafe { zend_ini_string_ex(name.as_ptr().cast(), name.len(), 0, &mut exists) };
    if !exists || p.is_null() {
        return None;
    }
    Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A `define()`d constant's value as a string, if the application defined it.
fn constant(name: &str) -> Option<String> {
    // SAFETY: the name is passed with its length; the result is null or a zval owned by the
    // constants table, only read here.
    let zv = unsafe { zend_get_constant_str(name.as_ptr().cast(), name.len()) };
    let zv: &Zval = unsafe { (zv as *const Zval).as_ref() }?;
    if let Some(b) = zv.bool() {
        return Some(if b { "1".into() } else { "0".into() });
    }
    zv.coerce_to_string()
}

/// The effective settings now; a bad setting is a `ConnectionedException` naming it.
pub fn current() -> Result<Settings, PhpException> {
    config::resolve(&Sources { ini: &ini, env: &env, constant: &constant })
        .map_err(|e| exception(Kind::Connectioned, format!("ebats configuration: {e}")))
}

/// The dashboard's token from `ebats.dashboard_token` / `EBATS_DASHBOARD_TOKEN`, if set.
pub fn dashboard_token() -> Option<String> {
    let t = Sources { ini: &ini, env: &env, constant: &constant }.layered(&config::DASHBOARD_TOKEN);
    Some(t).filter(|t| !t.is_empty())
}

/// Where the original library kept its retry counters (`ebats.legacy_counter_dir`).
pub fn legacy_counters() -> std::path::PathBuf {
    Sources { ini: &ini, env: &env, constant: &constant }.layered(&config::LEGACY_COUNTERS).into()
}

/// The effective configuration, password masked.
pub fn config_table() -> PhpResult<ZBox<ZendHashTable>> {
    let s = current()?;
    let mut t = ZendHashTable::new();
    let a = &s.uri().authority;
    let _ = t.insert("amqp_url", s.masked_url());
    let _ = t.insert("amqp_url_order", s.node_order.name());
    let _ = t.insert("queue_type", s.queue_type.name());
    let _ = t.insert("write_format", s.write_format.name());
    let _ = t.insert("host", a.host.clone());
    let _ = t.insert("port", a.port as i64);
    let _ = t.insert("user", a.userinfo.username.clone());
    let _ = t.insert("vhost", s.uri().vhost.clone());
    let _ = t.insert("prefix", s.prefix.clone());
    let _ = t.insert("connect_timeout", s.connect_timeout.as_secs_f64());
    let _ = t.insert("heartbeat", s.heartbeat as i64);
    let _ = t.insert("confirm_timeout", s.confirm_timeout.as_secs_f64());
    let _ = t.insert("debug", s.debug);
    let _ = t.insert("deferred_confirms", s.deferred);
    let _ = t.insert("metrics_address", s.metrics_address.clone());
    let _ = t.insert("dashboard_token", if dashboard_token().is_some() { "***" } else { "" });
    let _ = t.insert("legacy_counter_dir", legacy_counters().to_string_lossy().into_owned());
    let _ = t.insert("monitor_interval", s.monitor_interval.clone());
    let _ = t.insert("history", s.history.enabled);
    let _ = t.insert("history_max_age", s.history.max_age.clone());
    let _ = t.insert("history_max_bytes", s.history.max_bytes as i64);
    let _ = t.insert("history_params_bytes", s.history.params_bytes as i64);
    let _ = t.insert("tls", s.tls());
    let _ = t.insert("tls_available", cfg!(feature = "tls"));
    let _ = t.insert("version", env!("CARGO_PKG_VERSION"));
    Ok(t)
}

pub extern "C" fn info(_module: *mut ModuleEntry) {
    info_table_start!();
    info_table_row!("ebats support", "enabled");
    info_table_row!("version", env!("CARGO_PKG_VERSION"));
    info_table_row!("amqps:// (TLS)", if cfg!(feature = "tls") { "available" } else { "not built" });
    match config::resolve(&Sources { ini: &ini, env: &env, constant: &|_| None }) {
        Ok(s) => {
            info_table_row!("broker", s.masked_url());
            info_table_row!("broker URL order", s.node_order.name());
            info_table_row!("queue type", s.queue_type.name());
            info_table_row!("write format", s.write_format.name());
            info_table_row!("prefix", s.prefix.clone());
            info_table_row!("connect timeout (s)", format!("{}", s.connect_timeout.as_secs_f64()));
            info_table_row!("heartbeat (s)", format!("{}", s.heartbeat));
            info_table_row!("confirm timeout (s)", format!("{}", s.confirm_timeout.as_secs_f64()));
            info_table_row!("debug", if s.debug { "on" } else { "off" });
            info_table_row!("deferred confirms", if s.deferred { "on" } else { "off" });
            info_table_row!("execution history", if s.history.enabled { "on" } else { "off" });
        }
        Err(e) => info_table_row!("configuration error", e),
    }
    info_table_end!();
}
