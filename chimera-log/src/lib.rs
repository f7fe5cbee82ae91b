//! Typed structured logging for Chimera: *a domain event is a type, and the compiler checks it*.
//!
//! This is the crate to depend on (`cargo add chimera-log`). It re-exports the derive and the
//! runtime, as `serde` does with `serde_derive`; the Chimera bot's own events and their
//! `log_*` functions are in [`chimera`], the audit chain's definition in [`audit`].
//!
//! Every event is one JSON line —
//! `{"timestamp":…,"level":…,"module":…,"event":…,"context":{…}}` — written to the console, to
//! `chimera.log`, and, for event types marked `#[log(audit)]`, to the append-only
//! `executions.log`. Routing is decided by the event's type, never by a string filter.
//!
//! # Quick start
//!
//! ```
//! use chimera_log::{emit, init_logging, LogConfig, LogEvent};
//!
//! #[derive(LogEvent)]
//! #[log(audit)]
//! struct LiquidationSubmitted<'a> {
//!     block_number: u64,
//!     tx_hash: &'a str,
//! }
//!
//! # fn main() -> Result<(), chimera_log::Error> {
//! # let dir = std::env::temp_dir().join(format!("chimera-log-facade-doc-{}", std::process::id()));
//! let guard = init_logging(LogConfig::new(&dir).console(false))?;
//! let logger = chimera_log::get_logger("executor");
//! emit!(logger, LiquidationSubmitted { block_number: 12_345_679, tx_hash: "0xdef" });
//! let metrics = std::collections::BTreeMap::from([("health_factor", "0.98")]);
//! chimera_log::chimera::log_state_transition(&logger, "healthy", "at_risk", "price drop", &metrics);
//! drop(guard); // flushes every file
//!
//! let audit = std::fs::read_to_string(dir.join("executions.log")).unwrap();
//! assert!(audit.contains(r#""event":"liquidation_submitted""#));
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok(())
//! # }
//! ```
//!
//! Leaving out a field at an `emit!` site does not compile (the event is a struct literal), and
//! neither does a field whose type cannot be written as JSON. The README has the line format,
//! the routing rules and every setting.

/// Derives [`LogEvent`](trait@LogEvent) for a struct with named fields (or a unit struct).
///
/// Container attributes, `#[log(...)]` on the struct:
///
/// | key | meaning |
/// |---|---|
/// | `name = "x"` | event name (default: snake_case of the type name: `HTTPError` → `http_error`) |
/// | `level = "warning"` | `trace`, `debug`, `info` (default), `warning` (or `warn`), `error`, `critical` |
/// | `audit` | also write every event of this type to `executions.log`, at any level; needs a `block_number` field |
/// | `audit, key = "f"` | as `audit`, with `f` as the identity field instead of `block_number` |
/// | `route = "name"` | also write every event of this type to the route `name` (`LogConfig::route`) |
/// | `crate = "path"` | path to this crate when it is a renamed dependency, e.g. `crate = "::chimera"` |
///
/// Field attributes, `#[log(...)]` on a field:
///
/// | key | meaning |
/// |---|---|
/// | `rename = "x"` | JSON key (default: the field name, `r#` stripped) |
/// | `skip` | not written; the type needs no trait |
/// | `redact` | written as `"[REDACTED]"`; the type needs no trait |
/// | `display` | written as a JSON string through `Display` |
///
/// Every other field is written through `serde::Serialize`. A mistake in an attribute is a
/// compile error on the user's own token; all of a derive's errors are reported together.
///
/// ```compile_fail
/// use chimera_log::LogEvent;
///
/// #[derive(LogEvent)]
/// #[log(audit)] // an audit event must say where it stands: no `block_number` field
/// struct Submitted {
///     tx_hash: String,
/// }
/// ```
pub use chimera_log_macros::LogEventInFacade as LogEvent;

#[doc(inline)]
pub use chimera_log_runtime::__facade::LogEvent;

pub use chimera_log_runtime::{
    emit, emit_async, events_without_logger, get_logger, init_logging, ArchiveStats, AsDynError, AuditDurability,
    AuditStore, AuditStoreStats, Clock, CloudWatchConfig, CloudWatchStats, ConsoleFormat, ConsoleTarget, ContextWriter,
    Emitted, Error, LatencyStats, Level, LogConfig, LogGuard, Logger, OtlpConfig, OtlpStats, Overflow, ParseLevelError,
    Routes, S3Archive, SinkStats, Stats, SystemClock,
};

/// The Chimera bot's standard events (DESIGN §5) and the functions that log them: execution
/// attempts (audit), state transitions, state divergence, safety violations, performance
/// metrics.
pub mod chimera {
    pub use chimera_log_runtime::{
        log_execution_attempt, log_performance_metrics, log_safety_violation, log_state_divergence,
        log_state_transition, ExecutionAttempt, PerformanceMetrics, SafetyViolation, StateDivergence, StateTransition,
    };
}

/// The audit chain: how `executions.log` is sealed, anchored and checked (what
/// `chimera-log verify` does).
pub mod audit {
    pub use chimera_log_runtime::audit::*;
}

/// Reading the audit store, for tools: [`StoreReader`](store::StoreReader) (what
/// `chimera-log verify --store` and `query --store` use).
pub mod store {
    pub use chimera_log_runtime::store::*;
}

/// Reading a log directory, for tools: a log's backups in order, opening a log file without
/// following links, reading lines of bounded size (what `chimera-log` the command uses).
pub mod read {
    pub use chimera_log_runtime::read::*;
}

#[cfg(feature = "tracing")]
pub use chimera_log_runtime::ChimeraLayer;

/// Items used by the derive's generated code and by `emit!`. Not public API.
#[doc(hidden)]
pub use chimera_log_runtime::__private;

/// The README's Rust blocks, compiled and run as doc tests against this crate.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The Rust blocks of `docs/operations.md`, compiled and run as doc tests against this crate.
#[doc = include_str!("../../docs/operations.md")]
#[cfg(doctest)]
pub struct OperationsDoctests;

/// The Rust blocks of `docs/audit-store.md`, compiled as doc tests against this crate.
#[doc = include_str!("../../docs/audit-store.md")]
#[cfg(doctest)]
pub struct AuditStoreDoctests;

/// The Rust blocks of `docs/cloudwatch.md`, compiled as doc tests against this crate.
#[doc = include_str!("../../docs/cloudwatch.md")]
#[cfg(doctest)]
pub struct CloudWatchDoctests;

/// The Rust blocks of `docs/otlp.md`, compiled as doc tests against this crate.
#[doc = include_str!("../../docs/otlp.md")]
#[cfg(doctest)]
pub struct OtlpDoctests;
/// The Rust blocks of `docs/archive.md`, compiled as doc tests against this crate.
#[doc = include_str!("../../docs/archive.md")]
#[cfg(doctest)]
pub struct ArchiveDoctests;
