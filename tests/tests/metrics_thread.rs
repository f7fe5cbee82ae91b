//! The logger's own thread publishes its figures every `metrics_interval` (issue 29, feature
//! `metrics`), with no flush: a recorder installed globally (this binary's only test) sees them.
#![cfg(feature = "metrics")]

use std::time::{Duration, Instant};

use chimera_log_runtime::{AuditStore, LogConfig};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use serde_json::json;

#[test]
fn the_publishing_thread_publishes_every_interval_without_a_flush() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("the only recorder of this process");
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path())
        .console(false)
        .audit_store(AuditStore::none())
        .metrics_interval(Some(Duration::from_millis(5)))
        .build()
        .unwrap();
    let logger = guard.logger("m");
    for _ in 0..5 {
        logger.info("tick", json!({}));
    }
    // No flush: the count reaches the recorder from the logger's thread. The minute is the bound
    // of a failed test, not a measurement (the interval is 5 ms).
    let bound = Instant::now() + Duration::from_secs(60);
    let published = loop {
        let events = snapshotter.snapshot().into_vec().into_iter().find_map(|(key, _, _, value)| {
            let info = key.key().labels().any(|l| l.key() == "level" && l.value() == "info");
            (key.key().name() == "chimera_log_events_total" && info).then_some(value)
        });
        if let Some(DebugValue::Counter(5)) = events {
            break true;
        }
        if Instant::now() > bound {
            break false;
        }
        std::thread::yield_now();
    };
    assert!(published, "the events' count was published by the thread within a minute");
    drop(guard);
}
