//! The CloudWatch Logs sink (feature `cloudwatch`): batches lines and ships them with
//! `PutLogEvents`, on a tokio runtime owned by its writer thread, so the application need not be
//! async.
//!
//! It owns delivery and nothing else: group, stream and retention set-up, its own retry loop
//! (the SDK's retries are off: their budget runs dry in a long outage), and reporting an outage
//! once when it starts and once when it ends. Lines reach it through its own queue and writer
//! thread, so an outage never slows the console or the files; while it lasts, lines wait in a
//! bounded buffer and then in the bounded queue, and past both they are dropped and counted.
//! The SDK logs through `tracing`, which this logger does not subscribe to: nothing the SDK,
//! hyper or rustls log can feed back into it.

mod batch;

use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_cloudwatchlogs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use aws_sdk_cloudwatchlogs::Client;

use self::batch::{Batch, Batcher, Limits, Pushed};
use super::{FailureReporter, Sink};
use crate::clock::Clock;
use crate::cloudwatch_config::CloudWatchConfig;
use crate::stats::CloudWatchCounters;

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Set by shutdown: past this instant the retry loop gives up instead of waiting again.
#[derive(Debug, Default)]
pub(crate) struct GiveUp(Mutex<Option<Instant>>);

impl GiveUp {
    /// Gives up retrying at `deadline`.
    pub(crate) fn at(&self, deadline: Instant) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(deadline);
    }

    fn passed(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).is_some_and(|deadline| Instant::now() >= deadline)
    }

    fn remaining(&self) -> Option<Duration> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }
}

/// How a failed request is handled.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// Throttling, 5xx, timeouts, connection failures: wait and send again.
    Retry(String),
    /// The group or stream is gone: create them and send again.
    Missing,
    /// Bad parameters, bad credentials: reported and counted, the batch is given up.
    Fatal(String),
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static, R>(error: &SdkError<E, R>) -> Failure
where
    R: std::fmt::Debug,
{
    match error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("");
            let message = format!("{code}: {}", service.err().message().unwrap_or("no message"));
            match code {
                "ResourceNotFoundException" => Failure::Missing,
                "ThrottlingException"
                | "ServiceUnavailableException"
                | "RequestLimitExceeded"
                | "LimitExceededException"
                | "InternalFailure"
                | "ServiceException" => Failure::Retry(message),
                _ if code.is_empty() || code.starts_with("Internal") => Failure::Retry(message),
                _ => Failure::Fatal(message),
            }
        }
        SdkError::TimeoutError(_) => Failure::Retry("request timed out".into()),
        SdkError::DispatchFailure(failure) => {
            let detail = format!("{failure:?}");
            if detail.contains("CredentialsNotLoaded") {
                // Credentials may yet appear (a role attached, a file written): keep retrying.
                Failure::Retry("no AWS credentials found (environment, profile or IAM role); will retry".to_owned())
            } else {
                Failure::Retry(format!("could not reach the service: {detail}"))
            }
        }
        SdkError::ResponseError(_) => Failure::Retry("unreadable response".into()),
        SdkError::ConstructionFailure(_) => Failure::Fatal(format!("request could not be built: {error}")),
        _ => Failure::Retry(format!("{error}")),
    }
}

#[derive(Debug)]
pub(crate) struct CloudWatchSink {
    config: CloudWatchConfig,
    stream: String,
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    ready: bool,
    batcher: Batcher,
    clock: Arc<dyn Clock>,
    counters: Arc<CloudWatchCounters>,
    give_up: Arc<GiveUp>,
    /// Delivery is failing; reported once when it started, and once when it recovers.
    down_since: Option<SystemTime>,
    reported_rejections: bool,
    reported_drops: bool,
    refusals: FailureReporter,
    seed: u64,
}

impl CloudWatchSink {
    pub(crate) fn new(
        config: CloudWatchConfig,
        clock: Arc<dyn Clock>,
        counters: Arc<CloudWatchCounters>,
        give_up: Arc<GiveUp>,
    ) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let stream = config.log_stream.clone().unwrap_or_else(|| generated_stream_name(clock.now()));
        let client = runtime.block_on(make_client(&config));
        let limits = Limits {
            batch_events: config.batch_events,
            batch_interval: config.batch_interval,
            max_buffer_bytes: config.max_buffer_bytes,
            max_event_bytes: config.max_event_bytes,
            retention_days: config.retention_days,
        };
        let seed = clock.now().duration_since(SystemTime::UNIX_EPOCH).map_or(7, |d| d.subsec_nanos().into());
        Ok(CloudWatchSink {
            config,
            stream,
            runtime,
            client,
            ready: false,
            batcher: Batcher::new(limits),
            clock,
            counters,
            give_up,
            down_since: None,
            reported_rejections: false,
            reported_drops: false,
            refusals: FailureReporter::default(),
            seed,
        })
    }

    /// Creates the group and the stream if missing and applies the retention policy.
    async fn set_up(client: &Client, config: &CloudWatchConfig, stream: &str) -> Result<(), Failure> {
        let group = config.log_group.as_str();
        match client.create_log_group().log_group_name(group).send().await {
            Ok(_) => {}
            Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_already_exists_exception()) => {}
            Err(error) => return Err(classify(&error)),
        }
        let retention = i32::try_from(config.retention_days).unwrap_or(30);
        if let Err(error) =
            client.put_retention_policy().log_group_name(group).retention_in_days(retention).send().await
        {
            return Err(classify(&error));
        }
        match client.create_log_stream().log_group_name(group).log_stream_name(stream).send().await {
            Ok(_) => Ok(()),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_already_exists_exception()) => Ok(()),
            Err(error) => Err(classify(&error)),
        }
    }

    /// Sends one batch, retrying until it is accepted, refused for good, or shutdown gives up.
    fn deliver(&mut self, batch: Batch) {
        let Some(client) = self.client.clone() else {
            self.counters.events_dropped.fetch_add(batch.events.len() as u64, Relaxed);
            return;
        };
        self.counters.events_rejected.fetch_add(batch.too_old + batch.too_new, Relaxed);
        if batch.too_old + batch.too_new > 0 && !self.reported_rejections {
            self.reported_rejections = true;
            eprintln!(
                "chimera-log: CloudWatch: {} event(s) outside the accepted time window were not sent \
                 (older than 14 days or the retention, or more than 2 h ahead); counted in stats()",
                batch.too_old + batch.too_new
            );
        }
        if batch.events.is_empty() {
            return;
        }
        let events: Vec<InputLogEvent> = batch
            .events
            .iter()
            .filter_map(|event| {
                InputLogEvent::builder().timestamp(event.timestamp_ms).message(event.message.clone()).build().ok()
            })
            .collect();
        let mut backoff = BACKOFF_START;
        loop {
            let attempt = if self.ready {
                Ok(())
            } else {
                self.runtime.block_on(Self::set_up(&client, &self.config, &self.stream))
            };
            let result = attempt.and_then(|()| {
                self.ready = true;
                self.runtime
                    .block_on(
                        client
                            .put_log_events()
                            .log_group_name(&self.config.log_group)
                            .log_stream_name(&self.stream)
                            .set_log_events(Some(events.clone()))
                            .send(),
                    )
                    .map_err(|error| classify(&error))
            });
            match result {
                Ok(output) => {
                    self.counters.batches_sent.fetch_add(1, Relaxed);
                    self.counters.events_sent.fetch_add(events.len() as u64, Relaxed);
                    if let Some(rejected) = output.rejected_log_events_info() {
                        self.count_rejected(rejected, events.len());
                    }
                    if let Some(since) = self.down_since.take() {
                        let outage = self.clock.now().duration_since(since).unwrap_or_default();
                        eprintln!("chimera-log: CloudWatch delivery recovered after {outage:.1?}");
                    }
                    return;
                }
                Err(Failure::Missing) => {
                    // The group or stream was deleted under us: create them and send again.
                    self.ready = false;
                    self.counters.batches_retried.fetch_add(1, Relaxed);
                }
                Err(Failure::Fatal(reason)) => {
                    self.counters.batches_failed.fetch_add(1, Relaxed);
                    self.counters.events_dropped.fetch_add(events.len() as u64, Relaxed);
                    // Rate-limited: a setting the service refuses would refuse every batch.
                    self.refusals.report(
                        &format_args!("sending {} event(s) to CloudWatch (refused, not retried)", events.len()),
                        &io::Error::other(reason),
                    );
                    return;
                }
                Err(Failure::Retry(reason)) => {
                    if self.down_since.is_none() {
                        self.down_since = Some(self.clock.now());
                        eprintln!(
                            "chimera-log: CloudWatch delivery stopped ({reason}); retrying with backoff, \
                             console and files continue"
                        );
                    }
                    if self.give_up.passed() {
                        self.counters.batches_failed.fetch_add(1, Relaxed);
                        self.counters.events_dropped.fetch_add(events.len() as u64, Relaxed);
                        return;
                    }
                    self.counters.batches_retried.fetch_add(1, Relaxed);
                    let wait = self.jittered(backoff);
                    std::thread::sleep(self.give_up.remaining().map_or(wait, |left| wait.min(left)));
                    backoff = (backoff * 2).min(BACKOFF_CAP);
                }
            }
        }
    }

    fn count_rejected(&mut self, info: &aws_sdk_cloudwatchlogs::types::RejectedLogEventsInfo, sent: usize) {
        let sent = sent as i64;
        let too_new = info.too_new_log_event_start_index().map_or(0, |start| sent - i64::from(start));
        let too_old = info.too_old_log_event_end_index().map_or(0, |end| i64::from(end) + 1);
        let expired = info.expired_log_event_end_index().map_or(0, |end| i64::from(end) + 1);
        let rejected = (too_new + too_old.max(expired)).clamp(0, sent) as u64;
        self.counters.events_rejected.fetch_add(rejected, Relaxed);
        if rejected > 0 && !self.reported_rejections {
            self.reported_rejections = true;
            eprintln!("chimera-log: CloudWatch rejected {rejected} event(s) of a batch ({info:?}); counted in stats()");
        }
    }

    /// `wait` scaled by a pseudo-random factor in [0.5, 1.0), so that many senders recovering
    /// from one outage do not retry in step.
    fn jittered(&mut self, wait: Duration) -> Duration {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        wait.mul_f64(0.5 + (self.seed % 1000) as f64 / 2000.0)
    }

    /// Sends while a batch is due (`all`: until nothing is waiting).
    fn send(&mut self, all: bool) {
        while !self.batcher.is_empty() && (all || self.batcher.due(self.clock.now())) {
            let batch = self.batcher.take_batch(self.clock.now());
            self.deliver(batch);
        }
    }
}

async fn make_client(config: &CloudWatchConfig) -> Option<Client> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &config.region {
        loader = loader.region(Region::new(region.clone()));
    }
    let shared = loader.load().await;
    if shared.region().is_none() {
        eprintln!(
            "chimera-log: CloudWatch is disabled: no AWS region (set CloudWatchConfig::region or AWS_REGION); \
             console and files continue"
        );
        return None;
    }
    let mut builder = aws_sdk_cloudwatchlogs::config::Builder::from(&shared)
        .retry_config(RetryConfig::disabled())
        .timeout_config(TimeoutConfig::builder().operation_timeout(config.operation_timeout).build());
    if let Some(url) = &config.endpoint_url {
        builder = builder.endpoint_url(url);
    }
    Some(Client::from_conf(builder.build()))
}

/// `<host>-<yyyymmddThhmmssZ>` with only characters stream names accept.
fn generated_stream_name(now: SystemTime) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".to_owned());
    let host: String = host
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' })
        .take(200)
        .collect();
    let stamp = chrono::DateTime::<chrono::Utc>::from(now).format("%Y%m%dT%H%M%SZ");
    format!("{}-{stamp}", if host.is_empty() { "host" } else { &host })
}

/// The line's own timestamp, in milliseconds: every line starts `{"timestamp":"<RFC 3339>"`.
fn line_timestamp_ms(line: &str) -> Option<i64> {
    let rest = line.strip_prefix("{\"timestamp\":\"")?;
    let end = rest.find('"')?;
    let time = chrono::DateTime::parse_from_rfc3339(&rest[..end]).ok()?;
    Some(time.timestamp_millis())
}

impl Sink for CloudWatchSink {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\n');
        let now = self.clock.now();
        let timestamp = line_timestamp_ms(line).unwrap_or_else(|| batch::millis(now));
        match self.batcher.push(timestamp, line) {
            Pushed::Whole => {}
            Pushed::Truncated => {
                self.counters.events_truncated.fetch_add(1, Relaxed);
            }
            Pushed::Dropped => {
                self.counters.events_dropped.fetch_add(1, Relaxed);
                if !self.reported_drops {
                    self.reported_drops = true;
                    eprintln!(
                        "chimera-log: CloudWatch buffer full ({} bytes) while delivery is failing: dropping events, counted in stats()",
                        self.config.max_buffer_bytes
                    );
                }
            }
        }
        Ok(())
    }

    fn write_batch(&mut self, bytes: &[u8], lens: &[u32]) -> io::Result<()> {
        let mut at = 0;
        for &len in lens {
            self.write_line(&bytes[at..at + len as usize])?;
            at += len as usize;
        }
        self.send(false);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send(true);
        Ok(())
    }

    fn tick(&mut self) -> io::Result<()> {
        self.send(false);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_stream_names_use_only_accepted_characters() {
        let name = generated_stream_name(SystemTime::UNIX_EPOCH + Duration::from_secs(1_705_314_645));
        assert!(name.ends_with("-20240115T103045Z"), "{name}");
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)), "{name}");
    }

    #[test]
    fn the_line_timestamp_is_read_from_the_line() {
        let line = r#"{"timestamp":"2024-01-15T10:30:45.123456Z","level":"INFO"}"#;
        assert_eq!(line_timestamp_ms(line), Some(1_705_314_645_123));
        assert_eq!(line_timestamp_ms("not a line"), None);
    }
}
