//! A message coming from the broker, put together from its frames: the method that announces it
//! (`basic.deliver` to a consumer, `basic.return` to a publisher), then its content header, then as
//! many body frames as its size needs. AMQP sends a channel's frames of one message in a row, so one
//! message is put together at a time; a frame out of that order is a fault of the connection.

use amq_protocol::frame::AMQPContentHeader;
use amq_protocol::protocol::basic::{self, AMQPProperties};

/// The method a message came with.
#[derive(Debug, Clone, PartialEq)]
pub enum Head {
    Deliver(basic::Deliver),
    Return(basic::Return),
}

/// A whole message.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrived {
    pub head: Head,
    pub properties: AMQPProperties,
    pub body: Vec<u8>,
}

struct Partial {
    head: Head,
    /// The header's properties and the body's size, once the header came.
    header: Option<(AMQPProperties, u64)>,
    body: Vec<u8>,
}

/// The message being put together, if any.
#[derive(Default)]
pub struct Content {
    partial: Option<Partial>,
}

impl Content {
    /// A message's method: a new message begins.
    pub fn method(&mut self, head: Head) -> Result<(), String> {
        if self.partial.is_some() {
            return Err("a message began before the one before it was whole".into());
        }
        self.partial = Some(Partial { head, header: None, body: Vec::new() });
        Ok(())
    }

    /// The content header; the message when its body is empty.
    pub fn header(&mut self, h: AMQPContentHeader) -> Result<Option<Arrived>, String> {
        let Some(p) = self.partial.as_mut() else { return Err("a content header came with no message".into()) };
        if p.header.is_some() {
            return Err("a message came with two content headers".into());
        }
        let size = h.body_size;
        p.body.reserve(usize::try_from(size).unwrap_or(0).min(1 << 20));
        p.header = Some((h.properties, size));
        Ok(self.whole())
    }

    /// A body frame; the message when it is the last.
    pub fn body(&mut self, part: &[u8]) -> Result<Option<Arrived>, String> {
        let Some(p) = self.partial.as_mut() else { return Err("a body frame came with no message".into()) };
        let Some((_, size)) = &p.header else { return Err("a body frame came before its content header".into()) };
        if p.body.len() as u64 + part.len() as u64 > *size {
            return Err(format!("a message's body is longer than its header's {size} bytes"));
        }
        p.body.extend_from_slice(part);
        Ok(self.whole())
    }

    /// The message, once its body has its header's size.
    fn whole(&mut self) -> Option<Arrived> {
        let p = self.partial.as_ref()?;
        let (_, size) = p.header.as_ref()?;
        if (p.body.len() as u64) < *size {
            return None;
        }
        let p = self.partial.take()?;
        let (properties, _) = p.header?;
        Some(Arrived { head: p.head, properties, body: p.body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliver(tag: u64) -> Head {
        Head::Deliver(basic::Deliver {
            consumer_tag: "c".into(),
            delivery_tag: tag,
            redelivered: false,
            exchange: "".into(),
            routing_key: "q".into(),
        })
    }

    fn header(size: u64) -> AMQPContentHeader {
        AMQPContentHeader { class_id: 60, body_size: size, properties: AMQPProperties::default() }
    }

    #[derive(Debug)]
    enum F {
        M(u64),
        H(u64),
        B(&'static [u8]),
    }

    /// Feeds frames; what came whole (tag and body) and the first fault, if any.
    fn feed(frames: &[F]) -> (Vec<(u64, Vec<u8>)>, Option<String>) {
        let mut c = Content::default();
        let mut whole = Vec::new();
        for f in frames {
            let r = match f {
                F::M(t) => c.method(deliver(*t)).map(|_| None),
                F::H(s) => c.header(header(*s)),
                F::B(b) => c.body(b),
            };
            match r {
                Ok(Some(a)) => {
                    let Head::Deliver(d) = a.head else { unreachable!() };
                    whole.push((d.delivery_tag, a.body));
                }
                Ok(None) => {}
                Err(e) => return (whole, Some(e)),
            }
        }
        (whole, None)
    }

    #[test]
    fn messages_come_whole_from_their_frames_and_out_of_order_frames_are_faults() {
        use F::*;
        type Row<'a> = (&'a [F], &'a [(u64, &'a [u8])], Option<&'a str>);
        let table: &[Row] = &[
            (&[M(1), H(3), B(b"abc")], &[(1, b"abc")], None),
            (&[M(1), H(0)], &[(1, b"")], None),
            (&[M(1), H(5), B(b"ab"), B(b"cde"), M(2), H(1), B(b"x")], &[(1, b"abcde"), (2, b"x")], None),
            (&[M(1), H(5), B(b"ab")], &[], None),
            (&[M(1), M(2)], &[], Some("began before")),
            (&[H(1)], &[], Some("no message")),
            (&[M(1), B(b"a")], &[], Some("before its content header")),
            (&[M(1), H(1), B(b"ab")], &[], Some("longer than")),
            (&[M(1), H(1), H(1)], &[], Some("two content headers")),
            (&[B(b"a")], &[], Some("no message")),
        ];
        for (frames, want, fault) in table {
            let (got, err) = feed(frames);
            let want: Vec<(u64, Vec<u8>)> = want.iter().map(|(t, b)| (*t, b.to_vec())).collect();
            assert_eq!(got, want, "{frames:?}");
            match (fault, err) {
                (None, None) => {}
                (Some(f), Some(e)) => assert!(e.contains(f), "{frames:?}: {e}"),
                (f, e) => panic!("{frames:?}: fault {f:?}, got {e:?}"),
            }
        }
    }
}
