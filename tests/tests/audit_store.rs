//! The audit store (issue 13): every sealed record of `executions.log` in a database exactly
//! once, whatever happens to the process or the database; retention by age; backups kept while
//! the store lags. SQLite here; the same cases against PostgreSQL are in `audit_store_postgres`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chimera_log_runtime::audit::parse_sealed;
use chimera_log_runtime::store::{ScanFilter, StoreReader};
use chimera_log_runtime::{emit, AuditDurability, AuditStore, LogConfig, LogEvent};
use common::audit_load::{emit_from_threads, Executed};
use common::{backups, ManualClock};
use serde_json::json;

#[derive(LogEvent)]
#[log(audit, key = "tx_hash")]
struct Submitted<'a> {
    #[log(rename = "tx")]
    tx_hash: &'a str,
    block_number: u64,
    gas: u64,
}

fn config(dir: &Path, store: AuditStore) -> LogConfig {
    LogConfig::new(dir).console(false).audit_durability(AuditDurability::OsBuffer).audit_store(store)
}

/// The one stream in the store and its records, `(seq, record)`, in seq order.
fn store_records(url: &str) -> Vec<(u64, String)> {
    let mut reader = StoreReader::open(url).unwrap();
    let streams = reader.streams().unwrap();
    assert_eq!(streams.len(), 1, "one logger, one stream: {streams:?}");
    let mut records = Vec::new();
    reader
        .scan(&streams[0], &ScanFilter::default(), |row| {
            let sealed = parse_sealed(row.record.as_bytes()).expect("a stored record is sealed");
            assert_eq!(sealed.seq, row.seq, "the seq column is the record's");
            records.push((row.seq, row.record));
            true
        })
        .unwrap();
    records
}

#[test]
fn a_hundred_thousand_records_from_four_threads_across_64k_rotations_are_stored_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    // Few backups: retention would delete unarchived ones if it did not wait for the store.
    let guard = config(dir.path(), AuditStore::sqlite(&db))
        .max_bytes(64 * 1024)
        .audit_backups(3)
        .shutdown_timeout(Duration::from_secs(300)) // what a flush may wait for 100,000 inserts
        .build()
        .unwrap();
    emit_from_threads(&guard, 4, 25_000, 0);
    assert!(guard.flush(), "everything stored");
    let stats = guard.stats().audit_store.unwrap();
    drop(guard);
    let stored = store_records(&format!("sqlite:{}", db.display()));
    let missing: Vec<u64> =
        (1..=100_000).filter(|seq| stored.binary_search_by_key(seq, |(s, _)| *s).is_err()).take(10).collect();
    assert!(missing.is_empty(), "records never stored (first ten): {missing:?}; {stats:?}");
    assert_eq!(stored.len(), 100_000);
    assert!(stored.iter().enumerate().all(|(i, (seq, _))| *seq == i as u64 + 1), "seq 1..=100000, no gap, no repeat");
    assert_eq!((stats.rows_stored, stats.lag_records, stats.errors, stats.conflicts), (100_000, 0, 0, 0), "{stats:?}");
    // What the files still hold is byte for byte what the store holds.
    let in_files = common::audit_records(dir.path());
    assert!(!in_files.is_empty());
    for (seq, line) in &in_files {
        assert_eq!(&stored[*seq as usize - 1].1, line, "seq {seq}");
    }
}

#[test]
fn kill_9_mid_insert_then_a_restart_stores_every_record_exactly_once() {
    const CHILD: &str = "CHIMERA_STORE_KILL_CHILD";
    if let Ok(dir) = std::env::var(CHILD) {
        let guard = config(Path::new(&dir), AuditStore::default()).max_bytes(256 * 1024).build().unwrap();
        let logger = guard.logger("executor");
        let mut block_number = 0;
        let mut announced = false;
        loop {
            for _ in 0..1_000 {
                emit!(logger, Executed { block_number, pad: "0123456789abcdef" });
                block_number += 1;
            }
            // Once the archiver is busy inserting, say so: the parent kills at once.
            if !announced && guard.stats().audit_store.is_some_and(|s| s.rows_stored >= 5_000) {
                println!("storing");
                announced = true;
            }
        }
    }
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["kill_9_mid_insert_then_a_restart_stores_every_record_exactly_once", "--exact", "--nocapture"])
            .env(CHILD, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("storing") {
            line.clear();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "round {round}: the child ended before storing");
        }
        child.kill().unwrap(); // SIGKILL, mid-transaction most likely
        child.wait().unwrap();
        // The restart archives the rest, and recognises what the killed one stored.
        let guard = config(dir.path(), AuditStore::default()).max_bytes(256 * 1024).build().unwrap();
        assert!(guard.flush());
        let stats = guard.stats().audit_store.unwrap();
        drop(guard);
        let in_files = common::audit_records(dir.path());
        let stored = store_records(&format!("sqlite:{}", dir.path().join("audit.db").display()));
        let newest = in_files.last().unwrap().0;
        assert_eq!(stored.len() as u64, newest, "round {round}: every record, once ({stats:?})");
        assert!(stored.iter().enumerate().all(|(i, (seq, _))| *seq == i as u64 + 1), "round {round}");
        for (seq, line) in &in_files {
            assert_eq!(&stored[*seq as usize - 1].1, line, "round {round}: seq {seq}");
        }
        assert_eq!(stats.conflicts, 0);
    }
}

#[test]
fn an_unreachable_store_delays_rows_keeps_unarchived_backups_and_catches_up_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    // A database in a directory that does not exist yet: every open fails, at once.
    let db = store_dir.path().join("not-yet").join("audit.db");
    let guard = config(dir.path(), AuditStore::sqlite(&db))
        .max_bytes(16 * 1024)
        .audit_backups(1)
        .shutdown_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let logger = guard.logger("executor");
    for block_number in 0..2_000 {
        emit!(logger, Executed { block_number, pad: "0123456789abcdef" });
    }
    assert!(!guard.flush(), "a flush cannot store into a database that is not there");
    let down = guard.stats();
    let store = down.audit_store.unwrap();
    assert!(store.down && store.errors >= 1 && store.rows_stored == 0, "{store:?}");
    assert_eq!(store.lag_records, 2_000, "{store:?}");
    let kept = backups(dir.path(), "executions.log").len();
    assert!(kept > 1, "backups past audit_backups(1) are kept while unarchived: {kept}");
    assert!(down.audit_backups_kept_for_store >= 1, "{down:?}");
    assert_eq!(common::audit_records(dir.path()).len(), 2_000, "nothing deleted");

    std::fs::create_dir(store_dir.path().join("not-yet")).unwrap();
    assert!(guard.flush(), "caught up once the database is there");
    let up = guard.stats().audit_store.unwrap();
    assert!(!up.down && up.rows_stored == 2_000 && up.lag_records == 0, "{up:?}");
    for block_number in 2_000..2_300 {
        emit!(logger, Executed { block_number, pad: "0123456789abcdef" });
    }
    assert!(guard.flush());
    drop(guard);
    let stored = store_records(&format!("sqlite:{}", db.display()));
    assert_eq!(stored.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), (1..=2_300).collect::<Vec<_>>());
    // Archived now: the next start's retention (or rotation's) keeps only audit_backups(1).
    let guard = config(dir.path(), AuditStore::sqlite(&db)).audit_backups(1).build().unwrap();
    drop(guard);
    let left = backups(dir.path(), "executions.log");
    assert_eq!(left.len(), 1, "archived backups past the count are removed: {left:?}");
}

#[test]
fn a_database_locked_mid_run_for_longer_than_its_busy_timeout_loses_no_row_and_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let guard = config(dir.path(), AuditStore::sqlite(&db))
        .max_bytes(64 * 1024)
        .audit_backups(2)
        .shutdown_timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    emit_from_threads(&guard, 2, 2_500, 0);
    assert!(guard.flush());
    // Another process takes the write lock and keeps it past the archiver's 5-second busy
    // timeout, while records keep coming (paced: the load's rhythm, not a wait for the logger).
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    for round in 1..=24u64 {
        emit_from_threads(&guard, 2, 250, round * 10_000);
        std::thread::sleep(Duration::from_millis(300));
    }
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    assert!(guard.flush(), "caught up once the lock is released");
    let stats = guard.stats().audit_store.unwrap();
    drop(guard);
    assert!(stats.errors >= 1 && !stats.down && stats.lag_records == 0, "{stats:?}");
    let stored = store_records(&format!("sqlite:{}", db.display()));
    assert_eq!(stored.len(), 5_000 + 24 * 500, "{stats:?}");
    assert!(stored.iter().enumerate().all(|(i, (seq, _))| *seq == i as u64 + 1), "every record once");
}

#[test]
fn retention_deletes_exactly_the_rows_older_than_audit_retention_by_the_injected_clock() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let clock = Arc::new(ManualClock::at_micros(0));
    clock.set(start);
    let retention = Duration::from_secs(1_096 * 24 * 60 * 60);
    let guard =
        config(dir.path(), AuditStore::sqlite(&db)).clock(clock.clone()).audit_retention(retention).build().unwrap();
    let logger = guard.logger("executor");
    for block_number in 0..5 {
        emit!(logger, Executed { block_number, pad: "old" });
    }
    clock.set(start + Duration::from_secs(2));
    for block_number in 5..8 {
        emit!(logger, Executed { block_number, pad: "two seconds younger" });
    }
    assert!(guard.flush());
    // Three years and a day plus one second later: the first five are past the retention by one
    // second, the next three are within it by one second.
    clock.set(start + retention + Duration::from_secs(1));
    emit!(logger, Executed { block_number: 8, pad: "new" });
    assert!(guard.flush());
    let stats = guard.stats().audit_store.unwrap();
    drop(guard);
    let blocks: Vec<u64> = store_records(&format!("sqlite:{}", db.display()))
        .iter()
        .map(|(_, record)| {
            serde_json::from_str::<serde_json::Value>(record).unwrap()["context"]["block_number"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(blocks, [5, 6, 7, 8]);
    assert_eq!(stats.rows_expired, 5, "{stats:?}");
}

#[test]
fn a_stored_row_with_a_different_chain_is_a_conflict_reported_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let guard = config(dir.path(), AuditStore::sqlite(&db)).build().unwrap();
    let logger = guard.logger("executor");
    for block_number in 0..5 {
        emit!(logger, Executed { block_number, pad: "x" });
    }
    assert!(guard.flush());
    drop(guard);
    // Someone edits row 3 in the database, and the archiver's cursor is lost: the restart
    // inserts every record again.
    let forged = "{\"forged\":true}";
    sqlite_exec(&db, &format!("UPDATE chimera_audit SET chain = 'ff', record = '{forged}' WHERE seq = 3"));
    std::fs::remove_file(dir.path().join(".audit-store.cursor")).unwrap();
    let guard = config(dir.path(), AuditStore::sqlite(&db)).build().unwrap();
    assert!(guard.flush());
    let stats = guard.stats().audit_store.unwrap();
    drop(guard);
    assert_eq!((stats.conflicts, stats.rows_stored), (1, 0), "{stats:?}");
    let mut reader = StoreReader::open(&format!("sqlite:{}", db.display())).unwrap();
    let stream = reader.streams().unwrap().remove(0);
    let mut third = None;
    reader
        .scan(&stream, &ScanFilter::default(), |row| {
            if row.seq == 3 {
                third = Some(row.record);
            }
            true
        })
        .unwrap();
    assert_eq!(third.as_deref(), Some(forged), "kept as found, for verify to report");
}

#[test]
fn audit_store_none_writes_no_database_and_a_bad_store_setting_names_itself() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path(), AuditStore::none()).build().unwrap();
    emit!(guard.logger("m"), Executed { block_number: 1, pad: "" });
    assert!(guard.flush());
    assert!(guard.stats().audit_store.is_none());
    drop(guard);
    assert!(!dir.path().join("audit.db").exists());
    let error = LogConfig::from_vars([("CHIMERA_LOG_AUDIT_STORE", "mysql://x")]).unwrap_err().to_string();
    assert!(error.contains("CHIMERA_LOG_AUDIT_STORE"), "{error}");
    let error = LogConfig::new(dir.path()).audit_retention(Duration::ZERO).build().unwrap_err().to_string();
    assert!(error.contains("audit_retention"), "{error}");
}

#[test]
fn the_identity_is_block_number_or_the_declared_key_and_scans_by_identity_event_and_time_use_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let clock = Arc::new(ManualClock::at_micros(1_800_000_000_000_000));
    let guard = config(dir.path(), AuditStore::sqlite(&db)).clock(clock.clone()).build().unwrap();
    let logger = guard.logger("executor");
    emit!(logger, Executed { block_number: 7, pad: "" });
    clock.set(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_060));
    emit!(logger, Submitted { tx_hash: "0xabc", block_number: 7, gas: 21_000 });
    emit!(logger, Executed { block_number: 8, pad: "" });
    assert!(guard.flush());
    drop(guard);
    // The declared key travels in the line under its JSON name, after the context.
    let lines = common::audit_records(dir.path());
    let submitted: serde_json::Value = serde_json::from_str(&lines[1].1).unwrap();
    assert_eq!(submitted["audit_key"], "tx");
    assert!(lines[1].1.contains(r#""gas":21000},"audit_key":"tx","seq":2,"#), "{}", lines[1].1);
    assert!(!lines[0].1.contains("audit_key"), "block_number is the default: not repeated in every line");

    let mut reader = StoreReader::open(&format!("sqlite:{}", db.display())).unwrap();
    let stream = reader.streams().unwrap().remove(0);
    let mut seqs = |filter: ScanFilter| {
        let mut seqs = Vec::new();
        reader
            .scan(&stream, &filter, |row| {
                seqs.push(row.seq);
                true
            })
            .unwrap();
        seqs
    };
    assert_eq!(seqs(ScanFilter::default().identity("7")), [1]);
    assert_eq!(seqs(ScanFilter::default().identity("0xabc")), [2]);
    // block_number is its own column: found whatever the record's identity field is.
    assert_eq!(seqs(ScanFilter::default().block_number("7")), [1, 2]);
    assert_eq!(seqs(ScanFilter::default().event("executed")), [1, 3]);
    assert_eq!(seqs(ScanFilter::default().since("2027-01-15T08:01:00Z")), [2, 3]);
    assert_eq!(seqs(ScanFilter::default().until("2027-01-15T08:01:00Z")), [1]);
}

#[test]
fn the_database_is_0640_like_the_logs_and_a_link_planted_at_its_path_is_never_written_through() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path(), AuditStore::default()).build().unwrap();
    emit!(guard.logger("m"), Executed { block_number: 1, pad: "" });
    assert!(guard.flush());
    drop(guard);
    let mode = std::fs::metadata(dir.path().join("audit.db")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);

    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim.db");
    // Empty: SQLite would take it for a new database and write its tables into it.
    std::fs::write(&victim, b"").unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join("audit.db")).unwrap();
    let guard = config(dir.path(), AuditStore::default()).shutdown_timeout(Duration::from_secs(1)).build().unwrap();
    emit!(guard.logger("m"), Executed { block_number: 1, pad: "" });
    assert!(!guard.flush(), "nothing can be stored through the link");
    let stats = guard.stats().audit_store.unwrap();
    drop(guard);
    assert!(stats.down && stats.errors >= 1 && stats.rows_stored == 0, "{stats:?}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"", "the link's target is untouched");
    assert!(!outside.path().join("victim.db-wal").exists() && !outside.path().join("victim.db-journal").exists());
    assert_eq!(common::audit_records(dir.path()).len(), 1, "the record is in the file");
}

#[test]
fn a_link_planted_at_the_database_or_its_journals_is_never_written_through_and_logging_goes_on() {
    for name in ["audit.db", "audit.db-wal", "audit.db-shm"] {
        for hard in [true, false] {
            let case = format!("{} at {name}", if hard { "a hard link" } else { "a symbolic link" });
            let dir = tempfile::tempdir().unwrap();
            let outside = tempfile::tempdir().unwrap();
            // An empty file would become a database; a journal is overwritten whatever it holds.
            let content = if name == "audit.db" { Vec::new() } else { vec![b'v'; 3_200] };
            let victim = outside.path().join("victim");
            std::fs::write(&victim, &content).unwrap();
            let planted = dir.path().join(name);
            if hard {
                std::fs::hard_link(&victim, &planted).unwrap();
            } else {
                std::os::unix::fs::symlink(&victim, &planted).unwrap();
            }
            let guard =
                config(dir.path(), AuditStore::default()).shutdown_timeout(Duration::from_secs(1)).build().unwrap();
            let logger = guard.logger("m");
            for block_number in 0..50 {
                emit!(logger, Executed { block_number, pad: "0123456789abcdef" });
            }
            assert!(!guard.flush(), "{case}: nothing can be stored while it is there");
            let store = guard.stats().audit_store.unwrap();
            assert!(store.down && store.errors >= 1 && store.rows_stored == 0, "{case}: {store:?}");
            assert_eq!(std::fs::read(&victim).unwrap(), content, "{case}: the link's target was written");
            assert_eq!(common::audit_records(dir.path()).len(), 50, "{case}: logging goes on");

            std::fs::remove_file(&planted).unwrap();
            assert!(guard.flush(), "{case}: stored once the link is gone");
            drop(guard);
            assert_eq!(std::fs::read(&victim).unwrap(), content, "{case}");
            let stored = store_records(&format!("sqlite:{}", dir.path().join("audit.db").display()));
            assert_eq!(stored.len(), 50, "{case}");
        }
    }
}

#[test]
fn a_log_directory_reached_through_a_symbolic_link_has_its_audit_store_and_stored_backups_are_deleted() {
    use std::os::unix::fs::symlink;
    for through in ["a symlinked parent", "a symlinked log directory"] {
        let root = tempfile::tempdir().unwrap();
        // `/var/log/app` -> a data volume, and the logs in it or the link itself.
        let volume = root.path().join("volume");
        std::fs::create_dir(&volume).unwrap();
        let log_dir = if through == "a symlinked parent" {
            symlink(&volume, root.path().join("app")).unwrap();
            root.path().join("app").join("logs")
        } else {
            std::fs::create_dir(volume.join("logs")).unwrap();
            symlink(volume.join("logs"), root.path().join("logs")).unwrap();
            root.path().join("logs")
        };
        let start = || config(&log_dir, AuditStore::default()).max_bytes(16 * 1024).audit_backups(1);
        let guard = start().shutdown_timeout(Duration::from_secs(1)).build().unwrap();
        let logger = guard.logger("executor");
        for block_number in 0..2_000 {
            emit!(logger, Executed { block_number, pad: "0123456789abcdef" });
        }
        assert!(guard.flush(), "{through}: every record stored");
        let store = guard.stats().audit_store.unwrap();
        assert!(!store.down && store.rows_stored == 2_000 && store.lag_records == 0, "{through}: {store:?}");
        drop(guard);
        // Archived: the next start's retention keeps only audit_backups(1).
        drop(start().build().unwrap());
        let left = backups(&log_dir, "executions.log");
        assert_eq!(left.len(), 1, "{through}: stored backups past the count are deleted: {left:?}");
        let stored = store_records(&format!("sqlite:{}", log_dir.join("audit.db").display()));
        assert_eq!(stored.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), (1..=2_000).collect::<Vec<_>>());
    }
}

/// Runs one statement on an SQLite file, as an administrator with the `sqlite3` shell would.
fn sqlite_exec(db: &Path, sql: &str) {
    rusqlite::Connection::open(db).unwrap().execute_batch(sql).unwrap();
}

#[test]
fn a_new_database_behind_an_existing_cursor_gets_every_retained_record() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.db");
    let second = dir.path().join("second.db");
    let guard = config(dir.path(), AuditStore::sqlite(&first)).build().unwrap();
    for block_number in 0..10 {
        emit!(guard.logger("executor"), Executed { block_number, pad: "x" });
    }
    assert!(guard.flush());
    drop(guard);
    // The store's URL changes (or audit.db is deleted): the cursor beside the logs says how far
    // the *first* database got; the second one holds nothing yet.
    let guard = config(dir.path(), AuditStore::sqlite(&second)).build().unwrap();
    for block_number in 10..15 {
        emit!(guard.logger("executor"), Executed { block_number, pad: "x" });
    }
    assert!(guard.flush());
    drop(guard);
    let stored: Vec<u64> = store_records(&format!("sqlite:{}", second.display())).iter().map(|(seq, _)| *seq).collect();
    assert_eq!(stored, (1..=15).collect::<Vec<_>>(), "every record the files hold is in the database in use");
}

/// The new database starts empty while the cursor says the backups were archived (into the old
/// one): retention must keep them again until the new one has them, also while it is slow
/// (it went on deleting them by the old mark as the archiver read them again).
#[test]
fn backups_archived_only_into_a_replaced_database_are_kept_until_the_new_one_has_them() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first.db"), dir.path().join("second.db"));
    let start = |db: &Path| config(dir.path(), AuditStore::sqlite(db)).max_bytes(16 * 1024).audit_backups(3);
    let guard = start(&first).build().unwrap();
    emit_from_threads(&guard, 1, 200, 0);
    assert!(guard.flush());
    drop(guard);
    // No more than audit_backups(3): the next start's retention removes none of them.
    let archived_backups = backups(dir.path(), "executions.log");
    assert!((2..=3).contains(&archived_backups.len()), "{archived_backups:?}");
    // The second database exists, with the table and none of the stream's rows, and someone
    // holds its write lock: the archiver opens it (and sees it empty) but cannot insert.
    let schema: Vec<String> = rusqlite::Connection::open(&first)
        .unwrap()
        .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    sqlite_exec(&second, &format!("PRAGMA journal_mode = WAL; {};", schema.join("; ")));
    let holder = rusqlite::Connection::open(&second).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let guard = start(&second).shutdown_timeout(Duration::from_secs(6)).build().unwrap();
    assert!(!guard.flush(), "nothing can be inserted while the lock is held");
    // A restart now would read the archive mark from the saved cursor: it is back at the start.
    let cursor: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(".audit-store.cursor")).unwrap()).unwrap();
    assert_eq!((&cursor["after"], &cursor["offset"]), (&serde_json::Value::Null, &serde_json::json!(0)), "{cursor}");
    // Rotations meanwhile: retention would remove the three old backups past audit_backups(3).
    emit_from_threads(&guard, 1, 300, 1_000);
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    assert!(guard.flush(), "caught up once the lock is released");
    let stats = guard.stats().audit_store.unwrap();
    drop(guard);
    let stored: Vec<u64> = store_records(&format!("sqlite:{}", second.display())).iter().map(|(seq, _)| *seq).collect();
    assert_eq!(stored, (1..=500).collect::<Vec<_>>(), "{stats:?}");
    assert_eq!(stats.files_skipped, 0);
}

/// A gzipped audit backup damaged on disk (cut short): the records before the damage and every
/// record after that file are stored, the file is counted, and a flush is answered (the
/// archiver went back to the damage at every attempt, and stored nothing after it, for ever).
#[test]
fn a_damaged_audit_backup_is_stored_up_to_the_damage_counted_and_passed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let guard = config(dir.path(), AuditStore::none()).max_bytes(16 * 1024).audit_backups(20).build().unwrap();
    emit_from_threads(&guard, 1, 400, 0);
    drop(guard);
    let files = backups(dir.path(), "executions.log");
    assert!(files.len() >= 3 && files[1].extension().is_some_and(|e| e == "gz"), "{files:?}");
    let in_damaged: Vec<u64> = common::read_maybe_gz(&files[1])
        .split(|&b| b == b'\n')
        .filter_map(|line| parse_sealed(line).map(|record| record.seq))
        .collect();
    let len = std::fs::metadata(&files[1]).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&files[1]).unwrap().set_len(len / 2).unwrap();
    let guard = config(dir.path(), AuditStore::sqlite(&db)).audit_backups(20).build().unwrap();
    assert!(guard.flush(), "stored what can be read");
    let stats = guard.stats().audit_store.unwrap();
    drop(guard);
    let stored: Vec<u64> = store_records(&format!("sqlite:{}", db.display())).iter().map(|(seq, _)| *seq).collect();
    let lost: Vec<u64> = (1..=400).filter(|seq| stored.binary_search(seq).is_err()).collect();
    assert!(!lost.is_empty() && in_damaged.ends_with(&lost), "lost {lost:?} of the damaged file's {in_damaged:?}");
    assert_eq!(stats.files_skipped, 1, "{stats:?}");
}

#[test]
fn a_shutdown_during_a_long_catch_up_stops_the_archiver_by_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    // A large family written without a store: the first start with one has it all to catch up.
    let guard = config(dir.path(), AuditStore::none()).max_bytes(1 << 20).audit_backups(1_000).build().unwrap();
    emit_from_threads(&guard, 2, 40_000, 0);
    drop(guard);
    let guard = config(dir.path(), AuditStore::sqlite(&db))
        .max_bytes(1 << 20)
        .audit_backups(1_000)
        .shutdown_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    // Let it start inserting, then close.
    std::thread::sleep(Duration::from_millis(300));
    drop(guard);
    let count = || -> i64 {
        rusqlite::Connection::open(&db)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM chimera_audit", [], |r| r.get(0))
            .unwrap_or(0)
    };
    let at_close = count();
    std::thread::sleep(Duration::from_secs(2));
    let later = count();
    assert!(at_close < 80_000, "still catching up at the close: {at_close}");
    // The batch in flight at the deadline may still commit (2,000 rows), nothing after it.
    assert!(later - at_close <= 2_000, "the archiver went on inserting after the logger closed: {at_close} -> {later}");
}

#[test]
fn audit_backups_zero_keeps_none_once_archived_and_never_deletes_unarchived_records() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let db = store_dir.path().join("later").join("audit.db");
    let start = || config(dir.path(), AuditStore::sqlite(&db)).max_bytes(8 * 1024).audit_backups(0);
    // The store is unreachable: every backup is kept, whatever audit_backups says.
    let guard = start().shutdown_timeout(Duration::from_secs(1)).build().unwrap();
    emit_from_threads(&guard, 1, 300, 0);
    assert!(!guard.flush());
    drop(guard);
    let kept = backups(dir.path(), "executions.log").len();
    assert!(kept >= 3, "unarchived backups kept: {kept}");
    assert_eq!(common::audit_records(dir.path()).len(), 300);
    // Reachable: archived, and the next start's retention keeps none.
    std::fs::create_dir(store_dir.path().join("later")).unwrap();
    let guard = start().build().unwrap();
    assert!(guard.flush());
    drop(guard);
    assert_eq!(store_records(&format!("sqlite:{}", db.display())).len(), 300);
    drop(start().build().unwrap());
    assert_eq!(backups(dir.path(), "executions.log").len(), 0, "none kept once archived");
}

#[derive(LogEvent)]
#[log(audit)]
struct Deep {
    block_number: u64,
    payload: serde_json::Value,
}

/// `levels` nested objects around `1`: deeper than serde_json's recursion limit (128) once in
/// a line.
fn nested(levels: usize) -> serde_json::Value {
    let mut value = serde_json::json!(1);
    for _ in 0..levels {
        value = serde_json::json!({ "inner": value });
    }
    value
}

#[test]
fn a_record_nested_deeper_than_serde_jsons_limit_is_stored_counted_and_found_by_its_columns() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let guard = config(dir.path(), AuditStore::sqlite(&db)).build().unwrap();
    let logger = guard.logger("executor");
    emit!(logger, Executed { block_number: 1, pad: "" });
    emit!(logger, Deep { block_number: 2, payload: nested(200) });
    emit!(logger, Executed { block_number: 3, pad: "" });
    assert!(guard.flush());
    let stats = guard.stats().audit_store.unwrap();
    drop(guard);
    let in_files = common::audit_records(dir.path());
    assert!(serde_json::from_str::<serde_json::Value>(&in_files[1].1).is_err(), "too deep for serde_json");
    let url = format!("sqlite:{}", db.display());
    assert_eq!(store_records(&url), in_files, "every record, byte for byte, no gap");
    assert_eq!((stats.rows_stored, stats.lag_records, stats.errors), (3, 0, 0), "{stats:?}");
    let mut reader = StoreReader::open(&url).unwrap();
    let stream = reader.streams().unwrap().remove(0);
    let mut found = Vec::new();
    reader
        .scan(&stream, &ScanFilter::default().event("deep").identity("2"), |row| {
            found.push(row.seq);
            true
        })
        .unwrap();
    assert_eq!(found, [2], "its event and identity columns are filled");
}

#[test]
fn a_damaged_backup_is_counted_only_once_a_cursor_past_it_is_saved() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let guard = config(dir.path(), AuditStore::none()).max_bytes(16 * 1024).audit_backups(20).build().unwrap();
    emit_from_threads(&guard, 1, 400, 0);
    drop(guard);
    let files = backups(dir.path(), "executions.log");
    assert!(files.len() >= 3 && files[1].extension().is_some_and(|e| e == "gz"), "{files:?}");
    let len = std::fs::metadata(&files[1]).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&files[1]).unwrap().set_len(len / 2).unwrap();
    // A directory where the cursor goes: every save fails (a rename cannot replace it).
    let cursor = dir.path().join(".audit-store.cursor");
    std::fs::create_dir(&cursor).unwrap();
    let guard = config(dir.path(), AuditStore::sqlite(&db)).audit_backups(20).build().unwrap();
    assert!(guard.flush(), "the rows are committed");
    let unsaved = guard.stats().audit_store.unwrap();
    assert_eq!(unsaved.files_skipped, 0, "a restart would find it again: not counted yet; {unsaved:?}");
    std::fs::remove_dir(&cursor).unwrap();
    emit!(guard.logger("executor"), Executed { block_number: 1_000, pad: "" });
    assert!(guard.flush());
    let saved = guard.stats().audit_store.unwrap();
    drop(guard);
    assert!(cursor.is_file(), "saved this time");
    assert_eq!(saved.files_skipped, 1, "counted once the cursor past it is saved; {saved:?}");
}

/// The store's cursor file, as JSON.
fn store_cursor(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(".audit-store.cursor")).unwrap()).unwrap()
}

/// Writes a cursor by hand, as someone with write access to the log directory could: without
/// the check a saved cursor carries (a cursor of an earlier version has none either).
fn plant_store_cursor(dir: &Path, after: &serde_json::Value, offset: u64, fingerprint: &serde_json::Value) {
    let text = serde_json::json!({ "after": after, "offset": offset, "fingerprint": fingerprint }).to_string();
    std::fs::write(dir.join(".audit-store.cursor"), text).unwrap();
}

/// Records in the files, not yet in the store, behind a cursor moved into the future: the
/// archiver passed over every backup before its stamp, and retention deleted them as archived.
#[test]
fn a_store_cursor_moved_into_the_future_is_distrusted_and_no_record_is_lost_to_retention() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let guard = config(dir.path(), AuditStore::sqlite(&db)).max_bytes(16 * 1024).audit_backups(3).build().unwrap();
    emit_from_threads(&guard, 1, 100, 0);
    assert!(guard.flush());
    drop(guard);
    // More records while the store is off (nothing deleted: many backups allowed).
    let guard = config(dir.path(), AuditStore::none()).max_bytes(16 * 1024).audit_backups(100).build().unwrap();
    emit_from_threads(&guard, 1, 600, 1_000);
    drop(guard);
    let unstored_backups = backups(dir.path(), "executions.log").len();
    assert!(unstored_backups > 5, "{unstored_backups}");
    plant_store_cursor(dir.path(), &serde_json::json!("29991231T235959.999999Z"), 0, &serde_json::Value::Null);
    let guard = config(dir.path(), AuditStore::sqlite(&db)).max_bytes(16 * 1024).audit_backups(3).build().unwrap();
    emit_from_threads(&guard, 1, 50, 2_000);
    assert!(guard.flush());
    let stats = guard.stats().audit_store.unwrap();
    drop(guard);
    let stored: Vec<u64> = store_records(&format!("sqlite:{}", db.display())).iter().map(|(seq, _)| *seq).collect();
    assert_eq!(stored, (1..=750).collect::<Vec<_>>(), "every record stored; {stats:?}");
    assert_eq!(stats.cursor_damaged, 1, "{stats:?}");
    assert_eq!(stats.files_skipped, 0, "{stats:?}");
}

/// A cursor whose offset is past the end of the file it names: the archiver read nothing of that
/// file until it grew past the offset.
#[test]
fn a_store_cursor_past_the_end_of_its_file_is_distrusted_and_every_record_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let guard = config(dir.path(), AuditStore::sqlite(&db)).build().unwrap();
    emit_from_threads(&guard, 1, 100, 0);
    assert!(guard.flush());
    drop(guard);
    let saved = store_cursor(dir.path());
    let guard = config(dir.path(), AuditStore::none()).build().unwrap();
    emit_from_threads(&guard, 1, 20, 1_000);
    drop(guard);
    let offset = saved["offset"].as_u64().unwrap() + 1_000_000;
    plant_store_cursor(dir.path(), &saved["after"], offset, &saved["fingerprint"]);
    let guard = config(dir.path(), AuditStore::sqlite(&db)).build().unwrap();
    assert!(guard.flush());
    let stats = guard.stats().audit_store.unwrap();
    drop(guard);
    let stored: Vec<u64> = store_records(&format!("sqlite:{}", db.display())).iter().map(|(seq, _)| *seq).collect();
    assert_eq!(stored, (1..=120).collect::<Vec<_>>(), "{stats:?}");
    assert_eq!(stats.cursor_damaged, 1, "{stats:?}");
}

/// A cursor that names real places (a real backup, an offset inside the file) but is ahead of
/// the database: here, the cursor another database's archiving left. Only the database can tell.
#[test]
fn a_store_cursor_ahead_of_what_the_database_holds_is_distrusted_and_the_gap_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (db, other) = (dir.path().join("audit.db"), dir.path().join("other.db"));
    let start = |db: &Path| config(dir.path(), AuditStore::sqlite(db)).max_bytes(16 * 1024).audit_backups(50);
    let guard = start(&db).build().unwrap();
    emit_from_threads(&guard, 1, 100, 0);
    assert!(guard.flush());
    drop(guard);
    // Another database takes records 101..=300: the cursor moves past them.
    let guard = start(&other).build().unwrap();
    emit_from_threads(&guard, 1, 200, 1_000);
    assert!(guard.flush());
    drop(guard);
    let guard = start(&db).build().unwrap();
    emit_from_threads(&guard, 1, 10, 2_000);
    assert!(guard.flush());
    let stats = guard.stats().audit_store.unwrap();
    drop(guard);
    let stored: Vec<u64> = store_records(&format!("sqlite:{}", db.display())).iter().map(|(seq, _)| *seq).collect();
    assert_eq!(stored, (1..=310).collect::<Vec<_>>(), "{stats:?}");
    assert_eq!((stats.cursor_damaged, stats.conflicts), (1, 0), "{stats:?}");
}

/// A directory planted where an earlier version saved its cursor's temporary file: every save
/// failed, the archive mark never moved, and audit backups piled up although all was stored.
#[test]
fn a_directory_planted_at_a_cursor_temporary_name_does_not_stop_cursor_saves_or_retention() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    std::fs::create_dir(dir.path().join(".audit-store.tmp")).unwrap();
    std::fs::create_dir(dir.path().join(".audit-store.cursor.tmp")).unwrap();
    let guard = config(dir.path(), AuditStore::sqlite(&db)).max_bytes(16 * 1024).audit_backups(3).build().unwrap();
    for round in 0..4 {
        emit_from_threads(&guard, 1, 100, round * 1_000);
        assert!(guard.flush());
    }
    drop(guard);
    let cursor = store_cursor(dir.path());
    assert!(cursor["after"].is_string(), "the cursor moved past the backups: {cursor}");
    let kept = backups(dir.path(), "executions.log");
    assert!(kept.len() <= 3, "retention kept {} backups with audit_backups(3): {kept:?}", kept.len());
    let stored = store_records(&format!("sqlite:{}", db.display()));
    assert_eq!(stored.len(), 400);
}

/// The audit records of every file of `executions.log`'s family, parsed, in file order.
fn audit_lines(dir: &Path) -> Vec<serde_json::Value> {
    let mut files = backups(dir, "executions.log");
    files.push(dir.join("executions.log"));
    files
        .iter()
        .filter(|path| path.exists())
        .flat_map(|path| {
            // A damaged gzip backup gives what precedes the damage.
            let mut bytes = Vec::new();
            let file = std::fs::read(path).unwrap();
            if path.extension().is_some_and(|e| e == "gz") {
                let mut decoder = flate2::read::MultiGzDecoder::new(&file[..]);
                let mut chunk = [0u8; 4096];
                while let Ok(read @ 1..) = std::io::Read::read(&mut decoder, &mut chunk) {
                    bytes.extend_from_slice(&chunk[..read]);
                }
            } else {
                bytes = file;
            }
            bytes
                .split(|&b| b == b'\n')
                .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The newest records gone from the files (the current file deleted, the newest backup cut short:
/// what a crash between a rotation's rename and the next file, then a damaged disk, leaves).
fn lose_the_newest_audit_records(dir: &Path) {
    std::fs::remove_file(dir.join("executions.log")).unwrap();
    let newest = backups(dir, "executions.log").pop().unwrap();
    let len = std::fs::metadata(&newest).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&newest).unwrap().set_len(len / 3).unwrap();
}

/// Numbering again after the newest readable record gave new records seqs the store already
/// held for others: refused there as conflicts, they never reached it.
#[test]
fn after_the_newest_records_became_unreadable_a_start_numbers_on_after_the_stores_newest_and_records_the_gap() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let start = || config(dir.path(), AuditStore::sqlite(&db)).max_bytes(16 * 1024).audit_backups(50);
    let guard = start().build().unwrap();
    emit_from_threads(&guard, 1, 200, 0);
    assert!(guard.flush());
    drop(guard);
    lose_the_newest_audit_records(dir.path());
    let guard = start().build().unwrap();
    emit_from_threads(&guard, 1, 10, 1_000);
    assert!(guard.flush());
    let stats = guard.stats().audit_store.unwrap();
    drop(guard);
    let stored: Vec<u64> = store_records(&format!("sqlite:{}", db.display())).iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        stored,
        (1..=211).collect::<Vec<_>>(),
        "the restart record and the ten new records after 200; {stats:?}"
    );
    assert_eq!(stats.conflicts, 0, "{stats:?}");
    let lines = audit_lines(dir.path());
    let restart = lines.iter().find(|line| line["event"] == "audit_restart").expect("an audit_restart record");
    let context = &restart["context"];
    assert_eq!(
        (&context["reason"], &context["resumed_after_seq"], &context["known_from"]),
        (&json!("records_unreadable"), &json!(200), &json!("audit_store")),
        "{restart}"
    );
    assert_eq!(restart["seq"], 201);
    let last_readable = context["last_readable_seq"].as_u64().unwrap();
    assert!(last_readable < 200 && context["unreadable_records"] == json!(200 - last_readable), "{restart}");
}

/// Without a store, the `audit_checkpoint` events in `chimera.log` say how far the chain went.
#[test]
fn without_a_store_a_start_numbers_on_after_the_newest_checkpoint_when_the_newest_records_are_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let start = || config(dir.path(), AuditStore::none()).max_bytes(16 * 1024).audit_backups(50);
    let guard = start().build().unwrap();
    emit_from_threads(&guard, 1, 200, 0);
    drop(guard);
    let checkpoints: Vec<u64> = std::fs::read_to_string(dir.path().join("chimera.log"))
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["event"] == "audit_checkpoint")
        .map(|line| line["context"]["seq"].as_u64().unwrap())
        .collect();
    let newest_checkpoint = *checkpoints.last().expect("rotations wrote checkpoints");
    lose_the_newest_audit_records(dir.path());
    let readable = audit_lines(dir.path()).iter().filter_map(|line| line["seq"].as_u64()).max().unwrap();
    assert!(readable < newest_checkpoint, "the checkpoint knows more than the files: {readable} {newest_checkpoint}");
    let guard = start().build().unwrap();
    emit_from_threads(&guard, 1, 5, 1_000);
    drop(guard);
    let lines = audit_lines(dir.path());
    let restart = lines.iter().find(|line| line["event"] == "audit_restart").expect("an audit_restart record");
    assert_eq!(restart["seq"], newest_checkpoint + 1, "{restart}");
    assert_eq!(
        (&restart["context"]["known_from"], &restart["context"]["last_readable_seq"]),
        (&json!("audit_checkpoint"), &json!(readable))
    );
    let new: Vec<u64> = lines
        .iter()
        .filter(|line| line["event"] == "executed" && line["context"]["block_number"].as_u64() >= Some(1_000))
        .map(|line| line["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(new, (newest_checkpoint + 2..newest_checkpoint + 7).collect::<Vec<_>>());
}

/// With no audit backups kept, retention removes each backup as soon as it is archived, the one
/// the store's cursor names included (the next start's retention does, on its own thread, while
/// the archiver starts): a cursor naming a backup that is gone, with none left, is what retention
/// leaves, not damage. The next start trusts it: nothing is archived again, nothing reported.
#[test]
fn with_no_audit_backups_kept_a_restart_after_retention_trusts_the_store_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let start = || config(dir.path(), AuditStore::sqlite(&db)).max_bytes(16 * 1024).audit_backups(0);
    let guard = start().build().unwrap();
    emit_from_threads(&guard, 1, 100, 0);
    assert!(guard.flush());
    drop(guard);
    let cursor = store_cursor(dir.path());
    assert!(cursor["after"].is_string(), "rotated: the cursor names a backup: {cursor}");
    // Every backup is archived (the cursor is past them): what the next start's retention
    // removes, done here before the start so that the test does not race it.
    let archived = backups(dir.path(), "executions.log");
    assert!(!archived.is_empty());
    for backup in archived {
        std::fs::remove_file(backup).unwrap();
    }
    let guard = start().build().unwrap();
    emit_from_threads(&guard, 1, 10, 1_000);
    assert!(guard.flush());
    let stats = guard.stats().audit_store.unwrap();
    drop(guard);
    assert_eq!(stats.cursor_damaged, 0, "{stats:?}");
    let stored: Vec<u64> = store_records(&format!("sqlite:{}", db.display())).iter().map(|(seq, _)| *seq).collect();
    assert_eq!(stored, (1..=110).collect::<Vec<_>>(), "{stats:?}");
}

/// The application's own lines cannot stand in for the logger's checkpoints: an event that looks
/// like one (module `chimera_log`, event `audit_checkpoint`, the same context) moves nothing at
/// the next start; the chain numbers on from its records.
#[test]
fn an_application_event_dressed_as_a_checkpoint_does_not_move_the_chain_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let start = || config(dir.path(), AuditStore::none());
    let guard = start().build().unwrap();
    emit_from_threads(&guard, 1, 3, 0);
    guard.logger("chimera_log").info(
        "audit_checkpoint",
        json!({ "file": "executions.log", "seq": u64::MAX, "chain": "00".repeat(32), "reason": "interval" }),
    );
    assert!(guard.flush());
    drop(guard);
    let guard = start().build().unwrap();
    emit_from_threads(&guard, 1, 2, 1_000);
    drop(guard);
    let lines = audit_lines(dir.path());
    assert!(lines.iter().all(|line| line["event"] != "audit_restart"), "{lines:?}");
    let seqs: Vec<u64> = lines.iter().filter_map(|line| line["seq"].as_u64()).collect();
    assert_eq!(seqs, (1..=5).collect::<Vec<_>>());
}
