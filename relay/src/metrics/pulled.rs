//! Series whose value lives elsewhere (an atomic the relay's logic already keeps: open
//! connections, replication positions, presence members, ...) and is read when the registry is
//! gathered: a gauge or counter with a reader function, registered once like any other series.
//! (The `prometheus` crate has `PullingGauge`; counters need the same, with the counter type.)

use std::collections::HashMap;
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, Metric, MetricFamily, MetricType};

/// A reader of the current value.
pub type Reader = Arc<dyn Fn() -> f64 + Send + Sync>;

/// A gauge or counter read from `read` at every gather.
#[derive(Clone)]
pub struct Pulled {
    desc: Desc,
    kind: MetricType,
    read: Reader,
}

impl Pulled {
    /// A gauge named `name` (the registry adds its prefix).
    pub fn gauge(name: &str, help: &str, read: Reader) -> prometheus::Result<Self> {
        Self::new(name, help, MetricType::GAUGE, read)
    }

    /// A counter (the value must only grow).
    pub fn counter(name: &str, help: &str, read: Reader) -> prometheus::Result<Self> {
        Self::new(name, help, MetricType::COUNTER, read)
    }

    /// A counter of one value of a label: several with the same name and label and different
    /// values make one series family (the registry merges them when gathered).
    pub fn labeled_counter(
        name: &str,
        help: &str,
        (label, value): (&str, &str),
        read: Reader,
    ) -> prometheus::Result<Self> {
        let labels = HashMap::from([(label.to_string(), value.to_string())]);
        Self::with_labels(name, help, MetricType::COUNTER, labels, read)
    }

    fn new(name: &str, help: &str, kind: MetricType, read: Reader) -> prometheus::Result<Self> {
        Self::with_labels(name, help, kind, HashMap::new(), read)
    }

    fn with_labels(
        name: &str,
        help: &str,
        kind: MetricType,
        labels: HashMap<String, String>,
        read: Reader,
    ) -> prometheus::Result<Self> {
        let desc = Desc::new(name.to_string(), help.to_string(), Vec::new(), labels)?;
        Ok(Self { desc, kind, read })
    }
}

impl Collector for Pulled {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let value = (self.read)();
        let mut metric = match self.kind {
            MetricType::COUNTER => {
                let mut c = Counter::default();
                c.set_value(value);
                let mut m = Metric::default();
                m.set_counter(c);
                m
            }
            _ => {
                let mut g = Gauge::default();
                g.set_value(value);
                Metric::from_gauge(g)
            }
        };
        metric.set_label(self.desc.const_label_pairs.clone());
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(self.kind);
        family.set_metric(vec![metric]);
        vec![family]
    }
}
