use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
}

#[test]
fn every_series_is_registered_once_and_rendered_with_its_value() {
    let m = Metrics::new().unwrap();
    m.hub.stored_dispatched.inc_by(7);
    m.hub.ephemeral_dispatched.inc();
    m.hub.frames_queued.inc_by(9);
    m.hub.delivered_persisted.inc_by(7);
    m.hub.delivered_ephemeral.inc_by(2);
    m.hub.delivered_replay.inc_by(5);
    m.hub.channels.set(2);
    m.hub.subscriptions.set(5);
    m.hub.presence_frames.inc_by(11);
    for _ in 0..3 {
        m.hub.commit_to_send.observe(0.004);
    }
    m.subscribe_checked(CheckOutcome::Denied, Duration::from_millis(3));
    m.published(Kind::Stored, PublishOutcome::TooLarge);
    m.published(Kind::Stored, PublishOutcome::TooLarge);
    let connections = Arc::new(AtomicU64::new(3));
    let c = connections.clone();
    m.pull_gauge("connections", "Open connections.", Arc::new(move || c.load(Ordering::Relaxed) as f64))
        .unwrap();
    m.pull_gauge("replication_last_commit_lsn", "LSN.", Arc::new(|| as_f64(0x1_0000_0028))).unwrap();
    m.pull_gauge("replication_acked_lsn", "LSN.", Arc::new(|| as_f64(u64::MAX))).unwrap();
    m.pull_counter("replication_reconnects_total", "Reconnects.", Arc::new(|| 4.0)).unwrap();
    let text = m.render().unwrap();
    for (series, value) in [
        ("realtime_connections", "3"),
        ("realtime_channels", "2"),
        ("realtime_subscriptions", "5"),
        ("realtime_messages_dispatched_total{kind=\"stored\"}", "7"),
        ("realtime_messages_dispatched_total{kind=\"ephemeral\"}", "1"),
        ("realtime_frames_queued_total", "9"),
        ("realtime_presence_frames_sent_total", "11"),
        ("realtime_replication_last_commit_lsn", "4294967336"),
        ("realtime_replication_reconnects_total", "4"),
        ("realtime_subscribe_checks_total{outcome=\"denied\"}", "1"),
        ("realtime_subscribe_checks_total{outcome=\"allowed\"}", "0"),
        ("realtime_publishes_total{kind=\"stored\",outcome=\"too_large\"}", "2"),
        ("realtime_publishes_total{kind=\"ephemeral\",outcome=\"ok\"}", "0"),
        ("realtime_slow_consumer_closes_total", "0"),
        ("realtime_messages_delivered_total{path=\"persisted\"}", "7"),
        ("realtime_messages_delivered_total{path=\"ephemeral\"}", "2"),
        ("realtime_messages_delivered_total{path=\"replay\"}", "5"),
        ("realtime_webhook_queue_depth", "-1"),
        ("realtime_commit_to_send_seconds_bucket{le=\"0.0025\"}", "0"),
        ("realtime_commit_to_send_seconds_bucket{le=\"0.005\"}", "3"),
        ("realtime_commit_to_send_seconds_count", "3"),
        ("realtime_subscribe_check_seconds_count", "1"),
        ("realtime_webhook_attempt_duration_seconds_count", "0"),
    ] {
        let l = line(&text, series).unwrap_or_else(|| panic!("{series} missing in\n{text}"));
        assert_eq!(l, format!("{series} {value}"));
    }
    connections.store(4, Ordering::Relaxed);
    assert_eq!(
        line(&m.render().unwrap(), "realtime_connections"),
        Some("realtime_connections 4"),
        "read at scrape"
    );
    for (name, kind) in [
        ("realtime_connections", "gauge"),
        ("realtime_frames_queued_total", "counter"),
        ("realtime_replication_reconnects_total", "counter"),
        ("realtime_commit_to_send_seconds", "histogram"),
        ("realtime_subscribe_check_seconds", "histogram"),
    ] {
        assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name} {kind}");
    }
    let acked = line(&text, "realtime_replication_acked_lsn").unwrap().split(' ').nth(1).unwrap();
    assert!(acked.parse::<f64>().unwrap() > 9.0e18, "a huge LSN does not wrap negative: {acked}");
}

#[test]
fn a_series_cannot_be_registered_twice() {
    let m = Metrics::new().unwrap();
    assert!(m.pull_gauge("channels", "Again.", Arc::new(|| 0.0)).is_err());
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

#[test]
fn a_reading_sums_series_by_labels_and_knows_missing_ones() {
    let m = Metrics::new().unwrap();
    m.published(Kind::Stored, PublishOutcome::Ok);
    m.published(Kind::Ephemeral, PublishOutcome::Ok);
    m.published(Kind::Ephemeral, PublishOutcome::TooLarge);
    m.hub.subscriptions.set(4);
    m.pull_gauge("presence_members", "Members.", Arc::new(|| 9.0)).unwrap();
    let r = m.read();
    assert_eq!(r.value("realtime_publishes_total", &[]), Some(3.0), "every label set");
    assert_eq!(r.value("realtime_publishes_total", &[("outcome", "ok")]), Some(2.0));
    assert_eq!(r.value("realtime_publishes_total", &[("kind", "ephemeral"), ("outcome", "ok")]), Some(1.0));
    assert_eq!(r.value("realtime_publishes_total", &[("outcome", "nonsense")]), None);
    assert_eq!(
        (r.value("realtime_subscriptions", &[]), r.value("realtime_presence_members", &[])),
        (Some(4.0), Some(9.0))
    );
    assert_eq!(r.value("realtime_no_such_series", &[]), None);
    assert_eq!(r.count("realtime_no_such_series", &[]), 0.0);
    assert!(r.buckets("realtime_subscriptions").is_none(), "a gauge has no buckets");
}

#[test]
fn quantiles_between_two_readings_interpolate_inside_the_bucket_of_the_rank() {
    let m = Metrics::new().unwrap();
    let h = &m.hub.commit_to_send;
    let name = "realtime_commit_to_send_seconds";
    let before = m.read();
    for _ in 0..50 {
        h.observe(0.0003); // (0, 0.5 ms]
        h.observe(0.004); // (2.5 ms, 5 ms]
    }
    let after = m.read();
    let (b, a) = (before.buckets(name).unwrap(), after.buckets(name).unwrap());
    assert_eq!(a.bounds, LATENCY_BUCKETS);
    assert_eq!(a.cumulative.len(), LATENCY_BUCKETS.len() + 1, "one per bound, then +Inf");
    let p50 = a.quantile_since(b, 0.5).unwrap();
    assert!((p50 - 0.0005).abs() < 1e-9, "{p50}");
    let p90 = a.quantile_since(b, 0.9).unwrap();
    assert!((p90 - (0.0025 + 0.0025 * 0.8)).abs() < 1e-9, "{p90}");
    assert_eq!(a.quantile_since(a, 0.5), None, "no observations in between");
    h.observe(100.0);
    let top = m.read().buckets(name).unwrap().quantile_since(a, 0.99).unwrap();
    assert_eq!(top, 60.0, "above the last bound reports the bound");
    assert_eq!(after.value(name, &[]), Some(100.0), "a histogram's value is its count");
}
