//! How a worker child's end is read, and when the parent starts its replacement.

use std::time::Duration;

use super::signals;

/// How a child ended, read from its `waitpid` status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Exited(i32),
    Killed(i32),
    /// Neither (a status `waitpid` reports without WUNTRACED does not get here).
    Other(i32),
}

impl End {
    pub fn read(status: i32) -> End {
        if libc::WIFEXITED(status) {
            End::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            End::Killed(libc::WTERMSIG(status))
        } else {
            End::Other(status)
        }
    }

    /// Only an exit with code 0 is clean.
    pub fn clean(self) -> bool {
        self == End::Exited(0)
    }

    /// What the log says of it: "<pid> {describe}".
    pub fn describe(self) -> String {
        match self {
            End::Exited(code) => format!("exited with code {code}"),
            End::Killed(sig) => format!("was killed by {} ({sig})", signals::name(sig)),
            End::Other(status) => format!("ended (status {status})"),
        }
    }
}

/// A child that lived less than this and ended unclean failed fast.
pub const FAST: Duration = Duration::from_secs(2);
/// The longest wait before a replacement.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// When to start a child's replacement, and its slot's count of fast failures after this end. A
/// child that keeps dying right after start waits longer each time (250 ms doubling, up to 30 s);
/// a child killed by its task (`held_task`) is not at fault: the task's deaths are counted instead.
pub fn restart_delay(end: End, held_task: bool, lived: Duration, fast_failures: u32) -> (Duration, u32) {
    if !end.clean() && !held_task && lived < FAST {
        let failures = fast_failures.saturating_add(1);
        (Duration::from_millis(250u64 << failures.min(7)).min(MAX_DELAY), failures)
    } else {
        (Duration::ZERO, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_read_from_wait_statuses() {
        // (raw status, end, clean, description)
        let table: &[(i32, End, bool, &str)] = &[
            (0, End::Exited(0), true, "exited with code 0"),
            (3 << 8, End::Exited(3), false, "exited with code 3"),
            (255 << 8, End::Exited(255), false, "exited with code 255"),
            (libc::SIGKILL, End::Killed(libc::SIGKILL), false, "was killed by SIGKILL (9)"),
            (libc::SIGSEGV | 0x80, End::Killed(libc::SIGSEGV), false, "was killed by SIGSEGV (11)"),
            (0xffff, End::Other(0xffff), false, "ended (status 65535)"),
        ];
        for (status, end, clean, text) in table {
            assert_eq!(End::read(*status), *end, "{status:#x}");
            assert_eq!(end.clean(), *clean, "{end:?}");
            assert_eq!(end.describe(), *text, "{end:?}");
        }
    }

    #[test]
    fn when_a_replacement_starts() {
        let ms = Duration::from_millis;
        let crash = End::Killed(libc::SIGSEGV);
        // (end, held a task, lived, fast failures before) -> (delay, fast failures after)
        let table: &[(End, bool, Duration, u32, Duration, u32)] = &[
            (End::Exited(0), false, ms(10), 3, ms(0), 0),
            (End::Exited(0), false, ms(60_000), 0, ms(0), 0),
            (crash, false, ms(10), 0, ms(500), 1),
            (End::Exited(1), false, ms(1999), 1, ms(1000), 2),
            (crash, false, ms(10), 5, ms(16_000), 6),
            (crash, false, ms(10), 6, MAX_DELAY, 7),
            (crash, false, ms(10), 40, MAX_DELAY, 41),
            (crash, false, ms(10), u32::MAX, MAX_DELAY, u32::MAX),
            // Lived long enough, or killed by its task: replaced at once, the count cleared.
            (crash, false, ms(2000), 4, ms(0), 0),
            (crash, true, ms(10), 4, ms(0), 0),
        ];
        for (end, held, lived, before, delay, after) in table {
            assert_eq!(
                restart_delay(*end, *held, *lived, *before),
                (*delay, *after),
                "{end:?} {held} {lived:?} {before}"
            );
        }
    }
}
