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

#[derive(LogEvent)]
#[log(level = "trace")]
struct Finest {
    n: u64,
}

#[derive(LogEvent)]
#[log(level = "critical")]
struct Halt {
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

/// `trace` and `off` in a directive (issue 26): a TRACE event is written with `"level":"TRACE"`
/// where a directive lets it through, and `off` silences a module, CRITICAL included.
#[test]
fn trace_events_are_written_as_trace_where_a_directive_allows_them_and_off_silences_a_module() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [
        ("CHIMERA_LOG_DIR", dir.path().to_str().unwrap()),
        ("CHIMERA_LOG_CONSOLE", "false"),
        ("CHIMERA_LOG_AUDIT_STORE", "none"),
        ("CHIMERA_LOG_LEVEL", "info,state_engine=trace,hyper=off"),
    ];
    let guard = LogConfig::from_vars(vars).unwrap().build().unwrap();
    for module in ["state_engine::ws", "executor", "hyper::client"] {
        let logger = guard.logger(module);
        emit!(logger, Finest { n: 1 });
        logger.trace("adhoc_trace", json!({}));
        emit!(logger, Halt { n: 2 });
    }
    assert!(!guard.logger("hyper").enabled(Level::Critical), "off: not even critical");
    assert!(guard.flush());
    drop(guard);
    let written: Vec<(String, String, String)> = common::json_lines(&dir.path().join("chimera.log"))
        .iter()
        .map(|line| {
            let text = |key: &str| line[key].as_str().unwrap().to_owned();
            (text("module"), text("event"), text("level"))
        })
        .collect();
    let expected = [
        ("state_engine::ws", "finest", "TRACE"),
        ("state_engine::ws", "adhoc_trace", "TRACE"),
        ("state_engine::ws", "halt", "CRITICAL"),
        ("executor", "halt", "CRITICAL"),
    ];
    let expected: Vec<(String, String, String)> =
        expected.iter().map(|(m, e, l)| (m.to_string(), e.to_string(), l.to_string())).collect();
    assert_eq!(written, expected);
}

/// The environment wins over levels set in code, whatever the order (issue 26): a builder call
/// after `from_vars` does not undo the operator's `CHIMERA_LOG_LEVEL`.
#[test]
fn levels_from_the_environment_win_over_builder_calls_made_after_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [("CHIMERA_LOG_DIR", dir.path().to_str().unwrap()), ("CHIMERA_LOG_LEVEL", "warning,hyper=debug")];
    let guard = LogConfig::from_vars(vars)
        .unwrap()
        .console(false)
        .audit_store(AuditStore::none())
        .level(Level::Debug)
        .level_for("hyper", Level::Error)
        .level_for("oracle", Level::Debug)
        .build()
        .unwrap();
    assert!(!guard.logger("executor").enabled(Level::Info), "the environment's default");
    assert!(guard.logger("hyper::client").enabled(Level::Debug), "the environment's hyper");
    assert!(guard.logger("oracle").enabled(Level::Debug), "not named by the environment: the code's");
}

/// Span and regex filters are refused at start, naming the variable and the directive, never
/// read as a prefix that matches nothing (issue 26).
#[test]
fn span_and_regex_filters_in_the_environment_are_errors_naming_the_variable_and_the_directive() {
    for (name, value, directive) in [
        ("CHIMERA_LOG_LEVEL", "info,tower[request]=debug", "tower[request]=debug"),
        ("RUST_LOG", "info,tower[{id=1}]=debug", "tower[{id=1}]=debug"),
        ("RUST_LOG", "info/connect", "info/connect"),
    ] {
        let error = LogConfig::from_vars([(name, value)]).unwrap_err().to_string();
        assert!(error.contains(name) && error.contains(directive), "{error}");
    }
    let error = LogConfig::new("logs").level_for("tower[request]", Level::Debug).build().unwrap_err().to_string();
    assert!(error.contains("level_for") && error.contains("tower[request]"), "{error}");
}
