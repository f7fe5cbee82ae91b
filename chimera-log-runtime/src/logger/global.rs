//! The process-wide logging instance: installed by [`init_logging`], used by loggers from
//! [`get_logger`], removed when its [`LogGuard`] is dropped.
//!
//! This module owns the one global and the per-thread copies of it; it starts and closes no
//! instance itself (`Dispatcher` and the guard do).

use std::cell::Cell;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::{Arc, PoisonError, RwLock};

use super::panic::install_panic_hook;
use super::{LogGuard, Logger};
use crate::config::LogConfig;
use crate::error::Error;
use crate::pipeline::Dispatcher;

static GLOBAL: RwLock<Option<Arc<Dispatcher>>> = RwLock::new(None);
/// Bumped whenever `GLOBAL` changes, so threads know when their cached copy is stale.
static GENERATION: AtomicU64 = AtomicU64::new(1);
/// Counts what [`events_without_logger`] reports.
pub(super) static EVENTS_WITHOUT_LOGGER: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's copy of the process-wide instance and the generation it was read at: the
    /// common path reads one shared atomic and touches no shared reference count.
    static CACHED: Cell<(u64, Option<Arc<Dispatcher>>)> = const { Cell::new((0, None)) };
}

/// Runs `f` with the process-wide instance, if any.
pub(super) fn with_global<R>(f: impl FnOnce(Option<&Arc<Dispatcher>>) -> R) -> R {
    let generation = GENERATION.load(Acquire);
    // Take the cached copy out of the thread-local for the duration of `f`: an event logged
    // from inside `f` (a `Serialize` impl that logs) finds the slot empty and reads the global.
    let cached = CACHED.try_with(|slot| slot.take()).ok();
    let dispatcher = match cached {
        Some((seen, dispatcher)) if seen == generation => dispatcher,
        _ => GLOBAL.read().unwrap_or_else(PoisonError::into_inner).clone(),
    };
    let result = f(dispatcher.as_ref());
    let _ = CACHED.try_with(|slot| slot.set((generation, dispatcher)));
    result
}

/// Makes `next` the process-wide instance if `current` is the one installed now (the same
/// instance, or both none), and marks every thread's copy stale; `false`, changing nothing, if
/// another one is installed.
pub(super) fn replace_global(current: Option<&Arc<Dispatcher>>, next: Option<Arc<Dispatcher>>) -> bool {
    let mut global = GLOBAL.write().unwrap_or_else(PoisonError::into_inner);
    let is_current = match (global.as_ref(), current) {
        (None, None) => true,
        (Some(installed), Some(current)) => Arc::ptr_eq(installed, current),
        _ => false,
    };
    if is_current {
        *global = next;
        GENERATION.fetch_add(1, Release);
    }
    is_current
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
    let capture = config.capture;
    // Checked before starting too, so a second call opens no file and starts no thread.
    if GLOBAL.read().unwrap_or_else(PoisonError::into_inner).is_some() {
        return Err(Error::AlreadyInitialized);
    }
    let dispatcher = Arc::new(Dispatcher::start(config)?);
    if !replace_global(None, Some(Arc::clone(&dispatcher))) {
        dispatcher.close();
        return Err(Error::AlreadyInitialized);
    }
    if panic_hook {
        install_panic_hook();
    }
    if capture {
        install_capture();
    }
    // A capture installed by an earlier start follows this logger (its levels, its `capture`).
    #[cfg(feature = "tracing")]
    crate::capture::levels_changed();
    Ok(LogGuard { dispatcher, installed: true })
}

/// Installs the `tracing` capture once per process (a global subscriber cannot be replaced):
/// later starts find it in place and it writes through whichever instance is current.
fn install_capture() {
    #[cfg(feature = "tracing")]
    {
        static INSTALLED: std::sync::Once = std::sync::Once::new();
        INSTALLED.call_once(|| {
            if !crate::capture::install() {
                diag!(
                    "chimera-log: a global tracing subscriber is installed already: events logged through \
                     tracing and log are not captured; add chimera_log::ChimeraLayer to your subscriber, or \
                     set LogConfig::capture(false) to silence this"
                );
            }
        });
    }
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
