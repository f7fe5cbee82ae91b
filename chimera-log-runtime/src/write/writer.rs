//! A writer thread: takes batches from a [`BatchQueue`] and writes each lane's lines to its sink,
//! then reports drops in the log itself (`log_events_dropped`, WARNING). Between batches it
//! retries sinks that failed. One writer per independent output, so a stalled console never
//! holds up the files.

use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::queue::{BatchQueue, Chunk};
use crate::clock::Clock;
use crate::deferred;
use crate::dir::layout::GENERAL_FILE;
use crate::error::Error;
use crate::event::Level;
use crate::json::{self, ContextWriter, Envelope};
use crate::report::FailureReporter;
use crate::sink::Sink;
use crate::stats::SinkCounters;

use super::watch::{Warning, Watch};

/// How long an idle writer sleeps before retrying sinks with unwritten bytes.
const IDLE: Duration = Duration::from_secs(1);

/// One output of a writer thread.
#[derive(Debug)]
pub(crate) struct Lane {
    pub(crate) name: String,
    pub(crate) sink: Box<dyn Sink>,
    pub(crate) counters: Arc<SinkCounters>,
    pub(crate) failures: FailureReporter,
    /// Drops (the queue's and the sink's own) counted but not yet reported in the log.
    unreported_drops: u64,
}

impl Lane {
    pub(crate) fn new(name: &str, sink: Box<dyn Sink>, counters: Arc<SinkCounters>) -> Self {
        Lane { name: name.to_owned(), sink, counters, failures: FailureReporter::default(), unreported_drops: 0 }
    }

    fn report(&self, error: &io::Error) {
        self.counters.write_errors.fetch_add(1, Relaxed);
        self.failures.report(&format_args!("writing to {}", self.name), error);
    }

    /// Hands lines to the sink. Lines it took count as written (a fault only delays them: the
    /// sink retries); lines it dropped are counted as dropped, by the sink, and reported later.
    fn write(&mut self, bytes: &[u8], lens: &[u32]) {
        // Counted before the sink sees them: the sink takes back the bytes of lines it drops.
        self.counters.bytes.fetch_add(bytes.len() as u64, Relaxed);
        let outcome = self.sink.write_batch(bytes, lens);
        let dropped = self.sink.take_dropped();
        self.unreported_drops += dropped;
        self.counters.lines.fetch_add((lens.len() as u64).saturating_sub(dropped), Relaxed);
        if let Err(error) = outcome {
            self.report(&error);
        }
    }

    /// Writes out what the sink holds; `false` if a fault still holds lines back.
    fn flush(&mut self) -> bool {
        let outcome = self.sink.flush();
        if let Err(error) = &outcome {
            self.report(error);
        }
        self.unreported_drops += self.sink.take_dropped();
        outcome.is_ok()
    }

    /// Whether the sink still holds lines it was handed (a fault keeps them for a retry).
    fn holds_lines(&self) -> bool {
        self.sink.holds_lines()
    }

    fn tick(&mut self) {
        if let Err(error) = self.sink.tick() {
            self.report(&error);
        }
        self.unreported_drops += self.sink.take_dropped();
    }

    /// Writes one `log_events_dropped` event for the lines dropped so far (the queue's `queued`
    /// and the sink's own), once the sink has room for it; until then the count is kept.
    fn report_drops(&mut self, queued: u64, clock: &dyn Clock, line: &mut Vec<u8>) {
        self.unreported_drops += queued;
        if self.unreported_drops == 0 || !self.sink.has_room() {
            return;
        }
        let dropped = std::mem::take(&mut self.unreported_drops);
        let sink = self.name.clone();
        self.write_own_event(clock, line, "log_events_dropped", |context| {
            context.field("sink", &sink);
            context.field("dropped", &dropped);
        });
    }

    /// Writes one of the logger's own WARNING lines (module `chimera_log`) to this sink.
    fn write_own_event(
        &mut self,
        clock: &dyn Clock,
        line: &mut Vec<u8>,
        event: &'static str,
        fill: impl FnOnce(&mut ContextWriter<'_>),
    ) {
        line.clear();
        let envelope = Envelope {
            time: clock.now().into(),
            level: Level::Warning,
            module_json: "\"chimera_log\"",
            event: event.into(),
            exception: None,
            audit_key: None,
            trace: None,
        };
        json::encode_line(line, envelope, |buf| {
            let mut context = ContextWriter::open(buf);
            fill(&mut context);
            context.finish();
        });
        self.write(line, &[line.len() as u32]);
    }

    /// Writes a warning of the writer's watch (`log_write_slow`, `log_disk_low`).
    fn report_watch(&mut self, warning: &Warning, clock: &dyn Clock, line: &mut Vec<u8>) {
        let millis = |d: &Duration| d.as_secs_f64() * 1e3;
        match warning {
            Warning::Slow { median, p99, max, samples, threshold } => {
                self.write_own_event(clock, line, "log_write_slow", |context| {
                    context.field("sink", GENERAL_FILE);
                    context.field("median_ms", &millis(median));
                    context.field("p99_ms", &millis(p99));
                    context.field("max_ms", &millis(max));
                    context.field("samples", samples);
                    context.field("threshold_ms", &millis(threshold));
                });
            }
            Warning::DiskLow { free, threshold } => {
                self.write_own_event(clock, line, "log_disk_low", |context| {
                    context.field("free_bytes", free);
                    context.field("threshold_bytes", threshold);
                });
            }
        }
    }
}

/// A running writer thread and its queue.
#[derive(Debug)]
pub(crate) struct Writer {
    queue: Arc<BatchQueue>,
    finished: Arc<(Mutex<bool>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    // Each argument is one fact about this writer; the two callers name them at the call.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        name: &str,
        lanes: Vec<Lane>,
        capacity: usize,
        wait: Duration,
        clock: Arc<dyn Clock>,
        priority: Option<i32>,
        dir_lock: Option<crate::thread::DirLock>,
        watch: Option<Watch>,
    ) -> Result<Self, Error> {
        let unreservable = |source: std::collections::TryReserveError| {
            Error::invalid(
                "queue_capacity",
                capacity.to_string(),
                format!("cannot reserve memory for a queue of this many bytes: {source}"),
            )
        };
        let queue = Arc::new(BatchQueue::new(lanes.len(), capacity, wait).map_err(unreservable)?);
        let finished = Arc::new((Mutex::new(false), Condvar::new()));
        let counters: Vec<Arc<SinkCounters>> = lanes.iter().map(|lane| Arc::clone(&lane.counters)).collect();
        let (started, prioritized) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn({
                let queue = Arc::clone(&queue);
                let finished = Arc::clone(&finished);
                move || {
                    // Dropped last, when the thread ends: a writer left running by a shutdown
                    // that gave up on it keeps the directory until it has finished.
                    let _dir_lock = dir_lock;
                    crate::thread::set_thread_role(crate::thread::ThreadRole::Writer);
                    crate::thread::mark();
                    queue.writer_started();
                    let mut finish = Finish { queue: &queue, finished: &finished, counters, taken: Vec::new() };
                    let outcome = priority.map_or(Ok(()), set_own_priority);
                    let go_on = outcome.is_ok();
                    let _ = started.send(outcome);
                    if go_on {
                        run(&queue, lanes, &*clock, &mut finish.taken, watch);
                    }
                }
            })
            .map_err(|source| Error::Thread { source })?;
        match prioritized.recv() {
            Ok(Ok(())) => Ok(Writer { queue, finished, thread: Mutex::new(Some(thread)) }),
            Ok(Err(error)) => {
                let _ = thread.join();
                Err(Error::invalid(
                    "writer_priority",
                    priority.map_or_else(String::new, |nice| nice.to_string()),
                    format!("the writer thread's priority cannot be set (raising it takes CAP_SYS_NICE or RLIMIT_NICE): {error}"),
                ))
            }
            // The thread ended before it said (it could not even start its work).
            Err(_) => Err(Error::Thread { source: io::Error::other("the writer thread ended as it started") }),
        }
    }

    pub(crate) fn queue(&self) -> &BatchQueue {
        &self.queue
    }

    /// Waits until every line accepted before the call is written; `false` at `deadline`, or at
    /// once when the thread has ended (a panic, or shutdown): nothing would answer.
    pub(crate) fn flush(&self, deadline: Instant) -> bool {
        !self.has_ended() && self.queue.wait_written(deadline)
    }

    /// Waits until the writer has handed every line accepted before the call to its sinks,
    /// without a flush; `false` at `deadline`, or at once when the thread has ended.
    pub(crate) fn wait_processed(&self, deadline: Instant) -> bool {
        !self.has_ended() && self.queue.wait_processed(deadline)
    }

    fn has_ended(&self) -> bool {
        *self.finished.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the queue and waits for the thread to write what was accepted and exit; `false`
    /// if it has not by `deadline` (it is then left running, detached).
    pub(crate) fn shutdown(&self, deadline: Instant) -> bool {
        self.queue.close();
        let (done, signal) = &*self.finished;
        let mut finished = done.lock().unwrap_or_else(|e| e.into_inner());
        while !*finished {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            finished = signal.wait_timeout(finished, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        drop(finished);
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
        true
    }
}

impl Drop for Writer {
    /// Never shut down (the logger's start failed after this began): stops the thread rather
    /// than leave it running, idle, with the directory's lock.
    fn drop(&mut self) {
        if !self.queue.is_closed() {
            self.shutdown(Instant::now() + crate::thread::STOP_WHEN_DROPPED);
        }
    }
}

/// Ends a writer thread, also when it unwinds: a sink that panicked (a bug) must not leave
/// callers waiting for room forever (`Overflow::Block`) nor a shutdown waiting for its timeout.
/// The queue and its shards are closed, so lines pushed after it are refused and counted as
/// emitted after shutdown; the lines it held and those the writer had taken but not handed to
/// a sink are counted as dropped by their sinks; the panic's message is on stderr (the
/// default hook) and the other writers go on.
struct Finish<'a> {
    queue: &'a BatchQueue,
    finished: &'a (Mutex<bool>, Condvar),
    /// Each lane's counters, for the lines lost.
    counters: Vec<Arc<SinkCounters>>,
    /// The writer's chunks of its current pass; those not yet written keep their line lengths.
    taken: Vec<Chunk>,
}

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        // After a normal last pass the queue is closed and empty already: nothing is lost.
        let mut lost = self.queue.abandon();
        for chunk in &self.taken {
            lost[chunk.lane] += chunk.lens.len() as u64;
        }
        for (counters, lost) in self.counters.iter().zip(lost) {
            counters.dropped.fetch_add(lost, Relaxed);
        }
        // Only now, with the counts final: a flush that returns on it may read them.
        self.queue.mark_abandoned();
        let (done, signal) = self.finished;
        *done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        signal.notify_all();
    }
}

/// Sets the calling thread's nice value (Linux: `setpriority` on a thread id sets that thread's).
#[cfg(target_os = "linux")]
fn set_own_priority(nice: i32) -> io::Result<()> {
    // SAFETY: `gettid` and `setpriority` take plain integers and touch no memory of ours.
    let done = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
    if done == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere the setting is refused when the configuration is checked.
#[cfg(not(target_os = "linux"))]
fn set_own_priority(_nice: i32) -> io::Result<()> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "a thread's own priority can be set on Linux only"))
}

/// The writer's loop; `chunks` holds the lines of the current pass (see [`Finish`]).
fn run(queue: &BatchQueue, mut lanes: Vec<Lane>, clock: &dyn Clock, chunks: &mut Vec<Chunk>, mut watch: Option<Watch>) {
    let mut report_line = Vec::new();
    // Typed events' records are encoded here (`deferred`), into lines written from `encoded`.
    let mut encoder = deferred::Encoder::default();
    let (mut encoded, mut encoded_lens) = (Vec::new(), Vec::new());
    // The newest flush whose lines a fault still holds back in a sink: answered once no sink
    // holds lines any more, after a retry (or never, and the flush says `false` at its deadline).
    // The retries keep the sinks' own pace (a tick), not one forced write per pass.
    let mut owed = 0;
    let flush_all = |lanes: &mut Vec<Lane>| lanes.iter_mut().fold(true, |all, lane| lane.flush() & all);
    let ticked_clear = |lanes: &mut Vec<Lane>| {
        lanes.iter_mut().for_each(Lane::tick);
        !lanes.iter().any(Lane::holds_lines)
    };
    loop {
        let Some(taken) = queue.take(chunks, IDLE) else {
            // Idle: sinks retry what a fault held back, and send batches that came due.
            let output = queue.output();
            if ticked_clear(&mut lanes) && owed > 0 {
                queue.mark_written(std::mem::take(&mut owed), 0);
            }
            for lane in &mut lanes {
                lane.report_drops(0, clock, &mut report_line);
            }
            if let Some(watch) = &mut watch {
                for warning in watch.check(Instant::now()) {
                    lanes[0].report_watch(&warning, clock, &mut report_line);
                }
            }
            drop(output);
            continue;
        };
        for chunk in chunks.iter_mut() {
            let output = queue.output();
            if chunk.records {
                encoded.clear();
                encoded_lens.clear();
                deferred::encode_entries(&mut encoder, &chunk.bytes, &chunk.lens, &mut encoded, &mut encoded_lens);
                lanes[chunk.lane].write(&encoded, &encoded_lens);
            } else {
                lanes[chunk.lane].write(&chunk.bytes, &chunk.lens);
            }
            drop(output);
            if let (Some(watch), Some(first_at)) = (&mut watch, chunk.first_at.take()) {
                watch.written(first_at);
            }
            // Handed to the sink: not lost if a later write of this pass panics.
            chunk.lens.clear();
        }
        queue.give_back(chunks);
        let output = queue.output();
        for (lane, dropped) in lanes.iter_mut().zip(&taken.dropped) {
            lane.report_drops(*dropped, clock, &mut report_line);
        }
        if let Some(watch) = &mut watch {
            for warning in watch.check(Instant::now()) {
                lanes[0].report_watch(&warning, clock, &mut report_line);
            }
        }
        let mut flushed = taken.flush;
        let clear = if taken.flush > 0 || taken.last { flush_all(&mut lanes) } else { ticked_clear(&mut lanes) };
        drop(output);
        if clear {
            flushed = flushed.max(std::mem::take(&mut owed));
        } else {
            owed = owed.max(std::mem::take(&mut flushed));
        }
        queue.mark_written(flushed, taken.pass);
        if taken.last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::write::queue::{LaneSet, Pushed};

    /// A sink with a bug: it panics on its first line.
    #[derive(Debug)]
    struct Panicking;

    impl Sink for Panicking {
        fn write_line(&mut self, _line: &[u8]) -> io::Result<()> {
            panic!("a sink bug (expected by this test)");
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A sink whose first write says it has the line and waits for the test (a stalled disk),
    /// then goes through, or panics (`panics`: a bug that shows once the test lets it).
    #[derive(Debug)]
    struct Gated {
        entered: std::sync::mpsc::Sender<()>,
        go: Mutex<std::sync::mpsc::Receiver<()>>,
        panics: bool,
    }

    impl Sink for Gated {
        fn write_line(&mut self, _line: &[u8]) -> io::Result<()> {
            let _ = self.entered.send(());
            let _ = self.go.lock().unwrap_or_else(|e| e.into_inner()).recv();
            if self.panics {
                panic!("a sink bug (expected by this test)");
            }
            Ok(())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_writer_left_running_by_a_shutdown_that_gave_up_holds_the_directory_lock_until_it_ends() {
        let (entered, has_entered) = std::sync::mpsc::channel();
        let (go, gate) = std::sync::mpsc::channel();
        let sink = Gated { entered, go: Mutex::new(gate), panics: false };
        let lane = Lane::new("stalled", Box::new(sink), Arc::default());
        let (_dir, dir_lock) = crate::thread::locked_test_dir();
        let writer = Writer::start(
            "test-stalled-writer",
            vec![lane],
            64 * 1024,
            Duration::MAX,
            Arc::new(SystemClock),
            None,
            Some(Arc::clone(&dir_lock)),
            None,
        )
        .unwrap();
        assert_eq!(writer.queue().push(LaneSet(1), b"line\n"), Pushed::Accepted);
        has_entered.recv().unwrap(); // stalled inside the write
        assert!(!writer.shutdown(Instant::now() + Duration::from_millis(50)), "gives up on the stalled writer");
        assert_eq!(Arc::strong_count(&dir_lock), 2, "the writer still may write: it keeps its share");
        go.send(()).unwrap(); // the disk is back
        assert!(writer.shutdown(Instant::now() + Duration::from_secs(30)), "the writer finished and was joined");
        assert_eq!(Arc::strong_count(&dir_lock), 1, "its share is given up with the thread");
    }

    #[test]
    fn a_writer_dropped_without_a_shutdown_stops_its_thread_and_gives_up_the_directory_lock() {
        // As when a logger's start fails after its files writer began.
        let (_dir, dir_lock) = crate::thread::locked_test_dir();
        let lane = Lane::new("idle", Box::new(Panicking), Arc::default());
        let writer = Writer::start(
            "test-dropped-writer",
            vec![lane],
            1024,
            Duration::MAX,
            Arc::new(SystemClock),
            None,
            Some(Arc::clone(&dir_lock)),
            None,
        )
        .unwrap();
        assert_eq!(Arc::strong_count(&dir_lock), 2);
        drop(writer);
        assert_eq!(Arc::strong_count(&dir_lock), 1, "the thread ended and was joined");
    }

    #[test]
    fn lines_a_dead_writer_held_are_counted_dropped_and_later_ones_refused() {
        let (entered, has_entered) = std::sync::mpsc::channel();
        let (go, gate) = std::sync::mpsc::channel();
        let sink = Gated { entered, go: Mutex::new(gate), panics: true };
        let counters = Arc::new(SinkCounters::default());
        let lane = Lane::new("gated", Box::new(sink), Arc::clone(&counters));
        let writer = Writer::start(
            "test-gated-writer",
            vec![lane],
            64 * 1024,
            Duration::MAX,
            Arc::new(SystemClock),
            None,
            None,
            None,
        )
        .unwrap();
        assert_eq!(writer.queue().push(LaneSet(1), b"first\n"), Pushed::Accepted);
        has_entered.recv().unwrap(); // the writer took "first" and is inside the sink
        assert_eq!(writer.queue().push(LaneSet(1), b"second\n"), Pushed::Accepted, "the writer is alive");
        // A flush waiting for the line being written when the sink panics.
        let flush = std::thread::scope(|scope| {
            let waiting = scope.spawn(|| {
                let asked = Instant::now();
                (writer.flush(asked + Duration::from_secs(60)), asked.elapsed())
            });
            while writer.queue().flushes_asked() == 0 {
                std::thread::yield_now(); // until the flush waits: it has asked for a pass
            }
            go.send(()).unwrap(); // the sink panics
            waiting.join().unwrap()
        });
        assert!(!flush.0, "no pass answers the flush");
        assert!(flush.1 < Duration::from_secs(30), "it returned when the writer died, not at its deadline");
        assert!(writer.shutdown(Instant::now() + Duration::from_secs(30)), "the writer thread ended");
        // Its room left in the thread's chunk must not take lines nobody will write.
        assert_eq!(writer.queue().push(LaneSet(1), b"third\n"), Pushed::Closed);
        assert_eq!(
            counters.dropped.load(Relaxed),
            2,
            "the line being written and the one queued are lost, and counted"
        );
        assert_eq!(counters.lines.load(Relaxed), 0);
    }

    #[test]
    fn a_writer_whose_sink_panics_closes_its_queue_so_no_caller_waits_forever() {
        let lane = Lane::new("panicking", Box::new(Panicking), Arc::default());
        // A tiny queue whose callers wait as long as it takes for room (`Overflow::Block`).
        let writer = Arc::new(
            Writer::start(
                "test-panicking-writer",
                vec![lane],
                64,
                Duration::MAX,
                Arc::new(SystemClock),
                None,
                None,
                None,
            )
            .unwrap(),
        );
        let (sent, outcome) = std::sync::mpsc::channel();
        let caller = std::thread::spawn({
            let writer = Arc::clone(&writer);
            move || {
                // More lines than the queue holds: with the writer dead, a caller would wait
                // for room forever.
                let mut outcomes = Vec::new();
                for _ in 0..100 {
                    outcomes.push(writer.queue().push(LaneSet(1), &[b'x'; 16]));
                }
                let _ = sent.send(outcomes);
            }
        });
        let outcomes =
            outcome.recv_timeout(Duration::from_secs(30)).expect("the caller returned: it did not wait forever");
        caller.join().unwrap();
        assert!(outcomes.contains(&Pushed::Closed), "lines after the panic are refused: {outcomes:?}");
        assert!(!outcomes.contains(&Pushed::Dropped), "a waiting caller is not told the queue is merely full");
        assert!(writer.shutdown(Instant::now() + Duration::from_secs(5)), "the dead writer counts as finished");
        let asked = Instant::now();
        assert!(!writer.flush(asked + Duration::from_secs(600)), "a flush cannot succeed, and returns");
        assert!(asked.elapsed() < Duration::from_secs(300), "at once, not at its deadline: nothing would answer");
    }
}
