//! The standard events of DESIGN §2.1, through the seed's functions.

mod common;

use std::collections::BTreeMap;

use chimera_log_runtime::{
    log_execution_attempt, log_performance_metrics, log_safety_violation, log_state_divergence, log_state_transition,
    ExecutionAttempt, Level, LogConfig, LogEvent, Routes,
};
use common::json_lines;
use serde_json::json;

#[test]
fn seed_functions_write_each_standard_event_with_its_level_route_and_fields() {
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path()).console(false).level(Level::Debug).build().unwrap();
    let logger = guard.logger("state_engine");
    let record = ExecutionAttempt {
        timestamp: "2024-01-15T10:30:45.123456Z",
        block_number: 12_345_678,
        protocol: "moonwell",
        borrower: "0xborrower",
        simulation_success: true,
        simulated_profit_usd: "120.00",
        tx_hash: Some("0xtx"),
        status: "pending",
    };
    log_execution_attempt(&logger, &record);
    log_state_transition(
        &logger,
        "NORMAL",
        "THROTTLED",
        "Inclusion rate dropped to 55%",
        &BTreeMap::from([("inclusion_rate", "0.55")]),
    );
    log_state_divergence(
        &logger,
        "moonwell",
        "0xuser",
        "debt_amount",
        1_000_000_000_000_000_000,
        1_001_500_000_000_000_000,
        150,
        12_345_678,
    );
    log_safety_violation(
        &logger,
        "max_daily_volume",
        "2450.00",
        "2500.00",
        &json!({"remaining_capacity_usd": "50.00"}),
    );
    log_performance_metrics(&logger, &BTreeMap::from([("inclusion_rate", "0.68"), ("simulation_accuracy", "0.94")]));
    drop(guard);

    let general = json_lines(&dir.path().join("chimera.log"));
    let summary: Vec<(&str, &str)> =
        general.iter().map(|l| (l["event"].as_str().unwrap(), l["level"].as_str().unwrap())).collect();
    assert_eq!(
        summary,
        [
            ("execution_attempt", "INFO"),
            ("state_transition", "WARNING"),
            ("state_divergence", "WARNING"),
            ("safety_violation", "ERROR"),
            ("performance_metrics", "INFO"),
        ]
    );
    assert_eq!(
        general[0]["context"],
        json!({
            "timestamp": "2024-01-15T10:30:45.123456Z", "block_number": 12_345_678, "protocol": "moonwell",
            "borrower": "0xborrower", "simulation_success": true, "simulated_profit_usd": "120.00",
            "tx_hash": "0xtx", "status": "pending",
        })
    );
    assert_eq!(
        general[1]["context"],
        json!({"from_state": "NORMAL", "to_state": "THROTTLED", "reason": "Inclusion rate dropped to 55%", "metrics": {"inclusion_rate": "0.55"}})
    );
    let divergence = &common::raw_lines(&dir.path().join("chimera.log"))[2];
    assert!(
        divergence.contains("\"cached_value\":1000000000000000000,\"canonical_value\":1001500000000000000"),
        "{divergence}"
    );
    assert_eq!(general[3]["context"]["context"], json!({"remaining_capacity_usd": "50.00"}));
    assert_eq!(general[4]["context"]["metrics"]["simulation_accuracy"], "0.94");

    let audit = json_lines(&dir.path().join("executions.log"));
    assert_eq!(audit.len(), 1, "only the execution attempt is audited");
    let mut record = audit[0].clone();
    let seal = record.as_object_mut().unwrap();
    assert_eq!(seal.remove("seq"), Some(json!(1)));
    assert!(seal.remove("chain").is_some());
    assert_eq!(record, general[0], "the audit record is the general line plus its seal");
}

#[test]
fn standard_event_types_carry_the_contract_levels_and_routes() {
    type Map = BTreeMap<String, String>;
    assert_eq!(<ExecutionAttempt<'_> as LogEvent>::ROUTES, Routes::GENERAL.with_audit());
    assert_eq!(<chimera_log_runtime::StateTransition<'_, Map> as LogEvent>::LEVEL, Level::Warning);
    assert_eq!(<chimera_log_runtime::StateDivergence<'_> as LogEvent>::LEVEL, Level::Warning);
    assert_eq!(<chimera_log_runtime::SafetyViolation<'_, Map> as LogEvent>::LEVEL, Level::Error);
    assert_eq!(<chimera_log_runtime::PerformanceMetrics<'_, Map> as LogEvent>::ROUTES, Routes::GENERAL);
}
