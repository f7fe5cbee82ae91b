//! Behaviour that needs a process of its own: durability across `abort()`, the panic hook, and a
//! console whose pipe nobody reads. Each test re-runs this binary as a child in a mode.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use chimera_log_runtime::{emit, get_logger, init_logging, AuditDurability, LogConfig, LogEvent};
use serde_json::json;

const MODE: &str = "CHIMERA_PROCESS_TEST_MODE";
const DIR: &str = "CHIMERA_PROCESS_TEST_DIR";

#[derive(LogEvent)]
#[log(audit)]
struct Executed {
    block_number: u64,
}

fn child(test: &str, mode: &str, dir: &Path) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args([test, "--exact", "--nocapture", "--test-threads=1"]).env(MODE, mode).env(DIR, dir);
    command
}

/// In a child: the mode and log directory the parent asked for.
fn child_mode() -> Option<(String, std::path::PathBuf)> {
    Some((std::env::var(MODE).ok()?, std::env::var(DIR).ok()?.into()))
}

#[test]
fn audit_events_survive_an_abort_right_after_emit() {
    if let Some((mode, dir)) = child_mode() {
        let durability = if mode == "os-buffer" { AuditDurability::OsBuffer } else { AuditDurability::Sync };
        let guard = init_logging(LogConfig::new(dir).console(false).audit_durability(durability)).unwrap();
        let logger = get_logger("executor");
        for block_number in 0..1_000 {
            emit!(logger, Executed { block_number });
        }
        std::mem::forget(guard); // no flush, no drop: the process dies now
        std::process::abort();
    }
    for mode in ["sync", "os-buffer"] {
        let dir = tempfile::tempdir().unwrap();
        let status = child("audit_events_survive_an_abort_right_after_emit", mode, dir.path())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "the child aborts");
        let blocks: Vec<u64> = common::json_lines(&dir.path().join("executions.log"))
            .iter()
            .map(|l| l["context"]["block_number"].as_u64().unwrap())
            .collect();
        assert_eq!(blocks, (0..1_000).collect::<Vec<_>>(), "{mode}");
    }
}

#[test]
fn a_panic_is_logged_as_critical_and_flushed_before_the_previous_hook_runs() {
    if let Some((mode, dir)) = child_mode() {
        let guard = init_logging(LogConfig::new(dir).console(false).panic_hook(mode == "hook-on")).unwrap();
        get_logger("m").info("before_panic", json!({})); // still queued when the panic comes
        std::thread::Builder::new()
            .name("liquidator".into())
            .spawn(|| panic!("position {} vanished", 42))
            .unwrap()
            .join()
            .unwrap_err();
        std::mem::forget(guard);
        std::process::abort(); // only what the hook flushed is in the file
    }
    let dir = tempfile::tempdir().unwrap();
    let output =
        child("a_panic_is_logged_as_critical_and_flushed_before_the_previous_hook_runs", "hook-on", dir.path())
            .output()
            .unwrap();
    let lines = common::json_lines(&dir.path().join("chimera.log"));
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["before_panic", "panic"]);
    let panic = &lines[1];
    assert_eq!(panic["level"], "CRITICAL");
    assert_eq!(panic["context"]["message"], "position 42 vanished");
    assert_eq!(panic["context"]["thread"], "liquidator");
    assert!(panic["context"]["location"].as_str().unwrap().contains("process.rs:"), "{panic}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("panicked at") && stderr.contains("position 42 vanished"), "previous hook ran: {stderr}");

    let dir = tempfile::tempdir().unwrap();
    child("a_panic_is_logged_as_critical_and_flushed_before_the_previous_hook_runs", "hook-off", dir.path())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let text = std::fs::read_to_string(dir.path().join("chimera.log")).unwrap_or_default();
    assert!(!text.contains("\"event\":\"panic\""), "hook off: {text}");
}

/// Waits for `process`, killing it (and failing) if it has not exited within `limit`.
fn wait_or_kill(process: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let pid = process.id();
    let (done, waited) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if waited.recv_timeout(limit).is_err() {
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            return true;
        }
        false
    });
    let status = process.wait().unwrap();
    let _ = done.send(());
    assert!(!watchdog.join().unwrap(), "the child did not exit within {limit:?}: killed");
    status
}

/// A console whose pipe nobody reads drops its lines after a bounded wait, whatever the
/// overflow policy: `Overflow::Block` keeps the files lossless, but does not let a stuck
/// terminal stop every caller and, behind them, the files.
#[test]
fn a_console_nobody_reads_never_stalls_the_files() {
    if let Some((mode, dir)) = child_mode() {
        let overflow = match mode.as_str() {
            "default" => chimera_log_runtime::Overflow::default(),
            "block" => chimera_log_runtime::Overflow::Block,
            other => panic!("unknown mode {other}"),
        };
        let guard = init_logging(
            LogConfig::new(&dir)
                .console_target(chimera_log_runtime::ConsoleTarget::Stdout)
                .overflow(overflow)
                .shutdown_timeout(Duration::from_millis(500)),
        )
        .unwrap();
        let logger = get_logger("m");
        for seq in 0..40_000u64 {
            logger.info("tick", json!({"seq": seq, "pad": "p".repeat(100)}));
            if seq.is_multiple_of(500) {
                // Give the file writer the CPU now and then, so this test measures the console
                // and not a starved file writer on a loaded 2-core machine.
                std::thread::yield_now();
            }
        }
        let stats = guard.stats();
        std::fs::write(dir.join("stats.json"), serde_json::to_string(&stats).unwrap()).unwrap();
        // The console thread is stuck on the full pipe: bounded by the timeout.
        drop(guard);
        // The test harness would now print its result to the blocked stdout and hang; leave
        // without it (std's exit does not wait for the stdout lock).
        std::process::exit(0);
    }
    for mode in ["default", "block"] {
        let dir = tempfile::tempdir().unwrap();
        // stdout is a pipe this test never reads: after 64 KiB, every write to it blocks.
        let mut process = child("a_console_nobody_reads_never_stalls_the_files", mode, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(wait_or_kill(&mut process, Duration::from_secs(120)).success(), "{mode}");
        let seqs: Vec<u64> = common::json_lines(&dir.path().join("chimera.log"))
            .iter()
            .filter(|l| l["event"] == "tick")
            .map(|l| l["context"]["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs.len(), 40_000, "{mode}: the files got every line");
        assert!(seqs.iter().copied().eq(0..40_000), "{mode}: in order");
        let stats: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("stats.json")).unwrap()).unwrap();
        let console = stats["sinks"].as_array().unwrap().iter().find(|s| s["name"] == "console").unwrap();
        // 40,000 lines of ~230 bytes overrun the console's 4 MiB queue behind the stuck pipe.
        assert!(console["dropped"].as_u64().unwrap() > 0, "{mode}: the console dropped instead of blocking: {console}");
        assert!(console["lines"].as_u64().unwrap() < 1_000, "{mode}: the pipe took only its buffer's worth: {console}");
        drop(process.stdout.take());
    }
}

/// With the console on a stderr nobody reads, the logger's own stderr lines (the shutdown that
/// could not finish the console) wait a bounded time too: dropping the guard returns.
#[test]
fn dropping_the_guard_returns_when_stderr_is_a_pipe_nobody_reads() {
    if let Some((_, dir)) = child_mode() {
        let guard = init_logging(LogConfig::new(&dir).shutdown_timeout(Duration::from_millis(500))).unwrap();
        let logger = get_logger("m");
        for seq in 0..20_000u64 {
            logger.info("tick", json!({"seq": seq, "pad": "p".repeat(100)}));
        }
        drop(guard);
        std::process::exit(0);
    }
    let dir = tempfile::tempdir().unwrap();
    // stderr is a pipe this test never reads: after 64 KiB, every write to it blocks.
    let mut process =
        child("dropping_the_guard_returns_when_stderr_is_a_pipe_nobody_reads", "blocked-stderr", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    assert!(wait_or_kill(&mut process, Duration::from_secs(60)).success());
    let ticks = common::json_lines(&dir.path().join("chimera.log")).iter().filter(|l| l["event"] == "tick").count();
    assert_eq!(ticks, 20_000, "the files got every line");
    drop(process.stderr.take());
}
