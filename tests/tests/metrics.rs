//! The logger's figures through the `metrics` facade (issue 29, item 1; feature `metrics`):
//! after a known workload, a recorder sees exact values. These tests publish through `flush()`,
//! which publishes on the caller's thread, so a recorder local to the test's thread sees it;
//! the publishing thread has a test binary of its own (tests/tests/metrics_thread.rs).
#![cfg(feature = "metrics")]

mod common;

use std::sync::Arc;

use chimera_log_runtime::testing::FaultInjector;
use chimera_log_runtime::{emit, AuditStore, LogConfig, LogEvent, Overflow};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::{CompositeKey, MetricKind};
use serde_json::json;

#[derive(LogEvent)]
#[log(audit)]
struct Executed {
    block_number: u64,
}

fn config(dir: &std::path::Path) -> LogConfig {
    LogConfig::new(dir).console(false).audit_store(AuditStore::none()).metrics_interval(None)
}

/// One snapshot of a debugging recorder (taking one resets what it read).
type Snapshot = Vec<(CompositeKey, Option<metrics::Unit>, Option<metrics::SharedString>, DebugValue)>;

/// The value of metric `name` with labels `labels` (`[("level", "info")]`).
fn value<'a>(snapshot: &'a Snapshot, kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> Option<&'a DebugValue> {
    snapshot.iter().find_map(|(key, _, _, value)| {
        let key_labels: Vec<(&str, &str)> = key.key().labels().map(|l| (l.key(), l.value())).collect();
        (key.kind() == kind && key.key().name() == name && key_labels == labels).then_some(value)
    })
}

fn counter(snapshot: &Snapshot, name: &str, labels: &[(&str, &str)]) -> u64 {
    match value(snapshot, MetricKind::Counter, name, labels) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{name}{labels:?}: {other:?}"),
    }
}

fn gauge(snapshot: &Snapshot, name: &str, labels: &[(&str, &str)]) -> f64 {
    match value(snapshot, MetricKind::Gauge, name, labels) {
        Some(DebugValue::Gauge(n)) => n.into_inner(),
        other => panic!("{name}{labels:?}: {other:?}"),
    }
}

#[test]
fn a_known_workload_is_seen_exactly_by_the_recorder_after_a_flush() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let dir = tempfile::tempdir().unwrap();
    metrics::with_local_recorder(&recorder, || {
        let guard = config(dir.path()).build().unwrap();
        let logger = guard.logger("m");
        for seq in 0..3u64 {
            logger.info("tick", json!({ "seq": seq }));
        }
        logger.warning("careful", json!({}));
        logger.warning("careful", json!({}));
        emit!(logger, Executed { block_number: 7 });
        assert!(guard.flush());
        let stats = guard.stats();
        let snapshot: Snapshot = snapshotter.snapshot().into_vec();
        // Counters hold the absolute values (set, not added per event).
        assert_eq!(counter(&snapshot, "chimera_log_events_total", &[("level", "info")]), 4, "3 ticks and the record");
        assert_eq!(counter(&snapshot, "chimera_log_events_total", &[("level", "warning")]), 2);
        assert_eq!(counter(&snapshot, "chimera_log_events_total", &[("level", "error")]), 0);
        assert_eq!(counter(&snapshot, "chimera_log_dropped_total", &[("sink", "chimera.log")]), 0);
        assert_eq!(counter(&snapshot, "chimera_log_write_errors_total", &[("sink", "executions.log")]), 0);
        assert_eq!(counter(&snapshot, "chimera_log_audit_syncs_total", &[]), stats.audit_syncs);
        assert!(stats.audit_syncs >= 1);
        // Gauges hold the readings: file sizes as on disk, free space, queue memory.
        let size = std::fs::metadata(dir.path().join("chimera.log")).unwrap().len();
        assert_eq!(gauge(&snapshot, "chimera_log_file_bytes", &[("file", "chimera.log")]), size as f64);
        assert!(gauge(&snapshot, "chimera_log_disk_free_bytes", &[]) > 0.0);
        assert_eq!(gauge(&snapshot, "chimera_log_queue_bytes", &[]), stats.queue_bytes as f64);
        assert!(gauge(&snapshot, "chimera_log_queue_high_water_bytes", &[]) > 0.0);
        // The write latency: one figure per chunk the writer handed to a file.
        match value(&snapshot, MetricKind::Histogram, "chimera_log_write_latency_seconds", &[]) {
            Some(DebugValue::Histogram(values)) => assert!(!values.is_empty(), "chunks were written"),
            other => panic!("{other:?}"),
        }
        drop(guard);
    });
}

/// A stalled disk with `Overflow::Drop`: the drops the logger counted are the drops published.
#[test]
fn drops_under_a_stalled_disk_are_published_as_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    metrics::with_local_recorder(&recorder, || {
        let guard = config(dir.path())
            .queue_capacity(16 * 1024)
            .overflow(Overflow::Drop)
            .fault_injector(Arc::clone(&faults))
            .build()
            .unwrap();
        let logger = guard.logger("m");
        faults.hold_writes();
        logger.info("held", json!({}));
        faults.wait_until_a_write_is_held();
        for seq in 0..5_000u64 {
            logger.info("tick", json!({ "seq": seq, "pad": "x".repeat(100) }));
        }
        faults.release_writes();
        assert!(guard.flush());
        let dropped = guard.stats().sink("chimera.log").unwrap().dropped;
        let snapshot: Snapshot = snapshotter.snapshot().into_vec();
        assert!(dropped > 0, "a 16 KiB queue cannot hold 5,000 lines of 150 bytes");
        assert_eq!(counter(&snapshot, "chimera_log_dropped_total", &[("sink", "chimera.log")]), dropped);
        drop(guard);
    });
}

/// The Prometheus exporter renders the names and labels of the table in the docs.
#[test]
fn the_prometheus_exporter_renders_the_documented_names() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let dir = tempfile::tempdir().unwrap();
    metrics::with_local_recorder(&recorder, || {
        let guard = config(dir.path()).build().unwrap();
        let logger = guard.logger("m");
        logger.info("tick", json!({}));
        logger.error("bad", json!({}));
        assert!(guard.flush());
        drop(guard);
    });
    let text = handle.render();
    for expected in [
        "chimera_log_events_total{level=\"info\"} 1",
        "chimera_log_events_total{level=\"error\"} 1",
        "chimera_log_dropped_total{sink=\"chimera.log\"} 0",
        "chimera_log_write_errors_total{sink=\"chimera.log\"} 0",
        "chimera_log_disk_free_bytes ",
        "chimera_log_file_bytes{file=\"chimera.log\"} ",
        "chimera_log_write_latency_seconds",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }
}
