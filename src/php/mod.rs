//! The PHP bindings: thin classes that convert values and call into the core.

pub mod args;
pub mod call;
pub mod chain;
pub mod consumer;
pub mod convert;
pub mod dashboard;
pub mod deferred;
pub mod exceptions;
pub mod groups;
pub mod history;
pub mod limits;
pub mod migrate;
pub mod producer;
pub mod scheduler;
pub mod schedules;
pub mod settings;
pub mod status;
pub mod store;
pub mod subscriber;
pub mod topics;
pub mod worker;

use std::ffi::{c_char, c_int};

use ext_php_rs::class::RegisteredClass;
use ext_php_rs::prelude::*;
use ext_php_rs::zend::ClassEntry;

/// A class entry, read when it is needed (the classes are registered at startup).
type ClassOf = fn() -> &'static ClassEntry;

/// Second names of classes: `(alias, class)`. The product registers its classes under
/// `Asynclib\Ebats`; older code knows the consumer as `Asynclib\Core\Consumer`.
const ALIASES: [(&str, ClassOf); 1] = [("Asynclib\\Ebats\\Consumer", || consumer::Consumer::get_metadata().ce())];

extern "C" {
    // Exported by the PHP binary (ZEND_API): what PHP's class_alias() does.
    fn zend_register_class_alias_ex(
        name: *const c_char,
        name_len: usize,
        ce: *mut ClassEntry,
        persistent: bool,
    ) -> c_int;
}

/// Start of every request: the aliases, as if the script began with `class_alias()` for each. (The
/// classes of the module are registered after its startup hook runs, so this cannot happen there.)
extern "C" fn request_startup(_type: i32, _module: i32) -> i32 {
    for (alias, class) in ALIASES {
        let ce = class() as *const ClassEntry as *mut ClassEntry;
        // SAFETY: the name is passed with its length; `ce` is the class entry the engine registered
        // at startup and keeps for the life of the process; an alias is a non-owning entry of the
        // class table, removed by the engine at the end of the request. It fails (harmlessly) when
        // the name is already taken.
        unsafe { zend_register_class_alias_ex(alias.as_ptr().cast(), alias.len(), ce, false) };
    }
    0
}

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
        .class::<status::Status>()
        .class::<schedules::Schedules>()
        .class::<topics::Topics>()
        .class::<groups::Group>()
        .class::<limits::Limits>()
        .class::<chain::Chain>()
        .class::<dashboard::Dashboard>()
        .class::<history::History>()
        .class::<deferred::Batch>()
        .function(wrap_function!(ebats_config))
        .function(wrap_function!(ebats_flush))
        .function(wrap_function!(ebats_deferred_errors))
        .function(wrap_function!(ebats_migrate_check))
        .request_startup_function(request_startup)
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

/// What of the original library is on the broker: `ebats_migrate_check(array $topics): array`.
#[php_function]
pub fn ebats_migrate_check(topics: Vec<String>) -> PhpResult<Vec<ext_php_rs::types::Zval>> {
    migrate::check(topics)
}

/// Deferred-publish failures found when earlier requests ended: `ebats_deferred_errors(): array`.
#[php_function]
pub fn ebats_deferred_errors() -> Vec<ext_php_rs::types::Zval> {
    deferred::take_errors()
}
