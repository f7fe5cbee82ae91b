//! Where the audit store keeps the audit trail ([`AuditStore`]): the setting only; the store
//! itself (the archiver and the databases) is a forwarder (`forward::store`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::dir::layout::STORE_FILE as DEFAULT_FILE;
use crate::error::Error;

/// Where the audit store keeps the audit trail: set with
/// [`LogConfig::audit_store`](crate::LogConfig::audit_store).
#[derive(Clone, PartialEq, Eq)]
pub struct AuditStore(pub(crate) Target);

#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// SQLite at `log_dir/audit.db`.
    Default,
    Sqlite(PathBuf),
    Postgres(String),
    None,
}

impl AuditStore {
    /// An SQLite database at `path` (created if missing; WAL mode). A relative path is relative
    /// to the working directory, as for any file. Needs the `sqlite` feature, on by default (an
    /// error at start without it).
    pub fn sqlite(path: impl Into<PathBuf>) -> Self {
        AuditStore(Target::Sqlite(path.into()))
    }

    /// A PostgreSQL database (`postgres://user:password@host:port/db`), shared by a fleet: each
    /// logger writes its own stream. Needs the `postgres` feature (an error at start without it).
    pub fn postgres(url: impl Into<String>) -> Self {
        AuditStore(Target::Postgres(url.into()))
    }

    /// No audit store: the audit trail lives in the files only, and retention deletes audit
    /// backups by count alone.
    pub fn none() -> Self {
        AuditStore(Target::None)
    }

    /// Parses the `CHIMERA_LOG_AUDIT_STORE` form: `sqlite:PATH`, `postgres://…` (or
    /// `postgresql://…`), or `none`.
    ///
    /// Errors: any other text, naming the setting.
    pub fn from_url(text: &str) -> Result<Self, Error> {
        if text.eq_ignore_ascii_case("none") {
            Ok(AuditStore::none())
        } else if let Some(path) = text.strip_prefix("sqlite:").filter(|path| !path.is_empty()) {
            Ok(AuditStore::sqlite(path))
        } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Ok(AuditStore::postgres(text))
        } else {
            Err(Error::invalid("CHIMERA_LOG_AUDIT_STORE", text, "expected `sqlite:PATH`, `postgres://...` or `none`"))
        }
    }

    /// The database this store writes to for a logger in `log_dir`; `None` for [`none`](Self::none).
    pub(crate) fn resolve(&self, log_dir: &Path) -> Option<Target> {
        match &self.0 {
            Target::Default => Some(Target::Sqlite(log_dir.join(DEFAULT_FILE))),
            Target::None => None,
            other => Some(other.clone()),
        }
    }
}

impl Default for AuditStore {
    /// SQLite at `log_dir/audit.db`. A build without the `sqlite` feature refuses it at start,
    /// as it does any SQLite store: such a build names its store (often [`none`](Self::none)).
    fn default() -> Self {
        AuditStore(Target::Default)
    }
}

impl fmt::Debug for AuditStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Target::Default => f.write_str("AuditStore::sqlite(log_dir/audit.db)"),
            Target::Sqlite(path) => write!(f, "AuditStore::sqlite({})", path.display()),
            // The URL may hold a password.
            Target::Postgres(url) => write!(f, "AuditStore::postgres({})", redact_password(url)),
            Target::None => f.write_str("AuditStore::none()"),
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&AuditStore(self.clone()), f)
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub(crate) fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((credentials, host)) = rest.split_once('@') else { return url.to_owned() };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// What a build without the `sqlite` feature says when asked for an SQLite store (the default
/// one included).
pub(crate) const SQLITE_NEEDED: &str = "SQLite needs the `sqlite` feature of chimera-log (on by default)";

/// Rows older than this are deleted: three years and a day (the original's "Database: 3 years").
pub(crate) const DEFAULT_RETENTION: Duration = Duration::from_secs(1_096 * 24 * 60 * 60);
