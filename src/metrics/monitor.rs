//! The worker parent's monitor line: every interval, one log line per child with its CPU % (over
//! the interval), resident memory and tasks done. Run in the parent's own loop, which stays
//! single-threaded: it reads /proc and the shared counters, nothing else.

use std::time::{Duration, Instant};

use super::cpu::CpuWindow;
use super::procfs;
use super::stats::Stats;

/// One child's line.
pub fn line(pid: i32, slot: usize, cpu_percent: Option<f64>, rss_bytes: Option<u64>, done: u64) -> String {
    let cpu = cpu_percent.map_or("-".to_string(), |c| format!("{c:.1}%"));
    let rss = rss_bytes.map_or("-".to_string(), |b| format!("{:.1} MB", b as f64 / 1_048_576.0));
    format!("monitor: child {pid} (slot {slot}) cpu {cpu} rss {rss} tasks {done} done")
}

pub struct Monitor {
    every: Duration,
    next: Instant,
    cpu: CpuWindow,
}

impl Monitor {
    pub fn new(every: Duration) -> Monitor {
        Monitor { every, next: Instant::now() + every, cpu: CpuWindow::default() }
    }

    /// How long until the next lines are due.
    pub fn due_in(&self) -> Duration {
        self.next.saturating_duration_since(Instant::now())
    }

    /// Logs the lines when they are due.
    pub fn tick(&mut self, stats: &Stats) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + self.every;
        let now_ms = crate::wire::now_ms().max(0) as u64;
        let snap = stats.snap();
        for c in &snap.per_child {
            let cpu = procfs::cpu_seconds(c.pid).and_then(|s| self.cpu.percent(c.pid, now_ms, s, c.started_ms));
            crate::log::info(&line(c.pid, c.slot, cpu.map(|p| p.percent), procfs::resident_bytes(c.pid), c.done));
        }
        self.cpu.keep(&snap.per_child.iter().map(|c| c.pid).collect::<Vec<_>>());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(
            line(42, 0, Some(12.345), Some(31_457_280), 7),
            "monitor: child 42 (slot 0) cpu 12.3% rss 30.0 MB tasks 7 done"
        );
        assert_eq!(line(43, 3, None, None, 0), "monitor: child 43 (slot 3) cpu - rss - tasks 0 done");
    }
}
