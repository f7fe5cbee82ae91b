//! The process-wide instance: `init_logging`, `get_logger`, and the defined behaviour before
//! init, on a second init, and after the guard is dropped. Tests here share the process-wide
//! state, so they take a lock.

mod common;

use std::sync::Mutex;

use chimera_log_runtime::{emit, events_without_logger, get_logger, init_logging, Error, Level, LogConfig, LogEvent};
use common::events;
use serde_json::json;

static SERIAL: Mutex<()> = Mutex::new(());

#[derive(LogEvent)]
#[log(audit)]
struct Executed {
    block_number: u64,
}

#[test]
fn logger_taken_before_init_writes_after_init_and_stops_after_the_guard_drops() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let logger = get_logger("early");
    let without = events_without_logger();
    logger.debug("before_init", json!({})); // discarded, counted
    assert_eq!(events_without_logger(), without + 1);
    assert!(!logger.enabled(Level::Info) && logger.enabled(Level::Warning));

    let guard = init_logging(LogConfig::new(dir.path()).console(false).level(Level::Debug)).unwrap();
    logger.info("during", json!({}));
    emit!(get_logger("other"), Executed { block_number: 1 });
    assert!(logger.enabled(Level::Debug));
    assert_eq!(logger.stats().unwrap().events(Level::Info), 2);
    drop(guard);

    logger.info("after_drop", json!({})); // no instance: INFO discarded and counted
    assert!(logger.stats().is_none());
    assert_eq!(events(&dir.path().join("chimera.log")), ["during", "executed"]);
    assert_eq!(events(&dir.path().join("executions.log")), ["executed"]);
    assert_eq!(events_without_logger(), without + 2);
}

#[test]
fn second_init_while_the_first_guard_lives_is_an_error_and_init_works_again_after_drop() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let first_dir = tempfile::tempdir().unwrap();
    let second_dir = tempfile::tempdir().unwrap();
    let first = init_logging(LogConfig::new(first_dir.path()).console(false)).unwrap();
    let error = init_logging(LogConfig::new(second_dir.path()).console(false)).unwrap_err();
    assert!(matches!(error, Error::AlreadyInitialized), "{error}");
    get_logger("m").info("to_first", json!({}));
    drop(first);
    let second = init_logging(LogConfig::new(second_dir.path()).console(false)).unwrap();
    get_logger("m").info("to_second", json!({}));
    drop(second);
    assert_eq!(events(&first_dir.path().join("chimera.log")), ["to_first"]);
    assert_eq!(events(&second_dir.path().join("chimera.log")), ["to_second"]);
}

#[test]
fn failed_init_leaves_logging_uninitialized() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let bad = init_logging(LogConfig::new(dir.path()).max_bytes(0)).unwrap_err();
    assert!(matches!(bad, Error::InvalidSetting { setting: "max_bytes", .. }), "{bad}");
    let good = init_logging(LogConfig::new(dir.path()).console(false)).unwrap();
    drop(good);
}
