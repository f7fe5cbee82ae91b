//! Typed structured logging for Chimera: *a domain event is a type, and the compiler checks it*.
//!
//! Every event is one JSON line —
//! `{"timestamp":…,"level":…,"module":…,"event":…,"context":{…}}` — written to the console, to
//! `chimera.log`, and, for event types marked `#[log(audit)]`, to the append-only
//! `executions.log`. Routing is decided by the event's type, never by a string filter.
//!
//! # Quick start
//!
//! ```
//! use chimera_log_runtime::{emit, get_logger, init_logging, Level, LogConfig, LogEvent};
//! use serde_json::json;
//!
//! #[derive(LogEvent)]
//! #[log(level = "warning")]
//! struct StateDivergence<'a> {
//!     protocol: &'a str,
//!     user: &'a str,
//!     cached_value: u128,
//!     canonical_value: u128,
//!     divergence_bps: u32,
//!     block_number: u64,
//! }
//!
//! #[derive(LogEvent)]
//! #[log(audit)]
//! struct LiquidationSubmitted<'a> {
//!     block_number: u64,
//!     tx_hash: &'a str,
//! }
//!
//! # fn main() -> Result<(), chimera_log_runtime::Error> {
//! # let dir = std::env::temp_dir().join(format!("chimera-doc-{}", std::process::id()));
//! let guard = init_logging(LogConfig::new(&dir).level(Level::Info).console(false))?;
//! let logger = get_logger("state_engine");
//!
//! emit!(logger, StateDivergence {
//!     protocol: "moonwell",
//!     user: "0xabc",
//!     cached_value: 1_000_000_000_000_000_000,
//!     canonical_value: 1_001_500_000_000_000_000,
//!     divergence_bps: 150,
//!     block_number: 12_345_678,
//! });
//! emit!(logger, LiquidationSubmitted { block_number: 12_345_679, tx_hash: "0xdef" });
//! logger.info("websocket_connected", json!({ "provider": "alchemy" }));
//! drop(guard); // flushes every file
//!
//! let general = std::fs::read_to_string(dir.join("chimera.log")).unwrap();
//! let audit = std::fs::read_to_string(dir.join("executions.log")).unwrap();
//! assert_eq!(general.lines().count(), 3);
//! // The file's anchor line (see `audit`), then only the audit type.
//! assert_eq!(audit.lines().count(), 2);
//! assert!(audit.lines().next().unwrap().contains(r#""event":"audit_anchor""#));
//! assert!(audit.contains(r#""event":"liquidation_submitted""#));
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok(())
//! # }
//! ```
//!
//! Leaving out a field at an `emit!` site does not compile (the event is a struct literal), and
//! neither does a field whose type cannot be written as JSON. See the README for the attribute
//! reference, the line format and the routing rules.

#[macro_use]
mod report;

/// Marks a stage boundary of an emit for `probe` (`--cfg chimera_probe`); nothing otherwise.
macro_rules! probe {
    ($mark:ident) => {
        #[cfg(chimera_probe)]
        $crate::probe::mark($crate::probe::Mark::$mark)
    };
    ($mark:ident = $value:expr) => {
        #[cfg(chimera_probe)]
        $crate::probe::set($crate::probe::Mark::$mark, $value as u64)
    };
}

#[cfg(chimera_probe)]
#[doc(hidden)]
pub mod probe;

pub mod audit;
#[cfg(feature = "tracing")]
mod capture;
mod clock;
mod config;
mod deferred;
mod error;
mod event;
mod fast_clock;
// Used by the CloudWatch sink; the audit store will follow the audit file with it too.
mod dir;
pub mod events;
mod file;
mod forward;
mod init;
mod json;
mod levels;
mod logger;
mod thread;
mod write;
pub use dir::read;
mod sink;
#[cfg(feature = "tracing")]
mod spans;
mod stats;
pub use forward::store;
#[doc(hidden)]
pub mod testing;

#[cfg(feature = "tracing")]
pub use capture::ChimeraLayer;
pub use chimera_log_macros::LogEvent;
pub use clock::{Clock, SystemClock};
pub use config::archive::S3Archive;
pub use config::cloudwatch::{CloudWatchConfig, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, RETENTION_DAYS};
pub use config::otlp::OtlpConfig;
pub use config::{AuditDurability, ConsoleFormat, ConsoleTarget, LogConfig, Overflow, AUDIT_FILE, GENERAL_FILE};
pub use error::Error;
pub use event::{Level, LogEvent, ParseLevelError, Routes};
pub use events::{
    log_execution_attempt, log_performance_metrics, log_safety_violation, log_state_divergence, log_state_transition,
    ExecutionAttempt, PerformanceMetrics, SafetyViolation, StateDivergence, StateTransition,
};
pub use init::init_logging;
pub use json::ContextWriter;
pub use logger::{events_without_logger, get_logger, AsDynError, LogGuard, Logger};
pub use stats::{
    ArchiveStats, AuditStoreStats, CloudWatchStats, LatencyStats, OtlpStats, SinkStats, Stats, WriteLatencyStats,
};
pub use store::AuditStore;
pub use write::completion::Emitted;

impl<T: LogEvent + ?Sized> LogEvent for &T {
    const NAME: &'static str = T::NAME;
    const LEVEL: Level = T::LEVEL;
    const ROUTES: Routes = T::ROUTES;

    fn write_context(&self, writer: &mut ContextWriter<'_>) {
        (**self).write_context(writer);
    }
}

/// Emits a typed event: `emit!(logger, Event { .. })`, or with an error attached as the line's
/// `exception`: `emit!(logger, Event { .. }, error = &e)`.
///
/// `logger` is a [`Logger`] or a reference to one; the event is any [`LogEvent`], usually a
/// struct literal, so a missing field is a compile error at the call site. `error` is a
/// reference to an error: any `std::error::Error`, a `dyn Error`, or something that derefs to
/// one, such as `Box<dyn Error + Send + Sync>` and `anyhow::Error` (`error = &e` for all).
///
/// The `exception`'s `type` is the error's type as Rust names it
/// (`std::any::type_name`, e.g. `std::io::error::Error`, `my_crate::RpcError`). Behind a
/// `Box<dyn Error>` or an `anyhow::Error` the concrete type is erased, and no name of it exists
/// at run time: `type` is then what you passed (`anyhow::Error`, `Box<dyn Error + Send + Sync>`),
/// and `message` and `causes` say what happened. Pass the concrete error to get its name.
#[macro_export]
macro_rules! emit {
    ($logger:expr, $event:expr $(,)?) => {
        $crate::__private::emit(&$logger, &$event)
    };
    ($logger:expr, $event:expr, error = $error:expr $(,)?) => {{
        #[allow(unused_imports)]
        use $crate::__private::{AttachDeref as _, AttachError as _};
        $crate::__private::emit_attached(&$logger, &$event, (&$crate::__private::Attach($error)).__chimera_attached())
    }};
}

/// Emits a typed event from async code: `emit_async!(logger, Event { .. }).await`, or with an
/// error attached, `emit_async!(logger, Event { .. }, error = &e).await` (the forms of
/// [`emit!`]).
///
/// The event is emitted when the macro runs; the returned [`Emitted`] future resolves once it is
/// where `emit!` would have left it, without the calling thread waiting on a disk:
///
/// - an audit event (`#[log(audit)]`) is sealed into the audit chain and written by the audit
///   thread, and synced with group commit (unless `AuditDurability::OsBuffer`): when the future
///   resolves, the record is in `executions.log` and durable, as when `emit!` returns;
/// - any other event is queued for its sinks exactly as `emit!` queues it, and the future is
///   resolved already.
///
/// A tokio worker that calls `emit!` for an audit event waits for the write and the `fdatasync`
/// (typically a millisecond or two, tens of milliseconds at the tail), and so does every task on
/// that worker; `emit_async!` does not. Order: one thread's records are sealed in the order it
/// emitted them, with `emit!` and `emit_async!` mixed (an `emit!` after an `emit_async!` whose
/// record is not written yet hands its record to the same thread, behind it). A task that moves
/// between threads keeps its order by awaiting each `emit_async!` before its next emit.
///
/// ```
/// use chimera_log_runtime::{emit_async, get_logger, init_logging, LogConfig, LogEvent};
///
/// #[derive(LogEvent)]
/// #[log(audit)]
/// struct BundleSent<'a> {
///     block_number: u64,
///     tx_hash: &'a str,
/// }
///
/// # let dir = tempfile::tempdir().unwrap();
/// let guard = init_logging(LogConfig::new(dir.path()).console(false).capture(false))?;
/// let logger = get_logger("executor");
/// let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// runtime.block_on(async {
///     emit_async!(logger, BundleSent { block_number: 42, tx_hash: "0xab" }).await;
///     // durable in executions.log here; the runtime's thread never waited on the disk
/// });
/// # let audit = std::fs::read_to_string(dir.path().join("executions.log")).unwrap();
/// # assert!(audit.contains(r#""event":"bundle_sent""#));
/// # drop(guard);
/// # Ok::<(), chimera_log_runtime::Error>(())
/// ```
#[macro_export]
macro_rules! emit_async {
    ($logger:expr, $event:expr $(,)?) => {
        $crate::__private::emit_async(&$logger, &$event)
    };
    ($logger:expr, $event:expr, error = $error:expr $(,)?) => {{
        #[allow(unused_imports)]
        use $crate::__private::{AttachDeref as _, AttachError as _};
        $crate::__private::emit_async_attached(
            &$logger,
            &$event,
            (&$crate::__private::Attach($error)).__chimera_attached(),
        )
    }};
}

/// The `LogEvent` trait alone (without the derive of the same name), for the facade crate
/// `chimera-log`, which pairs it with the derive that names `::chimera_log`. Not public API.
#[doc(hidden)]
pub mod __facade {
    pub use crate::event::LogEvent;
}

/// Items used by the derive's generated code and by `emit!`. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use core::fmt::Display;
    pub use core::primitive::str;
    pub use core::unreachable;
    pub use serde::Serialize;

    use crate::{ContextWriter, LogEvent, Logger};

    #[inline]
    pub fn write_raw(writer: &mut ContextWriter<'_>, bytes: &'static [u8]) {
        writer.raw(bytes);
    }

    #[inline]
    pub fn write_serialize<T: Serialize + ?Sized>(writer: &mut ContextWriter<'_>, value: &T) {
        writer.serialize(value);
    }

    #[inline]
    pub fn write_display<T: Display + ?Sized>(writer: &mut ContextWriter<'_>, value: &T) {
        writer.display(value);
    }

    /// The fast path for fields declared `&str`.
    #[inline]
    pub fn write_str(writer: &mut ContextWriter<'_>, value: &str) {
        writer.str_value(value);
    }

    /// The fast path for fields declared as a primitive integer.
    #[inline]
    pub fn write_integer<I: itoa::Integer>(writer: &mut ContextWriter<'_>, value: I) {
        writer.integer(value);
    }

    /// The fast path for fields declared `&str`, replayed from deferred encoding's record.
    #[inline]
    pub fn write_str_bytes(writer: &mut ContextWriter<'_>, value: &[u8]) {
        writer.str_bytes_value(value);
    }

    #[inline]
    pub fn write_redacted(writer: &mut ContextWriter<'_>) {
        writer.redacted();
    }

    pub use crate::deferred::{
        Capture, CaptureEncoded, CaptureValue, CoreStr, OtherStr, Replay, Replayer, Scalar, StrLen, Value,
    };

    #[inline]
    pub fn emit<L, E>(logger: &L, event: &E)
    where
        L: core::borrow::Borrow<Logger> + ?Sized,
        E: LogEvent + ?Sized,
    {
        crate::logger::emit(logger, event);
    }

    pub use crate::logger::{Attach, AttachDeref, AttachError, Attached};

    #[inline]
    pub fn emit_async<L, E>(logger: &L, event: &E) -> crate::Emitted
    where
        L: core::borrow::Borrow<Logger> + ?Sized,
        E: LogEvent + ?Sized,
    {
        crate::logger::emit_async(logger, event)
    }

    #[inline]
    pub fn emit_async_attached<L, E>(logger: &L, event: &E, error: Attached<'_>) -> crate::Emitted
    where
        L: core::borrow::Borrow<Logger> + ?Sized,
        E: LogEvent + ?Sized,
    {
        crate::logger::emit_async_attached(logger, event, error)
    }

    #[inline]
    pub fn emit_attached<L, E>(logger: &L, event: &E, error: Attached<'_>)
    where
        L: core::borrow::Borrow<Logger> + ?Sized,
        E: LogEvent + ?Sized,
    {
        crate::logger::emit_attached(logger, event, error);
    }
}
