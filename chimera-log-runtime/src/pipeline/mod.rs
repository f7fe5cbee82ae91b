//! The dispatcher: which sinks take a line, and handing the line to them.
//!
//! The dispatcher receives a line encoded once and gives the same bytes to every sink that takes
//! it. It does not encode and does not know the file format. Today each sink is written under
//! its own lock on the caller's thread; the non-blocking pipeline replaces `SinkSlot::write`
//! with a queue to a writer thread without changing the callers.

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::clock::Clock;
use crate::config::{LogConfig, AUDIT_FILE, GENERAL_FILE};
use crate::error::Error;
use crate::event::{Level, Routes};
use crate::sink::console::ConsoleSink;
use crate::sink::file::{FilePolicy, FileSink};
use crate::sink::maintenance::Maintenance;
use crate::sink::{FailureReporter, Sink};
use crate::stats::{Counters, SinkCounters, Stats};

/// One sink with its lock, its counters and its failure reporter.
#[derive(Debug)]
struct SinkSlot {
    name: String,
    sink: Mutex<Box<dyn Sink>>,
    counters: Arc<SinkCounters>,
    failures: FailureReporter,
}

impl SinkSlot {
    fn new(name: impl Into<String>, sink: Box<dyn Sink>, counters: Arc<SinkCounters>) -> Self {
        SinkSlot { name: name.into(), sink: Mutex::new(sink), counters, failures: FailureReporter::default() }
    }

    fn report(&self, error: &std::io::Error) {
        self.counters.write_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.failures.report(&format_args!("writing to {}", self.name), error);
    }

    fn lock(&self) -> MutexGuard<'_, Box<dyn Sink>> {
        // A panic while holding the lock can only come from a sink bug; the sink is still usable.
        self.sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self, line: &[u8], closed: &AtomicBool) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut sink = self.lock();
        match sink.write_line(line) {
            Ok(()) => {
                self.counters.lines.fetch_add(1, Relaxed);
                self.counters.bytes.fetch_add(line.len() as u64, Relaxed);
            }
            Err(error) => self.report(&error),
        }
        // A line that raced with shutdown must not wait in a buffer nobody will flush.
        if closed.load(Ordering::Acquire) {
            self.flush_locked(&mut sink);
        }
    }

    fn flush(&self) {
        let mut sink = self.lock();
        self.flush_locked(&mut sink);
    }

    fn flush_locked(&self, sink: &mut Box<dyn Sink>) {
        if let Err(error) = sink.flush() {
            self.report(&error);
        }
    }
}

/// The sinks a line goes to, decided from the event's level and type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Destinations {
    general: bool,
    audit: bool,
    route: Option<usize>,
}

/// A started logger: its sinks, its clock and its counters.
#[derive(Debug)]
pub(crate) struct Dispatcher {
    min_level: Level,
    console: Option<SinkSlot>,
    general: SinkSlot,
    audit: SinkSlot,
    routes: Vec<(String, SinkSlot)>,
    clock: Arc<dyn Clock>,
    counters: Counters,
    closed: AtomicBool,
    log_dir: std::path::PathBuf,
    maintenance: Maintenance,
    shutdown_timeout: std::time::Duration,
}

impl Dispatcher {
    /// Validates `config`, creates the log directory and opens every file.
    pub(crate) fn start(config: LogConfig) -> Result<Self, Error> {
        config.validate()?;
        fs::create_dir_all(&config.log_dir)
            .map_err(|source| Error::CreateDir { path: config.log_dir.clone(), source })?;
        let maintenance = Maintenance::start(config.log_dir.clone())
            .map_err(|source| Error::CreateDir { path: config.log_dir.clone(), source })?;
        let open = |file: &str, backups: usize, write_through: bool| {
            let policy = FilePolicy { max_bytes: config.max_bytes, backups, compress: config.compress, write_through };
            let counters = Arc::new(SinkCounters::default());
            FileSink::open(
                &config.log_dir,
                file,
                policy,
                Arc::clone(&config.clock),
                maintenance.sender(),
                Arc::clone(&counters),
                config.faults.clone(),
            )
            .map(|sink| SinkSlot::new(file, Box::new(sink), counters))
            .map_err(|source| Error::OpenFile { path: config.log_dir.join(file), source })
        };
        let general = open(GENERAL_FILE, config.general_backups, false)?;
        let audit = open(AUDIT_FILE, config.audit_backups, true)?;
        let routes = config
            .routes
            .iter()
            .map(|route| Ok((route.name.clone(), open(&route.file, config.general_backups, false)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        let console = config.console.then(|| {
            SinkSlot::new(
                "console",
                Box::new(ConsoleSink::new(config.console_target, config.console_format)),
                Arc::default(),
            )
        });
        Ok(Dispatcher {
            min_level: config.level,
            console,
            general,
            audit,
            routes,
            clock: config.clock,
            counters: Counters::default(),
            closed: AtomicBool::new(false),
            log_dir: config.log_dir,
            maintenance,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    pub(crate) fn log_dir(&self) -> &std::path::Path {
        &self.log_dir
    }

    pub(crate) fn min_level(&self) -> Level {
        self.min_level
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Whether an event of this level and type goes anywhere; `None` means it need not be encoded.
    pub(crate) fn destinations(&self, level: Level, routes: Routes) -> Option<Destinations> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.closed.load(Ordering::Acquire) {
            self.counters.emitted_after_shutdown.fetch_add(1, Relaxed);
            return None;
        }
        let route = routes.route().and_then(|name| {
            let index = self.routes.iter().position(|(route, _)| route == name);
            if index.is_none() {
                self.counters.unconfigured_route.fetch_add(1, Relaxed);
            }
            index
        });
        let destinations = Destinations { general: level >= self.min_level, audit: routes.is_audit(), route };
        (destinations.general || destinations.audit || destinations.route.is_some()).then_some(destinations)
    }

    /// Gives `line` to every sink in `destinations`.
    pub(crate) fn dispatch(&self, level: Level, destinations: Destinations, line: &[u8]) {
        self.counters.count_event(level);
        if destinations.general {
            if let Some(console) = &self.console {
                console.write(line, &self.closed);
            }
            self.general.write(line, &self.closed);
        }
        if destinations.audit {
            self.audit.write(line, &self.closed);
        }
        if let Some(index) = destinations.route {
            self.routes[index].1.write(line, &self.closed);
        }
    }

    fn slots(&self) -> impl Iterator<Item = &SinkSlot> {
        self.console.iter().chain([&self.general, &self.audit]).chain(self.routes.iter().map(|(_, slot)| slot))
    }

    /// Writes out everything buffered in every sink.
    pub(crate) fn flush(&self) {
        self.slots().for_each(SinkSlot::flush);
    }

    /// Stops accepting events, flushes every sink, and waits (bounded) for background work.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.flush();
        if !self.maintenance.shutdown(self.shutdown_timeout) {
            eprintln!(
                "chimera-log: backup compression still running after {:?}; left to finish, or to the next start",
                self.shutdown_timeout
            );
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        let sinks = self.slots().map(|slot| slot.counters.snapshot(&slot.name)).collect();
        self.counters.snapshot(sinks, &self.maintenance.counters)
    }
}
