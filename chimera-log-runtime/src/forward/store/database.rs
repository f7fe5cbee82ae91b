//! The `Database` interface SQLite and PostgreSQL implement, opening one, reading one back (`StoreReader`), and what a start asks of the store (see the folder's table of contents).

use std::fmt;
use std::path::{Path, PathBuf};

use super::row::{Inserted, Row, StoredRecord};

use crate::config::store::{AuditStore, Target};

/// A failure of the database.
#[derive(Debug)]
pub struct StoreError(pub(crate) String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

/// What the archiver needs of a database. Implementations insert rows idempotently, in one
/// transaction per call, and never overwrite a row.
pub(crate) trait Database: Send {
    /// The highest `seq` stored for `stream`; 0 when none.
    fn high_water(&mut self, stream: &str) -> Result<u64, StoreError>;

    /// The highest `seq` stored for `stream` and its chain value (as stored, hex); `None` when
    /// none.
    fn head(&mut self, stream: &str) -> Result<Option<(u64, String)>, StoreError>;

    /// Inserts `rows` (ascending `seq`) in one transaction. A row whose `(stream, seq)` is
    /// present already is left as it is: counted as a duplicate when its chain is the same, as
    /// a conflict (its `seq` returned) when it differs.
    fn insert(&mut self, stream: &str, rows: &[Row]) -> Result<Inserted, StoreError>;

    /// Deletes the rows of every stream whose timestamp is before `cutoff` (RFC 3339, UTC);
    /// returns how many.
    fn expire(&mut self, cutoff: &str) -> Result<u64, StoreError>;

    /// The streams present, in name order.
    fn streams(&mut self) -> Result<Vec<String>, StoreError>;

    /// Calls `each` with the rows of `stream` in `seq` order, within `filter`.
    fn scan(
        &mut self,
        stream: &str,
        filter: &ScanFilter,
        each: &mut dyn FnMut(StoredRecord) -> bool,
    ) -> Result<(), StoreError>;
}

/// Which rows a [`StoreReader`] scan returns (each bound optional; all given bounds apply), and
/// how much of each it reads.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ScanFilter {
    /// Records longer than this many bytes are not read: their row comes with an empty `record`
    /// and [`StoredRecord::is_skipped`], its length measured by the database without reading it
    /// (so a row of any size costs no more memory than the cap). `None`: every record is read.
    pub max_record: Option<u64>,
    /// Only this event.
    pub event: Option<String>,
    /// Only rows whose identity value (the `block_number`, or the event's `key` field) is this.
    pub identity: Option<String>,
    /// Only rows whose `context.block_number` is this, written as in the line (`42`), whatever
    /// their identity field.
    pub block_number: Option<String>,
    /// Only rows at or after this RFC 3339 time (any offset, any precision).
    pub since: Option<String>,
    /// Only rows before this RFC 3339 time.
    pub until: Option<String>,
}

impl ScanFilter {
    /// Only this event.
    pub fn event(mut self, event: impl Into<String>) -> Self {
        self.event = Some(event.into());
        self
    }

    /// Only this identity value.
    pub fn identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = Some(identity.into());
        self
    }

    /// Only rows whose `context.block_number` is this (as written in the line).
    pub fn block_number(mut self, block_number: impl Into<String>) -> Self {
        self.block_number = Some(block_number.into());
        self
    }

    /// Only rows at or after this RFC 3339 UTC timestamp.
    pub fn since(mut self, since: impl Into<String>) -> Self {
        self.since = Some(since.into());
        self
    }

    /// Only rows before this RFC 3339 UTC timestamp.
    pub fn until(mut self, until: impl Into<String>) -> Self {
        self.until = Some(until.into());
        self
    }

    /// Reads no record longer than `bytes` (see [`max_record`](Self::max_record)).
    pub fn max_record(mut self, bytes: u64) -> Self {
        self.max_record = Some(bytes);
        self
    }
}

/// Opens the database at `target`, creating its table when missing.
pub(crate) fn open(target: &Target) -> Result<Box<dyn Database>, StoreError> {
    match target {
        #[cfg(feature = "sqlite")]
        Target::Sqlite(path) => Ok(Box::new(super::sqlite::Sqlite::open(path)?)),
        #[cfg(not(feature = "sqlite"))]
        Target::Sqlite(_) => Err(StoreError(crate::config::store::SQLITE_NEEDED.into())),
        #[cfg(feature = "postgres")]
        Target::Postgres(url) => Ok(Box::new(super::postgres::Postgres::connect(url)?)),
        #[cfg(not(feature = "postgres"))]
        Target::Postgres(_) => Err(StoreError("PostgreSQL needs the `postgres` feature of chimera-log".into())),
        Target::Default | Target::None => Err(StoreError("no database configured".into())),
    }
}

/// Reads an audit store: what `chimera-log verify --store` and `query --store` use.
pub struct StoreReader {
    database: Box<dyn Database>,
}

impl fmt::Debug for StoreReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreReader").finish_non_exhaustive()
    }
}

impl StoreReader {
    /// Opens the store named by `url`: `sqlite:PATH`, a path to an SQLite file (with the
    /// `sqlite` feature, on by default), or `postgres://…` (with the `postgres` feature).
    ///
    /// Errors: the database cannot be opened or reached (the reason says which), an SQLite
    /// path that does not exist (a reader never creates a store), or a store whose feature is
    /// off (naming it).
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let target = match AuditStore::from_url(url) {
            Ok(AuditStore(Target::None)) | Err(_) => Target::Sqlite(PathBuf::from(url)),
            Ok(AuditStore(target)) => target,
        };
        let database: Box<dyn Database> = match &target {
            #[cfg(feature = "sqlite")]
            Target::Sqlite(path) => {
                if !path.is_file() {
                    return Err(StoreError(format!("{}: no such SQLite file", path.display())));
                }
                Box::new(super::sqlite::Sqlite::open_read_only(path)?)
            }
            #[cfg(feature = "postgres")]
            Target::Postgres(url) => Box::new(super::postgres::Postgres::connect_reader(url)?),
            other => open(other)?,
        };
        Ok(StoreReader { database })
    }

    /// The streams in the store (one per logger: `<host>/<log_dir>` by default), in name order.
    pub fn streams(&mut self) -> Result<Vec<String>, StoreError> {
        self.database.streams()
    }

    /// Calls `each` with the records of `stream` in `seq` order, within `filter`, until it
    /// returns `false`.
    pub fn scan(
        &mut self,
        stream: &str,
        filter: &ScanFilter,
        mut each: impl FnMut(StoredRecord) -> bool,
    ) -> Result<(), StoreError> {
        let filter = ScanFilter {
            since: filter.since.as_deref().map(stored_time_form),
            until: filter.until.as_deref().map(stored_time_form),
            ..filter.clone()
        };
        self.database.scan(stream, &filter, &mut each)
    }
}

/// The newest record of `stream` in the store `target`, asked on a thread of its own and waited
/// for at most `wait` (a database that does not answer must not hold up a start; the caller may
/// be inside an async runtime, where a blocking client must not run). `Ok(None)`: the store
/// holds nothing of the stream (or has no database file yet).
pub(crate) fn stored_head(
    target: &Target,
    stream: &str,
    wait: std::time::Duration,
) -> Result<Option<crate::audit::ChainHead>, StoreError> {
    if let Target::Sqlite(path) = target {
        // Not created here: a start whose store was never opened has stored nothing.
        if std::fs::symlink_metadata(path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
            return Ok(None);
        }
    }
    let (target, stream) = (target.clone(), stream.to_owned());
    let (sender, receiver) = std::sync::mpsc::channel();
    crate::thread::spawn("chimera-log-store-head", move || {
        let head = open(&target).and_then(|mut database| database.head(&stream));
        let _ = sender.send(head);
    })
    .map_err(|e| StoreError(format!("starting a thread to ask the store: {e}")))?;
    let answer =
        receiver.recv_timeout(wait).map_err(|_| StoreError(format!("no answer within {} ms", wait.as_millis())))??;
    match answer {
        None => Ok(None),
        Some((seq, chain)) => match crate::audit::parse_chain(&chain) {
            Some(chain) => Ok(Some(crate::audit::ChainHead { seq, chain })),
            None => Err(StoreError(format!("the chain value of seq {seq} is not 64 hex digits: {chain:?}"))),
        },
    }
}

/// An RFC 3339 time in the form the rows hold (UTC, microseconds, `Z`), so that comparing text
/// compares times; text that does not parse is left as it is.
fn stored_time_form(text: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(text) {
        Ok(time) => time.with_timezone(&chrono::Utc).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        Err(_) => text.to_owned(),
    }
}

/// The stream a logger in `log_dir` writes: `<host>/<absolute log_dir>`.
pub(crate) fn default_stream(log_dir: &Path) -> String {
    let dir = std::fs::canonicalize(log_dir).unwrap_or_else(|_| log_dir.to_path_buf());
    format!("{}/{}", hostname(), dir.display().to_string().trim_start_matches('/'))
}

fn hostname() -> String {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: `buf` is writable for its whole length, which is what we pass.
        if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            if let Ok(name) = std::str::from_utf8(&buf[..end]) {
                if !name.is_empty() {
                    return name.to_owned();
                }
            }
        }
    }
    "localhost".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse_and_a_bad_one_names_the_setting() {
        assert!(AuditStore::from_url("none").unwrap() == AuditStore::none());
        assert!(AuditStore::from_url("sqlite:/x/a.db").unwrap() == AuditStore::sqlite("/x/a.db"));
        assert!(AuditStore::from_url("postgres://u@h/db").unwrap() == AuditStore::postgres("postgres://u@h/db"));
        let error = AuditStore::from_url("mysql://h").unwrap_err().to_string();
        assert!(error.contains("CHIMERA_LOG_AUDIT_STORE") && error.contains("mysql://h"), "{error}");
        assert!(AuditStore::from_url("sqlite:").is_err());
    }

    #[test]
    fn filter_times_are_compared_in_the_rows_form_whatever_their_offset_and_precision() {
        assert_eq!(stored_time_form("2027-01-15T08:01:00Z"), "2027-01-15T08:01:00.000000Z");
        assert_eq!(stored_time_form("2027-01-15T10:01:00.5+02:00"), "2027-01-15T08:01:00.500000Z");
        assert_eq!(stored_time_form("not a time"), "not a time");
    }

    /// A build without `sqlite` refuses an SQLite store with the feature's name, whether it is
    /// opened to write or to read (the file need not exist: the feature is what is missing).
    #[cfg(not(feature = "sqlite"))]
    #[test]
    fn without_the_sqlite_feature_an_sqlite_store_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let error = open(&Target::Sqlite(path.clone())).err().unwrap().to_string();
        assert!(error.contains("`sqlite` feature"), "{error}");
        let error = StoreReader::open(path.to_str().unwrap()).unwrap_err().to_string();
        assert!(error.contains("`sqlite` feature"), "{error}");
        assert!(!path.exists(), "nothing is created");
    }

    /// `max_record` is applied by the query itself: a row over it comes back without its record
    /// (never fetched from the database), with its length, and a derived column over it as a
    /// value no record gives.
    #[cfg(feature = "sqlite")]
    #[test]
    fn a_scan_never_fetches_a_record_or_column_longer_than_max_record() {
        use crate::audit::{seal, ChainHead, ChainKey};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let mut head = ChainHead::default();
        let rows: Vec<Row> = ["short", &"long".repeat(1_000), "short again"]
            .iter()
            .map(|protocol| {
                let body = format!(
                    r#"{{"timestamp":"2026-01-02T03:04:05.000006Z","level":"INFO","module":"m","event":"e","context":{{"block_number":1,"protocol":"{protocol}"}}}}"#
                );
                let mut line = Vec::new();
                seal(format!("{body}\n").as_bytes(), &mut head, &ChainKey::unkeyed(), &mut line);
                Row::from_line(&line).unwrap()
            })
            .collect();
        let mut store = open(&Target::Sqlite(path.clone())).unwrap();
        assert_eq!(store.insert("s", &rows).unwrap().stored, 3);
        drop(store);
        let read = |filter: &ScanFilter| {
            let mut read = Vec::new();
            StoreReader::open(path.to_str().unwrap())
                .unwrap()
                .scan("s", filter, |row| {
                    read.push(row);
                    true
                })
                .unwrap();
            read
        };
        let capped = read(&ScanFilter::default().max_record(1_024));
        let lengths: Vec<u64> = rows.iter().map(|row| row.record.len() as u64).collect();
        assert_eq!(capped.iter().map(|row| row.record_length).collect::<Vec<_>>(), lengths);
        assert_eq!(capped.iter().map(StoredRecord::is_skipped).collect::<Vec<_>>(), [false, true, false]);
        assert_eq!((capped[0].record.as_str(), capped[1].record.as_str()), (rows[0].record.as_str(), ""));
        assert!(capped.iter().all(|row| row.altered_columns().is_empty()));
        // Without a cap, every record is read.
        let whole = read(&ScanFilter::default());
        assert!(whole.iter().zip(&rows).all(|(read, row)| !read.is_skipped() && read.record == row.record));
        // A column edited past the cap is not fetched either, and is not the record's.
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection.execute("UPDATE chimera_audit SET event = ?1 WHERE seq = 1", ["e".repeat(2_000)]).unwrap();
        drop(connection);
        let edited = read(&ScanFilter::default().max_record(1_024));
        assert_eq!(edited[0].altered_columns(), ["event"]);
        assert!(!edited[0].derived.event.as_deref().unwrap().starts_with("ee"), "not fetched");
    }

    #[test]
    fn a_postgres_password_never_reaches_debug_output() {
        let debug = format!("{:?}", AuditStore::postgres("postgres://bot:hunter2@db:5432/audit"));
        assert_eq!(debug, "AuditStore::postgres(postgres://bot:***@db:5432/audit)");
    }
}
