//! A worker child's acks: tasks done are acked together with one `basic.ack multiple` (every
//! delivery tag up to the last one), after `batch` tasks (a quarter of the prefetch, 16 to 64), or at
//! the end of the next task once the first ended 20 ms ago ([`ack_batch`]), whenever the worker would
//! wait for the next task, and before the channel closes. At prefetch 1 every task is acked at once.
//!
//! Before a batch is acked, the group ends of its tasks are appended to the groups stream as one
//! record and confirmed, then the unique keys of those of them that wait for it are released
//! (`src/group/mod.rs`: an acked member's end is on the stream). A stream's confirm takes longer than
//! a batch of short tasks takes to fill (a millisecond or more while the broker is busy), and a worker
//! that waited for each would leave the broker nothing to deliver once the prefetch is taken by tasks
//! waiting for it. So no batch waits for its own confirm: a full batch's record is handed over and the
//! worker goes on ([`Acks::pass`]: the answers already in are taken by a read that does not block,
//! several records in flight, at most [`MAX_APPENDING`]); when the worker would wait for a task, only
//! the oldest record is awaited ([`Acks::idle`]: its batch acked frees its part of the prefetch, so the
//! broker delivers again while the later records are answered, and the consume loop comes back within
//! a millisecond for them). Batches are acked oldest first, once every record up to theirs is
//! confirmed ([`ackable`]): `basic.ack multiple` acks every tag before its own. Before the channel
//! closes (a stop, recycling, the prefetch adapted, an `exit()`), every answer is awaited
//! ([`Acks::flush`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::ack_batch;
use crate::broker::confirm::{Failed, Sent};
use crate::broker::group_stream;
use crate::broker::session::closed_unanswered;
use crate::broker::subscription::Subscription;
use crate::config::Settings;
use crate::dispatch;
use crate::group::state::Record;
use crate::log;
use crate::wire::{now, TaskMsg};

/// Batches appended whose confirms are not all taken, at most: one more waits for the oldest.
pub const MAX_APPENDING: usize = 8;

/// Tasks done but not yet acked (see the module's doc).
#[derive(Default)]
pub struct Acks {
    last: Option<u64>,
    count: usize,
    /// When the first of the tasks done since the last batch was appended ended.
    first_at: Option<Instant>,
    pub batch: usize,
    /// What ended for good since the last batch was appended.
    pub ending: Ending,
    /// The batches appended and not acked yet, oldest first.
    appending: VecDeque<Appending>,
}

/// Tasks that ended for good since the last batch: the group ends to append before their acks, and
/// the members with a unique key, released once their end is confirmed.
#[derive(Default)]
pub struct Ending {
    pub ends: Vec<Record>,
    pub releases: Vec<TaskMsg>,
}

/// A batch of done tasks whose group ends are appended: its last delivery tag, its size, its record
/// (the message's id; `None`: it had no end and never touches the session to be acked) and what
/// became of it, and its members with a unique key to release.
struct Appending {
    last: u64,
    count: usize,
    record: Option<String>,
    answer: Answer,
    releases: Vec<TaskMsg>,
}

/// How [`Acks::settle`] takes the answers to the records on their way: awaits them all, awaits the
/// oldest and takes the others already in, takes those already in, or does not look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Look {
    Wait,
    Oldest,
    Ready,
    No,
}

/// What became of a batch's record of ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Waiting,
    Confirmed,
    Failed,
}

/// Of the batches appended, oldest first, with their answers: how many at the front may be acked now
/// (all confirmed), and whether the one just after them failed (it, and everything after it, is
/// never acked: those tasks run again).
fn ackable(answers: impl IntoIterator<Item = Answer>) -> (usize, bool) {
    let mut n = 0;
    for answer in answers {
        match answer {
            Answer::Confirmed => n += 1,
            Answer::Failed => return (n, true),
            Answer::Waiting => break,
        }
    }
    (n, false)
}

impl Acks {
    pub fn for_prefetch(prefetch: u16) -> Acks {
        Acks { batch: ack_batch::size(prefetch), ..Acks::default() }
    }

    pub fn done(&mut self, tag: u64) {
        self.last = Some(tag);
        self.count += 1;
        self.first_at.get_or_insert_with(Instant::now);
    }

    /// The batch is to be acked now: full, or its first task ended a while ago ([`ack_batch::full`]).
    pub fn full(&self) -> bool {
        let oldest = self.first_at.map_or(Duration::ZERO, |t| t.elapsed());
        ack_batch::full(self.count, self.batch, oldest)
    }

    /// Whether records of ends were handed over and not all answered (a subscription lost meanwhile
    /// leaves them to be settled before the new one acks anything).
    pub fn ends_in_flight(&self) -> bool {
        self.appending.iter().any(|a| a.answer == Answer::Waiting)
    }

    /// Acks everything done, once the group ends of it are appended and confirmed; false (logged)
    /// when a record was refused or unanswered, or the ack failed: those tasks are not acked and will
    /// run again (the caller opens the subscription anew), and a second end of theirs counts for
    /// nothing.
    pub fn flush(&mut self, settings: &Settings, sub: &mut Subscription) -> bool {
        self.append(settings) && self.settle(settings, sub, Look::Wait)
    }

    /// The worker would wait for a task: what is done is appended, the oldest record on its way is
    /// awaited (its batch acked frees its part of the prefetch, so the broker delivers again while the
    /// later records are answered) and the batches confirmed by then are acked; false as [`Acks::flush`].
    /// The consume loop comes back soon while records are on their way ([`Acks::ends_in_flight`]).
    pub fn idle(&mut self, settings: &Settings, sub: &mut Subscription) -> bool {
        self.append(settings) && self.settle(settings, sub, Look::Oldest)
    }

    /// A full batch while tasks keep coming: the batches whose records are confirmed by now are acked
    /// (a read that does not block; the oldest record awaited when [`MAX_APPENDING`] batches wait),
    /// then this batch's ends are appended without waiting (a batch without ends is acked at once
    /// when every batch before it is).
    pub fn pass(&mut self, settings: &Settings, sub: &mut Subscription) -> bool {
        let look = if self.appending.len() >= MAX_APPENDING { Look::Oldest } else { Look::Ready };
        self.settle(settings, sub, look) && self.append(settings) && self.settle(settings, sub, Look::No)
    }

    /// Appends the ends of the tasks done since the last call (one record, not awaited) as a new
    /// batch; false (logged) when the record could not be handed over (the tasks are not acked).
    fn append(&mut self, settings: &Settings) -> bool {
        let Some(last) = self.last.take() else { return true };
        let count = std::mem::take(&mut self.count);
        self.first_at = None;
        let ending = std::mem::take(&mut self.ending);
        let ends = ending.ends.len();
        let record = match group_stream::append_before_acks(settings, ending.ends) {
            Ok(record) => record,
            Err(e) => {
                log::error(&format!(
                    "{ends} group end(s) not appended ({:?}: {e}): {count} task(s) not acked; they will be delivered again",
                    e.kind()
                ));
                return false;
            }
        };
        let answer = if record.is_some() { Answer::Waiting } else { Answer::Confirmed };
        self.appending.push_back(Appending { last, count, record, answer, releases: ending.releases });
        true
    }

    /// Takes the answers to the records appended (as `look` says), then releases the unique keys of
    /// the batches whose ends are confirmed, oldest first, and acks them; false (logged) when a record
    /// was refused or unanswered, or the ack failed.
    fn settle(&mut self, settings: &Settings, sub: &mut Subscription, look: Look) -> bool {
        if look != Look::No && self.ends_in_flight() {
            if let Err(why) = self.take_answers(settings, look) {
                log::error(&format!("{why}: {} task(s) not acked; they will be delivered again", self.unacked()));
                return false;
            }
        }
        let (n, failed) = ackable(self.appending.iter().map(|a| a.answer));
        let mut last = None;
        for a in self.appending.drain(..n) {
            for task in &a.releases {
                release_key(settings, task);
            }
            last = Some(a.last);
        }
        if failed {
            log::error(&format!(
                "group ends not confirmed: {} task(s) not acked; they will be delivered again",
                self.unacked()
            ));
        }
        let acked = match last {
            None => true,
            // Not waiting for the I/O thread to write the ack saves a thread hand-off per ack.
            Some(tag) => match sub.ack_up_to_queued(tag) {
                Ok(()) => true,
                Err(e) => {
                    log::error(&format!("ack of tasks up to tag {tag} failed ({e}); they will be delivered again"));
                    false
                }
            },
        };
        acked && !failed
    }

    /// Tasks of the batches appended and not acked.
    fn unacked(&self) -> usize {
        self.appending.iter().map(|a| a.count).sum()
    }

    /// Marks the batches whose records were answered, as `look` says: every record handed over, waited
    /// for; the oldest waited for and the others already in; or those already in. `Err` says why, with
    /// its kind, when a record could not be waited for (a failure to wait fails them all).
    fn take_answers(&mut self, settings: &Settings, look: Look) -> Result<(), String> {
        match look {
            Look::Wait => return self.await_all(settings),
            Look::Oldest => self.await_oldest(settings)?,
            Look::Ready | Look::No => {}
        }
        let (confirmed, failures) = dispatch::settle_ready_before_acks(settings)
            .map_err(|e| format!("group ends not looked for ({:?}: {e})", e.kind()))?;
        log_failures(&failures);
        self.mark(&confirmed, &failures);
        Ok(())
    }

    /// Awaits every record on its way and marks each confirmed or failed.
    fn await_all(&mut self, settings: &Settings) -> Result<(), String> {
        let waiting = self.appending.iter().filter(|a| a.answer == Answer::Waiting).count();
        let (confirmed, failures) = dispatch::settle_before_acks(settings)
            .map_err(|e| format!("group ends not awaited ({:?}: {e})", e.kind()))?;
        if confirmed + failures.len() < waiting {
            // The session holds fewer of them than were handed over (it was closed): none counts.
            let e = closed_unanswered();
            return Err(format!("group ends not awaited ({:?}: {e})", e.kind()));
        }
        log_failures(&failures);
        // Every publish of the lot is settled: what did not fail was confirmed.
        for a in self.appending.iter_mut().filter(|a| a.answer == Answer::Waiting) {
            a.answer = Answer::Confirmed;
        }
        self.mark(&[], &failures);
        Ok(())
    }

    /// Awaits the oldest record on its way (the others wait on) and marks its batch.
    fn await_oldest(&mut self, settings: &Settings) -> Result<(), String> {
        let Some(a) = self.appending.iter_mut().find(|a| a.answer == Answer::Waiting) else { return Ok(()) };
        let Some(id) = a.record.as_deref() else { return Ok(()) };
        let answered = dispatch::settle_one_before_acks(settings, id)
            .map_err(|e| format!("group ends not awaited ({:?}: {e})", e.kind()))?;
        a.answer = match answered {
            (1, _) => Answer::Confirmed,
            (_, failures) if !failures.is_empty() => {
                log_failures(&failures);
                Answer::Failed
            }
            _ => {
                // The session no longer holds it (it was closed): no answer will come.
                log::error(&format!("a group end record got no answer ({})", closed_unanswered()));
                Answer::Failed
            }
        };
        Ok(())
    }

    fn mark(&mut self, confirmed: &[Sent], failures: &[Failed]) {
        let answers =
            confirmed.iter().map(|s| (s, Answer::Confirmed)).chain(failures.iter().map(|f| (&f.sent, Answer::Failed)));
        for (sent, answer) in answers {
            if let Some(a) = self.appending.iter_mut().find(|a| a.record.is_some() && a.record == sent.id) {
                a.answer = answer;
            }
        }
    }
}

/// Logs the records of ends that failed, once for all of them, with the first one's kind.
fn log_failures(failures: &[Failed]) {
    if let Some(f) = failures.first() {
        log::error(&format!(
            "{} group end record(s) not confirmed ({:?}: {}: {})",
            failures.len(),
            f.error.kind(),
            f.sent.describe(),
            f.error
        ));
    }
}

/// Releases the unique key of a task that ended for good, unless the key is at the end of its
/// lifetime. A key that cannot be released is logged and frees itself after its lifetime: the task is
/// not run again for it.
pub fn release_key(settings: &Settings, task: &TaskMsg) {
    let Some(key) = &task.unique else { return };
    if !crate::flow::unique::releases(key, now()) {
        // At (or past) its lifetime: it frees itself, and may be another task's already.
        return;
    }
    match crate::broker::unique::release(settings, &task.topic, key, &task.id) {
        Ok(released) => {
            if settings.debug {
                let how = if released { "released" } else { "no longer held by it" };
                log::debug(&format!(
                    "task {}/{} id={}: unique key '{}' {how}",
                    task.topic, task.name, task.id, key.key
                ));
            }
        }
        Err(e) => log::error(&format!(
            "task {}/{} id={}: could not release its unique key '{}': {e}; it frees itself after its lifetime ({} s)",
            task.topic, task.name, task.id, key.key, key.for_secs
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::Answer::{Confirmed as C, Failed as F, Waiting as W};
    use super::*;

    #[test]
    fn batches_are_acked_oldest_first_up_to_the_first_not_confirmed() {
        let table: [(&[Answer], (usize, bool)); 9] = [
            (&[], (0, false)),
            (&[C], (1, false)),
            (&[W], (0, false)),
            (&[F], (0, true)),
            (&[C, C, W], (2, false)),
            (&[W, C, C], (0, false)),
            (&[C, F, C], (1, true)),
            (&[C, W, F], (1, false)),
            (&[C, C, C], (3, false)),
        ];
        for (answers, expected) in table {
            assert_eq!(ackable(answers.iter().copied()), expected, "{answers:?}");
        }
    }
}
