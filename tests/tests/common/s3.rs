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
