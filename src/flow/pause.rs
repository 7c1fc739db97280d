//! Paused topics: whether a worker may start a task of its topic now, from what its watcher folded
//! of the stream `<prefix>.flow` (the records and their fold: `flow::record`). Pure.

/// Whether a worker of `topic` may start a task now, from what its watcher knows (`None`: the
/// stream not read to now yet, so a pause could be missed: not yet).
pub fn may_start(known: Option<bool>) -> bool {
    known == Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_starts_only_when_known_running() {
        assert!(may_start(Some(false)));
        assert!(!may_start(Some(true)));
        assert!(!may_start(None));
    }
}
