//! The process-wide logging instance: installed by `init_logging` (in `init`), used by loggers
//! from [`get_logger`](crate::get_logger), removed when its [`LogGuard`](crate::LogGuard) is
//! dropped. A global logger is a pointer swap.
//!
//! This module owns the one global and the per-thread copies of it; it starts and closes no
//! instance itself (`Dispatcher` and the guard do). Whoever must hear of a change (the `tracing`
//! capture, whose callsites cache their interest) registers with [`on_change`]: this module
//! imports nothing above it.

use std::cell::Cell;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::{Arc, PoisonError, RwLock};

use crate::write::dispatch::Dispatcher;

static GLOBAL: RwLock<Option<Arc<Dispatcher>>> = RwLock::new(None);
/// Bumped whenever `GLOBAL` changes, so threads know when their cached copy is stale.
static GENERATION: AtomicU64 = AtomicU64::new(1);
/// Counts what [`events_without_logger`](crate::events_without_logger) reports.
pub(super) static EVENTS_WITHOUT_LOGGER: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's copy of the process-wide instance and the generation it was read at: the
    /// common path reads one shared atomic and touches no shared reference count.
    static CACHED: Cell<(u64, Option<Arc<Dispatcher>>)> = const { Cell::new((0, None)) };
}

/// Runs `f` with the process-wide instance, if any.
pub(crate) fn with_global<R>(f: impl FnOnce(Option<&Arc<Dispatcher>>) -> R) -> R {
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
pub(crate) fn replace_global(current: Option<&Arc<Dispatcher>>, next: Option<Arc<Dispatcher>>) -> bool {
    let mut global = GLOBAL.write().unwrap_or_else(PoisonError::into_inner);
    let is_current = match (global.as_ref(), current) {
        (None, None) => true,
        (Some(installed), Some(current)) => Arc::ptr_eq(installed, current),
        _ => false,
    };
    if is_current {
        *global = next;
        GENERATION.fetch_add(1, Release);
        drop(global);
        notify_change();
    }
    is_current
}

/// Tells whoever registered with [`on_change`] that the process-wide instance, or its levels
/// (`LogGuard::set_levels`), changed.
pub(crate) fn notify_change() {
    if let Some(changed) = ON_CHANGE.get() {
        changed();
    }
}

/// Called after every change of the process-wide instance or of its levels, once set.
static ON_CHANGE: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Has `changed` called after every change of the process-wide instance from now on (once per
/// process; a second registration is ignored).
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) fn on_change(changed: fn()) {
    let _ = ON_CHANGE.set(changed);
}

/// Whether a process-wide instance is installed now.
pub(crate) fn is_installed() -> bool {
    GLOBAL.read().unwrap_or_else(PoisonError::into_inner).is_some()
}
