//! Rate and concurrency limits as plain data: what a limit is (its scope: a whole topic, one task name
//! of it, or a key built from each task), how a rate is written (`10/s`, `600/m`, `5/10s`), and which
//! limits apply to one task. Pure; where limits are stored, and how they are enforced on the broker,
//! lives above (the module header of `flow` says why the stream `<prefix>.flow`).

use serde_json::Value;

use super::key::{Key, Template};

/// What a limit counts: every task of a topic, the tasks of one name, or the tasks that share a key
/// (of one name, or of any name of the topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Topic,
    Name(String),
    Key { name: Option<String>, template: Template },
}

/// At most `count` starts in any `per_ms`, plus `burst` more after a quiet time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per_ms: u64,
    pub burst: u32,
}

/// The longest window a rate may have.
pub const RATE_WINDOW_MAX_MS: u64 = 24 * 3600 * 1000;
/// The largest count, burst or concurrency.
pub const COUNT_MAX: u32 = 1_000_000;

impl Rate {
    /// `N/unit` with unit `s`, `m`, `h` or a number of them (`5/10s`), and the burst given apart.
    pub fn parse(text: &str, burst: u32) -> Result<Rate, String> {
        let bad = || format!("a rate is written N/s, N/m, N/h or N/<k><unit> (10/s, 600/m, 5/10s), not '{text}'");
        let (n, window) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        let window = window.trim();
        let unit_at = window.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let times: u64 = if unit_at == 0 { 1 } else { window[..unit_at].parse().map_err(|_| bad())? };
        let unit_ms = match &window[unit_at..] {
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        Rate::new(count, times.saturating_mul(unit_ms), burst)
    }

    /// A rate checked: a count of 1 to [`COUNT_MAX`], a window of 1 ms to a day, a burst up to [`COUNT_MAX`].
    pub fn new(count: u32, per_ms: u64, burst: u32) -> Result<Rate, String> {
        if count == 0 || count > COUNT_MAX {
            return Err(format!("a rate's count is 1 to {COUNT_MAX}, not {count}"));
        }
        if per_ms == 0 || per_ms > RATE_WINDOW_MAX_MS {
            return Err(format!("a rate's window is 1 ms to 24 h, not {per_ms} ms"));
        }
        if burst > COUNT_MAX {
            return Err(format!("a burst is 0 to {COUNT_MAX}, not {burst}"));
        }
        Ok(Rate { count, per_ms, burst })
    }

    /// Starts per second.
    pub fn per_second(&self) -> f64 {
        f64::from(self.count) * 1000.0 / self.per_ms as f64
    }
}

/// A concurrency checked: 1 to [`COUNT_MAX`] at once.
pub fn check_concurrency(n: i64) -> Result<u32, String> {
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=COUNT_MAX).contains(n))
        .ok_or_else(|| format!("a concurrency limit is 1 to {COUNT_MAX} tasks at once, not {n}"))
}

/// One limit of a topic: a rate, a concurrency, or both, over a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub topic: String,
    pub scope: Scope,
    pub rate: Option<Rate>,
    pub concurrency: Option<u32>,
}

impl Limit {
    /// What the limit is over, as text: `demo`, `demo/send`, `demo/{customer}`, `demo/send/{customer}`.
    /// Two limits with one id are one limit (a later setting replaces it).
    pub fn id(&self) -> String {
        match &self.scope {
            Scope::Topic => self.topic.clone(),
            Scope::Name(n) => format!("{}/{n}", self.topic),
            Scope::Key { name: None, template } => format!("{}/{{{}}}", self.topic, template.source()),
            Scope::Key { name: Some(n), template } => format!("{}/{n}/{{{}}}", self.topic, template.source()),
        }
    }
}

/// A limit as it applies to one task: a counter's name (the limit's scope, with the task's key) and
/// what it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Names the counter on the broker: `t`, `n.<name>`, `k.<tag of the limit>.<key name>`; unique within a topic.
    pub counter: String,
    /// The limit's id ([`Limit::id`]), for messages and metrics.
    pub limit: String,
    pub key: Option<Key>,
    pub rate: Option<Rate>,
    pub concurrency: Option<u32>,
}

/// The limits of one topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitSet {
    limits: Vec<Limit>,
}

impl LimitSet {
    pub fn new(limits: Vec<Limit>) -> LimitSet {
        LimitSet { limits }
    }

    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    pub fn limits(&self) -> &[Limit] {
        &self.limits
    }

    /// The limits that apply to a task of `name` with `params`, in the set's order. A key limit applies
    /// only to a task whose params give its key.
    pub fn for_task(&self, name: &str, params: &Value) -> Vec<Applied> {
        self.limits
            .iter()
            .filter_map(|l| {
                let (counter, key) = match &l.scope {
                    Scope::Topic => ("t".to_string(), None),
                    Scope::Name(n) if n == name => (format!("n.{n}"), None),
                    Scope::Name(_) => return None,
                    Scope::Key { name: Some(n), .. } if n != name => return None,
                    Scope::Key { template, .. } => {
                        let key = template.render(params)?;
                        (format!("k.{}.{}", template_tag(l), key.name()), Some(key))
                    }
                };
                Some(Applied { counter, limit: l.id(), key, rate: l.rate, concurrency: l.concurrency })
            })
            .collect()
    }
}

/// A short stable tag of a key limit's scope, so two key limits of a topic never share counters.
fn template_tag(l: &Limit) -> String {
    let ns = uuid::Uuid::NAMESPACE_OID;
    uuid::Uuid::new_v5(&ns, l.id().as_bytes()).simple().to_string()[..8].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rates_parse() {
        let cases: &[(&str, Option<(u32, u64)>)] = &[
            ("10/s", Some((10, 1000))),
            ("600/m", Some((600, 60_000))),
            ("3/h", Some((3, 3_600_000))),
            ("5/10s", Some((5, 10_000))),
            (" 7 / 2m ", Some((7, 120_000))),
            ("0/s", None),
            ("10", None),
            ("10/d", None),
            ("x/s", None),
            ("10/0s", None),
            ("10/25h", None),
            ("-1/s", None),
        ];
        for (text, want) in cases {
            let got = Rate::parse(text, 0).ok().map(|r| (r.count, r.per_ms));
            assert_eq!(got, *want, "{text}");
        }
        assert!(Rate::parse("10/s", COUNT_MAX + 1).is_err());
        assert_eq!(Rate::parse("600/m", 0).unwrap().per_second(), 10.0);
    }

    #[test]
    fn concurrency_is_checked() {
        assert_eq!(check_concurrency(1), Ok(1));
        for n in [0, -1, i64::from(COUNT_MAX) + 1] {
            assert!(check_concurrency(n).is_err(), "{n}");
        }
    }

    #[test]
    fn the_limits_of_a_task() {
        let t = |s: &str| Template::parse(s).unwrap();
        let set = LimitSet::new(vec![
            Limit { topic: "demo".into(), scope: Scope::Topic, rate: Rate::parse("10/s", 0).ok(), concurrency: None },
            Limit { topic: "demo".into(), scope: Scope::Name("send".into()), rate: None, concurrency: Some(2) },
            Limit {
                topic: "demo".into(),
                scope: Scope::Key { name: None, template: t("c:{customer}") },
                rate: None,
                concurrency: Some(1),
            },
            Limit {
                topic: "demo".into(),
                scope: Scope::Key { name: Some("bill".into()), template: t("c:{customer}") },
                rate: Rate::parse("1/m", 0).ok(),
                concurrency: None,
            },
        ]);
        let ids = |name: &str, params: Value| -> Vec<String> {
            set.for_task(name, &params).into_iter().map(|a| a.limit).collect()
        };
        assert_eq!(ids("send", json!({"customer": 7})), ["demo", "demo/send", "demo/{c:{customer}}"]);
        assert_eq!(ids("bill", json!({"customer": 7})), ["demo", "demo/{c:{customer}}", "demo/bill/{c:{customer}}"]);
        assert_eq!(ids("other", json!({})), ["demo"], "no key in the params: no key limit");
        let applied = set.for_task("bill", &json!({"customer": 7}));
        assert_eq!(applied[1].key, Some(Key("c:7".into())));
        assert_ne!(applied[1].counter, applied[2].counter, "two key limits never share a counter");
        assert!(applied[1].counter.ends_with(".c:7"), "{}", applied[1].counter);
    }
}
