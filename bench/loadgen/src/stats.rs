//! Per-thread recorders (one per tokio worker thread, so recording never contends), merged by
//! the main task when it reads progress or builds the report.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

/// Highest recordable latency: one hour in µs (larger values saturate).
const MAX_US: u64 = 3_600_000_000;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// Microseconds since the Unix epoch (the clock the publisher stamps into payloads).
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// What one worker thread saw.
pub struct Recorder {
    /// Send time (just before the publish call) → receive.
    pub send_to_recv: Histogram<u64>,
    /// Publish call returned (commit acknowledged) → receive; 0 when the delivery came first.
    pub ack_to_recv: Histogram<u64>,
    /// Measured deliveries (warm-up messages excluded).
    pub deliveries: u64,
    /// Deliveries of warm-up messages (not measured).
    pub warmup_deliveries: u64,
    /// Deliveries whose commit acknowledgement had not reached the publisher yet.
    pub before_ack: u64,
    /// Text bytes of the measured deliveries (frame size as sent by the server).
    pub bytes: u64,
}

impl Recorder {
    fn new() -> Self {
        Self {
            send_to_recv: histogram(),
            ack_to_recv: histogram(),
            deliveries: 0,
            warmup_deliveries: 0,
            before_ack: 0,
            bytes: 0,
        }
    }
}

fn registry() -> &'static Mutex<Vec<Arc<Mutex<Recorder>>>> {
    static R: OnceLock<Mutex<Vec<Arc<Mutex<Recorder>>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

thread_local! {
    static LOCAL: RefCell<Option<Arc<Mutex<Recorder>>>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread's recorder (created and registered on first use).
pub fn with_local<T>(f: impl FnOnce(&mut Recorder) -> T) -> T {
    LOCAL.with(|cell| {
        let mut slot = cell.borrow_mut();
        let rec = slot.get_or_insert_with(|| {
            let r = Arc::new(Mutex::new(Recorder::new()));
            registry().lock().expect("registry").push(r.clone());
            r
        });
        let mut guard = rec.lock().expect("recorder");
        f(&mut guard)
    })
}

/// Sum of measured deliveries over all threads (cheap enough to poll every few ms).
pub fn deliveries() -> u64 {
    registry().lock().expect("registry").iter().map(|r| r.lock().expect("recorder").deliveries).sum()
}

/// All threads' recorders merged.
pub fn merged() -> Recorder {
    let mut out = Recorder::new();
    for r in registry().lock().expect("registry").iter() {
        let r = r.lock().expect("recorder");
        out.send_to_recv.add(&r.send_to_recv).expect("same bounds");
        out.ack_to_recv.add(&r.ack_to_recv).expect("same bounds");
        out.deliveries += r.deliveries;
        out.warmup_deliveries += r.warmup_deliveries;
        out.before_ack += r.before_ack;
        out.bytes += r.bytes;
    }
    out
}

/// Named counters for rare events (errors, closes, odd frames).
#[derive(Default)]
pub struct Events(Mutex<BTreeMap<String, u64>>);

impl Events {
    pub fn add(&self, what: impl Into<String>) {
        *self.0.lock().expect("events").entry(what.into()).or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().expect("events").clone()
    }
}

/// When each message's publish call returned (µs since the epoch; 0 = not yet), by `seq`: in
/// this process, or in the group's shared file ([`crate::group`]).
pub enum AckTimes {
    Local(Vec<AtomicU64>),
    Group(Arc<crate::group::Group>),
}

impl AckTimes {
    pub fn new(n: usize) -> Self {
        AckTimes::Local((0..n).map(|_| AtomicU64::new(0)).collect())
    }

    pub fn set(&self, seq: u64, us: u64) {
        match self {
            AckTimes::Local(v) => {
                if let Some(a) = v.get(seq as usize) {
                    a.store(us.max(1), Ordering::Release);
                }
            }
            AckTimes::Group(g) => g.set_ack(seq, us),
        }
    }

    pub fn get(&self, seq: u64) -> Option<u64> {
        match self {
            AckTimes::Local(v) => v.get(seq as usize).map(|a| a.load(Ordering::Acquire)).filter(|&v| v != 0),
            AckTimes::Group(g) => g.ack(seq),
        }
    }
}

/// A histogram as `[[value, count], ...]` (the non-empty buckets), so another process can merge
/// it ([`from_buckets`]).
pub fn buckets(h: &Histogram<u64>) -> serde_json::Value {
    let v: Vec<[u64; 2]> = h.iter_recorded().map(|b| [b.value_iterated_to(), b.count_at_value()]).collect();
    serde_json::json!(v)
}

/// Adds [`buckets`] output to `h`.
pub fn from_buckets(h: &mut Histogram<u64>, v: &serde_json::Value) {
    for b in v.as_array().into_iter().flatten() {
        if let (Some(value), Some(count)) = (b[0].as_u64(), b[1].as_u64()) {
            h.saturating_record_n(value.max(1), count);
        }
    }
}

/// p50/p90/p99/p99.9/max/mean of a histogram, in µs, as JSON.
pub fn summary(h: &Histogram<u64>) -> serde_json::Value {
    if h.is_empty() {
        return serde_json::json!(null);
    }
    serde_json::json!({
        "count": h.len(),
        "p50": h.value_at_quantile(0.50),
        "p90": h.value_at_quantile(0.90),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
        "mean": (h.mean() * 10.0).round() / 10.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_merge_into_the_same_percentiles() {
        let (mut a, mut b) = (histogram(), histogram());
        for v in 1..=1000u64 {
            a.record(v * 37).unwrap();
            b.record(v * 1013).unwrap();
        }
        let mut whole = a.clone();
        whole.add(&b).unwrap();
        let mut merged = histogram();
        from_buckets(&mut merged, &buckets(&a));
        from_buckets(&mut merged, &buckets(&b));
        assert_eq!(merged.len(), whole.len());
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(merged.value_at_quantile(q), whole.value_at_quantile(q), "q {q}");
        }
    }

    #[test]
    fn local_ack_times_ignore_seqs_beyond_the_schedule() {
        let acks = AckTimes::new(2);
        acks.set(1, 5);
        acks.set(7, 5);
        assert_eq!((acks.get(0), acks.get(1), acks.get(7)), (None, Some(5), None));
    }
}
