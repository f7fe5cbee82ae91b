//! No silent loss at any queue capacity: with `Overflow::Block` every line is written, with
//! `Overflow::Drop` emitted = written + reported dropped, exactly, also when a batch far larger
//! than a file's rotation size (and than any internal buffer) arrives at once.
//!
//! A stalled disk is simulated by holding the writer thread inside a write
//! (`FaultInjector::hold_writes`), so that a whole burst collects in the queue and reaches the
//! file sink as one batch: deterministic, whatever the scheduling.

mod common;

use std::path::Path;
use std::sync::Arc;

use chimera_log_runtime::testing::FaultInjector;
use chimera_log_runtime::{Error, LogConfig, LogGuard, Overflow};
use serde_json::json;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Counts the `tick` lines of `chimera.log` and its backups, checks that each appears once and
/// in order, and adds up the `log_events_dropped` reports.
fn ticks_and_reported(dir: &Path) -> (u64, u64) {
    let (mut ticks, mut reported) = (0, 0);
    let mut last_seq = None;
    for line in common::all_lines(dir, "chimera.log") {
        match line["event"].as_str().unwrap() {
            "tick" => {
                let seq = line["context"]["seq"].as_u64().unwrap();
                assert!(last_seq.is_none_or(|last| seq > last), "seq {seq} after {last_seq:?}: out of order or twice");
                last_seq = Some(seq);
                ticks += 1;
            }
            "log_events_dropped" => reported += line["context"]["dropped"].as_u64().unwrap(),
            other => panic!("unexpected event {other}"),
        }
    }
    (ticks, reported)
}

/// Emits `bytes` worth of ~1 KiB `tick` lines while the writer is stalled inside a write, then
/// lets it go: the burst reaches the file sink as one batch (or as few as the capacity allows).
fn burst_through_a_stalled_writer(guard: &LogGuard, faults: &FaultInjector, capacity: usize, bytes: usize) -> u64 {
    let logger = guard.logger("burst");
    let pad = "x".repeat(900);
    faults.hold_writes();
    logger.info("tick", json!({ "seq": 0, "pad": pad }));
    faults.wait_until_a_write_is_held();
    let lines = (bytes / KIB) as u64;
    // With `Block`, callers wait for room while the writer is held: release from another thread
    // once the queue has had time to fill (the caller blocking is the point, not a race).
    std::thread::scope(|scope| {
        let emitter = scope.spawn(|| {
            for seq in 1..lines {
                logger.info("tick", json!({ "seq": seq, "pad": pad }));
            }
        });
        // Released once the emitter has filled the queue or finished: whichever comes first,
        // the lines queued so far form one large batch.
        let full_enough = (bytes.min(capacity) / 2) as u64;
        while !emitter.is_finished() && guard.stats().queue_high_water_bytes < full_enough {
            std::thread::yield_now();
        }
        faults.release_writes();
    });
    assert!(guard.flush());
    lines
}

fn config(dir: &Path, capacity: usize, overflow: Overflow, faults: &Arc<FaultInjector>) -> LogConfig {
    // These tests account for every line; a held writer makes slow windows, whose warning lines
    // would count too: the watch is off here (tests/tests/watch.rs tests it).
    LogConfig::new(dir)
        .watch_interval(std::time::Duration::MAX)
        .console(false)
        .queue_capacity(capacity)
        .overflow(overflow)
        .max_bytes(2 * MIB as u64)
        .general_backups(1_000)
        .compress(false)
        .fault_injector(Arc::clone(faults))
}

#[test]
fn block_writes_every_line_at_every_capacity_from_64_kib_to_1_gib_across_rotations() {
    for capacity in [64 * KIB, MIB, 17 * MIB, 32 * MIB, 64 * MIB, 1024 * MIB] {
        let dir = tempfile::tempdir().unwrap();
        let faults = Arc::new(FaultInjector::new());
        let guard = config(dir.path(), capacity, Overflow::Block, &faults).build().unwrap();
        // 20 MiB: ten rotations' worth, more than the file sink's 16 MiB retry buffer.
        let emitted = burst_through_a_stalled_writer(&guard, &faults, capacity, 20 * MIB);
        let stats = guard.stats();
        drop(guard);
        let (ticks, reported) = ticks_and_reported(dir.path());
        assert_eq!((ticks, reported), (emitted, 0), "capacity {capacity}: every line written, none dropped");
        assert_eq!(stats.sink("chimera.log").unwrap().dropped, 0, "capacity {capacity}");
        assert!(stats.sink("chimera.log").unwrap().rotations >= 9, "capacity {capacity}: {stats:?}");
        assert_eq!(
            stats.sink("chimera.log").unwrap().lines,
            emitted,
            "capacity {capacity}: stats count what was written"
        );
    }
}

#[test]
fn drop_accounts_for_every_line_at_every_capacity_from_64_kib_to_1_gib() {
    for capacity in [64 * KIB, MIB, 17 * MIB, 64 * MIB, 1024 * MIB] {
        let dir = tempfile::tempdir().unwrap();
        let faults = Arc::new(FaultInjector::new());
        let guard = config(dir.path(), capacity, Overflow::Drop, &faults).build().unwrap();
        let emitted = burst_through_a_stalled_writer(&guard, &faults, capacity, 20 * MIB);
        let stats = guard.stats();
        drop(guard);
        let (ticks, reported) = ticks_and_reported(dir.path());
        assert_eq!(ticks + reported, emitted, "capacity {capacity}: emitted = written + reported dropped");
        assert_eq!(reported, stats.sink("chimera.log").unwrap().dropped, "capacity {capacity}");
        if capacity >= 32 * MIB {
            assert_eq!(reported, 0, "capacity {capacity}: the burst fits the queue");
        }
    }
}

#[test]
fn lines_dropped_by_a_failing_file_are_reported_once_it_recovers_and_not_counted_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    // No audit store: it follows the files, and cannot while they fail (its wait would too).
    let guard = config(dir.path(), 64 * MIB, Overflow::Block, &faults)
        .audit_store(chimera_log_runtime::AuditStore::none())
        .build()
        .unwrap();
    let logger = guard.logger("burst");
    let pad = "x".repeat(900);
    // The disk is full: the file sink keeps 16 MiB for a retry, and must drop (and count) beyond.
    faults.fail_writes_to("chimera.log", std::io::ErrorKind::StorageFull, 0);
    let lines = (24 * MIB / KIB) as u64;
    for seq in 0..lines {
        logger.info("tick", json!({ "seq": seq, "pad": pad }));
    }
    assert!(guard.wait_processed(), "the writer handed every line to the file sink");
    let failing = guard.stats();
    let dropped = failing.sink("chimera.log").unwrap().dropped;
    assert!(dropped > 0, "{failing:?}");
    assert_eq!(failing.sink("chimera.log").unwrap().lines + dropped, lines, "dropped lines are not counted as written");
    faults.clear();
    assert!(guard.flush());
    drop(guard);
    let (ticks, reported) = ticks_and_reported(dir.path());
    assert_eq!(reported, dropped, "the drops are reported in the log once it can be written");
    assert_eq!(ticks + reported, lines, "emitted = written + reported dropped");
    // Nor are their bytes: what was counted while failing is what the file then received.
    let mut files = common::backups(dir.path(), "chimera.log");
    files.push(dir.path().join("chimera.log"));
    let tick_bytes: usize = files
        .iter()
        .map(|file| String::from_utf8(common::read_maybe_gz(file)).unwrap())
        .map(|text| {
            text.lines().filter(|line| line.contains(r#""event":"tick""#)).map(|line| line.len() + 1).sum::<usize>()
        })
        .sum();
    assert_eq!(failing.sink("chimera.log").unwrap().bytes, tick_bytes as u64, "dropped lines' bytes are not counted");
}

#[test]
fn a_queue_capacity_the_machine_cannot_reserve_is_an_invalid_setting_not_an_abort() {
    let dir = tempfile::tempdir().unwrap();
    let error = LogConfig::new(dir.path()).console(false).queue_capacity(1 << 62).build().unwrap_err();
    assert!(matches!(&error, Error::InvalidSetting { setting: "queue_capacity", .. }), "{error}");
    assert!(error.to_string().contains("queue_capacity"), "{error}");
    // The directory is free again for a logger that can start.
    drop(LogConfig::new(dir.path()).console(false).build().unwrap());
}
