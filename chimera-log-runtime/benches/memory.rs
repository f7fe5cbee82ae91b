//! Peak memory under a burst the writer cannot keep up with (results in BENCHMARKS.md).
//!
//! 10 million events are emitted as fast as one thread can while every write to the files fails
//! (the fault injector stands in for a dead disk), so nothing drains: the queues and the file
//! sink's retry buffer fill to their caps and the rest is dropped and counted. Peak RSS must stay
//! near the caps plus a constant, whatever the number of events.
//!
//! `cargo bench -p chimera-log-runtime --bench memory`

use std::sync::Arc;

use chimera_log_runtime::testing::FaultInjector;
use chimera_log_runtime::{emit, AuditDurability, LogConfig, LogEvent};

#[derive(LogEvent)]
struct Liquidation<'a> {
    protocol: &'a str,
    borrower: &'a str,
    profit_usd: &'a str,
    block_number: u64,
    seq: u64,
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn main() {
    let events: u64 = std::env::args().filter_map(|a| a.parse().ok()).next().unwrap_or(10_000_000);
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    faults.fail_writes(std::io::ErrorKind::StorageFull, 0);
    let before = peak_rss_kib();
    let guard = LogConfig::new(dir.path())
        .console(false)
        .max_bytes(u64::MAX)
        .audit_durability(AuditDurability::OsBuffer)
        .fault_injector(faults)
        .build()
        .unwrap();
    let logger = guard.logger("burst");
    let started = std::time::Instant::now();
    let mut checkpoints = Vec::new();
    for seq in 0..events {
        emit!(
            logger,
            Liquidation {
                protocol: "moonwell",
                borrower: "0x5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b",
                profit_usd: "120.00",
                block_number: 12_345_678,
                seq,
            }
        );
        if (seq + 1) % (events / 5) == 0 {
            checkpoints.push((seq + 1, peak_rss_kib()));
        }
    }
    let elapsed = started.elapsed();
    let stats = guard.stats();
    let general = stats.sink("chimera.log").unwrap();
    println!("{events} events in {elapsed:.2?} with every file write failing");
    println!("peak RSS before start: {before} KiB");
    for (emitted, peak) in checkpoints {
        println!("peak RSS after {emitted:>9} events: {peak} KiB ({:+} KiB)", peak as i64 - before as i64);
    }
    println!(
        "chimera.log: {} dropped (queue full or retry buffer full), {} write errors; queue high-water {} bytes",
        general.dropped, general.write_errors, stats.queue_high_water_bytes
    );
    drop(guard);
}
