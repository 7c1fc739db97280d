//! Log lines to stderr: errors always, per-task lines with `EBATS_DEBUG`.

use std::io::Write;

fn stamp() -> String {
    let t = crate::wire::now();
    let secs = t as i64;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("{h:02}:{m:02}:{s:02}.{:03}", ((t - secs as f64) * 1000.0) as u32)
}

fn line(level: &str, msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "[ebats {} {level} pid={}] {msg}", stamp(), std::process::id());
}

pub fn error(msg: &str) {
    line("ERROR", msg);
}

pub fn info(msg: &str) {
    line("INFO", msg);
}

pub fn debug(msg: &str) {
    line("DEBUG", msg);
}
