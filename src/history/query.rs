//! What a reader of the history asks for: filters on topic, task name, status, time, task id and
//! what held a task back (`held`: its `held` records and the runs that waited for it), and how many of the newest matches to keep; `since` written as `10m`, `2h`, `7d`. Pure.

use super::record::{status_named, Hold, Record};

/// The most records a read returns.
pub const MAX_LIMIT: usize = 1_000_000;
/// Records a read returns when no limit is given.
pub const DEFAULT_LIMIT: usize = 1000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub topic: Option<String>,
    pub task: Option<String>,
    /// `Worker::STATE_*`.
    pub status: Option<i64>,
    /// Records of runs that ended at or after this time (milliseconds since the epoch).
    pub since_ms: Option<i64>,
    /// The newest this many matches (default [`DEFAULT_LIMIT`]).
    pub limit: Option<usize>,
    /// Only the records of this task (all its attempts).
    pub id: Option<String>,
    /// Only the records of tasks this held back (not started then, or started after waiting for it).
    pub held: Option<Hold>,
}

impl Query {
    pub fn matches(&self, r: &Record) -> bool {
        self.topic.as_ref().is_none_or(|t| *t == r.topic)
            && self.task.as_ref().is_none_or(|t| *t == r.task)
            && self.status.is_none_or(|s| s == r.status)
            && self.since_ms.is_none_or(|s| r.end_ms >= s)
            && self.id.as_ref().is_none_or(|id| *id == r.id)
            && self.held.is_none_or(|h| r.held == Some(h))
    }

    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIMIT)
    }

    /// Builds a query from filter entries as a person writes them (`status` => `fail`, `since` =>
    /// `10m`); an unknown key or a bad value is an error saying which.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>, now_ms: i64) -> Result<Query, String> {
        let mut q = Query::default();
        for (key, v) in pairs {
            match key {
                "topic" => q.topic = Some(v),
                "task" => q.task = Some(v),
                "id" => q.id = Some(v),
                "status" => q.status = Some(status_named(&v)?),
                "held" => q.held = Some(Hold::named(&v)?),
                "since" => q.since_ms = Some(now_ms - since_ms(&v)?),
                "limit" => {
                    q.limit =
                        Some(
                            v.trim().parse::<usize>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(
                                || format!("limit must be a whole number from 1 to {MAX_LIMIT}, got '{v}'"),
                            )?,
                        )
                }
                other => {
                    return Err(format!(
                        "unknown history filter '{}': the filters are topic, task, status, since, limit, id, held",
                        crate::rules::printable(other)
                    ))
                }
            }
        }
        Ok(q)
    }
}

/// How far back `since` reaches, in milliseconds: a number of seconds, or a number and a unit
/// (`s`, `m`, `h`, `d`, `w`): `90`, `10m`, `2h`, `7d`.
pub fn since_ms(v: &str) -> Result<i64, String> {
    let t = v.trim();
    let bad = || format!("since must be seconds or a number with a unit s, m, h, d, w (like 10m, 2h, 7d), got '{v}'");
    let (digits, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c),
        Some(_) => (t, 's'),
        None => return Err(bad()),
    };
    let secs = match unit.to_ascii_lowercase() {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return Err(bad()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: i64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(secs * 1000).filter(|ms| *ms <= 100 * 365 * 86_400_000).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::record::{Record, Run};
    use crate::wire::TaskMsg;

    #[test]
    fn since_values() {
        let table = [("90", 90_000), ("10m", 600_000), ("2h", 7_200_000), ("7d", 604_800_000), ("1w", 604_800_000)];
        for (v, ms) in table {
            assert_eq!(since_ms(v), Ok(ms), "{v}");
        }
        assert_eq!(since_ms(" 10M "), Ok(600_000));
        for bad in ["", "m", "-5m", "1.5h", "10x", "ten", "99999999999d"] {
            assert!(since_ms(bad).is_err(), "{bad}");
        }
    }

    fn record(topic: &str, task: &str, status: i64, end_ms: i64) -> Record {
        let run = Run { millis: 1.0, message: "m", class: None, status, end_ms };
        Record::of(&TaskMsg::new(topic, task, serde_json::json!([]), 0), &run, 100, 1, "h")
    }

    #[test]
    fn filters() {
        let r = record("demo", "ping", 1, 5000);
        let pairs =
            |p: &[(&'static str, &str)]| Query::from_pairs(p.iter().map(|(k, v)| (*k, v.to_string())), 10_000).unwrap();
        let table: [(&[(&str, &str)], bool); 10] = [
            (&[], true),
            (&[("topic", "demo")], true),
            (&[("topic", "other")], false),
            (&[("task", "ping")], true),
            (&[("task", "pong")], false),
            (&[("status", "fail")], true),
            (&[("status", "succ")], false),
            (&[("since", "5")], true),
            (&[("since", "4")], false),
            (&[("topic", "demo"), ("task", "ping"), ("status", "1")], true),
        ];
        for (p, want) in table {
            assert_eq!(pairs(p).matches(&r), want, "{p:?}");
        }
        let by_id = Query { id: Some(r.id.clone()), ..Query::default() };
        assert!(by_id.matches(&r));
        assert!(!Query { id: Some("x".into()), ..Query::default() }.matches(&r));
        assert!(!pairs(&[("held", "rate")]).matches(&r));
        let waited = Record { held: Some(Hold::Concurrency), ..r.clone() };
        for (held, want) in [("concurrency", true), ("rate", false), ("paused", false)] {
            assert_eq!(pairs(&[("held", held)]).matches(&waited), want, "{held}");
        }
        assert!(pairs(&[("held", "concurrency"), ("status", "fail")]).matches(&waited));
        assert_eq!(pairs(&[("limit", "5")]).limit(), 5);
        assert_eq!(Query::default().limit(), DEFAULT_LIMIT);
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        let e = |k: &'static str, v: &str| Query::from_pairs([(k, v.to_string())], 0).unwrap_err();
        assert!(e("colour", "red").contains("unknown history filter 'colour'"));
        assert!(e("status", "weird").contains("unknown status 'weird'"));
        assert!(e("held", "slow").contains("unknown hold 'slow'"));
        assert!(e("since", "yesterday").contains("since must be"));
        assert!(e("limit", "0").contains("limit must be"));
        assert!(e("limit", "many").contains("limit must be"));
    }
}
