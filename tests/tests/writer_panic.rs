//! A bug in a sink: the files writer thread panics. The panic hook is process-wide and so is the
//! instance it logs through, so this test has its own binary.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use chimera_log_runtime::testing::FaultInjector;
use chimera_log_runtime::{init_logging, LogConfig, Overflow};
use serde_json::json;

#[test]
fn a_writer_thread_that_panics_with_the_panic_hook_on_leaves_no_caller_waiting_forever() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    let config = LogConfig::new(dir.path())
        .console(false)
        .audit_store(chimera_log_runtime::AuditStore::none())
        // A small queue whose callers wait as long as it takes for room: with its writer dead
        // and nothing closing the queue, they would wait forever.
        .queue_capacity(4096)
        .overflow(Overflow::Block)
        .shutdown_timeout(Duration::from_secs(2))
        .fault_injector(Arc::clone(&faults));
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
    let Ok(flushed) = done.recv_timeout(Duration::from_secs(60)) else {
        // Not a panic: the panic hook under test would log it through the same stuck queue.
        eprintln!("FAILED: the caller did not return within 60 s: its lines or its flush wait for the dead writer");
        std::process::exit(1);
    };
    caller.join().unwrap();
    assert!(!flushed, "a flush cannot succeed once the writer is gone, and says so");

    let stats = guard.stats();
    assert!(stats.emitted_after_shutdown > 0, "the lines after the panic were refused and counted: {stats:?}");
    let started = std::time::Instant::now();
    drop(guard);
    assert!(started.elapsed() < Duration::from_secs(10), "shutdown is bounded by its timeout");
}
