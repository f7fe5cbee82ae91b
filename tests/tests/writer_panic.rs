//! A bug in a sink: a write panics, on the files writer thread or inside an audit write on the
//! caller's thread. The panic hook is process-wide and so is the instance it logs through, so
//! these tests have their own binary and take turns.

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use chimera_log_runtime::testing::FaultInjector;
use chimera_log_runtime::{emit, init_logging, LogConfig, LogEvent, Overflow};
use serde_json::json;

static SERIAL: Mutex<()> = Mutex::new(());

/// A logger writing into `dir` (no console, no audit store) whose writes `faults` controls, and
/// whose shutdown gives up after 2 s.
fn config_with(dir: &std::path::Path, faults: &Arc<FaultInjector>) -> LogConfig {
    LogConfig::new(dir)
        .console(false)
        .audit_store(chimera_log_runtime::AuditStore::none())
        .shutdown_timeout(Duration::from_secs(2))
        .fault_injector(Arc::clone(faults))
}

/// What the thread under test sends within a minute. Past it the test fails by exiting, not by
/// panicking: the panic hook under test would log the panic through the same stuck logger.
fn within_a_minute<T>(done: &mpsc::Receiver<T>, stuck: &str) -> T {
    done.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
        eprintln!("FAILED: did not return within 60 s: {stuck}");
        std::process::exit(1);
    })
}

#[test]
fn a_writer_thread_that_panics_with_the_panic_hook_on_leaves_no_caller_waiting_forever() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    // A small queue whose callers wait as long as it takes for room: with its writer dead and
    // nothing closing the queue, they would wait forever.
    let config = config_with(dir.path(), &faults).queue_capacity(4096).overflow(Overflow::Block);
    let guard = init_logging(config).unwrap();
    let logger = guard.logger("app");
    faults.panic_on_writes();

    let (sent, done) = mpsc::channel();
    let caller = std::thread::spawn(move || {
        // Many times the queue's capacity. The writer panics at its first write; the panic hook
        // runs on the writer thread first.
        for seq in 0..2_000u64 {
            logger.info("tick", json!({ "seq": seq, "padding": "x".repeat(100) }));
        }
        let flushed = logger.flush();
        let _ = sent.send(flushed);
    });
    let flushed = within_a_minute(&done, "the caller's lines or its flush wait for the dead writer");
    caller.join().unwrap();
    assert!(!flushed, "a flush cannot succeed once the writer is gone, and says so");

    let stats = guard.stats();
    assert!(stats.emitted_after_shutdown > 0, "the lines after the panic were refused and counted: {stats:?}");
    let started = std::time::Instant::now();
    drop(guard);
    assert!(started.elapsed() < Duration::from_secs(10), "shutdown is bounded by its timeout");
}

#[derive(LogEvent)]
#[log(audit)]
struct Executed {
    block_number: u64,
}

#[test]
fn a_sink_panic_inside_an_audit_write_is_logged_by_the_hook_without_hanging() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let guard = init_logging(config_with(dir.path(), &faults)).unwrap();
    let logger = guard.logger("app");
    // The audit file's sink panics while its writer's lock is held, on the emitting thread;
    // the hook then logs and flushes on that same thread.
    faults.panic_on_writes_to(chimera_log_runtime::AUDIT_FILE);
    let (sent, done) = mpsc::channel();
    std::thread::spawn(move || {
        let emitted =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| emit!(logger, Executed { block_number: 7 })));
        let _ = sent.send(emitted.is_err());
    });
    let panicked = within_a_minute(&done, "the panic hook waits for the audit lock its own thread holds");
    assert!(panicked, "the sink's panic reaches the caller, as any panic in its code would");
    faults.clear();
    assert!(guard.flush(), "the logger goes on after the panic");
    drop(guard);
    let general = std::fs::read_to_string(dir.path().join("chimera.log")).unwrap();
    let panic_line =
        general.lines().find(|line| line.contains("\"event\":\"panic\"")).expect("the hook logged the panic");
    assert!(panic_line.contains("injected panic"), "{panic_line}");
}

#[test]
fn an_audit_event_written_while_the_files_writer_is_dead_counts_as_emitted_and_as_dropped_by_chimera_log() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    // `build`, not `init_logging`: no panic hook, so the writer's panic logs nothing itself.
    let guard = config_with(dir.path(), &faults).build().unwrap();
    let logger = guard.logger("app");
    faults.panic_on_writes_to("chimera.log");
    logger.info("first", json!({}));
    // The files writer panics on this line; a flush cannot succeed from then on.
    assert!(!guard.flush(), "the files writer is gone");
    faults.clear();
    let before = guard.stats();

    for block_number in 0..5 {
        emit!(logger, Executed { block_number });
    }

    let after = guard.stats();
    let audit = std::fs::read_to_string(dir.path().join(chimera_log_runtime::AUDIT_FILE)).unwrap();
    let executed = audit.lines().filter(|line| line.contains("\"event\":\"executed\"")).count();
    assert_eq!(executed, 5, "the audit file took every event (its writer is the caller): {audit}");
    assert_eq!(
        after.emitted_after_shutdown, before.emitted_after_shutdown,
        "an event in the audit file was emitted, not refused after shutdown: {after:?}"
    );
    assert_eq!(
        after.events(chimera_log_runtime::Level::Info),
        before.events(chimera_log_runtime::Level::Info) + 5,
        "the events are counted as emitted: {after:?}"
    );
    assert_eq!(
        after.sink("chimera.log").unwrap().dropped,
        before.sink("chimera.log").unwrap().dropped + 5,
        "chimera.log, whose writer is dead, counts them as dropped: {after:?}"
    );
    drop(guard);
}

/// The audit file's records, `seq` only, and its size.
fn audit_seqs_and_size(dir: &std::path::Path) -> (Vec<u64>, u64) {
    let audit = std::fs::read(dir.join(chimera_log_runtime::AUDIT_FILE)).unwrap();
    let seqs = audit
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .filter_map(|line| {
            let json: Result<serde_json::Value, _> = serde_json::from_slice(line);
            assert!(
                json.is_ok(),
                "not one JSON line (torn, or bytes written twice): {}",
                String::from_utf8_lossy(line)
            );
            let record = chimera_log_runtime::audit::parse_sealed(line);
            // Anything else is the file's anchor: a torn or doubled record would fail here.
            let anchor = chimera_log_runtime::audit::parse_anchor(line).is_some();
            assert!(record.is_some() || anchor, "neither a record nor an anchor: {}", String::from_utf8_lossy(line));
            record.map(|record| record.seq)
        })
        .collect();
    (seqs, audit.len() as u64)
}

/// A logger of `build` (no panic hook: the panics of these tests log nothing themselves) that
/// writes the audit file only (its writes are the ones held, failed or made to panic), and the
/// record it wrote first.
fn audit_only_after_one_record(
    dir: &std::path::Path,
    faults: &Arc<FaultInjector>,
) -> (chimera_log_runtime::LogGuard, chimera_log_runtime::Logger) {
    let guard = config_with(dir, faults).level_for("app", chimera_log_runtime::Level::Critical).build().unwrap();
    let logger = guard.logger("app");
    emit!(logger, Executed { block_number: 1 });
    (guard, logger)
}

#[test]
fn an_audit_record_whose_write_panicked_goes_out_with_the_next_write_and_the_chain_has_no_gap() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let (guard, logger) = audit_only_after_one_record(dir.path(), &faults);
    // Record 2: its write puts 10 bytes out, then the sink panics before the rest.
    faults.fail_writes_to(chimera_log_runtime::AUDIT_FILE, std::io::ErrorKind::Other, 10);
    faults.hold_writes();
    let emitter = std::thread::spawn({
        let logger = logger.clone();
        move || std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| emit!(logger, Executed { block_number: 2 })))
    });
    faults.wait_until_a_write_is_held();
    faults.panic_on_writes_to(chimera_log_runtime::AUDIT_FILE);
    faults.release_writes();
    assert!(emitter.join().unwrap().is_err(), "the sink's panic reaches the caller");
    // Records 3 and 4: the sink panics before writing anything.
    for block_number in 3..=4 {
        let emitted =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| emit!(logger, Executed { block_number })));
        assert!(emitted.is_err(), "the sink's panic reaches the caller");
    }
    faults.clear();
    emit!(logger, Executed { block_number: 5 });
    assert!(guard.flush());
    let stats = guard.stats();
    drop(guard);
    let (seqs, size) = audit_seqs_and_size(dir.path());
    assert_eq!(seqs, [1, 2, 3, 4, 5], "every record sealed before a panic is written once, whole, in order");
    let audit = stats.sink(chimera_log_runtime::AUDIT_FILE).unwrap();
    assert_eq!((audit.lines, audit.bytes), (5, size), "each counted once, as written: {stats:?}");
}

/// A guard dropped by an application panic, whose audit sink then panics in the last attempt at
/// what a fault held back: the process goes on (a second panic out of a destructor while
/// unwinding would abort it), and the held record is dropped and counted.
#[test]
fn a_sink_panic_in_the_last_attempt_of_a_guard_dropped_by_a_panic_does_not_abort() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let (guard, logger) = audit_only_after_one_record(dir.path(), &faults);
    faults.fail_writes_to(chimera_log_runtime::AUDIT_FILE, std::io::ErrorKind::StorageFull, 0);
    emit!(logger, Executed { block_number: 2 }); // held back
    faults.panic_on_writes_to(chimera_log_runtime::AUDIT_FILE);
    let owner = std::thread::spawn(move || {
        let _guard = guard;
        panic!("an application panic (expected by this test)");
    });
    assert!(owner.join().is_err(), "the application's panic, not an abort");
    faults.clear();
    let audit = logger.stats().unwrap().sink(chimera_log_runtime::AUDIT_FILE).unwrap().clone();
    assert_eq!((audit.lines, audit.dropped), (1, 1), "{audit:?}");
}
