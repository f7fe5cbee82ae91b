//! The non-blocking pipeline (DESIGN §6): drops are counted exactly and reported in the log,
//! flush waits for exactly what came before it, shutdown under load loses nothing accepted,
//! group commit, stats.

mod common;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use chimera_log_runtime::{emit, Level, LogConfig, LogEvent, Stats};
use common::{json_lines, ManualClock};
use serde_json::json;

#[derive(LogEvent)]
#[log(audit)]
struct Executed {
    block_number: u64,
    thread: u64,
}

/// Lines of `chimera.log` that are `tick` events, and the drops its `log_events_dropped` lines report.
fn ticks_and_reported_drops(dir: &std::path::Path) -> (u64, u64) {
    let (mut ticks, mut dropped) = (0, 0);
    for line in common::all_lines(dir, "chimera.log") {
        match line["event"].as_str().unwrap() {
            "tick" => ticks += 1,
            "log_events_dropped" => {
                assert_eq!(line["level"], "WARNING");
                assert_eq!(line["module"], "chimera_log");
                assert_eq!(line["context"]["sink"], "chimera.log");
                dropped += line["context"]["dropped"].as_u64().unwrap();
            }
            other => panic!("unexpected event {other}"),
        }
    }
    (ticks, dropped)
}

#[test]
fn a_full_queue_drops_counts_exactly_and_reports_the_count_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    // A queue of 2 KiB holds about ten lines: four threads overrun it.
    let guard = LogConfig::new(dir.path())
        .console(false)
        .queue_capacity(2048)
        .overflow(chimera_log_runtime::Overflow::Drop)
        .build()
        .unwrap();
    const PER_THREAD: u64 = 20_000;
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let logger = guard.logger("burst");
            scope.spawn(move || {
                for seq in 0..PER_THREAD {
                    logger.info("tick", json!({"thread": thread, "seq": seq}));
                }
            });
        }
    });
    let stats = guard.stats();
    drop(guard);
    let (ticks, reported) = ticks_and_reported_drops(dir.path());
    let counted = stats.sink("chimera.log").unwrap().dropped;
    assert!(counted > 0, "the test must overrun the queue");
    assert_eq!(reported, counted, "every drop is reported in the log");
    assert_eq!(ticks + reported, 4 * PER_THREAD, "emitted = written + reported dropped");
    assert!(stats.queue_high_water_bytes <= 2048 + 200, "{}", stats.queue_high_water_bytes);
}

#[test]
fn the_audit_file_never_drops_even_when_the_general_queue_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path())
        .console(false)
        .queue_capacity(512)
        .overflow(chimera_log_runtime::Overflow::Drop)
        .audit_durability(chimera_log_runtime::AuditDurability::OsBuffer)
        .build()
        .unwrap();
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let logger = guard.logger("exec");
            scope.spawn(move || {
                for block_number in 0..5_000 {
                    emit!(logger, Executed { block_number, thread });
                }
            });
        }
    });
    let stats = guard.stats();
    drop(guard);
    assert!(stats.sink("chimera.log").unwrap().dropped > 0, "the general queue overflowed");
    assert_eq!(stats.sink("executions.log").unwrap().dropped, 0);
    let mut next = [0u64; 4];
    for line in json_lines(&dir.path().join("executions.log")) {
        let thread = line["context"]["thread"].as_u64().unwrap() as usize;
        assert_eq!(line["context"]["block_number"].as_u64().unwrap(), next[thread]);
        next[thread] += 1;
    }
    assert_eq!(next, [5_000; 4]);
}

#[test]
fn flush_returns_once_everything_emitted_before_it_is_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path()).console(false).build().unwrap();
    let logger = guard.logger("m");
    for round in 0..50u64 {
        for seq in 0..100u64 {
            logger.info("tick", json!({"round": round, "seq": seq}));
        }
        assert!(logger.flush());
        let lines = json_lines(&dir.path().join("chimera.log"));
        assert_eq!(lines.len() as u64, (round + 1) * 100, "after flush {round}");
    }
    drop(guard);
}

/// `threads` threads emit `tick` lines; once `before` are emitted the guard is dropped while they
/// are at it, and each emits 100 more (some certainly after the shutdown, however the threads
/// are scheduled). Returns how many were emitted, and the instance's stats after the shutdown.
fn emit_across_shutdown(guard: chimera_log_runtime::LogGuard, threads: u64, before: u64) -> (u64, Stats) {
    let emitted = AtomicU64::new(0);
    let shut = std::sync::atomic::AtomicBool::new(false);
    let stats_logger = guard.logger("stats");
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let logger = guard.logger("worker");
            let (emitted, shut) = (&emitted, &shut);
            scope.spawn(move || {
                let mut after = 0;
                let mut seq = 0u64;
                while after < 100 {
                    if shut.load(Relaxed) {
                        after += 1;
                    }
                    logger.info("tick", json!({"thread": thread, "seq": seq}));
                    emitted.fetch_add(1, Relaxed);
                    seq += 1;
                }
            });
        }
        while emitted.load(Relaxed) < before {
            std::hint::spin_loop();
        }
        drop(guard);
        shut.store(true, Relaxed);
    });
    (emitted.into_inner(), stats_logger.stats().unwrap())
}

#[test]
fn dropping_the_guard_while_eight_threads_emit_writes_every_accepted_line_whole() {
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path()).console(false).queue_capacity(64 * 1024).build().unwrap();
    let (emitted, stats) = emit_across_shutdown(guard, 8, 20_000);
    let (ticks, reported) = ticks_and_reported_drops(dir.path());
    assert!(stats.emitted_after_shutdown > 0, "the threads outlived the guard");
    assert_eq!(reported, stats.sink("chimera.log").unwrap().dropped);
    assert_eq!(
        ticks + reported + stats.emitted_after_shutdown,
        emitted,
        "emitted = written + reported dropped + refused after shutdown"
    );
}

/// That concurrent emitters *share* syncs is proven deterministically by the group-commit unit
/// test in `pipeline/audit.rs`; here, every line is written and at most one sync is made per line.
#[test]
fn concurrent_audit_emitters_are_all_written_and_synced() {
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path()).console(false).build().unwrap();
    std::thread::scope(|scope| {
        for thread in 0..8 {
            let logger = guard.logger("exec");
            scope.spawn(move || {
                for block_number in 0..50 {
                    emit!(logger, Executed { block_number, thread });
                }
            });
        }
    });
    let stats = guard.stats();
    drop(guard);
    assert_eq!(json_lines(&dir.path().join("executions.log")).len(), 400);
    assert!(stats.audit_syncs >= 1 && stats.audit_syncs <= 400, "{}", stats.audit_syncs);
}

#[test]
fn os_buffer_durability_makes_no_sync() {
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path())
        .console(false)
        .audit_durability(chimera_log_runtime::AuditDurability::OsBuffer)
        .build()
        .unwrap();
    emit!(guard.logger("exec"), Executed { block_number: 1, thread: 0 });
    assert_eq!(guard.stats().audit_syncs, 0);
    let guard_sync = LogConfig::new(dir.path().join("sync")).console(false).build().unwrap();
    emit!(guard_sync.logger("exec"), Executed { block_number: 1, thread: 0 });
    assert_eq!(guard_sync.stats().audit_syncs, 1);
}

#[test]
fn stats_report_emit_latency_and_queue_high_water() {
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path()).console(false).build().unwrap();
    let logger = guard.logger("m");
    for seq in 0..6_400u64 {
        logger.info("tick", json!({"seq": seq}));
    }
    assert!(guard.flush(), "flush timed out");
    let stats = guard.stats();
    assert_eq!(stats.emit_latency.samples, 100, "one emit in 64 is timed");
    assert!(stats.emit_latency.median > Duration::ZERO);
    assert!(stats.emit_latency.median <= stats.emit_latency.p99 && stats.emit_latency.p99 <= stats.emit_latency.p999);
    assert!(stats.queue_high_water_bytes > 0);
    assert_eq!(stats.events(Level::Info), 6_400);
}

#[test]
fn log_health_is_emitted_by_the_first_event_after_each_interval() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_micros(1_000_000_000));
    let guard = LogConfig::new(dir.path())
        .console(false)
        .clock(clock.clone())
        .health_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    let logger = guard.logger("m");
    logger.info("before_interval", json!({}));
    clock.set(std::time::UNIX_EPOCH + Duration::from_secs(1_000 + 61));
    logger.info("after_one_interval", json!({}));
    logger.info("same_interval", json!({}));
    clock.set(std::time::UNIX_EPOCH + Duration::from_secs(1_000 + 125));
    logger.info("after_two_intervals", json!({}));
    drop(guard);
    let lines = json_lines(&dir.path().join("chimera.log"));
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(
        events,
        ["before_interval", "after_one_interval", "log_health", "same_interval", "after_two_intervals", "log_health"]
    );
    let health = &lines[2]["context"];
    assert_eq!(health["events_by_level"][2], 2, "INFO is index 2, after TRACE and DEBUG: {health}");
    assert_eq!(health["sinks"][0]["name"], "chimera.log");
    assert!(health["emit_latency"]["median_ns"].is_u64());
}

#[test]
fn overflow_block_makes_callers_wait_and_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path())
        .console(false)
        .queue_capacity(2048)
        .overflow(chimera_log_runtime::Overflow::Block)
        .build()
        .unwrap();
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let logger = guard.logger("burst");
            scope.spawn(move || {
                for seq in 0..10_000u64 {
                    logger.info("tick", json!({"thread": thread, "seq": seq}));
                }
            });
        }
    });
    let stats = guard.stats();
    drop(guard);
    assert_eq!(stats.sink("chimera.log").unwrap().dropped, 0);
    assert_eq!(ticks_and_reported_drops(dir.path()), (40_000, 0));
}

/// A thread-local whose destructor emits: it runs while the thread exits, after the queue's own
/// thread-local (the thread's shard) is gone, so these lines take another way into the queue.
struct EmitsOnExit(std::cell::RefCell<Option<chimera_log_runtime::Logger>>);

impl Drop for EmitsOnExit {
    fn drop(&mut self) {
        if let Some(logger) = self.0.borrow_mut().take() {
            for seq in 100..110u64 {
                logger.info("tick", json!({"seq": seq}));
            }
        }
    }
}

thread_local! {
    static EMITS_ON_EXIT: EmitsOnExit = const { EmitsOnExit(std::cell::RefCell::new(None)) };
}

#[test]
fn lines_emitted_from_a_thread_local_destructor_come_after_the_threads_earlier_lines() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(chimera_log_runtime::testing::FaultInjector::new());
    let guard = LogConfig::new(dir.path())
        .console(false)
        .audit_store(chimera_log_runtime::AuditStore::none())
        .fault_injector(Arc::clone(&faults))
        .build()
        .unwrap();
    // The writer is held inside a write, so that the thread's lines, from its shard and from its
    // destructor, are all still queued when the writer next looks, and taken in one pass.
    faults.hold_writes();
    guard.logger("m").info("held", json!({}));
    faults.wait_until_a_write_is_held();
    let logger = guard.logger("m");
    std::thread::spawn(move || {
        // First touched before the queue's thread-local, so destroyed after it (they are
        // destroyed in the reverse order).
        EMITS_ON_EXIT.with(|on_exit| *on_exit.0.borrow_mut() = Some(logger.clone()));
        for seq in 0..100u64 {
            logger.info("tick", json!({"seq": seq}));
        }
    })
    .join()
    .unwrap();
    faults.release_writes();
    assert!(guard.flush());
    drop(guard);
    let seqs: Vec<u64> = json_lines(&dir.path().join("chimera.log"))
        .iter()
        .filter(|line| line["event"] == "tick")
        .map(|line| line["context"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (0..110).collect::<Vec<_>>(), "the thread's lines, each once, in the order it emitted them");
}

/// Drops that race with shutdown: a caller that finds the queue full while the guard is being
/// dropped must either be refused as after shutdown or have its drop reported in the log, never
/// counted as dropped without a report. Many short rounds, so that a caller is caught between
/// finding no room and counting its drop while the writer takes its last pass.
#[test]
fn a_drop_racing_with_shutdown_is_reported_or_refused_never_lost() {
    // Dropped at once, and dropped after waiting (the queue stalls after the first wait).
    let overflows =
        [chimera_log_runtime::Overflow::Drop, chimera_log_runtime::Overflow::WaitUpTo(Duration::from_millis(1))];
    for (round, overflow) in (0..100).flat_map(|round| overflows.map(|overflow| (round, overflow))) {
        let dir = tempfile::tempdir().unwrap();
        let guard = LogConfig::new(dir.path())
            .console(false)
            .audit_store(chimera_log_runtime::AuditStore::none())
            .queue_capacity(1024)
            .overflow(overflow)
            .build()
            .unwrap();
        let (emitted, stats) = emit_across_shutdown(guard, 6, 2_000);
        let (ticks, reported) = ticks_and_reported_drops(dir.path());
        let counted = stats.sink("chimera.log").unwrap().dropped;
        assert_eq!(reported, counted, "round {round}, {overflow:?}: every counted drop is reported in the log");
        assert_eq!(
            ticks + reported + stats.emitted_after_shutdown,
            emitted,
            "round {round}, {overflow:?}: emitted = written + reported dropped + refused after shutdown"
        );
    }
}

/// An audit emit waits for its line to be in the file (its guarantee), so on a stalled disk it
/// waits with the disk; a flush, a shutdown and `stats()` on other threads still end within
/// their timeout.
#[test]
fn a_flush_a_shutdown_and_stats_return_within_their_timeout_while_an_audit_write_is_stalled() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(chimera_log_runtime::testing::FaultInjector::new());
    let guard = LogConfig::new(dir.path())
        .console(false)
        .level_for("m", Level::Critical) // the audit file only: its write is the one held
        .audit_store(chimera_log_runtime::AuditStore::none())
        .shutdown_timeout(Duration::from_secs(1))
        .fault_injector(Arc::clone(&faults))
        .build()
        .unwrap();
    let logger = guard.logger("m");
    faults.hold_writes();
    let emitter = std::thread::spawn({
        let logger = logger.clone();
        move || emit!(logger, Executed { block_number: 1, thread: 0 })
    });
    faults.wait_until_a_write_is_held();

    // Each call on a thread of its own; one that does not answer within a minute fails the test
    // by exiting (unwinding would drop the guard, which is what might hang).
    let within_a_minute = |call: &'static str, work: Box<dyn FnOnce() -> bool + Send>| {
        let (sent, answer) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = sent.send(work());
        });
        answer.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
            eprintln!("FAILED: {call} did not return within 60 s behind a stalled audit write");
            std::process::exit(1);
        })
    };
    let stats_logger = logger.clone();
    assert!(within_a_minute("stats()", Box::new(move || stats_logger.stats().is_some())));
    assert!(!within_a_minute("a flush", Box::new(move || logger.flush())), "a flush that cannot complete says so");
    within_a_minute(
        "dropping the guard",
        Box::new(move || {
            drop(guard);
            true
        }),
    );

    faults.release_writes();
    emitter.join().unwrap();
    let executed = json_lines(&dir.path().join(chimera_log_runtime::AUDIT_FILE))
        .iter()
        .filter(|line| line["event"] == "executed")
        .count();
    assert_eq!(executed, 1, "the stalled audit line is in the file once the disk is back");
}

/// A stalled disk (the writer held inside a write) with the default overflow: callers do not wait
/// with it. Four threads each emit 5,000 lines into a 16 KiB queue while the write is held: every
/// one of them returns while it is still held (each waited for room about 100 ms once, then the
/// queue was stalled and later lines dropped at once), and once the disk is back every line is
/// written or counted and reported as dropped.
#[test]
fn a_stalled_disk_with_the_default_overflow_returns_every_caller_and_counts_every_drop() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(chimera_log_runtime::testing::FaultInjector::new());
    let guard = LogConfig::new(dir.path())
        .console(false)
        .audit_store(chimera_log_runtime::AuditStore::none())
        .queue_capacity(16 * 1024)
        .fault_injector(Arc::clone(&faults))
        .build()
        .unwrap();
    let logger = guard.logger("m");
    faults.hold_writes();
    logger.info("tick", json!({"seq": 0}));
    faults.wait_until_a_write_is_held();
    let (finished, done) = std::sync::mpsc::channel();
    for thread in 0..4u64 {
        let (logger, finished) = (logger.clone(), finished.clone());
        std::thread::spawn(move || {
            for seq in 0..5_000u64 {
                logger.info("tick", json!({"thread": thread, "seq": seq}));
            }
            let _ = finished.send(());
        });
    }
    // Every emitter returns while the write is still held: no caller waits for the disk. (A
    // minute is the bound of a test that failed, not a measurement: the wait is ~100 ms.)
    for _ in 0..4 {
        if done.recv_timeout(Duration::from_secs(60)).is_err() {
            faults.release_writes();
            panic!("a caller was still waiting for the stalled disk after a minute");
        }
    }
    faults.release_writes();
    assert!(guard.flush());
    let stats = guard.stats();
    drop(guard);
    let (ticks, reported) = ticks_and_reported_drops(dir.path());
    let counted = stats.sink("chimera.log").unwrap().dropped;
    assert!(counted > 0, "a 16 KiB queue cannot hold 20,000 lines: some were dropped");
    assert_eq!(reported, counted, "every counted drop is reported in the log");
    assert_eq!(ticks + counted, 20_001, "every line written or counted as dropped");
}
