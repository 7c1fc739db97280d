//! The PHP bindings: thin classes that convert values and call into the core.

pub mod call;
pub mod consumer;
pub mod convert;
pub mod exceptions;
pub mod producer;
pub mod scheduler;
pub mod settings;
pub mod store;
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
        .function(wrap_function!(ebats_config))
}

/// The effective configuration, password masked: `ebats_config(): array`.
#[php_function]
pub fn ebats_config() -> PhpResult<ext_php_rs::boxed::ZBox<ext_php_rs::types::ZendHashTable>> {
    settings::config_table()
}
