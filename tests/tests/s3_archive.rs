//! The S3 archive (issue 27) against SeaweedFS, which enforces Object Lock as S3 does
//! (`s3_contract.rs` checks that first): every sealed record of `executions.log` in the bucket
//! exactly once and byte for byte, whatever happens to the process; the objects locked; a bucket
//! without Object Lock refused; retention waiting for the archive.
#![cfg(feature = "s3")]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ObjectLockRetentionMode;
use chimera_log_runtime::{emit, AuditDurability, AuditStore, LogConfig, S3Archive};
use common::audit_load::{emit_from_threads, Executed};
use common::s3::{
    check_digests, client, create_bucket, digests, endpoint, objects, record_objects, runtime, signing_key,
    unique_bucket,
};
use common::{backups, ManualClock};

const PREFIX: &str = "chimera";

fn archive(bucket: &str) -> S3Archive {
    S3Archive::new(bucket).prefix(PREFIX).endpoint_url(endpoint()).region("us-east-1")
}

/// No audit store: retention waits for the archive alone.
fn config(dir: &Path, bucket: &str) -> LogConfig {
    LogConfig::new(dir)
        .console(false)
        .audit_durability(AuditDurability::OsBuffer)
        .audit_store(AuditStore::none())
        .archive(archive(bucket))
}

/// The bytes of the whole audit family in `dir`, backups (gunzipped) then the current file.
fn family_bytes(dir: &Path) -> Vec<u8> {
    let mut files = backups(dir, "executions.log");
    files.push(dir.join("executions.log"));
    files.iter().flat_map(|file| common::read_maybe_gz(file)).collect()
}

/// Checks that the record objects hold seq `1..=newest` each once, in contiguous ranges that
/// their keys name, and returns their lines concatenated in key order.
fn archived_exactly_once(objects: &[(String, u64, u64, Vec<u8>)], newest: u64, what: &str) -> Vec<u8> {
    let mut next = 1;
    let mut all = Vec::new();
    for (key, first, last, lines) in objects {
        assert_eq!(*first, next, "{what}: {key} starts after a gap or an overlap");
        let seqs: Vec<u64> = lines
            .split(|&b| b == b'\n')
            .filter_map(|line| chimera_log_runtime::audit::parse_sealed(line).map(|r| r.seq))
            .collect();
        let expected: Vec<u64> = (*first..=*last).collect();
        assert_eq!(seqs, expected, "{what}: {key} holds exactly the records its key names");
        next = last + 1;
        all.extend_from_slice(lines);
    }
    assert_eq!(next, newest + 1, "{what}: the records up to seq {newest} are all archived");
    all
}

#[test]
fn a_hundred_thousand_records_from_four_threads_across_rotations_are_archived_exactly_once_and_byte_for_byte() {
    let runtime = runtime();
    let client = client(&runtime);
    let bucket = unique_bucket("archive-load");
    create_bucket(&client, &runtime, &bucket, true);
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path(), &bucket)
        .max_bytes(512 * 1024)
        .audit_backups(1_000)
        .shutdown_timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    emit_from_threads(&guard, 4, 25_000, 0);
    assert!(guard.flush(), "everything archived");
    let stats = guard.stats().archive.unwrap();
    drop(guard);
    assert!(backups(dir.path(), "executions.log").len() > 10, "the load rotated the file many times");
    let objects = record_objects(&client, &runtime, &bucket, &format!("{PREFIX}/"));
    let archived = archived_exactly_once(&objects, 100_000, "load");
    assert!(archived == family_bytes(dir.path()), "the objects hold the family's bytes, in order, and nothing else");
    assert_eq!(
        (stats.records, stats.lag_records, stats.errors, stats.conflicts, stats.down, stats.disabled),
        (100_000, 0, 0, 0, false, false),
        "{stats:?}"
    );
    assert_eq!(stats.objects as usize, objects.len());
}

#[test]
fn kill_9_during_uploads_then_a_restart_archives_every_record_exactly_once() {
    const CHILD: &str = "CHIMERA_ARCHIVE_KILL_CHILD";
    if let Ok(dir) = std::env::var(CHILD) {
        let bucket = std::env::var("CHIMERA_ARCHIVE_KILL_BUCKET").unwrap();
        // A short interval: objects are cut and uploaded all the time the child runs.
        let config = config(Path::new(&dir), &bucket)
            .archive(archive(&bucket).archive_interval(Duration::from_millis(1)))
            .max_bytes(128 * 1024)
            .audit_backups(100_000); // the whole family stays, to compare with the bucket
        let guard = config.build().unwrap();
        let logger = guard.logger("executor");
        let mut block_number = 0;
        let mut announced = false;
        loop {
            for _ in 0..500 {
                emit!(logger, Executed { block_number, pad: "0123456789abcdef" });
                block_number += 1;
            }
            // Once the archive is busy uploading, say so: the parent kills at once.
            if !announced && guard.stats().archive.is_some_and(|s| s.objects >= 3) {
                println!("uploading");
                announced = true;
            }
            // Not killed (the parent failed), or never uploading: stop rather than fill the disk.
            assert!(block_number < 2_000_000, "no upload after 2,000,000 records: {:?}", guard.stats().archive);
        }
    }
    let runtime = runtime();
    let client = client(&runtime);
    for round in 0..3 {
        let bucket = unique_bucket("archive-kill");
        create_bucket(&client, &runtime, &bucket, true);
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["kill_9_during_uploads_then_a_restart_archives_every_record_exactly_once", "--exact", "--nocapture"])
            .env(CHILD, dir.path())
            .env("CHIMERA_ARCHIVE_KILL_BUCKET", &bucket)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("uploading") {
            line.clear();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "round {round}: the child ended before uploading");
        }
        child.kill().unwrap(); // SIGKILL, mid-upload most likely
        child.wait().unwrap();
        // The restart archives the rest, and skips what the killed one uploaded.
        let guard = config(dir.path(), &bucket)
            .max_bytes(128 * 1024)
            .audit_backups(100_000)
            .shutdown_timeout(Duration::from_secs(300))
            .build()
            .unwrap();
        assert!(guard.flush(), "round {round}");
        let stats = guard.stats().archive.unwrap();
        drop(guard);
        let newest = common::audit_records(dir.path()).last().unwrap().0;
        let objects = record_objects(&client, &runtime, &bucket, &format!("{PREFIX}/"));
        let archived = archived_exactly_once(&objects, newest, &format!("round {round}"));
        assert!(archived == family_bytes(dir.path()), "round {round}: byte for byte ({stats:?})");
        assert_eq!(stats.conflicts, 0, "round {round}");
        // The killed run made no digest: the restart's (at its shutdown) lists what it uploaded too.
        check_digests(&digests(&client, &runtime, &bucket, PREFIX), &objects, &gz(&client, &runtime, &bucket), None);
    }
}

#[test]
fn a_crash_between_an_upload_and_the_cursors_save_uploads_nothing_twice_however_the_next_run_cuts() {
    let runtime = runtime();
    let client = client(&runtime);
    let bucket = unique_bucket("archive-window");
    create_bucket(&client, &runtime, &bucket, true);
    let dir = tempfile::tempdir().unwrap();
    let run = |first: u64, count: u64| {
        let guard = config(dir.path(), &bucket).build().unwrap();
        let logger = guard.logger("executor");
        for block_number in first..first + count {
            emit!(logger, Executed { block_number, pad: "window" });
        }
        assert!(guard.flush());
    };
    let saved = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    run(0, 10);
    let (cursor, state) = (saved(".s3-archive.cursor"), saved(".s3-archive.state"));
    run(10, 10);
    // As if that run had died after its PUT and before saving: its object is in the bucket, the
    // files beside the logs say it is not.
    std::fs::write(dir.path().join(".s3-archive.cursor"), cursor).unwrap();
    std::fs::write(dir.path().join(".s3-archive.state"), state).unwrap();
    run(20, 5);
    let objects = record_objects(&client, &runtime, &bucket, &format!("{PREFIX}/"));
    let ranges: Vec<(u64, u64)> = objects.iter().map(|(_, first, last, _)| (*first, *last)).collect();
    assert_eq!(ranges, [(1, 10), (11, 20), (21, 25)], "records 11..=20 are not uploaded again in a wider object");
    let archived = archived_exactly_once(&objects, 25, "after the crash");
    assert!(archived == family_bytes(dir.path()));
}

/// Every object's bytes, by key.
fn gz(client: &aws_sdk_s3::Client, runtime: &tokio::runtime::Runtime, bucket: &str) -> HashMap<String, Vec<u8>> {
    objects(client, runtime, bucket, "").into_iter().collect()
}

#[test]
fn digests_every_interval_and_at_shutdown_list_each_object_once_chained_and_signed() {
    let runtime = runtime();
    let client = client(&runtime);
    let bucket = unique_bucket("archive-digests");
    create_bucket(&client, &runtime, &bucket, true);
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = signing_key(keys.path(), "archive", 7);
    let start = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let clock = Arc::new(ManualClock::at_micros(start.as_micros() as u64));
    let hour = Duration::from_secs(3600);
    let guard = config(dir.path(), &bucket)
        .clock(clock.clone())
        .archive(archive(&bucket).signing_key(&key).digest_interval(hour))
        .build()
        .unwrap();
    let logger = guard.logger("executor");
    let mut block_number = 0;
    let mut emit = |count: u64| {
        for _ in 0..count {
            emit!(logger, Executed { block_number, pad: "digest" });
            block_number += 1;
        }
    };
    emit(5);
    assert!(guard.flush());
    clock.set(UNIX_EPOCH + start + hour);
    assert!(guard.wait_processed());
    emit(5);
    assert!(guard.flush());
    clock.set(UNIX_EPOCH + start + hour * 2);
    assert!(guard.wait_processed());
    // An hour with nothing uploaded has its digest too.
    clock.set(UNIX_EPOCH + start + hour * 3);
    assert!(guard.wait_processed());
    assert_eq!(guard.stats().archive.unwrap().digests, 3);
    emit(3);
    drop(guard);

    let found = digests(&client, &runtime, &bucket, PREFIX);
    let counts: Vec<usize> = found.iter().map(|d| d.json["objects"].as_array().unwrap().len()).collect();
    assert_eq!(counts, [1, 1, 0, 1], "three intervals, then the shutdown's digest with the last object");
    let records = record_objects(&client, &runtime, &bucket, &format!("{PREFIX}/"));
    check_digests(&found, &records, &gz(&client, &runtime, &bucket), Some(&public));
    // Locked like the objects.
    let head = runtime.block_on(client.head_object().bucket(&bucket).key(&found[0].key).send()).unwrap();
    assert_eq!(head.object_lock_mode().map(|m| m.as_str()), Some("COMPLIANCE"));
}

#[test]
fn a_signing_key_that_is_not_a_pkcs8_ed25519_pem_is_an_error_at_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n").unwrap();
    let error =
        config(dir.path(), "some-bucket").archive(archive("some-bucket").signing_key(&key)).build().unwrap_err();
    let message = error.to_string();
    assert!(message.contains("archive.signing_key") && message.contains("key.pem"), "{message}");
}

#[test]
fn an_archived_object_cannot_be_deleted_or_overwritten_and_is_locked_until_its_last_record_plus_the_retention() {
    let runtime = runtime();
    let client = client(&runtime);
    let bucket = unique_bucket("archive-lock");
    create_bucket(&client, &runtime, &bucket, true);
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let clock = Arc::new(ManualClock::at_micros(now.as_micros() as u64));
    let retention = Duration::from_secs(2 * 24 * 3600);
    let guard = config(dir.path(), &bucket).clock(clock).audit_retention(retention).build().unwrap();
    let logger = guard.logger("executor");
    for block_number in 0..10 {
        emit!(logger, Executed { block_number, pad: "locked" });
    }
    assert!(guard.flush());
    drop(guard);
    let objects = record_objects(&client, &runtime, &bucket, &format!("{PREFIX}/"));
    assert_eq!(objects.len(), 1, "one flush, one object");
    let (key, ..) = &objects[0];
    let original = common::s3::objects(&client, &runtime, &bucket, key).remove(0).1;

    let head = runtime.block_on(client.head_object().bucket(&bucket).key(key).send()).unwrap();
    assert_eq!(head.object_lock_mode().map(|m| m.as_str()), Some("COMPLIANCE"));
    let until = head.object_lock_retain_until_date().unwrap().secs();
    assert_eq!(until, (now + retention).as_secs() as i64, "retained `audit_retention` from its last record's time");
    let version = head.version_id().unwrap().to_owned();

    let deleted = runtime.block_on(client.delete_object().bucket(&bucket).key(key).version_id(&version).send());
    assert!(deleted.is_err(), "deleting the archived version is refused");
    let shortened = runtime.block_on(
        client
            .put_object_retention()
            .bucket(&bucket)
            .key(key)
            .version_id(&version)
            .retention(
                aws_sdk_s3::types::ObjectLockRetention::builder()
                    .mode(ObjectLockRetentionMode::Governance)
                    .retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(until - 3600))
                    .build(),
            )
            .send(),
    );
    assert!(shortened.is_err(), "weakening the lock is refused");
    // A conditional PUT (what the archive itself sends) is refused outright; an unconditional
    // one can only add a version on top: the archived version stays, whole and locked.
    let conditional = runtime.block_on(
        client.put_object().bucket(&bucket).key(key).if_none_match("*").body(ByteStream::from_static(b"forged")).send(),
    );
    assert!(conditional.is_err(), "an object is never replaced by a conditional PUT");
    let _ =
        runtime.block_on(client.put_object().bucket(&bucket).key(key).body(ByteStream::from_static(b"forged")).send());
    let kept = runtime.block_on(client.get_object().bucket(&bucket).key(key).version_id(&version).send()).unwrap();
    assert_eq!(runtime.block_on(kept.body.collect()).unwrap().into_bytes().as_ref(), &original[..]);
}

#[test]
fn a_bucket_without_object_lock_is_an_error_at_start_naming_it_and_logging_goes_on_without_the_archive() {
    const CHILD: &str = "CHIMERA_ARCHIVE_UNLOCKED_CHILD";
    if let Ok(dir) = std::env::var(CHILD) {
        let bucket = std::env::var("CHIMERA_ARCHIVE_UNLOCKED_BUCKET").unwrap();
        let guard = config(Path::new(&dir), &bucket).max_bytes(16 * 1024).audit_backups(2).build().unwrap();
        let logger = guard.logger("executor");
        for block_number in 0..2_000 {
            emit!(logger, Executed { block_number, pad: "unlocked" });
        }
        assert!(guard.flush(), "a disabled archive holds no flush up");
        let stats = guard.stats().archive.unwrap();
        assert!(stats.disabled && stats.errors == 1 && stats.objects == 0, "{stats:?}");
        return;
    }
    let runtime = runtime();
    let client = client(&runtime);
    let bucket = unique_bucket("archive-unlocked");
    create_bucket(&client, &runtime, &bucket, false);
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "a_bucket_without_object_lock_is_an_error_at_start_naming_it_and_logging_goes_on_without_the_archive",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, dir.path())
        .env("CHIMERA_ARCHIVE_UNLOCKED_BUCKET", &bucket)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let said: Vec<&str> = stderr.lines().filter(|line| line.contains("S3 archive is disabled")).collect();
    assert_eq!(said.len(), 1, "said once: {stderr}");
    assert!(said[0].contains(&bucket) && said[0].contains("Object Lock"), "{}", said[0]);
    assert_eq!(common::audit_records(dir.path()).last().unwrap().0, 2_000, "every record is in the files");
    assert!(backups(dir.path(), "executions.log").len() <= 2, "retention does not wait for a disabled archive");
    assert!(record_objects(&client, &runtime, &bucket, "").is_empty());
}

#[test]
fn retention_keeps_audit_backups_until_the_archive_has_them() {
    let runtime = runtime();
    let client = client(&runtime);
    let bucket = unique_bucket("archive-retention");
    create_bucket(&client, &runtime, &bucket, true);
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens there: every request fails at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead = format!("http://127.0.0.1:{port}");
    let down = LogConfig::new(dir.path())
        .console(false)
        .audit_durability(AuditDurability::OsBuffer)
        .audit_store(AuditStore::none())
        .archive(S3Archive::new(&bucket).prefix(PREFIX).endpoint_url(&dead).region("us-east-1"))
        .max_bytes(16 * 1024)
        .audit_backups(2)
        .shutdown_timeout(Duration::from_secs(1));
    {
        let guard = down.build().unwrap();
        let logger = guard.logger("executor");
        for block_number in 0..2_000 {
            emit!(logger, Executed { block_number, pad: "kept" });
        }
        assert!(guard.flush_files());
        let stats = guard.stats().archive.unwrap();
        assert!(stats.lag_records > 0 && stats.objects == 0, "{stats:?}");
    }
    let kept = backups(dir.path(), "executions.log").len();
    assert!(kept > 2, "backups past audit_backups are kept while the archive is down ({kept})");
    assert_eq!(common::audit_records(dir.path()).first().unwrap().0, 1, "nothing was deleted");

    // The bucket back: everything is archived, then retention deletes what it covers.
    let guard = config(dir.path(), &bucket).max_bytes(16 * 1024).audit_backups(2).build().unwrap();
    assert!(guard.flush());
    let newest = common::audit_records(dir.path()).last().unwrap().0;
    let objects = record_objects(&client, &runtime, &bucket, &format!("{PREFIX}/"));
    archived_exactly_once(&objects, newest, "after the outage");
    // One more rotation runs retention with the mark advanced.
    let logger = guard.logger("executor");
    for block_number in 0..200 {
        emit!(logger, Executed { block_number, pad: "after" });
    }
    assert!(guard.flush());
    drop(guard);
    assert!(backups(dir.path(), "executions.log").len() <= 3, "archived backups past audit_backups are deleted");
}

#[test]
fn a_record_waits_in_the_current_file_for_the_archive_interval_and_no_longer() {
    let runtime = runtime();
    let client = client(&runtime);
    let bucket = unique_bucket("archive-interval");
    create_bucket(&client, &runtime, &bucket, true);
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let clock = Arc::new(ManualClock::at_micros(now.as_micros() as u64));
    let guard = config(dir.path(), &bucket)
        .clock(clock.clone())
        .archive(archive(&bucket).archive_interval(Duration::from_secs(60)))
        .build()
        .unwrap();
    emit!(guard.logger("executor"), Executed { block_number: 1, pad: "waits" });
    assert!(guard.wait_processed());
    assert_eq!(guard.stats().archive.unwrap().objects, 0, "read, and not due yet");
    clock.set(UNIX_EPOCH + now + Duration::from_secs(59));
    assert!(guard.wait_processed());
    assert_eq!(guard.stats().archive.unwrap().objects, 0, "59 s later: still not due");
    clock.set(UNIX_EPOCH + now + Duration::from_secs(60));
    assert!(guard.wait_processed());
    assert_eq!(guard.stats().archive.unwrap().objects, 1, "60 s after it was read: uploaded");
    drop(guard);
    assert_eq!(record_objects(&client, &runtime, &bucket, "").len(), 1);
}
