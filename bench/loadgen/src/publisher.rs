//! Open-loop publishing: calls are started on a fixed schedule whatever earlier calls are doing
//! (pipelined over a few tokio-postgres connections), each stamped with the wall-clock time
//! taken just before the call is issued. A call is `realtime.publish()` of message `s` to its
//! channel ([`Call::Publish`]), or an INSERT of row `s` for its owner into a watched table
//! ([`Call::Insert`], the changes run).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Semaphore;
use tokio_postgres::{Client, NoTls, Statement};

use crate::stats::{self, AckTimes, Events};

/// Maps a message seq to its channel name.
pub type ChannelOf = Arc<dyn Fn(u64) -> String + Send + Sync>;

/// What one message of the schedule is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `realtime.publish(<channel of s>, 'tick', {s, t, pad})`.
    Publish,
    /// `INSERT INTO <table> (owner, s, t, pad)`, owner = the "channel" of s. The table name is
    /// checked by [`table_name`].
    Insert(String),
}

/// A table name for [`Call::Insert`]: `name` or `schema.name`, lower-case letters,
/// digits and `_` only (it is written into the statement).
pub fn table_name(name: &str) -> Result<String, String> {
    let ok = |p: &str| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() <= 2 && parts.iter().copied().all(ok) {
        Ok(name.to_string())
    } else {
        Err(format!("--table {name:?}: expected name or schema.name of [a-z0-9_]"))
    }
}

impl Call {
    fn sql(&self, batch: usize) -> String {
        match (self, batch) {
            (Call::Publish, 1) => ONE.to_string(),
            (Call::Publish, _) => MANY.to_string(),
            (Call::Insert(t), 1) => format!(
                "INSERT INTO {t} (owner, s, t, pad) VALUES ($1::text, $4::bigint, $2::bigint, repeat('x', $3::int))"
            ),
            (Call::Insert(t), _) => format!(
                "INSERT INTO {t} (owner, s, t, pad) SELECT u.c, u.s, $2::bigint, repeat('x', $3::int) \
                 FROM unnest($1::text[], $4::bigint[]) AS u(c, s)"
            ),
        }
    }
}

pub struct Plan {
    pub call: Call,
    pub database_url: String,
    pub connections: usize,
    /// Messages per second.
    pub rate: f64,
    /// Messages per publish call (one transaction).
    pub batch: usize,
    /// Total messages, warm-up included.
    pub total_msgs: u64,
    pub pad: i32,
    pub channel_of: ChannelOf,
    /// Most calls in flight at once; past it the schedule slips (reported as lag).
    pub max_in_flight: usize,
}

pub struct Outcome {
    /// Messages whose publish call succeeded.
    pub published: u64,
    pub errors: Events,
    /// Duration of each publish call (send → commit acknowledged), µs.
    pub call_us: Histogram<u64>,
    /// Worst lateness of a call start against its schedule, µs.
    pub max_lag_us: u64,
    /// Calls started more than 5 ms late (tokio timers tick in whole milliseconds).
    pub late_calls: u64,
}

const ONE: &str = "SELECT realtime.publish($1::text, 'tick', \
     jsonb_build_object('s', $4::bigint, 't', $2::bigint, 'pad', repeat('x', $3::int)))";
const MANY: &str = "SELECT realtime.publish(u.c, 'tick', \
     jsonb_build_object('s', u.s, 't', $2::bigint, 'pad', repeat('x', $3::int))) \
     FROM unnest($1::text[], $4::bigint[]) AS u(c, s)";

impl Outcome {
    /// A process that did not publish (a follower of a group).
    pub fn none() -> Self {
        Outcome {
            published: 0,
            errors: Events::default(),
            call_us: stats::histogram(),
            max_lag_us: 0,
            late_calls: 0,
        }
    }
}

/// Opens the publishing connections and prepares the statement.
pub async fn connect(plan: &Plan) -> Result<Vec<(Client, Statement)>, tokio_postgres::Error> {
    let mut out = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        let (client, conn) = tokio_postgres::connect(&plan.database_url, NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                eprintln!("publisher connection ended: {e}");
            }
        });
        client.batch_execute("SET realtime.strict_publish = on").await?;
        let stmt = client.prepare(&plan.call.sql(plan.batch)).await?;
        out.push((client, stmt));
    }
    Ok(out)
}

/// Runs the whole schedule, starting at `start`; returns once every call has finished.
pub async fn run(
    plan: Arc<Plan>,
    clients: Vec<(Client, Statement)>,
    acks: Arc<AckTimes>,
    start: Instant,
) -> Outcome {
    let clients: Vec<Arc<(Client, Statement)>> = clients.into_iter().map(Arc::new).collect();
    let calls = plan.total_msgs.div_ceil(plan.batch as u64);
    let interval = plan.batch as f64 / plan.rate;
    let in_flight = Arc::new(Semaphore::new(plan.max_in_flight));
    let published = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let errors = Arc::new(Events::default());
    let call_us = Arc::new(Mutex::new(stats::histogram()));
    let (mut max_lag_us, mut late_calls) = (0u64, 0u64);
    let mut tasks = tokio::task::JoinSet::new();

    for c in 0..calls {
        let due = start + Duration::from_secs_f64(c as f64 * interval);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = in_flight.clone().acquire_owned().await.expect("semaphore open");
        let lag = Instant::now().saturating_duration_since(due).as_micros() as u64;
        max_lag_us = max_lag_us.max(lag);
        late_calls += u64::from(lag > 5000);

        let first = c * plan.batch as u64;
        let last = (first + plan.batch as u64).min(plan.total_msgs);
        let client = clients[(c as usize) % clients.len()].clone();
        let (plan, acks, published, errors, call_us) =
            (plan.clone(), acks.clone(), published.clone(), errors.clone(), call_us.clone());
        tasks.spawn(async move {
            let sent = stats::now_us();
            let res = if plan.batch == 1 {
                let ch = (plan.channel_of)(first);
                let seq = first as i64;
                client.0.query(&client.1, &[&ch, &(sent as i64), &plan.pad, &seq]).await
            } else {
                let chans: Vec<String> = (first..last).map(|s| (plan.channel_of)(s)).collect();
                let seqs: Vec<i64> = (first..last).map(|s| s as i64).collect();
                client.0.query(&client.1, &[&chans, &(sent as i64), &plan.pad, &seqs]).await
            };
            let acked = stats::now_us();
            drop(permit);
            match res {
                Ok(_) => {
                    for s in first..last {
                        acks.set(s, acked);
                    }
                    published.fetch_add(last - first, std::sync::atomic::Ordering::Relaxed);
                    call_us
                        .lock()
                        .expect("call histogram")
                        .saturating_record(acked.saturating_sub(sent).max(1));
                }
                Err(e) => {
                    let code = e.code().map_or_else(|| "connection".to_string(), |c| c.code().to_string());
                    errors.add(format!("publish {code}"));
                }
            }
        });
        // Reap finished calls now and then so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}

    let call_us = call_us.lock().expect("call histogram").clone();
    Outcome {
        published: published.load(std::sync::atomic::Ordering::Relaxed),
        errors: Arc::try_unwrap(errors).unwrap_or_default(),
        call_us,
        max_lag_us,
        late_calls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_statements_take_the_same_parameters_as_publish() {
        let one = Call::Insert("public.benchrows".into()).sql(1);
        assert!(
            one.starts_with("INSERT INTO public.benchrows (owner, s, t, pad) VALUES ($1::text, $4::bigint")
        );
        assert!(Call::Insert("t".into()).sql(10).contains("unnest($1::text[], $4::bigint[])"));
        assert_eq!(Call::Publish.sql(1), ONE);
        assert_eq!(table_name("public.benchrows"), Ok("public.benchrows".into()));
        for bad in ["", "a.b.c", "t; drop", "T", "a."] {
            assert!(table_name(bad).is_err(), "{bad}");
        }
    }
}
