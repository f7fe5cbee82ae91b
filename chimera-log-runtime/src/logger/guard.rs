//! [`LogGuard`]: keeps a logging instance running and closes it when dropped, and
//! [`LogConfig::build`], which starts an instance without installing it.
//!
//! This module owns the end of an instance's life; starting it is `Dispatcher::start`'s job and
//! installing it `global`'s.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use super::{global, Logger};
use crate::config::LogConfig;
use crate::error::Error;
use crate::levels::{Directives, Levels};
use crate::stats::Stats;
use crate::write::dispatch::Dispatcher;

impl LogConfig {
    /// Starts logging as configured without installing it process-wide: loggers come from
    /// [`LogGuard::logger`]. Useful for tests and for libraries that keep their own logs. No
    /// panic hook is installed for such an instance.
    pub fn build(self) -> Result<LogGuard, Error> {
        let dispatcher = Arc::new(Dispatcher::start(self)?);
        dispatcher.start_publishing();
        Ok(LogGuard { dispatcher, installed: false })
    }
}

/// Keeps a logging instance running; dropping it flushes every sink and closes them.
#[must_use = "dropping the guard closes the logs at once; bind it: `let _guard = init_logging(..)?;`"]
pub struct LogGuard {
    pub(super) dispatcher: Arc<Dispatcher>,
    /// Whether this is the process-wide instance, to be uninstalled on drop.
    pub(super) installed: bool,
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
    /// shutdown timeout (`false`: a sink is stuck, a write fault holds lines back for a retry,
    /// or CloudWatch is unreachable and the lines wait in `chimera.log`); at once with `false`
    /// if a writer thread has died (a sink bug).
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

    /// Replaces every level directive of the running instance with `directives`, in the form of
    /// `CHIMERA_LOG_LEVEL` (`info,hyper=warn,tower=off`; a string naming no default level leaves
    /// INFO as the default), for typed, ad-hoc and captured `tracing`/`log` events alike: the
    /// directives set in code and those from the environment are all replaced. Events emitted
    /// after the call returns are filtered by the new levels, on every thread. A bad string is an
    /// [`Error::InvalidSetting`] naming `set_levels` and the directive, and changes nothing.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let guard = chimera_log_runtime::LogConfig::new(dir.path()).console(false)
    /// #     .audit_store(chimera_log_runtime::AuditStore::none()).build().unwrap();
    /// guard.set_levels("info,hyper=warn")?;
    /// assert!(guard.set_levels("tower[request]=debug").is_err());
    /// # Ok::<(), chimera_log_runtime::Error>(())
    /// ```
    pub fn set_levels(&self, directives: &str) -> Result<(), Error> {
        let directives = Directives::parse("set_levels", directives)?;
        self.dispatcher.levels().replace(Levels::from_directives(&directives));
        // Captured callsites cache whether they are enabled, and `log` its maximum level: the
        // capture registered to hear of it (`global::on_change`).
        if self.installed {
            global::notify_change();
        }
        Ok(())
    }

    /// The directory the files are written to: the configured `log_dir`, resolved when the
    /// logger started (absolute, without symbolic links).
    pub fn log_dir(&self) -> &Path {
        self.dispatcher.log_dir()
    }
}

impl LogGuard {
    /// The guard of the process-wide instance `dispatcher`, which it uninstalls on drop.
    pub(crate) fn new(dispatcher: Arc<Dispatcher>) -> LogGuard {
        LogGuard { dispatcher, installed: true }
    }
}

impl Drop for LogGuard {
    /// Stops accepting events, writes out everything accepted and joins the writer threads,
    /// within the configured `shutdown_timeout`.
    fn drop(&mut self) {
        if self.installed {
            // No logger now: what the capture counts is decided again (`global::on_change`).
            global::replace_global(Some(&self.dispatcher), None);
        }
        self.dispatcher.close();
    }
}
