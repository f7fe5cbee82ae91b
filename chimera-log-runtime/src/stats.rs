//! Counters of what the logger did and failed to do, read with `stats()`.
//!
//! Counting is the logger's answer to failures it must not return to the caller: every write
//! error, dropped or misrouted event shows up here (and once, rate-limited, on stderr).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::event::Level;

/// A snapshot of the logger's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Events accepted by at least one sink, per level (index with [`Stats::events`]).
    pub events_by_level: [u64; 5],
    /// Per sink: `console`, `chimera.log`, `executions.log`, then each route's file.
    pub sinks: Vec<SinkStats>,
    /// Events emitted after the logger was shut down (the guard dropped); they are not written.
    pub emitted_after_shutdown: u64,
    /// Events whose type names a route that is not configured; written to the general sinks only.
    pub unconfigured_route: u64,
}

impl Stats {
    /// Events accepted at `level`.
    pub fn events(&self, level: Level) -> u64 {
        self.events_by_level[level.index()]
    }

    /// The counters of the sink called `name` (`console`, `chimera.log`, `executions.log`, or a route file).
    pub fn sink(&self, name: &str) -> Option<&SinkStats> {
        self.sinks.iter().find(|sink| sink.name == name)
    }
}

/// Counters of one sink.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SinkStats {
    /// `console`, or the file name.
    pub name: String,
    /// Lines written.
    pub lines: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Writes or flushes that failed.
    pub write_errors: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    events_by_level: [AtomicU64; 5],
    pub(crate) emitted_after_shutdown: AtomicU64,
    pub(crate) unconfigured_route: AtomicU64,
}

impl Counters {
    pub(crate) fn count_event(&self, level: Level) {
        self.events_by_level[level.index()].fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self, sinks: Vec<SinkStats>) -> Stats {
        Stats {
            events_by_level: std::array::from_fn(|i| self.events_by_level[i].load(Relaxed)),
            sinks,
            emitted_after_shutdown: self.emitted_after_shutdown.load(Relaxed),
            unconfigured_route: self.unconfigured_route.load(Relaxed),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct SinkCounters {
    pub(crate) lines: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) write_errors: AtomicU64,
}

impl SinkCounters {
    pub(crate) fn snapshot(&self, name: &str) -> SinkStats {
        SinkStats {
            name: name.to_owned(),
            lines: self.lines.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            write_errors: self.write_errors.load(Relaxed),
        }
    }
}
