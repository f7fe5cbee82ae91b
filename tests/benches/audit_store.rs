//! Audit store throughput and its cost to the caller (issue 13), in release mode:
//!
//! - records/s into SQLite (and PostgreSQL with `--features postgres` and
//!   `CHIMERA_TEST_POSTGRES_URL`): a trail of N records is written with the store off, then a
//!   logger with the store on is started on it and `flush()` timed until every record is stored;
//! - emit latency of an audit event with the store on vs off: interleaved runs, the logger's own
//!   sampled median and p99, and the wall time per emit.
//!
//! Run: `scripts/bench-audit-store.sh` (starts PostgreSQL), or
//! `cargo bench -p chimera-log-tests --bench audit_store` for SQLite alone.

use std::time::{Duration, Instant};

use chimera_log_runtime::{emit, AuditDurability, AuditStore, LogConfig, LogEvent};

#[derive(LogEvent)]
#[log(audit)]
struct ExecutionAttempt<'a> {
    block_number: u64,
    protocol: &'a str,
    borrower: &'a str,
    debt_asset: &'a str,
    profit_usd: f64,
    gas_used: u64,
    success: bool,
}

fn event(block_number: u64) -> ExecutionAttempt<'static> {
    ExecutionAttempt {
        block_number,
        protocol: "moonwell",
        borrower: "0x742d35Cc6634C0532925a3b844Bc454e4438f44e",
        debt_asset: "USDC",
        profit_usd: 123.45,
        gas_used: 412_345,
        success: true,
    }
}

fn config(dir: &std::path::Path, store: AuditStore) -> LogConfig {
    LogConfig::new(dir)
        .console(false)
        .audit_durability(AuditDurability::OsBuffer)
        .audit_store(store)
        .shutdown_timeout(Duration::from_secs(600))
}

/// Records per second into `store`, for a trail of `records` written beforehand.
fn ingest(store: impl Fn(&std::path::Path) -> AuditStore, records: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path(), AuditStore::none()).build().unwrap();
    let logger = guard.logger("executor");
    for block_number in 0..records {
        emit!(logger, event(block_number));
    }
    assert!(guard.flush());
    drop(guard);
    let started = Instant::now();
    let guard = config(dir.path(), store(dir.path())).build().unwrap();
    assert!(guard.flush(), "every record stored");
    let elapsed = started.elapsed();
    let stats = guard.stats().audit_store.unwrap();
    assert_eq!(stats.lag_records, 0);
    drop(guard);
    records as f64 / elapsed.as_secs_f64()
}

/// (sampled median ns, sampled p99 ns, wall ns per emit) for `records` audit emits.
fn emit_cost(store: AuditStore, records: u64) -> (f64, f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path(), store).build().unwrap();
    let logger = guard.logger("executor");
    let started = Instant::now();
    for block_number in 0..records {
        emit!(logger, event(block_number));
    }
    let wall = started.elapsed().as_nanos() as f64 / records as f64;
    let latency = guard.stats().emit_latency;
    assert!(guard.flush());
    drop(guard);
    (latency.median.as_nanos() as f64, latency.p99.as_nanos() as f64, wall)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run small then.
    let full = std::env::args().any(|arg| arg == "--bench");
    let (records, runs) = if full { (200_000, 3) } else { (2_000, 1) };

    let sqlite: Vec<f64> = (0..runs).map(|_| ingest(|dir| AuditStore::sqlite(dir.join("audit.db")), records)).collect();
    println!(
        "audit_store/ingest/sqlite  {records} records: median {:>9.0} records/s  (runs: {sqlite:.0?})",
        median(sqlite.clone())
    );
    if cfg!(feature = "postgres") {
        let url = std::env::var("CHIMERA_TEST_POSTGRES_URL")
            .expect("--features postgres: CHIMERA_TEST_POSTGRES_URL must name a server (scripts/bench-audit-store.sh starts one)");
        let postgres: Vec<f64> = (0..runs).map(|_| ingest(|_| AuditStore::postgres(&url), records)).collect();
        println!(
            "audit_store/ingest/postgres {records} records: median {:>9.0} records/s  (runs: {postgres:.0?})",
            median(postgres.clone())
        );
    }

    // Interleaved: off, on, off, on, ...
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        off.push(emit_cost(AuditStore::none(), records));
        on.push(emit_cost(AuditStore::default(), records));
    }
    for (name, runs) in [("store off", &off), ("store on ", &on)] {
        println!(
            "audit_store/emit/{name}: sampled median {:>5.0} ns, p99 {:>6.0} ns, wall {:>5.0} ns/emit (medians of {} runs)",
            median(runs.iter().map(|r| r.0).collect()),
            median(runs.iter().map(|r| r.1).collect()),
            median(runs.iter().map(|r| r.2).collect()),
            runs.len()
        );
    }
}
