//! The exporter: an OTLP/HTTP receiver as a destination of the loop that follows
//! `chimera.log` (`forward::ship`): its batches, the request and what the answers mean (see the
//! folder's table of contents).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::batch::{millis, Batch, Batcher, Limits};
use super::client::{encode, Accepted, Client, Failure};
use super::record::{map_line, request, resource};
use crate::clock::Clock;
use crate::config::otlp::OtlpConfig;
use crate::dir::backup;
use crate::dir::follow::Cursor;
use crate::dir::layout::{GENERAL_FILE, OTLP_CURSOR_FILE};
use crate::error::Error;
use crate::forward::ship::{line_timestamp_ms, load_cursor, Attempt, Destination, ShipCounters, Shipping};
use crate::report::FailureReporter;
use crate::stats::{OtlpCounters, OtlpStats};

/// The running exporter: its thread and what the dispatcher needs of it.
#[derive(Debug)]
pub(crate) struct Exporter {
    shipping: Shipping,
    counters: Arc<OtlpCounters>,
    dir: PathBuf,
    /// The last acknowledged cursor, for the lag in `stats()`.
    acked: Arc<Mutex<Cursor>>,
}

impl Exporter {
    /// Starts following `dir/chimera.log` from the saved cursor, or from the end of what it
    /// holds now when there is none (a first start ships what comes from now on).
    pub(crate) fn start(
        config: OtlpConfig,
        dir: &Path,
        clock: Arc<dyn Clock>,
        dir_lock: crate::thread::DirLock,
    ) -> Result<Exporter, Error> {
        let counters = Arc::new(OtlpCounters::default());
        let cursor = load_cursor::<Otlp>(dir, clock.now(), &counters)?;
        let acked = Arc::new(Mutex::new(cursor));
        let destination = Otlp::new(config, Arc::clone(&counters), Arc::clone(&acked));
        let shipping = Shipping::start("chimera-log-otlp", destination, dir, cursor, clock, dir_lock)?;
        Ok(Exporter { shipping, counters, dir: dir.to_path_buf(), acked })
    }

    /// Ships everything `chimera.log` holds now; `false` if not all of it was acknowledged by
    /// `deadline`. Call after the file writer has written what the flush covers.
    pub(crate) fn flush(&self, deadline: Instant) -> bool {
        self.shipping.flush(deadline)
    }

    /// Waits until the exporter has read what `chimera.log` holds now, sending only what is due.
    pub(crate) fn wait_processed(&self, deadline: Instant) -> bool {
        self.shipping.wait_processed(deadline)
    }

    /// Ships what it can by `deadline`, saves the cursor and stops; `false` if the thread had not
    /// finished by then.
    pub(crate) fn shutdown(&self, deadline: Instant) -> bool {
        self.shipping.shutdown(deadline)
    }

    /// The counters, with the lag behind the file and whether delivery is down.
    pub(crate) fn snapshot(&self) -> OtlpStats {
        let acked = *self.acked.lock().unwrap_or_else(|e| e.into_inner());
        self.counters.snapshot_with(lag_bytes(&self.dir, acked), self.counters.down.load(Relaxed))
    }
}

/// Bytes of the `chimera.log` family after `acked`: the rest of the file it is in and every file
/// after it, backups counted as they are on disk (compressed or not). Zero when the family cannot
/// be listed.
fn lag_bytes(dir: &Path, acked: Cursor) -> u64 {
    let Ok(backups) = backup::list_backups(dir, GENERAL_FILE, SystemTime::now()) else { return 0 };
    let mut lag = 0;
    let mut first = true;
    for (stamp, files) in backups.iter().filter(|(stamp, _)| acked.after.is_none_or(|after| *stamp > after)) {
        let path = if files.plain {
            backup::plain_path(dir, GENERAL_FILE, *stamp)
        } else {
            backup::gz_path(dir, GENERAL_FILE, *stamp)
        };
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        lag += if first && files.plain { size.saturating_sub(acked.offset) } else { size };
        first = false;
    }
    let current = std::fs::metadata(dir.join(GENERAL_FILE)).map_or(0, |m| m.len());
    lag + if first { current.saturating_sub(acked.offset) } else { current }
}

impl ShipCounters for OtlpCounters {
    fn batches_retried(&self) -> &AtomicU64 {
        &self.batches_retried
    }
    fn batches_failed(&self) -> &AtomicU64 {
        &self.batches_failed
    }
    fn files_skipped(&self) -> &AtomicU64 {
        &self.files_skipped
    }
    fn cursor_damaged(&self) -> &AtomicU64 {
        &self.cursor_damaged
    }
}

/// An OTLP/HTTP receiver as a destination.
#[derive(Debug)]
struct Otlp {
    config: OtlpConfig,
    resource: Resource,
    batcher: Batcher,
    counters: Arc<OtlpCounters>,
    /// The last acknowledged cursor, shared with the handle for the lag.
    acked: Arc<Mutex<Cursor>>,
    reported_partial: bool,
    refusals: FailureReporter,
}

impl Otlp {
    fn new(config: OtlpConfig, counters: Arc<OtlpCounters>, acked: Arc<Mutex<Cursor>>) -> Self {
        let limits = Limits {
            batch_events: config.batch_events,
            batch_interval: config.batch_interval,
            max_batch_events: config.max_batch_events,
            max_batch_bytes: config.max_batch_bytes,
        };
        Otlp {
            resource: resource(&config),
            config,
            batcher: Batcher::new(limits),
            counters,
            acked,
            reported_partial: false,
            refusals: FailureReporter::default(),
        }
    }
}

impl Destination for Otlp {
    type Client = Client;
    type Batch = Batch;
    type Request = Bytes;
    type Answer = Accepted;
    type Counters = OtlpCounters;

    const NAME: &'static str = "OTLP";
    const STATS: &'static str = "otlp";
    const CURSOR_FILE: &'static str = OTLP_CURSOR_FILE;

    fn counters(&self) -> &OtlpCounters {
        &self.counters
    }

    async fn connect(&mut self) -> Option<Client> {
        match Client::new(&self.config) {
            Ok(client) => Some(client),
            Err(why) => {
                diag!("chimera-log: OTLP is disabled: {why}; console and files continue");
                None
            }
        }
    }

    fn request_timeout(&self) -> Duration {
        self.config.timeout
    }

    fn push(&mut self, line: &str, cursor: Cursor, now: SystemTime) {
        let timestamp = line_timestamp_ms(line).unwrap_or_else(|| millis(now));
        // Observed by the logger's clock, as every other time it reads.
        self.batcher.push(line, timestamp, now, cursor);
    }

    fn is_empty(&self) -> bool {
        self.batcher.is_empty()
    }

    fn full(&self) -> bool {
        self.batcher.full()
    }

    fn due(&self, now: SystemTime) -> bool {
        self.batcher.due(now)
    }

    fn clear(&mut self) {
        self.batcher.clear();
    }

    /// The batch, mapped and encoded once: a retry sends the same bytes.
    fn take(&mut self, _: SystemTime) -> (Batch, Option<Cursor>, Option<Bytes>) {
        let batch = self.batcher.take_batch();
        let cursor = batch.cursor;
        let body = (!batch.lines.is_empty()).then(|| {
            let records = batch.lines.iter().map(|(line, observed)| map_line(line, *observed)).collect();
            encode(&request(&self.resource, records))
        });
        (batch, cursor, body)
    }

    async fn send(&mut self, client: &Client, body: &Bytes) -> Attempt<Accepted> {
        match client.export(body.clone()).await {
            Ok(accepted) => Attempt::Delivered(accepted),
            Err(Failure::Refused(reason)) => Attempt::Refused(reason),
            Err(Failure::Retry { reason, pace, after }) => Attempt::Retry { reason, pace, after },
        }
    }

    /// Counts a batch the receiver accepted, less the records its partial success rejected
    /// (counted, not sent again: the receiver has decided).
    fn delivered(&mut self, accepted: Accepted, batch: &Batch) {
        let sent = batch.lines.len() as u64;
        let rejected = accepted.rejected.min(sent);
        self.counters.batches_sent.fetch_add(1, Relaxed);
        self.counters.events_sent.fetch_add(sent - rejected, Relaxed);
        self.counters.events_rejected.fetch_add(rejected, Relaxed);
        if (rejected > 0 || !accepted.message.is_empty()) && !self.reported_partial {
            self.reported_partial = true;
            diag!(
                "chimera-log: OTLP: the receiver rejected {rejected} record(s) of a batch ({}); counted in \
                 stats().otlp.events_rejected, not sent again",
                if accepted.message.is_empty() { "no reason given" } else { &accepted.message }
            );
        }
    }

    /// Counts and reports a batch the receiver refused for good: dropped.
    fn refused(&mut self, reason: String, batch: &Batch) {
        let sent = batch.lines.len();
        self.counters.events_refused.fetch_add(sent as u64, Relaxed);
        // Rate-limited: a receiver that refuses one batch may refuse them all.
        self.refusals.report(
            &format_args!("sending {sent} record(s) over OTLP (refused, not retried)"),
            &io::Error::other(reason),
        );
    }

    fn acknowledged(&mut self, cursor: Cursor) {
        *self.acked.lock().unwrap_or_else(|e| e.into_inner()) = cursor;
    }

    fn down_line(&self, reason: &str) -> String {
        format!(
            "chimera-log: OTLP delivery to {} stopped ({reason}); retrying with backoff, the lines wait in \
             {GENERAL_FILE}, console and files continue",
            self.config.shown_endpoint()
        )
    }

    fn set_down(&self, down: bool) {
        self.counters.down.store(down, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_counts_the_rest_of_the_current_file_after_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(GENERAL_FILE), "0123456789\n").unwrap();
        assert_eq!(lag_bytes(dir.path(), Cursor { after: None, offset: 4, fingerprint: None }), 7);
        assert_eq!(lag_bytes(dir.path(), Cursor { after: None, offset: 11, fingerprint: None }), 0);
    }
}
