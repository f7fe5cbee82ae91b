//! The audit chain (issue 6): every record of `executions.log` carries `seq` and `chain`; the
//! chain continues across rotations and restarts; its head is recorded in the general log.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chimera_log_runtime::audit::{parse_anchor, parse_sealed, ChainKey};
use chimera_log_runtime::{emit, AuditDurability, LogConfig, LogEvent};
use common::{all_lines, backups, read_maybe_gz, ManualClock};

#[derive(LogEvent)]
#[log(audit)]
struct Executed<'a> {
    block_number: u64,
    pad: &'a str,
}

fn config(dir: &Path) -> LogConfig {
    LogConfig::new(dir).console(false).audit_durability(AuditDurability::OsBuffer)
}

/// Checks the whole retained chain of `executions.log` from record 1, and each file's anchor,
/// and returns its seqs.
fn check_chain(dir: &Path, key: &ChainKey) -> Vec<u64> {
    let mut files = backups(dir, "executions.log");
    files.push(dir.join("executions.log"));
    let (mut previous, mut seqs) = ([0u8; 32], Vec::new());
    for file in files {
        for (number, line) in read_maybe_gz(&file).split(|&b| b == b'\n').filter(|l| !l.is_empty()).enumerate() {
            if number == 0 {
                let anchor =
                    parse_anchor(line).unwrap_or_else(|| panic!("{} begins without its anchor", file.display()));
                assert!(anchor.is_sealed_by(key), "anchor of {} not sealed by the key", file.display());
                let last = seqs.last().copied().unwrap_or(0);
                assert_eq!((anchor.previous.seq, anchor.previous.chain), (last, previous), "{}", file.display());
                continue;
            }
            let record =
                parse_sealed(line).unwrap_or_else(|| panic!("not a sealed record: {}", String::from_utf8_lossy(line)));
            assert_eq!(record.chain, key.link(&previous, record.body), "chain broken at seq {}", record.seq);
            previous = record.chain;
            seqs.push(record.seq);
        }
    }
    seqs
}

fn emit_blocks(guard: &chimera_log_runtime::LogGuard, blocks: std::ops::Range<u64>) {
    let logger = guard.logger("executor");
    for block_number in blocks {
        emit!(logger, Executed { block_number, pad: &"p".repeat(100) });
    }
}

#[test]
fn seq_and_chain_continue_across_rotations_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).max_bytes(2_000).audit_backups(100).build().unwrap();
    emit_blocks(&guard, 0..40);
    drop(guard);
    let guard = config(dir.path()).max_bytes(2_000).audit_backups(100).build().unwrap();
    emit_blocks(&guard, 40..60);
    drop(guard);
    assert!(backups(dir.path(), "executions.log").len() > 5);
    assert_eq!(check_chain(dir.path(), &ChainKey::unkeyed()), (1..=60).collect::<Vec<_>>());
}

/// The current file removed by hand, a torn line in a new one: the newest readable record is in
/// a compressed backup, the torn line is accounted for, and the chain continues after the
/// newest record the audit store holds (the removed file's), never reusing a seq.
#[test]
fn the_chain_head_is_recovered_from_a_compressed_backup_past_a_torn_line_and_the_store_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).max_bytes(2_000).audit_backups(100).build().unwrap();
    emit_blocks(&guard, 0..30);
    drop(guard);
    // The current file is gone (moved away by hand) and a crash left a torn line in a new one.
    std::fs::remove_file(dir.path().join("executions.log")).unwrap();
    let kept = all_lines(dir.path(), "executions.log").len() as u64;
    assert!(kept < 30);
    std::fs::write(dir.path().join("executions.log"), b"{\"timestamp\":\"2024-01-15T10:30:45.1").unwrap();
    let guard = config(dir.path()).max_bytes(2_000).audit_backups(100).build().unwrap();
    emit_blocks(&guard, 30..31);
    drop(guard);
    let text = std::fs::read_to_string(dir.path().join("executions.log")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // The torn line, the restart record accounting for it, the one recording the gap, the record.
    assert_eq!(lines.len(), 4, "{text}");
    let torn: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!((&torn["event"], &torn["context"]["torn_lines"]), (&"audit_restart".into(), &1.into()), "{torn}");
    assert_eq!(torn["seq"], 31, "continues after the newest record known (the store's seq 30)");
    let gap: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
    assert_eq!(gap["event"], "audit_restart");
    assert_eq!(
        (&gap["context"]["last_readable_seq"], &gap["context"]["resumed_after_seq"], &gap["seq"]),
        (&kept.into(), &30.into(), &32.into()),
        "{gap}"
    );
    assert_eq!(parse_sealed(lines[3].as_bytes()).unwrap().seq, 33);
}

#[test]
fn a_keyed_chain_verifies_only_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).audit_key(*b"correct horse battery staple").build().unwrap();
    emit_blocks(&guard, 0..5);
    drop(guard);
    assert_eq!(check_chain(dir.path(), &ChainKey::keyed(*b"correct horse battery staple")), [1, 2, 3, 4, 5]);
    let unkeyed = std::panic::catch_unwind(|| check_chain(dir.path(), &ChainKey::unkeyed()));
    assert!(unkeyed.is_err(), "an unkeyed check must fail on a keyed chain");
}

#[test]
fn the_chain_head_is_recorded_in_the_general_log_at_each_rotation_and_interval() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_micros(1_800_000_000_000_000));
    let guard = config(dir.path())
        .clock(clock.clone())
        .max_bytes(2_000)
        .audit_backups(100)
        .checkpoint_interval(Duration::from_secs(600))
        .build()
        .unwrap();
    // Rotations come every 5 records (seq 6, 11, 16, 21): the interval falls on seq 20.
    emit_blocks(&guard, 0..19);
    clock.set(std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + 601));
    emit_blocks(&guard, 19..20);
    let stats = guard.stats();
    drop(guard);
    let checkpoints: Vec<serde_json::Value> = all_lines(dir.path(), "chimera.log")
        .into_iter()
        .filter(|l| l["event"] == "audit_checkpoint")
        .map(|l| l["context"].clone())
        .collect();
    let rotations = stats.sink("executions.log").unwrap().rotations;
    assert_eq!(checkpoints.len() as u64, rotations + 1, "{checkpoints:?}");
    assert_eq!(checkpoints.last().unwrap()["reason"], "interval");
    assert_eq!(checkpoints.last().unwrap()["seq"], 20);
    // Each checkpoint names a record whose chain it repeats.
    let records: Vec<serde_json::Value> = all_lines(dir.path(), "executions.log");
    for checkpoint in &checkpoints {
        let seq = checkpoint["seq"].as_u64().unwrap();
        let record = records.iter().find(|r| r["seq"] == seq).unwrap();
        assert_eq!(record["chain"], checkpoint["chain"]);
    }
}

#[test]
fn a_file_smaller_than_anchor_and_record_takes_one_record_each_without_rotating_forever() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).max_bytes(10).audit_backups(1_000).build().unwrap();
    emit_blocks(&guard, 0..5);
    drop(guard);
    let mut files = backups(dir.path(), "executions.log");
    files.push(dir.path().join("executions.log"));
    assert_eq!(files.len(), 5, "{files:?}");
    for file in &files {
        assert_eq!(read_maybe_gz(file).split(|&b| b == b'\n').filter(|l| !l.is_empty()).count(), 2);
    }
    assert_eq!(check_chain(dir.path(), &ChainKey::unkeyed()), (1..=5).collect::<Vec<_>>());
}

#[test]
fn a_write_fault_cutting_through_an_anchor_or_a_record_leaves_every_file_anchored_and_chained() {
    use chimera_log_runtime::testing::FaultInjector;
    // Allowances that fail a rotation's first write at once, mid-anchor, and mid-record.
    for allowance in [0, 40, 300, 1_000] {
        let dir = tempfile::tempdir().unwrap();
        let faults = Arc::new(FaultInjector::new());
        let guard = config(dir.path())
            .max_bytes(2_000)
            .audit_backups(1_000)
            .compress(false)
            .fault_injector(faults.clone())
            .build()
            .unwrap();
        emit_blocks(&guard, 0..12);
        faults.fail_writes_to("executions.log", std::io::ErrorKind::StorageFull, allowance);
        emit_blocks(&guard, 12..30);
        assert!(!guard.flush(), "allowance {allowance}: records a fault holds back are not written yet");
        assert!(guard.stats().sink("executions.log").unwrap().write_errors >= 1, "allowance {allowance}");
        faults.clear();
        emit_blocks(&guard, 30..40);
        assert!(guard.flush(), "allowance {allowance}: the fault cleared, every record is written");
        drop(guard);
        assert_eq!(
            check_chain(dir.path(), &ChainKey::unkeyed()),
            (1..=40).collect::<Vec<_>>(),
            "allowance {allowance}"
        );
    }
}

#[test]
fn an_audit_file_deleted_while_running_is_recreated_beginning_with_an_anchor_that_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).build().unwrap();
    emit_blocks(&guard, 0..5);
    let path = dir.path().join("executions.log");
    let text = std::fs::read_to_string(&path).unwrap();
    let last = parse_sealed(text.lines().last().unwrap().as_bytes()).unwrap();
    assert_eq!(last.seq, 5);
    let last_chain = last.chain;
    std::fs::remove_file(&path).unwrap();
    emit_blocks(&guard, 5..8);
    drop(guard);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let anchor = parse_anchor(lines[0].as_bytes()).expect("the recreated file begins with its anchor");
    assert!(anchor.is_sealed_by(&ChainKey::unkeyed()));
    assert_eq!((anchor.previous.seq, anchor.previous.chain), (5, last_chain));
    let first = parse_sealed(lines[1].as_bytes()).unwrap();
    assert_eq!(first.seq, 6);
    assert_eq!(first.chain, ChainKey::unkeyed().link(&last_chain, first.body));
}

#[test]
fn the_audit_sinks_byte_count_includes_each_files_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).max_bytes(2_000).audit_backups(100).compress(false).build().unwrap();
    emit_blocks(&guard, 0..30);
    let stats = guard.stats();
    drop(guard);
    let mut files = backups(dir.path(), "executions.log");
    files.push(dir.path().join("executions.log"));
    assert!(files.len() > 3);
    let on_disk: u64 = files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    let audit = stats.sink("executions.log").unwrap();
    assert_eq!(audit.bytes, on_disk);
    assert_eq!(audit.lines, 30, "records only: anchors are not lines");
}

/// A shutdown that gives up on an audit write stalled on a dead disk keeps the log directory
/// locked until that write has ended: a logger started meanwhile would continue the chain from
/// the file, and the stalled record, sealed before it, would then land among its records and
/// fork the chain.
#[test]
fn a_shutdown_that_gives_up_on_a_stalled_audit_write_keeps_the_directory_until_the_write_ends() {
    use chimera_log_runtime::testing::FaultInjector;
    use chimera_log_runtime::{AuditStore, Error, Level};

    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let guard = config(dir.path())
        .level_for("executor", Level::Critical) // the audit file only: its write is the one held
        .audit_store(AuditStore::none())
        .shutdown_timeout(Duration::from_millis(300))
        .fault_injector(Arc::clone(&faults))
        .build()
        .unwrap();
    emit_blocks(&guard, 0..1);
    let logger = guard.logger("executor");
    faults.hold_writes();
    let emitter = std::thread::spawn(move || emit!(logger, Executed { block_number: 1, pad: "" }));
    faults.wait_until_a_write_is_held();
    // Gives up on the audit file after its 300 ms (a shutdown that waited for the write would
    // never return: fail by exiting then, since unwinding cannot join it either).
    let (sent, dropped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(guard);
        let _ = sent.send(());
    });
    dropped.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
        eprintln!("FAILED: dropping the guard waited for the stalled audit write");
        std::process::exit(1);
    });

    let meanwhile = config(dir.path()).audit_store(AuditStore::none()).build().err();
    assert!(
        matches!(meanwhile, Some(Error::DirectoryInUse { .. })),
        "no second logger while the stalled record may still land: {meanwhile:?}"
    );
    faults.release_writes();
    emitter.join().unwrap(); // the stalled write has ended
    let guard = config(dir.path()).audit_store(AuditStore::none()).build().expect("the directory is free again");
    emit_blocks(&guard, 2..3);
    drop(guard);
    assert_eq!(check_chain(dir.path(), &ChainKey::unkeyed()), [1, 2, 3], "one chain, each record once");
}

/// The audit records of `dir`'s current file, `seq` only.
fn current_seqs(dir: &Path) -> Vec<u64> {
    std::fs::read(dir.join(chimera_log_runtime::AUDIT_FILE))
        .unwrap()
        .split(|&b| b == b'\n')
        .filter_map(|line| parse_sealed(line).map(|record| record.seq))
        .collect()
}

/// A record a failing disk still held when the logger shut down is given a last attempt, then
/// dropped and counted: nothing of the old logger (its late flush, its sink's drop, a write a
/// shutdown gave up on) reaches the file once a new logger may own the directory, or the two
/// chains would interleave.
#[test]
fn audit_records_a_failing_disk_held_at_shutdown_are_dropped_and_counted_never_written_beside_a_new_logger() {
    use chimera_log_runtime::testing::FaultInjector;
    use chimera_log_runtime::{AuditStore, Level};

    for stalled in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let faults = Arc::new(FaultInjector::new());
        let base = || {
            config(dir.path())
                .level_for("executor", Level::Critical) // the audit file only
                .audit_store(AuditStore::none())
                .shutdown_timeout(Duration::from_millis(300))
        };
        let guard = base().fault_injector(Arc::clone(&faults)).build().unwrap();
        let old = guard.logger("executor"); // outlives the guard, as a cached logger does
        emit!(old, Executed { block_number: 1, pad: "" });
        faults.fail_writes_to(chimera_log_runtime::AUDIT_FILE, std::io::ErrorKind::StorageFull, 0);
        if stalled {
            // The shutdown gives up on this write, which then fails.
            faults.hold_writes();
            let emitter = std::thread::spawn({
                let old = old.clone();
                move || emit!(old, Executed { block_number: 2, pad: "" })
            });
            faults.wait_until_a_write_is_held();
            drop(guard);
            faults.release_writes();
            emitter.join().unwrap();
        } else {
            emit!(old, Executed { block_number: 2, pad: "" }); // held back by the full disk
            drop(guard);
        }
        faults.clear(); // the disk is back
        let again = base().build().expect("the directory is free");
        emit!(again.logger("executor"), Executed { block_number: 3, pad: "" });
        assert!(!old.flush(), "a closed logger writes nothing more (stalled: {stalled})");
        let dropped = old.stats().unwrap().sink(chimera_log_runtime::AUDIT_FILE).unwrap().dropped;
        drop(old);
        drop(again);
        assert_eq!(dropped, 1, "the held record is counted as dropped (stalled: {stalled})");
        assert_eq!(current_seqs(dir.path()), [1, 2], "one chain, each seq once (stalled: {stalled})");
    }
}

/// The audit file's `lines` and `dropped`, as `logger`'s instance counts them.
fn audit_counts(logger: &chimera_log_runtime::Logger) -> (u64, u64) {
    let stats = logger.stats().unwrap();
    let audit = stats.sink(chimera_log_runtime::AUDIT_FILE).unwrap();
    (audit.lines, audit.dropped)
}

fn held_back_config(dir: &Path) -> LogConfig {
    config(dir)
        .level_for("executor", chimera_log_runtime::Level::Critical) // the audit file only
        .audit_store(chimera_log_runtime::AuditStore::none())
        .shutdown_timeout(Duration::from_millis(300))
}

/// A guard dropped while its thread unwinds (an application panic; `build`, so no panic hook
/// flushed first) still gives the record a short fault held back its last attempt.
#[test]
fn a_guard_dropped_while_its_thread_unwinds_still_writes_a_held_back_record() {
    use chimera_log_runtime::testing::FaultInjector;
    for unwinding in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let faults = Arc::new(FaultInjector::new());
        let guard = held_back_config(dir.path()).fault_injector(Arc::clone(&faults)).build().unwrap();
        let logger = guard.logger("executor");
        emit!(logger, Executed { block_number: 1, pad: "" });
        faults.fail_writes_to(chimera_log_runtime::AUDIT_FILE, std::io::ErrorKind::StorageFull, 0);
        emit!(logger, Executed { block_number: 2, pad: "" }); // held back; the retry is not due yet
        faults.clear(); // the disk is back
        let owner = std::thread::spawn(move || {
            let _guard = guard;
            if unwinding {
                panic!("an application panic (expected by this test)");
            }
        });
        let _ = owner.join();
        let counts = audit_counts(&logger);
        drop(logger);
        assert_eq!(counts, (2, 0), "written, not dropped (unwinding: {unwinding})");
        assert_eq!(current_seqs(dir.path()), [1, 2], "unwinding: {unwinding}");
    }
}

/// A rotation, then the new file's anchor and the record both held back by a full disk, and
/// the shutdown: one record is lost, counted once (the anchor is no record), and not as
/// written.
#[test]
fn a_record_dropped_at_shutdown_counts_once_as_dropped_and_not_as_written() {
    use chimera_log_runtime::testing::FaultInjector;
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let guard = held_back_config(dir.path()).max_bytes(700).fault_injector(Arc::clone(&faults)).build().unwrap();
    let logger = guard.logger("executor");
    let pad = "p".repeat(300);
    emit!(logger, Executed { block_number: 1, pad: &pad });
    faults.fail_writes_to(chimera_log_runtime::AUDIT_FILE, std::io::ErrorKind::StorageFull, 0);
    emit!(logger, Executed { block_number: 2, pad: &pad });
    assert_eq!(logger.stats().unwrap().sink(chimera_log_runtime::AUDIT_FILE).unwrap().rotations, 1);
    drop(guard);
    let counts = audit_counts(&logger);
    drop(logger);
    assert_eq!(counts, (1, 1), "one written, one dropped");
}

/// A sink bug in the last attempt at shutdown (it panics) must not leave the gate taken or the
/// directory locked: what it held is dropped, and the panic reaches the emitting caller.
#[test]
fn a_sink_panic_in_the_last_attempt_at_shutdown_still_frees_the_directory() {
    use chimera_log_runtime::testing::FaultInjector;
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let guard = held_back_config(dir.path()).fault_injector(Arc::clone(&faults)).build().unwrap();
    let old = guard.logger("executor");
    emit!(old, Executed { block_number: 1, pad: "" });
    faults.hold_writes();
    let emitter = std::thread::spawn({
        let old = old.clone();
        move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| emit!(old, Executed { block_number: 2, pad: "" })))
                .is_err()
        }
    });
    faults.wait_until_a_write_is_held();
    drop(guard); // gives up on the held write, which keeps the directory until it ends
    faults.fail_writes_to(chimera_log_runtime::AUDIT_FILE, std::io::ErrorKind::StorageFull, 0); // it fails
    faults.panic_on_writes_to(chimera_log_runtime::AUDIT_FILE); // and the last attempt panics
    faults.release_writes();
    assert!(emitter.join().unwrap(), "the sink's panic reaches the caller");
    faults.clear();
    let counts = audit_counts(&old);
    let again = held_back_config(dir.path()).build().expect("the directory is free once the write ended");
    emit!(again.logger("executor"), Executed { block_number: 3, pad: "" });
    drop(again);
    drop(old);
    assert_eq!(counts, (1, 1), "the held record is dropped and counted");
    assert_eq!(current_seqs(dir.path()), [1, 2], "one chain");
}

/// A record torn by a fault, its file removed before the retry (its rest is dropped), then a
/// record held back and dropped at shutdown: every count stays true (nothing counted twice, no
/// counter taken below zero).
#[test]
fn a_torn_record_whose_file_was_removed_then_a_record_dropped_at_shutdown_leave_true_counts() {
    use chimera_log_runtime::testing::FaultInjector;
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let clock = Arc::new(ManualClock::at_micros(1_800_000_000_000_000));
    let guard = held_back_config(dir.path()).clock(clock.clone()).fault_injector(Arc::clone(&faults)).build().unwrap();
    let logger = guard.logger("executor");
    emit!(logger, Executed { block_number: 1, pad: "" });
    faults.fail_writes_to(chimera_log_runtime::AUDIT_FILE, std::io::ErrorKind::StorageFull, 10);
    emit!(logger, Executed { block_number: 2, pad: "" }); // torn after 10 bytes
    std::fs::remove_file(dir.path().join(chimera_log_runtime::AUDIT_FILE)).unwrap();
    clock.set(std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_010)); // the retry is due
    emit!(logger, Executed { block_number: 3, pad: &"p".repeat(1000) }); // held back
    drop(guard);
    let stats = logger.stats().unwrap();
    drop(logger);
    let audit = stats.sink(chimera_log_runtime::AUDIT_FILE).unwrap();
    let on_disk = std::fs::metadata(dir.path().join(chimera_log_runtime::AUDIT_FILE)).map_or(0, |m| m.len());
    assert_eq!((audit.lines, audit.dropped), (1, 2), "record 1 written; 2 and 3 dropped: {stats:?}");
    assert!(audit.bytes < 100_000, "bytes never wrap below zero: {stats:?}");
    assert!(on_disk <= audit.bytes, "the recreated file holds no more than was counted: {on_disk} > {stats:?}");
}
