//! `LogGuard::set_levels` (issue 26): every directive replaced while the program runs, for typed
//! and ad-hoc events and for captured `tracing` events and `log` records alike, seen from
//! several threads that keep emitting while another thread reloads. Runs in a child process:
//! the global subscriber and the global logger are per process.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;

use chimera_log_runtime::{emit, get_logger, init_logging, AuditStore, Level, LogConfig, LogEvent, Logger};
use serde_json::{json, Value};

const MODE: &str = "CHIMERA_RELOAD_TEST_DIR";
const THREADS: u64 = 4;

#[derive(LogEvent)]
#[log(level = "debug")]
struct WorkerDebug<'a> {
    thread: u64,
    phase: &'a str,
}

#[derive(LogEvent)]
struct OtherInfo<'a> {
    thread: u64,
    phase: &'a str,
}

/// The thread's loggers, made once so that their cached levels are what a reload must renew.
struct Loggers {
    worker: Logger,
    other: Logger,
}

impl Loggers {
    fn new() -> Self {
        Loggers { worker: get_logger("worker"), other: get_logger("other") }
    }
}

/// One of each kind of event at each of the two levels the reload swaps: DEBUG from `worker`
/// (off before, on after) and INFO from `other` (on before, off after).
fn emit_all(loggers: &Loggers, thread: u64, phase: &str) {
    let Loggers { worker, other } = loggers;
    emit!(worker, WorkerDebug { thread, phase });
    worker.debug("adhoc_debug", json!({ "thread": thread, "phase": phase }));
    tracing::debug!(target: "worker", thread, phase, "tracing_debug");
    log::debug!(target: "worker", "log_debug {thread} {phase}");
    emit!(other, OtherInfo { thread, phase });
    other.info("adhoc_info", json!({ "thread": thread, "phase": phase }));
    tracing::info!(target: "other", thread, phase, "tracing_info");
    log::info!(target: "other", "log_info {thread} {phase}");
}

/// Each line as (module, event, thread, phase); a `log` record's thread and phase are in its
/// message, which is its event.
fn written(dir: &Path) -> Vec<(String, String, u64, String)> {
    common::json_lines(&dir.join("chimera.log"))
        .iter()
        .filter(|line| line["module"] == "worker" || line["module"] == "other")
        .map(|line: &Value| {
            let module = line["module"].as_str().unwrap().to_owned();
            let event = line["event"].as_str().unwrap();
            match event.split_once(' ') {
                Some((name, rest)) => {
                    let (thread, phase) = rest.split_once(' ').unwrap();
                    (module, name.to_owned(), thread.parse().unwrap(), phase.to_owned())
                }
                None => {
                    let context = &line["context"];
                    let phase = context["phase"].as_str().unwrap().to_owned();
                    (module, event.to_owned(), context["thread"].as_u64().unwrap(), phase)
                }
            }
        })
        .collect()
}

#[test]
fn set_levels_applies_to_typed_adhoc_tracing_and_log_events_on_every_thread_once_it_returns() {
    if let Some(dir) = std::env::var_os(MODE) {
        let config = LogConfig::new(Path::new(&dir)).console(false).audit_store(AuditStore::none());
        let guard = init_logging(config.level(Level::Info)).unwrap();
        let (started, reloaded) = (Barrier::new(THREADS as usize + 1), AtomicBool::new(false));
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let (started, reloaded) = (&started, &reloaded);
                scope.spawn(move || {
                    let loggers = Loggers::new();
                    emit_all(&loggers, thread, "before");
                    // Every thread has emitted under the old levels, and keeps emitting while the
                    // main thread reloads: these lines may go either way.
                    emit_all(&loggers, thread, "during");
                    started.wait();
                    let mut during = 0;
                    while !reloaded.load(Ordering::Acquire) {
                        if during < 1_000 {
                            emit_all(&loggers, thread, "during");
                            during += 1;
                        } else {
                            std::thread::yield_now();
                        }
                    }
                    emit_all(&loggers, thread, "after");
                });
            }
            started.wait();
            guard.set_levels("warning,worker=debug").unwrap();
            reloaded.store(true, Ordering::Release);
        });
        let loggers = Loggers::new();
        emit_all(&loggers, THREADS, "before_refused");
        let error = guard.set_levels("info,tower[request]=debug").unwrap_err().to_string();
        assert!(error.contains("set_levels") && error.contains("tower[request]=debug"), "{error}");
        emit_all(&loggers, THREADS, "after_refused");
        assert!(guard.flush());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let test = "set_levels_applies_to_typed_adhoc_tracing_and_log_events_on_every_thread_once_it_returns";
    let output = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(MODE, dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "child failed: {}", String::from_utf8_lossy(&output.stderr));

    let lines = written(dir.path());
    let has = |module: &str, event: &str, thread: u64, phase: &str| {
        lines.iter().any(|(m, e, t, p)| m == module && e == event && *t == thread && p == phase)
    };
    let debug_events = ["worker_debug", "adhoc_debug", "tracing_debug", "log_debug"];
    let info_events = ["other_info", "adhoc_info", "tracing_info", "log_info"];
    for thread in 0..THREADS {
        for event in debug_events {
            assert!(!has("worker", event, thread, "before"), "{event} of thread {thread} before the reload");
            assert!(has("worker", event, thread, "after"), "{event} of thread {thread} after the reload");
        }
        for event in info_events {
            assert!(has("other", event, thread, "before"), "{event} of thread {thread} before the reload");
            assert!(!has("other", event, thread, "after"), "{event} of thread {thread} after the reload");
        }
    }
    // A refused reload changed nothing.
    for event in debug_events {
        assert!(has("worker", event, THREADS, "after_refused"), "{event} after a refused reload");
    }
    for event in info_events {
        assert!(!has("other", event, THREADS, "after_refused"), "{event} after a refused reload");
    }
}
