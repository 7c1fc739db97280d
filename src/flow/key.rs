//! Keys built from a task: a template such as `order:{order_id}` or `customer:{customer.id}` filled in
//! from the task's params. One template language for every feature that groups tasks by a key (per-key
//! limits, unique tasks). Pure.
//!
//! A placeholder `{path}` names a member of the params (an object), `a.b` a member of a member. It takes
//! the value's text when the value is a string, an integer or a boolean; a task whose params lack the
//! member, or hold another kind of value there (null, a float, an array, an object), has no key: the
//! feature does not apply to it (the caller says so where it matters). `{{` and `}}` stand for a brace.
//!
//! A key names broker objects (`Key::name`): a key of up to [`NAME_MAX`] bytes of printable ASCII is used
//! as it is, any other by a digest of it (a name-based UUID, the same in every process and version), so a
//! key of any length or alphabet names a valid queue.

use serde_json::Value;

/// The longest template accepted, in bytes.
pub const TEMPLATE_MAX: usize = 256;
/// The longest key used as it is in a broker object's name.
pub const NAME_MAX: usize = 100;
/// The longest key kept: a longer one is an error of the task (its feature does not apply).
pub const KEY_MAX: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Member(Vec<String>),
}

/// A parsed key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    /// Parses `source`; an error says what is wrong and where.
    pub fn parse(source: &str) -> Result<Template, String> {
        if source.is_empty() {
            return Err("a key template cannot be empty".into());
        }
        if source.len() > TEMPLATE_MAX {
            return Err(format!("a key template is at most {TEMPLATE_MAX} bytes, this one is {}", source.len()));
        }
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = source.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|&(_, n)| n) == Some('{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek().map(|&(_, n)| n) == Some('}') => {
                    chars.next();
                    text.push('}');
                }
                '}' => {
                    return Err(format!(
                        "key template '{source}': '}}' at byte {at} closes nothing (write '}}}}' for a brace)"
                    ))
                }
                '{' => {
                    let rest = &source[at + 1..];
                    let Some(end) = rest.find('}') else {
                        return Err(format!("key template '{source}': '{{' at byte {at} is not closed"));
                    };
                    let path = &rest[..end];
                    let members: Vec<String> = path.split('.').map(str::to_string).collect();
                    if members.iter().any(|m| m.is_empty() || m.contains('{')) {
                        return Err(format!(
                            "key template '{source}': '{{{path}}}' is not a member name (letters, digits, '_', '-', a '.' between names)"
                        ));
                    }
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Member(members));
                    for _ in 0..path.chars().count() + 1 {
                        chars.next();
                    }
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template { source: source.to_string(), parts })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The key of a task with these params, or `None` when a member is missing or not a string, an
    /// integer or a boolean, or the key would be longer than [`KEY_MAX`].
    pub fn render(&self, params: &Value) -> Option<Key> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Member(path) => {
                    let mut v = params;
                    for m in path {
                        v = v.as_object()?.get(m)?;
                    }
                    match v {
                        Value::String(s) => out.push_str(s),
                        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                        Value::Number(n) if n.is_i64() || n.is_u64() => out.push_str(&n.to_string()),
                        _ => return None,
                    }
                }
            }
            if out.len() > KEY_MAX {
                return None;
            }
        }
        Some(Key(out))
    }
}

/// A key built from a task.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub String);

impl Key {
    /// The key as a part of a broker object's name: itself when short and printable ASCII, else `~`
    /// and a digest of it.
    pub fn name(&self) -> String {
        let k = &self.0;
        if !k.is_empty() && k.len() <= NAME_MAX && k.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'~') {
            return k.clone();
        }
        let ns = uuid::Uuid::NAMESPACE_OID;
        format!("~{}", uuid::Uuid::new_v5(&ns, k.as_bytes()).simple())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_render_from_params() {
        let params = json!({"order_id": 42, "customer": {"id": "c-7", "vip": true}, "f": 1.5, "n": null});
        let cases: &[(&str, Option<&str>)] = &[
            ("order:{order_id}", Some("order:42")),
            ("{customer.id}", Some("c-7")),
            ("c:{customer.id}:{customer.vip}", Some("c:c-7:true")),
            ("fixed", Some("fixed")),
            ("{{literal}} {order_id}", Some("{literal} 42")),
            ("x:{missing}", None),
            ("x:{customer.missing}", None),
            ("x:{order_id.deeper}", None),
            ("x:{f}", None),
            ("x:{n}", None),
            ("x:{customer}", None),
        ];
        for (source, want) in cases {
            let t = Template::parse(source).unwrap_or_else(|e| panic!("{source}: {e}"));
            assert_eq!(t.render(&params).map(|k| k.0), want.map(str::to_string), "{source}");
        }
        assert_eq!(Template::parse("a:{x}").unwrap().render(&json!([1, 2])), None, "params not an object");
    }

    #[test]
    fn bad_templates_are_named() {
        for source in ["", "a:{", "a:}", "a:{}", "a:{x..y}", "a:{.x}", "{a{b}"] {
            let e = Template::parse(source).expect_err(source);
            assert!(e.contains("template"), "{source}: {e}");
        }
        assert!(Template::parse(&"x".repeat(TEMPLATE_MAX + 1)).is_err());
    }

    #[test]
    fn names_are_the_key_or_a_stable_digest() {
        assert_eq!(Key("order:42".into()).name(), "order:42");
        let long = Key("x".repeat(NAME_MAX + 1));
        let odd = Key("naïve key".into());
        for k in [&long, &odd, &Key(String::new()), &Key("~x".into())] {
            let n = k.name();
            assert!(n.starts_with('~') && n.len() == 33, "{n}");
            assert_eq!(n, k.clone().name(), "stable");
        }
        assert_ne!(long.name(), odd.name());
        // The digest does not change between versions: broker objects of running workers keep their names.
        assert_eq!(Key("naïve key".into()).name(), "~7250f170b3865786be6af5ff85a3eaab");
    }
}
