//! Audit events under tokio (issue 26), in release mode, on the disk the logs live on:
//!
//! - what `emit!` of an audit event costs the tokio worker that calls it (each emit timed on
//!   its own: the write and the `fdatasync`), against `emit_async!`'s call (the caller's part)
//!   and its await (until the record is durable);
//! - a 1 ms ticker (`tokio::time::interval`, `MissedTickBehavior::Burst`, so a late tick is
//!   measured against its schedule) on a current-thread runtime while a task sends 500 audit
//!   events through `emit_async!` (each awaited), and the same with `emit!`: how late the
//!   ticker gets, the worst of each run.
//!
//! Run: `cargo bench -p chimera-log-tests --bench tokio_audit` (logs under `target/`, a real
//! disk; `CHIMERA_BENCH_DIR` to choose). Rounds alternate the two forms.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chimera_log_runtime::{emit, emit_async, AuditStore, LogConfig, LogEvent, LogGuard, Logger};
use tokio::time::MissedTickBehavior;

#[derive(LogEvent)]
#[log(audit)]
struct ExecutionAttempt<'a> {
    block_number: u64,
    protocol: &'a str,
    borrower: &'a str,
    profit_usd: f64,
    success: bool,
}

fn event(block_number: u64) -> ExecutionAttempt<'static> {
    ExecutionAttempt {
        block_number,
        protocol: "moonwell",
        borrower: "0x742d35Cc6634C0532925a3b844Bc454e4438f44e",
        profit_usd: 123.45,
        success: true,
    }
}

const EVENTS: u64 = 500;
const ROUNDS: usize = 5;

fn bench_dir() -> PathBuf {
    let base = std::env::var_os("CHIMERA_BENCH_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tokio-audit"), PathBuf::from);
    std::fs::create_dir_all(&base).unwrap();
    base
}

fn start(round: usize, form: &str) -> (tempfile::TempDir, LogGuard) {
    let dir = tempfile::Builder::new().prefix(&format!("{form}-{round}-")).tempdir_in(bench_dir()).unwrap();
    let config = LogConfig::new(dir.path()).console(false).capture(false).audit_store(AuditStore::none());
    let guard = config.build().unwrap();
    (dir, guard)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// `EVENTS` audit events from a task of a multi-thread runtime (its worker thread), each timed:
/// `emit!`'s call; `emit_async!`'s call and its await.
fn caller_cost(logger: &Logger, asynchronous: bool) -> (Vec<Duration>, Vec<Duration>) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
    runtime.block_on({
        let logger = logger.clone();
        async move {
            tokio::spawn(async move {
                let (mut calls, mut awaits) = (Vec::new(), Vec::new());
                for block_number in 0..EVENTS {
                    let started = Instant::now();
                    if asynchronous {
                        let emitted = emit_async!(logger, event(block_number));
                        calls.push(started.elapsed());
                        emitted.await;
                        awaits.push(started.elapsed());
                    } else {
                        emit!(logger, event(block_number));
                        calls.push(started.elapsed());
                    }
                }
                (calls, awaits)
            })
            .await
            .unwrap()
        }
    })
}

/// How a run's ticks went: the worst lateness, the ticks, the ticks later than 5 ms, and the
/// longest the executor's thread spent inside one emit.
type Ticks = (Duration, u64, u64, Duration);

/// A 1 ms ticker on a current-thread runtime while a task on it sends `EVENTS` audit events,
/// each awaited (`Form::Async`) or not (`Form::Sync`), or while nothing is logged for as long
/// (`Form::Idle`: the machine's own noise).
fn ticker_lateness(logger: &Logger, form: Form, idle_for: Duration) -> (Ticks, Duration) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    runtime.block_on(async {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let ticker = tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(1));
            interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
            let (mut worst, mut ticks, mut over_5ms) = (Duration::ZERO, 0u64, 0u64);
            loop {
                tokio::select! {
                    scheduled = interval.tick() => {
                        let late = tokio::time::Instant::now() - scheduled;
                        worst = worst.max(late);
                        ticks += 1;
                        over_5ms += u64::from(late > Duration::from_millis(5));
                    }
                    _ = &mut stopped => return (worst, ticks, over_5ms),
                }
            }
        });
        let logger = logger.clone();
        let started = Instant::now();
        // The longest the executor's thread spent inside one emit.
        let longest_call = tokio::spawn(async move {
            let mut longest = Duration::ZERO;
            match form {
                Form::Idle => tokio::time::sleep(idle_for).await,
                Form::Async => {
                    for block_number in 0..EVENTS {
                        let call = Instant::now();
                        let emitted = emit_async!(logger, event(block_number));
                        longest = longest.max(call.elapsed());
                        emitted.await;
                    }
                }
                Form::Sync => {
                    for block_number in 0..EVENTS {
                        let call = Instant::now();
                        emit!(logger, event(block_number));
                        longest = longest.max(call.elapsed());
                        tokio::task::yield_now().await;
                    }
                }
            }
            longest
        })
        .await
        .unwrap();
        let took = started.elapsed();
        stop.send(()).unwrap();
        let (worst, ticks, over) = ticker.await.unwrap();
        ((worst, ticks, over, longest_call), took)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Sync,
    Async,
    Idle,
}

fn main() {
    println!("audit events on a tokio worker, {EVENTS} per run, {ROUNDS} rounds, logs in {}", bench_dir().display());
    let mut sync_calls = Vec::new();
    let (mut async_calls, mut async_awaits) = (Vec::new(), Vec::new());
    let (mut sync_late, mut async_late, mut idle_late) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let mut async_took = Duration::from_millis(500);
        for asynchronous in [false, true] {
            let form = if asynchronous { "async" } else { "sync" };
            let (_dir, guard) = start(round, form);
            let logger = guard.logger("executor");
            let (calls, awaits) = caller_cost(&logger, asynchronous);
            if asynchronous {
                let (ticks, took) = ticker_lateness(&logger, Form::Async, Duration::ZERO);
                async_took = took;
                async_calls.extend(calls);
                async_awaits.extend(awaits);
                async_late.push(ticks);
            } else {
                sync_calls.extend(calls);
                sync_late.push(ticker_lateness(&logger, Form::Sync, Duration::ZERO).0);
            }
            drop(guard);
        }
        // The same ticker for as long as the emit_async! run took, nothing logged.
        let (_dir, guard) = start(round, "idle");
        idle_late.push(ticker_lateness(&guard.logger("executor"), Form::Idle, async_took).0);
        drop(guard);
    }
    for samples in [&mut sync_calls, &mut async_calls, &mut async_awaits] {
        samples.sort_unstable();
    }
    let row = |name: &str, samples: &[Duration]| {
        println!(
            "{name:<40} median {:>8}  p99 {:>8}  max {:>8}",
            micros(percentile(samples, 0.5)),
            micros(percentile(samples, 0.99)),
            micros(*samples.last().unwrap())
        );
    };
    row("emit! (audit) on the worker", &sync_calls);
    row("emit_async! call on the worker", &async_calls);
    row("emit_async! call to durable (awaited)", &async_awaits);
    let late = |name: &str, runs: &[Ticks]| {
        let worst: Vec<String> = runs.iter().map(|(worst, ..)| micros(*worst)).collect();
        let over: Vec<String> = runs.iter().map(|(_, ticks, over, _)| format!("{over}/{ticks}")).collect();
        let call: Vec<String> = runs.iter().map(|(.., call)| micros(*call)).collect();
        println!("{name:<40} worst lateness per run: {}", worst.join(", "));
        println!("{:<40} ticks later than 5 ms: {}", "", over.join(", "));
        println!("{:<40} longest emit call on the executor: {}", "", call.join(", "));
    };
    late("1 ms ticker, 500 audit via emit!", &sync_late);
    late("1 ms ticker, 500 audit via emit_async!", &async_late);
    late("1 ms ticker, nothing logged (noise)", &idle_late);
}
