//! S3 archive throughput (issue 27), in release mode: a trail of N audit records is written with
//! the archive off; a logger with the archive on is then started on it and `flush()` timed until
//! every record is in the bucket (SeaweedFS on 127.0.0.1, `scripts/start-seaweedfs.sh`), at the
//! default `archive_interval` (so the current file's records go in the flush's one object) and
//! with backups read whole.
//!
//! Run: `source scripts/start-seaweedfs.sh` (with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
//! AWS_REGION exported), then `cargo bench -p chimera-log-tests --features s3 --bench archive`.

use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use chimera_log_runtime::{emit, AuditDurability, AuditStore, LogConfig, LogEvent, S3Archive};

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

fn endpoint() -> String {
    std::env::var("CHIMERA_TEST_S3_ENDPOINT")
        .expect("CHIMERA_TEST_S3_ENDPOINT is not set: `source scripts/start-seaweedfs.sh` starts SeaweedFS")
}

fn config(dir: &std::path::Path) -> LogConfig {
    LogConfig::new(dir)
        .console(false)
        .audit_durability(AuditDurability::OsBuffer)
        .audit_store(AuditStore::none())
        .audit_backups(100_000)
        .shutdown_timeout(Duration::from_secs(600))
}

/// Records per second into a new bucket, for a trail of `records` written beforehand.
fn ingest(client: &Client, runtime: &tokio::runtime::Runtime, records: u64, run: usize) -> f64 {
    let bucket = format!("bench-{}-{run}-{}", std::process::id(), records);
    runtime.block_on(client.create_bucket().bucket(&bucket).object_lock_enabled_for_bucket(true).send()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).build().unwrap();
    let logger = guard.logger("executor");
    for block_number in 0..records {
        emit!(logger, event(block_number));
    }
    assert!(guard.flush());
    drop(guard);
    let started = Instant::now();
    let archive = S3Archive::new(&bucket).prefix("bench").endpoint_url(endpoint());
    let guard = config(dir.path()).archive(archive).build().unwrap();
    assert!(guard.flush(), "every record archived");
    let elapsed = started.elapsed();
    let stats = guard.stats().archive.unwrap();
    assert_eq!((stats.lag_records, stats.records), (0, records), "{stats:?}");
    drop(guard);
    records as f64 / elapsed.as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run small then.
    let full = std::env::args().any(|arg| arg == "--bench");
    let (records, runs) = if full { (500_000, 3) } else { (2_000, 1) };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let shared =
        runtime.block_on(aws_config::defaults(aws_config::BehaviorVersion::latest()).region("us-east-1").load());
    let client = Client::from_conf(
        aws_sdk_s3::config::Builder::from(&shared).endpoint_url(endpoint()).force_path_style(true).build(),
    );
    let mut rates: Vec<f64> = (0..runs).map(|run| ingest(&client, &runtime, records, run)).collect();
    let shown = format!("{rates:.0?}");
    rates.sort_by(f64::total_cmp);
    println!("archive/ingest {records} records: median {:>9.0} records/s  (runs: {shown})", rates[rates.len() / 2]);
}
