//! Rotation benchmarks (results in BENCHMARKS.md):
//!
//! 1. emit latency while a 100 MB backup is being compressed, against idle: logging must not
//!    wait for compression;
//! 2. throughput to `chimera.log` with rotation at 100 MB (and compression) against no rotation.
//!
//! `cargo bench -p chimera-log-runtime --bench rotation` (add `-- quick` for a smaller run).

use std::hint::black_box;
use std::time::{Duration, Instant};

use chimera_log_runtime::{emit, Level, LogConfig, LogEvent, LogGuard, Overflow};

#[derive(LogEvent)]
struct Tick<'a> {
    seq: u64,
    protocol: &'a str,
    borrower: &'a str,
    profit_usd: &'a str,
    block_number: u64,
}

fn tick(seq: u64) -> Tick<'static> {
    Tick {
        seq,
        protocol: "moonwell",
        borrower: "0x5a6b7c8d9e0f1a2b3c4d",
        profit_usd: "120.00",
        block_number: 12_345_678,
    }
}

const MB: u64 = 1024 * 1024;

fn start(dir: &std::path::Path, max_bytes: u64, compress: bool) -> LogGuard {
    LogConfig::new(dir)
        .console(false)
        .level(Level::Info)
        .max_bytes(max_bytes)
        .compress(compress)
        .general_backups(3)
        .shutdown_timeout(Duration::from_secs(120))
        // Every event counted in the throughput is written: callers wait rather than drop.
        .overflow(Overflow::Block)
        .build()
        .unwrap()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summarize(label: &str, mut nanos: Vec<u64>) {
    nanos.sort_unstable();
    println!(
        "{label:<34} n={:>8}  median {:>6} ns  p99 {:>7} ns  p99.9 {:>8} ns  max {:>9} ns",
        nanos.len(),
        percentile(&nanos, 0.5),
        percentile(&nanos, 0.99),
        percentile(&nanos, 0.999),
        nanos.last().unwrap()
    );
}

/// Emit latencies of `count` events, one `Instant` pair each.
fn sample(guard: &LogGuard, count: usize, seq: &mut u64) -> Vec<u64> {
    let logger = guard.logger("bench");
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let event = tick(*seq);
        *seq += 1;
        let start = Instant::now();
        emit!(logger, black_box(&event));
        out.push(start.elapsed().as_nanos() as u64);
    }
    out
}

fn latency_during_compression(file_mb: u64) {
    let dir = tempfile::tempdir().unwrap();
    let guard = start(dir.path(), file_mb * MB, true);
    let logger = guard.logger("bench");
    let mut seq = 0;
    // Fill the first file to just below the limit without measuring.
    let line_len = {
        emit!(logger, tick(seq));
        seq += 1;
        assert!(guard.flush(), "flush timed out");
        std::fs::metadata(dir.path().join("chimera.log")).unwrap().len()
    };
    let fill = (file_mb * MB / line_len).saturating_sub(2);
    for _ in 0..fill {
        emit!(logger, tick(seq));
        seq += 1;
    }
    // The next events rotate the file; measure while the maintenance thread compresses it.
    let mut during = Vec::new();
    let began = Instant::now();
    while guard.stats().compressed_backups == 0 {
        during.extend(sample(&guard, 1_000, &mut seq));
    }
    let compress_time = began.elapsed();
    // Then as many events with nothing running in the background.
    let idle = sample(&guard, during.len(), &mut seq);
    println!("-- emit latency, {file_mb} MB backup compressed in {compress_time:.2?} by the maintenance thread");
    summarize("idle (no compression running)", idle);
    summarize("while compressing", during);
    drop(guard);
}

fn throughput(label: &str, total_mb: u64, max_bytes: u64, compress: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let guard = start(dir.path(), max_bytes, compress);
    let logger = guard.logger("bench");
    let began = Instant::now();
    let mut seq = 0u64;
    let stats_every = 100_000;
    loop {
        for _ in 0..stats_every {
            emit!(logger, tick(seq));
            seq += 1;
        }
        if guard.stats().sink("chimera.log").unwrap().bytes >= total_mb * MB {
            break;
        }
    }
    assert!(guard.flush(), "flush timed out");
    let elapsed = began.elapsed();
    let stats = guard.stats();
    let rotations = stats.sink("chimera.log").unwrap().rotations;
    assert_eq!(stats.sink("chimera.log").unwrap().dropped, 0, "every counted event is written");
    drop(guard);
    let rate = seq as f64 / elapsed.as_secs_f64();
    println!("{label:<34} {seq:>9} events in {elapsed:>8.2?}  {:>10.0} events/s  {rotations} rotations", rate);
    rate
}

fn main() {
    // `cargo bench` passes `--bench`; anything else after `--` selects the size.
    let quick = std::env::args().any(|a| a == "quick");
    let (file_mb, total_mb, runs) = if quick { (10, 40, 1) } else { (100, 400, 3) };
    latency_during_compression(file_mb);
    println!("-- throughput to chimera.log, {total_mb} MB per run, {runs} run(s) each, interleaved");
    let mut ratios = Vec::new();
    for _ in 0..runs {
        let off = throughput("rotation off", total_mb, u64::MAX, false);
        let on = throughput(&format!("rotation at {file_mb} MB + gzip"), total_mb, file_mb * MB, true);
        ratios.push(on / off);
    }
    ratios.sort_by(f64::total_cmp);
    println!("rotation on / off throughput, median of {runs}: {:.3}", ratios[ratios.len() / 2]);
}
