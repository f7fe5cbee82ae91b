//! The S3 archive through an outage of its server (issue 27): SeaweedFS stopped under load and
//! started again. Its own test binary, run alone after the other S3 tests
//! (`scripts/test-all.sh`): while the server is down, no other test can use it.
#![cfg(feature = "s3")]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chimera_log_runtime::{AuditDurability, AuditStore, LogConfig, S3Archive};
use common::audit_load::emit_from_threads;
use common::backups;
use common::s3::{
    check_digests, client, create_bucket, digests, endpoint, objects, record_objects, runtime, unique_bucket,
};

/// Runs `$CHIMERA_TEST_S3_CTL stop|start` (start returns once the server takes a PUT).
fn ctl(action: &str) {
    let ctl = std::env::var("CHIMERA_TEST_S3_CTL").expect(
        "CHIMERA_TEST_S3_CTL is not set: `source scripts/start-seaweedfs.sh` exports it with the server's address",
    );
    let status = Command::new(ctl).arg(action).status().unwrap();
    assert!(status.success(), "{action} the S3 server: {status}");
}

/// Starts the server again if the test stops before it does: the next test binaries need it.
struct Restart(bool);

impl Drop for Restart {
    fn drop(&mut self) {
        if self.0 {
            ctl("start");
        }
    }
}

#[test]
fn an_outage_under_load_keeps_the_backups_and_the_archive_catches_up_exactly_once() {
    let runtime = runtime();
    let client = client(&runtime);
    let bucket = unique_bucket("archive-outage");
    create_bucket(&client, &runtime, &bucket, true);
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path())
        .console(false)
        .audit_durability(AuditDurability::OsBuffer)
        .audit_store(AuditStore::none())
        .archive(
            S3Archive::new(&bucket)
                .prefix("chimera")
                .endpoint_url(endpoint())
                .operation_timeout(Duration::from_secs(5)),
        )
        .max_bytes(64 * 1024)
        .audit_backups(2)
        .shutdown_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    emit_from_threads(&guard, 4, 2_500, 0);
    assert!(guard.flush(), "archived before the outage");
    let before = guard.stats().archive.unwrap();

    let mut restart = Restart(true);
    ctl("stop");
    // The server stays down for 30 s while the application goes on logging: a burst of 40,000
    // records, then 100 a second until the 30 s have passed (the outage's length is the
    // condition under test, not a wait for the archive; the load is bounded so that a debug
    // build catches up within the flushes below).
    let stopped = std::time::Instant::now();
    emit_from_threads(&guard, 4, 10_000, 10_000_000);
    let mut during_records = 40_000;
    while stopped.elapsed() < Duration::from_secs(30) {
        emit_from_threads(&guard, 4, 25, 10_000_000 + during_records);
        during_records += 100;
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(!guard.flush(), "nothing reaches a stopped server");
    let during = guard.stats().archive.unwrap();
    assert!(during.down && during.lag_records > 0 && during.errors > 0, "{during:?}");
    let kept = backups(dir.path(), "executions.log");
    assert!(kept.len() > 2, "backups past audit_backups are kept while the archive cannot take them");
    ctl("start");
    restart.0 = false;

    // The catch-up may take longer than the 2 s one flush waits.
    assert!(wait_flushed(&guard), "caught up");
    let after = guard.stats().archive.unwrap();
    assert!(!after.down && after.lag_records == 0, "{after:?}");
    assert!(after.records > before.records);
    // More rotations (at least two): retention deletes what the archive has now.
    emit_from_threads(&guard, 4, 250, 20_000_000);
    assert!(guard.flush());
    drop(guard);
    // Exactly once, in order: the records' seqs run from 1 over the objects, each once.
    let records = record_objects(&client, &runtime, &bucket, "chimera/");
    let mut next = 1;
    for (key, first, last, lines) in &records {
        assert_eq!(*first, next, "{key}: a gap or an overlap");
        let seqs: Vec<u64> = lines
            .split(|&b| b == b'\n')
            .filter_map(|line| chimera_log_runtime::audit::parse_sealed(line).map(|r| r.seq))
            .collect();
        assert_eq!(seqs, (*first..=*last).collect::<Vec<_>>(), "{key}");
        next = last + 1;
    }
    assert_eq!(next, 10_000 + during_records + 1_000 + 1, "every record before, during and after the outage");
    let gz = objects(&client, &runtime, &bucket, "").into_iter().collect();
    check_digests(&digests(&client, &runtime, &bucket, "chimera"), &records, &gz, None);
    let after = backups(dir.path(), "executions.log");
    assert!(after.len() >= 2, "the load after the outage rotated at least twice: {after:?}");
    let left: Vec<_> =
        kept.iter().filter(|path| path.exists() || Path::new(&format!("{}.gz", path.display())).exists()).collect();
    assert!(left.is_empty(), "the backups kept during the outage are deleted once archived: {left:?}");
}

/// Flushes until everything is archived: each flush waits its 2 s; the archive's backoff after
/// the outage is at most 5 s, so a few attempts are enough, and 100 bound a broken archive.
fn wait_flushed(guard: &chimera_log_runtime::LogGuard) -> bool {
    (0..100).any(|_| guard.flush())
}
