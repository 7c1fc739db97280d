//! The publisher confirms of one channel, on plain data: which delivery tag each publish took, what
//! the broker answered for it, and which publish a returned message was.
//!
//! The broker numbers a confirm channel's publishes 1, 2, 3 ... in the order it reads them, and answers
//! each with `basic.ack` or `basic.nack` (`multiple`: every tag up to this one not answered yet). A
//! mandatory message no queue took comes back first as `basic.return` (which carries no tag) and is
//! then acked: it is the oldest unanswered publish to the same exchange and routing key (and with the
//! same message id, when it has one), since the broker handles a channel's publishes in order.
//!
//! A channel opened anew numbers from 1 again; the publishes keep numbers of their own (`id`s) that
//! go on across channels, so an answer is never taken for another channel's publish.

use std::collections::{BTreeMap, HashMap};

use super::super::confirm::{refused, unroutable, Sent};
use super::super::error::BrokerError;

#[derive(Debug)]
struct Waiting {
    sent: Sent,
    /// `basic.return`'s code and text, when the message came back.
    returned: Option<(u16, String)>,
}

/// The confirms of one channel.
#[derive(Debug, Default)]
pub struct Confirms {
    last_id: u64,
    /// The last id before the channel's first publish: delivery tag `t` is id `base + t`.
    base: u64,
    waiting: BTreeMap<u64, Waiting>,
    answered: HashMap<u64, Result<(), BrokerError>>,
    /// How many answers came so far (a wait for many times out only when this stops moving).
    answers: usize,
}

impl Confirms {
    /// Records a publish; returns its id.
    pub fn sent(&mut self, sent: Sent) -> u64 {
        self.last_id += 1;
        self.waiting.insert(self.last_id, Waiting { sent, returned: None });
        self.last_id
    }

    /// A channel was opened (after [`Confirms::fail_all`] for the one before): its tags start at 1.
    pub fn channel_opened(&mut self) {
        debug_assert!(self.waiting.is_empty());
        self.base = self.last_id;
    }

    /// `basic.ack` (`ok`) or `basic.nack` for delivery tag `tag`, or for every tag up to it when
    /// `multiple`.
    pub fn answer(&mut self, tag: u64, multiple: bool, ok: bool) {
        let id = self.base + tag;
        let tags: Vec<u64> = if multiple { self.waiting.range(..=id).map(|(t, _)| *t).collect() } else { vec![id] };
        for t in tags {
            if let Some(w) = self.waiting.remove(&t) {
                let answer = match (ok, w.returned) {
                    (true, None) => Ok(()),
                    (true, Some((code, text))) => Err(unroutable(&w.sent.exchange, &w.sent.routing_key, code, &text)),
                    (false, _) => Err(refused(&w.sent.exchange)),
                };
                self.answered.insert(t, answer);
                self.answers += 1;
            }
        }
    }

    /// `basic.return` of a message to `exchange` with `routing_key` (and `id`, its message id).
    pub fn returned(&mut self, exchange: &str, routing_key: &str, id: Option<&str>, code: u16, text: &str) {
        let hit = self.waiting.values_mut().find(|w| {
            w.returned.is_none()
                && w.sent.exchange == exchange
                && w.sent.routing_key == routing_key
                && (id.is_none() || w.sent.id.is_none() || w.sent.id.as_deref() == id)
        });
        if let Some(w) = hit {
            w.returned = Some((code, text.to_string()));
        }
    }

    /// The channel or the connection ended: every publish not answered fails with `e`.
    pub fn fail_all(&mut self, e: &BrokerError) {
        for (t, _) in std::mem::take(&mut self.waiting) {
            self.answered.insert(t, Err(e.clone()));
            self.answers += 1;
        }
    }

    /// The answer for publish `id`, once (None while it waits, or when it was taken or never sent).
    pub fn take(&mut self, id: u64) -> Option<Result<(), BrokerError>> {
        self.answered.remove(&id)
    }

    /// Whether publish `id` still waits for its answer.
    pub fn waits(&self, id: u64) -> bool {
        self.waiting.contains_key(&id)
    }

    /// Every answer not taken yet, what waits failing with `e` (the connection is given up).
    pub fn drain(mut self, e: &BrokerError) -> impl Iterator<Item = (u64, Result<(), BrokerError>)> {
        self.fail_all(e);
        self.answered.into_iter()
    }

    /// Publishes still waiting for their answer.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn answers(&self) -> usize {
        self.answers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::error::ErrorKind;

    fn sent(exchange: &str, key: &str, id: Option<&str>) -> Sent {
        Sent { exchange: exchange.into(), routing_key: key.into(), id: id.map(Into::into), kind: None }
    }

    fn kinds(c: &mut Confirms, tags: &[u64]) -> Vec<Option<Result<(), ErrorKind>>> {
        tags.iter().map(|t| c.take(*t).map(|r| r.map_err(|e| e.kind()))).collect()
    }

    #[test]
    fn tags_follow_the_publishes_and_multiple_answers_every_one_up_to_its_tag() {
        let mut c = Confirms::default();
        let tags: Vec<u64> = (0..4).map(|_| c.sent(sent("x", "k", None))).collect();
        assert_eq!(tags, [1, 2, 3, 4]);
        c.answer(3, true, true);
        assert_eq!((c.waiting(), c.answers()), (1, 3));
        c.answer(4, false, false);
        assert_eq!(kinds(&mut c, &tags), [Some(Ok(())), Some(Ok(())), Some(Ok(())), Some(Err(ErrorKind::Nacked))]);
        assert_eq!(kinds(&mut c, &[1]), [None], "an answer is taken once");
    }

    #[test]
    fn a_single_answer_leaves_the_tags_before_it_waiting() {
        let mut c = Confirms::default();
        for _ in 0..3 {
            c.sent(sent("x", "k", None));
        }
        c.answer(2, false, true);
        assert!(c.waits(1) && !c.waits(2) && c.waits(3));
        c.answer(2, true, true);
        assert!(!c.waits(1) && c.waits(3));
    }

    #[test]
    fn a_channel_opened_anew_numbers_from_one_and_ids_go_on() {
        let mut c = Confirms::default();
        let first = c.sent(sent("x", "k", None));
        c.fail_all(&BrokerError::new(ErrorKind::NotFound, "no exchange"));
        c.channel_opened();
        let second = c.sent(sent("x", "k", None));
        assert_eq!((first, second), (1, 2));
        c.answer(1, false, true);
        assert_eq!(kinds(&mut c, &[1, 2]), [Some(Err(ErrorKind::NotFound)), Some(Ok(()))]);
        let third = c.sent(sent("x", "k", None));
        let lost: Vec<_> = c.drain(&BrokerError::new(ErrorKind::ConnectionLost, "gone")).collect();
        assert_eq!(lost.len(), 1);
        assert_eq!((lost[0].0, lost[0].1.as_ref().map_err(|e| e.kind())), (third, Err(ErrorKind::ConnectionLost)));
    }

    #[test]
    fn a_returned_message_is_the_oldest_unanswered_one_it_matches() {
        let table: [(&str, &str, Option<&str>, [bool; 3]); 4] = [
            // exchange, key and id of the return: which of the three publishes it made unroutable
            ("x", "a", Some("m2"), [false, true, false]),
            ("x", "a", None, [true, false, false]),
            ("x", "b", Some("m3"), [false, false, true]),
            ("y", "a", Some("m1"), [false, false, false]),
        ];
        for (exchange, key, id, unroutable) in table {
            let mut c = Confirms::default();
            c.sent(sent("x", "a", Some("m1")));
            c.sent(sent("x", "a", Some("m2")));
            c.sent(sent("x", "b", Some("m3")));
            c.returned(exchange, key, id, 312, "NO_ROUTE");
            c.answer(3, true, true);
            let got: Vec<bool> =
                kinds(&mut c, &[1, 2, 3]).into_iter().map(|k| k == Some(Err(ErrorKind::Unroutable))).collect();
            assert_eq!(got, unroutable, "{exchange} {key} {id:?}");
        }
        let mut c = Confirms::default();
        c.sent(sent("x", "a", Some("m1")));
        c.returned("x", "a", Some("m1"), 312, "NO_ROUTE");
        c.answer(1, false, true);
        let e = c.take(1).unwrap().unwrap_err();
        assert!(e.message().contains("312 NO_ROUTE"), "{e}");
    }

    #[test]
    fn a_closed_channel_fails_what_waits_and_keeps_what_was_answered() {
        let mut c = Confirms::default();
        for _ in 0..3 {
            c.sent(sent("x", "k", None));
        }
        c.answer(1, false, true);
        c.fail_all(&BrokerError::new(ErrorKind::NotFound, "no exchange"));
        assert_eq!(
            kinds(&mut c, &[1, 2, 3]),
            [Some(Ok(())), Some(Err(ErrorKind::NotFound)), Some(Err(ErrorKind::NotFound))]
        );
        assert_eq!((c.waiting(), c.answers()), (0, 3));
    }
}
