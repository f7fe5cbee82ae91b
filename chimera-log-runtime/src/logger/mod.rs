//! Loggers and the process-wide logging instance: [`init_logging`], [`get_logger`], [`Logger`],
//! [`LogGuard`].
//!
//! This module owns the life cycle (start, install, shutdown) and the per-emit path from an event
//! to encoded bytes handed to the dispatcher. It does not decide routing (`pipeline`) or the line
//! format (`json`).
//!
//! Defined behaviours at the edges:
//! - Before [`init_logging`] (or after its guard is dropped), a logger from [`get_logger`] has no
//!   sinks: events at WARNING or above, and audit events at any level, are written as JSON lines
//!   to stderr (Python's "last resort" handler does the same); the rest are discarded. Every such
//!   event is counted in [`events_without_logger`].
//! - Calling [`init_logging`] while an earlier guard is alive returns
//!   [`Error::AlreadyInitialized`]; after that guard is dropped it may be called again.
//! - A logger obtained from [`LogGuard::logger`] stays bound to that guard's sinks; once the guard
//!   is dropped its events are not written and are counted in `Stats::emitted_after_shutdown`.

use std::borrow::Borrow;
use std::cell::{Cell, RefCell};
use std::error::Error as StdError;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::config::LogConfig;
use crate::error::Error;
use crate::event::{Level, LogEvent, Routes};
use crate::json::{self, ContextWriter, Envelope, Exception};
use crate::pipeline::Dispatcher;
use crate::stats::Stats;

static GLOBAL: RwLock<Option<Arc<Dispatcher>>> = RwLock::new(None);
/// Bumped whenever `GLOBAL` changes, so threads know when their cached copy is stale.
static GENERATION: AtomicU64 = AtomicU64::new(1);
static EVENTS_WITHOUT_LOGGER: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's copy of the process-wide instance and the generation it was read at: the
    /// common path reads one shared atomic and touches no shared reference count.
    static CACHED: Cell<(u64, Option<Arc<Dispatcher>>)> = const { Cell::new((0, None)) };
}

/// Runs `f` with the process-wide instance, if any.
fn with_global<R>(f: impl FnOnce(Option<&Arc<Dispatcher>>) -> R) -> R {
    let generation = GENERATION.load(Acquire);
    // Take the cached copy out of the thread-local for the duration of `f`: an event logged
    // from inside `f` (a `Serialize` impl that logs) finds the slot empty and reads the global.
    let cached = CACHED.try_with(|slot| slot.take()).ok();
    let dispatcher = match cached {
        Some((seen, dispatcher)) if seen == generation => dispatcher,
        _ => GLOBAL.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone(),
    };
    let result = f(dispatcher.as_ref());
    let _ = CACHED.try_with(|slot| slot.set((generation, dispatcher)));
    result
}

fn set_global(dispatcher: Option<Arc<Dispatcher>>) {
    let mut global = GLOBAL.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    *global = dispatcher;
    GENERATION.fetch_add(1, Release);
}

/// Starts logging as configured and installs it as the process-wide logger used by
/// [`get_logger`]. Keep the returned guard alive: dropping it flushes every sink and closes them.
///
/// Unless turned off with [`LogConfig::panic_hook`], a panic hook is installed (once per process,
/// chaining the previous hook) that logs a CRITICAL `panic` event through the process-wide
/// instance and flushes before the previous hook runs.
///
/// Errors: a setting that cannot be used (named in the error), a log directory that cannot be
/// created or a file that cannot be opened (path and OS reason), or logging already initialized.
pub fn init_logging(config: LogConfig) -> Result<LogGuard, Error> {
    let panic_hook = config.panic_hook;
    {
        let global = GLOBAL.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        if global.is_some() {
            return Err(Error::AlreadyInitialized);
        }
    }
    let dispatcher = Arc::new(Dispatcher::start(config)?);
    {
        let mut global = GLOBAL.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if global.is_some() {
            drop(global);
            dispatcher.close();
            return Err(Error::AlreadyInitialized);
        }
        *global = Some(Arc::clone(&dispatcher));
        GENERATION.fetch_add(1, Release);
    }
    if panic_hook {
        install_panic_hook();
    }
    Ok(LogGuard { dispatcher, installed: true })
}

/// A logger for `module`, writing through the process-wide logging instance.
///
/// Cheap (one allocation for the name), and may be called before [`init_logging`]: the logger
/// looks up the instance at each event.
pub fn get_logger(module: &str) -> Logger {
    Logger::new(module, None)
}

/// Events emitted while no logging instance was installed (see the module docs).
pub fn events_without_logger() -> u64 {
    EVENTS_WITHOUT_LOGGER.load(Relaxed)
}

impl LogConfig {
    /// Starts logging as configured without installing it process-wide: loggers come from
    /// [`LogGuard::logger`]. Useful for tests and for libraries that keep their own logs. No
    /// panic hook is installed for such an instance.
    pub fn build(self) -> Result<LogGuard, Error> {
        Ok(LogGuard { dispatcher: Arc::new(Dispatcher::start(self)?), installed: false })
    }
}

/// Keeps a logging instance running; dropping it flushes every sink and closes them.
#[must_use = "dropping the guard closes the logs at once; bind it: `let _guard = init_logging(..)?;`"]
pub struct LogGuard {
    dispatcher: Arc<Dispatcher>,
    installed: bool,
}

impl fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogGuard")
            .field("log_dir", &self.dispatcher.log_dir())
            .field("installed", &self.installed)
            .finish()
    }
}

impl LogGuard {
    /// A logger for `module` bound to this instance.
    pub fn logger(&self, module: &str) -> Logger {
        Logger::new(module, Some(Arc::clone(&self.dispatcher)))
    }

    /// Returns when every event emitted before the call is written (`true`), or after the
    /// shutdown timeout (`false`: a sink is stuck, or CloudWatch is unreachable and the lines
    /// wait in `chimera.log`).
    #[must_use = "false means some lines were not yet written when the timeout passed"]
    pub fn flush(&self) -> bool {
        self.dispatcher.flush()
    }

    /// The instance's counters.
    pub fn stats(&self) -> Stats {
        self.dispatcher.stats()
    }

    /// Waits until every event emitted before the call is in the files, without waiting for
    /// CloudWatch to ship it. For tests that kill the process while lines are being shipped.
    #[doc(hidden)]
    pub fn flush_files(&self) -> bool {
        self.dispatcher.flush_files()
    }

    /// Waits until every writer thread has handed the events emitted before the call to its
    /// sinks, *without* a flush: a CloudWatch batch that is not due stays unsent. For tests that
    /// assert what has not happened yet; `false` after the shutdown timeout.
    #[doc(hidden)]
    pub fn wait_processed(&self) -> bool {
        self.dispatcher.wait_processed()
    }

    /// The directory the files are written to.
    pub fn log_dir(&self) -> &Path {
        self.dispatcher.log_dir()
    }
}

impl Drop for LogGuard {
    /// Stops accepting events, writes out everything accepted and joins the writer threads,
    /// within the configured `shutdown_timeout`.
    fn drop(&mut self) {
        if self.installed {
            let installed_here = GLOBAL
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .as_ref()
                .is_some_and(|current| Arc::ptr_eq(current, &self.dispatcher));
            if installed_here {
                set_global(None);
            }
        }
        self.dispatcher.close();
    }
}

/// A named logger: the `module` of every line it writes.
///
/// `Clone + Send + Sync`; cloning is one reference-count increment.
#[derive(Clone)]
pub struct Logger {
    inner: Arc<LoggerInner>,
}

struct LoggerInner {
    module: Box<str>,
    /// The module name quoted and escaped once, copied into every line.
    module_json: Box<str>,
    /// `None`: the process-wide instance, looked up at each event.
    bound: Option<Arc<Dispatcher>>,
}

impl fmt::Debug for Logger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logger").field("module", &self.module()).field("bound", &self.inner.bound.is_some()).finish()
    }
}

impl Logger {
    fn new(module: &str, bound: Option<Arc<Dispatcher>>) -> Self {
        let mut module_json = Vec::with_capacity(module.len() + 2);
        json::quoted_into(&mut module_json, module);
        let module_json = String::from_utf8(module_json).expect("escaping a str yields UTF-8");
        Logger { inner: Arc::new(LoggerInner { module: module.into(), module_json: module_json.into(), bound }) }
    }

    /// The module name written in every line.
    pub fn module(&self) -> &str {
        &self.inner.module
    }

    /// Runs `f` with this logger's instance, if it has one.
    fn with_dispatcher<R>(&self, f: impl FnOnce(Option<&Arc<Dispatcher>>) -> R) -> R {
        match &self.inner.bound {
            Some(dispatcher) => f(Some(dispatcher)),
            None => with_global(f),
        }
    }

    /// Encodes and writes one event; `write_context` writes the context object.
    fn log_line(
        &self,
        level: Level,
        routes: Routes,
        event: &str,
        exception: Option<Exception<'_>>,
        write_context: impl FnOnce(&mut Vec<u8>),
    ) {
        self.with_dispatcher(|dispatcher| match dispatcher {
            Some(dispatcher) => {
                let Some(destinations) = dispatcher.destinations(level, routes) else {
                    return;
                };
                let started = crate::pipeline::sample_this_emit().then(Instant::now);
                let time = dispatcher.now();
                let envelope = Envelope { time, level, module_json: &self.inner.module_json, event, exception };
                with_line_buffer(|buf| {
                    json::encode_line(buf, envelope, write_context);
                    dispatcher.dispatch(level, destinations, buf);
                });
                if let Some(started) = started {
                    dispatcher.record_latency(started.elapsed());
                }
                if dispatcher.health_due(time) {
                    emit_health(dispatcher);
                }
            }
            None => {
                EVENTS_WITHOUT_LOGGER.fetch_add(1, Relaxed);
                if level < Level::Warning && !routes.is_audit() {
                    return;
                }
                let envelope =
                    Envelope { time: SystemTime::now(), level, module_json: &self.inner.module_json, event, exception };
                with_line_buffer(|buf| {
                    json::encode_line(buf, envelope, write_context);
                    let _ = std::io::stderr().lock().write_all(buf);
                });
            }
        });
    }

    pub(crate) fn emit_event<E: LogEvent + ?Sized>(&self, event: &E, exception: Option<Exception<'_>>) {
        self.log_line(E::LEVEL, E::ROUTES, E::NAME, exception, |buf| {
            let mut writer = ContextWriter::open(buf);
            event.write_context(&mut writer);
            writer.finish();
        });
    }

    /// Logs an ad-hoc event (no type): `context` is any `Serialize` value, normally an object such
    /// as `json!({...})`; anything else is wrapped as `{"value": ...}`. Ad-hoc events go to the
    /// general sinks only, never to the audit file or a route.
    pub fn log<C: Serialize + ?Sized>(&self, level: Level, event: &str, context: &C) {
        self.log_line(level, Routes::GENERAL, event, None, |buf| json::write_adhoc_context(buf, context));
    }

    /// Like [`log`](Self::log), with an error written as the line's `exception` (Python's
    /// `exc_info=True`): its type, message and `source()` chain.
    pub fn log_with_error<C, X>(&self, level: Level, event: &str, context: &C, error: &X)
    where
        C: Serialize + ?Sized,
        X: AsDynError + ?Sized,
    {
        let exception = Exception { type_name: std::any::type_name::<X>(), error: error.as_dyn_error() };
        self.log_line(level, Routes::GENERAL, event, Some(exception), |buf| json::write_adhoc_context(buf, context));
    }

    /// An ad-hoc DEBUG event.
    pub fn debug<C: Serialize>(&self, event: &str, context: C) {
        self.log(Level::Debug, event, &context);
    }

    /// An ad-hoc INFO event.
    pub fn info<C: Serialize>(&self, event: &str, context: C) {
        self.log(Level::Info, event, &context);
    }

    /// An ad-hoc WARNING event.
    pub fn warning<C: Serialize>(&self, event: &str, context: C) {
        self.log(Level::Warning, event, &context);
    }

    /// An ad-hoc ERROR event.
    pub fn error<C: Serialize>(&self, event: &str, context: C) {
        self.log(Level::Error, event, &context);
    }

    /// An ad-hoc CRITICAL event.
    pub fn critical<C: Serialize>(&self, event: &str, context: C) {
        self.log(Level::Critical, event, &context);
    }

    /// Whether an ad-hoc event at `level` would be written anywhere.
    pub fn enabled(&self, level: Level) -> bool {
        self.with_dispatcher(|dispatcher| match dispatcher {
            Some(dispatcher) => level >= dispatcher.min_level(),
            None => level >= Level::Warning,
        })
    }

    /// Returns when every event emitted before the call is written (`true`), or after the
    /// instance's shutdown timeout (`false`). Without an instance there is nothing to wait for.
    pub fn flush(&self) -> bool {
        self.with_dispatcher(|dispatcher| dispatcher.is_none_or(|dispatcher| dispatcher.flush()))
    }

    /// The counters of this logger's instance, if there is one.
    pub fn stats(&self) -> Option<Stats> {
        self.with_dispatcher(|dispatcher| dispatcher.map(|dispatcher| dispatcher.stats()))
    }
}

/// The line buffer of this thread, reused across events so encoding allocates nothing in steady
/// state. An event whose `Serialize` impl itself logs gets a fresh buffer instead of a panic.
fn with_line_buffer(f: impl FnOnce(&mut Vec<u8>)) {
    thread_local! {
        static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
    }
    let mut f = Some(f);
    let _ = LINE.try_with(|line| {
        if let Ok(mut buf) = line.try_borrow_mut() {
            buf.clear();
            if let Some(f) = f.take() {
                f(&mut buf);
            }
            // Keep one oversized event from pinning its memory for the life of the thread.
            if buf.capacity() > 64 * 1024 {
                *buf = Vec::with_capacity(1024);
            }
        }
    });
    // The thread's buffer is busy (an event logged while encoding another) or gone (thread exit).
    if let Some(f) = f {
        f(&mut Vec::with_capacity(1024));
    }
}

mod sealed {
    /// Keeps [`AsDynError`](super::AsDynError) implemented here only: its blanket impls cover
    /// every error, and a foreign impl could only conflict with them.
    pub trait Sealed {}
    impl<T: std::error::Error> Sealed for T {}
    impl Sealed for dyn std::error::Error + '_ {}
    impl Sealed for dyn std::error::Error + Send + '_ {}
    impl Sealed for dyn std::error::Error + Send + Sync + '_ {}
}

/// An error that can be attached to an event: any `std::error::Error`, or a `dyn Error` trait
/// object (plain, `+ Send`, or `+ Send + Sync`). Sealed: implemented for exactly those.
pub trait AsDynError: sealed::Sealed {
    /// The error as a trait object.
    fn as_dyn_error(&self) -> &(dyn StdError + '_);
}

impl<T: StdError> AsDynError for T {
    fn as_dyn_error(&self) -> &(dyn StdError + '_) {
        self
    }
}

impl AsDynError for dyn StdError + '_ {
    fn as_dyn_error(&self) -> &(dyn StdError + '_) {
        self
    }
}

impl AsDynError for dyn StdError + Send + '_ {
    fn as_dyn_error(&self) -> &(dyn StdError + '_) {
        self
    }
}

impl AsDynError for dyn StdError + Send + Sync + '_ {
    fn as_dyn_error(&self) -> &(dyn StdError + '_) {
        self
    }
}

/// What `emit!` expands to.
pub(crate) fn emit<L, E>(logger: &L, event: &E)
where
    L: Borrow<Logger> + ?Sized,
    E: LogEvent + ?Sized,
{
    logger.borrow().emit_event(event, None);
}

/// What `emit!(.., error = &e)` expands to.
pub(crate) fn emit_with_error<L, E, X>(logger: &L, event: &E, error: &X)
where
    L: Borrow<Logger> + ?Sized,
    E: LogEvent + ?Sized,
    X: AsDynError + ?Sized,
{
    let exception = Exception { type_name: std::any::type_name::<X>(), error: error.as_dyn_error() };
    logger.borrow().emit_event(event, Some(exception));
}

/// Installs, once per process, the hook that logs a panic as a CRITICAL `panic` event through
/// the process-wide instance, flushes, then runs the previous hook.
fn install_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            log_panic(info);
            previous(info);
        }));
    });
}

#[derive(Serialize)]
struct PanicContext<'a> {
    message: &'a str,
    location: Option<String>,
    thread: &'a str,
}

fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let message = match (info.payload().downcast_ref::<&str>(), info.payload().downcast_ref::<String>()) {
        (Some(message), _) => *message,
        (None, Some(message)) => message.as_str(),
        (None, None) => "(a panic payload that is not a string)",
    };
    let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
    let thread = std::thread::current();
    let context = PanicContext { message, location, thread: thread.name().unwrap_or("<unnamed>") };
    with_global(|dispatcher| {
        if let Some(dispatcher) = dispatcher {
            let logger = Logger::new("panic", Some(Arc::clone(dispatcher)));
            logger.log(Level::Critical, "panic", &context);
            dispatcher.flush();
        }
    });
}

/// The `log_health` event: the logger's own figures, emitted by the first event after each
/// `health_interval`.
fn emit_health(dispatcher: &Arc<Dispatcher>) {
    let stats = dispatcher.stats();
    let logger = Logger::new("chimera_log", Some(Arc::clone(dispatcher)));
    logger.info("log_health", &stats);
}
