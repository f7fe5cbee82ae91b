//! The loop every forwarder that ships `chimera.log`'s lines runs (CloudWatch, OTLP), and the
//! handle the application's threads hold on it; a [`Destination`] says only what is its own:
//! which lines it takes, how it batches them, how one request is sent and what its answer means.
//!
//! The loop: answer flush and look tickets; read ahead from the acknowledged cursor until one
//! request's worth waits (never more: an outage costs disk, not memory); send what is due, or
//! everything when a flush or the stop asks; on failure back off (`forward::backoff`, or the
//! destination's `Retry-After`) and send the same request again, giving up only at a flush's or
//! the shutdown's deadline, when the batch is put back (read again from the acknowledged cursor,
//! not lost); on an answer save the cursor past the batch. An outage is said on stderr once when
//! it starts and once when it ends; files passed over and a damaged cursor are counted and said
//! once. Nothing here knows of a protocol.

use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::clock::Clock;
use crate::dir::follow::{Cursor, Followed, Follower, Saved};
use crate::dir::layout::GENERAL_FILE;
use crate::error::Error;
use crate::forward::backoff::{Backoff, Jitter, Pace};
use crate::forward::reached::reached;
use crate::report::{FailureReporter, Outage};
use crate::thread::{ForwarderThread, Lifecycle, Requests as _};

/// How often an idle forwarder looks at the file for new lines.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// What one attempt to send a request came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Attempt<A> {
    /// Acknowledged, with the destination's answer.
    Delivered(A),
    /// Refused for good (the request itself is wrong): counted, the batch given up.
    Refused(String),
    /// Send again after a wait paced by `pace`, and at least `after` when given.
    Retry { reason: String, pace: Pace, after: Option<Duration> },
    /// Send again at once, once per batch (the destination repaired something, e.g. recreated
    /// a deleted stream); a second time in the same batch it is `Retry` with `pace` and `reason`.
    #[cfg_attr(not(feature = "cloudwatch"), allow(dead_code))]
    Again { pace: Pace, reason: String },
}

/// The counters the loop itself keeps; each destination's counters have them.
pub(crate) trait ShipCounters: Send + Sync + 'static {
    /// Attempts that failed and were tried again.
    fn batches_retried(&self) -> &AtomicU64;
    /// Batches given up (refused for good, or put back at a deadline).
    fn batches_failed(&self) -> &AtomicU64;
    /// Backups removed or damaged before they were shipped.
    fn files_skipped(&self) -> &AtomicU64;
    /// Times the saved cursor could not be trusted.
    fn cursor_damaged(&self) -> &AtomicU64;
}

/// A destination of `chimera.log`'s lines: its batching, its requests and the meaning of its
/// answers. Its methods run on the forwarder's thread; `connect` and `send` on its runtime.
pub(crate) trait Destination: Send + 'static {
    type Client;
    /// A batch taken from the batcher: what the destination counts once it is settled.
    type Batch;
    /// A batch as it is sent (prepared once, sent again as is on a retry).
    type Request;
    type Answer;
    type Counters: ShipCounters;

    /// The destination's name in stderr lines ("CloudWatch", "OTLP").
    const NAME: &'static str;
    /// Its section of `stats()` ("cloudwatch", "otlp").
    const STATS: &'static str;
    /// Its cursor's file in the log directory.
    const CURSOR_FILE: &'static str;

    fn counters(&self) -> &Self::Counters;

    /// Makes the client, or says once on stderr why there is none (the forwarder then idles).
    fn connect(&mut self) -> impl Future<Output = Option<Self::Client>>;

    /// The timeout of one request, before a deadline cuts it.
    fn request_timeout(&self) -> Duration;

    /// Takes one line (without its newline) read at `now`, to send once `cursor` is reached,
    /// or leaves it out (a level below the destination's minimum).
    fn push(&mut self, line: &str, cursor: Cursor, now: SystemTime);
    fn is_empty(&self) -> bool;
    /// One request's worth waits: read no more.
    fn full(&self) -> bool;
    /// A request should go now.
    fn due(&self, now: SystemTime) -> bool;
    /// Forgets what waits (it is read again from the file).
    fn clear(&mut self);
    /// The next batch, the cursor past its last line, and its request (none when the batch
    /// holds nothing to send: it is settled at once).
    fn take(&mut self, now: SystemTime) -> (Self::Batch, Option<Cursor>, Option<Self::Request>);

    /// One attempt to send `request`; the loop bounds it in time.
    fn send(&mut self, client: &Self::Client, request: &Self::Request) -> impl Future<Output = Attempt<Self::Answer>>;

    /// Counts an acknowledged request of `batch`.
    fn delivered(&mut self, answer: Self::Answer, batch: &Self::Batch);
    /// Counts and reports a request refused for good.
    fn refused(&mut self, reason: String, batch: &Self::Batch);
    /// Done with `batch` (delivered, refused, or empty), just before its cursor is saved.
    fn settle(&mut self, _batch: &Self::Batch) {}
    /// The cursor saved: the lines before it are with the destination.
    fn acknowledged(&mut self, _cursor: Cursor) {}

    /// The stderr line when delivery stops.
    fn down_line(&self, reason: &str) -> String;
    /// Delivery is failing (`true`) or works again (`false`).
    fn set_down(&self, _down: bool) {}
}

/// What the application's threads ask of the forwarder thread.
#[derive(Debug, Default)]
pub(crate) struct Requests {
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

pub(crate) type Control = crate::thread::Control<Requests>;

impl Control {
    /// The earliest deadline the forwarder must give up by, if any.
    fn give_up_at(&self) -> Option<Instant> {
        let requests = self.lock();
        match (requests.flush_deadline.filter(|_| requests.flush_pending()), requests.stop()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The running forwarder as the application's threads hold it.
#[derive(Debug)]
pub(crate) struct Shipping {
    thread: ForwarderThread<Requests>,
}

impl Shipping {
    /// Starts thread `name` shipping `chimera.log` in `dir` to `destination` from `cursor`.
    pub(crate) fn start<D: Destination>(
        name: &str,
        destination: D,
        dir: &Path,
        cursor: Cursor,
        clock: Arc<dyn Clock>,
        dir_lock: crate::thread::DirLock,
    ) -> Result<Shipping, Error> {
        let control = Arc::new(Control::default());
        let worker = Worker::new(destination, dir, cursor, clock, Arc::clone(&control));
        let thread = ForwarderThread::start(name, move || worker.run(), control, Some(dir_lock))?;
        Ok(Shipping { thread })
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

    /// Waits until the forwarder has read what `chimera.log` holds now, sending only what is due.
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

/// The cursor saved at `dir/cursor_file`, checked against the files; with none, the end of what
/// `chimera.log` holds now (a first start ships what comes from now on), saved at once; a damaged
/// one is counted and said, and shipping starts again from the oldest retained line (the
/// destination cannot be asked what it holds: duplicates, not loss).
pub(crate) fn load_cursor<D: Destination>(
    dir: &Path,
    now: SystemTime,
    counters: &D::Counters,
) -> Result<Cursor, Error> {
    let cursor_path = dir.join(D::CURSOR_FILE);
    let open_error = |source| Error::OpenFile { path: cursor_path.clone(), source };
    crate::dir::follow::remove_stale_temporaries(&cursor_path);
    Ok(match Saved::load(&cursor_path, dir, GENERAL_FILE, now) {
        Saved::Trusted(cursor) => cursor,
        Saved::None => {
            let cursor = Follower::cursor_at_end(dir, GENERAL_FILE, now).map_err(open_error)?;
            cursor.save(&cursor_path).map_err(open_error)?;
            cursor
        }
        Saved::Damaged(why) => {
            counters.cursor_damaged().fetch_add(1, Relaxed);
            diag!(
                "chimera-log: {}: the cursor cannot be trusted ({why}); shipping starts again from the oldest \
                 retained line of {GENERAL_FILE}: lines shipped already are sent again (counted in \
                 stats().{}.cursor_damaged)",
                D::NAME,
                D::STATS
            );
            Cursor::default()
        }
    })
}

/// The forwarder thread's state.
#[derive(Debug)]
struct Worker<D> {
    destination: D,
    dir: PathBuf,
    follower: Follower,
    /// The last cursor the destination acknowledged (and that is saved).
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
    clock: Arc<dyn Clock>,
    control: Arc<Control>,
    /// Delivery is failing; reported once when it started, and once when it recovers.
    outage: Outage,
    read_failures: FailureReporter,
    cursor_failures: FailureReporter,
    jitter: Jitter,
}

impl<D: Destination> Worker<D> {
    fn new(destination: D, dir: &Path, cursor: Cursor, clock: Arc<dyn Clock>, control: Arc<Control>) -> Self {
        let cursor_path = dir.join(D::CURSOR_FILE);
        Worker {
            destination,
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
            clock,
            control,
            outage: Outage::default(),
            read_failures: FailureReporter::default(),
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
                    "chimera-log: {} is disabled: its runtime could not start ({error}); console and files continue",
                    D::NAME
                );
                return self.idle_until_stopped();
            }
        };
        let Some(client) = runtime.block_on(self.destination.connect()) else {
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
            while !self.destination.is_empty()
                && (stop.is_some() || flushing(self.acked) || self.destination.due(self.clock.now()))
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
                    if complete && (shipped || (self.destination.is_empty() && self.at_end)) {
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

    /// Without a client (no runtime, no region, no certificates): answer requests at once, ship
    /// nothing, and leave the cursor where it is so that a later start with a working
    /// configuration sends these lines.
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
        while !self.destination.full() {
            let now = self.clock.now();
            match self.follower.next_line(&mut self.line, &mut self.followed, now) {
                Ok(Some(cursor)) => {
                    self.report_cursor_damage();
                    if self.followed.skipped > 0 {
                        self.passed.push_back((cursor, std::mem::take(&mut self.followed)));
                    }
                    let line = String::from_utf8_lossy(&self.line);
                    let line = line.trim_end_matches('\n');
                    if !line.is_empty() {
                        // Counted with the batch that carries it, once acknowledged.
                        self.destination.push(line, cursor, now);
                    }
                }
                Ok(None) => {
                    self.at_end = true;
                    break;
                }
                Err(error) => {
                    self.read_failures
                        .report(&format_args!("reading {GENERAL_FILE} to ship it to {}", D::NAME), &error);
                    // Lines may follow that could not be read: a flush is not answered by this.
                    self.read_failed = true;
                    break;
                }
            }
        }
    }

    /// Moves the saved cursor to `cursor`: the lines before it are with the destination.
    fn acknowledge(&mut self, cursor: Option<Cursor>) {
        let Some(cursor) = cursor else { return };
        self.acked = cursor;
        if let Err(error) = cursor.save(&self.cursor_path) {
            self.cursor_failures
                .report(&format_args!("saving the {} cursor {}", D::NAME, self.cursor_path.display()), &error);
        }
        while self.passed.front().is_some_and(|&(at, _)| reached(cursor, at)) {
            let (_, passed) = self.passed.pop_front().expect("front exists");
            self.report_passed(&passed);
        }
        self.destination.acknowledged(cursor);
    }

    /// Counts and reports a cursor found past the end of its file (the follower reads that file
    /// again from its start), once however often a put-back reads it again.
    fn report_cursor_damage(&mut self) {
        for damage in std::mem::take(&mut self.followed.cursor_damage) {
            if self.cursor_damage_reported.as_ref() == Some(&damage) {
                continue;
            }
            self.destination.counters().cursor_damaged().fetch_add(1, Relaxed);
            diag!(
                "chimera-log: {}: {damage}: the cursor was moved (by damage or by hand); that file is shipped again \
                 from its start (duplicates, not loss; counted in stats().{}.cursor_damaged)",
                D::NAME,
                D::STATS
            );
            self.cursor_damage_reported = Some(damage);
        }
    }

    /// Counts and reports files the follower found gone or damaged, once the cursor past them is
    /// saved.
    fn report_passed(&self, passed: &Followed) {
        self.destination.counters().files_skipped().fetch_add(passed.skipped, Relaxed);
        for damaged in &passed.damaged {
            diag!(
                "chimera-log: {}: a backup of {GENERAL_FILE} is damaged ({damaged}); its lines after the damage \
                 cannot be read and are not shipped",
                D::NAME
            );
        }
        let removed = passed.skipped - passed.damaged.len() as u64;
        if removed > 0 {
            diag!(
                "chimera-log: {name}: {removed} {GENERAL_FILE} backup(s) were removed by retention before they were \
                 shipped; their unshipped lines are lost to {name} (keep more backups, or fix the outage sooner)",
                name = D::NAME
            );
        }
    }

    /// Sends the next batch, retrying until it is accepted or refused for good (`true`), or the
    /// flush or shutdown deadline passes (`false`: the batch is put back, to be read again from
    /// the acknowledged cursor).
    fn send_one(&mut self, runtime: &tokio::runtime::Runtime, client: &D::Client) -> bool {
        let (batch, cursor, request) = self.destination.take(self.clock.now());
        let Some(request) = request else {
            self.destination.settle(&batch);
            self.acknowledge(cursor);
            return true;
        };
        let mut backoff = Backoff::new();
        let mut again_used = false;
        loop {
            let give_up = self.control.give_up_at();
            let (pace, reason, after) = match self.attempt(runtime, client, &request, give_up) {
                Attempt::Delivered(answer) => {
                    self.destination.delivered(answer, &batch);
                    self.report_up();
                    self.destination.settle(&batch);
                    self.acknowledge(cursor);
                    return true;
                }
                Attempt::Refused(reason) => {
                    self.destination.counters().batches_failed().fetch_add(1, Relaxed);
                    self.destination.refused(reason, &batch);
                    self.destination.settle(&batch);
                    self.acknowledge(cursor);
                    return true;
                }
                Attempt::Again { .. } if !again_used => {
                    again_used = true;
                    self.destination.counters().batches_retried().fetch_add(1, Relaxed);
                    continue;
                }
                Attempt::Again { pace, reason } => (pace, reason, None),
                Attempt::Retry { reason, pace, after } => (pace, reason, after),
            };
            // Read again: a stop or a flush may have been asked during the attempt.
            let give_up = self.control.give_up_at();
            if give_up.is_some_and(|at| Instant::now() >= at) {
                self.put_back();
                return false;
            }
            self.report_down(&reason);
            self.destination.counters().batches_retried().fetch_add(1, Relaxed);
            let wait = self.jitter.jittered(backoff.next_wait(pace)).max(after.unwrap_or_default());
            self.control.back_off(&*self.clock, wait, give_up);
        }
    }

    /// One request, cut off at the request timeout or at `give_up`, whichever comes first, or
    /// at the stop's deadline when a shutdown is asked while it runs.
    fn attempt(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        client: &D::Client,
        request: &D::Request,
        give_up: Option<Instant>,
    ) -> Attempt<D::Answer> {
        let retry = |reason: &str| Attempt::Retry { reason: reason.to_owned(), pace: Pace::Outage, after: None };
        let limit = self.destination.request_timeout();
        let timeout = give_up.map_or(limit, |at| limit.min(at.saturating_duration_since(Instant::now())));
        if timeout.is_zero() {
            return retry("the shutdown or flush deadline came first");
        }
        let control = Arc::clone(&self.control);
        let until = Instant::now() + timeout;
        let destination = &mut self.destination;
        runtime.block_on(async {
            let mut send = std::pin::pin!(destination.send(client, request));
            loop {
                let now = Instant::now();
                let stop = control.lock().stop();
                if stop.is_some_and(|at| now >= at) {
                    return retry("the shutdown deadline came first");
                }
                if now >= until {
                    return retry("request timed out");
                }
                // Looks at the stop again every POLL while the request runs.
                let step = until.min(stop.unwrap_or(until)).min(now + POLL) - now;
                if let Ok(result) = tokio::time::timeout(step, &mut send).await {
                    return result;
                }
            }
        })
    }

    /// Gives up a batch at the flush or shutdown deadline. Not lost: its lines stay in the file
    /// after the acknowledged cursor, and are read again from there.
    fn put_back(&mut self) {
        self.destination.counters().batches_failed().fetch_add(1, Relaxed);
        self.destination.clear();
        self.follower = Follower::new(&self.dir, GENERAL_FILE, self.acked);
        // Read again from the acknowledged cursor, which finds the same files gone again.
        self.passed.clear();
        self.followed = Followed::default();
    }

    /// Reports an outage once, when it starts.
    fn report_down(&mut self, reason: &str) {
        self.destination.set_down(true);
        let destination = &self.destination;
        self.outage.down(self.clock.now(), || destination.down_line(reason));
    }

    /// Reports the end of an outage, once.
    fn report_up(&mut self) {
        self.destination.set_down(false);
        self.outage
            .up(self.clock.now(), |outage| format!("chimera-log: {} delivery recovered after {outage:.1?}", D::NAME));
    }
}

/// The line's own timestamp, in milliseconds: every line starts `{"timestamp":"<RFC 3339>"`.
pub(crate) fn line_timestamp_ms(line: &str) -> Option<i64> {
    let rest = line.strip_prefix("{\"timestamp\":\"")?;
    let end = rest.find('"')?;
    let time = chrono::DateTime::parse_from_rfc3339(&rest[..end]).ok()?;
    Some(time.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

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
