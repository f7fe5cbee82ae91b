//! Counters of what the logger did and failed to do, read with `stats()`.
//!
//! Counting is the logger's answer to failures it must not return to the caller: every write
//! error, dropped or misrouted event shows up here (and once, rate-limited, on stderr).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::event::Level;
use crate::sink::maintenance::MaintenanceCounters;

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
    /// Backups compressed.
    pub compressed_backups: u64,
    /// Compressions or repairs that failed (the plain backup is kept).
    pub compression_failures: u64,
    /// Old backups removed by retention.
    pub removed_backups: u64,
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
    /// Writes, flushes or rotations that failed.
    pub write_errors: u64,
    /// Rotations of a file sink.
    pub rotations: u64,
    /// Lines dropped because the sink could not write and its retry buffer was full.
    pub dropped: u64,
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

    pub(crate) fn snapshot(&self, sinks: Vec<SinkStats>, maintenance: &MaintenanceCounters) -> Stats {
        Stats {
            events_by_level: std::array::from_fn(|i| self.events_by_level[i].load(Relaxed)),
            sinks,
            emitted_after_shutdown: self.emitted_after_shutdown.load(Relaxed),
            unconfigured_route: self.unconfigured_route.load(Relaxed),
            compressed_backups: maintenance.compressed.load(Relaxed),
            compression_failures: maintenance.compression_failures.load(Relaxed),
            removed_backups: maintenance.removed_backups.load(Relaxed),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct SinkCounters {
    pub(crate) lines: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) write_errors: AtomicU64,
    pub(crate) rotations: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

impl SinkCounters {
    pub(crate) fn snapshot(&self, name: &str) -> SinkStats {
        SinkStats {
            name: name.to_owned(),
            lines: self.lines.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            write_errors: self.write_errors.load(Relaxed),
            rotations: self.rotations.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
        }
    }
}
