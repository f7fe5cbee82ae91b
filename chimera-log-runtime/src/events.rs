//! The standard events of the Chimera bot, and the seed's functions that log them.
//!
//! Each event is an ordinary derived type; the functions exist so code written against the
//! original Python API (`log_execution_attempt(logger, record)`) reads the same in Rust.

use serde::Serialize;

use crate::{emit, LogEvent, Logger};

/// One execution attempt: the audit trail's record. Goes to `executions.log` at any level.
#[derive(LogEvent, Debug, Clone, Copy, PartialEq, Eq)]
#[log(crate = "crate", audit)]
pub struct ExecutionAttempt<'a> {
    /// When the attempt was made (RFC 3339), as the caller's record says.
    pub timestamp: &'a str,
    /// The block the attempt targeted: the record's identity on the chain.
    pub block_number: u64,
    /// Lending protocol, e.g. `moonwell`.
    pub protocol: &'a str,
    /// The borrower being liquidated.
    pub borrower: &'a str,
    /// Whether the simulation succeeded.
    pub simulation_success: bool,
    /// Simulated profit in USD, as a decimal string (no float rounding in an audit record).
    pub simulated_profit_usd: &'a str,
    /// The transaction hash, once submitted.
    pub tx_hash: Option<&'a str>,
    /// `pending`, `submitted`, `included`, `reverted`, ...
    pub status: &'a str,
}

/// A change of the bot's operating state, e.g. `NORMAL` to `THROTTLED`.
#[derive(LogEvent, Debug, Clone, Copy)]
#[log(crate = "crate", level = "warning")]
pub struct StateTransition<'a, M: ?Sized> {
    /// The state left.
    pub from_state: &'a str,
    /// The state entered.
    pub to_state: &'a str,
    /// Why.
    pub reason: &'a str,
    /// Figures behind the decision (a string map such as `BTreeMap<&str, &str>`).
    pub metrics: &'a M,
}

/// A cached value that disagrees with the chain's canonical value.
#[derive(LogEvent, Debug, Clone, Copy, PartialEq, Eq)]
#[log(crate = "crate", level = "warning")]
pub struct StateDivergence<'a> {
    /// Lending protocol.
    pub protocol: &'a str,
    /// The account.
    pub user: &'a str,
    /// The diverging field, e.g. `debt_amount`.
    pub field: &'a str,
    /// The cached value (written exactly, never as a float).
    pub cached_value: u128,
    /// The canonical value.
    pub canonical_value: u128,
    /// The divergence in basis points.
    pub divergence_bps: u32,
    /// The block of the comparison.
    pub block_number: u64,
}

/// A safety limit reached or exceeded.
#[derive(LogEvent, Debug, Clone, Copy)]
#[log(crate = "crate", level = "error")]
pub struct SafetyViolation<'a, C: ?Sized> {
    /// Which limit, e.g. `max_daily_volume`.
    pub violation_type: &'a str,
    /// The current value, as a decimal string.
    pub current_value: &'a str,
    /// The limit, as a decimal string.
    pub limit_value: &'a str,
    /// Anything else worth knowing (a map).
    pub context: &'a C,
}

/// Periodic performance figures.
#[derive(LogEvent, Debug, Clone, Copy)]
#[log(crate = "crate")]
pub struct PerformanceMetrics<'a, M: ?Sized> {
    /// The figures (a string map).
    pub metrics: &'a M,
}

/// Logs an execution attempt to the general sinks and the audit file.
pub fn log_execution_attempt(logger: &Logger, record: &ExecutionAttempt<'_>) {
    emit!(logger, record);
}

/// Logs a state transition (WARNING).
pub fn log_state_transition<M: Serialize + ?Sized>(
    logger: &Logger,
    from_state: &str,
    to_state: &str,
    reason: &str,
    metrics: &M,
) {
    emit!(logger, StateTransition { from_state, to_state, reason, metrics });
}

/// Logs a divergence between cached and canonical state (WARNING).
#[allow(clippy::too_many_arguments)]
pub fn log_state_divergence(
    logger: &Logger,
    protocol: &str,
    user: &str,
    field: &str,
    cached_value: u128,
    canonical_value: u128,
    divergence_bps: u32,
    block_number: u64,
) {
    emit!(
        logger,
        StateDivergence { protocol, user, field, cached_value, canonical_value, divergence_bps, block_number }
    );
}

/// Logs a safety violation (ERROR).
pub fn log_safety_violation<C: Serialize + ?Sized>(
    logger: &Logger,
    violation_type: &str,
    current_value: &str,
    limit_value: &str,
    context: &C,
) {
    emit!(logger, SafetyViolation { violation_type, current_value, limit_value, context });
}

/// Logs performance metrics (INFO).
pub fn log_performance_metrics<M: Serialize + ?Sized>(logger: &Logger, metrics: &M) {
    emit!(logger, PerformanceMetrics { metrics });
}
