//! When a worker child leaves after a task, to be replaced by a fresh one.

use super::child::Limits;

/// Why the child leaves after its `done`-th task, if it does: its max requests reached, its resident
/// memory (`resident_mb`, read only when a memory limit is set) over the limit, or its control
/// group's memory near its limit (`cgroup`: leave now rather than be OOM-killed mid-task).
pub fn reason(
    limits: &Limits,
    done: u64,
    resident_mb: impl FnOnce() -> f64,
    cgroup: impl FnOnce() -> Option<String>,
) -> Option<String> {
    if limits.max_requests > 0 && done >= limits.max_requests {
        return Some(format!("{done} tasks done (max requests)"));
    }
    if limits.memory_limit_mb > 0 {
        let rss = resident_mb();
        if rss > limits.memory_limit_mb as f64 {
            return Some(format!("resident memory {rss:.1} MB is over {} MB", limits.memory_limit_mb));
        }
    }
    cgroup()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (max requests, memory limit MB, tasks done, resident MB, group near its limit) -> reason
    type Row = (u64, u64, u64, f64, bool, Option<&'static str>);

    #[test]
    fn when_a_child_leaves() {
        let group = || Some("group near its limit".to_string());
        let table: &[Row] = &[
            (0, 0, 1000, 900.0, false, None),
            (0, 0, 1, 0.0, true, Some("group near its limit")),
            (3, 0, 2, 0.0, false, None),
            (3, 0, 3, 0.0, false, Some("3 tasks done (max requests)")),
            (3, 0, 3, 0.0, true, Some("3 tasks done (max requests)")),
            (0, 64, 1, 64.0, false, None),
            (0, 64, 1, 64.04, false, Some("resident memory 64.0 MB is over 64 MB")),
            (0, 64, 1, 10.0, true, Some("group near its limit")),
            (5, 64, 5, 100.0, true, Some("5 tasks done (max requests)")),
        ];
        for (max_requests, memory_limit_mb, done, rss, near, want) in table {
            let limits = Limits { max_requests: *max_requests, memory_limit_mb: *memory_limit_mb, ..Limits::default() };
            let got = reason(&limits, *done, || *rss, || if *near { group() } else { None });
            assert_eq!(got.as_deref(), *want, "{max_requests} {memory_limit_mb} {done} {rss} {near}");
        }
    }

    #[test]
    fn memory_is_read_only_under_a_limit() {
        let limits = Limits::default();
        assert_eq!(reason(&limits, 1, || panic!("memory read without a limit"), || None), None);
    }
}
