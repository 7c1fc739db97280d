//! A firing: one tick of one schedule, published as an event whose id is derived from the schedule's name and
//! the tick, and recorded so that no scheduler fires that tick again.
//!
//! The event id is the UUIDv5 (RFC 9562, SHA-1) of the name and the tick's epoch milliseconds under a namespace
//! fixed here, written as 32 hex digits like every other ebats id: any process of any version derives the same
//! id for the same tick, so a second publication of a tick is recognisable as a duplicate.
//!
//! Order rule: a tick is fired only if it is later than the last tick recorded for its schedule
//! ([`may_fire`]); records are folded per schedule by keeping the latest tick ([`LastFired`]).

use std::collections::HashMap;

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::error::{shown, Error, ErrorKind};
use super::name::check_name;

/// Version of the record's JSON form.
pub const RECORD_VERSION: i64 = 1;

/// Namespace of firing event ids, fixed forever: changing it changes the id of every future firing.
const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x398d_1592_73bd_4a1a_9537_01d7_39bb_e2a1);

/// The event id of `schedule`'s firing at `tick` (epoch milliseconds).
pub fn event_id(schedule: &str, tick: i64) -> String {
    // The name cannot hold a space, so the key is unambiguous.
    Uuid::new_v5(&EVENT_NAMESPACE, format!("{schedule} {tick}").as_bytes()).simple().to_string()
}

/// Whether `tick` may be fired given the last tick recorded for its schedule.
pub fn may_fire(last_recorded: Option<i64>, tick: i64) -> bool {
    last_recorded.is_none_or(|last| tick > last)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Firing {
    pub schedule: String,
    /// The tick, epoch milliseconds.
    pub tick: i64,
    /// When the event was published, epoch milliseconds.
    pub fired_at: i64,
    /// Fired after its tick was missed, under the catch-up rule.
    pub late: bool,
    pub event_id: String,
}

impl Firing {
    pub fn new(schedule: &str, tick: i64, fired_at: i64, late: bool) -> Self {
        Firing { schedule: schedule.to_string(), tick, fired_at, late, event_id: event_id(schedule, tick) }
    }

    /// Publish time minus tick time, in milliseconds.
    pub fn lateness_ms(&self) -> i64 {
        self.fired_at - self.tick
    }

    /// `{"v":1,"schedule":...,"tick":ms,"fired_at":ms,"late":bool,"event_id":"32 hex"}`
    pub fn to_json(&self) -> String {
        json!({
            "v": RECORD_VERSION,
            "schedule": self.schedule,
            "tick": self.tick,
            "fired_at": self.fired_at,
            "late": self.late,
            "event_id": self.event_id,
        })
        .to_string()
    }

    /// Decodes a record; keys it does not know are ignored (a later version may add some), a wrong version,
    /// a missing or mistyped field, or an event id that does not match the name and tick is refused.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        let bad = |why: String| Error::new(ErrorKind::Record, format!("firing record is invalid: {why}"));
        let value: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON ({e})")))?;
        let o = value.as_object().ok_or_else(|| bad("not a JSON object".into()))?;
        match o.get("v").and_then(Value::as_i64) {
            Some(RECORD_VERSION) => {}
            Some(v) => return Err(bad(format!("version {v} is not supported (this build reads {RECORD_VERSION})"))),
            None => return Err(bad("'v' is missing or not an integer".into())),
        }
        let schedule = field(o, "schedule", Value::as_str, "a string").map_err(bad)?;
        check_name(schedule).map_err(|e| bad(e.message().to_string()))?;
        let tick = field(o, "tick", Value::as_i64, "an integer").map_err(bad)?;
        let fired_at = field(o, "fired_at", Value::as_i64, "an integer").map_err(bad)?;
        let late = field(o, "late", Value::as_bool, "a boolean").map_err(bad)?;
        let id = field(o, "event_id", Value::as_str, "a string").map_err(bad)?;
        let firing = Firing::new(schedule, tick, fired_at, late);
        if firing.event_id != id {
            return Err(bad(format!(
                "event_id '{}' is not the id of schedule '{schedule}' at tick {tick} ('{}')",
                shown(id),
                firing.event_id
            )));
        }
        Ok(firing)
    }
}

fn field<'a, T>(
    o: &'a Map<String, Value>,
    key: &str,
    get: impl Fn(&'a Value) -> Option<T>,
    what: &str,
) -> Result<T, String> {
    o.get(key).and_then(get).ok_or_else(|| format!("'{key}' is missing or not {what}"))
}

/// The latest recorded firing of each schedule.
#[derive(Clone, Debug, Default)]
pub struct LastFired {
    by_schedule: HashMap<String, Firing>,
}

impl LastFired {
    /// Keeps `firing` if it is the latest tick seen for its schedule; returns whether it was kept.
    pub fn record(&mut self, firing: Firing) -> bool {
        if !may_fire(self.tick(&firing.schedule), firing.tick) {
            return false;
        }
        self.by_schedule.insert(firing.schedule.clone(), firing);
        true
    }

    pub fn get(&self, schedule: &str) -> Option<&Firing> {
        self.by_schedule.get(schedule)
    }

    pub fn tick(&self, schedule: &str) -> Option<i64> {
        self.get(schedule).map(|f| f.tick)
    }

    /// Forgets a removed schedule.
    pub fn remove(&mut self, schedule: &str) {
        self.by_schedule.remove(schedule);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: i64 = 1_782_000_000_000;

    #[test]
    fn event_ids_are_stable_and_distinct() {
        // Pinned: these ids are what every version must derive (Python's uuid.uuid5 gives the same).
        assert_eq!(event_id("nightly", TICK), "dab74d306fae5f9d8486286897e7e3aa");
        assert_eq!(event_id("nightly", 0), "346ab310cdc2522f86a30039d669db0c");
        let ids = [
            event_id("nightly", TICK),
            event_id("nightly", TICK + 1000),
            event_id("nightly2", TICK),
            event_id("Nightly", TICK),
            event_id("nightly", -TICK),
        ];
        for (i, a) in ids.iter().enumerate() {
            assert_eq!(a.len(), 32);
            assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(ids[i + 1..].iter().all(|b| a != b), "{a} repeats");
        }
    }

    #[test]
    fn order_rule() {
        assert!(may_fire(None, TICK));
        assert!(may_fire(Some(TICK - 1000), TICK));
        assert!(!may_fire(Some(TICK), TICK));
        assert!(!may_fire(Some(TICK + 1000), TICK));
    }

    #[test]
    fn json_round_trip() {
        let f = Firing::new("nightly", TICK, TICK + 12, false);
        assert_eq!(Firing::from_json(&f.to_json()).unwrap(), f);
        assert_eq!(f.lateness_ms(), 12);
        let late = Firing::new("n.x-1", TICK, TICK + 45_000, true);
        assert_eq!(Firing::from_json(&late.to_json()).unwrap(), late);
        let v: Value = serde_json::from_str(&f.to_json()).unwrap();
        assert_eq!(
            v,
            json!({"v": 1, "schedule": "nightly", "tick": TICK, "fired_at": TICK + 12, "late": false,
                   "event_id": event_id("nightly", TICK)})
        );
        let mut extra = v.as_object().unwrap().clone();
        extra.insert("host".into(), json!("a"));
        assert_eq!(Firing::from_json(&Value::Object(extra).to_string()).unwrap(), f);
    }

    #[test]
    fn bad_records_are_refused_with_the_reason() {
        let good = Firing::new("nightly", TICK, TICK + 5, false).to_json();
        let with = |key: &str, value: Value| {
            let mut v: Value = serde_json::from_str(&good).unwrap();
            v[key] = value;
            v.to_string()
        };
        let without = |key: &str| {
            let mut v: Value = serde_json::from_str(&good).unwrap();
            v.as_object_mut().unwrap().remove(key);
            v.to_string()
        };
        let cases = [
            ("{".to_string(), "not JSON"),
            ("[1]".to_string(), "not a JSON object"),
            (with("v", json!(2)), "version 2 is not supported"),
            (without("v"), "'v' is missing"),
            (without("tick"), "'tick' is missing or not an integer"),
            (with("tick", json!("1")), "'tick' is missing or not an integer"),
            (with("fired_at", json!(1.5)), "'fired_at' is missing or not an integer"),
            (with("late", json!(0)), "'late' is missing or not a boolean"),
            (with("schedule", json!("a b")), "schedule name 'a b' is invalid"),
            (without("event_id"), "'event_id' is missing"),
            (with("tick", json!(TICK + 1000)), "is not the id of schedule 'nightly' at tick"),
        ];
        for (text, want) in cases {
            let e = Firing::from_json(&text).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Record);
            assert!(e.message().starts_with("firing record is invalid: "), "{e}");
            assert!(e.message().contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn last_fired_keeps_the_latest_tick_per_schedule() {
        let mut last = LastFired::default();
        assert!(last.record(Firing::new("a", TICK, TICK, false)));
        assert!(last.record(Firing::new("b", TICK - 5000, TICK, false)));
        assert!(!last.record(Firing::new("a", TICK, TICK + 1, false)), "the same tick again");
        assert!(!last.record(Firing::new("a", TICK - 1000, TICK + 2, true)), "an older tick");
        assert!(last.record(Firing::new("a", TICK + 1000, TICK + 1000, false)));
        assert_eq!(last.tick("a"), Some(TICK + 1000));
        assert_eq!(last.tick("b"), Some(TICK - 5000));
        assert_eq!(last.get("a").unwrap().fired_at, TICK + 1000);
        last.remove("a");
        assert_eq!(last.tick("a"), None);
    }
}
