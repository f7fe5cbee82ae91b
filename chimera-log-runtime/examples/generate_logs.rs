//! Writes about `MB` megabytes of realistic log lines into `DIR` (rotated at 100 MB, gzipped),
//! for the CLI's query benchmark (BENCHMARKS.md).
//!
//! `cargo run --release -p chimera-log-runtime --example generate_logs -- DIR MB`

use chimera_log_runtime::{emit, LogConfig, LogEvent, Overflow};

#[derive(LogEvent)]
struct Liquidation<'a> {
    protocol: &'a str,
    borrower: &'a str,
    profit_usd: &'a str,
    block_number: u64,
    seq: u64,
}

#[derive(LogEvent)]
#[log(level = "warning")]
struct StateDivergence<'a> {
    protocol: &'a str,
    divergence_bps: u32,
    block_number: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).expect("usage: generate_logs DIR MB");
    let megabytes: u64 = args.get(2).map_or(1024, |mb| mb.parse().expect("MB must be a number"));
    let guard = LogConfig::new(dir)
        .console(false)
        .general_backups(100)
        .overflow(Overflow::Block)
        .shutdown_timeout(std::time::Duration::from_secs(600))
        .build()
        .unwrap();
    let logger = guard.logger("state_engine");
    let mut seq = 0u64;
    while guard.stats().sink("chimera.log").unwrap().bytes < megabytes * 1024 * 1024 {
        for _ in 0..10_000 {
            seq += 1;
            if seq.is_multiple_of(100) {
                emit!(
                    logger,
                    StateDivergence { protocol: "moonwell", divergence_bps: (seq % 300) as u32, block_number: seq }
                );
            } else {
                emit!(
                    logger,
                    Liquidation {
                        protocol: "aave",
                        borrower: "0x5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b",
                        profit_usd: "120.00",
                        block_number: 12_345_678 + seq / 12,
                        seq,
                    }
                );
            }
        }
    }
    drop(guard); // waits for the last compressions
    println!("{seq} events written to {dir}");
}
