//! The PHP bindings: thin classes that convert values and call into the core.

pub mod call;
pub mod consumer;
pub mod convert;
pub mod deferred;
pub mod exceptions;
pub mod producer;
pub mod scheduler;
pub mod settings;
pub mod store;
pub mod subscriber;
pub mod worker;

use ext_php_rs::prelude::*;

pub fn register(module: ModuleBuilder) -> ModuleBuilder {
    module
        .class::<producer::Event>()
        .class::<producer::Task>()
        .class::<producer::Publish>()
        .class::<producer::ExchangeTypes>()
        .class::<scheduler::EventManager>()
        .class::<scheduler::Scheduler>()
        .class::<worker::Worker>()
        .class::<consumer::Consumer>()
        .class::<store::FailedStore>()
        .class::<deferred::Batch>()
        .function(wrap_function!(ebats_config))
        .function(wrap_function!(ebats_flush))
        .function(wrap_function!(ebats_deferred_errors))
        .request_shutdown_function(deferred::request_shutdown)
}

/// The effective configuration, password masked: `ebats_config(): array`.
#[php_function]
pub fn ebats_config() -> PhpResult<ext_php_rs::boxed::ZBox<ext_php_rs::types::ZendHashTable>> {
    settings::config_table()
}

/// Waits for every deferred publish of this process: `ebats_flush(): int` (how many were confirmed).
#[php_function]
pub fn ebats_flush() -> PhpResult<i64> {
    deferred::flush()
}

/// Deferred-publish failures found when earlier requests ended: `ebats_deferred_errors(): array`.
#[php_function]
pub fn ebats_deferred_errors() -> Vec<String> {
    deferred::take_errors()
}
