//! `Logger`: a named handle that emits through the process-wide instance (or an instance of its own), and what happens to an event that finds none.

use std::cell::RefCell;
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::AsDynError;
use crate::deferred::{self, Capture, Replay};
use crate::event::{Level, LogEvent, Routes};
use crate::json::{self, ContextWriter, Envelope, EventName, Exception};
use crate::levels::Threshold;
use crate::stats::Stats;
use crate::write::completion::Emitted;
use crate::write::dispatch::{Destinations, Dispatcher};

/// Runs `f` with the process-wide instance, if any (for the `tracing` layer).
#[cfg(feature = "tracing")]
pub(crate) fn with_global_dispatcher<R>(f: impl FnOnce(Option<&Arc<Dispatcher>>) -> R) -> R {
    super::global::with_global(f)
}

/// Counts an event at `level` that found no logger (as [`events_without_logger`] counts).
#[cfg(feature = "tracing")]
pub(crate) fn count_without_logger(level: Level) {
    if level >= Level::Warning {
        super::global::EVENTS_WITHOUT_LOGGER.fetch_add(1, Relaxed);
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
    /// This module's minimum level, for the version of the levels it was computed from:
    /// `epoch << 8 | threshold` (0: not computed; see `LiveLevels`). Two `Relaxed` loads (this
    /// and the current epoch) and a compare on each event.
    level_cache: AtomicU64,
}

impl fmt::Debug for Logger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logger").field("module", &self.module()).field("bound", &self.inner.bound.is_some()).finish()
    }
}

impl Logger {
    pub(super) fn new(module: &str, bound: Option<Arc<Dispatcher>>) -> Self {
        let mut module_json = Vec::with_capacity(module.len() + 2);
        json::quoted_into(&mut module_json, module);
        let module_json = String::from_utf8(module_json).expect("escaping a str yields UTF-8");
        Logger {
            inner: Arc::new(LoggerInner {
                module: module.into(),
                module_json: module_json.into(),
                bound,
                level_cache: AtomicU64::new(0),
            }),
        }
    }

    /// This module's minimum level in `dispatcher`, computed once per instance and per version
    /// of its levels (`LogGuard::set_levels` makes a new one).
    #[inline]
    pub(super) fn module_level(&self, dispatcher: &Dispatcher) -> Threshold {
        let levels = dispatcher.levels();
        let cached = self.inner.level_cache.load(Relaxed);
        if cached >> 8 == levels.epoch() {
            return Threshold::from_bits(cached as u8);
        }
        let (epoch, threshold) = levels.level_for(&self.inner.module);
        self.inner.level_cache.store(epoch << 8 | u64::from(threshold.bits()), Relaxed);
        threshold
    }

    /// The module name written in every line.
    pub fn module(&self) -> &str {
        &self.inner.module
    }

    /// Runs `f` with this logger's instance, if it has one.
    pub(super) fn with_dispatcher<R>(&self, f: impl FnOnce(Option<&Arc<Dispatcher>>) -> R) -> R {
        match &self.inner.bound {
            Some(dispatcher) => f(Some(dispatcher)),
            None => super::global::with_global(f),
        }
    }

    /// Encodes and writes one event; `write_context` writes the context object.
    pub(super) fn log_line(
        &self,
        level: Level,
        routes: Routes,
        event: EventName<'_>,
        exception: Option<Exception<'_>>,
        write_context: impl FnOnce(&mut Vec<u8>),
    ) {
        self.log_line_through(level, routes, event, exception, write_context, |dispatcher, destinations, line| {
            dispatcher.dispatch(level, destinations, line);
        });
    }

    /// [`log_line`](Self::log_line) for `emit_async!`: the future resolves once the event is
    /// where `log_line` would have left it.
    pub(super) fn log_line_async(
        &self,
        level: Level,
        routes: Routes,
        event: EventName<'_>,
        exception: Option<Exception<'_>>,
        write_context: impl FnOnce(&mut Vec<u8>),
    ) -> Emitted {
        self.log_line_through(level, routes, event, exception, write_context, |dispatcher, destinations, line| {
            dispatcher.dispatch_async(level, destinations, line)
        })
        .unwrap_or_else(Emitted::ready)
    }

    /// Encodes one event and hands it to `send` with its destinations, or writes it to stderr
    /// when there is no instance (`None` then, and when no sink takes it).
    fn log_line_through<R>(
        &self,
        level: Level,
        routes: Routes,
        event: EventName<'_>,
        exception: Option<Exception<'_>>,
        write_context: impl FnOnce(&mut Vec<u8>),
        send: impl FnOnce(&Arc<Dispatcher>, Destinations, &[u8]) -> R,
    ) -> Option<R> {
        let envelope = |time| Envelope {
            time,
            level,
            module_json: &self.inner.module_json,
            event,
            exception,
            audit_key: routes.audit_key(),
            trace: None,
        };
        self.with_dispatcher(|dispatcher| match dispatcher {
            Some(dispatcher) => {
                let destinations = dispatcher.destinations(level, routes, self.module_level(dispatcher))?;
                let started = crate::write::dispatch::sample_this_emit().then(Instant::now);
                let time = dispatcher.now();
                let mut sent = None;
                with_line_buffer(|buf| {
                    #[cfg(feature = "tracing")]
                    if dispatcher.span_context() && crate::spans::in_span() {
                        if let Some(spans) = crate::spans::current_span_context() {
                            let envelope = Envelope { trace: spans.trace, ..envelope(time) };
                            json::encode_line(buf, envelope, |buf| {
                                let at = buf.len();
                                write_context(buf);
                                spans.add_stack(buf, at);
                            });
                            dispatcher.dispatch(level, destinations, buf);
                            return;
                        }
                    }
                    json::encode_line(buf, envelope(time), write_context);
                    sent = Some(send(dispatcher, destinations, buf));
                });
                after_emit(dispatcher, started, time);
                sent
            }
            None => {
                super::global::EVENTS_WITHOUT_LOGGER.fetch_add(1, Relaxed);
                if level < Level::Warning && !routes.is_audit() {
                    return None;
                }
                with_line_buffer(|buf| {
                    json::encode_line(buf, envelope(json::UnixTime::now()), write_context);
                    let _ = std::io::stderr().lock().write_all(buf);
                });
                None
            }
        })
    }

    pub(crate) fn emit_event<E: LogEvent + ?Sized>(&self, event: &E, exception: Option<Exception<'_>>) {
        if let (Some(replay), None, false) = (E::__REPLAY, &exception, E::ROUTES.is_audit()) {
            if self.emit_record(E::LEVEL, E::ROUTES, replay, event.__capture_len(), |capture| event.__capture(capture))
            {
                return;
            }
        }
        self.log_line(E::LEVEL, E::ROUTES, const { EventName::checked(E::NAME) }, exception, |buf| {
            let mut writer = ContextWriter::open(buf);
            event.write_context(&mut writer);
            writer.finish();
        });
    }

    /// Queues a typed general event's record for its writers to encode (`deferred`); `false`,
    /// having done nothing, when the line must be encoded here: no instance (the line goes to
    /// stderr), or span context to add.
    #[inline]
    fn emit_record(
        &self,
        level: Level,
        routes: Routes,
        replay: &'static Replay,
        capture_len: Option<usize>,
        capture: impl FnOnce(&mut Capture<'_>),
    ) -> bool {
        probe!(Start);
        self.with_dispatcher(|dispatcher| {
            let Some(dispatcher) = dispatcher else {
                return false;
            };
            let Some(destinations) = dispatcher.destinations(level, routes, self.module_level(dispatcher)) else {
                return true;
            };
            #[cfg(feature = "tracing")]
            if dispatcher.span_context() && crate::spans::in_span() {
                return false;
            }
            let started = crate::write::dispatch::sample_this_emit().then(Instant::now);
            probe!(Routed);
            let time = dispatcher.now();
            probe!(Timed);
            let module_json = &*self.inner.module_json;
            let write = |buf: &mut Vec<u8>| deferred::write_record(buf, replay, level, time, module_json, capture);
            // A capture that runs none of the user's code is written straight into the queue.
            let unwritten = match capture_len {
                Some(len) => {
                    let len = deferred::record_len(module_json, len);
                    dispatcher.dispatch_record_with(level, destinations, len, write).err()
                }
                None => Some(write),
            };
            if let Some(write) = unwritten {
                with_line_buffer(|buf| {
                    write(buf);
                    dispatcher.dispatch_record(level, destinations, buf);
                });
            }
            after_emit(dispatcher, started, time);
            probe!(Done);
            true
        })
    }

    pub(crate) fn emit_event_async<E: LogEvent + ?Sized>(
        &self,
        event: &E,
        exception: Option<Exception<'_>>,
    ) -> Emitted {
        if let (Some(replay), None, false) = (E::__REPLAY, &exception, E::ROUTES.is_audit()) {
            if self.emit_record(E::LEVEL, E::ROUTES, replay, event.__capture_len(), |capture| event.__capture(capture))
            {
                return Emitted::ready();
            }
        }
        self.log_line_async(E::LEVEL, E::ROUTES, const { EventName::checked(E::NAME) }, exception, |buf| {
            let mut writer = ContextWriter::open(buf);
            event.write_context(&mut writer);
            writer.finish();
        })
    }

    /// Logs an ad-hoc event (no type): `context` is any `Serialize` value, normally an object such
    /// as `json!({...})`; anything else is wrapped as `{"value": ...}`. Ad-hoc events go to the
    /// general sinks only, never to the audit file or a route.
    pub fn log<C: Serialize + ?Sized>(&self, level: Level, event: &str, context: &C) {
        self.log_line(level, Routes::GENERAL, event.into(), None, |buf| json::write_adhoc_context(buf, context));
    }

    /// Like [`log`](Self::log), with an error written as the line's `exception` (Python's
    /// `exc_info=True`): its type, message and `source()` chain.
    pub fn log_with_error<C, X>(&self, level: Level, event: &str, context: &C, error: &X)
    where
        C: Serialize + ?Sized,
        X: AsDynError + ?Sized,
    {
        let exception = super::as_dyn_error::exception(error);
        self.log_line(level, Routes::GENERAL, event.into(), Some(exception), |buf| {
            json::write_adhoc_context(buf, context)
        });
    }

    /// An ad-hoc TRACE event.
    pub fn trace<C: Serialize>(&self, event: &str, context: C) {
        self.log(Level::Trace, event, &context);
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
            Some(dispatcher) => self.module_level(dispatcher).allows(level),
            None => level >= Level::Warning,
        })
    }

    /// Returns when every event emitted before the call is written (`true`), or after the
    /// instance's shutdown timeout (`false`); at once with `false` once the instance is shut
    /// down or a writer thread has died. Without an instance there is nothing to wait for.
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

/// The `log_health` event: the logger's own figures, emitted by the first event after each
/// `health_interval`.
/// After an event (typed, ad hoc or captured) went to its sinks: its latency if this emit was
/// sampled (`started`), and `log_health` if one is due at `time`, the event's.
#[inline]
pub(crate) fn after_emit(dispatcher: &Arc<Dispatcher>, started: Option<Instant>, time: json::UnixTime) {
    if let Some(started) = started {
        dispatcher.record_latency(started.elapsed());
    }
    if dispatcher.health_due(time) {
        emit_health(dispatcher);
    }
}

fn emit_health(dispatcher: &Arc<Dispatcher>) {
    let stats = dispatcher.stats();
    let logger = Logger::new("chimera_log", Some(Arc::clone(dispatcher)));
    if dispatcher.health_emf() {
        let time_ms = dispatcher.now().micros() / 1_000;
        let log_dir = dispatcher.log_dir().to_string_lossy();
        logger.info("log_health", stats.emf_document(time_ms, &log_dir));
    } else {
        logger.info("log_health", &stats);
    }
}

/// A logger for `module`, writing through the process-wide logging instance.
///
/// Cheap (one allocation for the name), and may be called before [`init_logging`](crate::init_logging): the logger
/// looks up the instance at each event.
pub fn get_logger(module: &str) -> Logger {
    Logger::new(module, None)
}

/// Events emitted while no logging instance was installed (see the module docs).
pub fn events_without_logger() -> u64 {
    super::global::EVENTS_WITHOUT_LOGGER.load(Relaxed)
}
