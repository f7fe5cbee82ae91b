//! The error type of configuration and start-up. Failures after start-up (a full disk, a deleted
//! file) are never returned to the caller of `emit!`: they are counted in `stats()` and reported
//! once on stderr.

use std::io;
use std::path::PathBuf;

/// Why logging could not be configured or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting has a value the logger cannot use; `setting` is the builder method or the
    /// environment variable it came from.
    #[error("invalid setting `{setting}` = {value:?}: {reason}")]
    InvalidSetting {
        /// The builder method or environment variable, e.g. `level` or `CHIMERA_LOG_LEVEL`.
        setting: &'static str,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The log directory does not exist and could not be created.
    #[error("cannot create log directory `{}` (setting `log_dir`): {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// A log file could not be opened for appending.
    #[error("cannot open log file `{}`: {source}", path.display())]
    OpenFile {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// Another logger (in this process or another) is writing into the log directory. Two
    /// writers would interleave the audit chain's sequence numbers and break it.
    #[error(
        "log directory `{}` is in use by another chimera-log logger{}; two loggers must not share a directory",
        path.display(),
        pid.map_or(String::new(), |pid| format!(" (process {pid})"))
    )]
    DirectoryInUse {
        /// The directory.
        path: PathBuf,
        /// The process holding it, when it could be read from the lock file.
        pid: Option<u32>,
    },
    /// A writer thread could not be started.
    #[error("cannot start a chimera-log thread: {source}")]
    Thread {
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// `LogConfig::cloudwatch` was given to a build without the cargo feature `cloudwatch`.
    #[error(
        "CloudWatch was configured, but chimera-log-runtime was built without the `cloudwatch` feature: \
         enable it in Cargo.toml (features = [\"cloudwatch\"]) or remove LogConfig::cloudwatch"
    )]
    CloudWatchUnavailable,
    /// `LogConfig::capture` is on (the default), but the process has a global `tracing`
    /// subscriber already, and it holds no `ChimeraLayer`: what the rest of the program logs
    /// through `tracing` and `log` would miss `chimera.log`. A global subscriber cannot be
    /// replaced, so the application decides: compose, or start without capture.
    #[error(
        "a global tracing subscriber is installed already and it has no ChimeraLayer, so events logged \
         through tracing and log cannot reach chimera.log: add chimera_log::ChimeraLayer to your subscriber \
         (tracing_subscriber::registry().with(ChimeraLayer::new()).with(fmt::layer()).init()), or set \
         LogConfig::capture(false) (CHIMERA_LOG_CAPTURE=false) to start without capture"
    )]
    SubscriberInstalled,
    /// `init_logging` was called while the guard of an earlier call is still alive.
    #[error("logging is already initialized: drop the first LogGuard before calling init_logging again")]
    AlreadyInitialized,
}

impl Error {
    pub(crate) fn invalid(setting: &'static str, value: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidSetting { setting, value: value.into(), reason: reason.into() }
    }
}
