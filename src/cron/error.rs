//! What went wrong in the cron core, with a kind that code decides on and a message for people.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The cron expression cannot be parsed, or no date ever matches it.
    Expression,
    /// A time zone name is unknown, or the process's zone cannot be read as one.
    TimeZone,
    /// A schedule setting is unknown, of the wrong type or out of range; also a bad event name.
    Setting,
    /// A stored firing record cannot be decoded.
    Record,
    /// An instant is outside the range the calendar computation handles.
    Time,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into() }
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// A user-given string as it may appear in a message: control characters escaped, at most 80 characters.
pub(crate) fn shown(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().take(80) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if s.chars().nth(80).is_some() {
        out.push_str("...");
    }
    out
}
