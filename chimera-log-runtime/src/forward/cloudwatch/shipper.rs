//! The shipper: CloudWatch Logs as a destination of the loop that follows `chimera.log`
//! (`forward::ship`): which lines it takes, its batches, `PutLogEvents` and what its errors mean
//! (see the folder's table of contents).

use crate::report::source_chain;
use std::io;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_cloudwatchlogs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatchlogs::operation::put_log_events::PutLogEventsOutput;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use aws_sdk_cloudwatchlogs::Client;

use super::batch::{Batch, Batcher, Limits};
use crate::clock::Clock;
use crate::config::cloudwatch::CloudWatchConfig;
use crate::dir::follow::Cursor;
use crate::dir::layout::GENERAL_FILE;
use crate::error::Error;
use crate::event::Level;
use crate::forward::backoff::Pace;
use crate::forward::ship::{line_timestamp_ms, load_cursor, Attempt, Destination, ShipCounters, Shipping};
use crate::report::FailureReporter;
use crate::stats::CloudWatchCounters;

pub(crate) use crate::dir::layout::CLOUDWATCH_CURSOR_FILE as CURSOR_FILE;

/// How a failed request is handled.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// 5xx, timeouts, connection failures: wait and send again (the waits are in `backoff`).
    Retry(String),
    /// Throttled: the service is up but wants fewer requests; wait and send again.
    Throttled(String),
    /// Credentials missing or refused: say so, wait (up to a minute) and send again.
    Credentials(String),
    /// The group or stream is gone: create them and send again.
    Missing,
    /// Refused for good (bad parameters): reported and counted, the batch is given up.
    Fatal(String),
}

/// Service error codes that mean the credentials, not the request, are the problem.
const CREDENTIAL_CODES: [&str; 6] = [
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "ExpiredToken",
    "InvalidClientTokenId",
    "AccessDeniedException",
];

/// Service error codes that refuse the request as such: sending it again cannot succeed.
const REFUSED_CODES: [&str; 3] = ["InvalidParameterException", "ValidationException", "SerializationException"];

/// Classifies by the service's error code and the HTTP status, and for failures before a
/// response by the SDK's own error kinds: never by matching message text.
fn classify<E>(error: &SdkError<E, aws_sdk_cloudwatchlogs::config::http::HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("");
            let status = service.raw().status().as_u16();
            let message = format!("{code} (HTTP {status}): {}", service.err().message().unwrap_or("no message"));
            match code {
                "ResourceNotFoundException" => Failure::Missing,
                "ThrottlingException" | "RequestLimitExceeded" | "LimitExceededException" => {
                    Failure::Throttled(message)
                }
                "ServiceUnavailableException" => Failure::Retry(message),
                code if CREDENTIAL_CODES.contains(&code) => Failure::Credentials(message),
                _ if status == 429 => Failure::Throttled(message),
                // Only what says the request itself is wrong gives up its events; anything else
                // (a concurrent update, a proxy's bare 403 or 404) may pass, and the file holds
                // the events meanwhile.
                code if REFUSED_CODES.contains(&code) => Failure::Fatal(message),
                _ => Failure::Retry(message),
            }
        }
        SdkError::TimeoutError(_) => Failure::Retry("request timed out".into()),
        SdkError::DispatchFailure(failure) if credentials_missing(error) || failure.is_user() => Failure::Credentials(
            "no AWS credentials found (environment, profile or IAM role); the events wait in the log file".to_owned(),
        ),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => Failure::Retry("request timed out".into()),
        SdkError::DispatchFailure(_) => Failure::Retry(format!("could not reach the service: {}", source_chain(error))),
        SdkError::ResponseError(_) => Failure::Retry("unreadable response".into()),
        SdkError::ConstructionFailure(_) if credentials_missing(error) => Failure::Credentials(
            "no AWS credentials found (environment, profile or IAM role); the events wait in the log file".to_owned(),
        ),
        SdkError::ConstructionFailure(_) => {
            Failure::Fatal(format!("request could not be built: {}", source_chain(error)))
        }
        _ => Failure::Retry(source_chain(error)),
    }
}

/// Whether a credentials error is anywhere in `error`'s source chain (by type).
fn credentials_missing(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.is::<aws_credential_types::provider::error::CredentialsError>() {
            return true;
        }
        next = error.source();
    }
    false
}

/// The running shipper: its thread and what the dispatcher needs of it.
#[derive(Debug)]
pub(crate) struct Shipper {
    shipping: Shipping,
    pub(crate) counters: Arc<CloudWatchCounters>,
}

impl Shipper {
    /// Starts following `dir/chimera.log` from the saved cursor, or from the end of what it
    /// holds now when there is none (a first start ships what comes from now on).
    pub(crate) fn start(
        config: CloudWatchConfig,
        dir: &Path,
        clock: Arc<dyn Clock>,
        dir_lock: crate::thread::DirLock,
    ) -> Result<Shipper, Error> {
        let counters = Arc::new(CloudWatchCounters::default());
        let cursor = load_cursor::<CloudWatch>(dir, clock.now(), &counters)?;
        let destination = CloudWatch::new(config, clock.now(), Arc::clone(&counters));
        let shipping = Shipping::start("chimera-log-cloudwatch", destination, dir, cursor, clock, dir_lock)?;
        Ok(Shipper { shipping, counters })
    }

    /// Ships everything `chimera.log` holds now; `false` if not all of it was acknowledged by
    /// `deadline`. Call after the file writer has written what the flush covers.
    pub(crate) fn flush(&self, deadline: Instant) -> bool {
        self.shipping.flush(deadline)
    }

    /// Waits until the shipper has read what `chimera.log` holds now, sending only what is due.
    pub(crate) fn wait_processed(&self, deadline: Instant) -> bool {
        self.shipping.wait_processed(deadline)
    }

    /// Ships what it can by `deadline`, saves the cursor and stops; `false` if the thread had not
    /// finished by then (it is left to end on its own; the next start sends the rest).
    pub(crate) fn shutdown(&self, deadline: Instant) -> bool {
        self.shipping.shutdown(deadline)
    }
}

impl ShipCounters for CloudWatchCounters {
    fn batches_retried(&self) -> &AtomicU64 {
        &self.batches_retried
    }
    fn batches_failed(&self) -> &AtomicU64 {
        &self.batches_failed
    }
    fn files_skipped(&self) -> &AtomicU64 {
        &self.files_skipped
    }
    fn cursor_damaged(&self) -> &AtomicU64 {
        &self.cursor_damaged
    }
}

/// CloudWatch Logs as a destination: the group and stream, the batcher, and what was said once.
#[derive(Debug)]
struct CloudWatch {
    config: CloudWatchConfig,
    stream: String,
    batcher: Batcher,
    /// The group and stream are set up.
    ready: bool,
    counters: Arc<CloudWatchCounters>,
    reported_rejections: bool,
    reported_setup: bool,
    refusals: FailureReporter,
    /// The furthest line pushed: a line read again after a put-back is not counted again.
    read_frontier: Option<Cursor>,
}

impl CloudWatch {
    fn new(config: CloudWatchConfig, now: SystemTime, counters: Arc<CloudWatchCounters>) -> Self {
        let stream = config.log_stream.clone().unwrap_or_else(|| generated_stream_name(now));
        let limits = Limits {
            batch_events: config.batch_events,
            batch_interval: config.batch_interval,
            max_event_bytes: config.max_event_bytes,
            retention_days: config.retention_days,
        };
        CloudWatch {
            config,
            stream,
            batcher: Batcher::new(limits),
            ready: false,
            counters,
            reported_rejections: false,
            reported_setup: false,
            refusals: FailureReporter::default(),
            read_frontier: None,
        }
    }
}

impl Destination for CloudWatch {
    type Client = Client;
    type Batch = Batch;
    type Request = Vec<InputLogEvent>;
    type Answer = PutLogEventsOutput;
    type Counters = CloudWatchCounters;

    const NAME: &'static str = "CloudWatch";
    const STATS: &'static str = "cloudwatch";
    const CURSOR_FILE: &'static str = CURSOR_FILE;

    fn counters(&self) -> &CloudWatchCounters {
        &self.counters
    }

    async fn connect(&mut self) -> Option<Client> {
        make_client(&self.config).await
    }

    fn request_timeout(&self) -> Duration {
        self.config.operation_timeout
    }

    fn push(&mut self, line: &str, cursor: Cursor, now: SystemTime) {
        let first_read = self.read_frontier.is_none_or(|frontier| !crate::forward::reached::reached(frontier, cursor));
        if first_read {
            self.read_frontier = Some(cursor);
        }
        // Below CloudWatch's own minimum: left in the file (counted once, for the lag). A line
        // whose level cannot be read is shipped: nothing is left out on a guess.
        if line_level(line).is_some_and(|level| level < self.config.min_level) {
            if first_read {
                self.counters.events_below_level.fetch_add(1, Relaxed);
            }
            return;
        }
        let timestamp = line_timestamp_ms(line).unwrap_or_else(|| super::batch::millis(now));
        match emf_document(line) {
            Some(document) => self.batcher.push(timestamp, &document, cursor),
            None => self.batcher.push(timestamp, line, cursor),
        };
    }

    fn is_empty(&self) -> bool {
        self.batcher.is_empty()
    }

    fn full(&self) -> bool {
        self.batcher.full()
    }

    fn due(&self, now: SystemTime) -> bool {
        self.batcher.due(now)
    }

    fn clear(&mut self) {
        self.batcher.clear();
    }

    fn take(&mut self, now: SystemTime) -> (Batch, Option<Cursor>, Option<Vec<InputLogEvent>>) {
        let batch = self.batcher.take_batch(now);
        let cursor = batch.cursor;
        let request = (!batch.events.is_empty()).then(|| input_events(&batch));
        (batch, cursor, request)
    }

    async fn send(&mut self, client: &Client, events: &Vec<InputLogEvent>) -> Attempt<PutLogEventsOutput> {
        match self.put(client, events).await {
            Ok(output) => Attempt::Delivered(output),
            Err(Failure::Fatal(reason)) => Attempt::Refused(reason),
            // The group or stream was deleted under us: create them and send again now, once; found
            // missing again right after, it is an outage like any other (no tight loop of requests).
            Err(Failure::Missing) => {
                self.ready = false;
                Attempt::Again {
                    pace: Pace::Outage,
                    reason: "the log group or stream is missing even after it was created".to_owned(),
                }
            }
            Err(Failure::Retry(reason)) => Attempt::Retry { reason, pace: Pace::Outage, after: None },
            Err(Failure::Throttled(reason)) => Attempt::Retry { reason, pace: Pace::Throttled, after: None },
            Err(Failure::Credentials(reason)) => Attempt::Retry { reason, pace: Pace::Credentials, after: None },
        }
    }

    /// Counts a batch the service accepted, less the events it rejected in
    /// `rejectedLogEventsInfo`.
    fn delivered(&mut self, output: PutLogEventsOutput, batch: &Batch) {
        let sent = batch.events.len();
        self.counters.batches_sent.fetch_add(1, Relaxed);
        let rejected = output.rejected_log_events_info().map_or(0, |info| self.count_rejected(info, sent));
        self.counters.events_sent.fetch_add(sent as u64 - rejected, Relaxed);
    }

    /// Counts and reports a batch the service refused for good: dropped.
    fn refused(&mut self, reason: String, batch: &Batch) {
        let sent = batch.events.len();
        self.counters.events_dropped.fetch_add(sent as u64, Relaxed);
        // Rate-limited: a setting the service refuses would refuse every batch.
        self.refusals.report(
            &format_args!("sending {sent} event(s) to CloudWatch (refused, not retried)"),
            &io::Error::other(reason),
        );
    }

    /// What the batch set aside is counted only now, not when read: a batch put back is read,
    /// and would be counted, again.
    fn settle(&mut self, batch: &Batch) {
        self.counters.events_truncated.fetch_add(batch.truncated, Relaxed);
        self.count_window_rejections(batch);
    }

    fn down_line(&self, reason: &str) -> String {
        format!(
            "chimera-log: CloudWatch delivery stopped ({reason}); retrying with backoff, the lines wait in \
             {GENERAL_FILE}, console and files continue"
        )
    }
}

impl CloudWatch {
    /// Sets up the group and stream if not done yet, then sends `events`.
    async fn put(&mut self, client: &Client, events: &[InputLogEvent]) -> Result<PutLogEventsOutput, Failure> {
        if !self.ready {
            self.set_up(client).await?;
            self.ready = true;
        }
        client
            .put_log_events()
            .log_group_name(&self.config.log_group)
            .log_stream_name(&self.stream)
            .set_log_events(Some(events.to_vec()))
            .send()
            .await
            .map_err(|error| classify(&error))
    }

    /// Creates the group (with its retention) and the stream when missing. An existing group's
    /// retention is changed only when `retention_days` was set explicitly. AccessDenied on the
    /// group's creation or retention (a least-privilege role) is reported once and delivery goes
    /// on: the group may well exist.
    /// Creates the group (with its retention) and the stream, as needed. A failure here is
    /// never the events' fault: it is retried, and never gives up a batch.
    async fn set_up(&mut self, client: &Client) -> Result<(), Failure> {
        self.try_set_up(client).await.map_err(|failure| match failure {
            Failure::Fatal(reason) => Failure::Retry(format!("setting up the log group and stream: {reason}")),
            failure => failure,
        })
    }

    async fn try_set_up(&mut self, client: &Client) -> Result<(), Failure> {
        let group = self.config.log_group.clone();
        let retention = i32::try_from(self.config.retention_days).unwrap_or(30);
        let created = match client.create_log_group().log_group_name(&group).send().await {
            Ok(_) => true,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_already_exists_exception()) => false,
            Err(error) => match classify(&error) {
                Failure::Credentials(reason) if error.code() == Some("AccessDeniedException") => {
                    self.report_setup(&format!("creating the log group {group}: {reason}"));
                    false
                }
                failure => return Err(failure),
            },
        };
        if created || self.config.retention_explicit {
            if let Err(error) =
                client.put_retention_policy().log_group_name(&group).retention_in_days(retention).send().await
            {
                match classify(&error) {
                    Failure::Credentials(reason) if error.code() == Some("AccessDeniedException") => {
                        self.report_setup(&format!("setting the retention of {group}: {reason}"));
                    }
                    failure => return Err(failure),
                }
            }
        }
        match client.create_log_stream().log_group_name(&group).log_stream_name(&self.stream).send().await {
            Ok(_) => Ok(()),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_already_exists_exception()) => Ok(()),
            Err(error) => match classify(&error) {
                Failure::Credentials(reason) if error.code() == Some("AccessDeniedException") => {
                    self.report_setup(&format!("creating the log stream {}: {reason}", self.stream));
                    Ok(())
                }
                failure => Err(failure),
            },
        }
    }

    fn report_setup(&mut self, what: &str) {
        if !self.reported_setup {
            self.reported_setup = true;
            diag!(
                "chimera-log: CloudWatch: not allowed {what}; delivery goes on (the role may lack the permission only)"
            );
        }
    }

    fn count_window_rejections(&mut self, batch: &Batch) {
        let outside = batch.too_old + batch.too_new;
        self.counters.events_rejected.fetch_add(outside, Relaxed);
        if outside > 0 && !self.reported_rejections {
            self.reported_rejections = true;
            diag!(
                "chimera-log: CloudWatch: {outside} event(s) outside the accepted time window were not sent \
                 (older than 14 days or the retention, or more than 2 h ahead); counted in stats()"
            );
        }
    }

    /// Counts (and returns) the events of a batch of `sent` that the service rejected.
    fn count_rejected(&mut self, info: &aws_sdk_cloudwatchlogs::types::RejectedLogEventsInfo, sent: usize) -> u64 {
        let sent = sent as i64;
        let too_new = info.too_new_log_event_start_index().map_or(0, |start| sent - i64::from(start));
        let too_old = info.too_old_log_event_end_index().map_or(0, |end| i64::from(end) + 1);
        let expired = info.expired_log_event_end_index().map_or(0, |end| i64::from(end) + 1);
        let rejected = (too_new + too_old.max(expired)).clamp(0, sent) as u64;
        self.counters.events_rejected.fetch_add(rejected, Relaxed);
        if rejected > 0 && !self.reported_rejections {
            self.reported_rejections = true;
            diag!("chimera-log: CloudWatch rejected {rejected} event(s) of a batch ({info:?}); counted in stats()");
        }
        rejected
    }
}

/// The batch's events as the SDK sends them.
/// A `log_health` line written with `health_emf(true)`: its context, an Embedded Metric Format
/// document, is what CloudWatch must receive as the event to turn it into metrics (EMF wants
/// `_aws` at the event's root).
fn emf_document(line: &str) -> Option<String> {
    if !line.contains("\"event\":\"log_health\"") || !line.contains("\"_aws\":") {
        return None;
    }
    let parsed: serde_json::Value = serde_json::from_str(line).ok()?;
    let context = parsed.get("context").filter(|context| context.get("_aws").is_some())?;
    serde_json::to_string(context).ok()
}

fn input_events(batch: &Batch) -> Vec<InputLogEvent> {
    batch
        .events
        .iter()
        .filter_map(|event| {
            InputLogEvent::builder().timestamp(event.timestamp_ms).message(event.message.clone()).build().ok()
        })
        .collect()
}

async fn make_client(config: &CloudWatchConfig) -> Option<Client> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &config.region {
        loader = loader.region(Region::new(region.clone()));
    }
    let shared = loader.load().await;
    if shared.region().is_none() {
        diag!(
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

/// The `level` of a line as the encoder writes it (`{"timestamp":"…","level":"INFO",…`), if
/// it reads as one.
fn line_level(line: &str) -> Option<Level> {
    let rest = line.strip_prefix("{\"timestamp\":\"")?;
    let rest = &rest[rest.find('"')? + 1..];
    let rest = rest.strip_prefix(",\"level\":\"")?;
    rest[..rest.find('"')?].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lines_level_is_read_from_its_envelope_and_anything_else_reads_as_none() {
        let line =
            |level: &str| format!(r#"{{"timestamp":"2024-01-15T10:30:45.123456Z","level":"{level}","module":"m"}}"#);
        assert_eq!(line_level(&line("TRACE")), Some(Level::Trace));
        assert_eq!(line_level(&line("WARNING")), Some(Level::Warning));
        assert_eq!(line_level(&line("LOUD")), None);
        assert_eq!(line_level(r#"{"level":"ERROR"}"#), None);
        assert_eq!(line_level("not json"), None);
    }

    #[test]
    fn generated_stream_names_use_only_accepted_characters() {
        let name = generated_stream_name(SystemTime::UNIX_EPOCH + Duration::from_secs(1_705_314_645));
        assert!(name.ends_with("-20240115T103045Z"), "{name}");
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)), "{name}");
    }

    /// A read of `chimera.log` that fails is not the end of its lines: a flush asked while the
    /// lines after the cursor cannot be read is not answered as done. (No request is needed to
    /// see it, so the endpoint is a closed port.)
    #[test]
    fn a_flush_is_not_answered_while_the_lines_after_the_cursor_cannot_be_read() {
        let dir = tempfile::tempdir().unwrap();
        let config = CloudWatchConfig::new("g").region("us-east-1").log_stream("s").endpoint_url("http://127.0.0.1:9");
        let guard = crate::LogConfig::new(dir.path())
            .console(false)
            .audit_store(crate::AuditStore::none())
            .shutdown_timeout(Duration::from_millis(300))
            .cloudwatch(config)
            .build()
            .unwrap();
        *crate::dir::follow::READS_FAIL_IN.lock().unwrap() = Some(std::fs::canonicalize(dir.path()).unwrap());
        guard.logger("m").info("tick", serde_json::json!({ "seq": 1 }));
        let flushed = guard.flush();
        *crate::dir::follow::READS_FAIL_IN.lock().unwrap() = None;
        assert!(!flushed, "the line after the cursor was never read, let alone shipped");
        assert_eq!(guard.stats().cloudwatch.unwrap().events_sent, 0);
    }
}
