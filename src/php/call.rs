//! Calling PHP code from Rust: task handlers, callbacks, and what they threw.

use ext_php_rs::boxed::ZBox;
use ext_php_rs::convert::IntoZvalDyn;
use ext_php_rs::types::{ZendCallable, ZendObject, Zval};
use ext_php_rs::zend::{ClassEntry, ExecutorGlobals};

use crate::php::exceptions::{self, Kind};

extern "C" {
    // Exported by the PHP binary: true for the pseudo-exception `exit()` leaves behind.
    fn zend_is_unwind_exit(ex: *const ext_php_rs::ffi::zend_object) -> bool;
}

/// What a PHP call threw.
pub enum Thrown {
    /// `exit()` ran: the pseudo-exception is still pending and must unwind through the engine.
    Exit,
    Exception {
        class: String,
        message: String,
        object: ZBox<ZendObject>,
    },
}

/// Takes the pending exception, if any; leaves `exit()`'s pseudo-exception in place.
pub fn take_thrown() -> Option<Thrown> {
    let eg = ExecutorGlobals::get();
    let ex = eg.exception;
    drop(eg);
    if ex.is_null() {
        return None;
    }
    // SAFETY: EG(exception) is a live object while it is pending.
    if unsafe { zend_is_unwind_exit(ex) } {
        return Some(Thrown::Exit);
    }
    let object = ExecutorGlobals::take_exception()?;
    let class = object.get_class_name().unwrap_or_else(|_| "Throwable".into());
    let message = object.try_call_method("getMessage", vec![]).ok().and_then(|z| z.string()).unwrap_or_default();
    // getMessage() of a user subclass may itself throw; drop that one.
    drop(ExecutorGlobals::take_exception());
    Some(Thrown::Exception { class, message, object })
}

pub fn is_kind(o: &ZendObject, kind: Kind) -> bool {
    o.instance_of(exceptions::class(kind))
}

/// An optional int read through a getter (`getRetry()`, `getInterval()`).
pub fn int_getter(o: &ZendObject, method: &str) -> Option<i64> {
    let v = o.try_call_method(method, vec![]).ok().and_then(|z| z.long());
    drop(ExecutorGlobals::take_exception());
    v
}

/// Calls a PHP callable; Err carries what it threw.
pub fn call(callable: &Zval, args: Vec<&dyn IntoZvalDyn>) -> Result<Zval, Thrown> {
    let f = match ZendCallable::new(callable) {
        Ok(f) => f,
        Err(e) => {
            return Err(Thrown::Exception {
                class: "TypeError".into(),
                message: format!("not callable: {e}"),
                object: ZendObject::new_stdclass(),
            })
        }
    };
    finish(f.try_call(args))
}

/// What a call returned, or what it threw (a pending exception first, then a call error).
fn finish(r: Result<Zval, ext_php_rs::error::Error>) -> Result<Zval, Thrown> {
    if let Some(t) = take_thrown() {
        return Err(t);
    }
    r.map_err(|e| Thrown::Exception {
        class: "Error".into(),
        message: e.to_string(),
        object: ZendObject::new_stdclass(),
    })
}

/// Calls a method on an object; Err carries what it threw.
pub fn call_method(obj: &ZendObject, method: &str, args: Vec<&dyn IntoZvalDyn>) -> Result<Zval, Thrown> {
    finish(obj.try_call_method(method, args))
}

/// Creates an instance of `ce`, running its constructor.
pub fn instantiate(ce: &ClassEntry) -> Result<ZBox<ZendObject>, Thrown> {
    let obj = ce.new();
    if !ce.constructor.is_null() {
        call_method(&obj, "__construct", vec![])?;
    }
    Ok(obj)
}

/// True when the class has the method (or a `__call` that takes any name).
pub fn has_method(ce: &ClassEntry, method: &str) -> bool {
    let table = &ce.function_table;
    table.get(method.to_ascii_lowercase().as_str()).is_some() || !ce.__call.is_null()
}

/// Calls `pcntl_signal_dispatch()` when pcntl is loaded, so PHP signal handlers run while Rust
/// waits on the broker. Err when a handler called `exit()` or threw.
pub fn dispatch_php_signals() -> Result<(), Thrown> {
    static HAS_PCNTL: once_cell::sync::OnceCell<bool> = once_cell::sync::OnceCell::new();
    if !*HAS_PCNTL.get_or_init(|| ext_php_rs::zend::Function::try_from_function("pcntl_signal_dispatch").is_some()) {
        return Ok(());
    }
    let mut f = Zval::new();
    let _ = f.set_string("pcntl_signal_dispatch", false);
    call(&f, vec![]).map(|_| ())
}

/// Throws `object` again, so it reaches the PHP code that called into the extension.
pub fn rethrow(object: ZBox<ZendObject>) {
    use ext_php_rs::convert::IntoZval;
    if let Ok(z) = object.into_zval(false) {
        let _ = ext_php_rs::exception::throw_object(z);
    }
}

/// The stop signals the application left to their default (no pcntl handler of its own).
pub fn unhandled_stop_signals() -> Vec<i32> {
    let has_pcntl = ext_php_rs::zend::Function::try_from_function("pcntl_signal_get_handler").is_some();
    [libc::SIGTERM, libc::SIGINT]
        .into_iter()
        .filter(|sig| {
            if !has_pcntl {
                return true;
            }
            let mut f = Zval::new();
            let _ = f.set_string("pcntl_signal_get_handler", false);
            // SIG_DFL is reported as the int 0; a user handler as a callable.
            match call(&f, vec![&(*sig as i64)]) {
                Ok(h) => h.long() == Some(0),
                Err(_) => true,
            }
        })
        .collect()
}
