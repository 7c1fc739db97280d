//! What the stream `<prefix>.cron` holds and what folding it gives: the records (schedule changes, the set
//! declared in code, skips, markers, snapshots), the firings (events carrying their firing record in a
//! header), and [`Fold`], the current schedules with their last fired ticks and counts. No broker here.
//!
//! Records are JSON objects `{"v":1,"type":...,"at":ms,...}`. A firing is an event message whose header
//! `crate::headers::CRON_FIRING` holds a [`Firing`] record (or `crate::headers::CRON_TRIGGER` a fired
//! trigger), so the event and its record are one message.
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
    /// Declared in code by the application of that name (see [`Record::Code`]); none for stored schedules
    /// and for code declared without an owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
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
            owner: None,
            paused: false,
            active_since: Some(at),
            last: None,
            late: 0,
            skipped: 0,
            last_trigger: None,
        }
    }
}

/// The schedules a process declares in code, and the application they belong to (see [`Record::Code`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CodeSet {
    pub owner: Option<String>,
    pub defs: Vec<Def>,
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
    /// Schedules declared in code, appended by a Scheduler when it starts. Without an owner they are added
    /// or changed, and nothing else is touched. With an owner (an application's name) they are that
    /// owner's whole set: the owner's code schedules missing from it are removed. No one else's are.
    Code {
        owner: Option<String>,
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
        self.to_json_as(at, None)
    }

    /// The record with a request id (`"rid"`): its writer reads the stream up to it and learns from the
    /// fold whether it took effect ([`Folder::await_request`]).
    pub fn to_json_as(&self, at: i64, rid: Option<&str>) -> String {
        let mut v = json!({"v": RECORD_VERSION, "type": self.kind(), "at": at});
        let o = v.as_object_mut().expect("an object");
        if let Some(rid) = rid {
            o.insert("rid".into(), json!(rid));
        }
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
            Record::Code { owner, defs } => {
                if let Some(owner) = owner {
                    o.insert("owner".into(), json!(owner));
                }
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
        Record::from_json_with_rid(text).map(|(r, at, _)| (r, at))
    }

    /// (record, its time, its request id if it has one).
    pub fn from_json_with_rid(text: &[u8]) -> Result<(Record, i64, Option<String>), Error> {
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
                owner: o.get("owner").and_then(Value::as_str).map(str::to_string),
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
        Ok((r, at, o.get("rid").and_then(Value::as_str).map(str::to_string)))
    }
}

/// One message of the stream, read.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// A record, its time and its request id.
    Record(Record, i64, Option<String>),
    Fired(Firing),
    Triggered {
        schedule: String,
        id: String,
        fired_at: i64,
    },
}

/// How far past its reader's clock a firing may claim its tick is. A leader fires a tick when it is due, so
/// a genuine record is never ahead of the clock of the leader that wrote it; this is the difference allowed
/// between the clocks of two leaders. A record claiming more (forged, or from a leader whose clock is far
/// off) is ignored, so no record can stop a schedule for longer than this.
pub const MAX_TICK_AHEAD_MS: i64 = 5 * 60 * 1000;

/// Whether a firing claims a tick further ahead of `now` than any leader may.
pub fn claims_too_much(tick: i64, now: i64) -> bool {
    tick > now.saturating_add(MAX_TICK_AHEAD_MS)
}

/// The folded stream: the schedules, the last fired tick of every name ever fired, pending triggers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Fold {
    pub schedules: BTreeMap<String, Entry>,
    /// Last fired tick by name; forgotten when the schedule is removed (a name added again starts afresh:
    /// its window starts at its add, so it cannot fire a tick of the old one again).
    pub last_tick: BTreeMap<String, i64>,
    pub triggers: Vec<Trigger>,
}

impl Fold {
    /// Applies one message; for a change, the verdict: whether it took effect, else why not (for people).
    pub fn apply(&mut self, item: &Item) -> Result<(), String> {
        match item {
            Item::Record(r, at, _) => return self.apply_record(r, *at),
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
        Ok(())
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

    /// Drops what claims a tick beyond `now` + [`MAX_TICK_AHEAD_MS`] (a snapshot is a record like any
    /// other: anyone allowed to publish can write one); returns the names concerned.
    pub fn bound(&mut self, now: i64) -> Vec<String> {
        let bad: Vec<String> =
            self.last_tick.iter().filter(|(_, t)| claims_too_much(**t, now)).map(|(n, _)| n.clone()).collect();
        for name in &bad {
            self.last_tick.remove(name);
            if let Some(e) = self.schedules.get_mut(name) {
                e.last = None;
            }
        }
        bad
    }

    /// The schedules declared in code by `owner`: its others removed (when it names itself), each
    /// declared one put in place; the code wins over a stored schedule of the same name.
    fn apply_code(&mut self, owner: &Option<String>, defs: &[Def], at: i64) {
        if owner.is_some() {
            self.schedules.retain(|name, e| {
                e.source == Source::Stored || e.owner != *owner || defs.iter().any(|d| d.name == *name)
            });
        }
        for def in defs {
            match self.schedules.get_mut(&def.name) {
                // Declared in code again, or under the name of a stored schedule: the code wins.
                Some(e) => {
                    e.def = def.clone();
                    e.source = Source::Code;
                    e.owner = owner.clone();
                }
                None => {
                    let mut e = Entry::new(def.clone(), Source::Code, at);
                    e.owner = owner.clone();
                    self.schedules.insert(def.name.clone(), e);
                }
            }
        }
    }

    fn apply_record(&mut self, r: &Record, at: i64) -> Result<(), String> {
        let missing = |name: &str| format!("no schedule is named '{name}'");
        match r {
            Record::Add { def } => {
                // A name taken (two adds raced): the first in the stream wins, the others are refused.
                if self.schedules.contains_key(&def.name) {
                    return Err(format!("a schedule named '{}' exists already", def.name));
                }
                self.schedules.insert(def.name.clone(), Entry::new(def.clone(), Source::Stored, at));
            }
            Record::Update { def } => match self.schedules.get_mut(&def.name) {
                Some(e) if e.source == Source::Stored => e.def = def.clone(),
                Some(_) => {
                    return Err(format!(
                        "schedule '{}' is declared in code: change it there (it can be paused)",
                        def.name
                    ))
                }
                None => return Err(missing(&def.name)),
            },
            Record::Remove { name } => {
                if self.schedules.remove(name).is_none() {
                    return Err(missing(name));
                }
                self.triggers.retain(|t| t.schedule != *name);
                self.last_tick.remove(name);
            }
            Record::Pause { name } => match self.schedules.get_mut(name) {
                Some(e) => e.paused = true,
                None => return Err(missing(name)),
            },
            Record::Resume { name } => match self.schedules.get_mut(name) {
                Some(e) => {
                    if e.paused {
                        e.paused = false;
                        e.active_since = Some(at);
                    }
                }
                None => return Err(missing(name)),
            },
            Record::Trigger { name, id } => {
                if !self.schedules.contains_key(name) {
                    return Err(missing(name));
                }
                self.triggers.push(Trigger { schedule: name.clone(), id: id.clone(), at });
            }
            Record::Code { owner, defs } => self.apply_code(owner, defs, at),
            Record::Skipped { name, count, .. } => {
                if let Some(e) = self.schedules.get_mut(name) {
                    e.skipped += count;
                }
            }
            Record::Marker { .. } | Record::Snapshot { .. } => {}
        }
        Ok(())
    }
}

/// Folds messages in stream order, from offset 0 or from anywhere later (see the module's text), as seen by
/// a reader whose clock reads `now`: a record's time is taken as at most `now` (a writer's clock ahead
/// cannot put a change in the future), and a firing that claims too much ([`claims_too_much`]) is ignored.
#[derive(Debug)]
pub struct Folder {
    pub fold: Fold,
    /// The state is whole: reading began at offset 0, or a snapshot was met.
    pub complete: bool,
    now: i64,
    started: bool,
    /// Read before any snapshot, when reading began after offset 0.
    before: Vec<(u64, Item)>,
    /// The request id waited for, and once it is folded, its verdict.
    awaited: Option<String>,
    pub verdict: Option<Result<(), String>>,
    /// What was ignored and why, for the log.
    pub ignored: Vec<String>,
}

impl Folder {
    pub fn new(now: i64) -> Folder {
        Folder {
            fold: Fold::default(),
            complete: false,
            now,
            started: false,
            before: Vec::new(),
            awaited: None,
            verdict: None,
            ignored: Vec::new(),
        }
    }

    /// Keeps the verdict of the change with request id `rid` when it is folded.
    pub fn await_request(&mut self, rid: &str) {
        self.awaited = Some(rid.to_string());
    }

    /// The offset of a message read, readable or not: where reading began decides whether the fold is
    /// whole without a snapshot, so a first message that cannot be read still counts.
    pub fn seen(&mut self, offset: u64) {
        if !self.started {
            self.started = true;
            self.complete = offset == 0;
        }
    }

    pub fn push(&mut self, offset: u64, item: Item) {
        self.seen(offset);
        let item = match item {
            Item::Record(r, at, rid) => Item::Record(r, at.min(self.now), rid),
            Item::Fired(f) if claims_too_much(f.tick, self.now) => {
                self.ignored.push(format!(
                    "a firing of '{}' at offset {offset}: its tick {} is more than {} s ahead",
                    f.schedule,
                    f.tick,
                    MAX_TICK_AHEAD_MS / 1000
                ));
                return;
            }
            other => other,
        };
        if self.complete {
            self.apply(&item);
            return;
        }
        if let Item::Record(Record::Snapshot { through, state }, _, _) = &item {
            self.fold = (**state).clone();
            for name in self.fold.bound(self.now) {
                self.ignored
                    .push(format!("the last tick of '{name}' in the snapshot at offset {offset}: too far ahead"));
            }
            for (o, it) in std::mem::take(&mut self.before) {
                if o > *through {
                    self.apply(&it);
                }
            }
            self.complete = true;
            return;
        }
        self.before.push((offset, item));
    }

    /// Read from the first message the stream still has, up to the marker, without meeting a snapshot: what
    /// retention deleted is gone for every reader, so the records read are the whole state there is.
    /// Folds them and says whether it had to (the caller logs it).
    pub fn finish_from_first(&mut self) -> bool {
        if self.complete {
            return false;
        }
        for (_, it) in std::mem::take(&mut self.before) {
            self.apply(&it);
        }
        self.complete = true;
        true
    }

    fn apply(&mut self, item: &Item) {
        let verdict = self.fold.apply(item);
        if let Item::Record(_, _, Some(rid)) = item {
            if self.awaited.as_deref() == Some(rid.as_str()) {
                self.verdict = Some(verdict);
            }
        }
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
            Record::Code { owner: None, defs: vec![def("c")] },
            Record::Code { owner: Some("billing".into()), defs: vec![] },
            Record::Skipped { name: "a".into(), count: 3, oldest: Some(1), newest: Some(3) },
            Record::Marker { id: "m".into() },
            Record::Snapshot { through: 7, state: Box::default() },
        ];
        for r in records {
            assert_eq!(Record::from_json(r.to_json(5).as_bytes()).unwrap(), (r.clone(), 5), "{}", r.kind());
            let with = Record::from_json_with_rid(r.to_json_as(5, Some("q1")).as_bytes()).unwrap();
            assert_eq!(with, (r.clone(), 5, Some("q1".to_string())), "{}", r.kind());
        }
        for bad in
            [&b"{"[..], b"[]", br#"{"v":2,"type":"add"}"#, br#"{"v":1,"type":"what"}"#, br#"{"v":1,"type":"remove"}"#]
        {
            assert_eq!(Record::from_json(bad).unwrap_err().kind(), ErrorKind::Record);
        }
    }

    fn rec(r: Record, at: i64) -> Item {
        Item::Record(r, at, None)
    }

    #[test]
    fn folding_changes_firings_and_code() {
        let mut f = Fold::default();
        f.apply(&rec(Record::Add { def: def("a") }, 10)).unwrap();
        f.apply(&rec(Record::Code { owner: None, defs: vec![def("c")] }, 11)).unwrap();
        f.apply(&rec(Record::Pause { name: "c".into() }, 12)).unwrap();
        assert!(f.schedules["c"].paused);
        f.apply(&rec(Record::Resume { name: "c".into() }, 20)).unwrap();
        assert_eq!((f.schedules["c"].paused, f.schedules["c"].active_since), (false, Some(20)));
        assert!(f.fired(&Firing::new("a", 1000, 1001, false)));
        assert!(!f.fired(&Firing::new("a", 1000, 1002, false)), "the same tick again");
        f.apply(&Item::Fired(Firing::new("a", 2000, 2500, true))).unwrap();
        assert_eq!((f.schedules["a"].late, f.schedules["a"].last.as_ref().unwrap().tick), (1, 2000));
        f.apply(&rec(Record::Code { owner: None, defs: vec![] }, 31)).unwrap();
        assert!(f.schedules.contains_key("c"), "an empty set without an owner removes nothing");
        f.apply(&rec(Record::Remove { name: "c".into() }, 30)).unwrap();
        assert!(!f.schedules.contains_key("c"), "a code schedule is removed by an explicit remove");
        f.apply(&rec(Record::Remove { name: "a".into() }, 32)).unwrap();
        assert!(f.schedules.is_empty());
        assert!(!f.last_tick.contains_key("a"), "remove forgets the last tick");
        f.apply(&rec(Record::Add { def: def("a") }, 40)).unwrap();
        assert_eq!((f.schedules["a"].last.as_ref(), f.schedules["a"].active_since), (None, Some(40)), "afresh");
    }

    #[test]
    fn code_sets_belong_to_their_owner() {
        let code = |owner: Option<&str>, names: &[&str]| {
            rec(Record::Code { owner: owner.map(str::to_string), defs: names.iter().map(|n| def(n)).collect() }, 1)
        };
        let mut f = Fold::default();
        f.apply(&rec(Record::Add { def: def("s") }, 1)).unwrap();
        f.apply(&code(Some("app1"), &["x", "y"])).unwrap();
        f.apply(&code(Some("app2"), &["z"])).unwrap();
        f.apply(&code(None, &["w"])).unwrap();
        let names = |f: &Fold| f.schedules.keys().cloned().collect::<Vec<_>>().join(",");
        assert_eq!(names(&f), "s,w,x,y,z");
        // app1 redeploys without y; app2 stops declaring anything; a script without an owner declares none.
        f.apply(&code(Some("app1"), &["x"])).unwrap();
        f.apply(&code(None, &[])).unwrap();
        assert_eq!(names(&f), "s,w,x,z");
        f.apply(&code(Some("app2"), &[])).unwrap();
        assert_eq!(names(&f), "s,w,x");
        assert_eq!(f.schedules["x"].owner.as_deref(), Some("app1"));
        // A name declared by another owner moves to it.
        f.apply(&code(Some("app3"), &["x"])).unwrap();
        f.apply(&code(Some("app1"), &[])).unwrap();
        assert_eq!((names(&f), f.schedules["x"].owner.as_deref()), ("s,w,x".to_string(), Some("app3")));
    }

    #[test]
    fn verdicts_tell_whether_a_change_took_effect() {
        let mut f = Fold::default();
        let code = Record::Code { owner: None, defs: vec![def("c")] };
        let cases: Vec<(Record, Result<(), &str>)> = vec![
            (Record::Add { def: def("a") }, Ok(())),
            (Record::Add { def: def("a") }, Err("a schedule named 'a' exists already")),
            (code, Ok(())),
            (Record::Add { def: def("c") }, Err("a schedule named 'c' exists already")),
            (Record::Update { def: def("a") }, Ok(())),
            (Record::Update { def: def("c") }, Err("schedule 'c' is declared in code: change it there")),
            (Record::Update { def: def("b") }, Err("no schedule is named 'b'")),
            (Record::Pause { name: "b".into() }, Err("no schedule is named 'b'")),
            (Record::Resume { name: "b".into() }, Err("no schedule is named 'b'")),
            (Record::Trigger { name: "b".into(), id: "t".into() }, Err("no schedule is named 'b'")),
            (Record::Trigger { name: "a".into(), id: "t".into() }, Ok(())),
            (Record::Remove { name: "a".into() }, Ok(())),
            (Record::Remove { name: "a".into() }, Err("no schedule is named 'a'")),
            (Record::Update { def: def("a") }, Err("no schedule is named 'a'")),
        ];
        for (r, want) in cases {
            let kind = r.kind();
            match (f.apply(&rec(r, 1)), want) {
                (Ok(()), Ok(())) => {}
                (Err(got), Err(want)) => assert!(got.starts_with(want), "{kind}: {got}"),
                (got, want) => panic!("{kind}: {got:?}, wanted {want:?}"),
            }
        }
        assert!(f.triggers.is_empty(), "a removed schedule's triggers go with it");
    }

    #[test]
    fn a_folder_keeps_the_verdict_of_the_request_it_awaits() {
        let mut folder = Folder::new(100);
        folder.await_request("mine");
        folder.push(0, Item::Record(Record::Add { def: def("a") }, 1, Some("theirs".into())));
        assert_eq!(folder.verdict, None);
        folder.push(1, Item::Record(Record::Add { def: def("a") }, 2, Some("mine".into())));
        assert_eq!(folder.verdict, Some(Err("a schedule named 'a' exists already".into())));
    }

    #[test]
    fn a_folder_bounds_times_and_ticks_by_its_clock() {
        let now = 1_000_000_000;
        let mut folder = Folder::new(now);
        folder.push(0, rec(Record::Add { def: def("a") }, now + 600_000));
        assert_eq!(folder.fold.schedules["a"].active_since, Some(now), "a writer's clock ahead is not trusted");
        let forged = Firing::new("a", now + MAX_TICK_AHEAD_MS + 1, now, false);
        folder.push(1, Item::Fired(forged));
        assert_eq!(folder.fold.last_tick.get("a"), None, "a tick too far ahead is ignored");
        assert_eq!(folder.ignored.len(), 1);
        folder.push(2, Item::Fired(Firing::new("a", now + 1000, now, false)));
        assert_eq!(folder.fold.last_tick.get("a"), Some(&(now + 1000)), "a clock a little ahead is allowed");

        // A forged snapshot is bounded too.
        let mut forged = Fold::default();
        forged.apply(&rec(Record::Add { def: def("b") }, 1)).unwrap();
        forged.fired(&Firing::new("b", 4_102_444_800_000, 1, false));
        let mut folder = Folder::new(now);
        folder.push(5, rec(Record::Snapshot { through: 4, state: Box::new(forged) }, 1));
        assert!(folder.complete);
        assert_eq!((folder.fold.last_tick.get("b"), folder.fold.schedules["b"].last.as_ref()), (None, None));
    }

    #[test]
    fn an_unreadable_first_message_still_starts_the_fold() {
        let mut folder = Folder::new(100);
        folder.seen(0);
        folder.push(1, rec(Record::Add { def: def("a") }, 1));
        assert!(folder.complete, "read from offset 0: whole without a snapshot");
        let mut later = Folder::new(100);
        later.seen(7);
        later.push(8, rec(Record::Add { def: def("a") }, 1));
        assert!(!later.complete);
        assert!(later.finish_from_first(), "the start was deleted by retention: what is left is all there is");
        assert!(later.complete && later.fold.schedules.contains_key("a"));
        assert!(!later.finish_from_first());
    }

    #[test]
    fn a_fold_from_the_middle_starts_at_a_snapshot() {
        let mut whole = Fold::default();
        whole.apply(&rec(Record::Add { def: def("a") }, 1)).unwrap();
        let mut folder = Folder::new(100);
        // Read from offset 5: an add not covered by the snapshot (offset 6 > through 5), one covered (4).
        folder.push(5, rec(Record::Add { def: def("b") }, 2));
        folder.push(6, rec(Record::Add { def: def("c") }, 3));
        assert!(!folder.complete);
        folder.push(7, rec(Record::Snapshot { through: 5, state: Box::new(whole) }, 4));
        folder.push(8, rec(Record::Pause { name: "a".into() }, 5));
        assert!(folder.complete);
        let names: Vec<&String> = folder.fold.schedules.keys().collect();
        assert_eq!(names, ["a", "c"]);
        assert!(folder.fold.schedules["a"].paused);
    }
}
