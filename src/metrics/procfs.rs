//! CPU seconds and resident memory of a process, from /proc, read at scrape time.

/// utime + stime in clock ticks, from the text of /proc/<pid>/stat.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Resident pages, from the text of /proc/<pid>/statm.
pub fn parse_statm_pages(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds (user + system) used by `pid` so far.
pub fn cpu_seconds(pid: i32) -> Option<f64> {
    let ticks = parse_stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    Some(ticks as f64 / hz as f64)
}

/// Resident memory of `pid` in bytes.
pub fn resident_bytes(pid: i32) -> Option<u64> {
    let pages = parse_statm_pages(&std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?)?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1);
    Some(pages * page as u64)
}

/// This machine's host name (empty when unknown).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields() {
        let stat = "1234 (php (worker) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 1 0 99 1000 200";
        assert_eq!(parse_stat_ticks(stat), Some(287));
        assert_eq!(parse_stat_ticks("garbage"), None);
        assert_eq!(parse_statm_pages("5000 1200 300 1 0 900 0"), Some(1200));
        assert_eq!(parse_statm_pages(""), None);
    }

    #[test]
    fn this_process() {
        let me = std::process::id() as i32;
        assert!(cpu_seconds(me).is_some());
        assert!(resident_bytes(me).unwrap() > 1_000_000);
        assert_eq!(resident_bytes(-5), None);
    }
}
