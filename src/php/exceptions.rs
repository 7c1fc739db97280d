//! The exception classes and `ExceptionInterface`, built by hand at module startup: they extend
//! `\RuntimeException` (found in the class table, since class lookup does not work during startup),
//! so `getMessage()`, file and line are the engine's own, and PHP code can subclass them.

use std::sync::atomic::{AtomicPtr, Ordering};

use ext_php_rs::args::{Arg, ArgInfoTables};
use ext_php_rs::builders::{ClassBuilder, ClassProperty, FunctionBuilder};
use ext_php_rs::convert::IntoZval;
use ext_php_rs::exception::PhpException;
use ext_php_rs::ffi;
use ext_php_rs::flags::{ClassFlags, DataType, MethodFlags, PropertyFlags};
use ext_php_rs::types::Zval;
use ext_php_rs::zend::{ClassEntry, ExecuteData, ExecutorGlobals};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Retry,
    Task,
    Service,
    Connectioned,
}

const IFACE: &str = "Asynclib\\Exception\\ExceptionInterface";
const ALL: [(Kind, &str); 4] = [
    (Kind::Retry, "Asynclib\\Exception\\RetryException"),
    (Kind::Task, "Asynclib\\Exception\\TaskException"),
    (Kind::Service, "Asynclib\\Exception\\ServiceException"),
    (Kind::Connectioned, "Asynclib\\Exception\\ConnectionedException"),
];

static CE_IFACE: AtomicPtr<ClassEntry> = AtomicPtr::new(std::ptr::null_mut());
static CE: [AtomicPtr<ClassEntry>; 4] = [
    AtomicPtr::new(std::ptr::null_mut()),
    AtomicPtr::new(std::ptr::null_mut()),
    AtomicPtr::new(std::ptr::null_mut()),
    AtomicPtr::new(std::ptr::null_mut()),
];

fn slot(kind: Kind) -> &'static AtomicPtr<ClassEntry> {
    &CE[ALL.iter().position(|(k, _)| *k == kind).expect("every kind is listed")]
}

/// The class entry of an exception class; registered at startup, so always present afterwards.
pub fn class(kind: Kind) -> &'static ClassEntry {
    // SAFETY: set once in MINIT to a class entry the engine keeps for the life of the process.
    unsafe { slot(kind).load(Ordering::Acquire).as_ref() }.expect("exception classes are registered at startup")
}

pub fn iface() -> &'static ClassEntry {
    // SAFETY: as in `class`.
    unsafe { CE_IFACE.load(Ordering::Acquire).as_ref() }.expect("the interface is registered at startup")
}

/// An exception of `kind`; NUL bytes (which PHP messages cannot carry from here) become `\0`.
pub fn exception(kind: Kind, message: impl Into<String>) -> PhpException {
    PhpException::new(message.into().replace('\0', "\\0"), 0, class(kind))
}

extern "C" {
    // SPL's class entry, exported by the PHP binary; SPL starts before any loadable extension.
    static spl_ce_RuntimeException: *mut ClassEntry;
}

fn runtime_exception() -> &'static ClassEntry {
    // SAFETY: SPL sets this pointer in its MINIT, which runs before ours, and the class entry lives
    // as long as the engine; it is only read here.
    unsafe { spl_ce_RuntimeException.as_ref() }.expect("SPL's RuntimeException is registered before extensions start")
}

macro_rules! store {
    ($slot:expr) => {{
        fn register(ce: &'static mut ClassEntry, _: ArgInfoTables) {
            $slot.store(ce, Ordering::Release);
        }
        register
    }};
}

/// Registers the interface and the four classes. Called from the module's startup.
pub fn register() -> ext_php_rs::error::Result<()> {
    ClassBuilder::new(IFACE).flags(ClassFlags::Interface).registration(store!(CE_IFACE)).register()?;
    let parent: ext_php_rs::class::ClassEntryInfo = (runtime_exception, "RuntimeException");
    let iface_info: ext_php_rs::class::ClassEntryInfo = (iface, IFACE);
    for (kind, name) in ALL {
        let mut b = ClassBuilder::new(name).extends(parent).implements(iface_info);
        // Each class entry goes to its slot in CE, in the order of ALL.
        b = match kind {
            Kind::Retry => retry_methods(b).registration(store!(CE[0])),
            Kind::Task => b.registration(store!(CE[1])),
            Kind::Service => b.registration(store!(CE[2])),
            Kind::Connectioned => connectioned_methods(b).registration(store!(CE[3])),
        };
        b.register()?;
    }
    Ok(())
}

/// A protected property, null until set.
fn null_property(name: &str) -> ClassProperty {
    ClassProperty {
        name: name.into(),
        flags: PropertyFlags::Protected,
        default: Some(Box::new(|| Ok(Zval::null()))),
        docs: &[],
        ty: None,
        nullable: true,
        readonly: false,
        default_stub: Some("null".into()),
    }
}

fn retry_methods(b: ClassBuilder) -> ClassBuilder {
    let ctor = FunctionBuilder::constructor(retry_construct)
        .not_required()
        .arg(Arg::new("message", DataType::String).default("\"\""))
        .arg(Arg::new("retry", DataType::Long).allow_null().default("null"))
        .arg(Arg::new("interval", DataType::Long).allow_null().default("null"))
        .arg(Arg::new("code", DataType::Long).default("0"))
        .arg(Arg::new("previous", DataType::ANY_OBJECT).allow_null().default("null"));
    b.property(null_property("retry"))
        .property(null_property("interval"))
        .method(ctor, MethodFlags::Public)
        .method(FunctionBuilder::new("getRetry", get_retry).returns(DataType::Long, false, true), MethodFlags::Public)
        .method(
            FunctionBuilder::new("getInterval", get_interval).returns(DataType::Long, false, true),
            MethodFlags::Public,
        )
}

fn connectioned_methods(b: ClassBuilder) -> ClassBuilder {
    b.property(null_property("failures")).method(
        FunctionBuilder::new("getFailures", get_failures).returns(DataType::Array, false, false),
        MethodFlags::Public,
    )
}

extern "C" fn get_failures(ex: &mut ExecuteData, retval: &mut Zval) {
    let failures = ex.This.object().and_then(|o| o.get_property::<&Zval>("failures").ok()).filter(|z| z.is_array());
    match failures {
        Some(z) => *retval = z.shallow_clone(),
        None => {
            let _ = retval.set_array(Vec::<Zval>::new());
        }
    }
}

extern "C" {
    // The engine's own property update, with the class as scope (so a protected property can be set).
    fn zend_update_property(
        scope: *mut ffi::zend_class_entry,
        object: *mut ffi::zend_object,
        name: *const std::os::raw::c_char,
        name_length: usize,
        value: *mut ffi::zval,
    );
}

/// A `ConnectionedException` whose `getFailures()` returns `failures` (an array).
pub fn connectioned_with(message: impl Into<String>, failures: Zval) -> PhpException {
    let message = message.into().replace('\0', "\\0");
    let ce = class(Kind::Connectioned);
    let obj = ce.new();
    if crate::php::call::call_method(&obj, "__construct", vec![&message.as_str()]).is_err() {
        return exception(Kind::Connectioned, message);
    }
    let mut value = failures;
    let name = "failures";
    // SAFETY: `obj` is a live object of `ce`, which declares the property `failures`; the name is
    // `name_length` bytes long; `value` is a valid zval the engine copies (adding a reference).
    unsafe {
        zend_update_property(
            ce as *const ClassEntry as *mut ffi::zend_class_entry,
            &*obj as *const _ as *mut ffi::zend_object,
            name.as_ptr().cast(),
            name.len(),
            &mut value as *mut Zval as *mut ffi::zval,
        );
    }
    match obj.into_zval(false) {
        Ok(zv) => PhpException::new(message, 0, ce).with_object(zv),
        Err(_) => exception(Kind::Connectioned, message),
    }
}

/// Reads an optional int argument: null or missing gives null, an int or numeric string gives
/// the int, anything else a TypeError; an int outside `0..=max` is a ValueError.
fn int_or_null(zv: Option<&Zval>, position: u32, name: &str, max: i64) -> Result<Option<i64>, PhpException> {
    let function = "Asynclib\\Exception\\RetryException::__construct()";
    let Some(zv) = zv.map(Zval::dereference) else {
        return Ok(None);
    };
    if zv.is_null() {
        return Ok(None);
    }
    let Some(n) = zv.long().or_else(|| zv.str().and_then(|s| s.trim().parse::<i64>().ok())) else {
        return Err(PhpException::new(
            format!("{function}: Argument #{position} (${name}) must be of type ?int, {} given", zv.get_type()),
            0,
            ext_php_rs::zend::ce::type_error(),
        ));
    };
    if !(0..=max).contains(&n) {
        return Err(PhpException::new(
            format!("{function}: Argument #{position} (${name}) must be between 0 and {max} (or null), {n} given"),
            0,
            ext_php_rs::zend::ce::value_error(),
        ));
    }
    Ok(Some(n))
}

extern "C" fn retry_construct(ex: &mut ExecuteData, _retval: &mut Zval) {
    // SAFETY: num_args is the union member the engine sets for every internal call.
    let n = unsafe { ex.This.u2.num_args } as usize;
    // SAFETY: for i < num_args the slot holds an argument passed by the caller.
    let args: Vec<Zval> =
        (0..n.min(5)).filter_map(|i| unsafe { ex.zend_call_arg(i) }.map(|z| z.shallow_clone())).collect();
    let arg = |i: usize| args.get(i);
    // A negative count or interval would silently mean "no retry" or "now"; refused instead.
    let retry = int_or_null(arg(1), 2, "retry", u32::MAX as i64);
    let interval = int_or_null(arg(2), 3, "interval", crate::rules::MAX_DELAY);
    let (retry, interval) = match (retry, interval) {
        (Ok(r), Ok(i)) => (r, i),
        (Err(e), _) | (_, Err(e)) => {
            e.throw();
            return;
        }
    };
    // Pass message, code and previous on to RuntimeException's own constructor.
    let mut params: Vec<Zval> = Vec::with_capacity(3);
    for i in [0usize, 3, 4] {
        match arg(i) {
            Some(z) => params.push(z.shallow_clone()),
            None => break,
        }
    }
    let Some(this) = ex.This.object_mut() else {
        return;
    };
    // SAFETY: `this` is a live object of a class extending RuntimeException, whose constructor is
    // Exception::__construct; the params are valid zvals owned by `params` for the whole call.
    unsafe {
        let ce = runtime_exception() as *const ClassEntry as *mut ClassEntry;
        let ctor = (*ce).constructor;
        let mut rv = Zval::new();
        ffi::zend_call_known_function(
            ctor,
            this as *mut _ as *mut ffi::zend_object,
            this.ce,
            &mut rv as *mut Zval as *mut ffi::zval,
            params.len() as u32,
            params.as_mut_ptr() as *mut ffi::zval,
            std::ptr::null_mut(),
        );
    }
    if ExecutorGlobals::has_exception() {
        return;
    }
    let _ = this.set_property("retry", retry);
    let _ = this.set_property("interval", interval);
}

fn read_int_prop(ex: &mut ExecuteData, name: &str, retval: &mut Zval) {
    let v = ex.This.object().and_then(|o| o.get_property::<Option<i64>>(name).ok()).flatten();
    match v {
        Some(v) => retval.set_long(v),
        None => retval.set_null(),
    }
}

extern "C" fn get_retry(ex: &mut ExecuteData, retval: &mut Zval) {
    read_int_prop(ex, "retry", retval);
}

extern "C" fn get_interval(ex: &mut ExecuteData, retval: &mut Zval) {
    read_int_prop(ex, "interval", retval);
}
