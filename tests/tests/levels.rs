//! Levels per module (issue 14): `level_for` and `CHIMERA_LOG_LEVEL=info,hyper=warning,...`, for
//! typed and ad-hoc events; the longest matching prefix wins, `::` and `.` both separate.

mod common;

use chimera_log_runtime::{emit, AuditStore, Level, LogConfig, LogEvent};
use serde_json::json;

#[derive(LogEvent)]
struct Tick {
    n: u64,
}

#[derive(LogEvent)]
#[log(level = "debug")]
struct Detail {
    n: u64,
}

#[test]
fn per_module_directives_decide_typed_and_adhoc_events_by_the_longest_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [
        ("CHIMERA_LOG_DIR", dir.path().to_str().unwrap()),
        ("CHIMERA_LOG_CONSOLE", "false"),
        ("CHIMERA_LOG_AUDIT_STORE", "none"),
        ("CHIMERA_LOG_LEVEL", "warning,state_engine=debug,hyper=error,hyper::client=info"),
    ];
    let guard = LogConfig::from_vars(vars).unwrap().build().unwrap();
    let cases = [
        ("executor", false, false),           // the default: warning
        ("state_engine", true, true),         // debug
        ("state_engine::ws", true, true),     // under it, `::`
        ("state_engine.ws", true, true),      // under it, `.`
        ("state_engineer", false, false),     // not a part boundary: the default
        ("hyper", false, false),              // error
        ("hyper::client::pool", false, true), // info: the longer prefix wins
    ];
    for (module, debug, info) in cases {
        let logger = guard.logger(module);
        emit!(logger, Detail { n: 1 });
        emit!(logger, Tick { n: 2 });
        logger.debug("adhoc_debug", json!({}));
        logger.info("adhoc_info", json!({}));
        assert_eq!((logger.enabled(Level::Debug), logger.enabled(Level::Info)), (debug, info), "{module}");
    }
    assert!(guard.flush());
    drop(guard);
    let written: Vec<(String, String)> = common::json_lines(&dir.path().join("chimera.log"))
        .iter()
        .map(|line| (line["module"].as_str().unwrap().to_owned(), line["event"].as_str().unwrap().to_owned()))
        .collect();
    for (module, debug, info) in cases {
        for (event, expected) in [("detail", debug), ("adhoc_debug", debug), ("tick", info), ("adhoc_info", info)] {
            let found = written.iter().any(|(m, e)| m == module && e == event);
            assert_eq!(found, expected, "{module} {event}");
        }
    }
}

#[test]
fn level_for_in_code_and_a_bad_directive_is_an_error_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path())
        .console(false)
        .audit_store(AuditStore::none())
        .level(Level::Error)
        .level_for("liquidator", Level::Debug)
        .build()
        .unwrap();
    assert!(guard.logger("liquidator::moonwell").enabled(Level::Debug));
    assert!(!guard.logger("oracle").enabled(Level::Warning));
    drop(guard);
    let error = LogConfig::from_vars([("CHIMERA_LOG_LEVEL", "info,hyper=chatty")]).unwrap_err().to_string();
    assert!(error.contains("CHIMERA_LOG_LEVEL") && error.contains("hyper=chatty"), "{error}");
}
