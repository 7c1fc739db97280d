//! ebats: an event-based asynchronous task system for PHP on RabbitMQ.
//!
//! Layers, top to bottom (calls go down, never up; ARCHITECTURE.md draws them): `php` (the bindings,
//! the only code that touches zvals: each method converts values, calls one service, maps errors);
//! `services` (what PHP, the CLI and the dashboard share: scheduling, consuming, schedule management,
//! periodic firing, publishing, the worker's assembly, paused topics); `worker` (the process model), `metrics`,
//! `dashboard`, `history`; `dispatch` (where events and tasks go); `broker` (connections, topology,
//! confirmed publishing, consuming, streams) and `http` (the one HTTP server); the ground floor, pure:
//! `config`, `rules`, `wire`, `headers`, `outcome`, `log`, `nodes`, `shm`, `cron` (expressions, ticks,
//! the schedule stream's fold), `flow` (paused topics' fold), `group` (groups of tasks: records, fold, ids), `legacy` (the original library's formats).

pub mod broker;
pub mod chain;
pub mod config;
pub mod cron;
pub mod dashboard;
pub mod dispatch;
pub mod flow;
pub mod group;
pub mod headers;
pub mod history;
pub mod http;
pub mod legacy;
pub mod log;
pub mod metrics;
pub mod nodes;
pub mod outcome;
pub mod php;
pub mod random;
pub mod rules;
pub mod services;
pub mod shm;
pub mod wire;
pub mod worker;

use ext_php_rs::prelude::*;

extern "C" fn startup(_ty: i32, module_number: i32) -> i32 {
    php::settings::register_ini(module_number);
    match php::exceptions::register() {
        Ok(()) => 0,
        Err(e) => {
            log::error(&format!("cannot register the exception classes: {e}"));
            1
        }
    }
}

#[php_module]
#[php(startup = startup)]
pub fn get_module(module: ModuleBuilder) -> ModuleBuilder {
    php::register(module).info_function(php::settings::info)
}
