//! Starting logging: the one place that puts the pieces together — the dispatcher (which opens
//! the files and starts the threads), the process-wide instance, the panic hook and the capture
//! of `tracing` and `log`.

use std::sync::Arc;

use crate::config::LogConfig;
use crate::error::Error;
use crate::logger::global::{is_installed, replace_global};
use crate::logger::panic::install_panic_hook;
use crate::logger::LogGuard;
use crate::write::dispatch::Dispatcher;

/// Starts logging as configured and installs it as the process-wide logger used by
/// [`get_logger`](crate::get_logger). Keep the returned guard alive: dropping it flushes every sink and closes them.
///
/// Unless turned off with [`LogConfig::panic_hook`], a panic hook is installed (once per process,
/// chaining the previous hook) that logs a CRITICAL `panic` event through the process-wide
/// instance and flushes before the previous hook runs.
///
/// Capture of `tracing` and `log` ([`LogConfig::capture`], on by default) needs the process's
/// global `tracing` subscriber: with none yet, `init_logging` installs its own; with the
/// application's, that one must hold a [`ChimeraLayer`](crate::ChimeraLayer) (it is then the
/// capture), else the start is refused with [`Error::SubscriberInstalled`]. Installing a global
/// subscriber of your own *after* `init_logging` fails as `tracing` always does when one is set
/// (`try_init` returns an error, `init` panics): install yours first, or start with
/// `capture(false)` and add the layer to yours, in either order.
///
/// Errors: a setting that cannot be used (named in the error), a log directory that cannot be
/// created or a file that cannot be opened (path and OS reason), a global `tracing` subscriber
/// without `ChimeraLayer` while capture is on, or logging already initialized.
pub fn init_logging(config: LogConfig) -> Result<LogGuard, Error> {
    let panic_hook = config.panic_hook;
    let capture = config.capture;
    // Checked before starting too, so a second call opens no file and starts no thread.
    if is_installed() {
        return Err(Error::AlreadyInitialized);
    }
    // Refused before anything is opened: a subscriber of the application's without the layer
    // would let its dependencies' events miss the files, and it cannot be replaced.
    #[cfg(feature = "tracing")]
    let capture = if capture {
        use crate::capture::GlobalSubscriber;
        match crate::capture::global_subscriber().map_err(|source| Error::Thread { source })? {
            GlobalSubscriber::Foreign => return Err(Error::SubscriberInstalled),
            // The application's subscriber holds the layer: it is the capture.
            GlobalSubscriber::Composed => false,
            GlobalSubscriber::Absent | GlobalSubscriber::Ours => true,
        }
    } else {
        false
    };
    let dispatcher = Arc::new(Dispatcher::start(config)?);
    dispatcher.start_publishing();
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
    Ok(LogGuard::new(dispatcher))
}

/// Installs the `tracing` capture once per process (a global subscriber cannot be replaced):
/// later starts find it in place and it writes through whichever instance is current.
fn install_capture() {
    #[cfg(feature = "tracing")]
    {
        static INSTALLED: std::sync::Once = std::sync::Once::new();
        INSTALLED.call_once(|| {
            // Callsites cache whether they are enabled: asked again whenever a logger starts
            // or stops (its levels decide, and without one only warnings count).
            crate::logger::global::on_change(crate::capture::levels_changed);
            // `init_logging` found no subscriber of the application's: one installed since then
            // (by another thread) is left alone, and the application is told.
            if !crate::capture::install() {
                diag!(
                    "chimera-log: a global tracing subscriber was installed while logging started: events logged \
                     through tracing and log are not captured; add chimera_log::ChimeraLayer to your subscriber, or \
                     set LogConfig::capture(false) to silence this"
                );
            }
        });
    }
}

/// A build without the `sqlite` feature (run by scripts/test-all.sh, filtered to these tests).
#[cfg(all(test, not(feature = "sqlite")))]
mod without_sqlite {
    use super::*;
    use crate::AuditStore;

    /// The default store is SQLite in `log_dir`: without the feature a start is refused, naming
    /// the feature and the setting that turns the store off, and creates nothing. An explicit
    /// SQLite store likewise; `AuditStore::none()` starts.
    #[test]
    fn without_the_sqlite_feature_an_sqlite_store_is_refused_at_start_and_none_starts() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join("logs");
        let config = || LogConfig::new(&log_dir).console(false).capture(false).panic_hook(false);
        for store in [AuditStore::default(), AuditStore::sqlite(dir.path().join("audit.db"))] {
            let error = init_logging(config().audit_store(store)).err().unwrap();
            assert!(matches!(error, Error::InvalidSetting { setting: "audit_store", .. }), "{error}");
            let text = error.to_string();
            assert!(text.contains("`sqlite` feature") && text.contains("AuditStore::none()"), "{text}");
            assert!(!log_dir.exists() && !dir.path().join("audit.db").exists(), "nothing is created");
        }
        let guard = init_logging(config().audit_store(AuditStore::none())).unwrap();
        drop(guard);
        assert!(log_dir.join(crate::dir::layout::AUDIT_FILE).exists());
    }
}
