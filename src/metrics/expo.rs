//! The exposition: families of samples gathered at scrape time, written in the Prometheus text
//! format (version 0.0.4) by the prometheus-client crate. Counter names are given without
//! `_total`: the encoder adds it.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::hist::HistSnap;

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
    Hist(HistSnap),
}

pub type Labels = Vec<(String, String)>;

#[derive(Debug, Clone)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<(Labels, Value)>,
}

impl Family {
    pub fn new(name: &'static str, help: &'static str, kind: Kind) -> Family {
        Family { name, help, kind, samples: Vec::new() }
    }

    pub fn add(&mut self, labels: &[(&str, &str)], v: Value) -> &mut Self {
        self.samples.push((labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), v));
        self
    }

    pub fn with(mut self, labels: &[(&str, &str)], v: Value) -> Self {
        self.add(labels, v);
        self
    }
}

/// A builder of label pairs with owned values.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[derive(Debug)]
struct Snapshot(Vec<Family>);

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in self.0.iter().filter(|f| !f.samples.is_empty()) {
            let ty = match f.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
                Kind::Histogram => MetricType::Histogram,
            };
            let mut me = enc.encode_descriptor(f.name, f.help, None, ty)?;
            for (labels, v) in &f.samples {
                let mut e = me.encode_family(labels)?;
                match (f.kind, v) {
                    (Kind::Counter, Value::Int(n)) => e.encode_counter::<NoLabelSet, _, u64>(n, None)?,
                    (Kind::Counter, Value::Float(x)) => e.encode_counter::<NoLabelSet, _, f64>(x, None)?,
                    (Kind::Gauge, Value::Int(n)) => e.encode_gauge(&(*n as i64))?,
                    (Kind::Gauge, Value::Float(x)) => e.encode_gauge(x)?,
                    (Kind::Histogram, Value::Hist(h)) => {
                        e.encode_histogram::<NoLabelSet>(h.sum, h.count(), &h.buckets(), None)?
                    }
                    // A value of the wrong shape for its family is a bug here: leave it out.
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// The text of `/metrics`.
pub fn render(families: Vec<Family>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot(families)));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).expect("writing to a String");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_histograms() {
        let mut h = HistSnap { counts: vec![0; super::super::hist::BOUNDS.len() + 1], sum: 0.0 };
        h.counts[2] = 3;
        h.sum = 0.03;
        let text = render(vec![
            Family::new("ebats_tasks", "Tasks run.", Kind::Counter)
                .with(&[("topic", "t"), ("task", "a\"b"), ("outcome", "succeeded")], Value::Int(7)),
            Family::new("ebats_tasks_in_flight", "Running.", Kind::Gauge).with(&[("topic", "t")], Value::Int(2)),
            Family::new("ebats_task_run_seconds", "Run time.", Kind::Histogram)
                .with(&[("topic", "t"), ("task", "a")], Value::Hist(h)),
            Family::new("ebats_empty", "Nothing.", Kind::Gauge),
        ]);
        assert!(text.contains("# TYPE ebats_tasks_total counter\n"), "{text}");
        assert!(text.contains("ebats_tasks_total{topic=\"t\",task=\"a\\\"b\",outcome=\"succeeded\"} 7\n"), "{text}");
        assert!(text.contains("ebats_tasks_in_flight{topic=\"t\"} 2\n"), "{text}");
        assert!(text.contains("ebats_task_run_seconds_bucket{topic=\"t\",task=\"a\",le=\"0.005\"} 0\n"), "{text}");
        assert!(text.contains("ebats_task_run_seconds_bucket{topic=\"t\",task=\"a\",le=\"0.01\"} 3\n"), "{text}");
        assert!(text.contains("ebats_task_run_seconds_bucket{topic=\"t\",task=\"a\",le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("ebats_task_run_seconds_count{topic=\"t\",task=\"a\"} 3\n"), "{text}");
        assert!(!text.contains("ebats_empty"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }
}
