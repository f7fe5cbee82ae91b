//! Caller-side cost of `emit!` for a typed event with five context fields (results in
//! BENCHMARKS.md).
//!
//! Criterion times batches of 10,000 emits; between batches (untimed) the logger is flushed, so
//! the queue never fills and every timed emit is a real one, not a drop. After criterion, a
//! second pass times each emit on its own for the tail (p99, p99.9), and a third does it the way
//! the low-latency loggers publish it (issue 30): emits spaced 2 µs apart, the 7-field event.
//!
//! `cargo bench -p chimera-log-runtime --bench emit`

use std::hint::black_box;
use std::time::{Duration, Instant};

use chimera_log_runtime::{emit, AuditDurability, LogConfig, LogEvent, LogGuard};
use criterion::{criterion_group, Criterion};

#[path = "common/divergence.rs"]
mod divergence;
use divergence::divergence;

#[derive(LogEvent)]
struct Liquidation<'a> {
    protocol: &'a str,
    borrower: &'a str,
    profit_usd: &'a str,
    block_number: u64,
    seq: u64,
}

const BATCH: u64 = 10_000;

/// The benchmarked event; `black_box` keeps the compiler from folding its fields into the encoder.
fn liquidation(seq: u64) -> Liquidation<'static> {
    black_box(Liquidation {
        protocol: "moonwell",
        borrower: "0x5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b",
        profit_usd: "120.00",
        block_number: 12_345_678,
        seq,
    })
}

fn start(dir: &std::path::Path) -> LogGuard {
    LogConfig::new(dir).console(false).max_bytes(u64::MAX).audit_durability(AuditDurability::OsBuffer).build().unwrap()
}

fn emit_batch(guard: &LogGuard, logger: &chimera_log_runtime::Logger, first: u64) -> Duration {
    let start = Instant::now();
    for seq in first..first + BATCH {
        emit!(logger, liquidation(seq));
    }
    let elapsed = start.elapsed();
    assert!(guard.flush(), "flush timed out");
    elapsed
}

fn caller_cost(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let guard = start(dir.path());
    let logger = guard.logger("bench");
    let mut seq = 0;
    c.bench_function("emit!/typed 5 fields (caller side)", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iterations {
                total += emit_batch(&guard, &logger, seq);
                seq += BATCH;
                done += BATCH;
            }
            total.mul_f64(iterations as f64 / done as f64)
        });
    });
    let stats = guard.stats();
    assert_eq!(stats.sink("chimera.log").unwrap().dropped, 0, "no timed emit may be a drop");
}

/// Prints the percentiles of per-emit `samples` (ns), with the timer's own median (`overhead`)
/// and the median net of it.
fn print_latency(label: &str, samples: &mut [u64], overhead: &mut [u64]) {
    samples.sort_unstable();
    overhead.sort_unstable();
    let at = |v: &[u64], q: f64| v[((v.len() - 1) as f64 * q) as usize];
    println!(
        "{label} over {} emits: median {} ns, p99 {} ns, p99.9 {} ns, max {} ns (Instant pair alone: median {} ns; median net {} ns)",
        samples.len(),
        at(samples, 0.5),
        at(samples, 0.99),
        at(samples, 0.999),
        samples.last().unwrap(),
        at(overhead, 0.5),
        at(samples, 0.5).saturating_sub(at(overhead, 0.5)),
    );
}

/// Times each emit on its own (`Instant` pairs, whose own cost is measured and reported).
fn tail_latency() {
    let dir = tempfile::tempdir().unwrap();
    let guard = start(dir.path());
    let logger = guard.logger("bench");
    let mut samples = Vec::with_capacity(1_000_000);
    let mut overhead = Vec::with_capacity(100_000);
    for round in 0..100u64 {
        for seq in round * BATCH..(round + 1) * BATCH {
            let start = Instant::now();
            emit!(logger, liquidation(seq));
            samples.push(start.elapsed().as_nanos() as u64);
        }
        for _ in 0..1_000 {
            let start = Instant::now();
            overhead.push(black_box(start).elapsed().as_nanos() as u64);
        }
        assert!(guard.flush(), "flush timed out");
    }
    print_latency("per-emit latency", &mut samples, &mut overhead);
    let stats = guard.stats();
    println!(
        "logger's own sampled histogram: median {:?}, p99 {:?}, p99.9 {:?} ({} samples)",
        stats.emit_latency.median, stats.emit_latency.p99, stats.emit_latency.p999, stats.emit_latency.samples
    );
}

/// The low-latency loggers' method (issue 30): each emit timed on its own, 2 µs between emits so
/// the queue never fills, 1,000,000 emits of the 7-field event; medians net of the timer's own.
fn spaced_latency() {
    let dir = tempfile::tempdir().unwrap();
    let guard = start(dir.path());
    let logger = guard.logger("bench");
    let mut samples = Vec::with_capacity(1_000_000);
    let mut overhead = Vec::with_capacity(1_000_000);
    for round in 0..100u64 {
        for seq in round * BATCH..(round + 1) * BATCH {
            let event = divergence(seq);
            let start = Instant::now();
            emit!(logger, event);
            samples.push(start.elapsed().as_nanos() as u64);
            let start = Instant::now();
            overhead.push(black_box(start).elapsed().as_nanos() as u64);
            let until = Instant::now() + Duration::from_micros(2);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        assert!(guard.flush(), "flush timed out");
    }
    print_latency("spaced 2 us, 7 fields,", &mut samples, &mut overhead);
    let stats = guard.stats();
    assert_eq!(stats.sink("chimera.log").unwrap().dropped, 0, "no timed emit may be a drop");
}

#[derive(LogEvent)]
#[log(level = "debug")]
struct Detail {
    seq: u64,
}

/// What a disabled event costs the caller: a typed DEBUG event from a module whose level is
/// INFO (the logger's cached level), and a captured `tracing::debug!` (tracing's cached callsite).
fn disabled_cost(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig::new(dir.path())
        .console(false)
        .audit_store(chimera_log_runtime::AuditStore::none())
        .level_for("chatty", chimera_log_runtime::Level::Debug)
        .capture(true);
    let guard = chimera_log_runtime::init_logging(config).unwrap();
    let logger = guard.logger("quiet::module");
    let mut seq = 0u64;
    c.bench_function("emit!/disabled by its module's level", |b| {
        b.iter(|| {
            seq += 1;
            emit!(logger, Detail { seq: black_box(seq) });
        });
    });
    c.bench_function("tracing::debug!/disabled by its target's level (captured)", |b| {
        b.iter(|| {
            seq += 1;
            tracing::debug!(target: "quiet::module", seq = black_box(seq), "detail");
        });
    });
    assert!(guard.flush());
    let written = guard.stats().events_by_level.iter().sum::<u64>();
    assert_eq!(written, 0, "disabled events are not written");
}

criterion_group!(benches, caller_cost, disabled_cost);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    tail_latency();
    spaced_latency();
}
