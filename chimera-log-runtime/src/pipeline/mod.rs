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
use crate::sink::file::FileSink;
use crate::sink::{FailureReporter, Sink};
use crate::stats::{Counters, SinkCounters, Stats};

/// One sink with its lock, its counters and its failure reporter.
#[derive(Debug)]
struct SinkSlot {
    name: String,
    sink: Mutex<Box<dyn Sink>>,
    counters: SinkCounters,
    failures: FailureReporter,
}

impl SinkSlot {
    fn new(name: impl Into<String>, sink: Box<dyn Sink>) -> Self {
        SinkSlot {
            name: name.into(),
            sink: Mutex::new(sink),
            counters: SinkCounters::default(),
            failures: FailureReporter::default(),
        }
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
            Err(error) => {
                self.counters.write_errors.fetch_add(1, Relaxed);
                self.failures.report(&self.name, &error);
            }
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
            self.counters.write_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.failures.report(&self.name, &error);
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
}

impl Dispatcher {
    /// Validates `config`, creates the log directory and opens every file.
    pub(crate) fn start(config: LogConfig) -> Result<Self, Error> {
        config.validate()?;
        fs::create_dir_all(&config.log_dir)
            .map_err(|source| Error::CreateDir { path: config.log_dir.clone(), source })?;
        let open = |file: &str, write_through: bool| {
            let path = config.log_dir.join(file);
            FileSink::open(&path, write_through)
                .map(|sink| SinkSlot::new(file, Box::new(sink)))
                .map_err(|source| Error::OpenFile { path, source })
        };
        let general = open(GENERAL_FILE, false)?;
        let audit = open(AUDIT_FILE, true)?;
        let routes = config
            .routes
            .iter()
            .map(|route| Ok((route.name.clone(), open(&route.file, false)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        let console = config.console.then(|| {
            SinkSlot::new("console", Box::new(ConsoleSink::new(config.console_target, config.console_format)))
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

    /// Stops accepting events and flushes every sink.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.flush();
    }

    pub(crate) fn stats(&self) -> Stats {
        self.counters.snapshot(self.slots().map(|slot| slot.counters.snapshot(&slot.name)).collect())
    }
}
