//! The audit store on PostgreSQL (feature `postgres`), against the server `scripts/test-all.sh`
//! starts (`CHIMERA_TEST_POSTGRES_URL`, and `CHIMERA_TEST_POSTGRES_CTL` to stop and start it).
//! Without them these tests fail and say so: they never skip.
#![cfg(feature = "postgres")]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chimera_log_runtime::store::{ScanFilter, StoreReader};
use chimera_log_runtime::{emit, AuditDurability, AuditStore, LogConfig, LogEvent};
use common::audit_load::{emit_from_threads, Executed};

fn url() -> String {
    std::env::var("CHIMERA_TEST_POSTGRES_URL").expect(
        "CHIMERA_TEST_POSTGRES_URL is not set: run these tests through scripts/test-all.sh, which starts PostgreSQL",
    )
}

fn config(dir: &Path) -> LogConfig {
    LogConfig::new(dir)
        .console(false)
        .audit_durability(AuditDurability::OsBuffer)
        .audit_store(AuditStore::postgres(url()))
        // A flush may wait out the other test's 30-second outage of the shared server.
        .shutdown_timeout(Duration::from_secs(300))
}

/// This logger's stream (the streams are shared by every test on the server: the one whose
/// name ends with the log directory).
fn stored(dir: &Path) -> Vec<(u64, String)> {
    let mut reader = StoreReader::open(&url()).unwrap();
    let dir = std::fs::canonicalize(dir).unwrap();
    let suffix = dir.to_str().unwrap().trim_start_matches('/');
    let stream = reader.streams().unwrap().into_iter().find(|s| s.ends_with(suffix)).expect("this logger's stream");
    let mut records = Vec::new();
    reader
        .scan(&stream, &ScanFilter::default(), |row| {
            records.push((row.seq, row.record));
            true
        })
        .unwrap();
    records
}

fn assert_exactly_once(dir: &Path, expected: u64) {
    let stored = stored(dir);
    assert_eq!(stored.len() as u64, expected);
    assert!(stored.iter().enumerate().all(|(i, (seq, _))| *seq == i as u64 + 1), "seq 1..={expected}, once each");
    for (seq, line) in common::audit_records(dir) {
        assert_eq!(stored[seq as usize - 1].1, line, "seq {seq}");
    }
}

#[test]
fn a_hundred_thousand_records_from_four_threads_across_64k_rotations_reach_postgres_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).max_bytes(64 * 1024).audit_backups(3).build().unwrap();
    emit_from_threads(&guard, 4, 25_000, 0);
    assert!(guard.flush(), "everything stored");
    let stats = guard.stats().audit_store.unwrap();
    drop(guard);
    // The other test stops the server meanwhile: a batch whose commit the server made but could
    // not acknowledge is read again and found present (a duplicate, not a new row).
    assert_eq!((stats.lag_records, stats.conflicts), (0, 0), "{stats:?}");
    assert!(stats.rows_stored <= 100_000, "{stats:?}");
    assert_exactly_once(dir.path(), 100_000);
}

#[test]
fn postgres_stopped_for_30_seconds_under_load_then_everything_is_caught_up_exactly_once() {
    let ctl = std::env::var("CHIMERA_TEST_POSTGRES_CTL")
        .expect("CHIMERA_TEST_POSTGRES_CTL is not set: run through scripts/test-all.sh");
    let run = |action: &str| {
        let status = Command::new(&ctl).arg(action).status().unwrap();
        assert!(status.success(), "{ctl} {action} failed");
    };
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).max_bytes(256 * 1024).audit_backups(2).build().unwrap();
    emit_from_threads(&guard, 2, 5_000, 0);
    assert!(guard.flush());
    run("stop");
    // Thirty seconds of load while the database is down: batches of records, paced (the pace is
    // the load's, not a wait for the logger).
    let started = std::time::Instant::now();
    let mut round = 1;
    while started.elapsed() < Duration::from_secs(30) {
        emit_from_threads(&guard, 2, 500, round * 10_000);
        round += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    let during = guard.stats();
    run("start");
    assert!(guard.flush(), "caught up after the database came back");
    let after = guard.stats().audit_store.unwrap();
    drop(guard);
    let expected = 10_000 + (round - 1) * 1_000;
    assert!(during.audit_backups_kept_for_store > 0, "backups were kept while the store was down: {during:?}");
    assert!(after.errors >= 1 && !after.down && after.lag_records == 0, "{after:?}");
    assert_exactly_once(dir.path(), expected);
}

#[derive(LogEvent)]
#[log(audit, key = "tx_hash")]
struct Submitted<'a> {
    tx_hash: &'a str,
    block_number: u64,
}

#[test]
fn a_record_holding_a_nul_is_stored_exactly_and_the_records_after_it_too() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).build().unwrap();
    let logger = guard.logger("executor");
    emit!(logger, Executed { block_number: 1, pad: "" });
    // Written as `\u0000`, which `jsonb` refuses (and a text column refuses the NUL itself).
    emit!(logger, Submitted { tx_hash: "0x\0ff", block_number: 2 });
    emit!(logger, Executed { block_number: 3, pad: "" });
    assert!(guard.flush(), "stored, not retried for ever");
    emit!(logger, Executed { block_number: 4, pad: "" });
    assert!(guard.flush(), "and archiving goes on");
    let stats = guard.stats().audit_store.unwrap();
    drop(guard);
    assert!(common::audit_records(dir.path())[1].1.contains(r#""tx_hash":"0x\u0000ff""#));
    assert_exactly_once(dir.path(), 4);
    assert_eq!((stats.rows_stored, stats.lag_records, stats.conflicts, stats.errors), (4, 0, 0, 0), "{stats:?}");
    // The identity column holds the value with the NUL replaced.
    let mut reader = StoreReader::open(&url()).unwrap();
    let canonical = std::fs::canonicalize(dir.path()).unwrap();
    let suffix = canonical.to_str().unwrap().trim_start_matches('/');
    let stream = reader.streams().unwrap().into_iter().find(|s| s.ends_with(suffix)).unwrap();
    let mut found = Vec::new();
    reader
        .scan(&stream, &ScanFilter::default().identity("0x\u{fffd}ff"), |row| {
            found.push(row.seq);
            true
        })
        .unwrap();
    assert_eq!(found, [2]);
}
