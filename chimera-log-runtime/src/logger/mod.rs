//! Loggers and the process-wide logging instance: [`init_logging`], [`get_logger`], [`Logger`],
//! [`LogGuard`].
//!
//! This module owns the life cycle (start, install, shutdown) and the per-emit path from an event
//! to encoded bytes handed to the dispatcher. It does not decide routing (`pipeline`) or the line
//! format (`json`).
//!
//! Defined behaviours at the edges:
//! - Before [`init_logging`] (or after its guard is dropped), a logger from [`get_logger`] has no
//!   sinks: events at WARNING or above, and audit events at any level, are written as JSON lines
//!   to stderr (Python's "last resort" handler does the same); the rest are discarded. Every such
//!   event is counted in [`events_without_logger`].
//! - Calling [`init_logging`] while an earlier guard is alive returns
//!   [`Error::AlreadyInitialized`](crate::Error::AlreadyInitialized); after that guard is dropped
//!   it may be called again.
//! - A logger obtained from [`LogGuard::logger`] stays bound to that guard's sinks; once the guard
//!   is dropped its events are not written and are counted in `Stats::emitted_after_shutdown`.
//!
//! Here: [`Logger`] and the path of one event. Beside it: `global` (the process-wide instance),
//! `guard` ([`LogGuard`]), `as_dyn_error` ([`AsDynError`]), `emit` (what `emit!` expands to) and
//! `panic` (the panic hook).

mod api;
mod as_dyn_error;
mod emit;
pub(crate) mod global;
mod guard;
pub(crate) mod panic;

pub use api::*;
pub use as_dyn_error::AsDynError;
#[doc(hidden)]
pub use as_dyn_error::{Attach, AttachDeref, AttachError, Attached};
pub(crate) use emit::{emit, emit_async, emit_async_attached, emit_attached};
pub use guard::LogGuard;
