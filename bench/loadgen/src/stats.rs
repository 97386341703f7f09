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

/// When each message's publish call returned (µs since the epoch; 0 = not yet), by `seq`.
pub struct AckTimes(Vec<AtomicU64>);

impl AckTimes {
    pub fn new(n: usize) -> Self {
        Self((0..n).map(|_| AtomicU64::new(0)).collect())
    }

    pub fn set(&self, seq: u64, us: u64) {
        if let Some(a) = self.0.get(seq as usize) {
            a.store(us, Ordering::Release);
        }
    }

    pub fn get(&self, seq: u64) -> Option<u64> {
        self.0.get(seq as usize).map(|a| a.load(Ordering::Acquire)).filter(|&v| v != 0)
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
