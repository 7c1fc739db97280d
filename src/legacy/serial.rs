//! A reader of PHP's `serialize()` format that trusts nothing it reads: it builds plain Rust values,
//! never a PHP value, never calls `unserialize()`, never names a class to PHP.
//!
//! Read: `N;` `b:0;` `b:1;` `i:<int>;` `d:<float>;` (with `INF`, `-INF`, `NAN` as PHP writes them),
//! `s:<len>:"<bytes>";` (len in bytes, any bytes), `a:<n>:{<key><value>...}` (keys `i:` or `s:`) and
//! `O:<len>:"<class>":<n>:{<name><value>...}` for the classes `stdClass` and `Asynclib\Ebats\Task` only.
//! Refused, each with the byte offset and a reason: other classes, `C:` custom serialization, `r:`/`R:`
//! references, `E:` enums, `S:` escaped strings, duplicate keys, trailing bytes, lengths and counts beyond
//! the input, integers out of range, malformed numbers, and input over the [`Limits`].
//!
//! Bounded: time linear in the input; no allocation is sized from a declared length or count before that
//! length is checked against the bytes that remain; recursion at most `min(max_depth, 512)` deep.

use std::collections::HashSet;
use std::fmt;

/// The original library's task class (its objects carry the private properties `id`, `name`, `topic`,
/// `params`, `delay`).
pub const TASK_CLASS: &str = "Asynclib\\Ebats\\Task";
/// The only other class read: PHP's plain object.
pub const STD_CLASS: &str = "stdClass";

/// Nesting is never followed deeper than this, whatever [`Limits::max_depth`] says, so the recursion
/// stays far inside any thread's stack.
pub const HARD_MAX_DEPTH: usize = 512;

/// A value read from PHP's serialize format.
#[derive(Debug, Clone, PartialEq)]
pub enum PhpValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Vec<u8>),
    /// Entries in the order written, keys as PHP holds them (a string key that is a canonical decimal
    /// integer, such as `"7"`, is the integer key 7, as PHP makes it).
    Array(Vec<(PhpKey, PhpValue)>),
    /// `class` is `stdClass` or [`TASK_CLASS`]; `props` are the raw names as written, private ones
    /// included with their `"\0Class\0"` prefix.
    Object {
        class: String,
        props: Vec<(Vec<u8>, PhpValue)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PhpKey {
    Int(i64),
    Str(Vec<u8>),
}

/// What one input may hold: nesting depth of arrays and objects, entries of all arrays and objects
/// together, and its size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_depth: usize,
    pub max_elements: usize,
    pub max_bytes: usize,
}

impl Default for Limits {
    /// Depth 128 as the PHP-to-JSON conversion of ebats allows (`php::convert::MAX_DEPTH`), 100 000
    /// entries, 16 MiB.
    fn default() -> Self {
        Limits { max_depth: 128, max_elements: 100_000, max_bytes: 16 << 20 }
    }
}

/// Why an input was refused, and at which byte of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialError {
    pub offset: usize,
    pub reason: String,
}

impl fmt::Display for SerialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.reason)
    }
}

impl std::error::Error for SerialError {}

/// Reads one value that must span the whole input (trailing bytes are refused).
pub fn parse(bytes: &[u8], limits: &Limits) -> Result<PhpValue, SerialError> {
    if bytes.len() > limits.max_bytes {
        return Err(SerialError {
            offset: 0,
            reason: format!("input of {} bytes is over the limit of {} bytes", bytes.len(), limits.max_bytes),
        });
    }
    let mut p = Parser {
        b: bytes,
        pos: 0,
        elements: 0,
        max_elements: limits.max_elements,
        max_depth: limits.max_depth.min(HARD_MAX_DEPTH),
    };
    let v = p.value(0)?;
    if p.pos != bytes.len() {
        return p.fail(p.pos, format!("{} bytes after the end of the value", bytes.len() - p.pos));
    }
    Ok(v)
}

/// The integer PHP makes of a string array key (ZEND_HANDLE_NUMERIC_STR): a canonical decimal integer
/// in range ("0", "17", "-3"; not "007", "-0", "+1", " 1" or "9223372036854775808").
pub fn numeric_key(s: &[u8]) -> Option<i64> {
    let digits = s.strip_prefix(b"-").unwrap_or(s);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits[0] == b'0' && (digits.len() > 1 || s.len() > 1) {
        return None; // leading zero, or "-0"
    }
    std::str::from_utf8(s).ok()?.parse::<i64>().ok()
}

/// A byte for a message: the character when printable ASCII, its hex code otherwise.
fn show(c: u8) -> String {
    if c.is_ascii_graphic() || c == b' ' {
        format!("'{}'", c as char)
    } else {
        format!("byte 0x{c:02x}")
    }
}

struct Parser<'a> {
    b: &'a [u8],
    pos: usize,
    elements: usize,
    max_elements: usize,
    max_depth: usize,
}

/// Fewest bytes one array entry can take (`i:0;N;`), so a declared count over a sixth of what remains
/// cannot be true.
const MIN_ENTRY: usize = 6;

impl<'a> Parser<'a> {
    fn fail<T>(&self, offset: usize, reason: impl Into<String>) -> Result<T, SerialError> {
        Err(SerialError { offset, reason: reason.into() })
    }

    fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }

    fn expect(&mut self, want: u8, context: &str) -> Result<(), SerialError> {
        match self.b.get(self.pos) {
            Some(&c) if c == want => {
                self.pos += 1;
                Ok(())
            }
            Some(&c) => self.fail(self.pos, format!("expected '{}' {context}, found {}", want as char, show(c))),
            None => self.fail(self.pos, format!("input ends where '{}' was expected {context}", want as char)),
        }
    }

    fn value(&mut self, depth: usize) -> Result<PhpValue, SerialError> {
        let start = self.pos;
        let Some(&tag) = self.b.get(start) else {
            return self.fail(start, "input ends where a value was expected");
        };
        match tag {
            b'N' => {
                self.pos += 1;
                self.expect(b';', "after N")?;
                Ok(PhpValue::Null)
            }
            b'b' => {
                self.pos += 1;
                self.expect(b':', "after b")?;
                let v = match self.b.get(self.pos) {
                    Some(b'0') => false,
                    Some(b'1') => true,
                    Some(&c) => return self.fail(self.pos, format!("a boolean is 0 or 1, found {}", show(c))),
                    None => return self.fail(self.pos, "input ends inside a boolean"),
                };
                self.pos += 1;
                self.expect(b';', "after a boolean")?;
                Ok(PhpValue::Bool(v))
            }
            b'i' => {
                self.pos += 1;
                self.expect(b':', "after i")?;
                let n = self.int()?;
                self.expect(b';', "after an integer")?;
                Ok(PhpValue::Int(n))
            }
            b'd' => {
                self.pos += 1;
                self.expect(b':', "after d")?;
                let f = self.float()?;
                self.expect(b';', "after a float")?;
                Ok(PhpValue::Float(f))
            }
            b's' => Ok(PhpValue::Str(self.string()?.to_vec())),
            b'a' => self.array(depth),
            b'O' => self.object(depth),
            b'S' => self.fail(start, "escaped strings (S:) are refused: serialize() does not write them"),
            b'C' => self.fail(start, "custom-serialized objects (C:) are refused"),
            b'r' | b'R' => self.fail(start, "references (r: and R:) are refused"),
            b'E' => self.fail(start, "enums (E:) are refused"),
            other => self.fail(start, format!("unexpected {} where a value was expected", show(other))),
        }
    }

    /// `[+-]?[0-9]+` as an i64.
    fn int(&mut self) -> Result<i64, SerialError> {
        let start = self.pos;
        let negative = match self.b.get(self.pos) {
            Some(b'-') => {
                self.pos += 1;
                true
            }
            Some(b'+') => {
                self.pos += 1;
                false
            }
            _ => false,
        };
        let mut acc: i64 = 0;
        let mut digits = 0usize;
        let mut overflow = false;
        while let Some(&c) = self.b.get(self.pos) {
            if !c.is_ascii_digit() {
                break;
            }
            let d = i64::from(c - b'0');
            // Accumulated on the negative side when negative, so i64::MIN is readable.
            let next = acc.checked_mul(10).and_then(|a| if negative { a.checked_sub(d) } else { a.checked_add(d) });
            match next {
                Some(n) => acc = n,
                None => overflow = true,
            }
            digits += 1;
            self.pos += 1;
        }
        if digits == 0 {
            return match self.b.get(self.pos) {
                Some(&c) => self.fail(self.pos, format!("malformed integer: expected a digit, found {}", show(c))),
                None => self.fail(self.pos, "input ends inside an integer"),
            };
        }
        if overflow {
            return self.fail(start, "integer out of the 64-bit range");
        }
        Ok(acc)
    }

    /// A length or count: `[0-9]+`, followed by `:`.
    fn length(&mut self, what: &str) -> Result<usize, SerialError> {
        let start = self.pos;
        let mut n: usize = 0;
        while let Some(&c) = self.b.get(self.pos) {
            if !c.is_ascii_digit() {
                break;
            }
            n = match n.checked_mul(10).and_then(|n| n.checked_add(usize::from(c - b'0'))) {
                Some(n) => n,
                None => return self.fail(start, format!("{what} out of range")),
            };
            self.pos += 1;
        }
        if self.pos == start {
            return match self.b.get(self.pos) {
                Some(&c) => self.fail(self.pos, format!("malformed {what}: expected a digit, found {}", show(c))),
                None => self.fail(self.pos, format!("input ends where a {what} was expected")),
            };
        }
        self.expect(b':', &format!("after a {what}"))?;
        Ok(n)
    }

    /// `d:` payload: `NAN`, `INF`, `-INF`, or `[+-]?` digits with an optional fraction and exponent.
    fn float(&mut self) -> Result<f64, SerialError> {
        let start = self.pos;
        while let Some(&c) = self.b.get(self.pos) {
            if !(c.is_ascii_digit() || b"+-.eEINFA".contains(&c)) {
                break;
            }
            self.pos += 1;
        }
        let token = &self.b[start..self.pos];
        match token {
            b"NAN" => return Ok(f64::NAN),
            b"INF" => return Ok(f64::INFINITY),
            b"-INF" => return Ok(f64::NEG_INFINITY),
            _ => {}
        }
        if !float_syntax(token) {
            return match (token.is_empty(), self.b.get(self.pos)) {
                (true, None) => self.fail(start, "input ends where a float was expected"),
                (true, Some(&c)) => self.fail(start, format!("malformed float: found {}", show(c))),
                _ => self.fail(start, format!("malformed float '{}'", String::from_utf8_lossy(token))),
            };
        }
        // float_syntax let through only ASCII digits, signs, '.', 'e' and 'E'.
        let text = std::str::from_utf8(token).unwrap_or_default();
        match text.parse::<f64>() {
            Ok(f) => Ok(f),
            Err(_) => self.fail(start, format!("malformed float '{text}'")),
        }
    }

    /// `s:<len>:"<bytes>";`, positioned on the `s`.
    fn string(&mut self) -> Result<&'a [u8], SerialError> {
        self.pos += 1; // 's'
        self.expect(b':', "after s")?;
        let len = self.length("string length")?;
        self.expect(b'"', "before the string's bytes")?;
        if len > self.remaining() {
            return self
                .fail(self.pos, format!("string of {len} bytes declared, only {} bytes remain", self.remaining()));
        }
        let s = &self.b[self.pos..self.pos + len];
        self.pos += len;
        self.expect(b'"', "after the string's bytes (is the declared length right?)")?;
        self.expect(b';', "after a string")?;
        Ok(s)
    }

    /// Opens a container of `n` entries at `start`: depth, element and input-length checks.
    fn open(&mut self, start: usize, depth: usize, n: usize) -> Result<(), SerialError> {
        if depth >= self.max_depth {
            return self.fail(start, format!("nested deeper than {} levels", self.max_depth));
        }
        self.elements = self.elements.saturating_add(n);
        if self.elements > self.max_elements {
            return self.fail(start, format!("more than {} array or object entries", self.max_elements));
        }
        self.expect(b'{', "before the entries")?;
        if n > self.remaining() / MIN_ENTRY {
            return self
                .fail(start, format!("{n} entries declared, the {} bytes left cannot hold them", self.remaining()));
        }
        Ok(())
    }

    fn array(&mut self, depth: usize) -> Result<PhpValue, SerialError> {
        let start = self.pos;
        self.pos += 1; // 'a'
        self.expect(b':', "after a")?;
        let n = self.length("array size")?;
        self.open(start, depth, n)?;
        let mut entries = Vec::with_capacity(n);
        let mut seen = HashSet::with_capacity(n);
        for _ in 0..n {
            let at = self.pos;
            let key = match self.b.get(self.pos) {
                Some(b'i') => {
                    self.pos += 1;
                    self.expect(b':', "after i")?;
                    let k = self.int()?;
                    self.expect(b';', "after an integer key")?;
                    PhpKey::Int(k)
                }
                Some(b's') => {
                    let s = self.string()?;
                    match numeric_key(s) {
                        Some(k) => PhpKey::Int(k),
                        None => PhpKey::Str(s.to_vec()),
                    }
                }
                Some(&c) => return self.fail(at, format!("an array key is an integer or a string, found {}", show(c))),
                None => return self.fail(at, "input ends where an array key was expected"),
            };
            if !seen.insert(key.clone()) {
                return self.fail(at, "duplicate array key");
            }
            let v = self.value(depth + 1)?;
            entries.push((key, v));
        }
        self.expect(b'}', "at the end of an array (is the declared size right?)")?;
        Ok(PhpValue::Array(entries))
    }

    fn object(&mut self, depth: usize) -> Result<PhpValue, SerialError> {
        let start = self.pos;
        self.pos += 1; // 'O'
        self.expect(b':', "after O")?;
        let len = self.length("class name length")?;
        self.expect(b'"', "before the class name")?;
        if len > self.remaining() {
            return self
                .fail(self.pos, format!("class name of {len} bytes declared, only {} bytes remain", self.remaining()));
        }
        let name = &self.b[self.pos..self.pos + len];
        let class = match name {
            b"stdClass" => STD_CLASS,
            n if n == TASK_CLASS.as_bytes() => TASK_CLASS,
            other => {
                let shown = crate::rules::printable(&String::from_utf8_lossy(other));
                return self.fail(
                    start,
                    format!("objects of class '{shown}' are refused (only stdClass and {TASK_CLASS} are read)"),
                );
            }
        };
        self.pos += len;
        self.expect(b'"', "after the class name")?;
        self.expect(b':', "after the class name")?;
        let n = self.length("property count")?;
        self.open(start, depth, n)?;
        let mut props = Vec::with_capacity(n);
        let mut seen = HashSet::with_capacity(n);
        for _ in 0..n {
            let at = self.pos;
            let name = match self.b.get(self.pos) {
                Some(b's') => self.string()?.to_vec(),
                // Older PHP wrote integer property names of stdClass as integer keys.
                Some(b'i') => {
                    self.pos += 1;
                    self.expect(b':', "after i")?;
                    let k = self.int()?;
                    self.expect(b';', "after an integer property name")?;
                    k.to_string().into_bytes()
                }
                Some(&c) => return self.fail(at, format!("a property name is a string, found {}", show(c))),
                None => return self.fail(at, "input ends where a property name was expected"),
            };
            if class == STD_CLASS && name.first() == Some(&0) {
                return self.fail(at, "a stdClass has no private or protected properties");
            }
            if !seen.insert(name.clone()) {
                return self.fail(at, "duplicate property name");
            }
            let v = self.value(depth + 1)?;
            props.push((name, v));
        }
        self.expect(b'}', "at the end of an object (is the declared count right?)")?;
        Ok(PhpValue::Object { class: class.to_string(), props })
    }
}

/// PHP's float syntax in `d:`: `[+-]?` then digits with an optional `.` and fraction (at least one
/// digit in all), then optionally `[eE][+-]?[0-9]+`.
fn float_syntax(t: &[u8]) -> bool {
    let mut i = 0;
    if matches!(t.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_digits = t[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    i += int_digits;
    let mut frac_digits = 0;
    if t.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = t[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        i += frac_digits;
    }
    if int_digits + frac_digits == 0 {
        return false;
    }
    if matches!(t.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(t.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_digits = t[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if exp_digits == 0 {
            return false;
        }
        i += exp_digits;
    }
    i == t.len()
}
