//! CloudWatch delivery, end to end: events emitted until every one is acknowledged by a local
//! stand-in endpoint that adds 50 ms to every request (the test proxy, answering itself), and
//! the 20,000-event burst of issue 10 (every 500th event 200 KB) through 2.5 s of 503s and a
//! throttled 4th request, delivered within the 5 s shutdown timeout.
//!
//! `cargo bench -p chimera-log-tests --features cloudwatch --bench cloudwatch_delivery`
//! (needs no moto: the endpoint is the stand-in). Prints the median of three runs of each.

#[path = "../tests/common/proxy.rs"]
mod proxy;

use std::time::{Duration, Instant};

use chimera_log_runtime::{CloudWatchConfig, LogConfig};
use serde_json::json;

fn config(dir: &std::path::Path, url: &str) -> LogConfig {
    let cloudwatch = CloudWatchConfig::new("Bench").region("us-east-1").log_stream("s").endpoint_url(url);
    LogConfig::new(dir).console(false).cloudwatch(cloudwatch)
}

/// Events per second from the first emit until all are acknowledged.
fn steady(events: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = proxy::Proxy::start_fake();
    endpoint.set_delay(Duration::from_millis(50));
    let guard = config(dir.path(), &endpoint.url).build().unwrap();
    let logger = guard.logger("bench");
    let pad = "p".repeat(120); // a ~250-byte line
    let started = Instant::now();
    for seq in 0..events {
        logger.info("tick", json!({ "seq": seq, "pad": pad }));
    }
    assert!(guard.flush());
    let elapsed = started.elapsed();
    drop(guard);
    let delivered: usize = endpoint.accepted_batches().iter().sum();
    assert_eq!(delivered as u64, events, "every event delivered");
    events as f64 / elapsed.as_secs_f64()
}

/// The burst: seconds from the first emit until the guard is dropped (5 s shutdown timeout),
/// and how many of the 20,000 events were acknowledged by then.
fn burst() -> (f64, usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = proxy::Proxy::start_fake();
    endpoint.set_delay(Duration::from_millis(50));
    let guard = config(dir.path(), &endpoint.url).shutdown_timeout(Duration::from_secs(5)).build().unwrap();
    let logger = guard.logger("bench");
    logger.info("tick", json!({ "seq": 0 }));
    assert!(guard.flush());
    let started = Instant::now();
    endpoint
        .set_mode(proxy::Mode::Rough { unavailable_until: started + Duration::from_millis(2_500), throttle_every: 4 });
    let blob = "b".repeat(200_000);
    for seq in 1..=20_000u64 {
        if seq % 500 == 0 {
            logger.info("tick", json!({ "seq": seq, "blob": blob }));
        } else {
            logger.info("tick", json!({ "seq": seq }));
        }
    }
    drop(guard);
    let elapsed = started.elapsed().as_secs_f64();
    let batches = endpoint.accepted_batches();
    (elapsed, batches.iter().sum(), batches.len())
}

/// This process's resident memory, in MiB (Linux).
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Memory through an outage: 200,000 events (~50 MB of lines) emitted while every request
/// fails; resident memory before the outage, at its end, and seconds to deliver everything
/// once it ends.
fn outage() -> (f64, f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = proxy::Proxy::start_fake();
    let guard = config(dir.path(), &endpoint.url).build().unwrap();
    let logger = guard.logger("bench");
    logger.info("tick", json!({ "seq": 0 }));
    assert!(guard.flush());
    let before = rss_mib();
    endpoint.set_mode(proxy::Mode::Outage);
    let pad = "p".repeat(120);
    for seq in 1..200_000u64 {
        logger.info("tick", json!({ "seq": seq, "pad": pad }));
    }
    assert!(guard.flush_files());
    endpoint.wait_refused(5);
    let during = rss_mib();
    endpoint.set_mode(proxy::Mode::Pass);
    let recovering = Instant::now();
    assert!(guard.flush());
    let seconds = recovering.elapsed().as_secs_f64();
    drop(guard);
    let delivered: usize = endpoint.accepted_batches().iter().sum();
    assert_eq!(delivered, 200_000, "every event delivered after the outage");
    (before, during, seconds)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return; // `cargo test --benches` lists benchmarks; nothing to list here
    }
    // The stand-in endpoint checks no signature, but the SDK signs: give it something to sign
    // with. Set before any thread starts.
    for (key, value) in [("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench")] {
        if std::env::var_os(key).is_none() {
            std::env::set_var(key, value);
        }
    }
    let rates: Vec<f64> = (0..3).map(|_| steady(200_000)).collect();
    println!(
        "steady: 200,000 events of ~250 bytes, 50 ms per request: median {:.0} events/s delivered (runs: {:?})",
        median(rates.clone()),
        rates.iter().map(|r| r.round()).collect::<Vec<_>>()
    );
    let (before, during, seconds) = outage();
    println!(
        "outage: 200,000 events (~50 MB of lines) emitted while every request fails: resident memory \
         {before:.1} MiB before, {during:.1} MiB at the end of the outage; all delivered {seconds:.2} s after it ended"
    );
    let bursts: Vec<(f64, usize, usize)> = (0..3).map(|_| burst()).collect();
    let mut by_time = bursts.clone();
    by_time.sort_by(|a, b| a.0.total_cmp(&b.0));
    // The set-up event before the burst is not counted.
    let (seconds, delivered, requests) = by_time[1];
    println!(
        "burst: 20,000 events (every 500th 200 KB), 503 for 2.5 s, every 4th request throttled, 50 ms per \
         request: median run {seconds:.2} s from first emit to the guard dropped, {} of 20,000 delivered in \
         {requests} accepted requests (runs: {:?})",
        delivered - 1,
        bursts.iter().map(|(s, d, r)| (format!("{s:.2}s"), d - 1, *r)).collect::<Vec<_>>()
    );
}
