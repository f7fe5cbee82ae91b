//! The S3 requests the archive makes, and nothing else: the client (the AWS SDK's chain for
//! credentials, region and endpoint; path-style addressing with a custom endpoint), the check
//! that the bucket has Object Lock, a locked conditional PUT, and the listing of the stream's keys.
//! Every call blocks on the archive thread's own runtime.

use std::time::{Duration, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{ChecksumAlgorithm, ObjectLockEnabled, ObjectLockMode};
use aws_sdk_s3::Client;
use sha2::{Digest, Sha256};

use super::error::{code, status, ArchiveError};
use crate::config::archive::S3Archive;

/// The region asked when neither the setting nor the SDK's chain gives one (a local server
/// ignores it; AWS redirects a wrong one with an error that names the right one).
const FALLBACK_REGION: &str = "us-east-1";

/// An object's user metadata (`x-amz-meta-*`, without the prefix).
pub(crate) type Metadata = std::collections::HashMap<String, String>;

/// What a conditional PUT found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Put {
    /// The object is stored under its key now.
    Stored,
    /// An object was there already, with the same bytes (an upload of an earlier run, or an
    /// earlier attempt whose answer was lost).
    AlreadyThere,
    /// An object was there already, with other bytes: kept, not overwritten.
    Conflict,
}

/// The bucket, through a client of its own.
#[derive(Debug)]
pub(crate) struct Bucket {
    runtime: tokio::runtime::Runtime,
    client: Client,
    name: String,
}

impl Bucket {
    /// A client of `archive`'s bucket on a runtime of this thread's own.
    pub(crate) fn connect(archive: &S3Archive) -> std::io::Result<Bucket> {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().on_thread_start(crate::thread::mark).build()?;
        let client = runtime.block_on(make_client(archive));
        Ok(Bucket { runtime, client, name: archive.bucket.clone() })
    }

    /// Whether the bucket keeps objects under Object Lock: `Unusable` when it has none or does
    /// not exist.
    pub(crate) fn check_object_lock(&self) -> Result<(), ArchiveError> {
        let answer = self.runtime.block_on(self.client.get_object_lock_configuration().bucket(&self.name).send());
        match answer {
            Ok(answer) => {
                let enabled = answer.object_lock_configuration().and_then(|c| c.object_lock_enabled());
                if enabled == Some(&ObjectLockEnabled::Enabled) {
                    Ok(())
                } else {
                    Err(self.without_lock())
                }
            }
            Err(error) => match code(&error) {
                Some("ObjectLockConfigurationNotFoundError") => Err(self.without_lock()),
                Some("NoSuchBucket") => Err(ArchiveError::Unusable(format!(
                    "the S3 bucket {} does not exist (create it with Object Lock enabled)",
                    self.name
                ))),
                _ => Err(ArchiveError::request("GetObjectLockConfiguration", &error)),
            },
        }
    }

    fn without_lock(&self) -> ArchiveError {
        ArchiveError::Unusable(format!(
            "the S3 bucket {} does not have Object Lock enabled: its objects could be deleted or overwritten \
             (create the bucket with Object Lock enabled; see docs/archive.md)",
            self.name
        ))
    }

    /// PUTs `body` at `key` unless an object is there already (`If-None-Match: *`), with its
    /// SHA-256 for the server to check, under a COMPLIANCE lock until `retain_until`. An object
    /// already there is read back and compared, never overwritten.
    pub(crate) fn put_locked(
        &self,
        key: &str,
        body: &[u8],
        retain_until: SystemTime,
        content_type: &str,
        metadata: Option<(&str, &str)>,
    ) -> Result<Put, ArchiveError> {
        let sha256: [u8; 32] = Sha256::digest(body).into();
        let until = retain_until.duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let mut request = self
            .client
            .put_object()
            .bucket(&self.name)
            .key(key)
            .body(ByteStream::from(body.to_vec()))
            .content_type(content_type)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(super::base64(&sha256))
            .if_none_match("*")
            .object_lock_mode(ObjectLockMode::Compliance)
            .object_lock_retain_until_date(DateTime::from_secs(i64::try_from(until.as_secs()).unwrap_or(i64::MAX)));
        if let Some((name, value)) = metadata {
            request = request.metadata(name, value);
        }
        match self.runtime.block_on(request.send()) {
            Ok(_) => Ok(Put::Stored),
            // 412: the key is taken. 409: another conditional write to it is under way (S3
            // says to retry; the retry finds it taken, or free).
            Err(error) if status(&error) == Some(412) || code(&error) == Some("PreconditionFailed") => {
                match self.get(key)? {
                    Some((there, _)) if Sha256::digest(&there).as_slice() == sha256 => Ok(Put::AlreadyThere),
                    Some(_) => Ok(Put::Conflict),
                    // Gone between the two requests: only a delete marker hides it (the
                    // version is locked); a retry puts it again.
                    None => Err(ArchiveError::Request {
                        operation: "PutObject",
                        message: format!("{key}: the key was taken and then found empty"),
                    }),
                }
            }
            Err(error) => Err(ArchiveError::request("PutObject", &error)),
        }
    }

    /// The object at `key` and its user metadata, `None` if there is none.
    pub(crate) fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Metadata)>, ArchiveError> {
        let answer = self.runtime.block_on(self.client.get_object().bucket(&self.name).key(key).send());
        match answer {
            Ok(mut answer) => match self.runtime.block_on(std::mem::take(&mut answer.body).collect()) {
                Ok(bytes) => Ok(Some((bytes.into_bytes().to_vec(), answer.metadata.take().unwrap_or_default()))),
                Err(error) => Err(ArchiveError::Request { operation: "GetObject", message: error.to_string() }),
            },
            Err(error) if code(&error) == Some("NoSuchKey") || status(&error) == Some(404) => Ok(None),
            Err(error) => Err(ArchiveError::request("GetObject", &error)),
        }
    }

    /// The keys under `prefix` after `start_after` (all of them when `None`), in key order.
    pub(crate) fn keys_after(&self, prefix: &str, start_after: Option<&str>) -> Result<Vec<String>, ArchiveError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut request = self.client.list_objects_v2().bucket(&self.name).prefix(prefix);
            if let Some(after) = start_after {
                request = request.start_after(after);
            }
            if let Some(token) = &token {
                request = request.continuation_token(token);
            }
            let page = self
                .runtime
                .block_on(request.send())
                .map_err(|error| ArchiveError::request("ListObjectsV2", &error))?;
            keys.extend(page.contents().iter().filter_map(|object| object.key().map(str::to_owned)));
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => return Ok(keys),
            }
        }
    }
}

async fn make_client(archive: &S3Archive) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &archive.region {
        loader = loader.region(Region::new(region.clone()));
    }
    let shared = loader.load().await;
    let mut builder = aws_sdk_s3::config::Builder::from(&shared)
        // The archive retries itself, with backoff, the same bytes under the same key.
        .retry_config(RetryConfig::disabled())
        .timeout_config(TimeoutConfig::builder().operation_timeout(archive.operation_timeout).build());
    if shared.region().is_none() {
        builder = builder.region(Region::new(FALLBACK_REGION));
    }
    if let Some(url) = &archive.endpoint_url {
        builder = builder.endpoint_url(url);
    }
    // A local server (an endpoint of its own, here or in `AWS_ENDPOINT_URL`) has no per-bucket
    // host names.
    if archive.endpoint_url.is_some() || shared.endpoint_url().is_some() {
        builder = builder.force_path_style(true);
    }
    Client::from_conf(builder.build())
}
