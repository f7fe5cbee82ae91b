//! Counters of what the logger did and failed to do, read with `stats()`.
//!
//! Counting is the logger's answer to failures it must not return to the caller: every write
//! error, dropped or misrouted event shows up here (and once, rate-limited, on stderr).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::event::Level;

/// Declares a statistic once: the public snapshot's field (`pub NAME: u64`) and its counter in
/// the crate-private counters (`NAME: AtomicU64`), with the snapshot that reads one into the
/// other. Figures the snapshot does not count itself (a name, a lag worked out elsewhere) are
/// given to it (in parentheses after the name, first in the struct); counters the snapshot does
/// not show are `kept`.
macro_rules! statistics {
    (
        $(#[$meta:meta])*
        pub struct $stats:ident $( ( $( $(#[$given_doc:meta])* $given:ident: $given_ty:ty ),* $(,)? ) )?,
        counted in $counters:ident {
            $( $(#[$doc:meta])* $count:ident, )*
        }
        $( kept { $( $(#[$kept_doc:meta])* $kept:ident: $kept_ty:ty, )* } )?
    ) => {
        $(#[$meta])*
        pub struct $stats {
            $( $( $(#[$given_doc])* pub $given: $given_ty, )* )?
            $( $(#[$doc])* pub $count: u64, )*
        }

        #[derive(Debug, Default)]
        pub(crate) struct $counters {
            $( pub(crate) $count: AtomicU64, )*
            $( $( $(#[$kept_doc])* pub(crate) $kept: $kept_ty, )* )?
        }

        impl $counters {
            /// The counts now, with the figures given.
            #[allow(dead_code, clippy::too_many_arguments)]
            pub(crate) fn snapshot_with(&self, $( $( $given: $given_ty, )* )?) -> $stats {
                $stats { $( $( $given, )* )? $( $count: self.$count.load(Relaxed), )* }
            }
        }
    };
}

/// A snapshot of the logger's counters. Serializes as the context of the `log_health` event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Events accepted by at least one sink, per level (index with [`Stats::events`]).
    pub events_by_level: [u64; 6],
    /// Per sink: `console`, `chimera.log`, `executions.log`, then each route's file.
    pub sinks: Vec<SinkStats>,
    /// Events emitted after the logger was shut down (the guard dropped), or that every sink
    /// refused because it had closed; they are not written, nor counted in `events_by_level`.
    pub emitted_after_shutdown: u64,
    /// Events whose type names a route that is not configured; written to the general sinks only.
    pub unconfigured_route: u64,
    /// Backups compressed.
    pub compressed_backups: u64,
    /// Compressions or repairs that failed (the plain backup is kept).
    pub compression_failures: u64,
    /// Old backups removed by retention.
    pub removed_backups: u64,
    /// `fdatasync` calls made for the audit file; fewer than audit events when concurrent
    /// emitters share a group commit.
    pub audit_syncs: u64,
    /// The most memory one queue (console, or files) ever held for lines waiting or being
    /// written, counted in whole chunks (up to 64 KiB each).
    pub queue_high_water_bytes: u64,
    /// The memory the queues hold now, in whole chunks.
    pub queue_bytes: u64,
    /// Time `emit!` takes on the caller's thread, sampled.
    pub emit_latency: LatencyStats,
    /// How long lines waited between the caller's queue and `chimera.log` or a route file, over
    /// the last window of `watch_interval` (zero before the first window closes).
    pub write_latency: WriteLatencyStats,
    /// Free bytes on the log directory's file system at the last reading (`None`: unreadable).
    pub disk_free_bytes: Option<u64>,
    /// Windows whose write-latency p99 passed `slow_write_warning` (each one `log_write_slow`).
    pub slow_write_warnings: u64,
    /// Readings of the free space below `disk_low_warning` (each one `log_disk_low`).
    pub disk_low_warnings: u64,
    /// The CloudWatch sink's figures, when it is configured.
    pub cloudwatch: Option<CloudWatchStats>,
    /// The audit store's figures, when it is on.
    pub audit_store: Option<AuditStoreStats>,
    /// The OTLP forwarder's figures, when it is on.
    pub otlp: Option<OtlpStats>,
    /// The S3 archive's figures, when it is configured.
    pub archive: Option<ArchiveStats>,
    /// Audit backups past `audit_backups` that retention kept because their records were not in
    /// the audit store or the S3 archive yet (the newest count; they go once archived).
    pub audit_backups_kept_for_store: u64,
}

statistics! {
    /// What the audit store did.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
    #[non_exhaustive]
    pub struct AuditStoreStats(
        /// Audit records written to the file and not yet in the database.
        lag_records: u64,
        /// Whether the database is failing now.
        down: bool,
    ),
    counted in AuditStoreCounters {
        /// Rows inserted.
        rows_stored,
        /// Database failures (unreachable, locked, full); each is retried.
        errors,
        /// Records already in the database with a different chain: kept there, never overwritten.
        conflicts,
        /// Rows deleted for being older than `audit_retention`.
        rows_expired,
        /// Audit files deleted by hand before they were archived.
        files_skipped,
        /// Times the saved cursor could not be trusted (damaged, edited, ahead of the files or of
        /// the database): archiving went back to the oldest retained record, and the database
        /// recognised what it already held.
        cursor_damaged,
    }
    kept {
        /// The highest seq known to be in the database.
        stored_seq: AtomicU64,
        down: std::sync::atomic::AtomicBool,
    }
}

impl AuditStoreCounters {
    /// The snapshot, with the lag behind the audit file's newest record `head_seq`.
    pub(crate) fn snapshot(&self, head_seq: u64) -> AuditStoreStats {
        self.snapshot_with(head_seq.saturating_sub(self.stored_seq.load(Relaxed)), self.down.load(Relaxed))
    }
}

/// The S3 archive's figures: counted only in a build with the `s3` feature.
mod archive {
    #![cfg_attr(not(feature = "s3"), allow(dead_code))]

    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    statistics! {
        /// What the S3 archive did.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
        #[non_exhaustive]
        pub struct ArchiveStats(
            /// Audit records written to the file and not yet in the bucket.
            lag_records: u64,
            /// Whether the bucket is failing now.
            down: bool,
            /// Whether the archive is off because it could not start (a bucket without Object Lock,
            /// an unreadable signing key): reported once on stderr; logging goes on without it.
            disabled: bool,
        ),
        counted in ArchiveCounters {
            /// Objects of records uploaded (backups and segments).
            objects,
            /// Records in those objects.
            records,
            /// Bytes uploaded in them (compressed).
            bytes,
            /// Digests uploaded.
            digests,
            /// Failed requests (unreachable, refused, timed out); each is retried.
            errors,
            /// Objects found in the bucket under the key being uploaded with other content: kept
            /// there, never overwritten.
            conflicts,
            /// Audit files deleted by hand (or damaged) before they were archived.
            files_skipped,
            /// Times the saved cursor could not be trusted: archiving went back to the oldest
            /// retained record, skipping what the bucket already holds.
            cursor_damaged,
        }
        kept {
            /// The highest seq known to be in the bucket.
            archived_seq: AtomicU64,
            down: std::sync::atomic::AtomicBool,
            disabled: std::sync::atomic::AtomicBool,
        }
    }

    impl ArchiveCounters {
        /// The snapshot, with the lag behind the audit file's newest record `head_seq`.
        pub(crate) fn snapshot(&self, head_seq: u64) -> ArchiveStats {
            self.snapshot_with(
                head_seq.saturating_sub(self.archived_seq.load(Relaxed)),
                self.down.load(Relaxed),
                self.disabled.load(Relaxed),
            )
        }
    }
}

#[cfg(feature = "s3")]
pub(crate) use archive::ArchiveCounters;
pub use archive::ArchiveStats;

statistics! {
    /// What the CloudWatch sink did.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
    #[non_exhaustive]
    pub struct CloudWatchStats(
        /// Lines written to `chimera.log` since the logger started that are not in CloudWatch yet
        /// (nor left out by `cloudwatch_level`, nor refused); lines an earlier run left unshipped
        /// are not counted. Grows during an outage.
        lag_lines: u64,
    ),
    counted in CloudWatchCounters {
        /// `PutLogEvents` requests accepted.
        batches_sent,
        /// Attempts that failed and were tried again (throttling, 5xx, timeouts, a deleted stream).
        batches_retried,
        /// Batches given up: refused for good (bad parameters), or still failing at a flush's or
        /// the shutdown's deadline (those lines stay in the file, and the next attempt or start
        /// sends them).
        batches_failed,
        /// Events accepted by the service.
        events_sent,
        /// Events outside the accepted time window, set aside before sending or rejected by the
        /// service (`rejectedLogEventsInfo`).
        events_rejected,
        /// Events cut to the per-event limit.
        events_truncated,
        /// Events refused for good by the service (bad parameters): not retried, never sent.
        events_dropped,
        /// Lines of `chimera.log` left out for being below `cloudwatch_level`.
        events_below_level,
        /// `chimera.log` backups that retention removed before they were shipped: their unshipped
        /// lines never reach CloudWatch (the number of lines cannot be known once the file is
        /// gone).
        files_skipped,
        /// Times the saved cursor could not be trusted (damaged, edited, ahead of the files): the
        /// service cannot be asked what it holds, so shipping went back to the oldest retained
        /// line (duplicates rather than loss).
        cursor_damaged,
    }
}

statistics! {
    /// What the OTLP forwarder did.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
    #[non_exhaustive]
    pub struct OtlpStats(
        /// Bytes of `chimera.log` (and of its backups not yet shipped, as they are on disk)
        /// after the last acknowledged request: what waits to be shipped.
        lag_bytes: u64,
        /// Whether delivery is failing now (an outage reported on stderr, not yet over).
        down: bool,
    ),
    counted in OtlpCounters {
        /// Requests the receiver accepted.
        batches_sent,
        /// Attempts that failed and were tried again (429, 5xx, connection failures, timeouts).
        batches_retried,
        /// Batches given up: refused for good (a 4xx), or still failing at a flush's or the
        /// shutdown's deadline (those lines stay in the file, and the next attempt or start sends
        /// them).
        batches_failed,
        /// Records the receiver accepted.
        events_sent,
        /// Records the receiver rejected in a partial success (`rejected_log_records`): counted,
        /// not sent again.
        events_rejected,
        /// Records of batches refused for good (a 4xx other than 401, 403, 404, 405, 408 and 429):
        /// dropped.
        events_refused,
        /// `chimera.log` backups that retention removed before they were shipped.
        files_skipped,
        /// Times the saved cursor could not be trusted: shipping went back to the oldest retained
        /// line (duplicates rather than loss).
        cursor_damaged,
    }
    kept {
        /// Set by the exporter while an outage lasts.
        #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
        down: std::sync::atomic::AtomicBool,
    }
}

/// Emit latency on the caller's thread, from one emit in 64. Serializes in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[non_exhaustive]
pub struct LatencyStats {
    /// The median.
    #[serde(rename = "median_ns", serialize_with = "as_nanos")]
    pub median: std::time::Duration,
    /// The 99th percentile.
    #[serde(rename = "p99_ns", serialize_with = "as_nanos")]
    pub p99: std::time::Duration,
    /// The 99.9th percentile.
    #[serde(rename = "p999_ns", serialize_with = "as_nanos")]
    pub p999: std::time::Duration,
    /// Emits timed.
    pub samples: u64,
}

/// The write latency of one window: a line's wait from the caller's queue to the file (each
/// figure is a chunk's oldest line). Serializes in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[non_exhaustive]
pub struct WriteLatencyStats {
    /// The median.
    #[serde(rename = "median_ns", serialize_with = "as_nanos")]
    pub median: std::time::Duration,
    /// The 99th percentile.
    #[serde(rename = "p99_ns", serialize_with = "as_nanos")]
    pub p99: std::time::Duration,
    /// The longest.
    #[serde(rename = "max_ns", serialize_with = "as_nanos")]
    pub max: std::time::Duration,
    /// Chunks measured.
    pub samples: u64,
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

statistics! {
    /// Counters of one sink.
    #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
    #[non_exhaustive]
    pub struct SinkStats(
        /// `console`, or the file name.
        name: String,
    ),
    counted in SinkCounters {
        /// Lines written.
        lines,
        /// Bytes written.
        bytes,
        /// Writes, flushes or rotations that failed.
        write_errors,
        /// Rotations of a file sink.
        rotations,
        /// Lines dropped: the sink's queue was full (console, general and route files), the sink
        /// could not write and its retry buffer was full, or the sink had closed (shutdown racing
        /// with the emit, or its writer thread died) while another sink took the event.
        dropped,
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    events_by_level: EventCounts,
    pub(crate) emitted_after_shutdown: AtomicU64,
    pub(crate) unconfigured_route: AtomicU64,
}

impl Counters {
    pub(crate) fn count_event(&self, level: Level) {
        self.events_by_level.add(level, 1);
    }

    /// Takes back a count: the event was refused after all (shutdown). Until then a snapshot
    /// may include it.
    pub(crate) fn uncount_event(&self, level: Level) {
        self.events_by_level.add(level, u64::MAX);
    }

    pub(crate) fn snapshot(&self, sinks: Vec<SinkStats>, maintenance: &MaintenanceCounters) -> Stats {
        Stats {
            events_by_level: self.events_by_level.sum(),
            sinks,
            emitted_after_shutdown: self.emitted_after_shutdown.load(Relaxed),
            unconfigured_route: self.unconfigured_route.load(Relaxed),
            compressed_backups: maintenance.compressed.load(Relaxed),
            compression_failures: maintenance.compression_failures.load(Relaxed),
            removed_backups: maintenance.removed_backups.load(Relaxed),
            audit_syncs: 0,
            queue_high_water_bytes: 0,
            emit_latency: LatencyStats::default(),
            write_latency: WriteLatencyStats::default(),
            queue_bytes: 0,
            disk_free_bytes: None,
            slow_write_warnings: 0,
            disk_low_warnings: 0,
            cloudwatch: None,
            audit_store: None,
            otlp: None,
            archive: None,
            audit_backups_kept_for_store: maintenance.kept_for_store.load(Relaxed),
        }
    }
}

/// Events accepted per level, counted on every emit: one row of counters per stripe, each on
/// its own cache line, and each thread counting in its own stripe, so that threads on different
/// cores do not pass one cache line back and forth on each event. A snapshot sums the stripes.
#[derive(Debug, Default)]
struct EventCounts {
    stripes: [Stripe; STRIPES],
}

/// Enough stripes that a handful of busy threads rarely share one.
const STRIPES: usize = 16;

#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe([AtomicU64; 6]);

impl EventCounts {
    /// Adds `n` (wrapping: `u64::MAX` takes one back) to `level`'s count in this thread's stripe.
    fn add(&self, level: Level, n: u64) {
        thread_local! {
            static STRIPE: usize = {
                static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
                NEXT.fetch_add(1, Relaxed) % STRIPES
            };
        }
        // A thread without thread-locals (it is exiting) counts in the first stripe.
        let stripe = STRIPE.try_with(|stripe| *stripe).unwrap_or(0);
        self.stripes[stripe].0[level.index()].fetch_add(n, Relaxed);
    }

    fn sum(&self) -> [u64; 6] {
        // Wrapping: a count taken back may sit in another stripe than the one it was added to.
        std::array::from_fn(|level| {
            self.stripes.iter().fold(0u64, |sum, stripe| sum.wrapping_add(stripe.0[level].load(Relaxed)))
        })
    }
}

/// What the maintenance thread did and failed to do.
#[derive(Debug, Default)]
pub(crate) struct MaintenanceCounters {
    pub(crate) compressed: AtomicU64,
    pub(crate) compression_failures: AtomicU64,
    pub(crate) removed_backups: AtomicU64,
    pub(crate) retention_failures: AtomicU64,
    /// Audit backups past the count kept because they are not archived yet (latest count).
    pub(crate) kept_for_store: AtomicU64,
}

impl SinkCounters {
    pub(crate) fn snapshot(&self, name: &str) -> SinkStats {
        self.snapshot_with(name.to_owned())
    }
}

/// The metrics a `log_health` line carries in CloudWatch Embedded Metric Format: each a root
/// member of the EMF document, declared in its `_aws` metadata with its unit.
const EMF_METRICS: [(&str, &str); 9] = [
    ("EventsTotal", "Count"),
    ("LinesDropped", "Count"),
    ("WriteErrors", "Count"),
    ("QueueHighWaterBytes", "Bytes"),
    ("WriteLatencyP99", "Milliseconds"),
    ("DiskFreeBytes", "Bytes"),
    ("CloudWatchLagLines", "Count"),
    ("AuditStoreLagRecords", "Count"),
    ("AuditStoreDown", "Count"),
];

impl Stats {
    /// The figures as a CloudWatch Embedded Metric Format document (namespace `chimera-log`,
    /// dimension `LogDir`): the `_aws` metadata, the metrics as root members, then every member
    /// of `stats()` as it serializes anyway (properties CloudWatch keeps with the event). Counts
    /// are totals since start, as in `stats()`.
    pub(crate) fn emf_document(&self, timestamp_ms: u64, log_dir: &str) -> serde_json::Value {
        let sum = |figure: fn(&SinkStats) -> u64| self.sinks.iter().map(figure).sum::<u64>();
        let values: [f64; 9] = [
            self.events_by_level.iter().sum::<u64>() as f64,
            sum(|sink| sink.dropped) as f64,
            sum(|sink| sink.write_errors) as f64,
            self.queue_high_water_bytes as f64,
            self.write_latency.p99.as_secs_f64() * 1e3,
            self.disk_free_bytes.unwrap_or(0) as f64,
            self.cloudwatch.map_or(0, |cloudwatch| cloudwatch.lag_lines) as f64,
            self.audit_store.map_or(0, |store| store.lag_records) as f64,
            self.audit_store.map_or(0.0, |store| if store.down { 1.0 } else { 0.0 }),
        ];
        let metrics: Vec<serde_json::Value> =
            EMF_METRICS.iter().map(|(name, unit)| serde_json::json!({ "Name": name, "Unit": unit })).collect();
        let mut document = serde_json::Map::new();
        document.insert(
            "_aws".into(),
            serde_json::json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{ "Namespace": "chimera-log", "Dimensions": [["LogDir"]], "Metrics": metrics }],
            }),
        );
        document.insert("LogDir".into(), log_dir.into());
        for ((name, _), value) in EMF_METRICS.iter().zip(values) {
            document.insert((*name).into(), value.into());
        }
        if let Ok(serde_json::Value::Object(stats)) = serde_json::to_value(self) {
            document.extend(stats);
        }
        serde_json::Value::Object(document)
    }
}

fn as_nanos<S: serde::Serializer>(duration: &std::time::Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u128(duration.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_counted_on_many_threads_in_striped_counters_sum_to_every_event() {
        let counts = EventCounts::default();
        // More threads than stripes: some share one, and no count may be lost either way.
        std::thread::scope(|scope| {
            for thread in 0..2 * STRIPES {
                let counts = &counts;
                scope.spawn(move || {
                    for n in 0..1_200 {
                        counts.add(Level::ALL[(thread + n) % Level::ALL.len()], 1);
                    }
                });
            }
        });
        let sum = counts.sum();
        assert_eq!(sum.iter().sum::<u64>(), 2 * STRIPES as u64 * 1_200);
        assert_eq!(sum, [2 * STRIPES as u64 * 200; 6], "each level its own count");
        // A count taken back on another thread (another stripe) still sums right.
        std::thread::scope(|scope| {
            scope.spawn(|| counts.add(Level::Error, u64::MAX));
        });
        assert_eq!(counts.sum()[Level::Error.index()], 2 * STRIPES as u64 * 200 - 1);
    }
}
