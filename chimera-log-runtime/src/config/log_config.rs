//! `LogConfig`: the builder of a logger's settings, its environment variables and its validation (see the folder's table of contents).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::archive::S3Archive;
use super::cloudwatch::CloudWatchConfig;
use super::otlp::{OtlpConfig, OtlpEnv};
use super::store::AuditStore;
use crate::clock::{Clock, SystemClock};
use crate::dir::layout;
use crate::error::Error;
use crate::event::Level;
use crate::levels::{Directives, Levels};
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
/// | `level` | `Info` | `CHIMERA_LOG_LEVEL`, else `RUST_LOG` (`info`, or `info,hyper=warning,tower=off`) |
/// | `level_for` | none | (in `CHIMERA_LOG_LEVEL` / `RUST_LOG`) |
/// | `console` | on | `CHIMERA_LOG_CONSOLE` (`true`/`false`) |
/// | `console_level` | none (the module levels alone) | `CHIMERA_LOG_CONSOLE_LEVEL` (`trace`…`critical`) |
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
/// | `slow_write_warning` | 10 ms (p99 of a window of `watch_interval`) | — |
/// | `disk_low_warning` | room for two rotations of every file | — |
/// | `watch_interval` | 10 s | — |
/// | `metrics_interval` | 1 s (feature `metrics`) | — |
/// | `health_emf` | off | — |
/// | `cloudwatch` | off (feature `cloudwatch`) | — |
/// | `cloudwatch_level` | none (the module levels alone) | `CHIMERA_LOG_CLOUDWATCH_LEVEL` (`trace`…`critical`) |
/// | `otlp` | off (feature `otlp`); on when an endpoint is configured | `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` and the rest of [`OtlpConfig`]'s table |
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
///
/// Levels from the environment win over levels set in code, whatever the order of the calls:
/// `LogConfig::from_env()?.level(Level::Debug)` keeps the default of `CHIMERA_LOG_LEVEL=warning`,
/// and a directive of the environment (`hyper=info`) replaces what code set for that module and
/// the modules under it; what the environment does not name stays as code set it
/// (docs/decisions.md, "Capture and levels").
///
/// `LogConfig` is also `serde::Deserialize`, for a configuration file: each key is a variable's
/// name without `CHIMERA_LOG_`, lowercased (`level = "info,hyper=warning"`, `dir`, `max_bytes`);
/// an unknown key is an error naming it. [`with_env`](Self::with_env) lays the environment over
/// what the file says (docs/configuration.md).
#[derive(Debug, Clone)]
#[must_use]
pub struct LogConfig {
    pub(crate) log_dir: PathBuf,
    /// The levels set in code (`level`, `level_for`).
    pub(crate) levels: Levels,
    /// The levels the environment named (`CHIMERA_LOG_LEVEL`, else `RUST_LOG`), applied over
    /// `levels` when the logger starts ([`effective_levels`](Self::effective_levels)).
    pub(crate) env_levels: Directives,
    /// The console's minimum, set in code and from the environment (which wins).
    pub(crate) console_level: Level,
    pub(crate) env_console_level: Option<Level>,
    /// CloudWatch's minimum, set in code and from the environment (which wins).
    pub(crate) cloudwatch_level: Level,
    pub(crate) env_cloudwatch_level: Option<Level>,
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
    pub(crate) span_context: bool,
    pub(crate) health_interval: Option<Duration>,
    pub(crate) slow_write: Duration,
    pub(crate) disk_low: Option<u64>,
    pub(crate) watch_interval: Duration,
    pub(crate) metrics_interval: Option<Duration>,
    pub(crate) health_emf: bool,
    pub(crate) faults: Option<Arc<FaultInjector>>,
    pub(crate) cloudwatch: Option<CloudWatchConfig>,
    /// The OTLP forwarder as code configured it, and what the environment said (which wins).
    pub(crate) otlp: Option<OtlpConfig>,
    pub(crate) env_otlp: OtlpEnv,
    pub(crate) audit_key: Option<SecretKey>,
    pub(crate) checkpoint_interval: Duration,
    pub(crate) audit_store: AuditStore,
    pub(crate) audit_retention: Duration,
    pub(crate) archive: Option<S3Archive>,
    /// `CHIMERA_LOG_ARCHIVE_SIGNING_KEY` read before `CHIMERA_LOG_ARCHIVE`.
    pub(crate) archive_key_pending: Option<String>,
}

impl LogConfig {
    /// A configuration writing into `log_dir`, every other setting at its default.
    pub fn new(log_dir: impl Into<PathBuf>) -> Self {
        LogConfig {
            log_dir: log_dir.into(),
            levels: Levels::new(Level::Info),
            env_levels: Directives::default(),
            console_level: Level::Trace,
            env_console_level: None,
            cloudwatch_level: Level::Trace,
            env_cloudwatch_level: None,
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
            span_context: true,
            health_interval: None,
            slow_write: Duration::from_millis(10),
            disk_low: None,
            watch_interval: Duration::from_secs(10),
            metrics_interval: Some(Duration::from_secs(1)),
            health_emf: false,
            faults: None,
            cloudwatch: None,
            otlp: None,
            env_otlp: OtlpEnv::default(),
            audit_key: None,
            checkpoint_interval: Duration::from_secs(15 * 60),
            audit_store: AuditStore::default(),
            audit_retention: super::store::DEFAULT_RETENTION,
            archive: None,
            archive_key_pending: None,
        }
    }

    /// Reads the `CHIMERA_LOG_*` variables of the process environment (table above), and
    /// `RUST_LOG` when `CHIMERA_LOG_LEVEL` is not set. Other variables are ignored, whatever their
    /// names and values hold; a variable read whose value is not valid UTF-8 is an
    /// [`Error::InvalidSetting`] naming it.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_vars_os(std::env::vars_os())
    }

    /// Applies the process environment over this configuration, as [`from_env`](Self::from_env)
    /// reads it: every setting the environment names replaces the configuration's (levels per
    /// module as the table's note says). For a configuration read from a file:
    /// `toml::from_str::<LogConfig>(text)?.with_env()?` — the operator's environment wins over
    /// the file, as it does over code.
    pub fn with_env(self) -> Result<Self, Error> {
        self.apply_env(environment_variables(std::env::vars_os())?)
    }

    /// [`from_env`](Self::from_env) over the given variables, as the operating system holds
    /// them: a name is ours when its bytes start with `CHIMERA_LOG_`, so a name or value of
    /// someone else's that is not UTF-8 is no concern of ours.
    pub(crate) fn from_vars_os<I>(vars: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = (OsString, OsString)>,
    {
        LogConfig::new("logs").apply_env(environment_variables(vars)?)
    }

    /// Like [`from_env`](Self::from_env), from the given variables: for tests and for settings kept
    /// in a file. Variables not named `CHIMERA_LOG_*` are ignored, except `RUST_LOG`, read when
    /// `CHIMERA_LOG_LEVEL` is not given; an unknown `CHIMERA_LOG_*` variable is an error, so a
    /// misspelt setting is not silently ignored.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        LogConfig::new("logs").apply_env(vars)
    }

    /// Applies the variables over this configuration, as from the environment.
    pub(super) fn apply_env<I, K, V>(mut self, vars: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let (mut level_given, mut rust_log) = (false, None);
        for (key, value) in vars {
            let (key, value) = (key.as_ref(), value.as_ref());
            if key == RUST_LOG {
                rust_log = Some(value.to_owned());
            } else if let Some(variable) = otlp_variable(key) {
                self.env_otlp.set(variable, value)?;
            } else if key.starts_with(ENV_PREFIX) {
                let Some(&(variable, _)) = SETTINGS.iter().find(|(variable, _)| *variable == key) else {
                    return Err(unknown_variable(key));
                };
                level_given |= variable == LEVEL_VARIABLE;
                self = self.apply_setting(variable, value, Source::Environment)?;
            }
        }
        if let (false, Some(rust_log)) = (level_given, rust_log) {
            self.env_levels = Directives::parse(RUST_LOG, &rust_log)?;
        }
        self.settings_complete()
    }

    /// An error for a setting that needs another one that was not given: the archive's signing
    /// key without the archive.
    pub(super) fn settings_complete(self) -> Result<Self, Error> {
        if let (Some(key), None) = (&self.archive_key_pending, &self.archive) {
            return Err(Error::invalid(
                "CHIMERA_LOG_ARCHIVE_SIGNING_KEY",
                key.clone(),
                "signs the S3 archive's digests: set CHIMERA_LOG_ARCHIVE too",
            ));
        }
        Ok(self)
    }

    /// Sets the setting of the environment variable `variable` (one of [`SETTINGS`]) from its
    /// text; errors name `variable`. The levels given by the environment are kept apart, to win
    /// over code; a configuration file's are set as code sets them.
    pub(super) fn apply_setting(self, variable: &'static str, value: &str, source: Source) -> Result<Self, Error> {
        let environment = source == Source::Environment;
        Ok(match variable {
            "CHIMERA_LOG_DIR" => LogConfig { log_dir: value.into(), ..self },
            LEVEL_VARIABLE if environment => LogConfig { env_levels: Directives::parse(variable, value)?, ..self },
            LEVEL_VARIABLE => {
                LogConfig { levels: Levels::from_directives(&Directives::parse(variable, value)?), ..self }
            }
            "CHIMERA_LOG_CONSOLE" => self.console(parse_bool(variable, value)?),
            "CHIMERA_LOG_CONSOLE_LEVEL" if environment => {
                LogConfig { env_console_level: Some(parse_level(variable, value)?), ..self }
            }
            "CHIMERA_LOG_CONSOLE_LEVEL" => self.console_level(parse_level(variable, value)?),
            "CHIMERA_LOG_CLOUDWATCH_LEVEL" if environment => {
                LogConfig { env_cloudwatch_level: Some(parse_level(variable, value)?), ..self }
            }
            "CHIMERA_LOG_CLOUDWATCH_LEVEL" => self.cloudwatch_level(parse_level(variable, value)?),
            "CHIMERA_LOG_CONSOLE_TARGET" => self.console_target(match value.to_ascii_lowercase().as_str() {
                "stderr" => ConsoleTarget::Stderr,
                "stdout" => ConsoleTarget::Stdout,
                _ => return Err(Error::invalid(variable, value, "expected `stderr` or `stdout`")),
            }),
            "CHIMERA_LOG_CONSOLE_FORMAT" => self.console_format(match value.to_ascii_lowercase().as_str() {
                "json" => ConsoleFormat::Json,
                "pretty" => ConsoleFormat::Pretty,
                _ => return Err(Error::invalid(variable, value, "expected `json` or `pretty`")),
            }),
            "CHIMERA_LOG_MAX_BYTES" => self.max_bytes(parse_number(variable, value)?),
            "CHIMERA_LOG_GENERAL_BACKUPS" => self.general_backups(parse_number(variable, value)?),
            "CHIMERA_LOG_AUDIT_BACKUPS" => self.audit_backups(parse_number(variable, value)?),
            "CHIMERA_LOG_COMPRESS" => self.compress(parse_bool(variable, value)?),
            "CHIMERA_LOG_CAPTURE" => self.capture(parse_bool(variable, value)?),
            "CHIMERA_LOG_AUDIT_KEY" if value.is_empty() => {
                return Err(Error::invalid(variable, "", "an empty key protects nothing"))
            }
            "CHIMERA_LOG_AUDIT_KEY" => self.audit_key(value.as_bytes()),
            "CHIMERA_LOG_AUDIT_STORE" => self.audit_store(AuditStore::from_url(value)?),
            // The signing key may come before the archive it signs for (any order of variables).
            "CHIMERA_LOG_ARCHIVE" => {
                let archive = S3Archive::from_url(value)?;
                let archive = match &self.archive_key_pending {
                    Some(key) => archive.signing_key(key.clone()),
                    None => archive,
                };
                LogConfig { archive: Some(archive), archive_key_pending: None, ..self }
            }
            "CHIMERA_LOG_ARCHIVE_SIGNING_KEY" => match self.archive.clone() {
                Some(archive) => LogConfig { archive: Some(archive.signing_key(value.to_owned())), ..self },
                None => LogConfig { archive_key_pending: Some(value.to_owned()), ..self },
            },
            other => unreachable!("{other} is not in SETTINGS: callers look the name up there first"),
        })
    }

    /// Minimum level for the console and the general file; audit and route files take every
    /// event of their types regardless. A default level from the environment
    /// (`CHIMERA_LOG_LEVEL=warning`, read by [`from_env`](Self::from_env)) wins over this one.
    pub fn level(mut self, level: Level) -> Self {
        self.levels.set_default(level);
        self
    }

    /// The minimum level of the modules under `prefix` (`hyper` covers `hyper::client` and
    /// `hyper.client`; `::` and `.` both separate parts), for typed, ad-hoc and captured events
    /// alike; the longest matching prefix wins over [`level`](Self::level). The environment form
    /// is `CHIMERA_LOG_LEVEL=info,hyper=warning,state_engine=debug`; a directive of the
    /// environment for `prefix`, or for a prefix above it, wins over this one.
    pub fn level_for(mut self, prefix: &str, level: Level) -> Self {
        self.levels.set(prefix, level);
        self
    }

    /// Turns the console sink on or off.
    pub fn console(mut self, on: bool) -> Self {
        self.console = on;
        self
    }

    /// The console's own minimum level, on top of the module levels: an event below it is not
    /// written to the console, and still reaches `chimera.log` (and CloudWatch) if the module
    /// levels let it through. None by default. `CHIMERA_LOG_CONSOLE_LEVEL` wins over this.
    pub fn console_level(mut self, level: Level) -> Self {
        self.console_level = level;
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
    /// `tracing` subscriber with [`ChimeraLayer`](crate::ChimeraLayer) and the `log` bridge.
    /// When the application installed a global subscriber first, that subscriber is the capture
    /// if it holds a `ChimeraLayer`; if it does not, `init_logging` returns
    /// [`Error::SubscriberInstalled`](crate::Error::SubscriberInstalled) (add the layer, or set
    /// `capture(false)`). Without the feature it does nothing.
    pub fn capture(mut self, on: bool) -> Self {
        self.capture = on;
        self
    }

    /// Whether a line written inside a `tracing` span carries the span stack in its context
    /// (`"span": [{"name": …, fields…}, …]`, outermost first), for typed and ad-hoc events as
    /// for captured ones (feature `tracing`; on by default). Spans are seen through
    /// [`ChimeraLayer`](crate::ChimeraLayer) on a `tracing_subscriber::Registry`: the capture
    /// [`init_logging`](crate::init_logging) installs, or your registry with the layer added.
    /// Outside any span a line pays one thread-local read for it. Captured events carry their
    /// spans whatever this says (they always have).
    pub fn span_context(mut self, on: bool) -> Self {
        self.span_context = on;
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

    /// The write latency (a line's wait from the caller's queue to `chimera.log` or a route
    /// file) above which a window of [`watch_interval`](Self::watch_interval) is reported: when
    /// the window's p99 passes it, the writer writes a `log_write_slow` WARNING with the
    /// window's median, p99 and maximum. 10 ms by default (the design's "log write latency
    /// should be < 10 ms"). The figures of the last window are in `stats().write_latency`.
    pub fn slow_write_warning(mut self, threshold: Duration) -> Self {
        self.slow_write = threshold;
        self
    }

    /// The free space (bytes an unprivileged process may still write) on the log directory's
    /// file system below which the writer writes a `log_disk_low` WARNING, once every
    /// [`watch_interval`](Self::watch_interval) while it lasts. By default room for two
    /// rotations of every file (`2 × max_bytes × (2 + routes)`). The last reading is in
    /// `stats().disk_free_bytes`.
    pub fn disk_low_warning(mut self, bytes: u64) -> Self {
        self.disk_low = Some(bytes);
        self
    }

    /// How often the files' writer closes a window of write-latency figures and reads the free
    /// space (see [`slow_write_warning`](Self::slow_write_warning) and
    /// [`disk_low_warning`](Self::disk_low_warning)). 10 s by default; `Duration::MAX` turns
    /// both warnings off (and `stats().write_latency` stays empty).
    pub fn watch_interval(mut self, every: Duration) -> Self {
        self.watch_interval = every;
        self
    }

    /// Writes the `log_health` line's context as a CloudWatch Embedded Metric Format document
    /// (namespace `chimera-log`, dimension `LogDir`): the `_aws` metadata and the metrics
    /// (`EventsTotal`, `LinesDropped`, `WriteErrors`, `QueueHighWaterBytes`, `WriteLatencyP99`,
    /// `DiskFreeBytes`, `CloudWatchLagLines`, `AuditStoreLagRecords`, `AuditStoreDown`) as its
    /// root members, then every member of `stats()`. The line keeps the contract's shape; the
    /// CloudWatch shipper sends a `log_health` line's context as the event, so CloudWatch turns
    /// it into metrics with no agent. Off by default; takes effect with
    /// [`health_interval`](Self::health_interval).
    pub fn health_emf(mut self, on: bool) -> Self {
        self.health_emf = on;
        self
    }

    /// How often the logger publishes its figures through the `metrics` facade (feature
    /// `metrics`): counters set to their absolute values, gauges to their readings, the latency
    /// histograms' gains; also at every `flush()`, on the caller's thread. `None` publishes at
    /// flushes only. 1 s by default. Without the feature, nothing is published.
    pub fn metrics_interval(mut self, every: Option<Duration>) -> Self {
        self.metrics_interval = every;
        self
    }

    /// The free-space threshold in effect: the one set, or room for two rotations of every file.
    pub(crate) fn effective_disk_low(&self) -> u64 {
        self.disk_low.unwrap_or_else(|| {
            let files = 2 + self.routes.len() as u64;
            self.max_bytes.saturating_mul(2).saturating_mul(files)
        })
    }

    /// Ships every event at or above the level to CloudWatch Logs as well. Needs the cargo
    /// feature `cloudwatch`: without it, `init_logging` returns [`Error::CloudWatchUnavailable`].
    pub fn cloudwatch(mut self, cloudwatch: CloudWatchConfig) -> Self {
        self.cloudwatch = Some(cloudwatch);
        self
    }

    /// CloudWatch's own minimum level, on top of the module levels: the shipper reads
    /// `chimera.log` and leaves out the lines whose `level` is below it (they stay in the file).
    /// None by default; without [`cloudwatch`](Self::cloudwatch) it has no effect.
    /// `CHIMERA_LOG_CLOUDWATCH_LEVEL` wins over this.
    pub fn cloudwatch_level(mut self, level: Level) -> Self {
        self.cloudwatch_level = level;
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

    /// The console's minimum: the environment's, else the code's.
    pub(crate) fn effective_console_level(&self) -> Level {
        self.env_console_level.unwrap_or(self.console_level)
    }

    /// Ships `chimera.log` to an OTLP/HTTP receiver (an OpenTelemetry Collector, Grafana, any
    /// OTLP backend) as well. Needs the cargo feature `otlp`: without it, `init_logging` returns
    /// an [`Error::InvalidSetting`] naming `otlp`. The standard `OTEL_EXPORTER_OTLP_*` variables,
    /// read by [`from_env`](Self::from_env), win over what is set here, and configure the
    /// forwarder on their own when this is not called (docs/otlp.md).
    pub fn otlp(mut self, otlp: OtlpConfig) -> Self {
        self.otlp = Some(otlp);
        self
    }

    /// The OTLP forwarder's configuration: the environment's over the code's; `None` when no
    /// endpoint is configured.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub(crate) fn effective_otlp(&self) -> Option<OtlpConfig> {
        self.env_otlp.over(self.otlp.as_ref())
    }

    /// CloudWatch's minimum: the environment's, else the code's.
    #[cfg_attr(not(feature = "cloudwatch"), allow(dead_code))]
    pub(crate) fn effective_cloudwatch_level(&self) -> Level {
        self.env_cloudwatch_level.unwrap_or(self.cloudwatch_level)
    }

    /// The levels the logger starts with: those set in code, the environment's over them.
    pub(crate) fn effective_levels(&self) -> Levels {
        let mut levels = self.levels.clone();
        levels.overlay(&self.env_levels);
        levels
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
        if let Some(otlp) = self.effective_otlp() {
            otlp.validate()?;
            // Asked for in code: an error without the feature. The environment alone (set for
            // the application's own OpenTelemetry SDK) is not read in such a build.
            if !cfg!(feature = "otlp") {
                return Err(Error::invalid(
                    "otlp",
                    otlp.shown_endpoint(),
                    "the OTLP forwarder needs the `otlp` feature of chimera-log",
                ));
            }
        }
        if self.audit_key.as_ref().is_some_and(|key| key.0.is_empty()) {
            return Err(Error::invalid("audit_key", "", "an empty key protects nothing"));
        }
        if let Some(prefix) = self.levels.invalid_prefix() {
            return Err(Error::invalid(
                "level_for",
                prefix,
                "a directive names a module prefix (span and regex filters are not supported)",
            ));
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
        if self.metrics_interval == Some(Duration::ZERO) {
            return Err(Error::invalid(
                "metrics_interval",
                "0s",
                "the interval must be positive (None: at flushes only)",
            ));
        }
        if self.watch_interval.is_zero() {
            return Err(Error::invalid("watch_interval", "0s", "the interval must be positive"));
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
                layout::OTLP_CURSOR_FILE,
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

/// The levels' variable.
const LEVEL_VARIABLE: &str = "CHIMERA_LOG_LEVEL";

/// The levels' variable of env_logger and tracing-subscriber, read when [`LEVEL_VARIABLE`] is not set.
const RUST_LOG: &str = "RUST_LOG";

/// Whether a setting's text came from the environment or from a configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Environment,
    File,
}

/// Each setting read from text: its environment variable ([`LogConfig::from_env`]; any other
/// `CHIMERA_LOG_*` is an error) and its key in a configuration file (`Deserialize`): the
/// variable's name without `CHIMERA_LOG_`, lowercased.
pub(super) const SETTINGS: [(&str, &str); 16] = [
    ("CHIMERA_LOG_DIR", "dir"),
    (LEVEL_VARIABLE, "level"),
    ("CHIMERA_LOG_CONSOLE", "console"),
    ("CHIMERA_LOG_CONSOLE_LEVEL", "console_level"),
    ("CHIMERA_LOG_CLOUDWATCH_LEVEL", "cloudwatch_level"),
    ("CHIMERA_LOG_CONSOLE_TARGET", "console_target"),
    ("CHIMERA_LOG_CONSOLE_FORMAT", "console_format"),
    ("CHIMERA_LOG_MAX_BYTES", "max_bytes"),
    ("CHIMERA_LOG_GENERAL_BACKUPS", "general_backups"),
    ("CHIMERA_LOG_AUDIT_BACKUPS", "audit_backups"),
    ("CHIMERA_LOG_COMPRESS", "compress"),
    ("CHIMERA_LOG_AUDIT_KEY", "audit_key"),
    ("CHIMERA_LOG_AUDIT_STORE", "audit_store"),
    ("CHIMERA_LOG_CAPTURE", "capture"),
    ("CHIMERA_LOG_ARCHIVE", "archive"),
    ("CHIMERA_LOG_ARCHIVE_SIGNING_KEY", "archive_signing_key"),
];

/// The variables of `vars` that [`LogConfig::apply_env`] reads, as UTF-8: ours by the bytes of
/// their names, and `RUST_LOG` when `CHIMERA_LOG_LEVEL` is not among them (unset, nothing of it
/// is checked).
fn environment_variables<I>(vars: I) -> Result<Vec<(&'static str, String)>, Error>
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    let mut ours = Vec::new();
    let mut rust_log = None;
    for (name, value) in vars {
        if name == RUST_LOG {
            rust_log = Some(value);
            continue;
        }
        if let Some(variable) = name.to_str().and_then(otlp_variable) {
            let value = value
                .into_string()
                .map_err(|value| Error::invalid(variable, value.to_string_lossy(), "the value is not valid UTF-8"))?;
            ours.push((variable, value));
            continue;
        }
        if !name.as_encoded_bytes().starts_with(ENV_PREFIX.as_bytes()) {
            continue;
        }
        let name = name.into_string().map_err(|name| unknown_variable(&name.to_string_lossy()))?;
        let Some(&(setting, _)) = SETTINGS.iter().find(|(known, _)| *known == name) else {
            return Err(unknown_variable(&name));
        };
        let value = value
            .into_string()
            .map_err(|value| Error::invalid(setting, value.to_string_lossy(), "the value is not valid UTF-8"))?;
        ours.push((setting, value));
    }
    if let Some(value) = rust_log.filter(|_| !ours.iter().any(|(name, _)| *name == LEVEL_VARIABLE)) {
        let value = value
            .into_string()
            .map_err(|value| Error::invalid(RUST_LOG, value.to_string_lossy(), "the value is not valid UTF-8"))?;
        ours.push((RUST_LOG, value));
    }
    Ok(ours)
}

/// The OpenTelemetry variable `name` is, when the forwarder is built in (`otlp`): a build without
/// it leaves them to the application's own OpenTelemetry SDK, unread and unchecked.
fn otlp_variable(name: &str) -> Option<&'static str> {
    if !cfg!(feature = "otlp") {
        return None;
    }
    super::otlp::VARIABLES.iter().copied().find(|variable| *variable == name)
}

/// A `CHIMERA_LOG_*` variable that is none of [`SETTINGS`]: most likely a misspelt one,
/// which must not be ignored silently.
fn unknown_variable(name: &str) -> Error {
    let known: Vec<&str> = SETTINGS.iter().map(|(variable, _)| *variable).collect();
    Error::InvalidSetting {
        setting: "CHIMERA_LOG_*",
        value: name.to_owned(),
        reason: format!("unknown variable; known: {}", known.join(", ")),
    }
}

fn parse_bool(setting: &'static str, value: &str) -> Result<bool, Error> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::invalid(setting, value, "expected true or false")),
    }
}

fn parse_level(setting: &'static str, value: &str) -> Result<Level, Error> {
    value.parse().map_err(|e| Error::invalid(setting, value, format!("{e}")))
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
    use crate::levels::Threshold;

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
        assert_eq!(config.effective_levels(), crate::levels::Levels::new(Level::Warning));
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
    fn from_vars_reads_rust_log_when_chimera_log_level_is_not_set_and_ignores_it_when_it_is() {
        let threshold = |config: &LogConfig, module: &str| config.effective_levels().level_for(module);
        let config = LogConfig::from_vars([("RUST_LOG", "warn,hyper=trace")]).unwrap();
        assert_eq!(threshold(&config, "executor"), Threshold::at(Level::Warning));
        assert_eq!(threshold(&config, "hyper::client"), Threshold::at(Level::Trace));
        for vars in [
            [("RUST_LOG", "tower[request]=debug"), ("CHIMERA_LOG_LEVEL", "error")],
            [("CHIMERA_LOG_LEVEL", "error"), ("RUST_LOG", "tower[request]=debug")],
        ] {
            let config = LogConfig::from_vars(vars).unwrap();
            assert_eq!(
                threshold(&config, "tower"),
                Threshold::at(Level::Error),
                "CHIMERA_LOG_LEVEL wins, in any order"
            );
        }
        let error = LogConfig::from_vars([("RUST_LOG", "info,tower[request]=debug")]).unwrap_err();
        assert!(
            matches!(&error, Error::InvalidSetting { setting: "RUST_LOG", value, .. } if value == "tower[request]=debug"),
            "{error}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn from_vars_os_reads_rust_log_and_checks_its_bytes_only_when_it_is_read() {
        use std::os::unix::ffi::OsStringExt;
        let bytes = |b: &[u8]| OsString::from_vec(b.to_vec());
        let config = LogConfig::from_vars_os([(bytes(b"RUST_LOG"), bytes(b"off"))]).unwrap();
        assert_eq!(config.effective_levels().level_for("any"), Threshold::OFF);
        let error = LogConfig::from_vars_os([(bytes(b"RUST_LOG"), bytes(b"inf\xffo"))]).unwrap_err();
        assert!(matches!(error, Error::InvalidSetting { setting: "RUST_LOG", .. }), "{error}");
        let config = LogConfig::from_vars_os([
            (bytes(b"RUST_LOG"), bytes(b"inf\xffo")),
            (bytes(b"CHIMERA_LOG_LEVEL"), bytes(b"debug")),
        ])
        .unwrap();
        assert_eq!(config.effective_levels().level_for("any"), Threshold::at(Level::Debug));
    }

    #[test]
    fn levels_from_the_environment_win_over_levels_set_in_code_after_it() {
        let config = LogConfig::from_vars([("CHIMERA_LOG_LEVEL", "warning,hyper=info")])
            .unwrap()
            .level(Level::Debug)
            .level_for("hyper::client", Level::Trace)
            .level_for("noisy", Level::Error);
        let levels = config.effective_levels();
        assert_eq!(levels.level_for("executor"), Threshold::at(Level::Warning), "the environment's default");
        assert_eq!(levels.level_for("hyper::client"), Threshold::at(Level::Info), "under the environment's hyper");
        assert_eq!(levels.level_for("noisy"), Threshold::at(Level::Error), "not named by the environment");
        let levels =
            LogConfig::from_vars([("CHIMERA_LOG_LEVEL", "hyper=info")]).unwrap().level(Level::Debug).effective_levels();
        assert_eq!(levels.level_for("executor"), Threshold::at(Level::Debug), "no default named: the code's");
    }

    #[test]
    fn console_and_cloudwatch_levels_are_read_from_the_environment_which_wins_over_code() {
        let config =
            LogConfig::from_vars([("CHIMERA_LOG_CONSOLE_LEVEL", "warning"), ("CHIMERA_LOG_CLOUDWATCH_LEVEL", "ERROR")])
                .unwrap()
                .console_level(Level::Debug)
                .cloudwatch_level(Level::Info);
        assert_eq!(
            (config.effective_console_level(), config.effective_cloudwatch_level()),
            (Level::Warning, Level::Error)
        );
        let config = LogConfig::new("l").console_level(Level::Info).cloudwatch_level(Level::Critical);
        assert_eq!(
            (config.effective_console_level(), config.effective_cloudwatch_level()),
            (Level::Info, Level::Critical)
        );
        let error = LogConfig::from_vars([("CHIMERA_LOG_CLOUDWATCH_LEVEL", "loud")]).unwrap_err();
        assert!(matches!(error, Error::InvalidSetting { setting: "CHIMERA_LOG_CLOUDWATCH_LEVEL", .. }), "{error}");
    }

    #[test]
    fn from_vars_rejects_an_unknown_chimera_variable() {
        let error = LogConfig::from_vars([("CHIMERA_LOG_LEVLE", "info")]).unwrap_err();
        assert!(error.to_string().contains("CHIMERA_LOG_LEVLE"), "{error}");
    }

    #[test]
    fn every_variable_from_env_knows_is_read_by_from_vars() {
        let value = |name: &str| match name {
            "CHIMERA_LOG_LEVEL" | "CHIMERA_LOG_CONSOLE_LEVEL" | "CHIMERA_LOG_CLOUDWATCH_LEVEL" => "info",
            "CHIMERA_LOG_CONSOLE" | "CHIMERA_LOG_COMPRESS" | "CHIMERA_LOG_CAPTURE" => "true",
            "CHIMERA_LOG_CONSOLE_TARGET" => "stdout",
            "CHIMERA_LOG_CONSOLE_FORMAT" => "json",
            "CHIMERA_LOG_MAX_BYTES" | "CHIMERA_LOG_GENERAL_BACKUPS" | "CHIMERA_LOG_AUDIT_BACKUPS" => "3",
            "CHIMERA_LOG_AUDIT_STORE" => "none",
            "CHIMERA_LOG_ARCHIVE" => "s3://bucket/prefix",
            _ => "x",
        };
        for (name, _) in SETTINGS {
            // The signing key signs for an archive: given with one.
            let mut vars = vec![(name, value(name))];
            if name == "CHIMERA_LOG_ARCHIVE_SIGNING_KEY" {
                vars.push(("CHIMERA_LOG_ARCHIVE", value("CHIMERA_LOG_ARCHIVE")));
            }
            if let Err(error) = LogConfig::from_vars(vars) {
                panic!("{name}: {error}");
            }
        }
    }

    #[test]
    fn the_archives_signing_key_may_come_before_the_archive_and_alone_is_an_error_naming_it() {
        let key = ("CHIMERA_LOG_ARCHIVE_SIGNING_KEY", "/keys/digest.pem");
        let archive = ("CHIMERA_LOG_ARCHIVE", "s3://audit/chimera");
        for vars in [[key, archive], [archive, key]] {
            let config = LogConfig::from_vars(vars).unwrap();
            let expected = S3Archive::from_url("s3://audit/chimera").unwrap().signing_key("/keys/digest.pem");
            assert_eq!(config.archive, Some(expected), "{vars:?}");
        }
        let error = LogConfig::from_vars([key]).unwrap_err();
        assert!(matches!(error, Error::InvalidSetting { setting: "CHIMERA_LOG_ARCHIVE_SIGNING_KEY", .. }), "{error}");
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
