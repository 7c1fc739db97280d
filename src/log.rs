//! Log lines to stderr: errors always, per-task lines with `EBATS_DEBUG`.
//!
//! A line is built whole, then written with one `write(2)`, so the lines of several processes sharing
//! stderr never mix (a pipe keeps a write of up to 4096 bytes in one piece; a line is kept below that).
//! Messages carry names, bodies and exception messages that came from outside: every control character
//! in them is escaped here, so no value can start a line of its own. (Messages are `&str`: bytes from
//! the broker reach them decoded, invalid UTF-8 replaced.)

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

/// The longest message written; the rest is cut, saying how long the whole was.
const MAX_MESSAGE: usize = 3800;

fn stamp() -> String {
    let t = crate::wire::now();
    let secs = t as i64;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("{h:02}:{m:02}:{s:02}.{:03}", ((t - secs as f64) * 1000.0) as u32)
}

/// `s` with `\n`, `\r` and `\t` written as such, other control characters (C0, DEL, C1) and the
/// Unicode line and paragraph separators as `\u{..}`. Backslashes stay as they are (class names).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// The whole line, newline included.
fn format_line(level: &str, msg: &str, pid: u32) -> String {
    let msg = escape(msg);
    format!("[ebats {} {level} pid={pid}] {}\n", stamp(), crate::rules::bounded(&msg, MAX_MESSAGE))
}

fn line(level: &str, msg: &str) {
    let line = format_line(level, msg, std::process::id());
    // Stderr is unbuffered: this is one write(2) (more only if the kernel takes part of it).
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
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

/// Lines about a happening that may repeat at the rate of messages (an event no task is registered
/// for), by key: the first line of a key at once, then at most one per `every` for it, saying how many
/// were not written since. Keys come from outside (event names): at [`Throttle::KEYS`] of them, the keys
/// whose line is older than `every` are forgotten, or all of them when none is (a key forgotten gets its
/// next line at once).
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    /// Per key: when its last line was written, and how many were not written since.
    keys: HashMap<String, (Instant, u64)>,
}

impl Throttle {
    /// The most keys remembered.
    pub const KEYS: usize = 1000;

    pub fn new(every: Duration) -> Throttle {
        Throttle { every, keys: HashMap::new() }
    }

    /// Whether to write the line for `key` at `now`: `Some(n)` with the number of lines of that key
    /// not written before it, or `None` (counted).
    pub fn admit(&mut self, key: &str, now: Instant) -> Option<u64> {
        if let Some((last, skipped)) = self.keys.get_mut(key) {
            if now.saturating_duration_since(*last) < self.every {
                *skipped += 1;
                return None;
            }
            *last = now;
            return Some(std::mem::take(skipped));
        }
        if self.keys.len() >= Self::KEYS {
            let every = self.every;
            self.keys.retain(|_, (last, _)| now.saturating_duration_since(*last) < every);
            if self.keys.len() >= Self::KEYS {
                self.keys.clear();
            }
        }
        self.keys.insert(key.to_string(), (now, 0));
        Some(0)
    }

    /// [`Throttle::admit`] as the words its line ends with: nothing, or how many lines of that key were
    /// not written since the last one (" (3 more in the last 60 s not logged)"); `None`: not written.
    pub fn admit_said(&mut self, key: &str, now: Instant) -> Option<String> {
        let every = self.every.as_secs();
        self.admit(key, now).map(|left_out| match left_out {
            0 => String::new(),
            n => format!(" ({n} more in the last {every} s not logged)"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("a\nb\rc\td"), "a\\nb\\rc\\td");
        assert_eq!(escape("x\u{1b}[31m\u{0}\u{7f}\u{85}"), "x\\u{1b}[31m\\u{0}\\u{7f}\\u{85}");
        assert_eq!(escape("line\u{2028}sep"), "line\\u{2028}sep");
        assert_eq!(escape("A\\B"), "A\\B");
        assert_eq!(escape("plain é ✓"), "plain é ✓");
    }

    #[test]
    fn a_line_is_one_line_whatever_the_message() {
        let l = format_line("ERROR", "event 'x\n[ebats 00:00:00.000 ERROR pid=1] forged' failed", 42);
        assert_eq!(l.matches('\n').count(), 1);
        assert!(l.ends_with('\n'));
        assert!(l.starts_with("[ebats "));
        assert!(l.contains(" ERROR pid=42] event 'x\\n[ebats"), "{l}");
        let long = format_line("DEBUG", &"é".repeat(5000), 1);
        assert!(long.len() < 4096, "{}", long.len());
        assert!(long.ends_with(" ... [cut: 10000 bytes in all]\n"), "{long}");
        assert_eq!(long.matches('\n').count(), 1);
    }

    #[test]
    fn a_repeated_line_is_written_once_per_interval_with_the_count_left_out() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut t = Throttle::new(Duration::from_secs(60));
        let table: &[(&str, u64, Option<u64>)] = &[
            ("a", 0, Some(0)),
            ("a", 10, None),
            ("b", 20, Some(0)),
            ("a", 59_999, None),
            ("a", 60_000, Some(2)),
            ("a", 60_001, None),
            ("b", 60_020, Some(0)),
            ("a", 200_000, Some(1)),
        ];
        for (i, (key, ms, want)) in table.iter().enumerate() {
            assert_eq!(t.admit(key, at(*ms)), *want, "step {i}: {key} at {ms} ms");
        }
        let mut t = Throttle::new(Duration::from_secs(60));
        let said: Vec<Option<String>> = [0, 1, 2, 60_000].iter().map(|ms| t.admit_said("a", at(*ms))).collect();
        assert_eq!(said, [Some(String::new()), None, None, Some(" (2 more in the last 60 s not logged)".into())]);
    }

    #[test]
    fn keys_from_outside_stay_bounded() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::from_secs(60));
        for i in 0..Throttle::KEYS {
            assert_eq!(t.admit(&format!("e{i}"), t0), Some(0));
        }
        assert_eq!(t.admit("e1", t0), None, "still remembered");
        // One more key within the interval: no key's line is old enough to forget it alone, so all go.
        assert_eq!(t.admit("new", t0), Some(0));
        assert!(t.keys.len() <= 1, "{}", t.keys.len());
        assert_eq!(t.admit("e1", t0), Some(0), "forgotten: its next line comes at once");
    }
}
