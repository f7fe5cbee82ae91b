//! The files' writer watching its own health (issue 29, items 2 and 3): the write latency (a
//! line's wait from the caller's queue to the file) and the log directory's free space, in
//! `stats()` and, past their thresholds, as `log_write_slow` and `log_disk_low` warnings in
//! `chimera.log`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chimera_log_runtime::testing::FaultInjector;
use chimera_log_runtime::{AuditStore, LogConfig};
use serde_json::{json, Value};

fn config(dir: &std::path::Path) -> LogConfig {
    LogConfig::new(dir).console(false).audit_store(AuditStore::none())
}

/// The logger's own `event` lines of `chimera.log`, read directly (the common readers leave the
/// watch's warnings out).
fn own_events(dir: &std::path::Path, event: &str) -> Vec<Value> {
    std::fs::read_to_string(dir.join("chimera.log"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line["event"] == event)
        .collect()
}

/// A disk that holds one write for 50 ms: the lines queued before it waited at least that long,
/// the window is slow, and the writer says so with the window's figures.
#[test]
fn a_write_held_past_the_threshold_is_reported_as_a_slow_window_with_its_figures() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let guard = config(dir.path())
        .slow_write_warning(Duration::from_millis(10))
        .watch_interval(Duration::from_millis(1))
        .fault_injector(Arc::clone(&faults))
        .build()
        .unwrap();
    let logger = guard.logger("m");
    faults.hold_writes();
    logger.info("held", json!({}));
    faults.wait_until_a_write_is_held();
    // The condition under test, not a wait for background work: the line waits this long.
    std::thread::sleep(Duration::from_millis(50));
    faults.release_writes();
    assert!(guard.flush());
    // A pass after the window closed (1 ms) reports it.
    std::thread::sleep(Duration::from_millis(2));
    logger.info("after", json!({}));
    assert!(guard.flush());
    let stats = guard.stats();
    drop(guard);
    assert!(stats.slow_write_warnings >= 1, "{stats:?}");
    let slow = own_events(dir.path(), "log_write_slow");
    let first = slow.first().unwrap_or_else(|| panic!("a log_write_slow line: {slow:?}"));
    assert_eq!((first["level"].as_str(), first["module"].as_str()), (Some("WARNING"), Some("chimera_log")));
    assert!(first["context"]["max_ms"].as_f64().unwrap() >= 50.0, "{first}");
    assert!(first["context"]["p99_ms"].as_f64().unwrap() > 10.0, "{first}");
    assert_eq!(first["context"]["threshold_ms"], 10.0);
    assert_eq!(first["context"]["sink"], "chimera.log");
}

/// Free space below the threshold is reported (a threshold no disk meets), and `stats()` shows
/// the reading; with a threshold of zero nothing is reported.
#[test]
fn free_space_below_the_threshold_is_reported_and_the_reading_is_in_stats() {
    for (threshold, warned) in [(u64::MAX, true), (0, false)] {
        let dir = tempfile::tempdir().unwrap();
        let guard =
            config(dir.path()).disk_low_warning(threshold).watch_interval(Duration::from_millis(1)).build().unwrap();
        let logger = guard.logger("m");
        logger.info("first", json!({}));
        assert!(guard.flush());
        std::thread::sleep(Duration::from_millis(2));
        logger.info("second", json!({}));
        assert!(guard.flush());
        let stats = guard.stats();
        drop(guard);
        let free = stats.disk_free_bytes.expect("the directory's free space was read");
        assert!(free > 0);
        let low = own_events(dir.path(), "log_disk_low");
        assert_eq!(!low.is_empty(), warned, "threshold {threshold}: {low:?}");
        assert_eq!(stats.disk_low_warnings > 0, warned, "{stats:?}");
        if warned {
            assert_eq!(low[0]["level"], "WARNING");
            assert!(low[0]["context"]["free_bytes"].as_u64().unwrap() > 0);
            assert_eq!(low[0]["context"]["threshold_bytes"], u64::MAX);
        }
    }
}

/// The write latency of a window is in `stats()` and in the `log_health` line.
#[test]
fn the_last_windows_write_latency_is_in_stats_and_in_the_health_line() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path())
        .watch_interval(Duration::from_millis(1))
        .health_interval(Duration::from_millis(1))
        .slow_write_warning(Duration::from_secs(3600))
        .build()
        .unwrap();
    let logger = guard.logger("m");
    // Windows close on the writer's passes: lines, a flush, a moment, until one held a sample.
    let mut stats = guard.stats();
    for seq in 0..1_000u64 {
        logger.info("tick", json!({ "seq": seq }));
        assert!(guard.flush());
        std::thread::sleep(Duration::from_millis(2));
        stats = guard.stats();
        if stats.write_latency.samples > 0 {
            break;
        }
    }
    assert!(stats.write_latency.samples > 0, "{stats:?}");
    assert!(stats.write_latency.max >= stats.write_latency.median, "{stats:?}");
    logger.info("last", json!({}));
    drop(guard);
    let health = own_events(dir.path(), "log_health");
    let last = health.last().expect("a log_health line");
    assert!(last["context"]["write_latency"]["samples"].is_u64(), "{last}");
    assert!(last["context"]["disk_free_bytes"].as_u64().unwrap() > 0, "{last}");
}

/// With `health_emf(true)` the `log_health` line's context is a CloudWatch Embedded Metric
/// Format document: `_aws` metadata declaring each metric, the metrics as root members of the
/// context, and the members of `stats()` beside them; the line keeps the contract's shape.
#[test]
fn with_health_emf_the_health_lines_context_is_an_embedded_metric_format_document() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).health_interval(Duration::from_millis(1)).health_emf(true).build().unwrap();
    let logger = guard.logger("m");
    logger.info("first", json!({}));
    std::thread::sleep(Duration::from_millis(2));
    logger.warning("second", json!({}));
    drop(guard);
    let text = std::fs::read_to_string(dir.path().join("chimera.log")).unwrap();
    let raw = text.lines().find(|line| line.contains("\"log_health\"")).expect("a log_health line");
    let ordered: common::Ordered = serde_json::from_str(raw).unwrap();
    assert_eq!(ordered.keys(), ["timestamp", "level", "module", "event", "context"]);
    let line: Value = serde_json::from_str(raw).unwrap();
    let context = &line["context"];
    let aws = &context["_aws"];
    assert!(aws["Timestamp"].as_u64().unwrap() > 1_600_000_000_000, "milliseconds since the epoch: {aws}");
    let directive = &aws["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "chimera-log");
    assert_eq!(directive["Dimensions"], json!([["LogDir"]]));
    assert!(context["LogDir"].is_string(), "the dimension's value is a root member");
    let metrics = directive["Metrics"].as_array().unwrap();
    assert!(metrics.len() >= 9);
    for metric in metrics {
        let name = metric["Name"].as_str().unwrap();
        assert!(context[name].is_number(), "{name} is a number at the document's root: {context}");
        assert!(["Count", "Bytes", "Milliseconds"].contains(&metric["Unit"].as_str().unwrap()), "{metric}");
    }
    assert_eq!(context["EventsTotal"], 2.0, "the two events before the health line (it follows the second)");
    assert!(context["events_by_level"].is_array(), "stats() members are kept: {context}");
}
