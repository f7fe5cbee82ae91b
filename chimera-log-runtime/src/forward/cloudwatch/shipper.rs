//! The shipper: the thread that follows `chimera.log` and puts its lines to CloudWatch Logs (see the folder's table of contents).

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
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
use crate::dir::follow::{Cursor, Followed, Follower, Saved};
use crate::dir::layout::GENERAL_FILE;
use crate::error::Error;
use crate::event::Level;
use crate::forward::backoff::{Backoff, Jitter, Pace};
use crate::forward::reached::reached;
use crate::report::{FailureReporter, Outage};
use crate::stats::CloudWatchCounters;
use crate::thread::{ForwarderThread, Lifecycle, Requests as _};

pub(crate) use crate::dir::layout::CLOUDWATCH_CURSOR_FILE as CURSOR_FILE;

/// How often an idle shipper looks at the file for new lines.
const POLL: Duration = Duration::from_millis(50);

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

fn source_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

impl Requests {
    /// Whether a flush ticket is neither done nor given up.
    fn flush_pending(&self) -> bool {
        self.flush_asked > self.flush_done.max(self.flush_abandoned)
    }
}

/// What the application's threads ask of the shipper thread.
#[derive(Debug, Default)]
struct Requests {
    /// Flush tickets: ship everything in the file now (`flush_deadline` bounds the retries).
    flush_asked: u64,
    flush_done: u64,
    /// Flush tickets up to this one were given up at their deadline (their callers returned
    /// `false`): no longer pending, and not done either.
    flush_abandoned: u64,
    flush_deadline: Option<Instant>,
    /// Look tickets: read to the end of the file (sending only what is due).
    look_asked: u64,
    look_done: u64,
    /// Shut down by a given instant, after shipping what can be shipped; the thread's end.
    lifecycle: Lifecycle,
}

impl crate::thread::Requests for Requests {
    fn flushes_asked(&self) -> u64 {
        self.flush_asked
    }
    fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }
    fn lifecycle_mut(&mut self) -> &mut Lifecycle {
        &mut self.lifecycle
    }
}

type Control = crate::thread::Control<Requests>;

impl Control {
    /// The earliest deadline the shipper must give up by, if any.
    fn give_up_at(&self) -> Option<Instant> {
        let requests = self.lock();
        match (requests.flush_deadline.filter(|_| requests.flush_pending()), requests.stop()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The running shipper: its thread and what the dispatcher needs of it.
#[derive(Debug)]
pub(crate) struct Shipper {
    thread: ForwarderThread<Requests>,
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
        let cursor_path = dir.join(CURSOR_FILE);
        let open_error = |source| Error::OpenFile { path: cursor_path.clone(), source };
        crate::dir::follow::remove_stale_temporaries(&cursor_path);
        let counters = Arc::new(CloudWatchCounters::default());
        let cursor = match Saved::load(&cursor_path, dir, GENERAL_FILE, clock.now()) {
            Saved::Trusted(cursor) => cursor,
            Saved::None => {
                let cursor = Follower::cursor_at_end(dir, GENERAL_FILE, clock.now()).map_err(open_error)?;
                cursor.save(&cursor_path).map_err(open_error)?;
                cursor
            }
            Saved::Damaged(why) => {
                // The service cannot be asked what it holds: nothing is known to be shipped, so
                // shipping starts again from the oldest retained line (duplicates, not loss).
                counters.cursor_damaged.fetch_add(1, Relaxed);
                diag!(
                    "chimera-log: CloudWatch: the cursor cannot be trusted ({why}); shipping starts again from the \
                     oldest retained line of {GENERAL_FILE}: lines shipped already are sent again (counted in \
                     stats().cloudwatch.cursor_damaged)"
                );
                Cursor::default()
            }
        };
        let control = Arc::new(Control::default());
        let worker = Worker::new(config, dir, cursor, cursor_path, clock, Arc::clone(&counters), Arc::clone(&control));
        let thread = ForwarderThread::start("chimera-log-cloudwatch", move || worker.run(), control, Some(dir_lock))?;
        Ok(Shipper { thread, counters })
    }

    /// Ships everything `chimera.log` holds now; `false` if not all of it was acknowledged by
    /// `deadline`. Call after the file writer has written what the flush covers.
    pub(crate) fn flush(&self, deadline: Instant) -> bool {
        self.thread.control.ticket(
            deadline,
            |requests| {
                requests.flush_asked += 1;
                requests.flush_deadline = Some(requests.flush_deadline.map_or(deadline, |d| d.max(deadline)));
                requests.flush_asked
            },
            |requests, asked| requests.flush_done >= *asked,
        )
    }

    /// Waits until the shipper has read what `chimera.log` holds now, sending only what is due.
    pub(crate) fn wait_processed(&self, deadline: Instant) -> bool {
        self.thread.control.ticket(
            deadline,
            |requests| {
                requests.look_asked += 1;
                requests.look_asked
            },
            |requests, asked| requests.look_done >= *asked,
        )
    }

    /// Ships what it can by `deadline`, saves the cursor and stops; `false` if the thread had not
    /// finished by then (it is left to end on its own; the next start sends the rest).
    pub(crate) fn shutdown(&self, deadline: Instant) -> bool {
        self.thread.shutdown(deadline)
    }
}

/// The shipper thread's state.
#[derive(Debug)]
struct Worker {
    config: CloudWatchConfig,
    stream: String,
    dir: PathBuf,
    follower: Follower,
    /// The last cursor the service acknowledged (and that is saved).
    acked: Cursor,
    cursor_path: PathBuf,
    /// The follower reached the end of what the file holds.
    at_end: bool,
    /// The last read failed (reported): not the end of the lines, and worth a pause before the
    /// next attempt even while a flush waits.
    read_failed: bool,
    line: Vec<u8>,
    followed: Followed,
    /// Files found gone or damaged before the line read at each cursor: counted and reported
    /// once a cursor at or past it is acknowledged (a batch put back reads them, and finds the
    /// same files gone, again).
    passed: VecDeque<(Cursor, Followed)>,
    /// The last cursor damage reported (a put-back finds it again).
    cursor_damage_reported: Option<String>,
    batcher: Batcher,
    ready: bool,
    clock: Arc<dyn Clock>,
    counters: Arc<CloudWatchCounters>,
    control: Arc<Control>,
    /// Delivery is failing; reported once when it started, and once when it recovers.
    outage: Outage,
    reported_rejections: bool,
    reported_setup: bool,
    refusals: FailureReporter,
    cursor_failures: FailureReporter,
    jitter: Jitter,
}

impl Worker {
    fn new(
        config: CloudWatchConfig,
        dir: &Path,
        cursor: Cursor,
        cursor_path: PathBuf,
        clock: Arc<dyn Clock>,
        counters: Arc<CloudWatchCounters>,
        control: Arc<Control>,
    ) -> Self {
        let stream = config.log_stream.clone().unwrap_or_else(|| generated_stream_name(clock.now()));
        let limits = Limits {
            batch_events: config.batch_events,
            batch_interval: config.batch_interval,
            max_event_bytes: config.max_event_bytes,
            retention_days: config.retention_days,
        };
        Worker {
            config,
            stream,
            dir: dir.to_path_buf(),
            follower: Follower::new(dir, GENERAL_FILE, cursor),
            acked: cursor,
            cursor_path,
            at_end: false,
            read_failed: false,
            line: Vec::new(),
            followed: Followed::default(),
            passed: VecDeque::new(),
            cursor_damage_reported: None,
            batcher: Batcher::new(limits),
            ready: false,
            clock,
            counters,
            control,
            outage: Outage::default(),
            reported_rejections: false,
            reported_setup: false,
            refusals: FailureReporter::default(),
            cursor_failures: FailureReporter::default(),
            jitter: Jitter::new(),
        }
    }

    fn run(mut self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_start(crate::thread::mark)
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                diag!("chimera-log: CloudWatch is disabled: its runtime could not start ({error}); console and files continue");
                return self.idle_until_stopped();
            }
        };
        let Some(client) = runtime.block_on(make_client(&self.config)) else {
            return self.idle_until_stopped();
        };
        // The newest flush ticket seen, and the end of chimera.log when it was seen: the flush is
        // done once the acknowledged cursor reaches that point (lines written later do not make
        // it chase the file's end).
        let mut flush_target: Option<(u64, Option<Cursor>)> = None;
        loop {
            let (flush, look, stop) = {
                let mut requests = self.control.lock();
                // A flush whose deadline passed has already returned `false` to its caller.
                if requests.flush_deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                    requests.flush_abandoned = requests.flush_asked;
                    requests.flush_deadline = None;
                }
                let flush = requests.flush_pending().then_some(requests.flush_asked);
                let look = (requests.look_asked > requests.look_done).then_some(requests.look_asked);
                (flush, look, requests.stop())
            };
            if let Some(ticket) = flush {
                if flush_target.is_none_or(|(seen, _)| seen < ticket) {
                    // The files writer flushed before the ticket was taken: this is what it covers.
                    let end = Follower::cursor_at_end(&self.dir, GENERAL_FILE, self.clock.now()).ok();
                    flush_target = Some((ticket, end));
                }
            }
            let target = flush.and(flush_target).and_then(|(_, end)| end);
            let flushing = |acked: Cursor| flush.is_some() && target.is_none_or(|end| !reached(acked, end));
            self.read_ahead();
            let mut complete = true;
            while !self.batcher.is_empty()
                && (stop.is_some() || flushing(self.acked) || self.batcher.due(self.clock.now()))
            {
                if !self.send_one(&runtime, &client) {
                    complete = false;
                    break;
                }
                self.read_ahead();
            }
            {
                let mut requests = self.control.lock();
                if let Some(look) = look {
                    requests.look_done = requests.look_done.max(look);
                }
                if let Some(flush) = flush {
                    let shipped = target.is_some_and(|end| reached(self.acked, end));
                    if complete && (shipped || (self.batcher.is_empty() && self.at_end)) {
                        requests.flush_done = requests.flush_done.max(flush);
                        requests.flush_deadline = None;
                    }
                }
                self.control.changed.notify_all();
                if stop.is_some() {
                    return;
                }
                if self.read_failed || (!requests.flush_pending() && requests.look_asked == requests.look_done) {
                    let _ = self.control.changed.wait_timeout(requests, POLL);
                }
            }
        }
    }

    /// Without a client (no region, no runtime): answer requests at once, ship nothing, and
    /// leave the cursor where it is so that a later start with a working configuration sends
    /// these lines.
    fn idle_until_stopped(self) {
        let mut requests = self.control.lock();
        loop {
            requests.flush_done = requests.flush_asked;
            requests.look_done = requests.look_asked;
            self.control.changed.notify_all();
            if requests.stop().is_some() {
                return;
            }
            requests = self.control.changed.wait(requests).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Reads lines after the cursor until a full request waits or the file ends for now.
    fn read_ahead(&mut self) {
        self.at_end = false;
        self.read_failed = false;
        while !self.batcher.full() {
            let now = self.clock.now();
            match self.follower.next_line(&mut self.line, &mut self.followed, now) {
                Ok(Some(cursor)) => {
                    self.report_cursor_damage();
                    if self.followed.skipped > 0 {
                        self.passed.push_back((cursor, std::mem::take(&mut self.followed)));
                    }
                    let line = String::from_utf8_lossy(&self.line);
                    let line = line.trim_end_matches('\n');
                    // Below CloudWatch's own minimum: left in the file. A line whose level cannot
                    // be read is shipped: nothing is left out on a guess.
                    if line.is_empty() || line_level(line).is_some_and(|level| level < self.config.min_level) {
                        continue;
                    }
                    let timestamp = line_timestamp_ms(line).unwrap_or_else(|| super::batch::millis(now));
                    // Counted with the batch that carries it, once acknowledged (below).
                    self.batcher.push(timestamp, line, cursor);
                }
                Ok(None) => {
                    self.at_end = true;
                    break;
                }
                Err(error) => {
                    self.refusals.report(&format_args!("reading {GENERAL_FILE} to ship it to CloudWatch"), &error);
                    // Lines may follow that could not be read: a flush is not answered by this.
                    self.read_failed = true;
                    break;
                }
            }
        }
    }

    /// Moves the saved cursor to `cursor`: the lines before it are in the service.
    fn acknowledge(&mut self, cursor: Option<Cursor>) {
        let Some(cursor) = cursor else { return };
        self.acked = cursor;
        if let Err(error) = cursor.save(&self.cursor_path) {
            self.cursor_failures
                .report(&format_args!("saving the CloudWatch cursor {}", self.cursor_path.display()), &error);
        }
        while self.passed.front().is_some_and(|&(at, _)| reached(cursor, at)) {
            let (_, passed) = self.passed.pop_front().expect("front exists");
            self.report_passed(&passed);
        }
    }

    /// Counts and reports a cursor found past the end of its file (the follower reads that file
    /// again from its start), once however often a put-back reads it again.
    fn report_cursor_damage(&mut self) {
        for damage in std::mem::take(&mut self.followed.cursor_damage) {
            if self.cursor_damage_reported.as_ref() == Some(&damage) {
                continue;
            }
            self.counters.cursor_damaged.fetch_add(1, Relaxed);
            diag!(
                "chimera-log: CloudWatch: {damage}: the cursor was moved (by damage or by hand); that file is \
                 shipped again from its start (duplicates, not loss; counted in stats().cloudwatch.cursor_damaged)"
            );
            self.cursor_damage_reported = Some(damage);
        }
    }

    /// Counts and reports files the follower found gone or damaged, once the cursor past them is
    /// saved.
    fn report_passed(&self, passed: &Followed) {
        self.counters.files_skipped.fetch_add(passed.skipped, Relaxed);
        for damaged in &passed.damaged {
            diag!(
                "chimera-log: CloudWatch: a backup of {GENERAL_FILE} is damaged ({damaged}); its lines after the \
                 damage cannot be read and are not shipped"
            );
        }
        let removed = passed.skipped - passed.damaged.len() as u64;
        if removed > 0 {
            diag!(
                "chimera-log: CloudWatch: {removed} {GENERAL_FILE} backup(s) were removed by retention before they \
                 were shipped; their unshipped lines are lost to CloudWatch (keep more backups, or fix the outage \
                 sooner)"
            );
        }
    }

    /// Sends the next batch, retrying until it is accepted or refused for good (`true`), or the
    /// flush or shutdown deadline passes (`false`: the batch is put back, to be read again from
    /// the acknowledged cursor).
    fn send_one(&mut self, runtime: &tokio::runtime::Runtime, client: &Client) -> bool {
        let batch: Batch = self.batcher.take_batch(self.clock.now());
        if batch.events.is_empty() {
            self.settle(&batch);
            return true;
        }
        let events = input_events(&batch);
        let mut backoff = Backoff::new();
        // A group or stream found missing is created and the batch sent again at once, once; found
        // missing again right after, it is an outage like any other (no tight loop of requests).
        let mut recreated = false;
        loop {
            let give_up = self.control.give_up_at();
            let (pace, reason) = match self.attempt(runtime, client, &events, give_up) {
                Ok(output) => {
                    self.count_delivered(&output, events.len());
                    self.settle(&batch);
                    return true;
                }
                Err(Failure::Fatal(reason)) => {
                    self.count_refused(events.len(), reason);
                    self.settle(&batch);
                    return true;
                }
                Err(Failure::Missing) if !recreated => {
                    // The group or stream was deleted under us: create them and send again now.
                    recreated = true;
                    self.ready = false;
                    self.counters.batches_retried.fetch_add(1, Relaxed);
                    continue;
                }
                Err(Failure::Missing) => {
                    self.ready = false;
                    (Pace::Outage, "the log group or stream is missing even after it was created".to_owned())
                }
                Err(Failure::Retry(reason)) => (Pace::Outage, reason),
                Err(Failure::Throttled(reason)) => (Pace::Throttled, reason),
                Err(Failure::Credentials(reason)) => (Pace::Credentials, reason),
            };
            // Read again: a stop or a flush may have been asked during the attempt.
            let give_up = self.control.give_up_at();
            if give_up.is_some_and(|at| Instant::now() >= at) {
                self.put_back();
                return false;
            }
            self.report_down(&reason);
            self.counters.batches_retried.fetch_add(1, Relaxed);
            let wait = self.jitter.jittered(backoff.next_wait(pace));
            self.control.back_off(&*self.clock, wait, give_up);
        }
    }

    /// One `PutLogEvents` of `events` (after setting up the group and stream if due), cut off
    /// at the operation timeout or at `give_up`, whichever comes first, or at the stop's
    /// deadline when a shutdown is asked while it runs.
    fn attempt(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        client: &Client,
        events: &[InputLogEvent],
        give_up: Option<Instant>,
    ) -> Result<PutLogEventsOutput, Failure> {
        let limit = self.config.operation_timeout;
        let timeout = give_up.map_or(limit, |at| limit.min(at.saturating_duration_since(Instant::now())));
        if timeout.is_zero() {
            return Err(Failure::Retry("the shutdown or flush deadline came first".into()));
        }
        let control = Arc::clone(&self.control);
        let until = Instant::now() + timeout;
        runtime.block_on(async {
            let mut put = std::pin::pin!(self.put(client, events));
            loop {
                let now = Instant::now();
                let stop = control.lock().stop();
                if stop.is_some_and(|at| now >= at) {
                    return Err(Failure::Retry("the shutdown deadline came first".into()));
                }
                if now >= until {
                    return Err(Failure::Retry("request timed out".into()));
                }
                // Looks at the stop again every POLL while the request runs.
                let step = until.min(stop.unwrap_or(until)).min(now + POLL) - now;
                if let Ok(result) = tokio::time::timeout(step, &mut put).await {
                    return result;
                }
            }
        })
    }

    /// Done with `batch`: what it set aside is counted and the cursor after it saved. Only
    /// now, not when read: a batch put back is read, and would be counted, again.
    fn settle(&mut self, batch: &Batch) {
        self.counters.events_truncated.fetch_add(batch.truncated, Relaxed);
        self.count_window_rejections(batch);
        self.acknowledge(batch.cursor);
    }

    /// Counts a batch of `sent` events the service accepted, less those it rejected in
    /// `rejectedLogEventsInfo`, and reports the end of an outage.
    fn count_delivered(&mut self, output: &PutLogEventsOutput, sent: usize) {
        self.counters.batches_sent.fetch_add(1, Relaxed);
        let rejected = output.rejected_log_events_info().map_or(0, |info| self.count_rejected(info, sent));
        self.counters.events_sent.fetch_add(sent as u64 - rejected, Relaxed);
        self.report_up();
    }

    /// Counts and reports a batch of `sent` events the service refused for good: dropped.
    fn count_refused(&mut self, sent: usize, reason: String) {
        self.counters.batches_failed.fetch_add(1, Relaxed);
        self.counters.events_dropped.fetch_add(sent as u64, Relaxed);
        // Rate-limited: a setting the service refuses would refuse every batch.
        self.refusals.report(
            &format_args!("sending {sent} event(s) to CloudWatch (refused, not retried)"),
            &io::Error::other(reason),
        );
    }

    /// Gives up a batch at the flush or shutdown deadline. Not lost: its lines stay in the
    /// file after the acknowledged cursor, and are read again from there.
    fn put_back(&mut self) {
        self.counters.batches_failed.fetch_add(1, Relaxed);
        self.batcher.clear();
        self.follower = Follower::new(&self.dir, GENERAL_FILE, self.acked);
        // Read again from the acknowledged cursor, which finds the same files gone again.
        self.passed.clear();
        self.followed = Followed::default();
    }

    /// Reports an outage once, when it starts.
    fn report_down(&mut self, reason: &str) {
        self.outage.down(self.clock.now(), || {
            format!(
                "chimera-log: CloudWatch delivery stopped ({reason}); retrying with backoff, the lines wait in \
                 {GENERAL_FILE}, console and files continue"
            )
        });
    }

    /// Reports the end of an outage, once.
    fn report_up(&mut self) {
        self.outage
            .up(self.clock.now(), |outage| format!("chimera-log: CloudWatch delivery recovered after {outage:.1?}"));
    }

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

/// The line's own timestamp, in milliseconds: every line starts `{"timestamp":"<RFC 3339>"`.
/// The `level` of a line as the encoder writes it (`{"timestamp":"…","level":"INFO",…`), if
/// it reads as one.
fn line_level(line: &str) -> Option<Level> {
    let rest = line.strip_prefix("{\"timestamp\":\"")?;
    let rest = &rest[rest.find('"')? + 1..];
    let rest = rest.strip_prefix(",\"level\":\"")?;
    rest[..rest.find('"')?].parse().ok()
}

fn line_timestamp_ms(line: &str) -> Option<i64> {
    let rest = line.strip_prefix("{\"timestamp\":\"")?;
    let end = rest.find('"')?;
    let time = chrono::DateTime::parse_from_rfc3339(&rest[..end]).ok()?;
    Some(time.timestamp_millis())
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

    /// Records the waits asked of it, and says none of them takes real time.
    #[derive(Debug, Default)]
    struct RecordingClock {
        waits: std::sync::Mutex<Vec<Duration>>,
    }

    impl Clock for RecordingClock {
        fn now(&self) -> SystemTime {
            SystemTime::UNIX_EPOCH
        }

        fn begin_wait(&self, wait: Duration) -> Duration {
            self.waits.lock().unwrap().push(wait);
            Duration::ZERO
        }
    }

    #[test]
    fn a_retry_backoff_waits_as_long_as_the_injected_clock_says() {
        let clock = RecordingClock::default();
        // An hour by this clock, which says it takes no real time: back at once.
        Control::default().back_off(&clock, Duration::from_secs(3600), None);
        assert_eq!(*clock.waits.lock().unwrap(), [Duration::from_secs(3600)]);
    }

    #[test]
    fn a_retry_backoff_never_outlasts_the_give_up_deadline() {
        Control::default().back_off(&crate::clock::SystemClock, Duration::from_secs(3600), Some(Instant::now()));
    }

    #[test]
    fn a_retry_backoff_on_the_system_clock_ends_when_a_flush_is_asked_for() {
        let control = Arc::new(Control::default());
        let waiter = std::thread::spawn({
            let control = Arc::clone(&control);
            move || control.back_off(&crate::clock::SystemClock, Duration::from_secs(3600), None)
        });
        // The waiter notes the requests when it starts waiting: ask until one lands after that.
        while !waiter.is_finished() {
            control.lock().flush_asked += 1;
            control.changed.notify_all();
            std::thread::yield_now();
        }
        waiter.join().unwrap();
    }

    #[test]
    fn the_line_timestamp_is_read_from_the_line() {
        let line = r#"{"timestamp":"2024-01-15T10:30:45.123456Z","level":"INFO"}"#;
        assert_eq!(line_timestamp_ms(line), Some(1_705_314_645_123));
        assert_eq!(line_timestamp_ms("not a line"), None);
    }
}
