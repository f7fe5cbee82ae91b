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
        "console-level" | "console-level-env" => return console_level_child(mode),
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

/// In the child: the module levels let DEBUG through, the console's own minimum is WARNING (in
/// code) or ERROR (from the environment, over a DEBUG set in code after it); every event is
/// still in `chimera.log`.
fn console_level_child(mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = match mode {
        "console-level" => LogConfig::new(dir.path()).console_level(Level::Warning),
        _ => LogConfig::from_vars([
            ("CHIMERA_LOG_DIR", dir.path().to_str().unwrap()),
            ("CHIMERA_LOG_CONSOLE_LEVEL", "error"),
        ])
        .unwrap()
        .console_level(Level::Debug),
    };
    let guard = config
        .console_target(ConsoleTarget::Stdout)
        .audit_store(chimera_log_runtime::AuditStore::none())
        .level(Level::Debug)
        .build()
        .unwrap();
    let logger = guard.logger("console_test");
    logger.debug("debug_event", json!({}));
    logger.info("info_event", json!({}));
    logger.warning("warning_event", json!({}));
    logger.error("error_event", json!({}));
    drop(guard);
    let file = std::fs::read_to_string(dir.path().join("chimera.log")).unwrap();
    let events: Vec<String> = log_lines(&file).iter().map(|l| l["event"].as_str().unwrap().to_owned()).collect();
    assert_eq!(events, ["debug_event", "info_event", "warning_event", "error_event"], "the file takes them all");
}

#[test]
fn console_level_keeps_lower_events_off_the_console_and_in_the_file_and_the_environment_wins() {
    if let Ok(mode) = std::env::var(CHILD) {
        return child_main(&mode);
    }
    let test = "console_level_keeps_lower_events_off_the_console_and_in_the_file_and_the_environment_wins";
    for (mode, expected) in
        [("console-level", &["warning_event", "error_event"][..]), ("console-level-env", &["error_event"][..])]
    {
        let (stdout, _) = run_child(test, mode);
        let events: Vec<String> = log_lines(&stdout).iter().map(|l| l["event"].as_str().unwrap().to_owned()).collect();
        assert_eq!(events, expected, "{mode}: {stdout}");
    }
}
