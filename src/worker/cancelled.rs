//! A worker child and cancelled tasks. The cancels come from the flow stream, folded by the
//! child's watcher (`broker::flow_stream::Watch`), complete before the child starts any task: a
//! task cancelled before it starts is acked unstarted (`worker::child`), one cancelled while it runs
//! is only told, through `Task::isCancelled()` ([`current`]): the child is not signalled, the handler
//! decides where it can stop cleanly.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::flow::cancel::{Cancels, Keys};
use crate::wire::TaskMsg;

/// The ids a task is known by, owned (for the task the handler runs).
struct Ids {
    id: String,
    group: Option<String>,
    chain: Option<String>,
}

impl Ids {
    fn of(task: &TaskMsg) -> Ids {
        Ids { id: task.id.clone(), group: task.group.clone(), chain: task.chain.as_ref().map(|c| c.at.id.clone()) }
    }

    fn keys(&self) -> Keys<'_> {
        Keys { id: &self.id, group: self.group.as_deref(), chain: self.chain.as_deref() }
    }
}

/// The task the handler runs now and the cancels it is checked against.
static CURRENT: Mutex<Option<(Arc<Mutex<Cancels>>, Ids)>> = Mutex::new(None);

/// The cancels a child knows (kept up to date by its watcher).
pub struct Cancelled {
    cancels: Arc<Mutex<Cancels>>,
}

impl Cancelled {
    pub fn new(cancels: Arc<Mutex<Cancels>>) -> Cancelled {
        Cancelled { cancels }
    }

    /// Whether `task` is cancelled now (by its id, its group or its chain). Borrows the task's ids:
    /// asked before every task, it allocates nothing.
    pub fn of(&self, task: &TaskMsg) -> bool {
        let keys =
            Keys { id: &task.id, group: task.group.as_deref(), chain: task.chain.as_ref().map(|c| c.at.id.as_str()) };
        self.cancels.lock().is_cancelled(keys, crate::wire::now_ms())
    }

    /// The handler starts running `task`: [`current`] answers for it until [`Cancelled::ended`].
    pub fn running(&self, task: &TaskMsg) {
        *CURRENT.lock() = Some((self.cancels.clone(), Ids::of(task)));
    }

    /// The handler returned.
    pub fn ended(&self) {
        *CURRENT.lock() = None;
    }
}

/// Whether the task the handler runs now has been cancelled meanwhile (or before); `None` when no
/// handler runs in this process.
pub fn current() -> Option<bool> {
    let current = CURRENT.lock();
    let (cancels, ids) = current.as_ref()?;
    let cancelled = cancels.lock().is_cancelled(ids.keys(), crate::wire::now_ms());
    Some(cancelled)
}
