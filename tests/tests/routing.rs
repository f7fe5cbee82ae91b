//! Routing (DESIGN §4): which file takes which event, decided by the event's type and level.

mod common;

use std::sync::Arc;

use chimera_log_runtime::testing::FaultInjector;
use chimera_log_runtime::{emit, Level, LogConfig, LogEvent};
use common::{events, raw_lines};
use serde_json::json;

#[derive(LogEvent)]
#[log(audit, level = "debug")]
struct ExecutionSubmitted<'a> {
    block_number: u64,
    tx_hash: &'a str,
}

#[derive(LogEvent)]
#[log(audit, key = "sequence")]
struct KeyedAudit {
    sequence: u64,
}

#[derive(LogEvent)]
#[log(route = "metrics")]
struct GasSample {
    gwei: u32,
}

#[derive(LogEvent)]
#[log(route = "metrics", level = "debug")]
struct DebugSample {
    n: u32,
}

#[derive(LogEvent)]
#[log(route = "unconfigured")]
struct Stray;

#[derive(LogEvent)]
#[log(level = "debug")]
struct Chatter;

#[test]
fn audit_file_takes_exactly_the_audit_types_at_any_level() {
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path()).console(false).level(Level::Error).build().unwrap();
    let logger = guard.logger("executor");
    emit!(logger, ExecutionSubmitted { block_number: 1, tx_hash: "0xa" });
    emit!(logger, KeyedAudit { sequence: 2 });
    emit!(logger, Chatter);
    logger.critical("execution_attempt", json!({"block_number": 3})); // ad-hoc: never audit
    logger.critical("execution_submitted", json!({"block_number": 4})); // even with an audit type's name
    drop(guard);
    assert_eq!(events(&dir.path().join("executions.log")), ["execution_submitted", "keyed_audit"]);
    // The general file applies the level: the DEBUG audit event and the INFO one stay out.
    assert_eq!(events(&dir.path().join("chimera.log")), ["execution_attempt", "execution_submitted"]);
    let audit = common::json_lines(&dir.path().join("executions.log"));
    assert_eq!(audit[0]["context"], json!({"block_number": 1, "tx_hash": "0xa"}));
}

#[test]
fn general_file_takes_every_event_at_or_above_the_level() {
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path()).console(false).level(Level::Warning).build().unwrap();
    let logger = guard.logger("m");
    for level in Level::ALL {
        logger.log(level, level.as_str(), &json!({}));
    }
    emit!(logger, Chatter);
    drop(guard);
    assert_eq!(events(&dir.path().join("chimera.log")), ["WARNING", "ERROR", "CRITICAL"]);
    assert!(raw_lines(&dir.path().join("executions.log")).is_empty());
}

#[test]
fn audit_line_is_the_general_line_with_seq_and_chain_appended() {
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path()).console(false).level(Level::Debug).build().unwrap();
    emit!(guard.logger("executor"), ExecutionSubmitted { block_number: 9, tx_hash: "0x\"quoted\"" });
    drop(guard);
    let general = std::fs::read_to_string(dir.path().join("chimera.log")).unwrap();
    let audit = std::fs::read_to_string(dir.path().join("executions.log")).unwrap();
    // Past the file's anchor line.
    let (anchor, audit) = audit.split_once('\n').unwrap();
    assert!(anchor.contains("\"event\":\"audit_anchor\""), "{anchor}");
    let open = general.strip_suffix("}\n").unwrap();
    let rest = audit.strip_prefix(open).expect("the same bytes up to the end of the context");
    let seal: serde_json::Value = serde_json::from_str(&format!("{{{}", &rest[1..])).unwrap();
    assert_eq!(seal["seq"], 1);
    assert_eq!(seal["chain"].as_str().unwrap().len(), 64);
    assert!(rest.starts_with(",\"seq\":1,\"chain\":\""), "{rest}");
}

#[test]
fn route_file_takes_its_types_and_the_general_file_still_applies_the_level() {
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path()).console(false).route("metrics", "metrics.log").build().unwrap();
    let logger = guard.logger("gas");
    emit!(logger, GasSample { gwei: 150 });
    emit!(logger, DebugSample { n: 1 });
    logger.info("gas_sample", json!({"gwei": 1})); // ad-hoc: never routed
    drop(guard);
    assert_eq!(events(&dir.path().join("metrics.log")), ["gas_sample", "debug_sample"]);
    assert_eq!(events(&dir.path().join("chimera.log")), ["gas_sample", "gas_sample"]);
    assert!(raw_lines(&dir.path().join("executions.log")).is_empty());
}

#[test]
fn unconfigured_route_goes_to_the_general_sinks_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path()).console(false).build().unwrap();
    emit!(guard.logger("m"), Stray);
    let stats = guard.stats();
    drop(guard);
    assert_eq!(stats.unconfigured_route, 1);
    assert_eq!(events(&dir.path().join("chimera.log")), ["stray"]);
}

#[test]
fn stats_count_events_per_level_and_lines_per_sink() {
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path()).console(false).level(Level::Debug).build().unwrap();
    let logger = guard.logger("m");
    emit!(logger, ExecutionSubmitted { block_number: 1, tx_hash: "0x" });
    logger.warning("w", json!({}));
    logger.warning("w", json!({}));
    assert!(guard.flush(), "flush timed out");
    let stats = guard.stats();
    assert_eq!(stats.events(Level::Debug), 1);
    assert_eq!(stats.events(Level::Warning), 2);
    let general = stats.sink("chimera.log").unwrap();
    let audit = stats.sink("executions.log").unwrap();
    assert_eq!((general.lines, audit.lines), (3, 1));
    assert_eq!(general.bytes, std::fs::metadata(dir.path().join("chimera.log")).unwrap().len());
    assert_eq!(general.write_errors + audit.write_errors, 0);
    assert!(stats.sink("console").is_none(), "console is off");
}

#[test]
fn events_after_the_guard_is_dropped_are_counted_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path()).console(false).build().unwrap();
    let logger = guard.logger("m");
    logger.info("before", json!({}));
    drop(guard);
    logger.info("after", json!({}));
    emit!(logger, ExecutionSubmitted { block_number: 1, tx_hash: "0x" });
    assert_eq!(logger.stats().unwrap().emitted_after_shutdown, 2);
    assert_eq!(events(&dir.path().join("chimera.log")), ["before"]);
}

#[test]
fn flush_makes_buffered_general_lines_visible_while_audit_lines_are_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path()).console(false).build().unwrap();
    let logger = guard.logger("m");
    emit!(logger, ExecutionSubmitted { block_number: 5, tx_hash: "0x" });
    // Written through: readable before any flush.
    assert_eq!(events(&dir.path().join("executions.log")), ["execution_submitted"]);
    logger.info("buffered", json!({}));
    logger.flush();
    assert_eq!(events(&dir.path().join("chimera.log")), ["buffered"]);
    drop(guard);
}

#[test]
fn four_threads_write_whole_lines_with_per_thread_order() {
    let dir = tempfile::tempdir().unwrap();
    // Block: the order check below needs every line, however the threads are scheduled.
    let guard =
        LogConfig::new(dir.path()).console(false).overflow(chimera_log_runtime::Overflow::Block).build().unwrap();
    std::thread::scope(|scope| {
        for thread in 0..4u64 {
            let logger = guard.logger("worker");
            scope.spawn(move || {
                for seq in 0..5_000u64 {
                    logger.info("tick", json!({"thread": thread, "seq": seq, "pad": "x".repeat(seq as usize % 300)}));
                }
            });
        }
    });
    drop(guard);
    let mut next = [0u64; 4];
    for line in common::json_lines(&dir.path().join("chimera.log")) {
        let thread = line["context"]["thread"].as_u64().unwrap() as usize;
        assert_eq!(line["context"]["seq"].as_u64().unwrap(), next[thread]);
        next[thread] += 1;
    }
    assert_eq!(next, [5_000; 4]);
}

#[test]
fn logger_is_cheap_to_share_across_threads() {
    fn assert_clone_send_sync<T: Clone + Send + Sync + 'static>() {}
    assert_clone_send_sync::<chimera_log_runtime::Logger>();
}

#[test]
fn full_disk_on_the_general_file_is_counted_and_the_audit_file_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjector::new());
    faults.fail_writes_to("chimera.log", std::io::ErrorKind::StorageFull, 0);
    let guard = LogConfig::new(dir.path())
        .console(false)
        .fault_injector(faults)
        .shutdown_timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let logger = guard.logger("executor");
    for block_number in 0..3 {
        emit!(logger, ExecutionSubmitted { block_number, tx_hash: "0x" });
        logger.info("general_only", json!({}));
    }
    assert!(!guard.flush(), "the general file's lines are held back by the full disk: not written");
    let stats = guard.stats();
    drop(guard);
    assert!(stats.sink("chimera.log").unwrap().write_errors >= 1, "{stats:?}");
    assert_eq!(stats.sink("executions.log").unwrap().write_errors, 0);
    let audit: Vec<u64> = common::json_lines(&dir.path().join("executions.log"))
        .iter()
        .map(|l| l["context"]["block_number"].as_u64().unwrap())
        .collect();
    assert_eq!(audit, [0, 1, 2]);
}

#[derive(LogEvent)]
#[log(route = "r62")]
struct ToTheLastRoute {
    n: u64,
}

#[test]
fn the_sixty_third_route_writes_to_its_own_file_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let config = (0..63).fold(LogConfig::new(dir.path()).console(false), |config, n| {
        config.route(format!("r{n}"), format!("r{n}.log"))
    });
    let guard = config.build().unwrap();
    emit!(guard.logger("m"), ToTheLastRoute { n: 1 });
    drop(guard);
    assert_eq!(events(&dir.path().join("r62.log")), ["to_the_last_route"]);
    for n in 0..62 {
        assert!(raw_lines(&dir.path().join(format!("r{n}.log"))).is_empty(), "r{n}.log");
    }
}
