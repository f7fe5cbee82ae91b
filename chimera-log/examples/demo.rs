//! The main job: writes sample logs into `./logs` (or `CHIMERA_LOG_DIR`) demonstrating every
//! feature, then prints where they went.
//!
//! ```text
//! cargo run -p chimera-log --example demo
//! ```

use std::collections::BTreeMap;
use std::fmt;

use chimera_log::chimera::{
    log_execution_attempt, log_performance_metrics, log_safety_violation, log_state_divergence, log_state_transition,
    ExecutionAttempt,
};
use chimera_log::{emit, get_logger, init_logging, Level, LogConfig, LogEvent};
use serde_json::json;

/// A typed event of the application's own, with a secret that must never reach a log.
#[derive(LogEvent)]
#[log(level = "info")]
struct WalletLoaded<'a> {
    address: &'a str,
    #[log(redact)]
    private_key: &'a str,
    #[log(display)]
    rpc_endpoint: std::net::SocketAddr,
}

/// Routed by type to `metrics.log` as well as the general sinks.
#[derive(LogEvent)]
#[log(route = "metrics", level = "debug")]
struct GasSample {
    gas_price_gwei: u64,
    base_fee_gwei: u64,
    block_number: u64,
}

/// An audit event of the application's own, identified by a sequence rather than a block.
#[derive(LogEvent)]
#[log(audit, key = "bundle_id", level = "warning")]
struct BundleCancelled<'a> {
    bundle_id: u64,
    reason: &'a str,
}

#[derive(LogEvent)]
#[log(level = "error")]
struct RpcFailed<'a> {
    provider: &'a str,
    method: &'a str,
}

/// An error with a cause chain, as the seed's `exc_info=True` would show it.
#[derive(Debug)]
struct FetchPositionError(std::io::Error);

impl fmt::Display for FetchPositionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("fetching position of 0xborrower failed")
    }
}

impl std::error::Error for FetchPositionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Settings from CHIMERA_LOG_* (log dir `logs` by default), plus a custom route.
    let config = LogConfig::from_env()?.level(Level::Debug).route("metrics", "metrics.log");
    let log_dir = config.log_dir().to_path_buf();
    let guard = init_logging(config)?;

    let state_engine = get_logger("state_engine");
    let executor = get_logger("executor");
    let safety = get_logger("safety");

    // Ad-hoc events at every level (never routed to the audit file).
    state_engine.debug("cache_refreshed", json!({"positions": 1342}));
    state_engine.info("websocket_connected", json!({"provider": "alchemy", "endpoint": "wss://..."}));
    state_engine.warning("high_gas_price", json!({"gas_price_gwei": "150", "threshold_gwei": "100"}));
    state_engine.error("rpc_connection_failed", json!({"provider": "quicknode", "error": "timeout"}));
    safety.critical("system_halt", json!({"reason": "demo of the CRITICAL level"}));

    // The seed's specialised functions.
    log_execution_attempt(
        &executor,
        &ExecutionAttempt {
            timestamp: "2024-01-15T10:30:45.123456Z",
            block_number: 12_345_678,
            protocol: "moonwell",
            borrower: "0xborrower",
            simulation_success: true,
            simulated_profit_usd: "120.00",
            tx_hash: Some("0xtxhash"),
            status: "pending",
        },
    );
    log_state_transition(
        &state_engine,
        "NORMAL",
        "THROTTLED",
        "Inclusion rate dropped to 55%",
        &BTreeMap::from([("inclusion_rate", "0.55")]),
    );
    log_state_divergence(
        &state_engine,
        "moonwell",
        "0xuser",
        "debt_amount",
        1_000_000_000_000_000_000,
        1_001_500_000_000_000_000,
        150,
        12_345_678,
    );
    log_safety_violation(
        &safety,
        "max_daily_volume",
        "2450.00",
        "2500.00",
        &json!({"remaining_capacity_usd": "50.00"}),
    );
    log_performance_metrics(
        &state_engine,
        &BTreeMap::from([("inclusion_rate", "0.68"), ("simulation_accuracy", "0.94"), ("total_profit_usd", "8450.00")]),
    );

    // Typed events: redaction, display, a custom route, an audit event with its own key.
    emit!(
        executor,
        WalletLoaded {
            address: "0xwallet",
            private_key: "0xnever-logged",
            rpc_endpoint: ([127, 0, 0, 1], 8545).into()
        }
    );
    for (i, gwei) in [31u64, 35, 29].into_iter().enumerate() {
        emit!(
            get_logger("gas_oracle"),
            GasSample { gas_price_gwei: gwei, base_fee_gwei: gwei - 2, block_number: 12_345_678 + i as u64 }
        );
    }
    emit!(executor, BundleCancelled { bundle_id: 77, reason: "competing bundle included first" });

    // What dependencies log through `tracing` and `log` is captured in the same shape, with the
    // fields of the spans it happened in; levels per module apply (`CHIMERA_LOG_LEVEL=info,hyper=error`).
    let span = tracing::info_span!("handle_block", block = 12_345_678u64);
    span.in_scope(|| tracing::warn!(target: "hyper::client", retries = 2, "connection reset by peer"));
    log::info!(target: "reqwest::connect", "connected to {}", "rpc.example");

    // An error with its cause chain, as `exception`.
    let error = FetchPositionError(std::io::Error::new(std::io::ErrorKind::TimedOut, "eth_call timed out after 5s"));
    emit!(state_engine, RpcFailed { provider: "quicknode", method: "eth_call" }, error = &error);
    state_engine.log_with_error(Level::Error, "unexpected_error", &json!({"operation": "fetch_position"}), &error);

    // Every line emitted so far is now in its file (false only if a sink is stuck).
    if !guard.flush() {
        eprintln!("chimera-log demo: some lines were not written within the shutdown timeout");
    }
    let stats = guard.stats();
    drop(guard); // closes the files

    println!();
    println!("chimera-log demo: {} events written", stats.events_by_level.iter().sum::<u64>());
    for sink in &stats.sinks {
        let place =
            if sink.name == "console" { "stderr".to_owned() } else { log_dir.join(&sink.name).display().to_string() };
        println!(
            "  {place:<28} {:>3} lines  {:>6} bytes  {} dropped  {} write errors",
            sink.lines, sink.bytes, sink.dropped, sink.write_errors
        );
    }
    if let Some(store) = stats.audit_store {
        // The audit records, also in the audit store (SQLite by default): kept for three years.
        println!(
            "  {:<28} {:>3} audit records stored, {} behind  (chimera-log query --store {})",
            log_dir.join("audit.db").display().to_string(),
            store.rows_stored,
            store.lag_records,
            log_dir.join("audit.db").display()
        );
    }
    Ok(())
}
