//! Files (DESIGN §5): size rotation, backup names, background compression, retention, crash
//! repair, permissions, external interference and write faults.

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use chimera_log_runtime::testing::FaultInjector;
use chimera_log_runtime::{emit, AuditStore, Level, LogConfig, LogEvent, LogGuard};
use common::{all_lines, backups, read_maybe_gz, ManualClock};
use serde_json::json;

#[derive(LogEvent)]
#[log(audit)]
struct Executed<'a> {
    block_number: u64,
    pad: &'a str,
}

fn config(dir: &Path) -> LogConfig {
    LogConfig::new(dir).console(false).level(Level::Debug)
}

fn seqs(dir: &Path, name: &str) -> Vec<u64> {
    all_lines(dir, name)
        .iter()
        .filter(|l| l["event"] == "tick")
        .map(|l| l["context"]["seq"].as_u64().unwrap())
        .collect()
}

fn write_seq(guard: &LogGuard, range: std::ops::Range<u64>, pad: usize) {
    let logger = guard.logger("rot");
    for seq in range {
        logger.info("tick", json!({ "seq": seq, "pad": "x".repeat(pad) }));
    }
}

#[test]
fn rotation_keeps_every_file_within_max_bytes_and_loses_no_line() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).max_bytes(4_000).general_backups(1_000).compress(false).build().unwrap();
    write_seq(&guard, 0..500, 150);
    assert!(guard.flush(), "flush timed out");
    let stats = guard.stats();
    drop(guard);
    let files = backups(dir.path(), "chimera.log");
    assert!(files.len() >= 20, "expected many rotations, got {}", files.len());
    assert_eq!(stats.sink("chimera.log").unwrap().rotations, files.len() as u64);
    for file in files.iter().chain([&dir.path().join("chimera.log")]) {
        let len = fs::metadata(file).unwrap().len();
        assert!(len <= 4_000, "{} has {len} bytes", file.display());
    }
    assert_eq!(seqs(dir.path(), "chimera.log"), (0..500).collect::<Vec<_>>());
}

#[test]
fn a_line_longer_than_max_bytes_stands_alone_and_whole_in_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).max_bytes(1_000).compress(false).build().unwrap();
    write_seq(&guard, 0..2, 10);
    write_seq(&guard, 2..3, 5_000);
    write_seq(&guard, 3..5, 10);
    drop(guard);
    let files = backups(dir.path(), "chimera.log");
    assert_eq!(files.len(), 2);
    let big = String::from_utf8(fs::read(&files[1]).unwrap()).unwrap();
    assert_eq!(big.lines().count(), 1, "the long line is alone");
    assert!(big.len() > 5_000 && big.ends_with('\n'));
    assert_eq!(seqs(dir.path(), "chimera.log"), [0, 1, 2, 3, 4]);
}

#[test]
fn backup_names_follow_rotation_order_and_move_forward_on_a_stamp_collision() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_micros(1_705_314_645_123_456));
    let guard = config(dir.path()).clock(clock.clone()).max_bytes(300).compress(false).build().unwrap();
    // Five rotations within one microsecond of the clock, then the clock goes back an hour.
    write_seq(&guard, 0..6, 200);
    assert!(guard.flush(), "flush timed out"); // rotations happen on the writer thread, at its clock reading
    clock.set(UNIX_EPOCH + Duration::from_micros(1_705_314_645_123_456 - 3_600_000_000));
    write_seq(&guard, 6..8, 200);
    drop(guard);
    let names: Vec<String> = backups(dir.path(), "chimera.log")
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "chimera.log.20240115T103045.123456Z",
            "chimera.log.20240115T103045.123457Z",
            "chimera.log.20240115T103045.123458Z",
            "chimera.log.20240115T103045.123459Z",
            "chimera.log.20240115T103045.123460Z",
            "chimera.log.20240115T103045.123461Z",
            "chimera.log.20240115T103045.123462Z",
        ]
    );
    assert_eq!(seqs(dir.path(), "chimera.log"), (0..8).collect::<Vec<_>>());
}

#[cfg(unix)]
#[test]
fn existing_backups_are_never_renamed() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).max_bytes(500).general_backups(100).compress(false).build().unwrap();
    write_seq(&guard, 0..10, 200);
    assert!(guard.flush(), "flush timed out");
    let before: Vec<(std::path::PathBuf, u64)> =
        backups(dir.path(), "chimera.log").into_iter().map(|p| (p.clone(), fs::metadata(&p).unwrap().ino())).collect();
    write_seq(&guard, 10..20, 200);
    drop(guard);
    for (path, inode) in before {
        assert_eq!(fs::metadata(&path).unwrap().ino(), inode, "{} changed", path.display());
    }
}

#[cfg(unix)]
#[test]
fn rotated_backups_are_gzipped_in_the_background_and_read_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).max_bytes(2_000).general_backups(100).build().unwrap();
    write_seq(&guard, 0..100, 100);
    drop(guard); // waits for the compression thread
    let files = backups(dir.path(), "chimera.log");
    assert!(files.len() > 3);
    for file in &files {
        assert!(file.to_str().unwrap().ends_with(".gz"), "{} is not compressed", file.display());
        let mode = fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o440, "{} has mode {mode:o}", file.display());
        assert!(!read_maybe_gz(file).is_empty());
    }
    assert_eq!(seqs(dir.path(), "chimera.log"), (0..100).collect::<Vec<_>>());
    let stray: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn retention_keeps_the_newest_backups_of_each_file() {
    let dir = tempfile::tempdir().unwrap();
    // Retention by count alone: an audit store would keep audit backups until they are archived
    // (tests/audit_store.rs).
    let guard = config(dir.path())
        .max_bytes(600)
        .general_backups(3)
        .audit_backups(5)
        .audit_store(AuditStore::none())
        .build()
        .unwrap();
    let logger = guard.logger("exec");
    for block_number in 0..40 {
        emit!(logger, Executed { block_number, pad: &"y".repeat(200) });
    }
    let stats_before_drop = guard.stats();
    drop(guard);
    assert!(stats_before_drop.sink("executions.log").unwrap().rotations > 5);
    assert_eq!(backups(dir.path(), "chimera.log").len(), 3);
    assert_eq!(backups(dir.path(), "executions.log").len(), 5);
    // What is retained is the newest: the audit trail ends with the last block, gap-free.
    let blocks: Vec<u64> = all_lines(dir.path(), "executions.log")
        .iter()
        .map(|l| l["context"]["block_number"].as_u64().unwrap())
        .collect();
    assert_eq!(*blocks.last().unwrap(), 39);
    assert!(blocks.windows(2).all(|w| w[1] == w[0] + 1), "{blocks:?}");
}

#[test]
fn retention_is_applied_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..6 {
        fs::write(dir.path().join(format!("chimera.log.2024011{i}T000000.000000Z")), format!("{{\"old\":{i}}}\n"))
            .unwrap();
    }
    fs::write(dir.path().join("chimera.log.not-a-backup"), "kept\n").unwrap();
    let guard = config(dir.path()).general_backups(2).compress(false).build().unwrap();
    drop(guard);
    let names: Vec<String> = backups(dir.path(), "chimera.log")
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        ["chimera.log.20240114T000000.000000Z", "chimera.log.20240115T000000.000000Z", "chimera.log.not-a-backup"]
    );
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn start_repairs_every_crash_state_of_the_backups() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let content = |i: u32| format!("{{\"backup\":{i}}}\n").repeat(50);
    // 1: a half-written .gz.tmp next to its plain backup: removed, then redone.
    fs::write(d.join("chimera.log.20240101T000000.000001Z"), content(1)).unwrap();
    fs::write(d.join("chimera.log.20240101T000000.000001Z.gz.tmp"), &gzip(content(1).as_bytes())[..10]).unwrap();
    // 2: a plain backup never compressed.
    fs::write(d.join("chimera.log.20240101T000000.000002Z"), content(2)).unwrap();
    // 3: plain and a complete .gz (crash before deleting the plain file): plain removed.
    fs::write(d.join("chimera.log.20240101T000000.000003Z"), content(3)).unwrap();
    fs::write(d.join("chimera.log.20240101T000000.000003Z.gz"), gzip(content(3).as_bytes())).unwrap();
    // 4: plain and a truncated .gz: the .gz is redone from the plain file.
    fs::write(d.join("chimera.log.20240101T000000.000004Z"), content(4)).unwrap();
    fs::write(d.join("chimera.log.20240101T000000.000004Z.gz"), &gzip(content(4).as_bytes())[..20]).unwrap();
    // 5: a .gz.tmp whose plain file is gone (compressed and deleted... then crashed?): removed.
    fs::write(d.join("chimera.log.20240101T000000.000005Z.gz"), gzip(content(5).as_bytes())).unwrap();
    fs::write(d.join("chimera.log.20240101T000000.000006Z.gz.tmp"), b"junk").unwrap();

    // No audit store: the listing below is of the backups' repair alone.
    let guard = config(d).general_backups(10).audit_store(AuditStore::none()).build().unwrap();
    let stats = guard.stats();
    drop(guard);
    let mut names: Vec<String> =
        fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".chimera-log.lock",
            "chimera.log",
            "chimera.log.20240101T000000.000001Z.gz",
            "chimera.log.20240101T000000.000002Z.gz",
            "chimera.log.20240101T000000.000003Z.gz",
            "chimera.log.20240101T000000.000004Z.gz",
            "chimera.log.20240101T000000.000005Z.gz",
            "executions.log",
        ]
    );
    for i in 1..=5u32 {
        let gz = d.join(format!("chimera.log.20240101T000000.00000{i}Z.gz"));
        assert_eq!(read_maybe_gz(&gz), content(i).as_bytes(), "backup {i}");
    }
    assert_eq!(stats.compression_failures, 0);
}

#[test]
fn a_torn_last_line_is_kept_and_the_next_line_starts_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let torn = "{\"timestamp\":\"2024-01-15T10:30:45.123456Z\",\"level\":\"INFO\",\"mod";
    fs::write(dir.path().join("chimera.log"), format!("{{\"whole\":1}}\n{torn}")).unwrap();
    let guard = config(dir.path()).build().unwrap();
    guard.logger("m").info("after_restart", json!({}));
    drop(guard);
    let text = fs::read_to_string(dir.path().join("chimera.log")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "{\"whole\":1}");
    assert_eq!(lines[1], torn, "the torn tail is kept as it was");
    let next: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
    assert_eq!(next["event"], "after_restart");
    assert_eq!(lines.len(), 3);
}

#[test]
fn a_failed_compression_keeps_the_plain_backup_is_counted_and_the_next_start_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_micros(1_705_314_645_000_000));
    let guard = config(dir.path()).clock(clock).max_bytes(300).build().unwrap();
    // The compressor's temporary file cannot be created: a directory is in its place.
    let blocker = dir.path().join("chimera.log.20240115T103045.000000Z.gz.tmp");
    fs::create_dir(&blocker).unwrap();
    write_seq(&guard, 0..2, 200);
    let logger = guard.logger("m");
    drop(guard);
    assert_eq!(logger.stats().unwrap().compression_failures, 1);
    let plain = dir.path().join("chimera.log.20240115T103045.000000Z");
    let gz = dir.path().join("chimera.log.20240115T103045.000000Z.gz");
    assert!(plain.is_file() && !gz.exists(), "the plain backup is kept");
    assert_eq!(seqs(dir.path(), "chimera.log"), [0, 1]);

    fs::remove_dir(&blocker).unwrap();
    let guard = config(dir.path()).build().unwrap();
    let logger = guard.logger("m");
    drop(guard);
    assert_eq!(logger.stats().unwrap().compressed_backups, 1);
    assert!(!plain.exists() && gz.is_file());
    assert_eq!(seqs(dir.path(), "chimera.log"), [0, 1]);
}

#[test]
fn a_backup_that_cannot_be_repaired_does_not_stop_logging_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    // A plain backup to compress, and a directory where its temporary file must go.
    fs::write(dir.path().join("chimera.log.20240115T103045.000000Z"), "{\"old\":1}\n").unwrap();
    fs::create_dir(dir.path().join("chimera.log.20240115T103045.000000Z.gz.tmp")).unwrap();
    let guard = config(dir.path()).build().unwrap();
    write_seq(&guard, 0..1, 10);
    let logger = guard.logger("m");
    drop(guard);
    assert_eq!(logger.stats().unwrap().compression_failures, 1, "the failed repair is counted");
    assert_eq!(seqs(dir.path(), "chimera.log"), [0]);
    assert!(dir.path().join("chimera.log.20240115T103045.000000Z").is_file(), "the plain backup is kept");
    assert!(dir.path().join("chimera.log.20240115T103045.000000Z.gz.tmp").is_dir(), "the directory is left alone");
}

#[test]
fn a_deleted_log_file_is_recreated_with_the_lines_written_after() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).build().unwrap();
    write_seq(&guard, 0..3, 10);
    assert!(guard.flush(), "flush timed out");
    fs::remove_file(dir.path().join("chimera.log")).unwrap();
    fs::remove_file(dir.path().join("executions.log")).unwrap();
    write_seq(&guard, 3..6, 10);
    emit!(guard.logger("exec"), Executed { block_number: 1, pad: "" });
    drop(guard);
    assert_eq!(seqs(dir.path(), "chimera.log"), [3, 4, 5]);
    assert_eq!(common::events(&dir.path().join("executions.log")), ["executed"]);
}

#[test]
fn a_log_file_moved_away_keeps_its_lines_and_a_new_file_takes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).build().unwrap();
    write_seq(&guard, 0..3, 10);
    assert!(guard.flush(), "flush timed out");
    fs::rename(dir.path().join("chimera.log"), dir.path().join("moved.log")).unwrap();
    write_seq(&guard, 3..6, 10);
    drop(guard);
    let moved: Vec<u64> = common::json_lines(&dir.path().join("moved.log"))
        .iter()
        .map(|l| l["context"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(moved, [0, 1, 2]);
    assert_eq!(seqs(dir.path(), "chimera.log"), [3, 4, 5]);
}

#[test]
fn a_removed_log_directory_is_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let guard = config(&logs).build().unwrap();
    write_seq(&guard, 0..2, 10);
    assert!(guard.flush(), "flush timed out");
    fs::remove_dir_all(&logs).unwrap();
    write_seq(&guard, 2..4, 10);
    emit!(guard.logger("exec"), Executed { block_number: 9, pad: "" });
    drop(guard);
    assert_eq!(seqs(&logs, "chimera.log"), [2, 3]);
    assert_eq!(common::events(&logs.join("executions.log")), ["executed"]);
}

#[test]
fn write_faults_are_counted_retried_and_lose_no_line_once_cleared() {
    for kind in [std::io::ErrorKind::StorageFull, std::io::ErrorKind::Other, std::io::ErrorKind::PermissionDenied] {
        let dir = tempfile::tempdir().unwrap();
        let faults = Arc::new(FaultInjector::new());
        let guard = config(dir.path())
            .fault_injector(faults.clone())
            .shutdown_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        write_seq(&guard, 0..10, 50);
        assert!(guard.flush(), "flush timed out");
        // Let 30 bytes through, then fail: a line is cut mid-way, and must still end up whole.
        faults.fail_writes(kind, 30);
        write_seq(&guard, 10..20, 50);
        emit!(guard.logger("exec"), Executed { block_number: 1, pad: "" });
        assert!(!guard.flush(), "{kind:?}: the lines a fault holds back are not written: no flush says they are");
        let failing = guard.stats();
        assert!(failing.sink("chimera.log").unwrap().write_errors >= 1, "{kind:?}: {failing:?}");
        assert!(failing.sink("executions.log").unwrap().write_errors >= 1, "{kind:?}");
        faults.clear();
        write_seq(&guard, 20..30, 50);
        assert!(guard.flush(), "{kind:?}: the fault cleared, every line is written");
        drop(guard);
        assert_eq!(seqs(dir.path(), "chimera.log"), (0..30).collect::<Vec<_>>(), "{kind:?}");
        assert_eq!(common::events(&dir.path().join("executions.log")), ["executed"], "{kind:?}");
        assert_eq!(failing.sink("chimera.log").unwrap().dropped, 0);
    }
}

/// A flush asked while a fault holds lines back waits for the retry that writes them: it
/// returns `true` once the disk takes them again, within its deadline.
#[test]
fn a_flush_waiting_on_a_failing_disk_returns_true_once_the_retry_writes_the_lines() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let guard = config(dir.path())
        .fault_injector(faults.clone())
        .audit_store(AuditStore::none())
        .shutdown_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    faults.fail_writes_to("chimera.log", std::io::ErrorKind::StorageFull, 0);
    write_seq(&guard, 0..10, 50);
    std::thread::scope(|scope| {
        let errors = || guard.stats().sink("chimera.log").unwrap().write_errors;
        let before = errors();
        let flush = scope.spawn(|| guard.flush());
        // The flush's pass tried the disk and failed: the flush now waits on the retry.
        while errors() == before {
            std::thread::yield_now();
        }
        assert!(!flush.is_finished(), "a flush returned while its lines were held back");
        faults.clear();
        assert!(flush.join().unwrap(), "the retry wrote the lines");
    });
    assert_eq!(seqs(dir.path(), "chimera.log"), (0..10).collect::<Vec<_>>());
}

/// After a flush gave up on a failing disk, the writer's later passes retry at the sink's own
/// pace (once a second), not with one forced write per pass.
#[test]
fn a_flush_that_gave_up_on_a_failing_disk_does_not_make_every_later_pass_retry_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let guard = config(dir.path())
        .fault_injector(faults.clone())
        .audit_store(AuditStore::none())
        .shutdown_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    faults.fail_writes_to("chimera.log", std::io::ErrorKind::StorageFull, 0);
    write_seq(&guard, 0..10, 50);
    assert!(!guard.flush(), "the disk is full");
    let errors = || guard.stats().sink("chimera.log").unwrap().write_errors;
    let before = errors();
    for seq in 10..30 {
        write_seq(&guard, seq..seq + 1, 50);
        // One writer pass (no flush) per line.
        assert!(guard.wait_processed());
    }
    // 20 passes; a retry comes due once a second, so a slow run may see one or two.
    assert!(errors() - before <= 5, "{} failed writes in 20 passes", errors() - before);
    faults.clear();
    assert!(guard.flush());
    assert_eq!(seqs(dir.path(), "chimera.log"), (0..30).collect::<Vec<_>>());
}

#[test]
fn four_threads_rotating_at_64_kib_keep_every_retained_sequence_whole_and_in_order() {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 50_000;
    let dir = tempfile::tempdir().unwrap();
    // Block: this test counts lines exactly, so none may be dropped however the threads run;
    // and the watch is off, so no slow-window warning (a busy machine's) is counted either.
    let guard = config(dir.path())
        .watch_interval(std::time::Duration::MAX)
        .max_bytes(64 * 1024)
        .general_backups(10)
        .audit_backups(50)
        .overflow(chimera_log_runtime::Overflow::Block)
        .build()
        .unwrap();
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let logger = guard.logger("worker");
            scope.spawn(move || {
                for seq in 0..PER_THREAD {
                    logger.info("tick", json!({ "thread": thread, "seq": seq }));
                    if seq.is_multiple_of(100) {
                        emit!(logger, Executed { block_number: thread * PER_THREAD + seq, pad: "" });
                    }
                }
            });
        }
    });
    assert!(guard.flush());
    let stats = guard.stats();
    drop(guard);
    assert_eq!(backups(dir.path(), "chimera.log").len(), 10);
    assert!(stats.sink("chimera.log").unwrap().rotations > 10);
    for file in backups(dir.path(), "chimera.log").iter().chain(backups(dir.path(), "executions.log").iter()) {
        assert!(file.to_str().unwrap().ends_with(".gz"), "{}", file.display());
    }
    let mut next: Vec<Option<u64>> = vec![None; THREADS as usize];
    for line in all_lines(dir.path(), "chimera.log") {
        if line["event"] != "tick" {
            continue;
        }
        let thread = line["context"]["thread"].as_u64().unwrap() as usize;
        let seq = line["context"]["seq"].as_u64().unwrap();
        if let Some(expected) = next[thread] {
            assert_eq!(seq, expected, "thread {thread} has a gap or reordering");
        }
        next[thread] = Some(seq + 1);
    }
    // Threads finish at different times, so an early finisher may have no line left in the
    // retained window; the last line written is always retained.
    assert!(next.contains(&Some(PER_THREAD)), "{next:?}");
    // Ticks, audit events, and one audit_checkpoint per rotation of the audit file.
    let audit_rotations = stats.sink("executions.log").unwrap().rotations;
    assert_eq!(
        stats.sink("chimera.log").unwrap().lines,
        THREADS * PER_THREAD + THREADS * PER_THREAD / 100 + audit_rotations
    );
    let audited = all_lines(dir.path(), "executions.log").len() as u64;
    assert_eq!(audited, THREADS * PER_THREAD / 100, "the audit file kept every record");
}
