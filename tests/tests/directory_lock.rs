//! The log directory's lock across a shutdown that gave up on a stalled write: kept while a
//! write of the old instance may still land, released once it has ended. Its own binary: it
//! installs the process-wide logger (`init_logging`), as the scenario needs.

use std::sync::{mpsc, Arc};
use std::time::Duration;

use chimera_log_runtime::testing::FaultInjector;
use chimera_log_runtime::{emit, get_logger, init_logging, Error, Level, LogConfig, LogEvent};

#[derive(LogEvent)]
#[log(audit)]
struct Executed {
    block_number: u64,
}

fn config(dir: &std::path::Path, faults: &Arc<FaultInjector>) -> LogConfig {
    LogConfig::new(dir)
        .console(false)
        .level_for("m", Level::Critical) // the audit file only: its write is the one held
        .audit_store(chimera_log_runtime::AuditStore::none())
        .shutdown_timeout(Duration::from_millis(300))
        .fault_injector(Arc::clone(faults))
}

/// `work`'s answer, on a thread of its own; one that does not come within a minute fails the
/// test by exiting (unwinding could not end the thread that is stuck).
fn within_a_minute<T: Send + 'static>(what: &'static str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (sent, answer) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sent.send(work());
    });
    answer.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
        eprintln!("FAILED: {what} did not return within 60 s");
        std::process::exit(1);
    })
}

#[test]
fn after_a_shutdown_that_gave_up_on_a_stalled_audit_write_the_directory_is_free_once_the_write_ended() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let guard = init_logging(config(dir.path(), &faults)).unwrap();
    // A thread that logged once through the global logger (below its module's level) and now
    // idles, as a pool thread does: whatever it keeps of the old instance must not keep the
    // directory.
    let (idling, idle) = mpsc::channel();
    let (stop, stopped) = mpsc::channel::<()>();
    let pool_thread = std::thread::spawn(move || {
        get_logger("m").info("started", serde_json::json!({}));
        idling.send(()).unwrap();
        let _ = stopped.recv();
    });
    idle.recv().unwrap();
    emit!(get_logger("m"), Executed { block_number: 1 });
    faults.hold_writes();
    let emitter = std::thread::spawn(|| emit!(get_logger("m"), Executed { block_number: 2 }));
    faults.wait_until_a_write_is_held();
    // Dropped on another thread than the one that installed it; gives up after 300 ms.
    within_a_minute("dropping the guard", move || drop(guard));

    let meanwhile = init_logging(config(dir.path(), &faults)).err();
    assert!(
        matches!(meanwhile, Some(Error::DirectoryInUse { .. })),
        "no new logger while the stalled record may still land: {meanwhile:?}"
    );
    faults.release_writes();
    emitter.join().unwrap();
    let again = init_logging(config(dir.path(), &faults)).expect("the directory is free once the write ended");
    emit!(get_logger("m"), Executed { block_number: 3 });
    drop(again);
    stop.send(()).unwrap();
    pool_thread.join().unwrap();

    let audit = std::fs::read(dir.path().join(chimera_log_runtime::AUDIT_FILE)).unwrap();
    let seqs: Vec<u64> = audit
        .split(|&b| b == b'\n')
        .filter_map(|line| chimera_log_runtime::audit::parse_sealed(line).map(|record| record.seq))
        .collect();
    assert_eq!(seqs, [1, 2, 3], "one chain, each record once");
}
