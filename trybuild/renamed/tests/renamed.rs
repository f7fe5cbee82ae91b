//! The derive works when the runtime is a dependency under another name.

use chimera::{Level, LogConfig, LogEvent};

#[test]
fn derive_with_crate_attribute_works_under_a_renamed_dependency() {
    let dir = std::env::temp_dir().join(format!("chimera-renamed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let guard = LogConfig::new(&dir).console(false).build().unwrap();
    chimera_log_renamed::emit_renamed(&guard.logger("renamed"), "hi");
    drop(guard);
    assert_eq!(<chimera_log_renamed::RenamedEvent<'_> as LogEvent>::LEVEL, Level::Warning);
    let audit = std::fs::read_to_string(dir.join("executions.log")).unwrap();
    // The file's first line is its audit anchor; the record follows.
    let lines: Vec<&str> = audit.lines().collect();
    assert_eq!(lines.len(), 2, "{audit}");
    let anchor: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(anchor["event"], "audit_anchor");
    let line: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(line["event"], "renamed_event");
    assert_eq!(line["context"], serde_json::json!({"block_number": 7, "note": "hi"}));
    std::fs::remove_dir_all(&dir).unwrap();
}
