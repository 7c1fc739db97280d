//! The tasks an event made, as the history knows them: for each event id asked about, the latest
//! record of each of its tasks (a retried task's last attempt so far). Pure.

use std::collections::{BTreeMap, HashMap};

use super::record::Record;

/// Collects, record by record in stream order, the latest record of each task of the events asked about.
#[derive(Debug, Default)]
pub struct EventTasks {
    /// Event id -> task id -> its latest record, tasks in the order first seen.
    by_event: HashMap<String, (Vec<String>, BTreeMap<String, Record>)>,
}

impl EventTasks {
    pub fn new<'a>(event_ids: impl IntoIterator<Item = &'a str>) -> EventTasks {
        let by_event = event_ids.into_iter().map(|id| (id.to_string(), Default::default())).collect();
        EventTasks { by_event }
    }

    pub fn push(&mut self, r: Record) {
        let Some((order, latest)) = r.event_id.as_ref().and_then(|e| self.by_event.get_mut(e)) else { return };
        if !latest.contains_key(&r.id) {
            order.push(r.id.clone());
        }
        latest.insert(r.id.clone(), r);
    }

    /// The latest record of each task of `event_id`, in the order the tasks first ran.
    pub fn of(&self, event_id: &str) -> Vec<&Record> {
        match self.by_event.get(event_id) {
            Some((order, latest)) => order.iter().filter_map(|id| latest.get(id)).collect(),
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::record::Run;
    use crate::wire::TaskMsg;

    fn record(task: &TaskMsg, attempt: u32, status: i64) -> Record {
        let mut t = task.clone();
        t.attempt = attempt;
        let run = Run { millis: 1.0, message: "m", class: None, status, end_ms: 1 };
        Record::of(&t, &run, 100, 1, "h")
    }

    fn task(name: &str, event_id: Option<&str>) -> TaskMsg {
        let mut t = TaskMsg::new("demo", name, serde_json::json!([]), 0);
        t.event_id = event_id.map(str::to_string);
        t
    }

    #[test]
    fn latest_attempt_of_each_task_of_the_event() {
        let (a, b, other, none) =
            (task("a", Some("e1")), task("b", Some("e1")), task("c", Some("e2")), task("d", None));
        let mut f = EventTasks::new(["e1"]);
        for r in [record(&a, 1, 2), record(&b, 1, 0), record(&other, 1, 1), record(&none, 1, 1), record(&a, 2, 0)] {
            f.push(r);
        }
        let got: Vec<(&str, u32, i64)> = f.of("e1").iter().map(|r| (r.task.as_str(), r.attempt, r.status)).collect();
        assert_eq!(got, [("a", 2, 0), ("b", 1, 0)]);
        assert!(f.of("e2").is_empty(), "not asked about");
        assert!(f.of("e9").is_empty());
    }
}
