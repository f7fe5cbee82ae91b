//! `chimera-log verify --archive` (issue 27) against SeaweedFS, which enforces Object Lock as S3
//! does (`scripts/start-seaweedfs.sh` starts it and exports `CHIMERA_TEST_S3_ENDPOINT`): an
//! intact archive passes; a missing digest, a digest signed by another key, an object added
//! under the prefix and a record edited before upload are each caught.
#![cfg(feature = "s3")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use chimera_log_runtime::{emit, AuditDurability, AuditStore, LogConfig, LogEvent, S3Archive};

#[derive(LogEvent)]
#[log(audit)]
struct Executed {
    block_number: u64,
}

const PREFIX: &str = "chimera";

fn endpoint() -> String {
    std::env::var("CHIMERA_TEST_S3_ENDPOINT").expect(
        "CHIMERA_TEST_S3_ENDPOINT is not set: the archive tests need a server that enforces Object Lock; run \
         ./scripts/test-all.sh, or `source scripts/start-seaweedfs.sh` (with AWS_ACCESS_KEY_ID, \
         AWS_SECRET_ACCESS_KEY and AWS_REGION exported) to start SeaweedFS",
    )
}

fn unique_bucket(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let next = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{next}-{nanos}", std::process::id())
}

struct S3 {
    runtime: tokio::runtime::Runtime,
    client: Client,
}

impl S3 {
    fn new() -> S3 {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let shared =
            runtime.block_on(aws_config::defaults(aws_config::BehaviorVersion::latest()).region("us-east-1").load());
        let config = aws_sdk_s3::config::Builder::from(&shared).endpoint_url(endpoint()).force_path_style(true).build();
        S3 { runtime, client: Client::from_conf(config) }
    }

    fn bucket(&self, name: &str, locked: bool) {
        self.runtime
            .block_on(self.client.create_bucket().bucket(name).object_lock_enabled_for_bucket(locked).send())
            .unwrap();
    }

    fn keys(&self, bucket: &str) -> Vec<String> {
        let listed = self.runtime.block_on(self.client.list_objects_v2().bucket(bucket).send()).unwrap();
        listed.contents().iter().map(|object| object.key().unwrap().to_owned()).collect()
    }

    /// The object's bytes and `signature` metadata.
    fn get(&self, bucket: &str, key: &str) -> (Vec<u8>, Option<String>) {
        let mut got = self.runtime.block_on(self.client.get_object().bucket(bucket).key(key).send()).unwrap();
        let signature = got.metadata().and_then(|m| m.get("signature")).cloned();
        let body = self.runtime.block_on(std::mem::take(&mut got.body).collect()).unwrap().into_bytes().to_vec();
        (body, signature)
    }

    fn put(&self, bucket: &str, key: &str, body: Vec<u8>, signature: Option<&str>) {
        let mut request = self.client.put_object().bucket(bucket).key(key).body(ByteStream::from(body));
        if let Some(signature) = signature {
            request = request.metadata("signature", signature);
        }
        self.runtime.block_on(request.send()).unwrap();
    }

    /// Copies every object of `from` into a new bucket, but `skip`, and with `change` applied:
    /// an archive as someone who can write elsewhere would present it.
    fn copy(
        &self,
        from: &str,
        skip: impl Fn(&str) -> bool,
        change: impl Fn(&str, Vec<u8>, Option<String>) -> (Vec<u8>, Option<String>),
    ) -> String {
        let to = unique_bucket("copy");
        self.bucket(&to, false);
        for key in self.keys(from) {
            if skip(&key) {
                continue;
            }
            let (body, signature) = self.get(from, &key);
            let (body, signature) = change(&key, body, signature);
            self.put(&to, &key, body, signature.as_deref());
        }
        to
    }
}

/// An Ed25519 key pair from `seed`, as PEM files in `dir`: (private, public).
fn key_pair(dir: &Path, name: &str, seed: u8) -> (PathBuf, PathBuf, ed25519_dalek::SigningKey) {
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let private = dir.join(format!("{name}.pem"));
    std::fs::write(&private, key.to_pkcs8_pem(Default::default()).unwrap().as_bytes()).unwrap();
    let public = dir.join(format!("{name}.pub.pem"));
    std::fs::write(&public, key.verifying_key().to_public_key_pem(Default::default()).unwrap()).unwrap();
    (private, public, key)
}

fn config(dir: &Path, archive: S3Archive) -> LogConfig {
    LogConfig::new(dir)
        .console(false)
        .audit_durability(AuditDurability::OsBuffer)
        .audit_store(AuditStore::none())
        .max_bytes(8 * 1024)
        .archive(archive)
}

/// A log directory whose 300 audit records are archived into a new locked bucket by three runs,
/// each ending with its shutdown's digest: three digests, chained across the restarts.
fn archived(s3: &S3, keys: &Path) -> (tempfile::TempDir, String, PathBuf) {
    let bucket = unique_bucket("verify");
    s3.bucket(&bucket, true);
    let dir = tempfile::tempdir().unwrap();
    let (private, public, _) = key_pair(keys, "archive", 3);
    // Three runs, three digests at their shutdowns, chained across the restarts.
    for run in 0..3u64 {
        let archive = S3Archive::new(&bucket).prefix(PREFIX).endpoint_url(endpoint()).signing_key(&private);
        let guard = config(dir.path(), archive).build().unwrap();
        let logger = guard.logger("executor");
        for i in 0..100 {
            emit!(logger, Executed { block_number: run * 100 + i });
        }
        drop(guard);
    }
    (dir, bucket, public)
}

fn verify(bucket: &str, public: &Path, dir: Option<&Path>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chimera-log"));
    command
        .args(["verify", "--archive", &format!("s3://{bucket}/{PREFIX}"), "--public-key"])
        .arg(public)
        .env("AWS_ENDPOINT_URL", endpoint());
    if let Some(dir) = dir {
        command.arg(dir);
    }
    command.output().unwrap()
}

fn stdout(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn an_intact_archive_verifies_with_its_public_key_and_agrees_with_the_files() {
    let s3 = S3::new();
    let keys = tempfile::tempdir().unwrap();
    let (dir, bucket, public) = archived(&s3, keys.path());
    let output = verify(&bucket, &public, Some(dir.path()));
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("intact:") && text.contains("300 audit record(s)") && text.contains("3 signed digest(s)"),
        "{text}"
    );
    assert!(text.contains("300 compared with the files"), "{text}");
}

#[test]
fn a_missing_digest_is_caught() {
    let s3 = S3::new();
    let keys = tempfile::tempdir().unwrap();
    let (_dir, bucket, public) = archived(&s3, keys.path());
    // Locked: it cannot be deleted in place (`tests/tests/s3_archive.rs` checks that), so the
    // archive is presented without it.
    let copy = s3.copy(&bucket, |key| key.ends_with("/digests/00000000000000000002.json"), |_, body, sig| (body, sig));
    let output = verify(&copy, &public, None);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("digest(s) 2 missing"), "{text}");
    let intact = s3.copy(&bucket, |_| false, |_, body, sig| (body, sig));
    assert_eq!(verify(&intact, &public, None).status.code(), Some(0), "the copy itself is not what fails");
}

#[test]
fn a_digest_signed_by_another_key_is_caught() {
    use ed25519_dalek::Signer;
    let s3 = S3::new();
    let keys = tempfile::tempdir().unwrap();
    let (_dir, bucket, public) = archived(&s3, keys.path());
    let (_, _, other) = key_pair(keys.path(), "other", 9);
    let copy = s3.copy(
        &bucket,
        |_| false,
        |key, body, signature| {
            if key.ends_with("/digests/00000000000000000003.json") {
                let resigned: String = other.sign(&body).to_bytes().iter().map(|b| format!("{b:02x}")).collect();
                (body, Some(resigned))
            } else {
                (body, signature)
            }
        },
    );
    let output = verify(&copy, &public, None);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("00000000000000000003.json: the signature does not verify"), "{text}");
}

#[test]
fn an_object_added_under_the_prefix_is_caught() {
    let s3 = S3::new();
    let keys = tempfile::tempdir().unwrap();
    let (_dir, bucket, public) = archived(&s3, keys.path());
    let record = s3.keys(&bucket).into_iter().find(|key| key.contains("/records/")).unwrap();
    let stream_records = &record[..record.rfind('/').unwrap()];
    // Where a digest would have listed it, and elsewhere under the prefix.
    s3.put(&bucket, &format!("{stream_records}/00000000000000000001-00000000000000000001.log.gz"), b"x".to_vec(), None);
    s3.put(&bucket, &format!("{PREFIX}/notes.txt"), b"planted".to_vec(), None);
    let output = verify(&bucket, &public, None);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("00000000000000000001-00000000000000000001.log.gz: an object no digest lists"), "{text}");
    assert!(text.contains("notes.txt: an object under the prefix that no digest lists"), "{text}");
}

#[test]
fn a_record_edited_before_upload_is_caught() {
    let s3 = S3::new();
    let keys = tempfile::tempdir().unwrap();
    let bucket = unique_bucket("edited");
    s3.bucket(&bucket, true);
    let dir = tempfile::tempdir().unwrap();
    let (private, public, _) = key_pair(keys.path(), "archive", 3);
    // The bucket unreachable at first: the records wait in the file, where they are edited.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead = S3Archive::new(&bucket).prefix(PREFIX).endpoint_url(format!("http://127.0.0.1:{port}"));
    {
        let guard =
            config(dir.path(), dead).max_bytes(1024 * 1024).shutdown_timeout(Duration::from_secs(1)).build().unwrap();
        let logger = guard.logger("executor");
        for block_number in 0..20 {
            emit!(logger, Executed { block_number });
        }
    }
    let path = dir.path().join("executions.log");
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replacen("\"block_number\":7}", "\"block_number\":8}", 1);
    assert_ne!(text, edited);
    std::fs::write(&path, edited).unwrap();
    let archive = S3Archive::new(&bucket).prefix(PREFIX).endpoint_url(endpoint()).signing_key(&private);
    drop(config(dir.path(), archive).max_bytes(1024 * 1024).build().unwrap());
    let output = verify(&bucket, &public, None);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("chain broken at seq 8"), "{text}");
}

#[test]
fn a_gzip_bomb_under_the_prefix_is_read_through_the_capped_reader_and_its_line_reported_as_too_long() {
    use std::io::Write;
    let s3 = S3::new();
    let keys = tempfile::tempdir().unwrap();
    let (_dir, bucket, public) = archived(&s3, keys.path());
    let record = s3.keys(&bucket).into_iter().find(|key| key.contains("/records/")).unwrap();
    let stream_records = &record[..record.rfind('/').unwrap()];
    // 256 MiB of one line without a newline, about 256 KiB compressed.
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![b'a'; 1024 * 1024];
    for _ in 0..256 {
        gzip.write_all(&chunk).unwrap();
    }
    let bomb = gzip.finish().unwrap();
    s3.put(&bucket, &format!("{stream_records}/00000000000000000002-00000000000000000002.log.gz"), bomb, None);
    let output = Command::new(env!("CARGO_BIN_EXE_chimera-log"))
        .args(["verify", "--max-line", "1MiB", "--archive", &format!("s3://{bucket}/{PREFIX}"), "--public-key"])
        .arg(&public)
        .env("AWS_ENDPOINT_URL", endpoint())
        .output()
        .unwrap();
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("a line of 268435456 bytes exceeds --max-line: cannot be verified"), "{text}");
    assert!(text.contains("an object no digest lists (added)"), "{text}");
}
