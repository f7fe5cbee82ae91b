//! The audit chain (issue 6): every record of `executions.log` carries `seq` and `chain`; the
//! chain continues across rotations and restarts; its head is recorded in the general log.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chimera_log_runtime::audit::{parse_sealed, ChainKey};
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

/// Checks the whole retained chain of `executions.log` from record 1 and returns its seqs.
fn check_chain(dir: &Path, key: &ChainKey) -> Vec<u64> {
    let mut files = backups(dir, "executions.log");
    files.push(dir.join("executions.log"));
    let (mut previous, mut seqs) = ([0u8; 32], Vec::new());
    for file in files {
        for line in read_maybe_gz(&file).split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
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

#[test]
fn the_chain_head_is_recovered_from_a_compressed_backup_and_past_a_torn_line() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).max_bytes(2_000).audit_backups(100).build().unwrap();
    emit_blocks(&guard, 0..30);
    drop(guard);
    // The current file is gone (moved away by hand) and a crash left a torn line in a new one.
    std::fs::remove_file(dir.path().join("executions.log")).unwrap();
    let kept = all_lines(dir.path(), "executions.log").len() as u64;
    std::fs::write(dir.path().join("executions.log"), b"{\"timestamp\":\"2024-01-15T10:30:45.1").unwrap();
    let guard = config(dir.path()).max_bytes(2_000).audit_backups(100).build().unwrap();
    emit_blocks(&guard, 30..31);
    drop(guard);
    let text = std::fs::read_to_string(dir.path().join("executions.log")).unwrap();
    let last = text.lines().last().unwrap();
    let record = parse_sealed(last.as_bytes()).unwrap();
    assert_eq!(record.seq, kept + 1, "continues from the newest record of the backups");
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
    emit_blocks(&guard, 0..20);
    clock.set(std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + 601));
    emit_blocks(&guard, 20..21);
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
    assert_eq!(checkpoints.last().unwrap()["seq"], 21);
    // Each checkpoint names a record whose chain it repeats.
    let records: Vec<serde_json::Value> = all_lines(dir.path(), "executions.log");
    for checkpoint in &checkpoints {
        let seq = checkpoint["seq"].as_u64().unwrap();
        let record = records.iter().find(|r| r["seq"] == seq).unwrap();
        assert_eq!(record["chain"], checkpoint["chain"]);
    }
}
