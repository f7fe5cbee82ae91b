//! The pipeline: which sinks take a line, and getting it there without making the caller wait.
//!
//! A line is encoded once by the caller, then:
//! - the console has its own queue and writer thread, so a blocked terminal or pipe never holds
//!   up the files;
//! - `chimera.log` and the route files share one queue and one writer thread;
//! - `executions.log` is written through on the caller's thread and synced with group commit
//!   (`audit.rs`), so an audit line is in the file when `emit!` returns; for `emit_async!`, on
//!   the audit thread (`completion.rs`), a batch at a time, the caller told by a future;
//! - forwarders (CloudWatch) follow the files from their own cursors (`forward.rs`).
//!
//! A full queue drops the line for that sink only, counts it, and its writer later logs one
//! `log_events_dropped` warning with the count. This module does not encode and does not know
//! the file format.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

pub(crate) use super::latency::sample_this_emit;
use crate::config::{AuditDurability, Overflow};

use super::latency::LatencyHistogram;
use super::queue::{Entry, LaneSet, Pushed, TALLIES};

// The queue's shards count records per level (`dispatch_record_with`): a tally for each.
const _: () = assert!(TALLIES == Level::ALL.len());
use super::watch::{Watch, WatchConfig, WatchFigures};
use super::writer::{Lane, Writer};
use crate::audit::writer::{AuditWriter, Checkpoint};
use crate::audit::{ChainKey, TornRun};
use crate::clock::Clock;
use crate::config::LogConfig;
use crate::dir::backup::ArchiveMark;
use crate::dir::layout::{AUDIT_FILE, GENERAL_FILE};
use crate::dir::safe_fs::{self, LockError};
use crate::error::Error;
use crate::event::{Level, Routes};
use crate::file::maintenance::Maintenance;
use crate::file::rotating::{FilePolicy, FileSink};
use crate::forward::{self, Forwarder};
use crate::json::UnixTime;
use crate::levels::{LiveLevels, Threshold};
use crate::stats::{Counters, LatencyStats, SinkCounters, Stats, WriteLatencyStats};
use crate::thread::{deadline_after, DirLock};
use crate::write::completion::{AsyncWorker, Emitted};
use crate::write::console::ConsoleSink;

/// The sinks a line goes to, decided from the event's level and type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Destinations {
    /// The console: `general`, and at or above the console's own minimum.
    console: bool,
    general: bool,
    audit: bool,
    route: Option<usize>,
}

/// The sinks that refused a line because they were closed (shutdown, or a writer thread that
/// died); the usual line has none.
#[derive(Debug, Clone, Copy, Default)]
struct Refusals {
    console: bool,
    /// Lanes of the files queue.
    files: LaneSet,
    audit: bool,
}

impl Refusals {
    fn any(self) -> bool {
        self.console | !self.files.is_empty() | self.audit
    }
}

/// A file's name and the counters of its sink.
type NamedCounters = (String, Arc<SinkCounters>);

/// A started logger: its queues, writer threads, audit writer, clock and counters.
#[derive(Debug)]
pub(crate) struct Dispatcher {
    /// Each version's epoch tells this instance from any other, and a reloaded version from the
    /// one before (a logger caches its module's level under it).
    levels: LiveLevels,
    /// Whether the `tracing` capture installed by `init_logging` writes through this instance.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    capture: bool,
    /// Whether typed and ad-hoc lines written inside a span carry its stack.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    span_context: bool,
    console: Option<(Writer, Arc<SinkCounters>)>,
    /// The console's own minimum, on top of the module levels (`LogConfig::console_level`).
    console_level: Level,
    /// Lane 0 is `chimera.log`, lane `1 + i` the route `i`.
    files: Writer,
    /// File name and counters of each lane of `files`.
    file_counters: Vec<NamedCounters>,
    route_names: Vec<String>,
    audit: AuditWriter,
    clock: Arc<dyn Clock>,
    /// `clock` is the system clock: timestamps read it directly.
    system_clock: bool,
    counters: Counters,
    latency: LatencyHistogram,
    /// The files' writer's watch: write latency and free space.
    watch: Arc<WatchFigures>,
    /// Publishes the figures through the `metrics` facade.
    #[cfg(feature = "metrics")]
    metrics: super::metrics::Publisher,
    #[cfg(feature = "metrics")]
    metrics_interval: Option<Duration>,
    closed: AtomicBool,
    /// The configured `log_dir`, resolved at start (`resolve_dir`).
    log_dir: PathBuf,
    maintenance: Maintenance,
    shutdown_timeout: Duration,
    health_interval: Option<Duration>,
    /// Whether the `log_health` line's context is a CloudWatch Embedded Metric Format document.
    health_emf: bool,
    /// When the next `log_health` event is due, in microseconds since the epoch.
    next_health: AtomicU64,
    /// Outputs fed from the files rather than the queues (CloudWatch).
    forwarders: Vec<Box<dyn Forwarder>>,
    /// The instance's share of the log directory's lock, given up in `close`.
    lock: Mutex<Option<DirLock>>,
    /// The audit thread of `emit_async!`, started by its first audit event (`None`: it could
    /// not be started, and those events are written on the caller's thread as `emit!` does).
    audit_thread: OnceLock<Option<Arc<AsyncWorker<AsyncAudit>>>>,
}

/// An audit line handed to the audit thread, with what its emit knows already.
#[derive(Debug)]
struct AsyncAudit {
    line: Vec<u8>,
    level: Level,
    destinations: Destinations,
    /// The general sinks' refusals, found on the caller's thread.
    refusals: Refusals,
}

/// Creates the log directory and resolves its path: absolute, without links (see
/// `docs/decisions.md`, "The log directory is resolved once"). Everything the logger opens is
/// named from the resolved path, so the directory it locked is the one it writes to.
fn resolve_dir(dir: &Path) -> Result<PathBuf, Error> {
    let failed = |source| Error::CreateDir { path: dir.to_owned(), source };
    safe_fs::create_dir(dir).map_err(failed)?;
    fs::canonicalize(dir).map_err(failed)
}

/// Takes the lock of the directory `resolved` (`configured` as the user named it, for the
/// error), held until `close` (see `safe_fs::lock_dir`).
fn lock_dir(resolved: &Path, configured: &Path) -> Result<safe_fs::DirectoryLock, Error> {
    safe_fs::lock_dir(resolved).map_err(|error| match error {
        LockError::Held(pid) => Error::DirectoryInUse { path: configured.to_owned(), pid },
        LockError::Io(path, source) => Error::OpenFile { path, source },
    })
}

/// The audit file's writer, with what its opening found.
struct OpenedAudit {
    writer: AuditWriter,
    /// Torn lines an unclean end left at the end of the file, for the restart record.
    torn_tail: Option<TornRun>,
    /// How far the audit store has archived the backups (with a store), which retention respects.
    archived: Option<Arc<ArchiveMark>>,
    /// Records known to exist that the files could not give back, for the restart record.
    gap: Option<Gap>,
}

/// How long a start waits for the audit store to say which record it holds last.
const STORE_HEAD_WAIT: Duration = Duration::from_secs(2);

/// Records past the newest readable one that exist (or existed) elsewhere: the chain resumes
/// after them, so no seq is given twice.
#[derive(Debug, Clone, Copy)]
struct Gap {
    /// The newest record the audit files still give back.
    last_readable: u64,
    /// The newest record known anywhere; the chain continues after it.
    resumed_after: u64,
    /// Where it is known: `audit_store` or `audit_checkpoint`.
    source: &'static str,
}

/// The newest chain head known anywhere the logger can look, with the audit files' `readable`
/// head: the audit store (the newest row of this directory's stream) and the newest
/// `audit_checkpoint` in the general file. The audit files' newest records can be gone (the
/// current file deleted, a crash between a rotation's rename and the next file) or unreadable
/// (a damaged newest backup): numbering again from the newest readable one would give records
/// seqs that the store, and checkpoints shipped elsewhere, already hold for other records.
///
/// The store is asked at every start (it is the destination; what it holds was sealed here).
/// Checkpoints are read only when the files show a loss (`files_incomplete`: the current file
/// gone, or a file that could not be read whole): `chimera.log` has no chain, and any
/// application can write a line that looks like a checkpoint, so on an intact trail the files
/// are the truth. A checkpoint past half of `u64` is not one this logger wrote.
fn newest_known_head(
    config: &LogConfig,
    dir: &Path,
    readable: crate::audit::ChainHead,
    files_incomplete: bool,
) -> (crate::audit::ChainHead, Option<Gap>) {
    let mut newest = (readable, None);
    if let Some(target) = config.audit_store.resolve(dir) {
        match crate::forward::store::stored_head(&target, &crate::forward::store::default_stream(dir), STORE_HEAD_WAIT)
        {
            Ok(Some(stored)) if stored.seq > newest.0.seq => newest = (stored, Some("audit_store")),
            Ok(_) => {}
            Err(error) => diag!(
                "chimera-log: audit store {target:?}: could not read its newest record at start ({error}); the \
                 audit chain continues from the files and checkpoints alone"
            ),
        }
    }
    let checkpoint = files_incomplete
        .then(|| crate::audit::last_checkpoint(dir, GENERAL_FILE, AUDIT_FILE, config.clock.now()))
        .flatten();
    if let Some(checkpoint) = checkpoint.filter(|checkpoint| checkpoint.seq < u64::MAX / 2) {
        if checkpoint.seq > newest.0.seq {
            newest = (checkpoint, Some("audit_checkpoint"));
        }
    }
    let (head, source) = newest;
    (head, source.map(|source| Gap { last_readable: readable.seq, resumed_after: head.seq, source }))
}

/// Opens the log files of a configuration.
struct Files<'a> {
    config: &'a LogConfig,
    maintenance: &'a Maintenance,
    dir_lock: &'a DirLock,
    /// What the files' writer publishes of its watch (write latency, free space).
    watch: &'a Arc<WatchFigures>,
}

impl Files<'_> {
    fn open(
        &self,
        file: &str,
        backups: usize,
        write_through: bool,
        archived: Option<Arc<ArchiveMark>>,
    ) -> Result<(FileSink, Arc<SinkCounters>), Error> {
        let config = self.config;
        let policy = FilePolicy {
            max_bytes: config.max_bytes,
            backups,
            compress: config.compress,
            write_through,
            sync_on_rotate: write_through && config.audit_durability == AuditDurability::Sync,
            archived,
        };
        let counters = Arc::new(SinkCounters::default());
        FileSink::open(
            &config.log_dir,
            file,
            policy,
            Arc::clone(&config.clock),
            self.maintenance.sender(),
            Arc::clone(&counters),
            config.faults.clone(),
        )
        .map(|sink| (sink, counters))
        .map_err(|source| Error::OpenFile { path: config.log_dir.join(file), source })
    }

    /// Opens `executions.log` where its chain left off.
    fn start_audit(&self) -> Result<OpenedAudit, Error> {
        let config = self.config;
        let dir = &config.log_dir;
        let recovered = crate::audit::recover_head(dir, AUDIT_FILE, config.clock.now())
            .map_err(|source| Error::OpenFile { path: dir.join(AUDIT_FILE), source })?;
        // The current file gone (deleted, or a crash between a rotation's rename and the next
        // file), or a file not read whole: the files may not hold the newest records.
        let current_gone = std::fs::symlink_metadata(dir.join(AUDIT_FILE))
            .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            && recovered.head.seq > 0;
        let files_incomplete = current_gone || !recovered.skipped.is_empty();
        let (head, gap) = newest_known_head(config, dir, recovered.head, files_incomplete);
        for (path, error) in &recovered.skipped {
            diag!(
                "chimera-log: {} is damaged or unreadable ({error}); the newest record that could be read is seq \
                 {}, the audit chain continues after seq {}; `chimera-log verify` reports the damage",
                path.display(),
                recovered.head.seq,
                head.seq
            );
        }
        let key = config.audit_key.clone().map_or_else(ChainKey::unkeyed, |key| ChainKey::keyed(key.0));
        let archived = crate::forward::archive_mark(config, dir, config.clock.now());
        let (mut sink, counters) = self.open(AUDIT_FILE, config.audit_backups, true, archived.clone())?;
        sink.anchor_with(key.clone(), head);
        let writer = AuditWriter::new(
            sink,
            config.audit_durability,
            counters,
            (head, key, config.checkpoint_interval),
            config.clock.now(),
        );
        Ok(OpenedAudit { writer, torn_tail: recovered.torn_tail, archived, gap })
    }

    /// Opens `chimera.log` (lane 0) and the route files (lane `1 + i`) behind one writer thread.
    fn start_general(&self) -> Result<(Writer, Vec<NamedCounters>), Error> {
        let config = self.config;
        let mut lanes = Vec::new();
        let mut counters = Vec::new();
        for file in std::iter::once(GENERAL_FILE).chain(config.routes.iter().map(|route| route.file.as_str())) {
            let (sink, sink_counters) = self.open(file, config.general_backups, false, None)?;
            lanes.push(Lane::new(file, Box::new(sink), Arc::clone(&sink_counters)));
            counters.push((file.to_owned(), sink_counters));
        }
        let wait = config.overflow.wait();
        let writer = Writer::start(
            "chimera-log-files",
            lanes,
            config.queue_capacity,
            wait,
            Arc::clone(&config.clock),
            config.writer_priority,
            Some(Arc::clone(self.dir_lock)),
            Some(Watch::new(
                WatchConfig {
                    slow: config.slow_write,
                    every: config.watch_interval,
                    dir: config.log_dir.clone(),
                    disk_low: config.effective_disk_low(),
                },
                Arc::clone(self.watch),
            )),
        )?;
        Ok((writer, counters))
    }
}

/// The console's own writer thread, so a blocked terminal or pipe never holds up the files.
fn start_console(config: &LogConfig) -> Result<Option<(Writer, Arc<SinkCounters>)>, Error> {
    if !config.console {
        return Ok(None);
    }
    let counters = Arc::new(SinkCounters::default());
    let sink = ConsoleSink::new(config.console_target, config.console_format);
    let lane = Lane::new("console", Box::new(sink), Arc::clone(&counters));
    // `Block` keeps the files lossless; a terminal or pipe nobody reads must not stop every
    // caller, and the files behind them, for good: the console waits as the default does.
    let wait = match config.overflow {
        Overflow::Block => Overflow::default().wait(),
        overflow => overflow.wait(),
    };
    let writer = Writer::start(
        "chimera-log-console",
        vec![lane],
        config.queue_capacity,
        wait,
        Arc::clone(&config.clock),
        config.writer_priority,
        None,
        None,
    )?;
    Ok(Some((writer, counters)))
}

impl Dispatcher {
    /// Validates `config`, creates the log directory, opens every file and starts the threads.
    pub(crate) fn start(mut config: LogConfig) -> Result<Self, Error> {
        config.validate()?;
        crate::fast_clock::prepare();
        crate::report::start();
        let dir = resolve_dir(&config.log_dir)?;
        let lock: DirLock = Arc::new(lock_dir(&dir, &config.log_dir)?);
        config.log_dir = dir.clone();
        let maintenance = Maintenance::start(dir.clone(), Arc::clone(&lock))
            .map_err(|source| Error::CreateDir { path: dir.clone(), source })?;
        let watch = Arc::new(WatchFigures::default());
        let files = Files { config: &config, maintenance: &maintenance, dir_lock: &lock, watch: &watch };
        let OpenedAudit { writer: audit, torn_tail, archived, gap } = files.start_audit()?;
        let (general, file_counters) = files.start_general()?;
        let console = start_console(&config)?;
        let forwarders = forward::start(&config, &dir, archived, &lock)?;
        let first_health = config.health_interval.map_or(u64::MAX, |every| {
            UnixTime::from(config.clock.now())
                .micros()
                .saturating_add(u64::try_from(every.as_micros()).unwrap_or(u64::MAX))
        });
        let dispatcher = Dispatcher {
            levels: LiveLevels::new(config.effective_levels()),
            capture: config.capture,
            span_context: config.span_context,
            console,
            console_level: config.effective_console_level(),
            files: general,
            route_names: config.routes.iter().map(|route| route.name.clone()).collect(),
            file_counters,
            audit,
            clock: config.clock,
            system_clock: config.system_clock,
            counters: Counters::default(),
            latency: LatencyHistogram::default(),
            watch,
            #[cfg(feature = "metrics")]
            metrics: super::metrics::Publisher::new(config.metrics_interval.unwrap_or(Duration::MAX)),
            #[cfg(feature = "metrics")]
            metrics_interval: config.metrics_interval,
            closed: AtomicBool::new(false),
            log_dir: config.log_dir,
            maintenance,
            shutdown_timeout: config.shutdown_timeout,
            health_interval: config.health_interval,
            health_emf: config.health_emf,
            next_health: AtomicU64::new(first_health),
            forwarders,
            lock: Mutex::new(Some(lock)),
            audit_thread: OnceLock::new(),
        };
        if let Some(torn) = torn_tail {
            dispatcher.record_restart(&torn);
        }
        if let Some(gap) = gap {
            dispatcher.record_gap(gap);
        }
        Ok(dispatcher)
    }

    /// Accounts, in the audit trail itself, for the torn lines an unclean end left at the end of
    /// the audit file: an `audit_restart` record (also a warning in the general sinks).
    fn record_restart(&self, torn: &TornRun) {
        diag!(
            "chimera-log: {} ends with {} torn line(s) ({} bytes) from an unclean end; an {} record accounts for them",
            self.log_dir.join(AUDIT_FILE).display(),
            torn.lines,
            torn.bytes,
            crate::audit::RESTART_EVENT
        );
        self.record_audit_restart(|context| {
            context.field("reason", "unclean_end");
            context.field("torn_lines", &torn.lines);
            context.field("torn_bytes", &torn.bytes);
            context.field("torn_sha256", &crate::audit::hex(&torn.sha256()));
        });
    }

    /// Accounts, in the audit trail itself, for records known to exist past the newest one the
    /// audit files give back: an `audit_restart` record whose seq follows them (also a warning
    /// in the general sinks).
    fn record_gap(&self, gap: Gap) {
        diag!(
            "chimera-log: the newest record {} gives back is seq {}, but {} holds seq {}: the audit chain \
             continues after it, and an {} record says so (records {}..={} are not in the files)",
            self.log_dir.join(AUDIT_FILE).display(),
            gap.last_readable,
            gap.source,
            gap.resumed_after,
            crate::audit::RESTART_EVENT,
            gap.last_readable + 1,
            gap.resumed_after
        );
        self.record_audit_restart(|context| {
            context.field("reason", "records_unreadable");
            context.field("last_readable_seq", &gap.last_readable);
            context.field("resumed_after_seq", &gap.resumed_after);
            context.field("unreadable_records", &(gap.resumed_after - gap.last_readable));
            context.field("known_from", gap.source);
        });
    }

    /// An `audit_restart` record with the context `fill` writes, sealed into the audit trail
    /// and written as a warning to the general sinks (whatever the level of the audit file).
    fn record_audit_restart(&self, fill: impl FnOnce(&mut crate::json::ContextWriter<'_>)) {
        let mut line = Vec::with_capacity(256);
        let envelope = crate::json::Envelope {
            time: self.now(),
            level: Level::Warning,
            module_json: "\"chimera_log\"",
            event: crate::audit::RESTART_EVENT.into(),
            exception: None,
            audit_key: None,
            trace: None,
        };
        crate::json::encode_line(&mut line, envelope, |buf| {
            let mut context = crate::json::ContextWriter::open(buf);
            fill(&mut context);
            context.finish();
        });
        let general = self.levels.level_for("chimera_log").1.allows(Level::Warning);
        let destinations = Destinations {
            console: general && Level::Warning >= self.console_level,
            general,
            audit: true,
            route: None,
        };
        self.dispatch(Level::Warning, destinations, &line);
    }

    pub(crate) fn log_dir(&self) -> &std::path::Path {
        &self.log_dir
    }

    /// The levels of each module, replaceable while the instance runs (a logger caches its
    /// module's under their epoch, see `Logger`).
    pub(crate) fn levels(&self) -> &LiveLevels {
        &self.levels
    }

    /// The minimum level of `module` now.
    #[cfg(feature = "tracing")]
    pub(crate) fn level_for(&self, module: &str) -> Threshold {
        self.levels.level_for(module).1
    }

    /// The lowest threshold of any module now.
    #[cfg(feature = "tracing")]
    pub(crate) fn lowest_level(&self) -> Threshold {
        self.levels.lowest()
    }

    /// Whether captured `tracing`/`log` events are written through this instance.
    #[cfg(feature = "tracing")]
    pub(crate) fn captures(&self) -> bool {
        self.capture
    }

    /// Whether a typed or ad-hoc line written inside a span carries the span stack.
    #[cfg(feature = "tracing")]
    #[inline]
    pub(crate) fn span_context(&self) -> bool {
        self.span_context
    }

    /// The time for a line's timestamp.
    #[inline]
    pub(crate) fn now(&self) -> UnixTime {
        if self.system_clock {
            crate::fast_clock::now()
        } else {
            self.clock.now().into()
        }
    }

    /// Whether an event of this level and type, from a module whose minimum level is
    /// `module_level`, goes anywhere; `None` means it need not be encoded.
    ///
    /// Inlined: `routes` is a constant of the event's type, so a general event's route lookup
    /// folds away, and the answer stays in registers (returned through memory, written a byte
    /// at a time and read back whole, it stalled the caller until the stores reached the cache).
    #[inline]
    pub(crate) fn destinations(&self, level: Level, routes: Routes, module_level: Threshold) -> Option<Destinations> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.closed.load(Ordering::Acquire) {
            self.counters.emitted_after_shutdown.fetch_add(1, Relaxed);
            return None;
        }
        let route = routes.route().and_then(|name| {
            let index = self.route_names.iter().position(|route| route == name);
            if index.is_none() {
                self.counters.unconfigured_route.fetch_add(1, Relaxed);
            }
            index
        });
        let general = module_level.allows(level);
        let console = general && level >= self.console_level;
        let destinations = Destinations { console, general, audit: routes.is_audit(), route };
        (destinations.general || destinations.audit || destinations.route.is_some()).then_some(destinations)
    }

    /// Gives `line` to every sink in `destinations`.
    pub(crate) fn dispatch(&self, level: Level, destinations: Destinations, line: &[u8]) {
        // A record this thread handed to the audit thread (`emit_async!`) and not yet written
        // goes first: this one follows it there, so one thread's records stay in the order it
        // emitted them. Decided before the event is counted (a test waits for the count).
        // Only an audit line can be behind one: a general line reads nothing more.
        let behind_async = match destinations.audit.then(|| self.audit_thread.get()).flatten() {
            Some(Some(worker)) if worker.pending_from_this_thread() => Some(worker),
            _ => None,
        };
        // Counted first, taken back if shutdown refuses the line: an atomic add waits for the
        // stores before it, and after the line's copy into the queue (memory the writer last
        // touched, on another core) that wait was the costliest part of an emit on 4 threads.
        self.counters.count_event(level);
        let mut refusals =
            self.push_general(Entry::line(line), destinations.console, destinations.general, destinations.route);
        if destinations.audit {
            if let Some(worker) = behind_async {
                // Stopping (shutdown): written here instead, and refused as closed.
                if let Ok(emitted) = worker.push(AsyncAudit { line: line.to_vec(), level, destinations, refusals }) {
                    return emitted.wait();
                }
            }
            match self.audit.write(line, self.clock.now()) {
                Ok(None) => {}
                Ok(Some(checkpoint)) => self.record_checkpoint(checkpoint),
                Err(()) => refusals.audit = true,
            }
        }
        if refusals.any() {
            self.count_refusals(level, destinations, refusals);
        }
    }

    /// [`dispatch`](Self::dispatch) for a typed event's record (`deferred`): general sinks only,
    /// encoded by their writers.
    pub(crate) fn dispatch_record(&self, level: Level, destinations: Destinations, record: &[u8]) {
        debug_assert!(!destinations.audit, "audit events are encoded on the caller's thread");
        self.counters.count_event(level);
        let refusals =
            self.push_general(Entry::record(record), destinations.console, destinations.general, destinations.route);
        if refusals.any() {
            self.count_refusals(level, destinations, refusals);
        }
    }

    /// [`dispatch_record`](Self::dispatch_record) for a record of `len` bytes that `write`
    /// writes straight into the queue (see `BatchQueue::push_record_with`), when the event goes
    /// to one file lane only; otherwise `write` is handed back unused, for a buffer.
    #[inline]
    pub(crate) fn dispatch_record_with<F: FnOnce(&mut Vec<u8>)>(
        &self,
        level: Level,
        destinations: Destinations,
        len: usize,
        write: F,
    ) -> Result<(), F> {
        debug_assert!(!destinations.audit, "audit events are encoded on the caller's thread");
        let lanes = LaneSet(u64::from(destinations.general) | destinations.route.map_or(0, |route| 2 << route));
        if (destinations.console && self.console.is_some()) || !lanes.0.is_power_of_two() {
            return Err(write);
        }
        use std::sync::atomic::Ordering::Relaxed;
        let lane = lanes.0.trailing_zeros() as usize;
        // An accepted record is counted in the caller's shard, under the lock it takes anyway
        // (an atomic add costs as much as the rest of the capture); see `stats`.
        match self.files.queue().push_record_with(lane, level.index(), len, write) {
            Pushed::Accepted => {}
            Pushed::Dropped => {
                self.counters.count_event(level);
                self.file_counters[lane].1.dropped.fetch_add(1, Relaxed);
            }
            Pushed::Closed => {
                self.counters.emitted_after_shutdown.fetch_add(1, Relaxed);
            }
        }
        Ok(())
    }

    /// [`dispatch`](Self::dispatch) for `emit_async!`: the general sinks' part on the caller's
    /// thread as ever; an audit line goes to the audit thread, and the future resolves once it is
    /// written (and synced, by default). Without an audit line it is resolved already.
    pub(crate) fn dispatch_async(self: &Arc<Self>, level: Level, destinations: Destinations, line: &[u8]) -> Emitted {
        if destinations.audit {
            if let Some(worker) = self.audit_thread() {
                self.counters.count_event(level);
                let refusals = self.push_general(
                    Entry::line(line),
                    destinations.console,
                    destinations.general,
                    destinations.route,
                );
                match worker.push(AsyncAudit { line: line.to_vec(), level, destinations, refusals }) {
                    Ok(emitted) => return emitted,
                    Err(job) => {
                        // Stopping (shutdown): refused as a closed sink would.
                        let refusals = Refusals { audit: true, ..job.refusals };
                        self.count_refusals(level, destinations, refusals);
                        return Emitted::ready();
                    }
                }
            }
        }
        self.dispatch(level, destinations, line);
        Emitted::ready()
    }

    /// The audit thread, started on first use; `None` if it cannot be started (said once).
    fn audit_thread(self: &Arc<Self>) -> Option<&Arc<AsyncWorker<AsyncAudit>>> {
        self.audit_thread
            .get_or_init(|| {
                if self.closed.load(Ordering::Acquire) {
                    return None;
                }
                // A key no other worker of this process has (workers outlive a logger's levels).
                static NEXT_WORKER: AtomicU64 = AtomicU64::new(1);
                let key = NEXT_WORKER.fetch_add(1, Ordering::Relaxed);
                let instance = Arc::downgrade(self);
                match AsyncWorker::start("chimera-log-audit", key, move |jobs| write_audit_batch(&instance, jobs)) {
                    Ok(worker) => Some(worker),
                    Err(error) => {
                        diag!(
                            "chimera-log: cannot start the audit thread of emit_async! ({error}); its audit \
                             records are written on the caller's thread, as emit! does"
                        );
                        None
                    }
                }
            })
            .as_ref()
    }

    /// Counts a line some sinks refused because they were closed: shutdown raced with the
    /// emit, or a writer thread died (a bug; see `writer.rs`). An event no sink took was not
    /// emitted after all (`emitted_after_shutdown`); one that some sink took (queued, written,
    /// or dropped for want of room) was, and the sinks that refused it count it as dropped, so
    /// that no count claims a line its sink lacks.
    #[cold]
    fn count_refusals(&self, level: Level, destinations: Destinations, refusals: Refusals) {
        use std::sync::atomic::Ordering::Relaxed;
        let console = destinations.console && self.console.is_some();
        let files = destinations.general || destinations.route.is_some();
        let taken = (console && !refusals.console)
            || (files && refusals.files.is_empty())
            || (destinations.audit && !refusals.audit);
        if !taken {
            self.counters.uncount_event(level);
            self.counters.emitted_after_shutdown.fetch_add(1, Relaxed);
            return;
        }
        if let (true, Some((_, counters))) = (refusals.console, &self.console) {
            counters.dropped.fetch_add(1, Relaxed);
        }
        for lane in refusals.files.lanes() {
            self.file_counters[lane].1.dropped.fetch_add(1, Relaxed);
        }
        if refusals.audit {
            self.audit.counters.dropped.fetch_add(1, Relaxed);
        }
    }

    /// Queues `line` for the console (`console`), CloudWatch and `chimera.log` (`general`) and
    /// the route file `route`.
    fn push_general(&self, line: Entry<'_>, console: bool, general: bool, route: Option<usize>) -> Refusals {
        use std::sync::atomic::Ordering::Relaxed;
        let mut refusals = Refusals::default();
        if console {
            if let Some((console, counters)) = &self.console {
                match console.queue().push_entry(LaneSet(1), line) {
                    Pushed::Accepted => {}
                    Pushed::Dropped => {
                        counters.dropped.fetch_add(1, Relaxed);
                    }
                    Pushed::Closed => refusals.console = true,
                }
            }
        }
        let lanes = LaneSet(u64::from(general) | route.map_or(0, |route| 2 << route));
        if !lanes.is_empty() {
            match self.files.queue().push_entry(lanes, line) {
                Pushed::Accepted => {}
                Pushed::Dropped => {
                    for lane in lanes.lanes() {
                        self.file_counters[lane].1.dropped.fetch_add(1, Relaxed);
                    }
                }
                Pushed::Closed => refusals.files = lanes,
            }
        }
        refusals
    }

    /// Records the audit chain's head outside the audit file: an `audit_checkpoint` event in
    /// the general sinks (and so in CloudWatch), whatever the level.
    fn record_checkpoint(&self, checkpoint: Checkpoint) {
        let mut line = Vec::with_capacity(256);
        let envelope = crate::json::Envelope {
            time: self.now(),
            level: Level::Info,
            module_json: "\"chimera_log\"",
            event: "audit_checkpoint".into(),
            exception: None,
            audit_key: None,
            trace: None,
        };
        crate::json::encode_line(&mut line, envelope, |buf| {
            let mut context = crate::json::ContextWriter::open(buf);
            context.field("file", AUDIT_FILE);
            context.field("seq", &checkpoint.head.seq);
            context.field("chain", &crate::audit::hex(&checkpoint.head.chain));
            context.field("reason", if checkpoint.rotated { "rotation" } else { "interval" });
            context.finish();
        });
        self.push_general(Entry::line(&line), Level::Info >= self.console_level, true, None);
    }

    pub(crate) fn record_latency(&self, elapsed: Duration) {
        self.latency.record(elapsed);
    }

    /// Waits until every line accepted before the call is written, up to `deadline`.
    pub(crate) fn flush_until(&self, deadline: Instant) -> bool {
        let audit = self.audit.flush(deadline);
        let files = self.files.flush(deadline);
        let console = self.console.as_ref().is_none_or(|(console, _)| console.flush(deadline));
        // Forwarders read the files: only once these are written.
        audit && files && console && self.forwarders.iter().all(|forwarder| forwarder.flush(deadline))
    }

    /// Waits, up to the shutdown timeout, until every writer thread has handed the lines accepted
    /// before the call to its sinks, without making them send what they hold back.
    pub(crate) fn wait_processed(&self) -> bool {
        let deadline = deadline_after(self.shutdown_timeout);
        let files = self.files.wait_processed(deadline);
        let console = self.console.as_ref().is_none_or(|(console, _)| console.wait_processed(deadline));
        // What the files writer has taken is in the files, for the forwarders, once flushed.
        let forwarders = self.forwarders.is_empty()
            || (self.files.flush(deadline)
                && self.forwarders.iter().all(|forwarder| forwarder.wait_processed(deadline)));
        files && console && forwarders
    }

    /// Waits, up to the shutdown timeout, until the lines accepted before the call are in the
    /// files (not necessarily shipped).
    pub(crate) fn flush_files(&self) -> bool {
        let deadline = deadline_after(self.shutdown_timeout);
        let audit = self.audit.flush(deadline);
        self.files.flush(deadline) && audit
    }

    /// Flushes, bounded by the shutdown timeout; then publishes the figures (feature `metrics`).
    pub(crate) fn flush(&self) -> bool {
        let flushed = self.flush_until(deadline_after(self.shutdown_timeout));
        #[cfg(feature = "metrics")]
        self.publish_metrics();
        flushed
    }

    /// Starts publishing the figures through the `metrics` facade every interval (feature
    /// `metrics`; nothing without it). Called once the instance is shared.
    pub(crate) fn start_publishing(self: &Arc<Self>) {
        #[cfg(feature = "metrics")]
        if self.metrics_interval.is_some() {
            // Weakly: the thread never keeps the instance alive.
            let dispatcher = Arc::downgrade(self);
            self.metrics.start(move || dispatcher.upgrade().map(|d| d.publish_metrics()).is_some());
        }
    }

    /// Publishes the figures through the `metrics` facade now.
    #[cfg(feature = "metrics")]
    pub(crate) fn publish_metrics(&self) {
        self.metrics.publish(&self.stats(), &self.watch.latency, &self.latency, &self.log_dir);
    }

    /// Stops accepting events, writes out everything accepted, stops the threads; all within
    /// the shutdown timeout. Later events are counted, not written.
    pub(crate) fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        #[cfg(feature = "metrics")]
        self.metrics.stop();
        let deadline = deadline_after(self.shutdown_timeout);
        let files = self.files.shutdown(deadline);
        let mut complete = files;
        if let Some((console, _)) = &self.console {
            complete &= console.shutdown(deadline);
        }
        // After the files: they send what the files hold, bounded by the time left.
        for forwarder in &self.forwarders {
            complete &= forwarder.shutdown(deadline);
        }
        // Records handed to the audit thread before the close are written first.
        if let Some(Some(worker)) = self.audit_thread.get() {
            complete &= worker.shutdown(deadline);
        }
        let audit = self.audit.close(deadline);
        complete &= audit;
        complete &= self.maintenance.shutdown(deadline.saturating_duration_since(Instant::now()));
        // The instance's share of the directory's lock. The threads that write there hold their
        // own until they end, and an audit write that `close` gave up on keeps this one until
        // it has landed: otherwise a logger started meanwhile would continue the chain from the
        // file, and the record sealed before the stall would fork it.
        let lock = self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let (false, Some(lock)) = (audit, lock) {
            self.audit.keep_until_written(lock);
        }
        // The final figures, with everything written.
        #[cfg(feature = "metrics")]
        self.publish_metrics();
        if !complete {
            diag!(
                "chimera-log: shutdown did not finish within {:?}; unwritten lines may be lost, and \
                 unfinished compressions are completed at the next start; a write still in progress \
                 keeps the log directory locked until it ends",
                self.shutdown_timeout
            );
        }
    }

    /// Whether the `log_health` line's context is an EMF document.
    pub(crate) fn health_emf(&self) -> bool {
        self.health_emf
    }

    /// Whether a `log_health` event is due at `now`; `true` for exactly one caller per interval.
    #[inline]
    pub(crate) fn health_due(&self, now: UnixTime) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(every) = self.health_interval else {
            return false;
        };
        let now = now.micros();
        let due = self.next_health.load(Relaxed);
        now >= due && self.take_health_turn(now, due, every)
    }

    /// Whether this caller is the one to write the `log_health` event due at `due`.
    #[cold]
    fn take_health_turn(&self, now: u64, due: u64, every: Duration) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let next = now.saturating_add(u64::try_from(every.as_micros()).unwrap_or(u64::MAX));
        self.next_health.compare_exchange(due, next, Relaxed, Relaxed).is_ok()
    }

    pub(crate) fn stats(&self) -> Stats {
        let mut sinks = Vec::new();
        if let Some((_, counters)) = &self.console {
            sinks.push(counters.snapshot("console"));
        }
        sinks.push(self.file_counters[0].1.snapshot(GENERAL_FILE));
        sinks.push(self.audit.counters.snapshot(AUDIT_FILE));
        sinks.extend(self.file_counters[1..].iter().map(|(file, counters)| counters.snapshot(file)));
        let mut stats = self.counters.snapshot(sinks, &self.maintenance.counters);
        // Records written in place are counted in the queue's shards (`dispatch_record_with`).
        for (count, taken) in stats.events_by_level.iter_mut().zip(self.files.queue().tallies()) {
            *count = count.wrapping_add(taken);
        }
        let audit_seq = self.audit.head_seq();
        for forwarder in &self.forwarders {
            forwarder.report(&mut stats, audit_seq);
        }
        let written = self.file_counters[0].1.lines.load(Ordering::Relaxed);
        if let Some(cloudwatch) = &mut stats.cloudwatch {
            let settled = cloudwatch.events_sent
                + cloudwatch.events_rejected
                + cloudwatch.events_dropped
                + cloudwatch.events_below_level;
            cloudwatch.lag_lines = written.saturating_sub(settled);
        }
        stats.audit_syncs = self.audit.syncs();
        stats.queue_high_water_bytes =
            self.files.queue().high_water().max(self.console.as_ref().map_or(0, |(c, _)| c.queue().high_water()))
                as u64;
        let ([median, p99, p999], samples) = self.latency.quantiles([0.5, 0.99, 0.999]);
        stats.emit_latency = LatencyStats { median, p99, p999, samples };
        stats.queue_bytes =
            (self.files.queue().held() + self.console.as_ref().map_or(0, |(c, _)| c.queue().held())) as u64;
        let watch = &*self.watch;
        let nanos = |figure: &AtomicU64| Duration::from_nanos(figure.load(Ordering::Relaxed));
        stats.write_latency = WriteLatencyStats {
            median: nanos(&watch.window_median_ns),
            p99: nanos(&watch.window_p99_ns),
            max: nanos(&watch.window_max_ns),
            samples: watch.window_samples.load(Ordering::Relaxed),
        };
        stats.disk_free_bytes = Some(watch.disk_free.load(Ordering::Relaxed)).filter(|&free| free != u64::MAX);
        stats.slow_write_warnings = watch.slow_warnings.load(Ordering::Relaxed);
        stats.disk_low_warnings = watch.disk_low_warnings.load(Ordering::Relaxed);
        stats
    }
}

/// The audit thread's work: the batch's records sealed and written in the order handed in, as
/// `dispatch` writes one, then made durable with one sync (group commit with the callers of
/// `emit!` too). With the instance gone there is nowhere to write.
fn write_audit_batch(instance: &Weak<Dispatcher>, jobs: Vec<AsyncAudit>) {
    let Some(dispatcher) = instance.upgrade() else { return };
    let mut last_written = None;
    for job in jobs {
        let mut refusals = job.refusals;
        match dispatcher.audit.write_unsynced(&job.line, dispatcher.clock.now()) {
            Ok((written, checkpoint)) => {
                last_written = Some(written);
                if let Some(checkpoint) = checkpoint {
                    dispatcher.record_checkpoint(checkpoint);
                }
            }
            Err(()) => refusals.audit = true,
        }
        if refusals.any() {
            dispatcher.count_refusals(job.level, job.destinations, refusals);
        }
    }
    if let Some(written) = last_written {
        dispatcher.audit.make_durable(written);
    }
}
