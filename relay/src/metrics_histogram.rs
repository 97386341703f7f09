//! A lock-free latency histogram (seconds) and its Prometheus text rendering.
//!
//! The `prometheus` crate's own histogram cannot be filled from a snapshot, and `/metrics`
//! renders from a [`super::Snapshot`] into a fresh registry per scrape, so the relay keeps its
//! latency distributions here: one atomic counter per bucket (non-cumulative; the snapshot makes
//! them cumulative), the observation count and the sum in nanoseconds. Every histogram uses the
//! same buckets, [`LATENCY_BUCKETS`] (0.5 ms to 60 s), so they compare at a glance.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (`le`, seconds) of every latency histogram; `+Inf` follows implicitly.
pub const LATENCY_BUCKETS: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Microseconds between 1970-01-01 and 2000-01-01, the Postgres epoch of pgoutput timestamps.
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// Observations per bucket; lock-free, shared by reference.
#[derive(Debug, Default)]
pub struct Histogram {
    /// `counts[i]`: observations in `(LATENCY_BUCKETS[i-1], LATENCY_BUCKETS[i]]`; the last one
    /// is `(60 s, +Inf)`.
    counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        self.observe_n(d, 1);
    }

    /// Records `n` observations of the same value (one per subscriber a frame was queued to).
    pub fn observe_n(&self, d: Duration, n: u64) {
        if n == 0 {
            return;
        }
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS.partition_point(|le| *le < secs);
        self.counts[i].fetch_add(n, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos.saturating_mul(n), Ordering::Relaxed);
    }

    /// The histogram's values now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0u64; LATENCY_BUCKETS.len() + 1];
        let mut total = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            total += c.load(Ordering::Relaxed);
            cumulative[i] = total;
        }
        HistogramSnapshot { cumulative, sum_nanos: self.sum_nanos.load(Ordering::Relaxed) }
    }
}

/// A histogram read at one moment: cumulative bucket counts (the last is `+Inf`, the count).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub cumulative: [u64; LATENCY_BUCKETS.len() + 1],
    pub sum_nanos: u64,
}

impl HistogramSnapshot {
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.cumulative[LATENCY_BUCKETS.len()]
    }

    /// Appends the family in the Prometheus text format (`name` without the `realtime_` prefix).
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let name = format!("realtime_{name}");
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (le, n) in LATENCY_BUCKETS.iter().zip(self.cumulative) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count());
        let _ = writeln!(out, "{name}_sum {}", self.sum_nanos as f64 / 1e9);
        let _ = writeln!(out, "{name}_count {}", self.count());
    }
}

/// Time from a pgoutput commit timestamp (microseconds since 2000-01-01) to now, by this
/// host's clock: zero when the clocks disagree the other way. `None` for a missing timestamp.
pub fn since_pg_timestamp(commit_time_micros: i64) -> Option<Duration> {
    if commit_time_micros == 0 {
        return None;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?;
    let now_micros = i64::try_from(now.as_micros()).ok()?;
    let elapsed = now_micros - (commit_time_micros + PG_EPOCH_UNIX_MICROS);
    Some(Duration::from_micros(u64::try_from(elapsed).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_at_or_above_them() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500)); // exactly 0.0005: le="0.0005"
        h.observe_n(Duration::from_millis(3), 2); // le="0.005"
        h.observe(Duration::from_secs(120)); // +Inf only
        let s = h.snapshot();
        assert_eq!(s.cumulative[0], 1);
        assert_eq!(s.cumulative[2], 1, "nothing between 1 ms and 2.5 ms");
        assert_eq!(s.cumulative[3], 3);
        assert_eq!(s.cumulative[LATENCY_BUCKETS.len() - 1], 3, "120 s is above the last bound");
        assert_eq!(s.count(), 4);
        assert_eq!(s.sum_nanos, 500_000 + 2 * 3_000_000 + 120_000_000_000);
    }

    #[test]
    fn renders_cumulative_buckets_sum_and_count() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(20));
        h.observe_n(Duration::from_millis(0), 0);
        let mut out = String::new();
        h.snapshot().render(&mut out, "x_seconds", "Help.");
        assert!(out.starts_with("# HELP realtime_x_seconds Help.\n# TYPE realtime_x_seconds histogram\n"));
        assert!(out.contains("realtime_x_seconds_bucket{le=\"0.01\"} 0\n"), "{out}");
        assert!(out.contains("realtime_x_seconds_bucket{le=\"0.025\"} 1\n"), "{out}");
        assert!(out.contains("realtime_x_seconds_bucket{le=\"+Inf\"} 1\n"), "{out}");
        assert!(out.contains("realtime_x_seconds_sum 0.02\n"), "{out}");
        assert!(out.ends_with("realtime_x_seconds_count 1\n"), "{out}");
    }

    #[test]
    fn pg_timestamps_convert_from_the_2000_epoch() {
        assert_eq!(since_pg_timestamp(0), None);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let two_s_ago = now.as_micros() as i64 - PG_EPOCH_UNIX_MICROS - 2_000_000;
        let d = since_pg_timestamp(two_s_ago).unwrap();
        assert!(d >= Duration::from_secs(2) && d < Duration::from_secs(60), "{d:?}");
        let future = now.as_micros() as i64 - PG_EPOCH_UNIX_MICROS + 10_000_000;
        assert_eq!(since_pg_timestamp(future), Some(Duration::ZERO), "clock skew clamps to zero");
    }
}
