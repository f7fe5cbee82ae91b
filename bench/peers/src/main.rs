//! The same workload on chimera-log and its peers, side by side in one run.
//!
//! Each configuration runs in a child process of its own (the peers install process-wide state),
//! writes `events` JSON lines with five context fields to a file in a fresh directory from 1, 4
//! or 8 threads, shuts its logger down (the final flush is timed), and the parent counts the lines
//! afterwards: a run that lost a line fails the whole comparison.
//!
//! `cargo run --release --manifest-path bench/peers/Cargo.toml -- [events] [rounds]`

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LIBS: [&str; 6] = ["chimera-log", "chimera-layer", "tracing", "slog", "spdlog-rs", "raw-bufwriter"];
/// Thread counts compared (the machine the figures come from has 2 cores).
const THREADS: [usize; 3] = [1, 4, 8];
const PROTOCOL: &str = "moonwell";
const BORROWER: &str = "0x5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b";
const PROFIT: &str = "120.00";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let (lib, threads, events, dir) = (&args[2], args[3].parse().unwrap(), args[4].parse().unwrap(), &args[5]);
        let elapsed = run(lib, threads, events, Path::new(dir));
        println!("{}", elapsed.as_nanos());
        return;
    }
    let events: u64 = args.get(1).map_or(1_000_000, |a| a.parse().unwrap());
    let rounds: usize = args.get(2).map_or(3, |a| a.parse().unwrap());
    let exe = std::env::current_exe().unwrap();
    let mut results: Vec<(&str, usize, Vec<f64>)> = Vec::new();
    for round in 0..rounds {
        for threads in THREADS {
            for lib in LIBS {
                let dir =
                    std::env::temp_dir().join(format!("chimera-peers-{}-{lib}-{threads}-{round}", std::process::id()));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).unwrap();
                let out = Command::new(&exe)
                    .args(["--child", lib, &threads.to_string(), &events.to_string(), dir.to_str().unwrap()])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{lib}: {}", String::from_utf8_lossy(&out.stderr));
                let nanos: f64 = String::from_utf8(out.stdout).unwrap().trim().parse().unwrap();
                let lines = count_lines(&dir);
                assert_eq!(lines, events, "{lib} with {threads} threads lost lines");
                std::fs::remove_dir_all(&dir).unwrap();
                let rate = events as f64 / (nanos / 1e9);
                eprintln!("round {round} {lib:<14} {threads} thread(s): {rate:>12.0} events/s");
                match results.iter_mut().find(|(l, t, _)| *l == lib && *t == threads) {
                    Some((_, _, rates)) => rates.push(rate),
                    None => results.push((lib, threads, vec![rate])),
                }
            }
        }
    }
    println!("| logger | threads | median events/s | vs tracing | vs spdlog-rs | vs raw |");
    // `chimera-layer` is `tracing::info!` into ChimeraLayer: its "vs tracing" column is the
    // same call sites written by chimera-log against tracing-subscriber's JSON + non_blocking.
    println!("|---|---|---|---|---|---|");
    let median = |lib: &str, threads: usize| {
        let mut rates = results.iter().find(|(l, t, _)| *l == lib && *t == threads).unwrap().2.clone();
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    for threads in THREADS {
        for lib in LIBS {
            let m = median(lib, threads);
            println!(
                "| {lib} | {threads} | {m:.0} | {:.2}x | {:.2}x | {:.2}x |",
                m / median("tracing", threads),
                m / median("spdlog-rs", threads),
                m / median("raw-bufwriter", threads)
            );
        }
    }
}

fn count_lines(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        // Log files only: chimera-log also keeps its directory lock there.
        if path.extension().is_none_or(|e| e != "log") {
            continue;
        }
        let file = BufReader::new(File::open(&path).unwrap());
        total += file.split(b'\n').filter(|line| !line.as_ref().unwrap().is_empty()).count() as u64;
    }
    total
}

/// Runs `events` events split over `threads` threads and shuts down; returns the time taken.
fn run(lib: &str, threads: usize, events: u64, dir: &Path) -> Duration {
    let per_thread = events / threads as u64;
    assert_eq!(per_thread * threads as u64, events, "events must divide by threads");
    match lib {
        "chimera-log" => chimera::run(threads, per_thread, dir, None),
        // Not in the table (`LIBS`): raising a thread's priority takes a privilege (root,
        // CAP_SYS_NICE or RLIMIT_NICE); run as `--child chimera-log-writer-priority T N DIR`.
        "chimera-log-writer-priority" => chimera::run(threads, per_thread, dir, Some(-10)),
        "chimera-layer" => chimera_layer::run(threads, per_thread, dir),
        "tracing" => peer_tracing::run(threads, per_thread, dir),
        "slog" => peer_slog::run(threads, per_thread, dir),
        "spdlog-rs" => peer_spdlog::run(threads, per_thread, dir),
        "raw-bufwriter" => raw::run(threads, per_thread, dir),
        other => panic!("unknown logger {other}"),
    }
}

/// Runs `body(thread)` on `threads` threads and waits for them.
fn on_threads(threads: usize, body: impl Fn(u64) + Sync) {
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let body = &body;
            scope.spawn(move || body(thread as u64));
        }
    });
}

mod chimera {
    use super::*;
    use chimera_log_runtime::{emit, AuditStore, LogConfig, LogEvent, Overflow};

    #[derive(LogEvent)]
    struct Liquidation<'a> {
        protocol: &'a str,
        borrower: &'a str,
        profit_usd: &'a str,
        block_number: u64,
        seq: u64,
    }

    pub(super) fn run(threads: usize, per_thread: u64, dir: &Path, writer_priority: Option<i32>) -> Duration {
        let mut config = LogConfig::new(dir);
        if let Some(nice) = writer_priority {
            config = config.writer_priority(nice);
        }
        let guard = config
            .console(false)
            .max_bytes(u64::MAX) // the peers do not rotate either
            .overflow(Overflow::Block) // as the peers are configured: no loss
            .audit_store(AuditStore::none()) // no audit events here; only log files in the directory
            .build()
            .unwrap();
        let start = Instant::now();
        on_threads(threads, |thread| {
            let logger = guard.logger("bench");
            for seq in 0..per_thread {
                emit!(
                    logger,
                    Liquidation {
                        protocol: PROTOCOL,
                        borrower: BORROWER,
                        profit_usd: PROFIT,
                        block_number: 12_345_678 + thread,
                        seq
                    }
                );
            }
        });
        drop(guard);
        let elapsed = start.elapsed();
        // Only the general file is counted: the audit file is empty for this event.
        std::fs::remove_file(dir.join("executions.log")).unwrap();
        elapsed
    }
}

/// The peers' `tracing::info!` event, captured by chimera-log's `ChimeraLayer` (installed by
/// `init_logging` with `capture`): the same call sites as the tracing peer, chimera-log's writer.
mod chimera_layer {
    use super::*;
    use chimera_log_runtime::{init_logging, AuditStore, LogConfig, Overflow};

    pub(super) fn run(threads: usize, per_thread: u64, dir: &Path) -> Duration {
        let guard = init_logging(
            LogConfig::new(dir)
                .console(false)
                .max_bytes(u64::MAX)
                .overflow(Overflow::Block)
                .audit_store(AuditStore::none())
                .capture(true),
        )
        .unwrap();
        let start = Instant::now();
        peer_tracing::events(threads, per_thread);
        drop(guard);
        let elapsed = start.elapsed();
        std::fs::remove_file(dir.join("executions.log")).unwrap();
        elapsed
    }
}

mod peer_tracing {
    use super::*;
    use tracing_appender::non_blocking::NonBlockingBuilder;

    /// The workload as `tracing` call sites: the same for tracing's own output and for
    /// chimera-log's `ChimeraLayer`.
    pub(super) fn events(threads: usize, per_thread: u64) {
        on_threads(threads, |thread| {
            for seq in 0..per_thread {
                tracing::info!(
                    protocol = PROTOCOL,
                    borrower = BORROWER,
                    profit_usd = PROFIT,
                    block_number = 12_345_678 + thread,
                    seq,
                    "liquidation"
                );
            }
        });
    }

    pub(super) fn run(threads: usize, per_thread: u64, dir: &Path) -> Duration {
        let file = tracing_appender::rolling::never(dir, "tracing.log");
        let (writer, guard) = NonBlockingBuilder::default().lossy(false).finish(file);
        let subscriber = tracing_subscriber::fmt().json().with_writer(writer).finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        let start = Instant::now();
        peer_tracing::events(threads, per_thread);
        drop(guard); // flushes and joins the worker
        start.elapsed()
    }
}

mod peer_slog {
    use super::*;
    use slog::{o, Drain};

    pub(super) fn run(threads: usize, per_thread: u64, dir: &Path) -> Duration {
        let file = BufWriter::new(File::create(dir.join("slog.log")).unwrap());
        let json = slog_json::Json::new(file).add_default_keys().build().fuse();
        let (drain, guard) =
            slog_async::Async::new(json).overflow_strategy(slog_async::OverflowStrategy::Block).build_with_guard();
        let logger = slog::Logger::root(drain.fuse(), o!());
        let start = Instant::now();
        on_threads(threads, |thread| {
            for seq in 0..per_thread {
                slog::info!(logger, "liquidation";
                    "protocol" => PROTOCOL, "borrower" => BORROWER, "profit_usd" => PROFIT,
                    "block_number" => 12_345_678 + thread, "seq" => seq);
            }
        });
        drop(logger);
        drop(guard); // joins the worker, which drops (and flushes) the writer
        start.elapsed()
    }
}

mod peer_spdlog {
    use super::*;
    use spdlog::formatter::JsonFormatter;
    use spdlog::sink::{AsyncPoolSink, FileSink, OverflowPolicy};
    use spdlog::ThreadPool;

    pub(super) fn run(threads: usize, per_thread: u64, dir: &Path) -> Duration {
        let file =
            FileSink::builder().path(dir.join("spdlog.log")).formatter(JsonFormatter::new()).build_arc().unwrap();
        let pool = ThreadPool::builder().build_arc().unwrap();
        let sink = AsyncPoolSink::builder()
            .sink(file)
            .thread_pool(pool.clone())
            .overflow_policy(OverflowPolicy::Block)
            .build_arc()
            .unwrap();
        let logger = Arc::new(spdlog::Logger::builder().sink(sink.clone()).build().unwrap());
        let start = Instant::now();
        on_threads(threads, |thread| {
            for seq in 0..per_thread {
                let block_number = 12_345_678 + thread;
                spdlog::info!(logger: logger, "liquidation",
                    kv: { protocol = PROTOCOL, borrower = BORROWER, profit_usd = PROFIT, block_number, seq });
            }
        });
        logger.flush();
        drop(logger);
        drop(sink);
        drop(pool); // joins the pool's threads once they have drained the queue
        start.elapsed()
    }
}

mod raw {
    use super::*;

    /// The physical reference: the bytes of a typical line, pre-formatted, through a `BufWriter`.
    pub(super) fn run(threads: usize, per_thread: u64, dir: &Path) -> Duration {
        let line = format!(
            "{{\"timestamp\":\"2024-01-15T10:30:45.123456Z\",\"level\":\"INFO\",\"module\":\"bench\",\"event\":\"liquidation\",\"context\":{{\"protocol\":\"{PROTOCOL}\",\"borrower\":\"{BORROWER}\",\"profit_usd\":\"{PROFIT}\",\"block_number\":12345678,\"seq\":123456}}}}\n"
        );
        let out = Mutex::new(BufWriter::with_capacity(64 * 1024, File::create(dir.join("raw.log")).unwrap()));
        let start = Instant::now();
        on_threads(threads, |_| {
            for _ in 0..per_thread {
                out.lock().unwrap().write_all(line.as_bytes()).unwrap();
            }
        });
        out.into_inner().unwrap().flush().unwrap();
        start.elapsed()
    }
}
