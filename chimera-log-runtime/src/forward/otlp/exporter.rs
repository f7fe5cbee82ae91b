//! The exporter: the thread that follows `chimera.log` and posts its lines to the OTLP receiver
//! (see the folder's table of contents). Its loop is the CloudWatch shipper's (flush and look
//! tickets, read ahead one request's worth, send what is due, acknowledge, back off), with
//! OTLP's request and answers in place of `PutLogEvents`.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::batch::{millis, Batch, Batcher, Limits};
use super::client::{encode, Accepted, Client, Failure};
use super::record::{map_line, request, resource};
use crate::clock::Clock;
use crate::config::otlp::OtlpConfig;
use crate::dir::backup;
use crate::dir::follow::{Cursor, Followed, Follower, Saved};
use crate::dir::layout::{GENERAL_FILE, OTLP_CURSOR_FILE};
use crate::error::Error;
use crate::forward::backoff::{Backoff, Jitter, Pace};
use crate::forward::reached::reached;
use crate::report::{FailureReporter, Outage};
use crate::stats::{OtlpCounters, OtlpStats};
use crate::thread::{ForwarderThread, Lifecycle, Requests as _};

/// How often an idle exporter looks at the file for new lines.
const POLL: Duration = Duration::from_millis(50);

/// What the application's threads ask of the exporter thread.
#[derive(Debug, Default)]
struct Requests {
    /// Flush tickets: ship everything in the file now (`flush_deadline` bounds the retries).
    flush_asked: u64,
    flush_done: u64,
    /// Flush tickets up to this one were given up at their deadline.
    flush_abandoned: u64,
    flush_deadline: Option<Instant>,
    /// Look tickets: read to the end of the file (sending only what is due).
    look_asked: u64,
    look_done: u64,
    lifecycle: Lifecycle,
}

impl Requests {
    /// Whether a flush ticket is neither done nor given up.
    fn flush_pending(&self) -> bool {
        self.flush_asked > self.flush_done.max(self.flush_abandoned)
    }
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
    /// The earliest deadline the exporter must give up by, if any.
    fn give_up_at(&self) -> Option<Instant> {
        let requests = self.lock();
        match (requests.flush_deadline.filter(|_| requests.flush_pending()), requests.stop()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The running exporter: its thread and what the dispatcher needs of it.
#[derive(Debug)]
pub(crate) struct Exporter {
    thread: ForwarderThread<Requests>,
    counters: Arc<OtlpCounters>,
    dir: PathBuf,
    /// The last acknowledged cursor, for the lag in `stats()`.
    acked: Arc<Mutex<Cursor>>,
}

impl Exporter {
    /// Starts following `dir/chimera.log` from the saved cursor, or from the end of what it
    /// holds now when there is none (a first start ships what comes from now on).
    pub(crate) fn start(
        config: OtlpConfig,
        dir: &Path,
        clock: Arc<dyn Clock>,
        dir_lock: crate::thread::DirLock,
    ) -> Result<Exporter, Error> {
        let cursor_path = dir.join(OTLP_CURSOR_FILE);
        let open_error = |source| Error::OpenFile { path: cursor_path.clone(), source };
        crate::dir::follow::remove_stale_temporaries(&cursor_path);
        let counters = Arc::new(OtlpCounters::default());
        let cursor = match Saved::load(&cursor_path, dir, GENERAL_FILE, clock.now()) {
            Saved::Trusted(cursor) => cursor,
            Saved::None => {
                let cursor = Follower::cursor_at_end(dir, GENERAL_FILE, clock.now()).map_err(open_error)?;
                cursor.save(&cursor_path).map_err(open_error)?;
                cursor
            }
            Saved::Damaged(why) => {
                counters.cursor_damaged.fetch_add(1, Relaxed);
                diag!(
                    "chimera-log: OTLP: the cursor cannot be trusted ({why}); shipping starts again from the oldest \
                     retained line of {GENERAL_FILE}: lines shipped already are sent again (counted in \
                     stats().otlp.cursor_damaged)"
                );
                Cursor::default()
            }
        };
        let control = Arc::new(Control::default());
        let acked = Arc::new(Mutex::new(cursor));
        let worker = Worker::new(
            config,
            dir,
            cursor,
            cursor_path,
            clock,
            Arc::clone(&counters),
            Arc::clone(&control),
            Arc::clone(&acked),
        );
        let thread = ForwarderThread::start("chimera-log-otlp", move || worker.run(), control, Some(dir_lock))?;
        Ok(Exporter { thread, counters, dir: dir.to_path_buf(), acked })
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

    /// Waits until the exporter has read what `chimera.log` holds now, sending only what is due.
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
    /// finished by then.
    pub(crate) fn shutdown(&self, deadline: Instant) -> bool {
        self.thread.shutdown(deadline)
    }

    /// The counters, with the lag behind the file and whether delivery is down.
    pub(crate) fn snapshot(&self) -> OtlpStats {
        let acked = *self.acked.lock().unwrap_or_else(|e| e.into_inner());
        self.counters.snapshot_with(lag_bytes(&self.dir, acked), self.counters.down.load(Relaxed))
    }
}

/// Bytes of the `chimera.log` family after `acked`: the rest of the file it is in and every file
/// after it, backups counted as they are on disk (compressed or not). Zero when the family cannot
/// be listed.
fn lag_bytes(dir: &Path, acked: Cursor) -> u64 {
    let Ok(backups) = backup::list_backups(dir, GENERAL_FILE, SystemTime::now()) else { return 0 };
    let mut lag = 0;
    let mut first = true;
    for (stamp, files) in backups.iter().filter(|(stamp, _)| acked.after.is_none_or(|after| *stamp > after)) {
        let path = if files.plain {
            backup::plain_path(dir, GENERAL_FILE, *stamp)
        } else {
            backup::gz_path(dir, GENERAL_FILE, *stamp)
        };
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        lag += if first && files.plain { size.saturating_sub(acked.offset) } else { size };
        first = false;
    }
    let current = std::fs::metadata(dir.join(GENERAL_FILE)).map_or(0, |m| m.len());
    lag + if first { current.saturating_sub(acked.offset) } else { current }
}

/// The exporter thread's state.
#[derive(Debug)]
struct Worker {
    config: OtlpConfig,
    resource: Resource,
    dir: PathBuf,
    follower: Follower,
    /// The last cursor the receiver acknowledged (and that is saved).
    acked: Cursor,
    shared_acked: Arc<Mutex<Cursor>>,
    cursor_path: PathBuf,
    /// The follower reached the end of what the file holds.
    at_end: bool,
    /// The last read failed (reported): not the end of the lines.
    read_failed: bool,
    line: Vec<u8>,
    followed: Followed,
    /// Files found gone or damaged before the line read at each cursor: counted and reported
    /// once a cursor at or past it is acknowledged.
    passed: VecDeque<(Cursor, Followed)>,
    cursor_damage_reported: Option<String>,
    batcher: Batcher,
    clock: Arc<dyn Clock>,
    counters: Arc<OtlpCounters>,
    control: Arc<Control>,
    outage: Outage,
    reported_partial: bool,
    refusals: FailureReporter,
    cursor_failures: FailureReporter,
    jitter: Jitter,
}

impl Worker {
    #[allow(clippy::too_many_arguments)]
    fn new(
        config: OtlpConfig,
        dir: &Path,
        cursor: Cursor,
        cursor_path: PathBuf,
        clock: Arc<dyn Clock>,
        counters: Arc<OtlpCounters>,
        control: Arc<Control>,
        shared_acked: Arc<Mutex<Cursor>>,
    ) -> Self {
        let limits = Limits {
            batch_events: config.batch_events,
            batch_interval: config.batch_interval,
            max_batch_events: config.max_batch_events,
            max_batch_bytes: config.max_batch_bytes,
        };
        Worker {
            resource: resource(&config),
            config,
            dir: dir.to_path_buf(),
            follower: Follower::new(dir, GENERAL_FILE, cursor),
            acked: cursor,
            shared_acked,
            cursor_path,
            at_end: false,
            read_failed: false,
            line: Vec::new(),
            followed: Followed::default(),
            passed: VecDeque::new(),
            cursor_damage_reported: None,
            batcher: Batcher::new(limits),
            clock,
            counters,
            control,
            outage: Outage::default(),
            reported_partial: false,
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
                diag!(
                    "chimera-log: OTLP is disabled: its runtime could not start ({error}); console and files continue"
                );
                return self.idle_until_stopped();
            }
        };
        let client = match Client::new(&self.config) {
            Ok(client) => client,
            Err(why) => {
                diag!("chimera-log: OTLP is disabled: {why}; console and files continue");
                return self.idle_until_stopped();
            }
        };
        // The newest flush ticket seen, and the end of chimera.log when it was seen: the flush is
        // done once the acknowledged cursor reaches that point.
        let mut flush_target: Option<(u64, Option<Cursor>)> = None;
        loop {
            let (flush, look, stop) = {
                let mut requests = self.control.lock();
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

    /// Without a client: answer requests at once, ship nothing, and leave the cursor where it is
    /// so that a later start with a working configuration sends these lines.
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
                    if line.is_empty() {
                        continue;
                    }
                    let timestamp = line_timestamp_ms(line).unwrap_or_else(|| millis(now));
                    self.batcher.push(line, timestamp, SystemTime::now(), cursor);
                }
                Ok(None) => {
                    self.at_end = true;
                    break;
                }
                Err(error) => {
                    self.refusals.report(&format_args!("reading {GENERAL_FILE} to ship it over OTLP"), &error);
                    self.read_failed = true;
                    break;
                }
            }
        }
    }

    /// Moves the saved cursor to `cursor`: the lines before it are with the receiver.
    fn acknowledge(&mut self, cursor: Option<Cursor>) {
        let Some(cursor) = cursor else { return };
        self.acked = cursor;
        *self.shared_acked.lock().unwrap_or_else(|e| e.into_inner()) = cursor;
        if let Err(error) = cursor.save(&self.cursor_path) {
            self.cursor_failures.report(&format_args!("saving the OTLP cursor {}", self.cursor_path.display()), &error);
        }
        while self.passed.front().is_some_and(|&(at, _)| reached(cursor, at)) {
            let (_, passed) = self.passed.pop_front().expect("front exists");
            self.report_passed(&passed);
        }
    }

    fn report_cursor_damage(&mut self) {
        for damage in std::mem::take(&mut self.followed.cursor_damage) {
            if self.cursor_damage_reported.as_ref() == Some(&damage) {
                continue;
            }
            self.counters.cursor_damaged.fetch_add(1, Relaxed);
            diag!(
                "chimera-log: OTLP: {damage}: the cursor was moved (by damage or by hand); that file is shipped \
                 again from its start (duplicates, not loss; counted in stats().otlp.cursor_damaged)"
            );
            self.cursor_damage_reported = Some(damage);
        }
    }

    fn report_passed(&self, passed: &Followed) {
        self.counters.files_skipped.fetch_add(passed.skipped, Relaxed);
        for damaged in &passed.damaged {
            diag!(
                "chimera-log: OTLP: a backup of {GENERAL_FILE} is damaged ({damaged}); its lines after the damage \
                 cannot be read and are not shipped"
            );
        }
        let removed = passed.skipped - passed.damaged.len() as u64;
        if removed > 0 {
            diag!(
                "chimera-log: OTLP: {removed} {GENERAL_FILE} backup(s) were removed by retention before they were \
                 shipped; their unshipped lines are lost to the receiver (keep more backups, or fix the outage \
                 sooner)"
            );
        }
    }

    /// Sends the next batch, retrying until it is accepted or refused for good (`true`), or the
    /// flush or shutdown deadline passes (`false`: the batch is put back, to be read again from
    /// the acknowledged cursor).
    fn send_one(&mut self, runtime: &tokio::runtime::Runtime, client: &Client) -> bool {
        let batch: Batch = self.batcher.take_batch();
        let sent = batch.lines.len();
        if sent == 0 {
            self.acknowledge(batch.cursor);
            return true;
        }
        let records = batch.lines.iter().map(|(line, observed)| map_line(line, *observed)).collect();
        let body = encode(&request(&self.resource, records));
        let mut backoff = Backoff::new();
        loop {
            let give_up = self.control.give_up_at();
            let (pace, reason, after) = match self.attempt(runtime, client, &body, give_up) {
                Ok(accepted) => {
                    self.count_delivered(&accepted, sent);
                    self.acknowledge(batch.cursor);
                    return true;
                }
                Err(Failure::Refused(reason)) => {
                    self.count_refused(sent, reason);
                    self.acknowledge(batch.cursor);
                    return true;
                }
                Err(Failure::Retry { reason, pace, after }) => (pace, reason, after),
            };
            let give_up = self.control.give_up_at();
            if give_up.is_some_and(|at| Instant::now() >= at) {
                self.put_back();
                return false;
            }
            self.report_down(&reason);
            self.counters.batches_retried.fetch_add(1, Relaxed);
            let wait = self.jitter.jittered(backoff.next_wait(pace)).max(after.unwrap_or_default());
            self.control.back_off(&*self.clock, wait, give_up);
        }
    }

    /// One export of `body`, cut off at the request timeout or at `give_up`, whichever comes
    /// first, or at the stop's deadline when a shutdown is asked while it runs.
    fn attempt(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        client: &Client,
        body: &Bytes,
        give_up: Option<Instant>,
    ) -> Result<Accepted, Failure> {
        let retry = |reason: &str| Failure::Retry { reason: reason.to_owned(), pace: Pace::Outage, after: None };
        let limit = self.config.timeout;
        let timeout = give_up.map_or(limit, |at| limit.min(at.saturating_duration_since(Instant::now())));
        if timeout.is_zero() {
            return Err(retry("the shutdown or flush deadline came first"));
        }
        let control = Arc::clone(&self.control);
        let until = Instant::now() + timeout;
        runtime.block_on(async {
            let mut export = std::pin::pin!(client.export(body.clone()));
            loop {
                let now = Instant::now();
                let stop = control.lock().stop();
                if stop.is_some_and(|at| now >= at) {
                    return Err(retry("the shutdown deadline came first"));
                }
                if now >= until {
                    return Err(retry("request timed out"));
                }
                let step = until.min(stop.unwrap_or(until)).min(now + POLL) - now;
                if let Ok(result) = tokio::time::timeout(step, &mut export).await {
                    return result;
                }
            }
        })
    }

    /// Counts a batch of `sent` records the receiver accepted, less those its partial success
    /// rejected (counted, not sent again), and reports the end of an outage.
    fn count_delivered(&mut self, accepted: &Accepted, sent: usize) {
        let rejected = accepted.rejected.min(sent as u64);
        self.counters.batches_sent.fetch_add(1, Relaxed);
        self.counters.events_sent.fetch_add(sent as u64 - rejected, Relaxed);
        self.counters.events_rejected.fetch_add(rejected, Relaxed);
        if (rejected > 0 || !accepted.message.is_empty()) && !self.reported_partial {
            self.reported_partial = true;
            diag!(
                "chimera-log: OTLP: the receiver rejected {rejected} record(s) of a batch ({}); counted in \
                 stats().otlp.events_rejected, not sent again",
                if accepted.message.is_empty() { "no reason given" } else { &accepted.message }
            );
        }
        self.report_up();
    }

    /// Counts and reports a batch of `sent` records the receiver refused for good: dropped.
    fn count_refused(&mut self, sent: usize, reason: String) {
        self.counters.batches_failed.fetch_add(1, Relaxed);
        self.counters.events_refused.fetch_add(sent as u64, Relaxed);
        // The receiver answered: delivery is not down, the batch is wrong.
        self.report_up();
        self.refusals.report(
            &format_args!("sending {sent} record(s) over OTLP (refused, not retried)"),
            &io::Error::other(reason),
        );
    }

    /// Gives up a batch at the flush or shutdown deadline. Not lost: its lines stay in the file
    /// after the acknowledged cursor, and are read again from there.
    fn put_back(&mut self) {
        self.counters.batches_failed.fetch_add(1, Relaxed);
        self.batcher.clear();
        self.follower = Follower::new(&self.dir, GENERAL_FILE, self.acked);
        self.passed.clear();
        self.followed = Followed::default();
    }

    fn report_down(&mut self, reason: &str) {
        self.counters.down.store(true, Relaxed);
        let endpoint = &self.config.endpoint;
        self.outage.down(self.clock.now(), || {
            format!(
                "chimera-log: OTLP delivery to {endpoint} stopped ({reason}); retrying with backoff, the lines wait \
                 in {GENERAL_FILE}, console and files continue"
            )
        });
    }

    fn report_up(&mut self) {
        self.counters.down.store(false, Relaxed);
        self.outage.up(self.clock.now(), |outage| format!("chimera-log: OTLP delivery recovered after {outage:.1?}"));
    }
}

/// The line's own timestamp, in milliseconds: every line starts `{"timestamp":"<RFC 3339>"`.
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
    fn the_lag_counts_the_rest_of_the_current_file_after_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(GENERAL_FILE), "0123456789\n").unwrap();
        assert_eq!(lag_bytes(dir.path(), Cursor { after: None, offset: 4, fingerprint: None }), 7);
        assert_eq!(lag_bytes(dir.path(), Cursor { after: None, offset: 11, fingerprint: None }), 0);
    }
}
