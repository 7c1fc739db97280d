//! What a worker child does with a delivery, decided from plain facts: refuse it (unreadable, or
//! another topic's), run it, count the run its child was killed in at the time limit, publish it
//! again with its child's death counted, or move it to the failed store as poison.

use std::fmt;

use super::shared::GivenBack;
use crate::config::QueueType;
use crate::wire::TaskMsg;

/// Why a delivery is not run but kept in the failed store as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The body cannot be read as a task (the reason says why).
    Unreadable(String),
    /// The body names another topic: only the queue decides what a worker runs, never the body.
    OtherTopic { named: String, ours: String },
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Unreadable(reason) => f.write_str(reason),
            Refused::OtherTopic { named, ours } => {
                write!(f, "task body names the topic '{named}', not this worker's topic '{ours}'")
            }
        }
    }
}

/// The task a body was read as, when this worker (of `topic`) may run it.
pub fn accept(read: Result<TaskMsg, String>, topic: &str) -> Result<TaskMsg, Refused> {
    match read {
        Ok(t) if t.topic == topic => Ok(t),
        Ok(t) => Err(Refused::OtherTopic { named: t.topic, ours: topic.to_string() }),
        Err(reason) => Err(Refused::Unreadable(reason)),
    }
}

/// What is known of a readable delivery before it runs.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    pub queue_type: QueueType,
    /// Why the parent saw it given back (its child timed out or died holding it), when redelivered. On
    /// a quorum queue `Crashed` means this parent saw it kill one of its processes, at any delivery before.
    pub given_back: Option<GivenBack>,
    /// Deaths counted in the task's body.
    pub redeliveries: u32,
    /// Deliveries the broker counted without an ack (`x-delivery-count`, quorum queues).
    pub delivery_count: u32,
    /// Deaths after which a task is poison.
    pub max_redeliveries: u32,
}

/// Who counted a poison task's deaths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountedBy {
    /// The broker, over every worker of the cluster (quorum queues).
    Broker,
    /// The workers, in the task's body (classic queues).
    Workers,
}

impl CountedBy {
    /// Why a task that died `deaths` times is failed.
    pub fn message(self, deaths: u32) -> String {
        match self {
            CountedBy::Broker => format!(
                "delivered {deaths} times without being acked: the worker processes running it died (fatal \
                 error, exit(), signal, out of memory) or lost their connection"
            ),
            CountedBy::Workers => format!(
                "its worker process died running it {deaths} times (fatal error, exit(), signal or out of memory)"
            ),
        }
    }
}

/// What to do with a readable delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run it.
    Run,
    /// Its child was killed at the time limit: that run counts as a failed attempt.
    CountTimedOut,
    /// Its child died running it: publish it again carrying `redeliveries` deaths, to run in turn.
    GiveBackCounted { redeliveries: u32 },
    /// It killed the processes running it `deaths` times: move it to the failed store.
    Poison { deaths: u32, counted_by: CountedBy },
}

/// With quorum queues the broker's count of deaths replaces the workers' own (except for a run
/// stopped at the time limit, which the parent marked and which is no death).
///
/// The broker counts every return of a delivery, and not only deaths: a process that dies running one
/// task returns the tasks it had taken ahead too, unstarted, and a lost connection returns what it held.
/// At the bound, only a task this worker parent saw kill one of its processes is poison; any other runs
/// once more. A task that is poison dies then, seen, and its next delivery is failed: the count costs
/// it at most one run more in each worker parent that had not seen it die, and a task that never
/// killed anything is never failed for what the tasks beside it did.
pub fn decide(f: &Facts) -> Action {
    let timed_out = f.given_back == Some(GivenBack::TimedOut);
    if f.queue_type == QueueType::Quorum && !timed_out {
        let deaths = f.redeliveries.saturating_add(f.delivery_count);
        if deaths >= f.max_redeliveries && f.given_back == Some(GivenBack::Crashed) {
            return Action::Poison { deaths, counted_by: CountedBy::Broker };
        }
    }
    let counted_here = f.queue_type == QueueType::Classic || timed_out;
    match f.given_back.filter(|_| counted_here) {
        Some(GivenBack::TimedOut) => Action::CountTimedOut,
        Some(GivenBack::Crashed) => {
            let redeliveries = f.redeliveries.saturating_add(1);
            if redeliveries >= f.max_redeliveries {
                Action::Poison { deaths: redeliveries, counted_by: CountedBy::Workers }
            } else {
                Action::GiveBackCounted { redeliveries }
            }
        }
        // Given back for another reason (a child stopped holding it, a lost connection), or not at all.
        None => Action::Run,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QueueType::{Classic, Quorum};
    use GivenBack::{Crashed, TimedOut};

    #[test]
    fn a_body_is_run_only_under_this_workers_topic() {
        let ours = TaskMsg::new("mail", "send", serde_json::json!({}), 0);
        let theirs = TaskMsg::new("sms", "send", serde_json::json!({}), 0);
        assert_eq!(accept(Ok(ours), "mail").map(|t| t.topic), Ok("mail".to_string()));
        let refused = accept(Ok(theirs), "mail").unwrap_err();
        assert_eq!(refused, Refused::OtherTopic { named: "sms".into(), ours: "mail".into() });
        assert_eq!(refused.to_string(), "task body names the topic 'sms', not this worker's topic 'mail'");
        let unreadable = accept(Err("not JSON".into()), "mail").unwrap_err();
        assert_eq!(unreadable, Refused::Unreadable("not JSON".into()));
        assert_eq!(unreadable.to_string(), "not JSON");
    }

    #[test]
    fn what_is_done_with_a_delivery() {
        let poison = |deaths, counted_by| Action::Poison { deaths, counted_by };
        let again = |redeliveries| Action::GiveBackCounted { redeliveries };
        // (queue type, given back, deaths in the body, broker's count, limit) -> action
        let f = |queue_type, given_back, redeliveries, delivery_count, max_redeliveries| Facts {
            queue_type,
            given_back,
            redeliveries,
            delivery_count,
            max_redeliveries,
        };
        let table: &[(Facts, Action)] = &[
            (f(Classic, None, 0, 0, 5), Action::Run),
            (f(Classic, None, 4, 0, 5), Action::Run),
            (f(Classic, Some(TimedOut), 0, 0, 5), Action::CountTimedOut),
            (f(Classic, Some(TimedOut), 9, 0, 5), Action::CountTimedOut),
            (f(Classic, Some(Crashed), 0, 0, 5), again(1)),
            (f(Classic, Some(Crashed), 3, 0, 5), again(4)),
            (f(Classic, Some(Crashed), 4, 0, 5), poison(5, CountedBy::Workers)),
            (f(Classic, Some(Crashed), 0, 0, 1), poison(1, CountedBy::Workers)),
            (f(Classic, Some(Crashed), u32::MAX, 0, 5), poison(u32::MAX, CountedBy::Workers)),
            // The broker's count is not read for classic queues.
            (f(Classic, None, 0, 9, 5), Action::Run),
            (f(Quorum, None, 0, 0, 5), Action::Run),
            (f(Quorum, None, 0, 4, 5), Action::Run),
            // At the bound, a task this parent never saw kill a process runs: it may have been returned
            // unstarted beside one that did, or with a lost connection.
            (f(Quorum, None, 0, 5, 5), Action::Run),
            (f(Quorum, None, 2, 3, 5), Action::Run),
            (f(Quorum, None, u32::MAX, 1, 5), Action::Run),
            // A crash seen by the parent is counted by the broker already: the task runs, up to the bound.
            (f(Quorum, Some(Crashed), 0, 1, 5), Action::Run),
            (f(Quorum, Some(Crashed), 0, 4, 5), Action::Run),
            (f(Quorum, Some(Crashed), 0, 5, 5), poison(5, CountedBy::Broker)),
            (f(Quorum, Some(Crashed), 2, 3, 5), poison(5, CountedBy::Broker)),
            (f(Quorum, Some(Crashed), 0, 9, 5), poison(9, CountedBy::Broker)),
            (f(Quorum, Some(Crashed), u32::MAX, 1, 5), poison(u32::MAX, CountedBy::Broker)),
            // A run stopped at its time limit is no death: counted as a failed attempt, whatever the count.
            (f(Quorum, Some(TimedOut), 0, 7, 5), Action::CountTimedOut),
        ];
        for (facts, want) in table {
            assert_eq!(decide(facts), *want, "{facts:?}");
        }
    }

    #[test]
    fn poison_messages_say_who_counted() {
        assert!(CountedBy::Broker.message(5).starts_with("delivered 5 times without being acked"));
        assert!(CountedBy::Workers.message(3).starts_with("its worker process died running it 3 times"));
    }
}
