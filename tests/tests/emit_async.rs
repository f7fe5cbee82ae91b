//! `emit_async!` (issue 26): an audit record is in `executions.log`, synced, when its await
//! returns, and the executor's thread never writes or syncs the audit file; a general event
//! resolves at once; one thread's records keep the order it emitted them, `emit!` and
//! `emit_async!` mixed.
//!
//! The measured claim (a 1 ms ticker on a current-thread runtime never late by more than
//! 5 ms while 500 audit events go through) depends on how busy the machine is, so it is a
//! benchmark (`tests/benches/tokio_audit.rs`, BENCHMARKS.md); what makes it hold, that no write
//! or sync of the audit file happens on the executor's thread, is asserted here.

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::thread::ThreadId;

use chimera_log_runtime::testing::{FaultInjector, Io};
use chimera_log_runtime::{emit, emit_async, AuditStore, Level, LogConfig, LogEvent, LogGuard};
use serde_json::Value;

#[derive(LogEvent)]
#[log(audit)]
struct BundleSent {
    block_number: u64,
}

#[derive(LogEvent)]
struct BlockSeen {
    block_number: u64,
}

fn start(dir: &tempfile::TempDir, faults: &Arc<FaultInjector>) -> LogGuard {
    let config =
        LogConfig::new(dir.path()).console(false).audit_store(AuditStore::none()).fault_injector(Arc::clone(faults));
    config.build().unwrap()
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap()
}

/// The audit records in the file, as `(seq, block_number)`, the logger's own lines left out.
fn records(dir: &tempfile::TempDir) -> Vec<(u64, u64)> {
    common::json_lines(&dir.path().join("executions.log"))
        .iter()
        .filter(|line| line["event"] == "bundle_sent")
        .map(|line: &Value| (line["seq"].as_u64().unwrap(), line["context"]["block_number"].as_u64().unwrap()))
        .collect()
}

/// The threads that wrote to or synced `executions.log`.
fn audit_io(faults: &FaultInjector) -> Vec<(Io, ThreadId)> {
    faults.io_threads().into_iter().filter(|(file, ..)| file == "executions.log").map(|(_, io, t)| (io, t)).collect()
}

#[test]
fn each_audit_record_is_in_executions_log_and_synced_when_its_await_returns() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let guard = start(&dir, &faults);
    faults.record_io_threads();
    let logger = guard.logger("executor");
    current_thread_runtime().block_on(async {
        for block_number in 1..=50 {
            emit_async!(logger, BundleSent { block_number }).await;
            let written: Vec<u64> = records(&dir).iter().map(|(_, block)| *block).collect();
            assert_eq!(written, (1..=block_number).collect::<Vec<_>>(), "in the file when the await returns");
            let last = audit_io(&faults).last().copied();
            assert!(matches!(last, Some((Io::Sync, _))), "its write was followed by a sync: {last:?}");
        }
    });
    let seqs: Vec<u64> = records(&dir).iter().map(|(seq, _)| *seq).collect();
    assert!(seqs.windows(2).all(|pair| pair[1] == pair[0] + 1), "one chain, no gap: {seqs:?}");
    drop(guard);
}

#[test]
fn a_general_event_resolves_at_once_and_is_queued_as_emit_queues_it() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let guard = start(&dir, &faults);
    let logger = guard.logger("watcher");
    let mut cx = Context::from_waker(Waker::noop());
    let emitted = pin!(emit_async!(logger, BlockSeen { block_number: 7 }));
    assert_eq!(emitted.poll(&mut cx), Poll::Ready(()), "nothing to wait for");
    let below_level =
        pin!(emit_async!(guard.logger("watcher"), BlockSeen { block_number: 8 }, error = &std::fmt::Error));
    assert_eq!(below_level.poll(&mut cx), Poll::Ready(()));
    drop(guard);
    let lines = common::json_lines(&dir.path().join("chimera.log"));
    let seen: Vec<&Value> = lines.iter().filter(|line| line["event"] == "block_seen").collect();
    assert_eq!(seen.len(), 2, "{lines:?}");
    assert_eq!(seen[1]["exception"]["type"], "core::fmt::Error");
    assert!(!common::json_lines(&dir.path().join("executions.log")).iter().any(|line| line["event"] == "block_seen"));
}

/// 500 audit events from tasks on a current-thread runtime: every write and every sync of the
/// audit file happens on another thread (the audit thread), none on the executor's; every record
/// is in the file, once. The same event through `emit!` writes and syncs on the executor's
/// thread: what the issue measured as a stalled worker.
#[test]
fn emit_async_never_writes_or_syncs_the_audit_file_on_the_executors_thread() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let guard = start(&dir, &faults);
    let logger = guard.logger("executor");
    faults.record_io_threads();
    let executor = current_thread_runtime().block_on(async {
        let tasks: Vec<_> = (0..500u64)
            .map(|block_number| {
                let logger = logger.clone();
                tokio::spawn(async move { emit_async!(logger, BundleSent { block_number }).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        std::thread::current().id()
    });
    let io = audit_io(&faults);
    assert!(io.iter().any(|(what, _)| *what == Io::Write) && io.iter().any(|(what, _)| *what == Io::Sync), "{io:?}");
    assert!(io.iter().all(|(_, thread)| *thread != executor), "no audit write or sync on the executor's thread");
    let mut blocks: Vec<u64> = records(&dir).iter().map(|(_, block)| *block).collect();
    blocks.sort_unstable();
    assert_eq!(blocks, (0..500).collect::<Vec<_>>());

    current_thread_runtime().block_on(async { emit!(logger, BundleSent { block_number: 500 }) });
    let io = audit_io(&faults);
    assert!(io.iter().skip_while(|(_, thread)| *thread != executor).any(|(what, _)| *what == Io::Sync));
    drop(guard);
}

/// While the disk holds every write, the executor's other tasks run: the emit does not block its
/// thread, and its future resolves once the disk lets the record through.
#[test]
fn while_the_audit_write_is_stalled_the_executors_other_tasks_run() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let guard = start(&dir, &faults);
    let logger = guard.logger("executor");
    faults.hold_writes();
    let (ran, other_ran) = std::sync::mpsc::channel();
    let executor = std::thread::spawn({
        let faults = Arc::clone(&faults);
        move || {
            current_thread_runtime().block_on(async move {
                let emitted = emit_async!(logger, BundleSent { block_number: 1 });
                let other = tokio::spawn(async move { ran.send(()).unwrap() });
                other.await.unwrap();
                faults.wait_until_a_write_is_held();
                faults.release_writes();
                emitted.await;
            });
        }
    });
    // A hang guard, not a threshold: a blocked executor never lets the other task run (then the
    // disk is let go here, and the test fails instead of hanging).
    let other = other_ran.recv_timeout(std::time::Duration::from_secs(60));
    if other.is_err() {
        faults.release_writes();
    }
    assert_eq!(other, Ok(()), "the other task ran while the audit write was held");
    executor.join().unwrap();
    assert_eq!(records(&dir).iter().map(|(_, block)| *block).collect::<Vec<_>>(), [1]);
    drop(guard);
}

/// `emit!` after an `emit_async!` whose record is not written yet (the disk holds it), on the
/// same thread: its record is sealed after the earlier one, through the audit thread.
#[test]
fn an_emit_after_an_unfinished_emit_async_on_the_same_thread_is_sealed_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let guard = start(&dir, &faults);
    let logger = guard.logger("executor");
    faults.record_io_threads();
    faults.hold_writes();
    let counted = |guard: &LogGuard| guard.stats().events(Level::Info);
    let before = counted(&guard);
    std::thread::scope(|scope| {
        // Lets the disk go once the first record's write is held and the `emit!` below has
        // decided where its record goes (it decides before it is counted).
        scope.spawn(|| {
            faults.wait_until_a_write_is_held();
            // A hang guard, not a threshold: the emits block nowhere before they are counted,
            // unless `emit_async!` itself waits on the held disk (the bug this file is about).
            let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while counted(&guard) < before + 3 && std::time::Instant::now() < give_up {
                std::thread::yield_now();
            }
            faults.release_writes();
        });
        let first = emit_async!(logger, BundleSent { block_number: 1 });
        let second = emit_async!(logger, BundleSent { block_number: 2 });
        emit!(logger, BundleSent { block_number: 3 });
        current_thread_runtime().block_on(async {
            first.await;
            second.await;
        });
    });
    let caller = std::thread::current().id();
    assert_eq!(records(&dir).iter().map(|(_, block)| *block).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(audit_io(&faults).iter().all(|(_, thread)| *thread != caller), "the emit! went behind them");
    drop(guard);
}

/// Records handed to the audit thread and not yet written when the guard is dropped are written
/// by the shutdown, before the audit file closes: dropping the futures unawaited loses nothing.
#[test]
fn records_still_with_the_audit_thread_at_shutdown_are_written_before_the_file_closes() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let guard = start(&dir, &faults);
    let logger = guard.logger("executor");
    for block_number in 0..500 {
        drop(emit_async!(logger, BundleSent { block_number }));
    }
    drop(guard);
    let blocks: Vec<u64> = records(&dir).iter().map(|(_, block)| *block).collect();
    assert_eq!(blocks, (0..500).collect::<Vec<_>>(), "every record, in the order emitted");
}
