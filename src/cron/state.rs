//! What the stream `<prefix>.cron` holds and what folding it gives: the records (schedule changes, the set
//! declared in code, skips, markers, snapshots), the firings (events carrying their firing record in a
//! header), and [`Fold`], the current schedules with their last fired ticks and counts. No broker here.
//!
//! Records are JSON objects `{"v":1,"type":...,"at":ms,...}`. A firing is an event message whose header
//! [`FIRING_HEADER`] holds a [`Firing`] record (or [`TRIGGER_HEADER`] a fired trigger), so the event and its
//! record are one message.
//!
//! Folding starts at the beginning of the stream (offset 0: every record is applied, snapshots are ignored)
//! or anywhere later, in which case the state is taken from the first snapshot met, and the records read
//! before it that the snapshot does not cover (offset after its `through`) are applied again on top.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::error::{Error, ErrorKind};
use super::firing::{may_fire, Firing};
use super::schedule::Schedule;

pub const RECORD_VERSION: i64 = 1;
/// Header of a firing message: the [`Firing`] record as JSON.
pub const FIRING_HEADER: &str = "x-ebats-cron";
/// Header of a triggered firing: `{"schedule":..,"id":..,"fired_at":ms}`.
pub const TRIGGER_HEADER: &str = "x-ebats-cron-trigger";

/// A schedule as stored: everything needed to rebuild it the same way in any process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Def {
    pub name: String,
    pub expression: String,
    pub event: String,
    /// The event's parameters.
    pub options: Value,
    /// IANA zone name, resolved when the schedule was declared.
    pub timezone: String,
    pub catchup: u32,
}

impl Def {
    /// Checks a declaration (the errors of [`Schedule::parse`]) and resolves its zone and name.
    pub fn declare(
        expression: &str,
        event: &str,
        options: Value,
        settings: &Map<String, Value>,
        default_zone: impl FnOnce() -> Result<chrono_tz::Tz, Error>,
    ) -> Result<(Def, Schedule), Error> {
        let s = Schedule::parse(expression, event, settings, default_zone)?;
        let def = Def {
            name: s.name().to_string(),
            expression: s.expression().as_str().to_string(),
            event: event.to_string(),
            options,
            timezone: s.zone().name().to_string(),
            catchup: s.catchup_secs(),
        };
        Ok((def, s))
    }

    pub fn schedule(&self) -> Result<Schedule, Error> {
        let mut settings = Map::new();
        settings.insert("name".into(), json!(self.name));
        settings.insert("timezone".into(), json!(self.timezone));
        settings.insert("catchup".into(), json!(self.catchup));
        Schedule::parse(&self.expression, &self.event, &settings, || unreachable!("the zone is given"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Code,
    Stored,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Code => "code",
            Source::Stored => "stored",
        }
    }
}

/// The last firing of a schedule, as shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastFire {
    pub tick: i64,
    pub fired_at: i64,
    pub late: bool,
    pub event_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub def: Def,
    pub source: Source,
    pub paused: bool,
    /// When it was added or last resumed (epoch ms).
    pub active_since: Option<i64>,
    pub last: Option<LastFire>,
    pub late: u64,
    pub skipped: u64,
    /// The last trigger fired: (trigger id, fired at).
    pub last_trigger: Option<(String, i64)>,
}

impl Entry {
    fn new(def: Def, source: Source, at: i64) -> Entry {
        Entry {
            def,
            source,
            paused: false,
            active_since: Some(at),
            last: None,
            late: 0,
            skipped: 0,
            last_trigger: None,
        }
    }
}

/// A trigger asked for and not fired yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub schedule: String,
    pub id: String,
    pub at: i64,
}

/// A change to the set of schedules, or a note the leader appends.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Add {
        def: Def,
    },
    Update {
        def: Def,
    },
    Remove {
        name: String,
    },
    Pause {
        name: String,
    },
    Resume {
        name: String,
    },
    Trigger {
        name: String,
        id: String,
    },
    /// The schedules declared in code by the scheduler that leads now: the whole set.
    Code {
        defs: Vec<Def>,
    },
    Skipped {
        name: String,
        count: u64,
        oldest: Option<i64>,
        newest: Option<i64>,
    },
    Marker {
        id: String,
    },
    Snapshot {
        through: u64,
        state: Box<Fold>,
    },
}

impl Record {
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Add { .. } => "add",
            Record::Update { .. } => "update",
            Record::Remove { .. } => "remove",
            Record::Pause { .. } => "pause",
            Record::Resume { .. } => "resume",
            Record::Trigger { .. } => "trigger",
            Record::Code { .. } => "code",
            Record::Skipped { .. } => "skipped",
            Record::Marker { .. } => "marker",
            Record::Snapshot { .. } => "snapshot",
        }
    }

    pub fn to_json(&self, at: i64) -> String {
        let mut v = json!({"v": RECORD_VERSION, "type": self.kind(), "at": at});
        let o = v.as_object_mut().expect("an object");
        match self {
            Record::Add { def } | Record::Update { def } => {
                o.insert("schedule".into(), serde_json::to_value(def).expect("serializable"));
            }
            Record::Remove { name } | Record::Pause { name } | Record::Resume { name } => {
                o.insert("name".into(), json!(name));
            }
            Record::Trigger { name, id } => {
                o.insert("name".into(), json!(name));
                o.insert("id".into(), json!(id));
            }
            Record::Code { defs } => {
                o.insert("schedules".into(), serde_json::to_value(defs).expect("serializable"));
            }
            Record::Skipped { name, count, oldest, newest } => {
                o.insert("name".into(), json!(name));
                o.insert("count".into(), json!(count));
                o.insert("oldest".into(), json!(oldest));
                o.insert("newest".into(), json!(newest));
            }
            Record::Marker { id } => {
                o.insert("id".into(), json!(id));
            }
            Record::Snapshot { through, state } => {
                o.insert("through".into(), json!(through));
                o.insert("state".into(), serde_json::to_value(state).expect("serializable"));
            }
        }
        v.to_string()
    }

    /// (record, its time).
    pub fn from_json(text: &[u8]) -> Result<(Record, i64), Error> {
        let bad = |why: String| Error::new(ErrorKind::Record, format!("schedule record is invalid: {why}"));
        let v: Value = serde_json::from_slice(text).map_err(|e| bad(format!("not JSON ({e})")))?;
        let o = v.as_object().ok_or_else(|| bad("not a JSON object".into()))?;
        match o.get("v").and_then(Value::as_i64) {
            Some(RECORD_VERSION) => {}
            other => return Err(bad(format!("version {other:?} is not supported"))),
        }
        let at = o.get("at").and_then(Value::as_i64).unwrap_or(0);
        let s = |k: &str| -> Result<String, Error> {
            o.get(k).and_then(Value::as_str).map(str::to_string).ok_or_else(|| bad(format!("'{k}' is missing")))
        };
        let de =
            |k: &str| -> Result<Value, Error> { o.get(k).cloned().ok_or_else(|| bad(format!("'{k}' is missing"))) };
        let def =
            |k: &str| -> Result<Def, Error> { serde_json::from_value(de(k)?).map_err(|e| bad(format!("{k}: {e}"))) };
        let r = match o.get("type").and_then(Value::as_str).unwrap_or("") {
            "add" => Record::Add { def: def("schedule")? },
            "update" => Record::Update { def: def("schedule")? },
            "remove" => Record::Remove { name: s("name")? },
            "pause" => Record::Pause { name: s("name")? },
            "resume" => Record::Resume { name: s("name")? },
            "trigger" => Record::Trigger { name: s("name")?, id: s("id")? },
            "code" => Record::Code {
                defs: serde_json::from_value(de("schedules")?).map_err(|e| bad(format!("schedules: {e}")))?,
            },
            "skipped" => Record::Skipped {
                name: s("name")?,
                count: o.get("count").and_then(Value::as_u64).unwrap_or(0),
                oldest: o.get("oldest").and_then(Value::as_i64),
                newest: o.get("newest").and_then(Value::as_i64),
            },
            "marker" => Record::Marker { id: s("id")? },
            "snapshot" => Record::Snapshot {
                through: o.get("through").and_then(Value::as_u64).unwrap_or(0),
                state: Box::new(serde_json::from_value(de("state")?).map_err(|e| bad(format!("state: {e}")))?),
            },
            other => return Err(bad(format!("unknown type '{other}'"))),
        };
        Ok((r, at))
    }
}

/// One message of the stream, read.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Record(Record, i64),
    Fired(Firing),
    Triggered { schedule: String, id: String, fired_at: i64 },
}

/// The folded stream: the schedules, the last fired tick of every name ever fired, pending triggers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Fold {
    pub schedules: BTreeMap<String, Entry>,
    /// Last fired tick by name; kept after a removal, so a name added again never fires a tick twice.
    pub last_tick: BTreeMap<String, i64>,
    pub triggers: Vec<Trigger>,
}

impl Fold {
    pub fn apply(&mut self, item: &Item) {
        match item {
            Item::Record(r, at) => self.apply_record(r, *at),
            Item::Fired(f) => {
                self.fired(f);
            }
            Item::Triggered { schedule, id, fired_at } => {
                self.triggers.retain(|t| t.id != *id);
                if let Some(e) = self.schedules.get_mut(schedule) {
                    e.last_trigger = Some((id.clone(), *fired_at));
                }
            }
        }
    }

    /// Records a firing; false when its tick was already recorded (the order rule).
    pub fn fired(&mut self, f: &Firing) -> bool {
        if !may_fire(self.last_tick.get(&f.schedule).copied(), f.tick) {
            return false;
        }
        self.last_tick.insert(f.schedule.clone(), f.tick);
        if let Some(e) = self.schedules.get_mut(&f.schedule) {
            e.last = Some(LastFire { tick: f.tick, fired_at: f.fired_at, late: f.late, event_id: f.event_id.clone() });
            if f.late {
                e.late += 1;
            }
        }
        true
    }

    fn apply_record(&mut self, r: &Record, at: i64) {
        match r {
            Record::Add { def } => {
                // A name taken (two adds raced) keeps the first.
                if !self.schedules.contains_key(&def.name) {
                    self.schedules.insert(def.name.clone(), Entry::new(def.clone(), Source::Stored, at));
                }
            }
            Record::Update { def } => {
                if let Some(e) = self.schedules.get_mut(&def.name).filter(|e| e.source == Source::Stored) {
                    e.def = def.clone();
                }
            }
            Record::Remove { name } => {
                if self.schedules.get(name).is_some_and(|e| e.source == Source::Stored) {
                    self.schedules.remove(name);
                    self.triggers.retain(|t| t.schedule != *name);
                }
            }
            Record::Pause { name } => {
                if let Some(e) = self.schedules.get_mut(name) {
                    e.paused = true;
                }
            }
            Record::Resume { name } => {
                if let Some(e) = self.schedules.get_mut(name).filter(|e| e.paused) {
                    e.paused = false;
                    e.active_since = Some(at);
                }
            }
            Record::Trigger { name, id } => {
                if self.schedules.contains_key(name) {
                    self.triggers.push(Trigger { schedule: name.clone(), id: id.clone(), at });
                }
            }
            Record::Code { defs } => {
                self.schedules.retain(|name, e| e.source == Source::Stored || defs.iter().any(|d| d.name == *name));
                for def in defs {
                    match self.schedules.get_mut(&def.name) {
                        Some(e) if e.source == Source::Code => e.def = def.clone(),
                        // Declared in code under the name of a stored schedule: the code wins.
                        Some(e) => {
                            e.def = def.clone();
                            e.source = Source::Code;
                        }
                        None => {
                            self.schedules.insert(def.name.clone(), Entry::new(def.clone(), Source::Code, at));
                        }
                    }
                }
            }
            Record::Skipped { name, count, .. } => {
                if let Some(e) = self.schedules.get_mut(name) {
                    e.skipped += count;
                }
            }
            Record::Marker { .. } | Record::Snapshot { .. } => {}
        }
    }
}

/// Folds messages in stream order, from offset 0 or from anywhere later (see the module's text).
#[derive(Debug, Default)]
pub struct Folder {
    pub fold: Fold,
    /// The state is whole: reading began at offset 0, or a snapshot was met.
    pub complete: bool,
    started: bool,
    /// Read before any snapshot, when reading began after offset 0.
    before: Vec<(u64, Item)>,
}

impl Folder {
    pub fn push(&mut self, offset: u64, item: Item) {
        if !self.started {
            self.started = true;
            self.complete = offset == 0;
        }
        if self.complete {
            self.fold.apply(&item);
            return;
        }
        if let Item::Record(Record::Snapshot { through, state }, _) = &item {
            self.fold = (**state).clone();
            for (o, it) in std::mem::take(&mut self.before) {
                if o > *through {
                    self.fold.apply(&it);
                }
            }
            self.complete = true;
            return;
        }
        self.before.push((offset, item));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str) -> Def {
        Def::declare(
            "* * * * * *",
            "tick",
            json!({"a": 1}),
            json!({"name": name, "timezone": "UTC"}).as_object().unwrap(),
            || unreachable!(),
        )
        .unwrap()
        .0
    }

    #[test]
    fn records_round_trip() {
        let records = vec![
            Record::Add { def: def("a") },
            Record::Update { def: def("a") },
            Record::Remove { name: "a".into() },
            Record::Pause { name: "a".into() },
            Record::Resume { name: "a".into() },
            Record::Trigger { name: "a".into(), id: "x".into() },
            Record::Code { defs: vec![def("c")] },
            Record::Skipped { name: "a".into(), count: 3, oldest: Some(1), newest: Some(3) },
            Record::Marker { id: "m".into() },
            Record::Snapshot { through: 7, state: Box::default() },
        ];
        for r in records {
            assert_eq!(Record::from_json(r.to_json(5).as_bytes()).unwrap(), (r.clone(), 5), "{}", r.kind());
        }
        for bad in
            [&b"{"[..], b"[]", br#"{"v":2,"type":"add"}"#, br#"{"v":1,"type":"what"}"#, br#"{"v":1,"type":"remove"}"#]
        {
            assert_eq!(Record::from_json(bad).unwrap_err().kind(), ErrorKind::Record);
        }
    }

    #[test]
    fn folding_changes_firings_and_code() {
        let mut f = Fold::default();
        let rec = |r: Record, at: i64| Item::Record(r, at);
        f.apply(&rec(Record::Add { def: def("a") }, 10));
        f.apply(&rec(Record::Code { defs: vec![def("c")] }, 11));
        f.apply(&rec(Record::Pause { name: "c".into() }, 12));
        assert!(f.schedules["c"].paused);
        f.apply(&rec(Record::Resume { name: "c".into() }, 20));
        assert_eq!((f.schedules["c"].paused, f.schedules["c"].active_since), (false, Some(20)));
        assert!(f.fired(&Firing::new("a", 1000, 1001, false)));
        assert!(!f.fired(&Firing::new("a", 1000, 1002, false)), "the same tick again");
        f.apply(&Item::Fired(Firing::new("a", 2000, 2500, true)));
        assert_eq!((f.schedules["a"].late, f.schedules["a"].last.as_ref().unwrap().tick), (1, 2000));
        f.apply(&rec(Record::Remove { name: "c".into() }, 30));
        assert!(f.schedules.contains_key("c"), "a code schedule is not removed by a record");
        f.apply(&rec(Record::Code { defs: vec![] }, 31));
        assert!(!f.schedules.contains_key("c"), "gone from the code");
        f.apply(&rec(Record::Remove { name: "a".into() }, 32));
        assert!(f.schedules.is_empty());
        assert_eq!(f.last_tick["a"], 2000, "the last tick outlives the schedule");
    }

    #[test]
    fn a_fold_from_the_middle_starts_at_a_snapshot() {
        let mut whole = Fold::default();
        whole.apply(&Item::Record(Record::Add { def: def("a") }, 1));
        let mut folder = Folder::default();
        // Read from offset 5: an add not covered by the snapshot (offset 6 > through 5), one covered (4).
        folder.push(5, Item::Record(Record::Add { def: def("b") }, 2));
        folder.push(6, Item::Record(Record::Add { def: def("c") }, 3));
        assert!(!folder.complete);
        folder.push(7, Item::Record(Record::Snapshot { through: 5, state: Box::new(whole) }, 4));
        folder.push(8, Item::Record(Record::Pause { name: "a".into() }, 5));
        assert!(folder.complete);
        let names: Vec<&String> = folder.fold.schedules.keys().collect();
        assert_eq!(names, ["a", "c"]);
        assert!(folder.fold.schedules["a"].paused);
    }
}
