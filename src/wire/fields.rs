//! A task body's top-level fields, read in one pass: each field ebats knows ([`KNOWN`]) into a slot
//! of its own, the others kept as they came, in their order (`TaskMsg::extra`). Reading the body as
//! one JSON map first, then copying fields out of it and sifting the unknown ones from it, cost a
//! hashed map of every field, a copy of the parameters and a second pass: about a sixth of a worker
//! child's CPU at prefetch 100 (`bench/RESULTS.md`).
//!
//! What is read is what a plain read of the body as JSON gives: the same values (each read as a
//! `serde_json::Value`), a field given twice keeps its last value (in the first one's place among
//! the unknown ones), and a body that is not a JSON object is no [`Fields`].

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::KNOWN;

pub(super) struct Fields {
    known: [Option<Value>; KNOWN.len()],
    pub extra: Map<String, Value>,
}

impl Fields {
    /// The fields of `body`; `None` when it is not a JSON object (a plain read says why).
    pub fn read(body: &[u8]) -> Option<Fields> {
        serde_json::from_slice(body).ok()
    }

    fn empty() -> Fields {
        Fields { known: std::array::from_fn(|_| None), extra: Map::new() }
    }

    fn put(&mut self, key: Cow<'_, str>, value: Value) {
        match KNOWN.iter().position(|k| *k == key) {
            Some(i) => self.known[i] = Some(value),
            None => {
                self.extra.insert(key.into_owned(), value);
            }
        }
    }

    fn slot(name: &str) -> usize {
        KNOWN.iter().position(|k| *k == name).expect("a field named in KNOWN")
    }

    /// The known field `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.known[Self::slot(name)].as_ref()
    }

    /// Takes the known field `name` out.
    pub fn take(&mut self, name: &str) -> Option<Value> {
        self.known[Self::slot(name)].take()
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut fields = Fields::empty();
        while let Some(Key(key)) = map.next_key()? {
            let value = map.next_value()?;
            fields.put(key, value);
        }
        Ok(fields)
    }
}

/// A field's name, borrowed from the body where it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v.to_string())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body's known fields, and the others in order.
    type Read = (Vec<(String, Value)>, Map<String, Value>);

    /// What a plain read of the body gives.
    fn plain(body: &str) -> Option<Read> {
        let Value::Object(mut o) = serde_json::from_str::<Value>(body).ok()? else { return None };
        let known = KNOWN.iter().filter_map(|k| o.get(*k).map(|v| (k.to_string(), v.clone()))).collect();
        o.retain(|k, _| !KNOWN.contains(&k.as_str()));
        Some((known, o))
    }

    fn read(body: &str) -> Option<Read> {
        let f = Fields::read(body.as_bytes())?;
        let known = KNOWN.iter().filter_map(|k| f.get(k).map(|v| (k.to_string(), v.clone()))).collect();
        Some((known, f.extra))
    }

    #[test]
    fn one_pass_reads_what_a_plain_read_gives() {
        let bodies = [
            r#"{"topic":"demo","name":"x","params":{"b":1,"a":[1,2.5,null]},"zz":1,"aa":{"k":"v"}}"#,
            r#"{"name":"x","topic":"demo","topic":"other","zz":1,"aa":2,"zz":3}"#,
            r#"{"id":null,"params":[],"delay":"5","extra":"é\"\n","\u0074opic":"escaped"}"#,
            r#"{}"#,
            r#"[1,2]"#,
            r#""text""#,
            r#"null"#,
            r#"{"topic":"demo""#,
            r#"{"topic":"demo"} trailing"#,
            r#"not json"#,
        ];
        for body in bodies {
            assert_eq!(read(body), plain(body), "{body}");
        }
        let f = Fields::read(br#"{"x":1,"topic":"t","y":2}"#).unwrap();
        assert_eq!(f.extra.keys().collect::<Vec<_>>(), ["x", "y"]);
    }
}
