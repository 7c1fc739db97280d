//! ebats: an event-based asynchronous task system for PHP on RabbitMQ.
//!
//! Layers: `config`, `rules`, `wire` and `headers` (pure data), `broker` (connections, topology, confirmed publishing,
//! consuming), `dispatch` (where events and tasks go), `outcome` (what a task's result means),
//! `history` (the execution records), `http` (the one HTTP server, for the metrics endpoints and the
//! dashboard), `worker` (the process model), and `php` (the bindings, the only code that touches zvals).

pub mod broker;
pub mod config;
pub mod cron;
pub mod dashboard;
pub mod dispatch;
pub mod flow;
pub mod headers;
pub mod history;
pub mod http;
pub mod legacy;
pub mod log;
pub mod metrics;
pub mod nodes;
pub mod outcome;
pub mod php;
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
