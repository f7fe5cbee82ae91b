//! The `Forwarder` trait the dispatcher drives every forwarder through, and `start`, the one place that knows which forwarders exist.

use std::fmt::Debug;
use std::path::Path;
use std::time::Instant;

use std::sync::Arc;

use crate::config::LogConfig;
use crate::dir::backup::ArchiveMark;
use crate::error::Error;
use crate::forward::store::{Archiver, ArchiverConfig};
use crate::stats::Stats;

/// An output that follows a file the logger writes and sends its lines elsewhere.
pub(crate) trait Forwarder: Send + Sync + Debug {
    /// Waits until everything the followed file holds now has been sent and acknowledged;
    /// `false` at `deadline`. Called after the file's writer has flushed.
    fn flush(&self, deadline: Instant) -> bool;

    /// Waits until the forwarder has read what the file holds now, sending only what is due.
    fn wait_processed(&self, deadline: Instant) -> bool;

    /// Sends what it can by `deadline`, saves its cursor and stops its thread; `false` if the
    /// thread had not ended by then (the next start sends the rest).
    fn shutdown(&self, deadline: Instant) -> bool;

    /// Puts its counters into `stats`; `audit_seq` is the newest audit record's number (how far
    /// the audit file has got, for a lag).
    fn report(&self, stats: &mut Stats, audit_seq: u64);
}

/// Starts the forwarders `config` asks for, following files in `dir`. Call after the files they
/// follow are open: a first start forwards what is written from then on.
/// `archived` is the mark the audit file's retention reads, when the audit store is on.
pub(crate) fn start(
    config: &LogConfig,
    dir: &Path,
    archived: Option<Arc<ArchiveMark>>,
    dir_lock: &crate::thread::DirLock,
) -> Result<Vec<Box<dyn Forwarder>>, Error> {
    let mut forwarders: Vec<Box<dyn Forwarder>> = Vec::new();
    if let (Some(target), Some(mark)) = (config.audit_store.resolve(dir), archived) {
        let archiver_config = ArchiverConfig {
            target,
            stream: crate::forward::store::default_stream(dir),
            retention: config.audit_retention,
        };
        forwarders.push(Box::new(Archiver::start(
            archiver_config,
            dir,
            Arc::clone(&config.clock),
            mark,
            Arc::clone(dir_lock),
        )?));
    }
    #[cfg(feature = "cloudwatch")]
    if let Some(cloudwatch) = &config.cloudwatch {
        let shipper = crate::forward::cloudwatch::Shipper::start(
            crate::config::cloudwatch::CloudWatchConfig {
                min_level: config.effective_cloudwatch_level(),
                ..cloudwatch.clone()
            },
            dir,
            config.clock.clone(),
            Arc::clone(dir_lock),
        )?;
        forwarders.push(Box::new(shipper));
    }
    #[cfg(feature = "otlp")]
    if let Some(otlp) = config.effective_otlp() {
        let exporter = crate::forward::otlp::Exporter::start(otlp, dir, config.clock.clone(), Arc::clone(dir_lock))?;
        forwarders.push(Box::new(exporter));
    }
    Ok(forwarders)
}

impl Forwarder for Archiver {
    fn flush(&self, deadline: Instant) -> bool {
        Archiver::flush(self, deadline)
    }

    fn wait_processed(&self, deadline: Instant) -> bool {
        // Nothing is held back for a batch: processed is stored.
        Archiver::flush(self, deadline)
    }

    fn shutdown(&self, deadline: Instant) -> bool {
        Archiver::shutdown(self, deadline)
    }

    fn report(&self, stats: &mut Stats, audit_seq: u64) {
        stats.audit_store = Some(self.counters.snapshot(audit_seq));
    }
}

#[cfg(feature = "cloudwatch")]
impl Forwarder for crate::forward::cloudwatch::Shipper {
    fn flush(&self, deadline: Instant) -> bool {
        crate::forward::cloudwatch::Shipper::flush(self, deadline)
    }

    fn wait_processed(&self, deadline: Instant) -> bool {
        crate::forward::cloudwatch::Shipper::wait_processed(self, deadline)
    }

    fn shutdown(&self, deadline: Instant) -> bool {
        crate::forward::cloudwatch::Shipper::shutdown(self, deadline)
    }

    fn report(&self, stats: &mut Stats, _: u64) {
        // The lag is worked out by the dispatcher, which knows the lines written.
        stats.cloudwatch = Some(self.counters.snapshot_with(0));
    }
}

#[cfg(feature = "otlp")]
impl Forwarder for crate::forward::otlp::Exporter {
    fn flush(&self, deadline: Instant) -> bool {
        crate::forward::otlp::Exporter::flush(self, deadline)
    }

    fn wait_processed(&self, deadline: Instant) -> bool {
        crate::forward::otlp::Exporter::wait_processed(self, deadline)
    }

    fn shutdown(&self, deadline: Instant) -> bool {
        crate::forward::otlp::Exporter::shutdown(self, deadline)
    }

    fn report(&self, stats: &mut Stats, _: u64) {
        stats.otlp = Some(self.snapshot());
    }
}
