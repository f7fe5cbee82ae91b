//! The `Forwarder` trait the dispatcher drives every forwarder through, and `start`, the one place that knows which forwarders exist.

use std::fmt::Debug;
use std::path::Path;
use std::time::Instant;

use std::sync::Arc;

use crate::config::LogConfig;
use crate::dir::backup::{ArchiveMark, Stamp};
use crate::dir::follow::Saved;
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

/// The mark retention reads for the audit file: one slot per forwarder that archives it (the
/// audit store's first, then the S3 archive's), each where that forwarder's saved cursor says it
/// is as of `now`; `None` when none does (retention then deletes by count alone).
pub(crate) fn archive_mark(config: &LogConfig, dir: &Path, now: std::time::SystemTime) -> Option<Arc<ArchiveMark>> {
    let mut slots = Vec::new();
    if config.audit_store.resolve(dir).is_some() {
        slots.push(saved_after(dir, crate::dir::layout::STORE_CURSOR_FILE, now));
    }
    if config.archive.is_some() {
        slots.push(saved_after(dir, crate::dir::layout::ARCHIVE_CURSOR_FILE, now));
    }
    (!slots.is_empty()).then(|| Arc::new(ArchiveMark::new(&slots)))
}

/// How far the saved cursor `cursor_file` says the backups of `executions.log` in `dir` are
/// archived; nothing when there is no cursor yet, or one that cannot be trusted: retention then
/// keeps every backup until the forwarder has archived it.
fn saved_after(dir: &Path, cursor_file: &str, now: std::time::SystemTime) -> Option<Stamp> {
    match Saved::load(&dir.join(cursor_file), dir, crate::dir::layout::AUDIT_FILE, now) {
        Saved::Trusted(cursor) => cursor.after,
        Saved::None | Saved::Damaged(_) => None,
    }
}

/// Starts the forwarders `config` asks for, following files in `dir`. Call after the files they
/// follow are open: a first start forwards what is written from then on.
/// `archived` is the mark the audit file's retention reads ([`archive_mark`]).
pub(crate) fn start(
    config: &LogConfig,
    dir: &Path,
    archived: Option<Arc<ArchiveMark>>,
    dir_lock: &crate::thread::DirLock,
) -> Result<Vec<Box<dyn Forwarder>>, Error> {
    let mut forwarders: Vec<Box<dyn Forwarder>> = Vec::new();
    // The slots in `archive_mark`'s order.
    let mut slot = 0;
    if let (Some(target), Some(mark)) = (config.audit_store.resolve(dir), &archived) {
        let archiver_config = ArchiverConfig {
            target,
            stream: crate::forward::store::default_stream(dir),
            retention: config.audit_retention,
        };
        forwarders.push(Box::new(Archiver::start(
            archiver_config,
            dir,
            Arc::clone(&config.clock),
            mark.slot(slot),
            Arc::clone(dir_lock),
        )?));
        slot += 1;
    }
    #[cfg(feature = "s3")]
    if let (Some(archive), Some(mark)) = (&config.archive, &archived) {
        // A key that cannot be used is an error now, not a digest that never comes.
        let signer = match &archive.signing_key {
            Some(path) => {
                let key = crate::forward::archive::Ed25519::from_pem_file(path)
                    .map_err(|why| Error::invalid("archive.signing_key", path.display().to_string(), why))?;
                Some(Arc::new(key) as Arc<dyn crate::forward::archive::Signer>)
            }
            None => None,
        };
        let uploader = crate::forward::archive::Uploader::start(
            crate::forward::archive::UploaderConfig {
                archive: archive.clone(),
                stream: crate::forward::store::default_stream(dir),
                retention: config.audit_retention,
                signer,
            },
            dir,
            Arc::clone(&config.clock),
            mark.slot(slot),
            Arc::clone(dir_lock),
        )?;
        forwarders.push(Box::new(uploader));
    }
    #[cfg(not(feature = "s3"))]
    let _ = slot;
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

#[cfg(feature = "s3")]
impl Forwarder for crate::forward::archive::Uploader {
    fn flush(&self, deadline: Instant) -> bool {
        crate::forward::archive::Uploader::flush(self, deadline)
    }

    fn wait_processed(&self, deadline: Instant) -> bool {
        crate::forward::archive::Uploader::wait_processed(self, deadline)
    }

    fn shutdown(&self, deadline: Instant) -> bool {
        crate::forward::archive::Uploader::shutdown(self, deadline)
    }

    fn report(&self, stats: &mut Stats, audit_seq: u64) {
        stats.archive = Some(self.counters.snapshot(audit_seq));
    }
}
