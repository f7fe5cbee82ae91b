//! Where the S3 archive puts the audit trail ([`S3Archive`]): the setting only; the archive itself
//! (the uploader thread, the S3 client) is a forwarder (`forward::archive`).

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;

/// The S3 bucket (and key prefix) that keeps a copy of every sealed audit record under Object
/// Lock in COMPLIANCE mode, for `audit_retention`: set with
/// [`LogConfig::archive`](crate::LogConfig::archive). Needs the cargo feature `s3`.
///
/// | setting | default |
/// |---|---|
/// | `bucket` (`new`) | required; it must have Object Lock enabled |
/// | `prefix` | none (keys start with the stream) |
/// | `archive_interval` | 15 min: no sealed record waits longer to be uploaded |
/// | `digest_interval` | 1 h |
/// | `signing_key` | none (`CHIMERA_LOG_ARCHIVE_SIGNING_KEY`): an Ed25519 PKCS#8 PEM file |
/// | `endpoint_url` | the AWS SDK's (`AWS_ENDPOINT_URL`, profiles); path-style when set |
/// | `region` | the AWS SDK's (`AWS_REGION`, profiles, IMDS); `us-east-1` when it finds none |
/// | `operation_timeout` | 60 s per request |
///
/// ```
/// use chimera_log_runtime::{LogConfig, S3Archive};
///
/// let config = LogConfig::new("logs").archive(S3Archive::new("audit-archive").prefix("chimera"));
/// # let _ = config;
/// let parsed = S3Archive::from_url("s3://audit-archive/chimera").unwrap();
/// assert_eq!(parsed, S3Archive::new("audit-archive").prefix("chimera"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct S3Archive {
    pub(crate) bucket: String,
    pub(crate) prefix: String,
    pub(crate) archive_interval: Duration,
    pub(crate) digest_interval: Duration,
    pub(crate) signing_key: Option<PathBuf>,
    pub(crate) endpoint_url: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) operation_timeout: Duration,
}

impl S3Archive {
    /// An archive into `bucket`, every other setting at its default.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Archive {
            bucket: bucket.into(),
            prefix: String::new(),
            archive_interval: Duration::from_secs(15 * 60),
            digest_interval: Duration::from_secs(60 * 60),
            signing_key: None,
            endpoint_url: None,
            region: None,
            operation_timeout: Duration::from_secs(60),
        }
    }

    /// Parses the `CHIMERA_LOG_ARCHIVE` form, `s3://bucket` or `s3://bucket/prefix`.
    ///
    /// Errors: any other text, naming the setting.
    pub fn from_url(text: &str) -> Result<Self, Error> {
        let invalid = || Error::invalid("CHIMERA_LOG_ARCHIVE", text, "expected `s3://bucket` or `s3://bucket/prefix`");
        let rest = text.strip_prefix("s3://").ok_or_else(invalid)?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid());
        }
        Ok(S3Archive::new(bucket).prefix(prefix))
    }

    /// A prefix for every key (`chimera` puts objects under `chimera/<host>/<log dir>/...`);
    /// slashes around it are trimmed.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into().trim_matches('/').to_owned();
        self
    }

    /// The longest a sealed record waits in the current file before it is uploaded in a segment
    /// object (15 minutes by default); a flush and a clean shutdown upload at once.
    pub fn archive_interval(mut self, every: Duration) -> Self {
        self.archive_interval = every;
        self
    }

    /// How often a signed digest lists the objects uploaded since the last one (1 hour by
    /// default; also at shutdown).
    pub fn digest_interval(mut self, every: Duration) -> Self {
        self.digest_interval = every;
        self
    }

    /// The Ed25519 private key (PKCS#8 PEM, as `openssl genpkey -algorithm ed25519` writes)
    /// that signs the digests. Keep it off the host's log directory.
    pub fn signing_key(mut self, path: impl Into<PathBuf>) -> Self {
        self.signing_key = Some(path.into());
        self
    }

    /// An S3 endpoint other than AWS's (a local server): addressing is then path-style.
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// The bucket's region, instead of the AWS SDK's chain.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// How long one request may take before it is abandoned and retried (60 s by default).
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        // S3's rules for a bucket name, loosely: a bad one would fail every request later.
        let valid_name = (3..=63).contains(&self.bucket.len())
            && self.bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_name {
            return Err(Error::invalid(
                "archive",
                &self.bucket,
                "an S3 bucket name is 3 to 63 lower-case letters, digits, dots and dashes",
            ));
        }
        for (setting, every) in [("archive_interval", self.archive_interval), ("digest_interval", self.digest_interval)]
        {
            if every.is_zero() {
                return Err(Error::invalid(setting, "0s", "an interval must be longer than zero"));
            }
        }
        if self.operation_timeout.is_zero() {
            return Err(Error::invalid("operation_timeout", "0s", "a request needs some time"));
        }
        if !cfg!(feature = "s3") {
            return Err(Error::invalid(
                "archive",
                format!("s3://{}", self.bucket),
                "the S3 archive needs the `s3` feature of chimera-log",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LogConfig;

    #[test]
    fn the_environment_sets_the_bucket_prefix_and_signing_key_in_any_order() {
        for vars in [
            [
                ("CHIMERA_LOG_ARCHIVE", "s3://audit-archive/chimera/"),
                ("CHIMERA_LOG_ARCHIVE_SIGNING_KEY", "/keys/a.pem"),
            ],
            [
                ("CHIMERA_LOG_ARCHIVE_SIGNING_KEY", "/keys/a.pem"),
                ("CHIMERA_LOG_ARCHIVE", "s3://audit-archive/chimera/"),
            ],
        ] {
            let config = LogConfig::from_vars(vars).unwrap();
            assert_eq!(
                config.archive,
                Some(S3Archive::new("audit-archive").prefix("chimera").signing_key("/keys/a.pem"))
            );
        }
        let bare = LogConfig::from_vars([("CHIMERA_LOG_ARCHIVE", "s3://audit-archive")]).unwrap();
        assert_eq!(bare.archive.unwrap().prefix, "");
    }

    #[test]
    fn a_bad_archive_setting_is_an_error_naming_it() {
        for text in ["audit-archive", "s3://", "s3:///prefix", "https://audit-archive"] {
            let error = LogConfig::from_vars([("CHIMERA_LOG_ARCHIVE", text)]).unwrap_err();
            assert!(error.to_string().contains("CHIMERA_LOG_ARCHIVE"), "{text}: {error}");
        }
        let error = LogConfig::from_vars([("CHIMERA_LOG_ARCHIVE_SIGNING_KEY", "/keys/a.pem")]).unwrap_err();
        assert!(error.to_string().contains("set CHIMERA_LOG_ARCHIVE too"), "{error}");
        for archive in [
            S3Archive::new("Not_A_Bucket"),
            S3Archive::new("ok-bucket").archive_interval(Duration::ZERO),
            S3Archive::new("ok-bucket").digest_interval(Duration::ZERO),
        ] {
            assert!(matches!(archive.validate(), Err(Error::InvalidSetting { .. })), "{archive:?}");
        }
    }

    #[cfg(not(feature = "s3"))]
    #[test]
    fn without_the_s3_feature_an_archive_is_refused_at_start_naming_the_feature() {
        let dir = tempfile::tempdir().unwrap();
        let error = LogConfig::new(dir.path())
            .console(false)
            .archive(S3Archive::new("audit-archive"))
            .build()
            .expect_err("refused");
        assert!(error.to_string().contains("`s3` feature"), "{error}");
    }
}
