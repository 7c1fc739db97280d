//! The memory limit of the control group the process runs in (a container's `--memory`, systemd's
//! `MemoryMax=`), so that a worker child can leave between two tasks before the kernel's OOM killer
//! ends one in the middle of a task.
//!
//! cgroup v2 (`memory.max`, `memory.current`) and v1 (`memory.limit_in_bytes`, `memory.usage_in_bytes`)
//! are both read. The figure compared with the limit is the working set, usage less the inactive page
//! cache (`inactive_file`, `total_inactive_file` in v1), as container runtimes count it: page cache is
//! reclaimed by the kernel before it kills anything, so it must not make a process leave.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A child leaves after a task when the group's working set is above this share of its limit.
pub const PRESSURE_PERCENT: u64 = 90;

/// A v1 limit at or above this is the kernel's "no limit" (a page-rounded `i64::MAX`).
const V1_UNLIMITED: u64 = 1 << 60;

/// Which hierarchy the files belong to: their names differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// The limit of a memory limit file's text: `None` for no limit ("max" in v2, a huge number in v1) or
/// text that is not a number.
pub fn parse_limit(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "max" {
        return None;
    }
    t.parse::<u64>().ok().filter(|&n| n > 0 && n < V1_UNLIMITED)
}

/// The value of `key` in the text of a `memory.stat` file (0 when absent).
pub fn stat_value(stat: &str, key: &str) -> u64 {
    stat.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The cgroup paths of a `/proc/self/cgroup` text: the v2 path (`0::/path`) and the v1 memory
/// controller's path (`N:memory:/path`, or `memory` among comma-separated controllers).
pub fn own_paths(proc_cgroup: &str) -> (Option<String>, Option<String>) {
    let (mut v2, mut v1) = (None, None);
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if controllers.is_empty() {
            v2 = Some(path.to_string());
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path.to_string());
        }
    }
    (v2, v1)
}

/// Why a child should leave after its task, given the group's usage, inactive page cache and limit
/// in bytes: when the working set is above `PRESSURE_PERCENT` of the limit.
pub fn pressure_reason(usage: u64, inactive_file: u64, limit: u64) -> Option<String> {
    let working_set = usage.saturating_sub(inactive_file);
    let mb = |b: u64| b as f64 / 1_048_576.0;
    (limit > 0 && working_set as u128 * 100 > limit as u128 * PRESSURE_PERCENT as u128).then(|| {
        format!(
            "the memory in use by its control group ({:.1} MB) is over {PRESSURE_PERCENT}% of the group's limit ({:.1} MB)",
            mb(working_set),
            mb(limit)
        )
    })
}

/// The directory of this process's memory cgroup that has a limit, and its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub dir: PathBuf,
    pub version: Version,
    pub limit: u64,
}

impl Group {
    fn file(&self, v2: &str, v1: &str) -> PathBuf {
        self.dir.join(if self.version == Version::V2 { v2 } else { v1 })
    }

    /// Reads the usage now; `None` when the files cannot be read. `memory.stat`, which the kernel
    /// gathers over every CPU at each read, is read only when the usage alone (which the working
    /// set never exceeds) is over the threshold: after most tasks one small file is read.
    pub fn pressure_reason(&self) -> Option<String> {
        let usage = read_u64(&self.file("memory.current", "memory.usage_in_bytes"))?;
        pressure_reason(usage, 0, self.limit)?;
        let stat = std::fs::read_to_string(self.dir.join("memory.stat")).unwrap_or_default();
        let key = if self.version == Version::V2 { "inactive_file" } else { "total_inactive_file" };
        pressure_reason(usage, stat_value(&stat, key), self.limit)
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The candidate directories under `root` (normally /sys/fs/cgroup) for the paths of
/// `/proc/self/cgroup`, most specific first. Inside a container with a cgroup namespace the group is
/// the mount's root; without one (Docker on cgroup v1) /proc still shows the host's path while the
/// mount shows the container's group, hence the root as a fallback.
pub fn candidates(root: &Path, proc_cgroup: &str) -> Vec<(PathBuf, Version)> {
    let (v2, v1) = own_paths(proc_cgroup);
    let rel = |p: &str| p.trim_start_matches('/').to_string();
    let mut out = Vec::new();
    if let Some(p) = v2 {
        // Hybrid hosts mount the v2 hierarchy at unified/; it holds no memory controller there, and
        // the files are then simply absent.
        out.push((root.join(rel(&p)), Version::V2));
        out.push((root.to_path_buf(), Version::V2));
    }
    if let Some(p) = v1 {
        out.push((root.join("memory").join(rel(&p)), Version::V1));
        out.push((root.join("memory"), Version::V1));
    }
    out
}

/// Finds this process's memory group with a limit, under `root`.
pub fn find(root: &Path, proc_cgroup: &str) -> Option<Group> {
    candidates(root, proc_cgroup).into_iter().find_map(|(dir, version)| {
        let name = if version == Version::V2 { "memory.max" } else { "memory.limit_in_bytes" };
        let limit = parse_limit(&std::fs::read_to_string(dir.join(name)).ok()?)?;
        Some(Group { dir, version, limit })
    })
}

/// This process's memory group with a limit, looked up once (a limit is set when the container or
/// unit starts; the children inherit the answer of the parent that forked them).
pub fn own() -> Option<&'static Group> {
    static GROUP: OnceLock<Option<Group>> = OnceLock::new();
    GROUP
        .get_or_init(|| {
            let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
            find(Path::new("/sys/fs/cgroup"), &proc_cgroup)
        })
        .as_ref()
}

/// Why a worker child should leave after its task because of the group's memory limit, if it should.
pub fn recycle_reason() -> Option<String> {
    own()?.pressure_reason()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        let cases: &[(&str, Option<u64>)] = &[
            ("max\n", None),
            ("536870912\n", Some(536_870_912)),
            ("9223372036854771712\n", None), // v1: no limit
            ("0\n", None),
            ("", None),
            ("lots", None),
            ("  1048576  ", Some(1_048_576)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_limit(text), *want, "{text:?}");
        }
    }

    #[test]
    fn stat_values() {
        let stat = "anon 100\nfile 5000\ninactive_file 4096\ntotal_inactive_file 8192\n";
        assert_eq!(stat_value(stat, "inactive_file"), 4096);
        assert_eq!(stat_value(stat, "total_inactive_file"), 8192);
        assert_eq!(stat_value(stat, "active_file"), 0);
        assert_eq!(stat_value("", "inactive_file"), 0);
    }

    #[test]
    fn paths() {
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            ("0::/\n", Some("/"), None),
            ("0::/system.slice/ebats-worker@demo.service\n", Some("/system.slice/ebats-worker@demo.service"), None),
            ("9:name=systemd:/\n4:memory:/process_api/52\n0::/\n", Some("/"), Some("/process_api/52")),
            ("5:cpu,memory:/docker/abc\n", None, Some("/docker/abc")),
            ("4:memory_x:/no\ngarbage\n", None, None),
            ("", None, None),
        ];
        for (text, v2, v1) in cases {
            let (a, b) = own_paths(text);
            assert_eq!((a.as_deref(), b.as_deref()), (*v2, *v1), "{text:?}");
        }
    }

    #[test]
    fn pressure() {
        const MB: u64 = 1_048_576;
        let cases: &[(u64, u64, u64, bool)] = &[
            (80 * MB, 0, 100 * MB, false),
            (90 * MB, 0, 100 * MB, false), // exactly 90 %: not over
            (91 * MB, 0, 100 * MB, true),
            (99 * MB, 20 * MB, 100 * MB, false), // page cache does not count
            (99 * MB, 200 * MB, 100 * MB, false),
            (u64::MAX, 0, u64::MAX - 1, true), // no overflow
            (10, 0, 0, false),
        ];
        for &(usage, inactive, limit, want) in cases {
            assert_eq!(pressure_reason(usage, inactive, limit).is_some(), want, "{usage} {inactive} {limit}");
        }
        let why = pressure_reason(95 * MB, 0, 100 * MB).unwrap();
        assert!(why.contains("95.0 MB") && why.contains("100.0 MB") && why.contains("90%"), "{why}");
    }

    #[test]
    fn finds_the_group_with_a_limit() {
        let root = std::env::temp_dir().join(format!("ebats-cgroup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let v1 = root.join("memory/process_api/52");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::create_dir_all(root.join("unified")).unwrap();
        std::fs::write(root.join("memory/memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "104857600\n").unwrap();
        std::fs::write(v1.join("memory.usage_in_bytes"), "99614720\n").unwrap(); // 95 MB
        std::fs::write(v1.join("memory.stat"), "total_inactive_file 1048576\n").unwrap();
        let proc_cgroup = "4:memory:/process_api/52\n0::/\n";
        let g = find(&root, proc_cgroup).unwrap();
        assert_eq!((g.dir.clone(), g.version, g.limit), (v1.clone(), Version::V1, 104_857_600));
        assert!(g.pressure_reason().unwrap().contains("94.0 MB"));
        // Half the page cache inactive: 45 MB in use, no pressure.
        std::fs::write(v1.join("memory.stat"), "total_inactive_file 52428800\n").unwrap();
        assert_eq!(g.pressure_reason(), None);

        // A v2 group (a container with its own cgroup namespace: the mount's root).
        std::fs::write(root.join("memory.max"), "max\n").unwrap();
        assert_eq!(find(&root, "0::/\n"), None);
        std::fs::write(root.join("memory.max"), "268435456\n").unwrap();
        assert_eq!(find(&root, "0::/\n").map(|g| (g.version, g.limit)), Some((Version::V2, 268_435_456)));
        // No limit anywhere.
        assert_eq!(find(&root, "4:memory:/elsewhere\n"), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
