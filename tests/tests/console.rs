//! The console sink, seen from outside: a child process (this test binary, re-run) logs, and the
//! parent reads what it printed on stderr or stdout.

use std::process::Command;

use chimera_log_runtime::{ConsoleFormat, ConsoleTarget, Level, LogConfig};
use serde_json::json;

const CHILD: &str = "CHIMERA_CONSOLE_TEST_CHILD";

/// In the child: log three events with the console configured as the parent asked.
fn child_main(mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (target, format) = match mode {
        "json-stderr" => (ConsoleTarget::Stderr, ConsoleFormat::Json),
        "json-stdout" => (ConsoleTarget::Stdout, ConsoleFormat::Json),
        "pretty-stderr" => (ConsoleTarget::Stderr, ConsoleFormat::Pretty),
        other => panic!("unknown child mode {other}"),
    };
    let guard =
        LogConfig::new(dir.path()).console_target(target).console_format(format).level(Level::Info).build().unwrap();
    let logger = guard.logger("console_test");
    logger.debug("hidden_by_level", json!({}));
    logger.info("websocket_connected", json!({"provider": "alchemy"}));
    logger.error("rpc_failed", json!({"provider": "quicknode", "attempt": 3}));
    drop(guard);
}

/// Runs this test binary again as a child in `mode`; returns (stdout, stderr).
fn run_child(test_name: &str, mode: &str) -> (String, String) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, mode)
        .output()
        .unwrap();
    assert!(output.status.success(), "child failed: {}", String::from_utf8_lossy(&output.stderr));
    (String::from_utf8(output.stdout).unwrap(), String::from_utf8(output.stderr).unwrap())
}

fn log_lines(text: &str) -> Vec<serde_json::Value> {
    // libtest prints `test name ... ` on stdout without a newline, so a line may start after it.
    text.lines()
        .filter_map(|l| l.find("{\"timestamp\"").map(|at| &l[at..]))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn console_writes_json_lines_to_stderr_by_default() {
    if let Ok(mode) = std::env::var(CHILD) {
        return child_main(&mode);
    }
    let (stdout, stderr) = run_child("console_writes_json_lines_to_stderr_by_default", "json-stderr");
    let lines = log_lines(&stderr);
    assert_eq!(lines.len(), 2, "{stderr}");
    assert_eq!(lines[0]["event"], "websocket_connected");
    assert_eq!(lines[1]["context"], json!({"provider": "quicknode", "attempt": 3}));
    assert!(log_lines(&stdout).is_empty());
}

#[test]
fn console_can_write_to_stdout() {
    if let Ok(mode) = std::env::var(CHILD) {
        return child_main(&mode);
    }
    let (stdout, stderr) = run_child("console_can_write_to_stdout", "json-stdout");
    assert_eq!(log_lines(&stdout).len(), 2, "{stdout}");
    assert!(log_lines(&stderr).is_empty());
}

#[test]
fn pretty_console_renders_one_readable_line_per_event() {
    if let Ok(mode) = std::env::var(CHILD) {
        return child_main(&mode);
    }
    let (_, stderr) = run_child("pretty_console_renders_one_readable_line_per_event", "pretty-stderr");
    let rendered: Vec<&str> = stderr.lines().filter(|l| l.contains(" console_test ")).collect();
    assert_eq!(rendered.len(), 2, "{stderr}");
    assert!(rendered[0].ends_with("INFO     console_test websocket_connected provider=\"alchemy\""), "{}", rendered[0]);
    // `json!` objects are serde_json maps, whose keys are sorted unless `preserve_order` is on.
    assert!(
        rendered[1].ends_with("ERROR    console_test rpc_failed attempt=3 provider=\"quicknode\""),
        "{}",
        rendered[1]
    );
}
