//! [`CloudWatchConfig`]: the settings of the CloudWatch Logs sink, checked when the logger is
//! built. The sink itself is behind the cargo feature `cloudwatch`; the configuration is always
//! available, so that asking for CloudWatch in a build without the feature is a clear error from
//! `init_logging` instead of a compile error in the application's configuration code.

use std::time::Duration;

use crate::error::Error;

/// Retention periods CloudWatch Logs accepts, in days.
pub const RETENTION_DAYS: [u32; 22] =
    [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

/// The service's limit on one `PutLogEvents` request, counting 26 bytes per event.
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// The service's limit on events in one request.
pub const MAX_BATCH_EVENTS: usize = 10_000;

/// Where and how events are shipped to CloudWatch Logs.
///
/// | setting | default |
/// |---|---|
/// | `new(log_group)` | required, e.g. `"Chimera"` |
/// | `region` | the standard AWS chain (`AWS_REGION`, profile, instance metadata) |
/// | `log_stream` | generated: `<host>-<UTC start time>` |
/// | `retention_days` | 30 (applied to a group this logger creates; to an existing one only when set) |
/// | `batch_events` | 100 (a trigger, not a cap: a backlog goes in requests as large as the service takes) |
/// | `batch_interval` | 5 s |
/// | `max_event_bytes` | 1 MiB (the service limit since 2025), larger events are truncated |
/// | `operation_timeout` | 10 s per request |
/// | `endpoint_url` | the standard chain (`AWS_ENDPOINT_URL`), else AWS |
///
/// Credentials come from the standard AWS chain (environment, profile, IAM role).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct CloudWatchConfig {
    pub(crate) log_group: String,
    pub(crate) region: Option<String>,
    pub(crate) log_stream: Option<String>,
    pub(crate) retention_days: u32,
    /// `retention_days` was set: apply it to an existing group too.
    pub(crate) retention_explicit: bool,
    pub(crate) batch_events: usize,
    pub(crate) batch_interval: Duration,
    pub(crate) max_event_bytes: usize,
    pub(crate) operation_timeout: Duration,
    pub(crate) endpoint_url: Option<String>,
    /// Lines below this level are not shipped (`LogConfig::cloudwatch_level`, set at start).
    pub(crate) min_level: crate::event::Level,
}

impl CloudWatchConfig {
    /// Ships to the log group `log_group`, created if missing.
    pub fn new(log_group: impl Into<String>) -> Self {
        CloudWatchConfig {
            log_group: log_group.into(),
            region: None,
            log_stream: None,
            retention_days: 30,
            retention_explicit: false,
            batch_events: 100,
            batch_interval: Duration::from_secs(5),
            max_event_bytes: 1024 * 1024,
            operation_timeout: Duration::from_secs(10),
            endpoint_url: None,
            min_level: crate::event::Level::Trace,
        }
    }

    /// The AWS region, e.g. `us-east-1`.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// The log stream, created if missing.
    pub fn log_stream(mut self, log_stream: impl Into<String>) -> Self {
        self.log_stream = Some(log_stream.into());
        self
    }

    /// Days the service keeps the group's events; one of [`RETENTION_DAYS`]. Set explicitly, it
    /// is applied to an existing group too; by default (30) only to a group this logger creates,
    /// so a least-privilege role without `logs:PutRetentionPolicy` works on an existing group.
    pub fn retention_days(mut self, days: u32) -> Self {
        self.retention_days = days;
        self.retention_explicit = true;
        self
    }

    /// Send once this many events are waiting (1 to 10,000).
    pub fn batch_events(mut self, events: usize) -> Self {
        self.batch_events = events;
        self
    }

    /// Send once the oldest waiting event is this old.
    pub fn batch_interval(mut self, interval: Duration) -> Self {
        self.batch_interval = interval;
        self
    }

    /// The largest event the service accepts (its limit may change); larger events are truncated
    /// on a UTF-8 boundary, with a marker saying how much was cut.
    pub fn max_event_bytes(mut self, bytes: usize) -> Self {
        self.max_event_bytes = bytes;
        self
    }

    /// Time allowed for one request, retries excluded.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Sends to this endpoint instead of AWS's (a VPC endpoint, or a local emulator).
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Checks every setting; the first bad one is the error.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let name_ok = |name: &str, max: usize| {
            !name.is_empty()
                && name.len() <= max
                && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-/.#".contains(c))
        };
        if !name_ok(&self.log_group, 512) {
            return Err(Error::invalid(
                "cloudwatch.log_group",
                &self.log_group,
                "1 to 512 characters from a-z A-Z 0-9 _ - / . #",
            ));
        }
        if let Some(stream) = &self.log_stream {
            if stream.is_empty() || stream.len() > 512 || stream.contains([':', '*']) {
                return Err(Error::invalid("cloudwatch.log_stream", stream, "1 to 512 characters, no ':' or '*'"));
            }
        }
        if !RETENTION_DAYS.contains(&self.retention_days) {
            return Err(Error::invalid(
                "cloudwatch.retention_days",
                self.retention_days.to_string(),
                format!("CloudWatch Logs accepts only {RETENTION_DAYS:?}"),
            ));
        }
        if !(1..=MAX_BATCH_EVENTS).contains(&self.batch_events) {
            return Err(Error::invalid("cloudwatch.batch_events", self.batch_events.to_string(), "1 to 10000"));
        }
        if self.batch_interval.is_zero() {
            return Err(Error::invalid("cloudwatch.batch_interval", "0s", "the interval must be positive"));
        }
        if self.max_event_bytes <= 26 + 64 || self.max_event_bytes > MAX_BATCH_BYTES {
            return Err(Error::invalid(
                "cloudwatch.max_event_bytes",
                self.max_event_bytes.to_string(),
                "between 91 bytes and 1 MiB",
            ));
        }
        if self.operation_timeout.is_zero() {
            return Err(Error::invalid("cloudwatch.operation_timeout", "0s", "the timeout must be positive"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_seed() {
        let config = CloudWatchConfig::new("Chimera");
        config.validate().unwrap();
        assert_eq!(
            (config.retention_days, config.batch_events, config.batch_interval),
            (30, 100, Duration::from_secs(5))
        );
    }

    #[test]
    fn bad_settings_are_errors_naming_the_setting() {
        let cases = [
            (CloudWatchConfig::new(""), "cloudwatch.log_group"),
            (CloudWatchConfig::new("has space"), "cloudwatch.log_group"),
            (CloudWatchConfig::new("g").retention_days(31), "cloudwatch.retention_days"),
            (CloudWatchConfig::new("g").log_stream("a:b"), "cloudwatch.log_stream"),
            (CloudWatchConfig::new("g").batch_events(0), "cloudwatch.batch_events"),
            (CloudWatchConfig::new("g").batch_events(10_001), "cloudwatch.batch_events"),
            (CloudWatchConfig::new("g").batch_interval(Duration::ZERO), "cloudwatch.batch_interval"),
            (CloudWatchConfig::new("g").max_event_bytes(2 * 1024 * 1024), "cloudwatch.max_event_bytes"),
        ];
        for (config, setting) in cases {
            match config.validate() {
                Err(Error::InvalidSetting { setting: named, .. }) => assert_eq!(named, setting),
                other => panic!("{setting}: {other:?}"),
            }
        }
        for days in RETENTION_DAYS {
            CloudWatchConfig::new("g").retention_days(days).validate().unwrap();
        }
    }
}
