//! A worker beside the original library's queues: its ready queue of a topic consumed while it
//! holds tasks, and a task body in the original library's format read as an ebats task, with the
//! attempt count its retry counter file kept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::broker::names::Names;
use crate::broker::subscription::Subscription;
use crate::config::Settings;
use crate::log;
use crate::wire::TaskMsg;

/// How often a worker consuming the original library's ready queue looks whether it is empty.
pub const LOOK_EVERY: Duration = Duration::from_secs(2);

/// Consumes the original library's ready queue of `topic` (`P.TR`) beside this worker's own while
/// it holds tasks, and stops once it is empty (the tasks it sent are still run and acked). It no
/// longer gets new tasks: declaring the topic unbound it (see `broker::legacy_topology`); one given
/// back later (a worker died holding it) is taken when it is looked at again. Returns whether the
/// queue exists.
pub fn look_at_ready(settings: &Settings, names: &Names, topic: &str, sub: &mut Subscription) -> bool {
    let queue = names.legacy_ready_queue(topic);
    let consuming = sub.also_queue().is_some();
    match crate::broker::current::with_session(|s| s.queue_counts(settings, &queue)) {
        Ok((0, _)) if consuming => {
            sub.cancel_also();
            log::info(&format!("the original library's queue '{queue}' is empty: no longer consumed"));
            true
        }
        Ok((n, _)) if n > 0 && !consuming => {
            match sub.consume_also(&queue, &format!("ebats-worker-{}-legacy", std::process::id())) {
                Ok(()) => log::info(&format!(
                    "worker consuming the original library's queue '{queue}' ({n} task(s) waiting) until it is empty"
                )),
                Err(e) => log::error(&format!("cannot consume the original library's queue '{queue}': {e}")),
            }
            true
        }
        Ok(_) => true,
        Err(e) if e.kind() == crate::broker::ErrorKind::NotFound => false,
        Err(e) => {
            log::error(&format!("cannot look at the original library's queue '{queue}': {e}"));
            true
        }
    }
}

/// A body in the original library's format (see `crate::legacy::body`) as an ebats task, and the
/// original's retry counter file of it when there is one; `None` for any other body. The attempt
/// is the count in `<counters>/<task id>` plus one (the runs it had, then this one); without the
/// file it starts at 1, which the log says once.
pub fn task(body: &[u8], counters: &Path) -> Option<Result<(TaskMsg, Option<PathBuf>), String>> {
    if !crate::legacy::body::looks_legacy(None, body) {
        return None;
    }
    let t = match crate::legacy::body::decode_task(body) {
        Ok(t) => t,
        Err(e) => return Some(Err(format!("task body in the original library's format refused: {e}"))),
    };
    let mut task = TaskMsg::new(&t.topic, &t.name, t.params, t.delay_ms.div_ceil(1000));
    task.id = t.id;
    task.created_at = t.etime as f64;
    // The id is 32 hex digits (checked by the reader): a plain file name.
    let file = counters.join(&task.id);
    let runs = std::fs::read(&file).ok().and_then(|b| counted_runs(&b));
    match runs {
        Some(runs) => {
            task.attempt = runs.saturating_add(1);
            Some(Ok((task, Some(file))))
        }
        None => {
            static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                log::info(&format!(
                    "tasks in the original library's format: the attempt count is read from {}/<task id> on \
                     this host; a task without that file (task {} is the first) starts again at attempt 1",
                    counters.display(),
                    task.id
                ));
            }
            Some(Ok((task, None)))
        }
    }
}

/// The runs an original's counter file records: a whole number, surrounding blanks allowed.
fn counted_runs(content: &[u8]) -> Option<u32> {
    std::str::from_utf8(content).ok()?.trim().parse::<u32>().ok()
}

#[cfg(test)]
mod tests {
    use super::counted_runs;

    #[test]
    fn counter_files_read_as_whole_numbers_only() {
        let table: &[(&[u8], Option<u32>)] = &[
            (b"3", Some(3)),
            (b" 2\n", Some(2)),
            (b"0", Some(0)),
            (b"", None),
            (b"-1", None),
            (b"x", None),
            (b"99999999999", None),
            (b"\xff", None),
        ];
        for (content, runs) in table {
            assert_eq!(counted_runs(content), *runs, "{content:?}");
        }
    }
}
