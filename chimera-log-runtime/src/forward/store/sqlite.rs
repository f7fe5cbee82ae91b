//! The SQLite audit store: embedded (the library is compiled in), one file, WAL mode so that a
//! reader (`chimera-log query --store`) never blocks the archiver.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension};

use super::{Database, DerivedColumns, Inserted, Row, ScanFilter, StoreError, StoredRecord};
use crate::dir::safe_fs::{self, Owner};

/// What SQLite appends to a database's name for the files it opens beside it, by name and on its
/// own: the write-ahead log, its index (shared memory), and the rollback journal (used before
/// WAL mode is set, and replayed into the database when a crash left it "hot").
const JOURNALS: [&str; 3] = ["-wal", "-shm", "-journal"];

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS chimera_audit (
    stream     TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    chain      TEXT    NOT NULL,
    timestamp  TEXT    NOT NULL,
    level      TEXT    NOT NULL,
    module     TEXT    NOT NULL,
    event      TEXT    NOT NULL,
    key_name   TEXT,
    key_value  TEXT,
    block_number TEXT,
    record     TEXT    NOT NULL,
    PRIMARY KEY (stream, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chimera_audit_event ON chimera_audit (stream, event, seq);
CREATE INDEX IF NOT EXISTS chimera_audit_identity ON chimera_audit (stream, key_value, seq);
CREATE INDEX IF NOT EXISTS chimera_audit_block ON chimera_audit (stream, block_number, seq);
CREATE INDEX IF NOT EXISTS chimera_audit_time ON chimera_audit (timestamp);
";

pub(crate) struct Sqlite {
    connection: Connection,
}

fn failed(what: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |error| StoreError(format!("SQLite: {what}: {error}"))
}

/// Checks the database at `path` and each of its journals, as SQLite would open them: nothing
/// there, or a regular file (not a link) with no other name, owned as `owner` says. SQLite opens
/// the journals itself, following no link but accepting a hard link, so a link planted at
/// `audit.db-wal` had it write its log into a file elsewhere: such a file is refused instead,
/// naming it, and the store stays down until it is gone (the records wait in the files).
fn check_files(path: &Path, owner: Owner) -> Result<(), StoreError> {
    let journals = JOURNALS.iter().map(|suffix| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    });
    for file in std::iter::once(path.to_owned()).chain(journals) {
        safe_fs::check_unshared_or_absent(&file, owner)
            .map_err(|e| StoreError(format!("SQLite: opening {}: {e}", path.display())))?;
    }
    Ok(())
}

/// `path` with its directory resolved (absolute, without links) and its last component as it
/// is. SQLite's `SQLITE_OPEN_NOFOLLOW` refuses a link anywhere in the path, and a link among the
/// directories is an ordinary deployment (`/var/log/app` -> a data volume); a link at the
/// database's own name stays refused. The path as given when its directory cannot be resolved
/// (it is missing: the open then fails, and is tried again later).
fn resolve_directory(path: &Path) -> PathBuf {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else { return path.to_owned() };
    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    std::fs::canonicalize(parent).map_or_else(|_| path.to_owned(), |parent| parent.join(name))
}

impl Sqlite {
    /// Opens `path` read-only, for a reader (`chimera-log verify --store`): it creates nothing
    /// and changes no setting, so a store it may only read is readable.
    pub(crate) fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        use rusqlite::OpenFlags;
        let path = &resolve_directory(path);
        // A reader opens the index (`-shm`) for writing too, when it may.
        check_files(path, Owner::Anyone)?;
        let flags =
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NOFOLLOW | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(path, flags)
            .map_err(|e| StoreError(format!("SQLite: opening {}: {e}", path.display())))?;
        connection.busy_timeout(Duration::from_secs(5)).map_err(failed("setting the busy timeout"))?;
        let tables: i64 = connection
            .query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'chimera_audit'", [], |r| {
                r.get(0)
            })
            .map_err(|e| StoreError(format!("SQLite: {} is not a database: {e}", path.display())))?;
        if tables == 0 {
            return Err(StoreError(format!("SQLite: {} holds no chimera_audit table", path.display())));
        }
        Ok(Sqlite { connection })
    }

    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        use rusqlite::OpenFlags;
        let path = &resolve_directory(path);
        let opening = |e: &dyn std::fmt::Display| StoreError(format!("SQLite: opening {}: {e}", path.display()));
        check_files(path, Owner::Us)?;
        // Made here, `0640` like the logs it copies and never through a link; SQLite gives its
        // `-wal` and `-shm` files the database file's mode.
        match safe_fs::create_new(path, safe_fs::FILE_MODE, false) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(opening(&e)),
            _ => {}
        }
        let flags =
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NOFOLLOW | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(path, flags).map_err(|e| opening(&e))?;
        // A reader holding the database briefly must not fail the archiver's transaction.
        connection.busy_timeout(Duration::from_secs(5)).map_err(failed("setting the busy timeout"))?;
        // WAL: readers and the writer do not block each other. FULL: a commit is on disk before
        // the archiver saves its cursor past the rows (and retention may then delete their
        // backup); NORMAL would let a power loss roll back commits the cursor has passed, losing
        // those records for good. One fsync per batch.
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .and_then(|()| connection.pragma_update(None, "synchronous", "FULL"))
            .map_err(failed("setting WAL mode"))?;
        connection.execute_batch(SCHEMA).map_err(failed("creating the table"))?;
        // SQLite has opened its journals by now: one planted between the check and the open
        // is not written to past this start.
        check_files(path, Owner::Us)?;
        Ok(Sqlite { connection })
    }
}

impl Database for Sqlite {
    fn high_water(&mut self, stream: &str) -> Result<u64, StoreError> {
        let max: Option<i64> = self
            .connection
            .query_row("SELECT MAX(seq) FROM chimera_audit WHERE stream = ?1", [stream], |row| row.get(0))
            .map_err(failed("reading the high-water mark"))?;
        Ok(max.map_or(0, |seq| seq as u64))
    }

    fn head(&mut self, stream: &str) -> Result<Option<(u64, String)>, StoreError> {
        self.connection
            .query_row(
                "SELECT seq, chain FROM chimera_audit WHERE stream = ?1 ORDER BY seq DESC LIMIT 1",
                [stream],
                |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, String>(1)?)),
            )
            .optional()
            .map_err(failed("reading the newest record"))
    }

    fn insert(&mut self, stream: &str, rows: &[Row]) -> Result<Inserted, StoreError> {
        let transaction = self.connection.transaction().map_err(failed("beginning a transaction"))?;
        let mut inserted = Inserted::default();
        {
            let mut insert = transaction
                .prepare_cached(
                    "INSERT INTO chimera_audit (stream, seq, chain, timestamp, level, module, event, key_name, \
                     key_value, block_number, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                     ON CONFLICT DO NOTHING",
                )
                .map_err(failed("preparing the insert"))?;
            let mut existing = transaction
                .prepare_cached("SELECT chain FROM chimera_audit WHERE stream = ?1 AND seq = ?2")
                .map_err(failed("preparing the lookup"))?;
            for row in rows {
                let changed = insert
                    .execute(params![
                        stream,
                        row.seq as i64,
                        row.chain,
                        row.timestamp,
                        row.level,
                        row.module,
                        row.event,
                        row.key_name,
                        row.key_value,
                        row.block_number,
                        row.record
                    ])
                    .map_err(failed("inserting"))?;
                if changed == 1 {
                    inserted.stored += 1;
                    continue;
                }
                let chain: Option<String> = existing
                    .query_row(params![stream, row.seq as i64], |r| r.get(0))
                    .optional()
                    .map_err(failed("reading a present row"))?;
                if chain.as_deref() == Some(row.chain.as_str()) {
                    inserted.duplicates += 1;
                } else {
                    inserted.conflicts.push(row.seq);
                }
            }
        }
        transaction.commit().map_err(failed("committing"))?;
        Ok(inserted)
    }

    fn expire(&mut self, cutoff: &str) -> Result<u64, StoreError> {
        let deleted = self
            .connection
            .execute("DELETE FROM chimera_audit WHERE timestamp < ?1", [cutoff])
            .map_err(failed("deleting expired rows"))?;
        Ok(deleted as u64)
    }

    fn streams(&mut self) -> Result<Vec<String>, StoreError> {
        let mut statement = self
            .connection
            .prepare("SELECT DISTINCT stream FROM chimera_audit ORDER BY stream")
            .map_err(failed("listing streams"))?;
        let streams = statement
            .query_map([], |row| row.get(0))
            .and_then(|rows| rows.collect::<Result<Vec<String>, _>>())
            .map_err(failed("listing streams"))?;
        Ok(streams)
    }

    fn scan(
        &mut self,
        stream: &str,
        filter: &ScanFilter,
        each: &mut dyn FnMut(StoredRecord) -> bool,
    ) -> Result<(), StoreError> {
        // A value over the cap is never read: `octet_length` of a column is taken from the row's
        // header, without its content, so a row of any size costs at most the cap. A derived
        // column over the cap cannot be one the record gives: an empty blob stands for it.
        let within = |column: &str| format!("CASE WHEN ?7 IS NULL OR octet_length({column}) <= ?7 THEN {column} END");
        let derived = |column: &str| {
            format!("CASE WHEN ?7 IS NULL OR coalesce(octet_length({column}) <= ?7, 1) THEN {column} ELSE X'' END")
        };
        let mut statement = self
            .connection
            .prepare(&format!(
                "SELECT seq, chain, octet_length(record), {}, {}, {}, {}, {}, {}, {}, {} FROM chimera_audit \
                 WHERE stream = ?1 AND (?2 IS NULL OR event = ?2) AND (?3 IS NULL OR key_value = ?3) \
                 AND (?4 IS NULL OR timestamp >= ?4) AND (?5 IS NULL OR timestamp < ?5) \
                 AND (?6 IS NULL OR block_number = ?6) ORDER BY seq",
                within("record"),
                derived("timestamp"),
                derived("level"),
                derived("module"),
                derived("event"),
                derived("key_name"),
                derived("key_value"),
                derived("block_number"),
            ))
            .map_err(failed("preparing the scan"))?;
        let cap = filter.max_record.map(|cap| i64::try_from(cap).unwrap_or(i64::MAX));
        let mut rows = statement
            .query(params![stream, filter.event, filter.identity, filter.since, filter.until, filter.block_number, cap])
            .map_err(failed("scanning"))?;
        while let Some(row) = rows.next().map_err(failed("scanning"))? {
            let seq: i64 = row.get(0).map_err(failed("reading seq"))?;
            let length: Option<i64> = row.get(2).map_err(failed("reading the record's length"))?;
            // Bytes that are not UTF-8 (or a blob) are read as well as they can be, so that the
            // chain check reports them rather than the scan failing.
            let record = match row.get_ref(3).map_err(failed("reading record"))? {
                ValueRef::Null => None,
                ValueRef::Text(bytes) | ValueRef::Blob(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
                other => as_text(other),
            };
            let text = |index: usize| row.get_ref(index).map(as_text).map_err(failed("reading a column"));
            let record = StoredRecord {
                stream: stream.to_owned(),
                seq: seq as u64,
                chain: row.get(1).map_err(failed("reading chain"))?,
                record_length: length.unwrap_or(0).max(0) as u64,
                skipped: record.is_none(),
                record: record.unwrap_or_default(),
                derived: DerivedColumns {
                    timestamp: text(4)?,
                    level: text(5)?,
                    module: text(6)?,
                    event: text(7)?,
                    key_name: text(8)?,
                    key_value: text(9)?,
                    block_number: text(10)?,
                    record_json: None,
                },
            };
            if !each(record) {
                break;
            }
        }
        Ok(())
    }
}

/// A column as text: SQLite lets any column hold any type, and an edit may have stored a number
/// or a blob where the archiver writes text. A number reads as its digits (as SQLite would
/// convert it); a blob as a text no record gives (a NUL: the archiver replaces any).
fn as_text(value: ValueRef<'_>) -> Option<String> {
    match value {
        ValueRef::Null => None,
        ValueRef::Integer(number) => Some(number.to_string()),
        ValueRef::Real(number) => Some(number.to_string()),
        ValueRef::Text(text) => Some(String::from_utf8_lossy(text).into_owned()),
        ValueRef::Blob(blob) => Some(format!("\0a blob of {} bytes", blob.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is planted at a name beside the database.
    #[derive(Debug, Clone, Copy)]
    enum Planted {
        HardLink,
        SymbolicLink,
        /// A regular file of another user (a journal SQLite would replay into the database).
        ForeignFile,
    }

    #[test]
    #[cfg(unix)]
    fn a_link_or_another_users_file_at_the_database_or_a_journal_is_refused_naming_it_and_left_untouched() {
        use std::os::unix::fs::{symlink, MetadataExt};
        for name in ["audit.db", "audit.db-wal", "audit.db-shm", "audit.db-journal"] {
            for planted in [Planted::HardLink, Planted::SymbolicLink, Planted::ForeignFile] {
                let dir = tempfile::tempdir().unwrap();
                let at = dir.path().join(name);
                // Empty, a database file would become a database; a journal file is overwritten
                // whatever it holds.
                let content = if name == "audit.db" { Vec::new() } else { vec![7u8; 3_200] };
                let victim = dir.path().join("victim");
                std::fs::write(&victim, &content).unwrap();
                let expected = match planted {
                    Planted::HardLink => {
                        std::fs::hard_link(&victim, &at).unwrap();
                        "has 2 names (hard links)"
                    }
                    Planted::SymbolicLink => {
                        symlink(&victim, &at).unwrap();
                        "is a symbolic link"
                    }
                    Planted::ForeignFile => {
                        std::fs::write(&at, &content).unwrap();
                        let other = if safe_fs::effective_uid() == 65_534 { 65_533 } else { 65_534 };
                        // Only root may give a file away.
                        std::os::unix::fs::chown(&at, Some(other), None)
                            .expect("this test needs to chown files; run the suite as root (CI does)");
                        "belongs to user"
                    }
                };
                let error = Sqlite::open(&dir.path().join("audit.db")).err().expect("refused").to_string();
                let named = format!("{} {expected}", at.display());
                assert!(error.contains(&named), "{name}, {planted:?}: {error}");
                assert_eq!(std::fs::read(&victim).unwrap(), content, "{name}, {planted:?}: written to");
                if let Planted::ForeignFile = planted {
                    assert_eq!(std::fs::read(&at).unwrap(), content, "{name}: used");
                    assert_ne!(std::fs::metadata(&at).unwrap().uid(), safe_fs::effective_uid());
                }
            }
        }
    }

    #[test]
    fn a_commit_is_synced_to_disk_before_the_cursor_can_pass_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(&dir.path().join("audit.db")).unwrap();
        let journal: String = store.connection.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        let synchronous: i64 = store.connection.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        // 2 is FULL: WAL with NORMAL may lose the last commits to a power loss.
        assert_eq!((journal.as_str(), synchronous), ("wal", 2));
    }
}
