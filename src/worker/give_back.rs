//! Tasks a child was sent but did not start, given back to the queue for other children, without
//! using an attempt or a death: what its buffer held when its prefetch fell, when it stops or leaves
//! to be replaced, and a task received while its topic is paused.
//!
//! A classic queue takes them back where they were (`basic.nack` with requeue) and counts nothing. A
//! quorum queue counts every return as a delivery (`x-delivery-count`), and that count is the poison
//! count (`worker::delivery`): a task given back five times would be failed as poison without having
//! run. So on a quorum queue each is published again as a copy carrying the count it had (in its
//! body's `redeliveries`), confirmed, and only then acked: it goes to the end of the queue, its deaths
//! as they were. A body that is not ebats's is requeued all the same (it is run, or refused, later).

use lapin::message::Delivery;

use crate::broker::names::Names;
use crate::broker::subscription::{self, Subscription};
use crate::broker::BrokerError;
use crate::config::{QueueType, Settings};
use crate::dispatch;
use crate::wire::TaskMsg;

/// How each delivery goes back: requeued, or copied (the copy's body) and acked.
pub fn plan(queue_type: QueueType, d: &Delivery) -> Option<TaskMsg> {
    if queue_type != QueueType::Quorum {
        return None;
    }
    let mut task = TaskMsg::parse(&d.data).ok()?;
    task.redeliveries = task.redeliveries.saturating_add(subscription::delivery_count(&d.properties));
    Some(task)
}

/// Gives `deliveries` back (see the module). The copies are sent in one confirmed send before any
/// of them is acked: a failure leaves every delivery unacked, to come back with the channel.
pub fn unstarted(
    settings: &Settings,
    names: &Names,
    sub: &mut Subscription,
    deliveries: &[Delivery],
) -> Result<(), BrokerError> {
    let mut decls = Vec::new();
    let mut copies = Vec::new();
    let mut acked = Vec::new();
    let mut requeued = Vec::new();
    for d in deliveries {
        match plan(settings.queue_type, d) {
            Some(task) => {
                let (more, out) = dispatch::task(names, &task, 0);
                dispatch::merge_decls(&mut decls, more);
                copies.push(out);
                acked.push(d.delivery_tag);
            }
            None => requeued.push(d.delivery_tag),
        }
    }
    if !copies.is_empty() {
        dispatch::send(settings, &decls, &copies)?;
    }
    for tag in acked {
        sub.ack(tag, false)?;
    }
    for tag in requeued {
        sub.requeue(tag, false)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{AMQPValue, FieldTable};
    use lapin::BasicProperties;

    fn delivery(body: &[u8], count: Option<i64>) -> Delivery {
        let mut headers = FieldTable::default();
        if let Some(n) = count {
            headers.insert(crate::headers::DELIVERY_COUNT.into(), AMQPValue::LongLongInt(n));
        }
        let mut d = Delivery::mock(7, "".into(), "q".into(), false, body.to_vec());
        d.properties = BasicProperties::default().with_headers(headers);
        d
    }

    #[test]
    fn a_quorum_queue_gets_a_copy_carrying_its_count_and_a_classic_one_its_message_back() {
        let mut t = TaskMsg::new("mail", "send", serde_json::json!({}), 0);
        t.redeliveries = 1;
        let body = t.to_json();
        let copy = plan(QueueType::Quorum, &delivery(&body, Some(2))).expect("a copy");
        assert_eq!((copy.id.as_str(), copy.redeliveries), (t.id.as_str(), 3));
        assert_eq!(plan(QueueType::Quorum, &delivery(&body, None)).map(|c| c.redeliveries), Some(1));
        assert!(plan(QueueType::Classic, &delivery(&body, Some(2))).is_none());
        assert!(plan(QueueType::Quorum, &delivery(b"not ebats", Some(2))).is_none(), "requeued as it is");
    }
}
