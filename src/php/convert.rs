//! PHP values to JSON and back. Arrays with keys 0..n-1 in order are JSON lists (so `[]` is a
//! list), other arrays objects; objects must be `stdClass` or `JsonSerializable`.

use ext_php_rs::boxed::ZBox;
use ext_php_rs::types::{ZendHashTable, Zval};
use serde_json::{Map, Number, Value};

/// Deeper than this is refused: PHP arrays nest this deep only by a reference to themselves.
pub const MAX_DEPTH: usize = 128;

pub fn to_json(zv: &Zval) -> Result<Value, String> {
    convert(zv, 0, "")
}

/// Where in the value, for an error: the path, or its last 40 or so bytes when it is long (cut on
/// a character boundary: keys may hold any UTF-8).
fn at(path: &str) -> String {
    match path.len() {
        0 => String::new(),
        n if n > 60 => {
            let cut = (n - 40..n).find(|&i| path.is_char_boundary(i)).unwrap_or(n);
            format!(" at ...{}", &path[cut..])
        }
        _ => format!(" at {path}"),
    }
}

fn convert(zv: &Zval, depth: usize, path: &str) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("value nests deeper than {MAX_DEPTH} levels{} (an array that contains itself?)", at(path)));
    }
    let zv = zv.dereference();
    if zv.is_null() {
        return Ok(Value::Null);
    }
    if let Some(b) = zv.bool() {
        return Ok(Value::Bool(b));
    }
    if let Some(l) = zv.long() {
        return Ok(Value::Number(l.into()));
    }
    if let Some(d) = zv.double() {
        return Number::from_f64(d)
            .map(Value::Number)
            .ok_or_else(|| format!("{d} cannot be represented in JSON{}", at(path)));
    }
    if let Some(s) = zv.zend_str() {
        return match std::str::from_utf8(s.as_bytes()) {
            Ok(s) => Ok(Value::String(s.to_string())),
            Err(_) => Err(format!("string{} is not valid UTF-8", at(path))),
        };
    }
    if let Some(arr) = zv.array() {
        return array(arr, depth, path);
    }
    if let Some(obj) = zv.object() {
        let class = obj.get_class_name().unwrap_or_default();
        let class = class.split('\0').next().unwrap_or_default().to_string();
        if class == "Closure" {
            return Err(format!("a Closure cannot be sent{}", at(path)));
        }
        if class == "stdClass" {
            let props = obj.get_properties().map_err(|e| e.to_string())?;
            return Ok(Value::Object(map(props, depth, path)?));
        }
        let serializable =
            ext_php_rs::zend::ClassEntry::try_find("JsonSerializable").is_some_and(|ce| obj.instance_of(ce));
        if serializable {
            let out = obj
                .try_call_method("jsonSerialize", vec![])
                .map_err(|e| format!("{class}::jsonSerialize() failed: {e}"))?;
            if ext_php_rs::zend::ExecutorGlobals::has_exception() {
                return Err(format!("{class}::jsonSerialize() threw"));
            }
            return convert(&out, depth + 1, path);
        }
        return Err(format!(
            "an object of class {class} cannot be sent{}: use arrays, stdClass or JsonSerializable",
            at(path)
        ));
    }
    if zv.is_resource() {
        return Err(format!("a resource cannot be sent{}", at(path)));
    }
    Err(format!("a value of type {} cannot be sent{}", zv.get_type(), at(path)))
}

/// The array's entries with their keys as PHP holds them (an int or a byte string). Iterating
/// with `iter()` would panic on a key that is not UTF-8, which PHP allows.
fn entries(arr: &ZendHashTable) -> Vec<(Result<i64, Vec<u8>>, &Zval)> {
    let mut it = arr.iter();
    let mut out = Vec::with_capacity(arr.len());
    while let Some((k, v)) = it.next_zval() {
        let key = match k.long() {
            Some(l) => Ok(l),
            None => Err(k.zend_str().map(|s| s.as_bytes().to_vec()).unwrap_or_default()),
        };
        out.push((key, v));
    }
    out
}

fn array(arr: &ZendHashTable, depth: usize, path: &str) -> Result<Value, String> {
    let entries = entries(arr);
    let is_list = entries.iter().enumerate().all(|(i, (k, _))| *k == Ok(i as i64));
    if is_list {
        let mut out = Vec::with_capacity(entries.len());
        for (i, (_, v)) in entries.iter().enumerate() {
            out.push(convert(v, depth + 1, &format!("{path}[{i}]"))?);
        }
        return Ok(Value::Array(out));
    }
    Ok(Value::Object(map(arr, depth, path)?))
}

fn map(arr: &ZendHashTable, depth: usize, path: &str) -> Result<Map<String, Value>, String> {
    let mut out = Map::with_capacity(arr.len());
    for (k, v) in entries(arr) {
        let key = match k {
            Ok(l) => l.to_string(),
            Err(bytes) => {
                String::from_utf8(bytes).map_err(|_| format!("an array key{} is not valid UTF-8", at(path)))?
            }
        };
        let sub = format!("{path}[{}]", crate::rules::printable(&key));
        out.insert(key, convert(v, depth + 1, &sub)?);
    }
    Ok(out)
}

/// JSON to a PHP value: objects become arrays with string keys, as `json_decode($s, true)` does.
pub fn to_zval(v: &Value) -> Zval {
    let mut zv = Zval::new();
    match v {
        Value::Null => zv.set_null(),
        Value::Bool(b) => zv.set_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => zv.set_long(i),
            None => zv.set_double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => {
            let _ = zv.set_string(s, false);
        }
        Value::Array(items) => {
            let mut ht: ZBox<ZendHashTable> = ZendHashTable::with_capacity(items.len() as u32);
            for item in items {
                let _ = ht.push(to_zval(item));
            }
            zv.set_hashtable(ht);
        }
        Value::Object(o) => {
            let mut ht: ZBox<ZendHashTable> = ZendHashTable::with_capacity(o.len() as u32);
            for (k, item) in o {
                let _ = ht.insert(k.as_str(), to_zval(item));
            }
            zv.set_hashtable(ht);
        }
    }
    zv
}

#[cfg(test)]
mod tests {
    use super::at;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Any path (keys are any UTF-8) gives a short location, never a panic.
        #[test]
        fn a_location_is_cut_on_a_character_boundary(path in "(\\[.{0,30}\\]){0,8}") {
            let shown = at(&path);
            prop_assert!(shown.len() <= 70 + 4, "{shown}");
            prop_assert!(path.ends_with(shown.trim_start_matches(" at ").trim_start_matches("...")));
        }
    }

    #[test]
    fn a_long_path_of_wide_characters() {
        let path = format!("[{}]", "é".repeat(30));
        assert_eq!(at(&path), format!(" at ...{}]", "é".repeat(19)));
    }
}
