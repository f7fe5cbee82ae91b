//! The S3 server the archive tests run against: SeaweedFS, which enforces Object Lock as S3 does
//! (`scripts/start-seaweedfs.sh` starts it and exports its address in `CHIMERA_TEST_S3_ENDPOINT`).

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use aws_sdk_s3::Client;

pub fn endpoint() -> String {
    std::env::var("CHIMERA_TEST_S3_ENDPOINT").expect(
        "CHIMERA_TEST_S3_ENDPOINT is not set: the S3 archive tests need a server that enforces Object Lock; \
         run ./scripts/test-all.sh, or `source scripts/start-seaweedfs.sh` (with AWS_ACCESS_KEY_ID, \
         AWS_SECRET_ACCESS_KEY and AWS_REGION exported) to start SeaweedFS",
    )
}

/// A bucket name no other test (or earlier run against the same server) uses: lower case,
/// digits and dashes, as S3 wants.
pub fn unique_bucket(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{}-{nanos}", std::process::id(), NEXT.fetch_add(1, Relaxed))
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A client of the test server, path-style as local servers need.
pub fn client(runtime: &tokio::runtime::Runtime) -> Client {
    let shared =
        runtime.block_on(aws_config::defaults(aws_config::BehaviorVersion::latest()).region("us-east-1").load());
    Client::from_conf(
        aws_sdk_s3::config::Builder::from(&shared).endpoint_url(endpoint()).force_path_style(true).build(),
    )
}

/// Creates a bucket, with Object Lock enabled (and so versioning) when `locked`.
pub fn create_bucket(client: &Client, runtime: &tokio::runtime::Runtime, bucket: &str, locked: bool) {
    runtime
        .block_on(client.create_bucket().bucket(bucket).object_lock_enabled_for_bucket(locked).send())
        .unwrap_or_else(|error| panic!("CreateBucket {bucket}: {error:?}"));
}

/// Every object under `prefix` in `bucket`, `(key, bytes)`, in key order.
pub fn objects(
    client: &Client,
    runtime: &tokio::runtime::Runtime,
    bucket: &str,
    prefix: &str,
) -> Vec<(String, Vec<u8>)> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut request = client.list_objects_v2().bucket(bucket).prefix(prefix);
        if let Some(token) = &token {
            request = request.continuation_token(token);
        }
        let page = runtime.block_on(request.send()).unwrap();
        keys.extend(page.contents().iter().map(|object| object.key().unwrap().to_owned()));
        match page.next_continuation_token() {
            Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
            _ => break,
        }
    }
    keys.into_iter()
        .map(|key| {
            let got = runtime.block_on(client.get_object().bucket(bucket).key(&key).send()).unwrap();
            let bytes = runtime.block_on(got.body.collect()).unwrap().into_bytes().to_vec();
            (key, bytes)
        })
        .collect()
}

/// The record objects (`.../records/<first>-<last>.log.gz`) under `prefix`, `(key, first,
/// last, lines gunzipped)`, in key order (seq order).
pub fn record_objects(
    client: &Client,
    runtime: &tokio::runtime::Runtime,
    bucket: &str,
    prefix: &str,
) -> Vec<(String, u64, u64, Vec<u8>)> {
    use std::io::Read;
    objects(client, runtime, bucket, prefix)
        .into_iter()
        .filter(|(key, _)| key.contains("/records/"))
        .map(|(key, gz)| {
            let name = key.rsplit('/').next().unwrap().strip_suffix(".log.gz").unwrap();
            let (first, last) = name.split_once('-').unwrap();
            let mut lines = Vec::new();
            flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut lines).unwrap();
            (key.clone(), first.parse().unwrap(), last.parse().unwrap(), lines)
        })
        .collect()
}

/// A digest as found in the bucket: its key, bytes, parsed content and signature (hex, from
/// its metadata).
#[derive(Debug)]
pub struct FoundDigest {
    pub key: String,
    pub body: Vec<u8>,
    pub json: serde_json::Value,
    pub signature: Option<String>,
}

/// The digests under `prefix`, in key (number) order.
pub fn digests(client: &Client, runtime: &tokio::runtime::Runtime, bucket: &str, prefix: &str) -> Vec<FoundDigest> {
    objects(client, runtime, bucket, prefix)
        .into_iter()
        .filter(|(key, _)| key.contains("/digests/"))
        .map(|(key, body)| {
            let head = runtime.block_on(client.head_object().bucket(bucket).key(&key).send()).unwrap();
            let signature = head.metadata().and_then(|m| m.get("signature")).cloned();
            let json = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{key}: {e}"));
            FoundDigest { key, body, json, signature }
        })
        .collect()
}

/// An Ed25519 key made from `seed`, written as PKCS#8 PEM (as `openssl genpkey -algorithm
/// ed25519` writes it) into `dir`; returns its path and public key.
pub fn signing_key(dir: &std::path::Path, name: &str, seed: u8) -> (std::path::PathBuf, ed25519_dalek::VerifyingKey) {
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, key.to_pkcs8_pem(Default::default()).unwrap().as_bytes()).unwrap();
    let public = dir.join(format!("{name}.pub.pem"));
    std::fs::write(&public, key.verifying_key().to_public_key_pem(Default::default()).unwrap()).unwrap();
    (path, key.verifying_key())
}

/// SHA-256, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks that the digests are numbered 1..=n, each chained to the one before (its key, hash
/// and signature), signed by `public` when given, and that together they list every record
/// object once, with its SHA-256 and seq range.
pub fn check_digests(
    digests: &[FoundDigest],
    records: &[(String, u64, u64, Vec<u8>)],
    gz: &std::collections::HashMap<String, Vec<u8>>,
    public: Option<&ed25519_dalek::VerifyingKey>,
) {
    let mut listed: Vec<String> = Vec::new();
    for (i, digest) in digests.iter().enumerate() {
        assert_eq!(digest.json["number"], (i + 1) as u64, "{}: digests numbered without a gap", digest.key);
        match i.checked_sub(1).map(|p| &digests[p]) {
            None => assert!(digest.json["previous"].is_null(), "the first digest has no previous"),
            Some(previous) => {
                assert_eq!(digest.json["previous"]["key"], previous.key.as_str());
                assert_eq!(digest.json["previous"]["sha256"], sha256_hex(&previous.body).as_str());
                assert_eq!(digest.json["previous"]["signature"].as_str(), previous.signature.as_deref());
                assert_eq!(digest.json["period_start"], previous.json["period_end"], "no period missing");
            }
        }
        if let Some(public) = public {
            let hex = digest.signature.as_deref().unwrap_or_else(|| panic!("{}: not signed", digest.key));
            let bytes: Vec<u8> =
                (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
            let signature = ed25519_dalek::Signature::from_slice(&bytes).unwrap();
            assert!(public.verify_strict(&digest.body, &signature).is_ok(), "{}: signature", digest.key);
            assert_eq!(digest.json["public_key_fingerprint"], sha256_hex(public.as_bytes()).as_str());
        }
        for object in digest.json["objects"].as_array().unwrap() {
            let key = object["key"].as_str().unwrap().to_owned();
            assert_eq!(object["sha256"], sha256_hex(&gz[&key]).as_str(), "{key}: the hash of its bytes");
            listed.push(key);
        }
    }
    let keys: Vec<String> = records.iter().map(|(key, ..)| key.clone()).collect();
    assert_eq!(listed, keys, "every record object listed once, in order");
}
