//! Concurrency limits decided on plain data: which permits a task needs and in what order, which
//! permits a worker child keeps between tasks, and what it does with a task whose permit is taken
//! by others (wait in place, or hold the task back). Pure; the permits themselves are
//! `broker::permit`, their waiting lines `broker::permit_line`, the worker child's side
//! `worker::limited`.
//!
//! A topic-wide limit that binds stops every task of the topic: nothing else could run in its place,
//! so the child waits with the task in hand (the task keeps its place), in the limit's waiting line:
//! a keeper that held the permit for [`KEEP_MAX`] hands it over to one of those waiting
//! ([`hand_over`]) and stands aside for [`STAND_ASIDE`]. A limit of a task name or of
//! a key stops only its own tasks: the task is held back (published again a moment later, see
//! `worker::held`) and the child goes on with the next, of another name or key.

use std::time::Duration;

use super::limits::Applied;

/// A permit a task needs: one of `slots` slots of `counter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub counter: String,
    pub slots: u32,
    /// The limit covers the whole topic.
    pub topic_wide: bool,
    /// A topic or task-name permit, kept across consecutive tasks that need it; a key permit is
    /// released after its task.
    pub kept: bool,
}

/// The counter of a topic-wide limit (`flow::limits::LimitSet::for_task`).
const TOPIC_COUNTER: &str = "t";

/// The permits a task needs, narrow scopes first (keys, then names, the topic last): a task held
/// back for its key or name decides so before it waits for the topic's permit, and the topic's
/// permit, once it is there, is used at once.
pub fn needs(applied: &[Applied]) -> Vec<Need> {
    let mut needs: Vec<Need> = applied
        .iter()
        .filter_map(|a| {
            let slots = a.concurrency?;
            let topic_wide = a.key.is_none() && a.counter == TOPIC_COUNTER;
            Some(Need { counter: a.counter.clone(), slots, topic_wide, kept: a.key.is_none() })
        })
        .collect();
    needs.sort_by_key(|n| (n.topic_wide, n.kept));
    needs
}

/// What a child does with a task whose permit is held by others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Wait this long with the task in hand, then try again (a topic-wide limit).
    WaitInPlace(Duration),
    /// Publish the task again to come back after this long, and go on with the next.
    HoldBack(Duration),
}

/// The first wait in place; each refusal doubles it up to [`WAIT_MAX`].
pub const WAIT_FIRST: Duration = Duration::from_millis(20);
pub const WAIT_MAX: Duration = Duration::from_millis(200);
/// How long a held-back task stays away (the shortest delay the delay exchange has).
pub const HOLD_BACK: Duration = Duration::from_secs(1);

/// What to do after `tries` refusals in a row for this task's permit of a `topic_wide` limit or not.
pub fn when_refused(topic_wide: bool, tries: u32) -> Refused {
    if !topic_wide {
        return Refused::HoldBack(HOLD_BACK);
    }
    let wait = WAIT_FIRST.saturating_mul(1u32 << tries.min(8));
    Refused::WaitInPlace(wait.min(WAIT_MAX))
}

/// A kept permit is given back once its child has had nothing to run for this long...
pub const KEEP_IDLE: Duration = Duration::from_millis(100);
/// ... or, after a task once held this long, when children wait in place for it (a topic's permit:
/// `broker::permit_line`; a name's permit, which nobody waits for in place, goes back anyway, so
/// that tasks held back for it get their turn when they come back).
pub const KEEP_MAX: Duration = Duration::from_secs(1);
/// A child that handed its permit over to a waiting one waits in place at least this long before it
/// asks for one again (unless woken): the woken child asks at once.
pub const STAND_ASIDE: Duration = Duration::from_millis(100);

/// Why a kept permit is to go back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveBack {
    /// The next task does not need it.
    Unneeded,
    /// Its child has had nothing to run for [`KEEP_IDLE`].
    Idle,
    /// Held for [`KEEP_MAX`]: back if others wait for it ([`hand_over`]).
    HeldLong,
}

/// Whether a kept permit goes back, and why: the next task does not need it (`needed` false), its
/// child has been idle for `idle` (`None`: busy), or it was held for `held`.
pub fn give_back_kept(needed: bool, idle: Option<Duration>, held: Duration) -> Option<GiveBack> {
    if !needed {
        Some(GiveBack::Unneeded)
    } else if idle.is_some_and(|i| i >= KEEP_IDLE) {
        Some(GiveBack::Idle)
    } else if held >= KEEP_MAX {
        Some(GiveBack::HeldLong)
    } else {
        None
    }
}

/// Whether a permit held long goes to the children waiting in place for it: `waiting` is their number
/// on its waiting line (`None`: a name's permit, which has none; `Some(Err)`: not known). Kept when
/// the line is known empty; handed over when someone waits or the line could not be asked (as it was
/// before there were lines: given back, so a child that asks gets a chance).
pub fn hand_over(waiting: Option<Result<u32, ()>>) -> bool {
    !matches!(waiting, Some(Ok(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::key::Key;

    fn applied(counter: &str, key: Option<&str>, concurrency: Option<u32>) -> Applied {
        Applied {
            counter: counter.into(),
            limit: counter.into(),
            key: key.map(|k| Key(k.into())),
            rate: None,
            concurrency,
        }
    }

    #[test]
    fn permits_needed_narrow_scopes_first() {
        let set = [
            applied("t", None, Some(2)),
            applied("n.send", None, Some(3)),
            applied("k.0a1b2c3d.c:7", Some("c:7"), Some(1)),
            applied("n.rated", None, None),
        ];
        let got: Vec<(String, u32, bool, bool)> =
            needs(&set).into_iter().map(|n| (n.counter, n.slots, n.topic_wide, n.kept)).collect();
        let want = [("k.0a1b2c3d.c:7", 1, false, false), ("n.send", 3, false, true), ("t", 2, true, true)];
        assert_eq!(got, want.map(|(c, s, t, k)| (c.to_string(), s, t, k)));
        assert_eq!(needs(&[applied("n.rated", None, None)]), [], "a rate alone needs no permit");
        assert_eq!(needs(&[]), []);
    }

    #[test]
    fn a_topic_limit_waits_in_place_others_hold_back() {
        let ms = Duration::from_millis;
        let table = [
            (true, 0, Refused::WaitInPlace(ms(20))),
            (true, 1, Refused::WaitInPlace(ms(40))),
            (true, 3, Refused::WaitInPlace(ms(160))),
            (true, 4, Refused::WaitInPlace(WAIT_MAX)),
            (true, 1000, Refused::WaitInPlace(WAIT_MAX)),
            (false, 0, Refused::HoldBack(HOLD_BACK)),
            (false, 7, Refused::HoldBack(HOLD_BACK)),
        ];
        for (topic_wide, tries, want) in table {
            assert_eq!(when_refused(topic_wide, tries), want, "{topic_wide} {tries}");
        }
    }

    #[test]
    fn kept_permits_go_back_when_unneeded_idle_or_long_held() {
        let ms = Duration::from_millis;
        use GiveBack::*;
        let table = [
            (true, None, ms(10), None),
            (true, Some(ms(50)), ms(10), None),
            (true, Some(KEEP_IDLE), ms(10), Some(Idle)),
            (false, None, ms(10), Some(Unneeded)),
            (false, Some(KEEP_IDLE), KEEP_MAX, Some(Unneeded)),
            (true, Some(KEEP_IDLE), KEEP_MAX, Some(Idle)),
            (true, None, KEEP_MAX, Some(HeldLong)),
            (true, None, ms(999), None),
        ];
        for (needed, idle, held, want) in table {
            assert_eq!(give_back_kept(needed, idle, held), want, "{needed} {idle:?} {held:?}");
        }
    }

    #[test]
    fn a_permit_held_long_goes_to_those_waiting_for_it() {
        let table =
            [(Some(Ok(0)), false), (Some(Ok(1)), true), (Some(Ok(3)), true), (Some(Err(())), true), (None, true)];
        for (waiting, want) in table {
            assert_eq!(hand_over(waiting), want, "{waiting:?}");
        }
    }
}
