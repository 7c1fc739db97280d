//! The leader's part in groups (why a follow-up is published once: `src/group/mod.rs`): on taking the
//! lead it appends a marker to the groups stream on the token's channel and folds the stream up to it,
//! then follows the stream; a group whose members have all ended gets its follow-ups that apply
//! published on the token's channel, confirmed (one with none is done as it is: every fold finds it
//! so), and the fold is snapshotted every minute while it changes (every 90 s anyway). Once something is due, the leader reads on within a short window
//! (`group::window`) so that the groups due by its end are completed in one burst.

use std::time::{Duration, Instant};

use lapin::message::Delivery;
use lapin::{Channel, Connection, Consumer};

use super::leader::publish;
use crate::broker::confirm::settle;
use crate::broker::group_stream::{self, follow_up_message};
use crate::broker::names::Names;
use crate::broker::stream_read;
use crate::broker::{consumer, publisher, BrokerError};
use crate::group::state::{Fold, Record};
use crate::group::{window, READ_BACK_SECS};
use crate::log;
use crate::metrics::counters;
use crate::wire::now_ms;

const SNAPSHOT_EVERY: Duration = Duration::from_secs(60);
/// Messages of the stream followed at most before the groups they complete are completed (and the
/// run acked): half the reader's prefetch, so that the broker keeps sending meanwhile.
const READ_AHEAD: usize = group_stream::READ_PREFETCH as usize / 2;
/// The groups summed up for the status document at most this often (and within it of a change).
const SUMMARY_EVERY: Duration = Duration::from_secs(1);
/// A snapshot even when nothing changed, within `group::READ_BACK_SECS`.
const SNAPSHOT_AT_LEAST: Duration = Duration::from_secs(READ_BACK_SECS / 2);

/// The groups as the leader knows them, and its reader of the stream.
pub struct GroupsLeading {
    fold: Fold,
    reader_ch: Channel,
    pub reader: Consumer,
    last_offset: u64,
    last_snapshot: Instant,
    /// `fold.changes` at the last snapshot.
    snapshot_changes: u64,
    /// When the groups were last summed up for the status document, and `fold.changes` then.
    last_summary: Option<(Instant, u64)>,
    /// When this leader last completed a group (the window of [`window::keep_reading`] opens only while
    /// groups complete often).
    last_completed: Option<Instant>,
    /// A line per follow-up published (`EBATS_DEBUG`): groups may complete at the rate of events.
    debug: bool,
    /// `fold.completed` already counted in the metrics (what the catch-up read saw done is not
    /// counted: this leader did not complete it).
    counted: u64,
}

impl GroupsLeading {
    /// Folds the stream up to a marker appended on the token's channel: after it, every follow-up
    /// the previous leader published (all of them precede the marker) is known.
    pub async fn take_over(
        conn: &Connection,
        token_ch: &Channel,
        names: &Names,
        debug: bool,
    ) -> Result<Self, BrokerError> {
        let started = Instant::now();
        let marker = crate::wire::new_id();
        publish(token_ch, &stream_read::marker(&names.groups_stream(), &marker)).await?;
        let group_stream::Folded { fold, ch, reader, last } =
            group_stream::fold_to_marker(conn, names, &marker, &stream_read::tag("groups-leader")).await?;
        log::info(&format!(
            "groups: {} group(s) in flight (stream read in {} ms)",
            fold.state.open_count(),
            started.elapsed().as_millis()
        ));
        counters::GROUPS_OPEN.store(fold.state.open_count() as u64, std::sync::atomic::Ordering::Relaxed);
        let snapshot_changes = fold.changes;
        let fold_completed = fold.completed;
        Ok(GroupsLeading {
            fold,
            reader_ch: ch,
            reader,
            last_offset: last,
            last_snapshot: Instant::now(),
            snapshot_changes,
            last_summary: None,
            last_completed: None,
            debug,
            counted: fold_completed,
        })
    }

    /// A message read live from the stream; its delivery tag.
    fn follow(&mut self, d: Delivery) -> u64 {
        let offset = stream_read::offset_in(&d.properties).unwrap_or(self.last_offset);
        self.last_offset = offset;
        group_stream::fold_message(&mut self.fold, offset, &d);
        d.delivery_tag
    }

    /// Follows, besides `d`, what the reader already holds (up to [`READ_AHEAD`] messages), so that the
    /// groups they complete are completed together; then, when some group is due and groups complete
    /// often, what arrives within the window of [`window::keep_reading`], so that the follow-ups of the
    /// groups due by then go out in one burst. Acks what it read in runs (one ack per run, not one per message).
    pub async fn follow_all(&mut self, d: Delivery) -> Result<(), BrokerError> {
        let mut last = self.follow(d);
        let mut unacked = 1 + self.follow_ready(&mut last).await?;
        let mut due_since: Option<Instant> = None;
        // How long the leader completed nothing, as this read began.
        let idle = self.last_completed.map(|t| t.elapsed());
        loop {
            let due = self.fold.due();
            let since = match due {
                0 => Duration::ZERO,
                _ => due_since.get_or_insert_with(Instant::now).elapsed(),
            };
            let Some(left) = window::keep_reading(due, since, idle) else { break };
            if unacked >= READ_AHEAD {
                consumer::ack(&self.reader_ch, last, true).await?;
                unacked = 0;
            }
            match tokio::time::timeout(left, consumer::next(&mut self.reader, group_stream::WHAT)).await {
                Ok(d) => {
                    last = self.follow(d?);
                    unacked += 1 + self.follow_ready(&mut last).await?;
                }
                Err(_) => break,
            }
        }
        if unacked > 0 {
            consumer::ack(&self.reader_ch, last, true).await?;
        }
        Ok(())
    }

    /// Follows what the reader already holds, up to [`READ_AHEAD`] messages; how many (`last`: the
    /// delivery tag of the last one).
    async fn follow_ready(&mut self, last: &mut u64) -> Result<usize, BrokerError> {
        for n in 0..READ_AHEAD {
            match futures_lite::future::poll_once(consumer::next(&mut self.reader, group_stream::WHAT)).await {
                Some(d) => *last = self.follow(d?),
                None => return Ok(n),
            }
        }
        Ok(READ_AHEAD)
    }

    /// Publishes what the groups that changed and are complete are due (each follow-up once: the fold
    /// knows every one published), then a snapshot when one is due. The follow-ups of one call are
    /// published together and their confirms awaited after the last: what a leader that dies meanwhile
    /// published precedes its successor's marker all the same (`src/group/mod.rs`). Each follow-up is
    /// its own message (the event and its record, one write). A group no follow-up applies to needs
    /// nothing: every fold finds it done at its last end.
    pub async fn complete(&mut self, token_ch: &Channel, names: &Names) -> Result<(), BrokerError> {
        self.sum_up();
        let touched = self.fold.take_touched();
        if touched.is_empty() && self.last_snapshot.elapsed() < SNAPSHOT_EVERY.min(SNAPSHOT_AT_LEAST) {
            return Ok(());
        }
        let mut confirms = Vec::new();
        for id in touched {
            let Some(g) = self.fold.state.groups.get(&id) else { continue };
            for f in g.due() {
                let g = &self.fold.state.groups[&id];
                let msg = follow_up_message(names, &id, g, &f);
                confirms.push((msg.sent(), publisher::send(token_ch, &msg).await?));
                if self.debug {
                    let c = g.counts();
                    log::debug(&format!(
                        "groups: group {id} ended ({} succeeded, {} failed, {} cancelled): published '{}' id={}",
                        c.succeeded,
                        c.failed,
                        c.cancelled,
                        f.event,
                        crate::group::follow_up_id(&id, &f)
                    ));
                }
                self.fold.apply(Record::Fired { group: id.clone(), key: f.key() }, now_ms());
            }
        }
        // Every group done since: by its follow-ups published, or at its last end with none to publish.
        counters::add(&counters::GROUP_COMPLETIONS, self.fold.completed - self.counted);
        self.counted = self.fold.completed;
        if !confirms.is_empty() {
            self.last_completed = Some(Instant::now());
        }
        for (sent, confirm) in confirms {
            settle(&sent, confirm).await?;
        }
        // Every minute while the fold changes, and within the readers' look back anyway: a reader always
        // finds a snapshot a few minutes back and never reads the stream from its start.
        let since = self.last_snapshot.elapsed();
        if (since >= SNAPSHOT_EVERY && self.fold.changes != self.snapshot_changes) || since >= SNAPSHOT_AT_LEAST {
            self.fold.state.prune(now_ms());
            let snapshot = group_stream::snapshot_message(names, &self.fold.state, self.last_offset);
            publish(token_ch, &snapshot).await?;
            let st = &self.fold.state;
            log::info(&format!(
                "groups: snapshot written ({} group(s) in flight, {} done, {} closed; {} KB)",
                st.open_count(),
                st.groups.len() - st.open_count(),
                st.closed.len(),
                snapshot.body.len() / 1024
            ));
            self.last_snapshot = Instant::now();
            self.snapshot_changes = self.fold.changes;
        }
        // What this leader applied itself is not to be looked at again.
        let _ = self.fold.take_touched();
        Ok(())
    }

    /// Sums the groups up for the status document when the fold changed, at most every
    /// [`SUMMARY_EVERY`] (the leader's loop comes by at least every second).
    fn sum_up(&mut self) {
        let changed =
            self.last_summary.is_none_or(|(at, changes)| changes != self.fold.changes && at.elapsed() >= SUMMARY_EVERY);
        if changed {
            counters::GROUPS_OPEN.store(self.fold.state.open_count() as u64, std::sync::atomic::Ordering::Relaxed);
            let completions = counters::get(&counters::GROUP_COMPLETIONS);
            counters::set_groups(Some(crate::services::groups::summary(&self.fold.state, completions, now_ms())));
            self.last_summary = Some((Instant::now(), self.fold.changes));
        }
    }
}
