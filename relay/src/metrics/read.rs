//! Reading the registry back: [`Reading`] is every series' value at one instant (one
//! `gather`, the same values `GET /metrics` would show then), so code inside the relay that
//! wants a figure — the admin console's once-a-second sampler, its stats report — reads the one
//! registry instead of keeping counters of its own.

use std::collections::HashMap;

use prometheus::proto::{MetricFamily, MetricType};

/// A histogram at one instant: its bucket bounds (`le`, seconds for the latency histograms) and
/// the cumulative count of each, then the total (the `+Inf` bucket).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets {
    pub bounds: Vec<f64>,
    /// One per bound, then the total: `bounds.len() + 1` counts.
    pub cumulative: Vec<u64>,
}

impl Buckets {
    /// The `q` quantile of the observations made between `before` and `self` (two readings of
    /// the same histogram), interpolated linearly inside its bucket (as Prometheus'
    /// `histogram_quantile` does); `None` without observations. Observations above the last
    /// bound report that bound.
    pub fn quantile_since(&self, before: &Buckets, q: f64) -> Option<f64> {
        let at = |b: &Buckets, i: usize| b.cumulative.get(i).copied().unwrap_or(0);
        let delta = |i: usize| at(self, i).saturating_sub(at(before, i));
        let total = delta(self.bounds.len());
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let i = (0..=self.bounds.len()).find(|&i| delta(i) as f64 >= rank)?;
        let lower = if i == 0 { 0.0 } else { self.bounds[i - 1] };
        let Some(&upper) = self.bounds.get(i) else { return Some(lower) };
        let below = if i == 0 { 0 } else { delta(i - 1) };
        let inside = (delta(i) - below) as f64;
        Some(lower + (upper - lower) * ((rank - below as f64) / inside).clamp(0.0, 1.0))
    }
}

/// One series: its labels (name, value) and its value or buckets.
#[derive(Debug, Clone)]
struct Series {
    labels: Vec<(String, String)>,
    value: f64,
    buckets: Option<Buckets>,
}

/// Every series of the registry at one instant, by full name (`realtime_...`).
#[derive(Debug, Clone, Default)]
pub struct Reading {
    families: HashMap<String, Vec<Series>>,
}

impl Reading {
    /// The reading of gathered families.
    pub fn of(families: Vec<MetricFamily>) -> Self {
        let mut out = HashMap::new();
        for f in families {
            let kind = f.get_field_type();
            let series = f
                .get_metric()
                .iter()
                .map(|m| {
                    let labels =
                        m.get_label().iter().map(|l| (l.name().to_string(), l.value().to_string())).collect();
                    let (value, buckets) = match kind {
                        MetricType::COUNTER => (m.get_counter().get_value(), None),
                        MetricType::GAUGE => (m.get_gauge().get_value(), None),
                        MetricType::HISTOGRAM => {
                            let h = m.get_histogram();
                            let bounds = h.get_bucket().iter().map(|b| b.upper_bound()).collect();
                            let mut cumulative: Vec<u64> =
                                h.get_bucket().iter().map(|b| b.cumulative_count()).collect();
                            cumulative.push(h.get_sample_count());
                            (h.get_sample_count() as f64, Some(Buckets { bounds, cumulative }))
                        }
                        _ => (0.0, None),
                    };
                    Series { labels, value, buckets }
                })
                .collect();
            out.insert(f.name().to_string(), series);
        }
        Reading { families: out }
    }

    /// The sum of the values of series `name` whose labels include every pair of `labels`
    /// (all of its series for `&[]`); `None` when the registry has no such series. A
    /// histogram's value is its count of observations.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<&Series> = self
            .families
            .get(name)?
            .iter()
            .filter(|s| labels.iter().all(|(k, v)| s.labels.iter().any(|(n, x)| n == k && x == v)))
            .collect();
        (!matching.is_empty()).then(|| matching.iter().map(|s| s.value).sum())
    }

    /// [`Reading::value`], 0 for a missing series: for counters, which exist from start-up.
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }

    /// The buckets of histogram `name` (its first series).
    pub fn buckets(&self, name: &str) -> Option<&Buckets> {
        self.families.get(name)?.iter().find_map(|s| s.buckets.as_ref())
    }
}
