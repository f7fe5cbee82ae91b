//! What an event is: the [`LogEvent`] trait, its [`Level`] and its [`Routes`].
//!
//! This module owns the vocabulary shared by the derive and the logger; it does no I/O and no
//! encoding (that is `json.rs`).

use std::fmt;
use std::str::FromStr;

use crate::deferred::{Capture, Replay};
use crate::json::ContextWriter;

/// A typed domain event, usually written with `#[derive(LogEvent)]`.
///
/// The derive fills in the name, level and routes from the `#[log(...)]` attributes and writes
/// the fields as the line's `context` object. A hand-written impl writes its context through
/// [`ContextWriter::field`].
pub trait LogEvent {
    /// The `event` value of the line, e.g. `"state_divergence"`.
    const NAME: &'static str;
    /// The level the event is logged at.
    const LEVEL: Level;
    /// Which sinks besides the general ones take the event.
    const ROUTES: Routes;

    /// Writes the event's fields as the members of the `context` object.
    fn write_context(&self, writer: &mut ContextWriter<'_>);

    /// Set by the derive: how the writer thread encodes this type's line from the record
    /// [`__capture`](Self::__capture) leaves (deferred encoding). `None` (a hand-written impl):
    /// the line is encoded on the caller's thread by [`write_context`](Self::write_context).
    #[doc(hidden)]
    const __REPLAY: Option<&'static Replay> = None;

    /// Set by the derive: copies the fields into the event's record, for [`Self::__REPLAY`].
    #[doc(hidden)]
    #[inline]
    fn __capture(&self, capture: &mut Capture<'_>) {
        let _ = capture;
    }

    /// Set by the derive when capturing the fields runs no code but the capture's own (every
    /// field one the record copies: `&str`, integers, floats, `bool`, `char`, `String`, an
    /// `Option` of those; or redacted, or skipped): the bytes [`__capture`](Self::__capture)
    /// will write. The record is then written straight into the
    /// queue, under its lock; `None` (the default) captures into a buffer first.
    #[doc(hidden)]
    #[inline]
    fn __capture_len(&self) -> Option<usize> {
        None
    }
}

/// Severity of an event, from the least to the most severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// The finest detail (`tracing`'s and `log`'s TRACE, `#[log(level = "trace")]`): written as
    /// `"level":"TRACE"`, and only where a directive lets it through (the default is INFO).
    Trace,
    /// Detailed diagnostic information, usually off in production.
    Debug,
    /// Normal operations.
    Info,
    /// Degraded performance, approaching limits.
    Warning,
    /// Failures.
    Error,
    /// System halt, security incidents.
    Critical,
}

impl Level {
    /// Every level, least severe first.
    pub const ALL: [Level; 6] =
        [Level::Trace, Level::Debug, Level::Info, Level::Warning, Level::Error, Level::Critical];

    /// The string written in the line's `level` key: `TRACE`, `DEBUG`, `INFO`, `WARNING`, `ERROR`,
    /// `CRITICAL`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`Level`] from a string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown level {0:?}; expected one of trace, debug, info, warning (or warn), error, critical")]
pub struct ParseLevelError(String);

impl FromStr for Level {
    type Err = ParseLevelError;

    /// Case-insensitive; `warn` is accepted for `warning`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "trace" => Ok(Level::Trace),
            "debug" => Ok(Level::Debug),
            "info" => Ok(Level::Info),
            "warning" | "warn" => Ok(Level::Warning),
            "error" => Ok(Level::Error),
            "critical" => Ok(Level::Critical),
            _ => Err(ParseLevelError(s.to_owned())),
        }
    }
}

/// Where an event goes besides the general sinks (console, `chimera.log`, CloudWatch).
///
/// Routing is a property of the event's type: `#[log(audit)]` sends every event of the type to
/// the audit file, `#[log(route = "name")]` to the custom route `name`. Ad-hoc events
/// (`logger.info("name", context)`) always have [`Routes::GENERAL`], so they can never reach the
/// audit file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Routes {
    audit: bool,
    route: Option<&'static str>,
    audit_key: Option<&'static str>,
}

impl Routes {
    /// The general sinks only.
    pub const GENERAL: Routes = Routes { audit: false, route: None, audit_key: None };

    /// Also the audit file.
    #[must_use]
    pub const fn with_audit(self) -> Routes {
        Routes { audit: true, ..self }
    }

    /// The JSON key of the audit identity field, when it is not `block_number`
    /// (`#[log(audit, key = "...")]`): written in the line as `audit_key`, so the audit store
    /// indexes the right field.
    #[must_use]
    pub const fn with_audit_key(self, key: &'static str) -> Routes {
        Routes { audit_key: Some(key), ..self }
    }

    /// Also the custom route `name`, configured with `LogConfig::route`.
    #[must_use]
    pub const fn with_route(self, name: &'static str) -> Routes {
        Routes { route: Some(name), ..self }
    }

    /// Whether the event reaches the audit file.
    pub const fn is_audit(self) -> bool {
        self.audit
    }

    /// The audit identity field's JSON key, when it is not `block_number`.
    pub const fn audit_key(self) -> Option<&'static str> {
        self.audit_key
    }

    /// The custom route the event names, if any.
    pub const fn route(self) -> Option<&'static str> {
        self.route
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_parses_case_insensitively_and_accepts_warn() {
        assert_eq!("WARN".parse::<Level>(), Ok(Level::Warning));
        assert_eq!("trace".parse::<Level>(), Ok(Level::Trace));
        assert_eq!("Critical".parse::<Level>(), Ok(Level::Critical));
        assert!("verbose".parse::<Level>().is_err());
    }

    #[test]
    fn levels_are_ordered_by_severity() {
        assert!(Level::Trace < Level::Debug && Level::Debug < Level::Info && Level::Error < Level::Critical);
        assert_eq!(Level::ALL.map(Level::as_str), ["TRACE", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]);
        assert!(Level::ALL.iter().enumerate().all(|(index, level)| level.index() == index));
    }
}
