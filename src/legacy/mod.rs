//! The original library's messages (PHP `serialize()` bodies), read without PHP: `serial` reads the
//! format into plain Rust values under limits, `body` knows the original's event, task and
//! `Publish::send()` shapes and turns them into the JSON ebats handles (and writes them back, for a
//! compat-write mode). Pure Rust: no PHP types, no broker; the ground floor, like `wire` and `rules`.

pub mod body;
pub mod serial;

#[cfg(test)]
mod tests;
