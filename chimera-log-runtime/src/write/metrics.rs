//! The logger's figures through the `metrics` facade (feature `metrics`, issue 29): whatever
//! recorder the application installs (Prometheus, OpenTelemetry, statsd) sees them.
//!
//! Nothing is published per event: a thread of the logger reads `stats()` every interval (and
//! `flush()` does on the caller's thread), sets each counter to its absolute value and each gauge
//! to its reading, and records into the two histograms what their buckets gained since the last
//! publication. The names, in one table here and in docs/operations.md:
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `chimera_log_events_total` | counter | `level` |
//! | `chimera_log_dropped_total` | counter | `sink` |
//! | `chimera_log_write_errors_total` | counter | `sink` |
//! | `chimera_log_queue_bytes` | gauge | — |
//! | `chimera_log_queue_high_water_bytes` | gauge | — |
//! | `chimera_log_write_latency_seconds` | histogram | — |
//! | `chimera_log_emit_seconds` | histogram | — |
//! | `chimera_log_file_bytes` | gauge | `file` |
//! | `chimera_log_disk_free_bytes` | gauge | — |
//! | `chimera_log_audit_syncs_total` | counter | — |
//! | `chimera_log_cloudwatch_requests_total` | counter | `outcome` (`sent`, `retried`, `failed`) |
//! | `chimera_log_cloudwatch_lag_lines` | gauge | — |
//! | `chimera_log_audit_store_lag_records` | gauge | — |
//! | `chimera_log_audit_store_down` | gauge | — |
//! | `chimera_log_otlp_requests_total` | counter | `outcome` (`sent`, `retried`, `failed`) |
//! | `chimera_log_otlp_lag_bytes` | gauge | — |
//! | `chimera_log_otlp_down` | gauge | — |

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use metrics::{counter, gauge, histogram};

use super::latency::LatencyHistogram;
use crate::event::Level;
use crate::stats::Stats;

/// What was published last, for the histograms' deltas.
#[derive(Debug, Default)]
struct Published {
    write_buckets: Vec<u64>,
    emit_buckets: Vec<u64>,
}

/// The publishing thread and the state it shares with `flush()`.
#[derive(Debug)]
pub(crate) struct Publisher {
    every: Duration,
    published: Mutex<Published>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Publisher {
    pub(crate) fn new(every: Duration) -> Self {
        Publisher { every, published: Mutex::default(), stop: Arc::default(), thread: Mutex::new(None) }
    }

    /// Starts the thread calling `publish` every interval, until [`stop`](Self::stop) or until
    /// `publish` says `false` (the instance is gone).
    pub(crate) fn start(&self, publish: impl Fn() -> bool + Send + 'static) {
        let every = self.every;
        let stop = Arc::clone(&self.stop);
        let spawned = std::thread::Builder::new().name("chimera-log-metrics".into()).spawn(move || {
            crate::thread::mark();
            let (stopped, signal) = &*stop;
            let mut stopped_now = stopped.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                stopped_now = signal.wait_timeout(stopped_now, every).unwrap_or_else(|e| e.into_inner()).0;
                if *stopped_now {
                    return;
                }
                drop(stopped_now);
                if !publish() {
                    return;
                }
                stopped_now = stopped.lock().unwrap_or_else(|e| e.into_inner());
            }
        });
        match spawned {
            Ok(thread) => *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread),
            // Figures are still published at every flush.
            Err(error) => diag!("chimera-log: the metrics thread could not start: {error}"),
        }
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(&self) {
        let (stopped, signal) = &*self.stop;
        *stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        signal.notify_all();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
    }

    /// Publishes `stats` and what the histograms gained since the last publication.
    pub(crate) fn publish(&self, stats: &Stats, write: &LatencyHistogram, emit: &LatencyHistogram, dir: &Path) {
        for level in Level::ALL {
            counter!("chimera_log_events_total", "level" => level.as_str().to_ascii_lowercase())
                .absolute(stats.events(level));
        }
        for sink in &stats.sinks {
            counter!("chimera_log_dropped_total", "sink" => sink.name.clone()).absolute(sink.dropped);
            counter!("chimera_log_write_errors_total", "sink" => sink.name.clone()).absolute(sink.write_errors);
            if sink.name != "console" {
                if let Ok(metadata) = std::fs::metadata(dir.join(&sink.name)) {
                    gauge!("chimera_log_file_bytes", "file" => sink.name.clone()).set(metadata.len() as f64);
                }
            }
        }
        gauge!("chimera_log_queue_bytes").set(stats.queue_bytes as f64);
        gauge!("chimera_log_queue_high_water_bytes").set(stats.queue_high_water_bytes as f64);
        if let Some(free) = stats.disk_free_bytes {
            gauge!("chimera_log_disk_free_bytes").set(free as f64);
        }
        counter!("chimera_log_audit_syncs_total").absolute(stats.audit_syncs);
        if let Some(cloudwatch) = &stats.cloudwatch {
            counter!("chimera_log_cloudwatch_requests_total", "outcome" => "sent").absolute(cloudwatch.batches_sent);
            counter!("chimera_log_cloudwatch_requests_total", "outcome" => "retried")
                .absolute(cloudwatch.batches_retried);
            counter!("chimera_log_cloudwatch_requests_total", "outcome" => "failed")
                .absolute(cloudwatch.batches_failed);
            gauge!("chimera_log_cloudwatch_lag_lines").set(cloudwatch.lag_lines as f64);
        }
        if let Some(otlp) = &stats.otlp {
            counter!("chimera_log_otlp_requests_total", "outcome" => "sent").absolute(otlp.batches_sent);
            counter!("chimera_log_otlp_requests_total", "outcome" => "retried").absolute(otlp.batches_retried);
            counter!("chimera_log_otlp_requests_total", "outcome" => "failed").absolute(otlp.batches_failed);
            gauge!("chimera_log_otlp_lag_bytes").set(otlp.lag_bytes as f64);
            gauge!("chimera_log_otlp_down").set(if otlp.down { 1.0 } else { 0.0 });
        }
        if let Some(store) = &stats.audit_store {
            gauge!("chimera_log_audit_store_lag_records").set(store.lag_records as f64);
            gauge!("chimera_log_audit_store_down").set(if store.down { 1.0 } else { 0.0 });
        }
        let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        let published = &mut *published;
        record_gain("chimera_log_write_latency_seconds", write, &mut published.write_buckets);
        record_gain("chimera_log_emit_seconds", emit, &mut published.emit_buckets);
    }
}

/// Records into histogram `name` each bucket's gain since `last` (a bucket's values as its upper
/// bound, within 25% of them), and remembers the counts.
fn record_gain(name: &'static str, histogram: &LatencyHistogram, last: &mut Vec<u64>) {
    let now = histogram.counts();
    last.resize(now.len(), 0);
    let handle = histogram!(name);
    for (bucket, (&count, seen)) in now.iter().zip(last.iter_mut()).enumerate() {
        let gain = count.saturating_sub(*seen);
        if gain > 0 {
            handle.record_many(LatencyHistogram::upper_bound(bucket).as_secs_f64(), gain as usize);
        }
        *seen = count;
    }
}
