//! `LogConfig`: the builder of a logger's settings, its environment variables and its validation (see the folder's table of contents).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::archive::S3Archive;
use super::cloudwatch::CloudWatchConfig;
use super::store::AuditStore;
use crate::clock::{Clock, SystemClock};
use crate::dir::layout;
use crate::error::Error;
use crate::event::Level;
use crate::levels::Levels;
use crate::testing::FaultInjector;

/// Where the console sink writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ConsoleTarget {
    /// Standard error (the default, like Python's `StreamHandler`).
    #[default]
    Stderr,
    /// Standard output.
    Stdout,
}

/// How the console sink renders lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ConsoleFormat {
    /// The same JSON line as the files (the default).
    #[default]
    Json,
    /// One readable line per event for a terminal: `timestamp LEVEL module event key=value ...`.
    Pretty,
}

/// A custom route: events whose type says `#[log(route = "name")]` go to `file` in the log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteConfig {
    pub(crate) name: String,
    pub(crate) file: String,
}

/// Key bytes that never reach a `Debug` rendering (a config printed in a log or a panic message
/// must not leak the audit key).
#[derive(Clone)]
pub(crate) struct SecretKey(pub(crate) Vec<u8>);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

pub use crate::dir::layout::{AUDIT_FILE, GENERAL_FILE};

/// What a full queue (console, general and route files) does with one more line.
///
/// A line that is dropped is counted (`stats()`), and the writer logs one `log_events_dropped`
/// warning with the count once there is room: emitted = written + reported dropped, exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overflow {
    /// Drop it at once: the application never waits for its logs, and a burst faster than the
    /// disk loses lines.
    Drop,
    /// The caller waits for room in the files' queue as long as it takes: nothing is dropped
    /// from the files, and a stalled disk stalls the application. The console still waits at
    /// most [`Overflow::DEFAULT_WAIT`]: a terminal or pipe nobody reads drops console lines
    /// rather than stop every caller, and the files behind them.
    Block,
    /// The caller waits for room as long as the writer is not stalled, and drops the line only
    /// once the writer has freed no room for this long *and* has been blocked in one write (or
    /// flush) for this long, asleep rather than running: a stalled disk, a terminal nobody
    /// reads. From then until the writer frees room again, new lines are dropped without
    /// waiting. A writer that a busy CPU gives little time to is between writes or runnable, not
    /// blocked, so a burst on a healthy disk loses nothing however busy the machine; a stall
    /// costs each caller about this long, once per stall. The default, with
    /// [`Overflow::DEFAULT_WAIT`].
    WaitUpTo(Duration),
}

impl Overflow {
    /// The default bound of [`Overflow::WaitUpTo`]: 100 ms.
    pub const DEFAULT_WAIT: Duration = Duration::from_millis(100);

    /// How long a caller waits for room (`ZERO`: not at all, `MAX`: as long as it takes).
    pub(crate) fn wait(self) -> Duration {
        match self {
            Overflow::Drop => Duration::ZERO,
            Overflow::Block => Duration::MAX,
            Overflow::WaitUpTo(bound) => bound,
        }
    }
}

impl Default for Overflow {
    /// [`Overflow::WaitUpTo`] 100 ms.
    fn default() -> Self {
        Overflow::WaitUpTo(Overflow::DEFAULT_WAIT)
    }
}

/// How durable an audit line is when `emit!` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AuditDurability {
    /// Written and `fdatasync`ed (group commit): survives a crash of the machine. The default.
    #[default]
    Sync,
    /// Written to the operating system: survives a crash or `abort()` of the process, not of the
    /// machine.
    OsBuffer,
}

/// The most routes one configuration may have: lane 0 of the file writer is `chimera.log`, lanes
/// 1 to 63 the routes.
pub(crate) const MAX_ROUTES: usize = 63;

/// Configuration of the logger; the builder behind [`init_logging`](crate::init_logging).
///
/// | setting | default | environment (`from_env`) |
/// |---|---|---|
/// | `log_dir` (`new`) | required; `logs` from the environment | `CHIMERA_LOG_DIR` |
/// | `level` | `Info` | `CHIMERA_LOG_LEVEL` (`info`, or `info,hyper=warning,state_engine=debug`) |
/// | `level_for` | none | (in `CHIMERA_LOG_LEVEL`) |
/// | `console` | on | `CHIMERA_LOG_CONSOLE` (`true`/`false`) |
/// | `console_target` | stderr | `CHIMERA_LOG_CONSOLE_TARGET` (`stderr`/`stdout`) |
/// | `console_format` | JSON | `CHIMERA_LOG_CONSOLE_FORMAT` (`json`/`pretty`) |
/// | `max_bytes` | 100 MiB | `CHIMERA_LOG_MAX_BYTES` |
/// | `general_backups` | 10 | `CHIMERA_LOG_GENERAL_BACKUPS` |
/// | `audit_backups` | 50 | `CHIMERA_LOG_AUDIT_BACKUPS` |
/// | `compress` | on | `CHIMERA_LOG_COMPRESS` (`true`/`false`) |
/// | `audit_key` | none (SHA-256 chain) | `CHIMERA_LOG_AUDIT_KEY` |
/// | `audit_store` | SQLite at `log_dir/audit.db` | `CHIMERA_LOG_AUDIT_STORE` (`sqlite:PATH`, `postgres://…`, `none`) |
/// | `audit_retention` | 1,096 days | — |
/// | `checkpoint_interval` | 15 min | — |
/// | `route` | none | — |
/// | `clock` | the system clock | — |
/// | `shutdown_timeout` | 5 s | — |
/// | `queue_capacity` | 4 MiB per queue | — |
/// | `writer_priority` | the process's (not changed) | — |
/// | `overflow` | wait up to 100 ms for room, then drop (counted, reported) | — |
/// | `audit_durability` | `Sync` (fdatasync, group commit) | — |
/// | `panic_hook` | on | — |
/// | `capture` | on (feature `tracing`) | `CHIMERA_LOG_CAPTURE` (`true`/`false`) |
/// | `health_interval` | off | — |
/// | `cloudwatch` | off (feature `cloudwatch`) | — |
/// | `archive` | off (feature `s3`) | `CHIMERA_LOG_ARCHIVE` (`s3://bucket/prefix`), `CHIMERA_LOG_ARCHIVE_SIGNING_KEY` (a PEM file) |
///
/// ```
/// use chimera_log_runtime::{Level, LogConfig};
///
/// let config = LogConfig::new("logs")
///     .level(Level::Info)
///     .console(true)
///     .max_bytes(100 * 1024 * 1024)
///     .general_backups(10)
///     .audit_backups(50)
///     .compress(true)
///     .route("metrics", "metrics.log");
/// assert_eq!(config.log_dir(), std::path::Path::new("logs"));
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct LogConfig {
    pub(crate) log_dir: PathBuf,
    pub(crate) levels: Levels,
    pub(crate) console: bool,
    pub(crate) console_target: ConsoleTarget,
    pub(crate) console_format: ConsoleFormat,
    pub(crate) max_bytes: u64,
    pub(crate) general_backups: usize,
    pub(crate) audit_backups: usize,
    pub(crate) compress: bool,
    pub(crate) routes: Vec<RouteConfig>,
    pub(crate) clock: Arc<dyn Clock>,
    /// `clock` is the default system clock (read directly, see `UnixTime::now`).
    pub(crate) system_clock: bool,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) queue_capacity: usize,
    pub(crate) writer_priority: Option<i32>,
    pub(crate) overflow: Overflow,
    pub(crate) audit_durability: AuditDurability,
    pub(crate) panic_hook: bool,
    pub(crate) capture: bool,
    pub(crate) health_interval: Option<Duration>,
    pub(crate) faults: Option<Arc<FaultInjector>>,
    pub(crate) cloudwatch: Option<CloudWatchConfig>,
    pub(crate) audit_key: Option<SecretKey>,
    pub(crate) checkpoint_interval: Duration,
    pub(crate) audit_store: AuditStore,
    pub(crate) audit_retention: Duration,
    pub(crate) archive: Option<S3Archive>,
}

impl LogConfig {
    /// A configuration writing into `log_dir`, every other setting at its default.
    pub fn new(log_dir: impl Into<PathBuf>) -> Self {
        LogConfig {
            log_dir: log_dir.into(),
            levels: Levels::new(Level::Info),
            console: true,
            console_target: ConsoleTarget::Stderr,
            console_format: ConsoleFormat::Json,
            max_bytes: 100 * 1024 * 1024,
            general_backups: 10,
            audit_backups: 50,
            compress: true,
            routes: Vec::new(),
            clock: Arc::new(SystemClock),
            system_clock: true,
            shutdown_timeout: Duration::from_secs(5),
            queue_capacity: 4 * 1024 * 1024,
            writer_priority: None,
            overflow: Overflow::default(),
            audit_durability: AuditDurability::Sync,
            panic_hook: true,
            capture: true,
            health_interval: None,
            faults: None,
            cloudwatch: None,
            audit_key: None,
            checkpoint_interval: Duration::from_secs(15 * 60),
            audit_store: AuditStore::default(),
            audit_retention: super::store::DEFAULT_RETENTION,
            archive: None,
        }
    }

    /// Reads the `CHIMERA_LOG_*` variables of the process environment (table above). Other
    /// variables are ignored, whatever their names and values hold; a `CHIMERA_LOG_*` variable
    /// whose value is not valid UTF-8 is an [`Error::InvalidSetting`] naming it.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_vars_os(std::env::vars_os())
    }

    /// [`from_env`](Self::from_env) over the given variables, as the operating system holds
    /// them: a name is ours when its bytes start with `CHIMERA_LOG_`, so a name or value of
    /// someone else's that is not UTF-8 is no concern of ours.
    pub(crate) fn from_vars_os<I>(vars: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = (OsString, OsString)>,
    {
        let mut ours = Vec::new();
        for (name, value) in vars {
            if !name.as_encoded_bytes().starts_with(ENV_PREFIX.as_bytes()) {
                continue;
            }
            let name = name.into_string().map_err(|name| unknown_variable(&name.to_string_lossy()))?;
            let Some(&setting) = ENV_VARIABLES.iter().find(|known| **known == name) else {
                return Err(unknown_variable(&name));
            };
            let value = value
                .into_string()
                .map_err(|value| Error::invalid(setting, value.to_string_lossy(), "the value is not valid UTF-8"))?;
            ours.push((setting, value));
        }
        Self::from_vars(ours)
    }

    /// Like [`from_env`](Self::from_env), from the given variables: for tests and for settings kept
    /// in a file. Variables not named `CHIMERA_LOG_*` are ignored; an unknown `CHIMERA_LOG_*`
    /// variable is an error, so a misspelt setting is not silently ignored.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut config = LogConfig::new("logs");
        // Applied after the loop: it may come before CHIMERA_LOG_ARCHIVE.
        let mut archive_signing_key: Option<String> = None;
        for (key, value) in vars {
            let (key, value) = (key.as_ref(), value.as_ref());
            config = match key {
                "CHIMERA_LOG_DIR" => LogConfig { log_dir: value.into(), ..config },
                "CHIMERA_LOG_LEVEL" => LogConfig { levels: Levels::parse("CHIMERA_LOG_LEVEL", value)?, ..config },
                "CHIMERA_LOG_CONSOLE" => config.console(parse_bool("CHIMERA_LOG_CONSOLE", value)?),
                "CHIMERA_LOG_CONSOLE_TARGET" => config.console_target(match value.to_ascii_lowercase().as_str() {
                    "stderr" => ConsoleTarget::Stderr,
                    "stdout" => ConsoleTarget::Stdout,
                    _ => {
                        return Err(Error::invalid(
                            "CHIMERA_LOG_CONSOLE_TARGET",
                            value,
                            "expected `stderr` or `stdout`",
                        ))
                    }
                }),
                "CHIMERA_LOG_CONSOLE_FORMAT" => config.console_format(match value.to_ascii_lowercase().as_str() {
                    "json" => ConsoleFormat::Json,
                    "pretty" => ConsoleFormat::Pretty,
                    _ => {
                        return Err(Error::invalid("CHIMERA_LOG_CONSOLE_FORMAT", value, "expected `json` or `pretty`"))
                    }
                }),
                "CHIMERA_LOG_MAX_BYTES" => config.max_bytes(parse_number("CHIMERA_LOG_MAX_BYTES", value)?),
                "CHIMERA_LOG_GENERAL_BACKUPS" => {
                    config.general_backups(parse_number("CHIMERA_LOG_GENERAL_BACKUPS", value)?)
                }
                "CHIMERA_LOG_AUDIT_BACKUPS" => config.audit_backups(parse_number("CHIMERA_LOG_AUDIT_BACKUPS", value)?),
                "CHIMERA_LOG_COMPRESS" => config.compress(parse_bool("CHIMERA_LOG_COMPRESS", value)?),
                "CHIMERA_LOG_CAPTURE" => config.capture(parse_bool("CHIMERA_LOG_CAPTURE", value)?),
                "CHIMERA_LOG_AUDIT_KEY" if value.is_empty() => {
                    return Err(Error::invalid("CHIMERA_LOG_AUDIT_KEY", "", "an empty key protects nothing"))
                }
                "CHIMERA_LOG_AUDIT_KEY" => config.audit_key(value.as_bytes()),
                "CHIMERA_LOG_AUDIT_STORE" => config.audit_store(AuditStore::from_url(value)?),
                "CHIMERA_LOG_ARCHIVE" => config.archive(S3Archive::from_url(value)?),
                "CHIMERA_LOG_ARCHIVE_SIGNING_KEY" => {
                    archive_signing_key = Some(value.to_owned());
                    config
                }
                other if other.starts_with(ENV_PREFIX) => return Err(unknown_variable(other)),
                _ => config,
            };
        }
        if let Some(key) = archive_signing_key {
            let Some(archive) = config.archive.take() else {
                return Err(Error::invalid(
                    "CHIMERA_LOG_ARCHIVE_SIGNING_KEY",
                    key,
                    "signs the S3 archive's digests: set CHIMERA_LOG_ARCHIVE too",
                ));
            };
            config.archive = Some(archive.signing_key(key));
        }
        Ok(config)
    }

    /// Minimum level for the console and the general file; audit and route files take every
    /// event of their types regardless.
    pub fn level(mut self, level: Level) -> Self {
        self.levels.set_default(level);
        self
    }

    /// The minimum level of the modules under `prefix` (`hyper` covers `hyper::client` and
    /// `hyper.client`; `::` and `.` both separate parts), for typed, ad-hoc and captured events
    /// alike; the longest matching prefix wins over [`level`](Self::level). The environment form
    /// is `CHIMERA_LOG_LEVEL=info,hyper=warning,state_engine=debug`.
    pub fn level_for(mut self, prefix: &str, level: Level) -> Self {
        self.levels.set(prefix, level);
        self
    }

    /// Turns the console sink on or off.
    pub fn console(mut self, on: bool) -> Self {
        self.console = on;
        self
    }

    /// Where the console sink writes.
    pub fn console_target(mut self, target: ConsoleTarget) -> Self {
        self.console_target = target;
        self
    }

    /// How the console sink renders lines.
    pub fn console_format(mut self, format: ConsoleFormat) -> Self {
        self.console_format = format;
        self
    }

    /// Size at which a log file is rotated. Must be at least 1.
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Rotated backups kept of `chimera.log` and of each route file.
    pub fn general_backups(mut self, backups: usize) -> Self {
        self.general_backups = backups;
        self
    }

    /// Rotated backups kept of `executions.log`.
    pub fn audit_backups(mut self, backups: usize) -> Self {
        self.audit_backups = backups;
        self
    }

    /// Whether rotated backups are gzip-compressed.
    pub fn compress(mut self, on: bool) -> Self {
        self.compress = on;
        self
    }

    /// Adds a custom route: events whose type says `#[log(route = "name")]` are written to
    /// `file` in the log directory (as well as to the general sinks when at or above the level).
    pub fn route(mut self, name: impl Into<String>, file: impl Into<String>) -> Self {
        self.routes.push(RouteConfig { name: name.into(), file: file.into() });
        self
    }

    /// The clock timestamps and backup names are read from.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self.system_clock = false;
        self
    }

    /// The scheduling priority of the writer threads, as a nice value from -20 (highest) to 19
    /// (Linux). Off by default: they run at the process's priority.
    ///
    /// With more threads logging than the machine has cores, the scheduler shares the cores
    /// evenly between every thread, and the one writer thread, which needs about as much CPU per
    /// line as a caller, gets too small a share: the callers then wait for room in the queue
    /// (BENCHMARKS.md, 4 threads on 2 cores). A negative value gives the writers the share they
    /// need, at the expense of the application's threads while the writers have work. Raising a
    /// priority takes `CAP_SYS_NICE` or a high enough `RLIMIT_NICE`: without it `init_logging`
    /// fails with `Error::InvalidSetting` naming `writer_priority`, as it does for a value out of
    /// range or on a system other than Linux.
    pub fn writer_priority(mut self, nice: i32) -> Self {
        self.writer_priority = Some(nice);
        self
    }

    /// How long dropping the guard (or `flush`) waits for the writer threads to write what was
    /// accepted and for background work (compression of a rotated backup). What compression
    /// leaves unfinished, the next start completes.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Bytes each queue (the console's, and the files') holds while its writer thread catches
    /// up. A line that does not fit is dropped for that sink and counted, and a
    /// `log_events_dropped` warning with the count is written once there is room. The audit file
    /// has no queue: it never drops for lack of room. Memory is bounded by about twice this per
    /// queue (the batch being filled and the one being written). Must be at least 1.
    pub fn queue_capacity(mut self, bytes: usize) -> Self {
        self.queue_capacity = bytes;
        self
    }

    /// What a full queue does with one more line: drop and count it (the default), or make the
    /// caller wait. Does not apply to the audit file, which has no queue and never drops.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// How durable an audit line is when `emit!` returns: synced to disk (the default, with
    /// group commit) or handed to the operating system.
    pub fn audit_durability(mut self, durability: AuditDurability) -> Self {
        self.audit_durability = durability;
        self
    }

    /// Whether [`init_logging`](crate::init_logging) captures what the rest of the program logs
    /// through `tracing` and `log` (feature `tracing`, on by default): it installs a global
    /// `tracing` subscriber with [`ChimeraLayer`](crate::ChimeraLayer) and the `log` bridge,
    /// unless the application installed a subscriber already (then it says so once on stderr and
    /// leaves it alone: add `ChimeraLayer` to yours). Without the feature it does nothing.
    pub fn capture(mut self, on: bool) -> Self {
        self.capture = on;
        self
    }

    /// Whether `init_logging` installs a panic hook that logs a CRITICAL `panic` event and
    /// flushes before the previous hook runs. On by default.
    pub fn panic_hook(mut self, on: bool) -> Self {
        self.panic_hook = on;
        self
    }

    /// Emits a `log_health` event (INFO, module `chimera_log`) with the logger's own figures
    /// (`stats()`) once every `every`: the first event emitted after each interval is followed by
    /// it, so an idle program writes none. Time is read from the configured clock. Off by default.
    pub fn health_interval(mut self, every: Duration) -> Self {
        self.health_interval = Some(every);
        self
    }

    /// Ships every event at or above the level to CloudWatch Logs as well. Needs the cargo
    /// feature `cloudwatch`: without it, `init_logging` returns [`Error::CloudWatchUnavailable`].
    pub fn cloudwatch(mut self, cloudwatch: CloudWatchConfig) -> Self {
        self.cloudwatch = Some(cloudwatch);
        self
    }

    /// Keys the audit chain: HMAC-SHA-256 with `key` instead of SHA-256, so that nobody without
    /// the key can recompute a valid chain after editing a record. Keep the key out of the log
    /// directory; `verify` needs it too.
    pub fn audit_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.audit_key = Some(SecretKey(key.into()));
        self
    }

    /// How often the audit chain's head is recorded in the general log as an
    /// `audit_checkpoint` event (also at every rotation of the audit file). Recorded by the first
    /// audit event after the interval; 15 minutes by default.
    pub fn checkpoint_interval(mut self, every: Duration) -> Self {
        self.checkpoint_interval = every;
        self
    }

    /// Where the audit trail is kept for years: every sealed record of `executions.log` is
    /// inserted, once, into this database by a background thread that follows the file. SQLite
    /// at `log_dir/audit.db` by default; [`AuditStore::none`] turns it off. While the store is
    /// behind or down, audit backups are kept past `audit_backups` until their records are in.
    /// A build without the `sqlite` feature must set a store other than SQLite (the default
    /// included), or `init_logging` refuses to start.
    pub fn audit_store(mut self, store: AuditStore) -> Self {
        self.audit_store = store;
        self
    }

    /// How long the audit store keeps a row: rows older than this (by their timestamp, against
    /// the configured clock) are deleted at start and daily. 1,096 days by default.
    pub fn audit_retention(mut self, retention: Duration) -> Self {
        self.audit_retention = retention;
        self
    }

    /// Keeps a copy of every sealed audit record in an S3 bucket under Object Lock (COMPLIANCE,
    /// for `audit_retention`), uploaded from `executions.log` by a background thread; while the
    /// archive is behind or down, audit backups are kept past `audit_backups` until uploaded. A
    /// bucket without Object Lock is reported at start and the archive stays off. Needs the cargo
    /// feature `s3` (an error at start without it). See `docs/archive.md`.
    pub fn archive(mut self, archive: S3Archive) -> Self {
        self.archive = Some(archive);
        self
    }

    /// Makes file writes fail on demand, for tests of write faults.
    #[doc(hidden)]
    pub fn fault_injector(mut self, faults: Arc<FaultInjector>) -> Self {
        self.faults = Some(faults);
        self
    }

    /// The directory holding every log file; created (with parents) if missing.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Checks every setting; the first bad one is the error.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.log_dir.as_os_str().is_empty() {
            return Err(Error::invalid("log_dir", "", "the log directory must not be empty"));
        }
        if let Some(cloudwatch) = &self.cloudwatch {
            cloudwatch.validate()?;
            if !cfg!(feature = "cloudwatch") {
                return Err(Error::CloudWatchUnavailable);
            }
        }
        if let Some(archive) = &self.archive {
            archive.validate()?;
        }
        if self.audit_key.as_ref().is_some_and(|key| key.0.is_empty()) {
            return Err(Error::invalid("audit_key", "", "an empty key protects nothing"));
        }
        if self.levels.has_empty_prefix() {
            return Err(Error::invalid("level_for", "", "a directive names a module prefix"));
        }
        if self.audit_retention.is_zero() {
            return Err(Error::invalid("audit_retention", "0s", "rows must be kept for some time"));
        }
        match &self.audit_store.0 {
            super::store::Target::Postgres(_) if !cfg!(feature = "postgres") => {
                return Err(Error::invalid(
                    "audit_store",
                    format!("{:?}", self.audit_store),
                    "PostgreSQL needs the `postgres` feature of chimera-log",
                ));
            }
            // The default store too: a build without SQLite does not quietly keep the audit
            // trail in the files alone (docs/decisions.md, "Crate shape and build").
            super::store::Target::Default | super::store::Target::Sqlite(_) if !cfg!(feature = "sqlite") => {
                return Err(Error::invalid(
                    "audit_store",
                    format!("{:?}", self.audit_store),
                    format!(
                        "{}; without it, set `AuditStore::none()` (CHIMERA_LOG_AUDIT_STORE=none) or a \
                         PostgreSQL store",
                        super::store::SQLITE_NEEDED
                    ),
                ));
            }
            _ => {}
        }
        if self.queue_capacity == 0 {
            return Err(Error::invalid("queue_capacity", "0", "a queue must hold at least one byte"));
        }
        if let Some(nice) = self.writer_priority {
            if !(-20..=19).contains(&nice) {
                return Err(Error::invalid("writer_priority", nice.to_string(), "a nice value is from -20 to 19"));
            }
            if !cfg!(target_os = "linux") {
                return Err(Error::invalid(
                    "writer_priority",
                    nice.to_string(),
                    "a thread's own priority can be set on Linux only",
                ));
            }
        }
        if self.health_interval == Some(Duration::ZERO) {
            return Err(Error::invalid("health_interval", "0s", "the interval must be positive"));
        }
        if self.max_bytes == 0 {
            return Err(Error::invalid("max_bytes", "0", "a file must be allowed at least one byte"));
        }
        if self.routes.len() > MAX_ROUTES {
            return Err(Error::invalid(
                "route",
                format!("{} routes", self.routes.len()),
                format!("at most {MAX_ROUTES} routes (each has a lane of the file writer's 64-bit lane set)"),
            ));
        }
        let mut names = BTreeSet::new();
        let mut files: BTreeSet<&str> = [GENERAL_FILE, AUDIT_FILE].into_iter().collect();
        for route in &self.routes {
            if route.name.is_empty() {
                return Err(Error::invalid("route", &route.name, "the route name must not be empty"));
            }
            if !names.insert(route.name.as_str()) {
                return Err(Error::invalid("route", &route.name, "this route name is configured twice"));
            }
            let plain = Path::new(&route.file).file_name().is_some_and(|name| name == route.file.as_str());
            if route.file.is_empty() || !plain || route.file == "." || route.file == ".." {
                return Err(Error::invalid(
                    "route",
                    &route.file,
                    "the route file must be a plain file name inside log_dir",
                ));
            }
            if !files.insert(route.file.as_str()) {
                return Err(Error::invalid("route", &route.file, "this file is already written by another sink"));
            }
            let own = [
                layout::LOCK_FILE,
                layout::CLOUDWATCH_CURSOR_FILE,
                layout::STORE_CURSOR_FILE,
                layout::ARCHIVE_CURSOR_FILE,
                layout::ARCHIVE_STATE_FILE,
            ];
            if own.contains(&route.file.as_str()) || route.file.starts_with(layout::STORE_FILE) {
                return Err(Error::invalid("route", &route.file, "this name is kept for chimera-log's own state"));
            }
        }
        // A file named like another's backup would be compressed and deleted by that file's
        // retention (and read as part of its history).
        for file in &files {
            if let Some(owner) = files.iter().find(|other| crate::dir::backup::parse_backup_name(file, other).is_some())
            {
                return Err(Error::invalid(
                    "route",
                    *file,
                    format!("this name is that of a backup of {owner}; choose a name that is not `{owner}.<stamp>`"),
                ));
            }
        }
        Ok(())
    }
}

/// What every variable [`LogConfig::from_env`] reads starts with.
const ENV_PREFIX: &str = "CHIMERA_LOG_";

/// The variables [`LogConfig::from_env`] reads; any other `CHIMERA_LOG_*` is an error.
const ENV_VARIABLES: [&str; 12] = [
    "CHIMERA_LOG_DIR",
    "CHIMERA_LOG_LEVEL",
    "CHIMERA_LOG_CONSOLE",
    "CHIMERA_LOG_CONSOLE_TARGET",
    "CHIMERA_LOG_CONSOLE_FORMAT",
    "CHIMERA_LOG_MAX_BYTES",
    "CHIMERA_LOG_GENERAL_BACKUPS",
    "CHIMERA_LOG_AUDIT_BACKUPS",
    "CHIMERA_LOG_COMPRESS",
    "CHIMERA_LOG_AUDIT_KEY",
    "CHIMERA_LOG_AUDIT_STORE",
    "CHIMERA_LOG_CAPTURE",
];

/// A `CHIMERA_LOG_*` variable that is none of [`ENV_VARIABLES`]: most likely a misspelt one,
/// which must not be ignored silently.
fn unknown_variable(name: &str) -> Error {
    Error::InvalidSetting {
        setting: "CHIMERA_LOG_*",
        value: name.to_owned(),
        reason: format!("unknown variable; known: {}", ENV_VARIABLES.join(", ")),
    }
}

fn parse_bool(setting: &'static str, value: &str) -> Result<bool, Error> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::invalid(setting, value, "expected true or false")),
    }
}

fn parse_number<T: std::str::FromStr>(setting: &'static str, value: &str) -> Result<T, Error>
where
    T::Err: std::fmt::Display,
{
    value.trim().parse().map_err(|e| Error::invalid(setting, value, format!("expected a non-negative integer ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_vars_reads_every_setting() {
        let config = LogConfig::from_vars([
            ("CHIMERA_LOG_DIR", "/var/log/chimera"),
            ("CHIMERA_LOG_LEVEL", "warn"),
            ("CHIMERA_LOG_CONSOLE", "false"),
            ("CHIMERA_LOG_CONSOLE_TARGET", "stdout"),
            ("CHIMERA_LOG_CONSOLE_FORMAT", "pretty"),
            ("CHIMERA_LOG_MAX_BYTES", "1024"),
            ("CHIMERA_LOG_GENERAL_BACKUPS", "3"),
            ("CHIMERA_LOG_AUDIT_BACKUPS", "7"),
            ("CHIMERA_LOG_COMPRESS", "off"),
            ("PATH", "/usr/bin"),
        ])
        .unwrap();
        assert_eq!(config.log_dir, Path::new("/var/log/chimera"));
        assert_eq!(config.levels, crate::levels::Levels::new(Level::Warning));
        assert!(!config.console && !config.compress);
        assert_eq!(config.console_target, ConsoleTarget::Stdout);
        assert_eq!(config.console_format, ConsoleFormat::Pretty);
        assert_eq!((config.max_bytes, config.general_backups, config.audit_backups), (1024, 3, 7));
    }

    #[test]
    fn from_vars_rejects_a_bad_level_naming_the_variable() {
        let error = LogConfig::from_vars([("CHIMERA_LOG_LEVEL", "loud")]).unwrap_err();
        assert!(matches!(&error, Error::InvalidSetting { setting: "CHIMERA_LOG_LEVEL", value, .. } if value == "loud"));
        assert!(error.to_string().contains("CHIMERA_LOG_LEVEL"), "{error}");
    }

    #[test]
    fn from_vars_rejects_an_unknown_chimera_variable() {
        let error = LogConfig::from_vars([("CHIMERA_LOG_LEVLE", "info")]).unwrap_err();
        assert!(error.to_string().contains("CHIMERA_LOG_LEVLE"), "{error}");
    }

    #[test]
    fn every_variable_from_env_knows_is_read_by_from_vars() {
        let value = |name: &str| match name {
            "CHIMERA_LOG_LEVEL" => "info",
            "CHIMERA_LOG_CONSOLE" | "CHIMERA_LOG_COMPRESS" | "CHIMERA_LOG_CAPTURE" => "true",
            "CHIMERA_LOG_CONSOLE_TARGET" => "stdout",
            "CHIMERA_LOG_CONSOLE_FORMAT" => "json",
            "CHIMERA_LOG_MAX_BYTES" | "CHIMERA_LOG_GENERAL_BACKUPS" | "CHIMERA_LOG_AUDIT_BACKUPS" => "3",
            "CHIMERA_LOG_AUDIT_STORE" => "none",
            _ => "x",
        };
        for name in ENV_VARIABLES {
            if let Err(error) = LogConfig::from_vars([(name, value(name))]) {
                panic!("{name}: {error}");
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn from_vars_os_ignores_other_variables_whose_names_or_values_are_not_utf8() {
        use std::os::unix::ffi::OsStringExt;
        let bytes = |b: &[u8]| OsString::from_vec(b.to_vec());
        let config = LogConfig::from_vars_os([
            (bytes(b"SOMETHING_ELSE"), bytes(b"\xff")),
            (bytes(b"NAME_\xff"), bytes(b"ok")),
            (bytes(b"CHIMERA_LOG_DIR"), bytes(b"/var/log/chimera")),
        ])
        .unwrap();
        assert_eq!(config.log_dir, Path::new("/var/log/chimera"));
    }

    #[cfg(unix)]
    #[test]
    fn from_vars_os_rejects_a_value_of_ours_that_is_not_utf8_naming_the_variable() {
        use std::os::unix::ffi::OsStringExt;
        let bytes = |b: &[u8]| OsString::from_vec(b.to_vec());
        let error = LogConfig::from_vars_os([(bytes(b"CHIMERA_LOG_LEVEL"), bytes(b"inf\xffo"))]).unwrap_err();
        assert!(matches!(error, Error::InvalidSetting { setting: "CHIMERA_LOG_LEVEL", .. }), "{error}");
        assert!(error.to_string().contains("not valid UTF-8"), "{error}");
        // A name of ours that is not UTF-8 is no known variable: an unknown one, as a misspelling is.
        let error = LogConfig::from_vars_os([(bytes(b"CHIMERA_LOG_LEV\xffL"), bytes(b"info"))]).unwrap_err();
        assert!(matches!(error, Error::InvalidSetting { setting: "CHIMERA_LOG_*", .. }), "{error}");
    }

    #[test]
    fn sixty_three_routes_are_taken_and_a_sixty_fourth_is_an_invalid_setting() {
        let with = |count: usize| {
            (0..count).fold(LogConfig::new("l"), |config, n| config.route(format!("r{n}"), format!("r{n}.log")))
        };
        assert!(with(MAX_ROUTES).validate().is_ok());
        let error = with(MAX_ROUTES + 1).validate().unwrap_err();
        assert!(matches!(error, Error::InvalidSetting { setting: "route", .. }), "{error}");
        assert!(error.to_string().contains("at most 63 routes"), "{error}");
    }

    #[test]
    fn validate_rejects_bad_routes_and_zero_max_bytes() {
        let bad = [
            LogConfig::new("l").max_bytes(0),
            LogConfig::new("l").route("", "x.log"),
            LogConfig::new("l").route("m", "m.log").route("m", "n.log"),
            LogConfig::new("l").route("m", "../escape.log"),
            LogConfig::new("l").route("m", "executions.log"),
            LogConfig::new("l").route("m", "a.log").route("n", "a.log"),
            LogConfig::new("l").route("x", "chimera.log.20240101T000000.000000Z"),
            LogConfig::new("l").route("x", "executions.log.20240101T000000.000000Z.gz"),
            LogConfig::new("l").route("x", "a.log").route("y", "a.log.20240101T000000.000000Z.gz.tmp"),
            LogConfig::new("l").route("x", ".chimera-log.lock"),
        ];
        for config in bad {
            let error = config.validate().unwrap_err();
            assert!(matches!(error, Error::InvalidSetting { setting: "max_bytes" | "route", .. }), "{error}");
        }
        LogConfig::new("l").route("m", "m.log").validate().unwrap();
    }
}
