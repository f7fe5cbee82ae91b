//! The queue itself ([`BatchQueue`]): callers push lines into their shards, the writer takes
//! every shard's lines in one pass. See the folder's table of contents for the whole picture.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::lanes::{LaneSet, Pushed};
use super::pool::{Chunk, Entry, NoRoom, Output, Pool};
use super::shard::{with_own_shard, Shard, ShardState, TALLIES};

/// How long a busy writer waits before looking at the queue again, unsignalled.
const DOZE: Duration = Duration::from_millis(1);
/// Empty looks before the writer sleeps until signalled.
const DOZES: u32 = 20;

/// Ids of queues, for each thread's list of its shards.
static NEXT_QUEUE: AtomicU64 = AtomicU64::new(1);

/// Requests to the writer, under one lock (callers take it only to flush or to wake the writer).
#[derive(Debug, Default)]
struct Control {
    /// Flushes asked for so far (each `wait_written` takes a ticket), the highest ticket a
    /// writer pass has taken on, and the highest whose pass is complete (written and flushed).
    flush_requests: u64,
    flush_taken: u64,
    flush_done: u64,
    /// The same for passes that write without flushing (`wait_processed`).
    pass_requests: u64,
    pass_taken: u64,
    pass_done: u64,
}

impl Control {
    /// A flush or a pass is asked for and not yet taken on.
    fn asked(&self) -> bool {
        self.flush_requests > self.flush_taken || self.pass_requests > self.pass_taken
    }
}

#[derive(Debug)]
pub(crate) struct BatchQueue {
    id: u64,
    pool: Pool,
    /// Every thread's shard, and the shared one (first) for threads without thread-locals.
    shards: Mutex<Vec<Arc<Shard>>>,
    control: Mutex<Control>,
    work: Condvar,
    written: Condvar,
    /// The writer is asleep until signalled: the next line must wake it.
    writer_asleep: AtomicBool,
    /// The writer's last pass took less than a chunk: it dozes before the next.
    last_pass_small: AtomicBool,
    closed: AtomicBool,
    /// The writer thread has ended (after a panic, or its last pass): no pass will answer a
    /// flush.
    abandoned: AtomicBool,
    /// Drops per lane not yet reported in the log by the writer.
    dropped: Vec<AtomicU64>,
    /// The tallies of shards whose thread has exited (see [`tallies`](Self::tallies)).
    retired_tallies: [AtomicU64; TALLIES],
    /// How long a caller waits for room when the queue is full (`ZERO`: it drops at once;
    /// `Duration::MAX`: it waits as long as it takes).
    wait: Duration,
}

/// What the writer took from the queue.
#[derive(Debug)]
pub(crate) struct Taken {
    /// Drops per lane to report.
    pub(crate) dropped: Vec<u64>,
    /// The queue is closed and this was the last pass.
    pub(crate) last: bool,
    /// Flush tickets this pass answers (`0`: none): sinks that hold lines back must send them,
    /// then pass the ticket to `mark_written`.
    pub(crate) flush: u64,
    /// Pass tickets (`wait_processed`) this pass answers, for `mark_written`.
    pub(crate) pass: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; recover anyway rather than lose the log.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl BatchQueue {
    pub(crate) fn new(
        lanes: usize,
        capacity: usize,
        wait: Duration,
    ) -> Result<Self, std::collections::TryReserveError> {
        Ok(BatchQueue {
            id: NEXT_QUEUE.fetch_add(1, Ordering::Relaxed),
            pool: Pool::new(capacity)?,
            shards: Mutex::new(vec![Arc::new(Shard::default())]),
            control: Mutex::new(Control::default()),
            work: Condvar::new(),
            written: Condvar::new(),
            writer_asleep: AtomicBool::new(false),
            last_pass_small: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            dropped: (0..lanes).map(|_| AtomicU64::new(0)).collect(),
            retired_tallies: Default::default(),
            wait,
        })
    }

    /// A new shard for the calling thread; `None` once the queue is closed.
    fn register(&self) -> Option<Arc<Shard>> {
        let mut shards = lock(&self.shards);
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        let shard = Arc::new(Shard::default());
        shards.push(Arc::clone(&shard));
        Some(shard)
    }

    /// Appends a line (for the tests: see [`push_entry`](Self::push_entry)).
    #[cfg(test)]
    pub(crate) fn push(&self, lanes: LaneSet, line: &[u8]) -> Pushed {
        self.push_entry(lanes, Entry::line(line))
    }

    /// Appends a line or a record to each lane in `lanes`. One that finds no room waits for it,
    /// up to the queue's bound, or is dropped (a single line larger than the capacity goes
    /// through once the queue is empty). Once a caller has waited its whole bound the queue is
    /// stalled, and lines are dropped without waiting until the writer gives chunks back. An
    /// entry of 2 GiB or more is dropped (counted and reported as any drop): its length would
    /// not fit the chunk's.
    pub(crate) fn push_entry(&self, lanes: LaneSet, line: Entry<'_>) -> Pushed {
        if !line.fits() {
            return self.count_oversized(lanes);
        }
        let pushed = with_own_shard(self.id, || self.register(), |shard| self.push_into(shard, lanes, line));
        match pushed {
            Some(pushed) => pushed,
            // No thread-locals (the thread is exiting), or registration refused (closed).
            None if self.closed.load(Ordering::Acquire) => Pushed::Closed,
            None => {
                let shared = Arc::clone(&lock(&self.shards)[0]);
                self.push_into(&shared, lanes, line)
            }
        }
    }

    /// Appends a record of `len` bytes to `lane`, which `write` writes straight into the lane's
    /// chunk, under the shard's lock: no copy, and no buffer of the caller's. `write` must
    /// neither log nor wait (a capture that runs none of the user's code). Without room it is
    /// written into a buffer instead, which waits for room or is dropped as any line is.
    ///
    /// An accepted record adds one to the shard's `tally` (see [`tallies`](Self::tallies)).
    ///
    /// Inlined into the emit, as `with_own_shard` is (a call cost about 5 ns: its arguments,
    /// the capture's among them, went through the stack).
    #[inline]
    pub(crate) fn push_record_with(
        &self,
        lane: usize,
        tally: usize,
        len: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Pushed {
        if !Entry::fits_len(len) {
            return self.count_oversized(LaneSet(1 << lane));
        }
        let mut write = Some(write);
        let pushed = with_own_shard(
            self.id,
            || self.register(),
            |shard| self.push_record_into(shard, lane, tally, len, &mut write),
        );
        match pushed {
            Some(pushed) => pushed,
            None if self.closed.load(Ordering::Acquire) => Pushed::Closed,
            None => {
                let shared = Arc::clone(&lock(&self.shards)[0]);
                self.push_record_into(&shared, lane, tally, len, &mut write)
            }
        }
    }

    #[inline]
    fn push_record_into(
        &self,
        shard: &Shard,
        lane: usize,
        tally: usize,
        len: usize,
        write: &mut Option<impl FnOnce(&mut Vec<u8>)>,
    ) -> Pushed {
        let lanes = LaneSet(1 << lane);
        probe!(Locking);
        let appended = shard.with(|state| {
            probe!(Locked);
            if state.closed {
                return Err(NoRoom::Closed);
            }
            if !state.append_record_if_room(lane, len, write) {
                probe!(PoolVisit = 1);
                state.make_room(&self.pool, lanes, len)?;
                state.append_record_if_room(lane, len, write);
            }
            state.tallies[tally] += 1;
            // As in `append`: read under the shard's lock.
            Ok(self.writer_asleep.load(Ordering::Relaxed))
        });
        probe!(Released);
        match appended {
            Ok(wake) => self.accepted(wake),
            Err(no_room) => {
                // `write` has not run: the record goes the way of any line without room.
                let mut record = Vec::with_capacity(len);
                if let Some(write) = write.take() {
                    write(&mut record);
                }
                let pushed = self.push_without_room(shard, lanes, Entry::record(&record), no_room);
                if let Pushed::Accepted = pushed {
                    shard.with(|state| state.tallies[tally] += 1);
                }
                pushed
            }
        }
    }

    #[inline]
    fn push_into(&self, shard: &Shard, lanes: LaneSet, line: Entry<'_>) -> Pushed {
        match shard.with(|state| self.append(state, lanes, line)) {
            Ok(wake) => self.accepted(wake),
            Err(no_room) => self.push_without_room(shard, lanes, line, no_room),
        }
    }

    /// A line is in: wakes the writer if it asked for that.
    #[inline]
    fn accepted(&self, wake: bool) -> Pushed {
        if wake {
            self.wake_writer();
        }
        Pushed::Accepted
    }

    /// Appends `line` under the shard's lock; `Ok(true)` if the writer must be woken.
    #[inline]
    fn append(&self, state: &mut ShardState, lanes: LaneSet, line: Entry<'_>) -> Result<bool, NoRoom> {
        if state.closed {
            return Err(NoRoom::Closed);
        }
        if !state.append_if_room(lanes, line) {
            state.make_room(&self.pool, lanes, line.len())?;
            state.append(lanes, line);
        }
        // Read under the shard's lock: a writer going to sleep looks at this shard after
        // saying so, so either it sees the line or this sees it asleep (the lock's release and
        // acquire order the two, whichever holds it first).
        Ok(self.writer_asleep.load(Ordering::Relaxed))
    }

    /// A line that found no room (or the queue closed): it waits for room up to the queue's
    /// bound, or is dropped. Kept out of line: the usual line never comes here.
    #[cold]
    #[inline(never)]
    fn push_without_room(&self, shard: &Shard, lanes: LaneSet, line: Entry<'_>, mut no_room: NoRoom) -> Pushed {
        // The writer's progress this caller last saw, and when (see `Pool::wait_for_room`).
        let mut since = None;
        loop {
            match no_room {
                NoRoom::Closed => return Pushed::Closed,
                NoRoom::Full => {
                    if self.wait.is_zero() {
                        return self.count_drop_in(shard, lanes);
                    }
                    // Full: the writer may be dozing rather than waiting for a signal; wake it.
                    self.wake_writer();
                    // `Duration::MAX` waits as long as it takes; any other bound is one.
                    let patience = (self.wait != Duration::MAX).then_some(self.wait);
                    let copies = lanes.0.count_ones() as usize;
                    let slots = self.pool.slots_for(line.len(), copies) * copies;
                    if !self.pool.wait_for_room(slots, patience, &mut since) {
                        return self.count_drop_in(shard, lanes);
                    }
                }
            }
            match shard.with(|state| self.append(state, lanes, line)) {
                Ok(wake) => return self.accepted(wake),
                Err(again) => no_room = again,
            }
        }
    }

    #[cold]
    fn count_oversized(&self, lanes: LaneSet) -> Pushed {
        if self.closed.load(Ordering::Acquire) {
            return Pushed::Closed;
        }
        for lane in lanes.lanes() {
            self.dropped[lane].fetch_add(1, Ordering::Relaxed);
        }
        Pushed::Dropped
    }

    /// Counts a dropped line, under the lock of its shard, unless the shard is closed: the
    /// writer's last pass closes each shard under its lock before it collects the counts, so a
    /// drop counted here is in its report (counted after, it would be in no report at all).
    fn count_drop_in(&self, shard: &Shard, lanes: LaneSet) -> Pushed {
        shard.with(|state| {
            if state.closed {
                return Pushed::Closed;
            }
            for lane in lanes.lanes() {
                self.dropped[lane].fetch_add(1, Ordering::Relaxed);
            }
            Pushed::Dropped
        })
    }

    fn wake_writer(&self) {
        let control = lock(&self.control);
        self.writer_asleep.store(false, Ordering::Relaxed);
        drop(control);
        self.work.notify_one();
    }

    /// For the writer: waits up to `idle` for lines (or drops to report, a flush, or shutdown),
    /// then moves every shard's lines into `into` (each lane's in order). `None` when it waited
    /// in vain.
    ///
    /// While lines keep coming, the writer dozes: it looks again every [`DOZE`] without asking
    /// to be woken, so callers never pay for a wake-up. Only after [`DOZES`] empty looks does it
    /// sleep until the next line signals it.
    ///
    /// After a pass that took less than a chunk, the writer dozes before looking again (unless
    /// asked for a flush, or a caller finds no room): lines trickling in are taken a
    /// millisecond's worth at a time, rather than a few at a time by a writer that would keep
    /// touching the callers' shards.
    pub(crate) fn take(&self, into: &mut Vec<Chunk>, idle: Duration) -> Option<Taken> {
        let mut control = lock(&self.control);
        let deadline = Instant::now() + idle;
        if self.last_pass_small.load(Ordering::Relaxed) && !control.asked() && !self.closed.load(Ordering::Acquire) {
            control = self.work.wait_timeout(control, DOZE).unwrap_or_else(|e| e.into_inner()).0;
        }
        let mut dozes = 0;
        loop {
            if dozes >= DOZES {
                // Before looking at the shards: a line queued after this look sees it.
                self.writer_asleep.store(true, Ordering::Relaxed);
            }
            let last = self.closed.load(Ordering::Acquire);
            let bytes = self.drain(into, last);
            let has_drops = self.dropped.iter().any(|n| n.load(Ordering::Relaxed) > 0);
            if bytes > 0 || has_drops || last || control.asked() {
                self.last_pass_small.store(bytes < self.pool.chunk_bytes(), Ordering::Relaxed);
                self.writer_asleep.store(false, Ordering::Relaxed);
                let flush = if control.flush_requests > control.flush_taken { control.flush_requests } else { 0 };
                control.flush_taken = control.flush_requests;
                control.pass_taken = control.pass_requests;
                let pass = control.pass_taken;
                let dropped = self.dropped.iter().map(|n| n.swap(0, Ordering::Relaxed)).collect();
                return Some(Taken { dropped, last, flush, pass });
            }
            let now = Instant::now();
            if now >= deadline {
                self.writer_asleep.store(false, Ordering::Relaxed);
                return None;
            }
            let wait = if dozes < DOZES {
                dozes += 1;
                DOZE.min(deadline - now)
            } else {
                deadline - now
            };
            control = self.work.wait_timeout(control, wait).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Moves every shard's lines into `into`; with `last`, closes each shard as it goes. Shards
    /// whose thread has exited are dropped once empty. Returns the bytes moved.
    fn drain(&self, into: &mut Vec<Chunk>, last: bool) -> usize {
        let mut bytes = 0;
        let mut empties = Vec::new();
        let mut shards = lock(&self.shards);
        // The threads' own shards first, the shared one last: a thread writes to the shared
        // shard only once its own is out of reach (it is exiting: a thread-local destructor
        // that logs), so its lines there come after the ones still in its own shard.
        let mut index = 1;
        while index < shards.len() {
            let shard = &shards[index];
            // Held by nobody but this list: its thread has exited.
            let exited = Arc::strong_count(shard) == 1;
            shard.with(|state| {
                bytes += state.take_into(into);
                state.closed |= last;
                if exited {
                    state.take_empty(&mut empties);
                    // Under the list's lock, as `tallies` reads them: counted once, always.
                    for (retired, tally) in self.retired_tallies.iter().zip(state.tallies) {
                        retired.fetch_add(tally, Ordering::Relaxed);
                    }
                }
            });
            if exited {
                shards.swap_remove(index);
            } else {
                index += 1;
            }
        }
        shards[0].with(|shared| {
            bytes += shared.take_into(into);
            shared.closed |= last;
        });
        drop(shards);
        if !empties.is_empty() {
            self.pool.give_back(empties);
        }
        bytes
    }

    /// How many records [`push_record_with`](Self::push_record_with) has accepted, per tally:
    /// every shard's, and those of shards gone with their thread.
    pub(crate) fn tallies(&self) -> [u64; TALLIES] {
        let shards = lock(&self.shards);
        let mut sums: [u64; TALLIES] = std::array::from_fn(|i| self.retired_tallies[i].load(Ordering::Relaxed));
        for shard in shards.iter() {
            shard.with(|state| {
                for (sum, tally) in sums.iter_mut().zip(state.tallies) {
                    *sum += tally;
                }
            });
        }
        sums
    }

    /// Called on the writer thread as it starts (see [`Pool::writer_started`]).
    pub(crate) fn writer_started(&self) {
        self.pool.writer_started();
    }

    /// Marks the writer as inside a sink call until the result is dropped: a caller that finds
    /// no room tells a stalled output from a writer short of CPU by it (see
    /// [`Pool::wait_for_room`]).
    #[inline]
    pub(crate) fn output(&self) -> Output<'_> {
        self.pool.output()
    }

    /// For the writer: the chunks of a pass are written; their memory is free for new lines.
    pub(crate) fn give_back(&self, chunks: &mut Vec<Chunk>) {
        self.pool.give_back(chunks.drain(..));
    }

    /// For the writer: everything taken is written, and the flushes up to `flush` and passes up
    /// to `pass` are complete.
    pub(crate) fn mark_written(&self, flush: u64, pass: u64) {
        let mut control = lock(&self.control);
        control.flush_done = control.flush_done.max(flush);
        control.pass_done = control.pass_done.max(pass);
        drop(control);
        self.written.notify_all();
    }

    /// Waits until every line accepted before the call is written and the sinks flushed, or
    /// `deadline`; `true` if so. A whole writer pass is asked for even with nothing in the
    /// queue: a sink may hold lines back (CloudWatch batches), and the pass makes it send them.
    pub(crate) fn wait_written(&self, deadline: Instant) -> bool {
        self.wait_for_pass(true, deadline)
    }

    /// Waits until the writer has taken and handed to its sinks every line accepted before the
    /// call, without asking for a flush (a sink that holds lines back, CloudWatch batching,
    /// keeps holding them); `false` at `deadline`. For tests that assert what a sink did *not*
    /// do yet.
    pub(crate) fn wait_processed(&self, deadline: Instant) -> bool {
        self.wait_for_pass(false, deadline)
    }

    /// Takes a ticket for a writer pass (`flush`: one that also flushes the sinks), wakes the
    /// writer, and waits until a pass that took the ticket is complete, or `deadline`.
    fn wait_for_pass(&self, flush: bool, deadline: Instant) -> bool {
        let mut control = lock(&self.control);
        let ticket = if flush {
            control.flush_requests += 1;
            control.flush_requests
        } else {
            control.pass_requests += 1;
            control.pass_requests
        };
        self.writer_asleep.store(false, Ordering::Relaxed);
        self.work.notify_one();
        while (if flush { control.flush_done } else { control.pass_done }) < ticket {
            if self.abandoned.load(Ordering::Relaxed) {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            control = self.written.wait_timeout(control, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }

    /// Whether [`close`](Self::close) was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Stops accepting lines; the writer finishes what was accepted and exits.
    pub(crate) fn close(&self) {
        {
            // Under the list's lock: a thread registering a shard either is in the writer's
            // last pass or sees the queue closed.
            let _shards = lock(&self.shards);
            self.closed.store(true, Ordering::Release);
        }
        self.pool.close();
        let control = lock(&self.control);
        self.writer_asleep.store(false, Ordering::Relaxed);
        drop(control);
        self.work.notify_all();
    }

    /// For a writer thread that ends (after its last pass, when the queue is empty already, or
    /// after a panic): closes the queue and every shard, so that later lines are refused
    /// (`Closed`) rather than accepted into a queue nobody drains, and returns how many lines
    /// each lane held, now lost.
    pub(crate) fn abandon(&self) -> Vec<u64> {
        self.close();
        let mut chunks = Vec::new();
        self.drain(&mut chunks, true);
        let mut lost = vec![0; self.dropped.len()];
        for chunk in &chunks {
            lost[chunk.lane] += chunk.lens.len() as u64;
        }
        self.pool.give_back(chunks);
        lost
    }

    /// Flushes asked for so far, for tests that must know one is waiting.
    #[cfg(test)]
    pub(crate) fn flushes_asked(&self) -> u64 {
        lock(&self.control).flush_requests
    }

    /// For a writer thread that has ended, once its lost lines are counted: flushes waiting for
    /// a pass return `false` now, and later ones at once.
    pub(crate) fn mark_abandoned(&self) {
        {
            // Under the lock a waiting flush checks it with: it sees the flag or this signal.
            let _control = lock(&self.control);
            self.abandoned.store(true, Ordering::Relaxed);
        }
        self.written.notify_all();
    }

    /// The most bytes the queue ever held (in whole chunks: lines waiting or being written).
    pub(crate) fn high_water(&self) -> usize {
        self.pool.high_water()
    }

    /// The bytes of chunks held now: lines waiting in the shards or being written.
    pub(crate) fn held(&self) -> usize {
        self.pool.held()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line the writer would write, per lane, in order.
    fn take_lines(queue: &BatchQueue) -> (Vec<Vec<Vec<u8>>>, Taken) {
        let mut chunks = Vec::new();
        let taken = queue.take(&mut chunks, Duration::ZERO).expect("something to take");
        let mut lanes = vec![Vec::new(); queue.dropped.len()];
        for chunk in &chunks {
            let mut at = 0;
            for &len in &chunk.lens {
                lanes[chunk.lane].push(chunk.bytes[at..at + len as usize].to_vec());
                at += len as usize;
            }
        }
        queue.give_back(&mut chunks);
        (lanes, taken)
    }

    #[test]
    fn a_caller_that_waited_its_whole_bound_stalls_the_queue_until_the_writer_gives_chunks_back() {
        // 32 bytes: two-byte chunks, 16 of them.
        let queue = BatchQueue::new(1, 32, Duration::from_millis(20)).unwrap();
        assert_eq!(queue.push(LaneSet(1), &[b'a'; 30]), Pushed::Accepted, "15 of 16 slots");
        // The writer is blocked in a sink call and takes nothing: the bound passes, the line is
        // dropped, the queue is stalled.
        let output = queue.output();
        assert_eq!(queue.push(LaneSet(1), b"bbbb"), Pushed::Dropped);
        assert!(queue.pool.is_stalled(), "later lines are dropped without waiting");
        let started = Instant::now();
        assert_eq!(queue.push(LaneSet(1), b"cccc"), Pushed::Dropped);
        assert!(started.elapsed() < Duration::from_millis(20), "a stalled queue does not make callers wait");
        drop(output);
        let (lines, taken) = take_lines(&queue);
        assert_eq!(taken.dropped, [2], "every drop counted");
        assert_eq!(lines[0], [vec![b'a'; 30]]);
        assert!(!queue.pool.is_stalled(), "progress: waiting is worth it again");
        assert_eq!(queue.push(LaneSet(1), b"dddd"), Pushed::Accepted);
    }

    #[test]
    fn a_waiting_caller_gets_in_when_the_writer_makes_room_within_the_bound() {
        let queue = Arc::new(BatchQueue::new(1, 32, Duration::from_secs(600)).unwrap());
        assert_eq!(queue.push(LaneSet(1), &[b'a'; 32]), Pushed::Accepted);
        let writer = std::thread::spawn({
            let queue = Arc::clone(&queue);
            move || {
                // Takes the line as soon as the caller is waiting (it wakes the writer).
                let mut chunks = Vec::new();
                queue.take(&mut chunks, Duration::from_secs(600)).unwrap();
                let lens: Vec<u32> = chunks.iter().flat_map(|chunk| chunk.lens.clone()).collect();
                queue.give_back(&mut chunks);
                lens
            }
        });
        assert_eq!(queue.push(LaneSet(1), b"bbbb"), Pushed::Accepted, "waited for room, not dropped");
        assert_eq!(writer.join().unwrap(), [32]);
        assert!(!queue.pool.is_stalled());
    }

    #[test]
    fn full_queue_drops_and_counts_per_lane_and_an_oversized_line_still_passes_alone() {
        let queue = BatchQueue::new(2, 32, Duration::ZERO).unwrap();
        assert_eq!(queue.push(LaneSet(0b01), &[b'a'; 100]), Pushed::Accepted, "alone, over capacity");
        assert_eq!(queue.push(LaneSet(0b11), b"bb"), Pushed::Dropped);
        let (lines, taken) = take_lines(&queue);
        assert_eq!(taken.dropped, [1, 1]);
        assert_eq!(lines[0], [vec![b'a'; 100]]);
        assert_eq!(queue.pool.free_slots(), 16, "the large line's slots are back");
        // Two copies of a line larger than the capacity: half of the slots each.
        assert_eq!(queue.push(LaneSet(0b11), &[b'z'; 100]), Pushed::Accepted);
        assert_eq!(queue.push(LaneSet(0b11), b"cc"), Pushed::Dropped);
        let (lines, _) = take_lines(&queue);
        assert_eq!((lines[0].len(), lines[1].len()), (1, 1));
        assert_eq!(queue.push(LaneSet(0b11), b"cc"), Pushed::Accepted);
        queue.close();
        assert_eq!(queue.push(LaneSet(0b01), b"d"), Pushed::Closed, "no new chunk once closed");
        let (lines, taken) = take_lines(&queue);
        assert!(taken.last);
        assert_eq!(lines, [vec![b"cc".to_vec()], vec![b"cc".to_vec()]]);
        assert_eq!(queue.push(LaneSet(0b01), b"e"), Pushed::Closed, "the shard is closed after the last pass");
    }

    #[test]
    fn a_line_that_finds_room_in_one_lane_only_takes_none_and_holds_nothing() {
        let queue = BatchQueue::new(2, 32, Duration::ZERO).unwrap();
        // 15 of 16 slots in lane 0: one line of 30 bytes.
        assert_eq!(queue.push(LaneSet(0b01), &[b'a'; 30]), Pushed::Accepted);
        // The next line needs a chunk in each lane; only one is free.
        assert_eq!(queue.push(LaneSet(0b11), b"bbb"), Pushed::Dropped);
        assert_eq!(queue.pool.free_slots(), 1, "the chunk taken for the first lane was given back");
        let (lines, taken) = take_lines(&queue);
        assert_eq!(lines, [vec![vec![b'a'; 30]], vec![]]);
        assert_eq!(taken.dropped, [1, 1]);
    }

    #[test]
    fn each_threads_lines_keep_their_order_and_exited_threads_give_their_shards_back() {
        let queue = Arc::new(BatchQueue::new(2, 64 * 1024, Duration::MAX).unwrap());
        let threads: Vec<_> = (0..4u8)
            .map(|thread| {
                let queue = Arc::clone(&queue);
                std::thread::spawn(move || {
                    for n in 0..5_000u32 {
                        let line = format!("{thread} {n}\n");
                        let lanes = if n % 7 == 0 { LaneSet(0b11) } else { LaneSet(0b01) };
                        assert_eq!(queue.push(lanes, line.as_bytes()), Pushed::Accepted);
                    }
                })
            })
            .collect();
        // The writer: passes while the threads run, until they are done and nothing is left.
        let mut seen = vec![vec![Vec::new(); 4]; 2];
        loop {
            let done = threads.iter().all(|thread| thread.is_finished());
            let mut chunks = Vec::new();
            if queue.take(&mut chunks, Duration::from_millis(1)).is_some() {
                for chunk in &chunks {
                    let mut at = 0;
                    for &len in &chunk.lens {
                        let line = std::str::from_utf8(&chunk.bytes[at..at + len as usize]).unwrap();
                        let (thread, n) = line.trim_end().split_once(' ').unwrap();
                        seen[chunk.lane][thread.parse::<usize>().unwrap()].push(n.parse::<u32>().unwrap());
                        at += len as usize;
                    }
                }
                queue.give_back(&mut chunks);
            } else if done {
                break;
            }
        }
        for thread in threads {
            thread.join().unwrap();
        }
        let routed: Vec<u32> = (0..5_000).filter(|n| n % 7 == 0).collect();
        for (thread, (general, route)) in seen[0].iter().zip(&seen[1]).enumerate() {
            assert_eq!(*general, (0..5_000).collect::<Vec<_>>(), "lane 0, thread {thread}: each once, in order");
            assert_eq!(*route, routed, "lane 1, thread {thread}");
        }
        assert_eq!(lock(&queue.shards).len(), 1, "only the shared shard is left");
        assert_eq!(queue.pool.free_slots(), queue.pool.total(), "every chunk is back in the pool");
    }

    #[test]
    fn a_line_pushed_after_the_threads_shard_list_is_gone_goes_through_the_shared_shard() {
        struct PushOnExit(Arc<BatchQueue>, Arc<Mutex<Option<Pushed>>>);
        impl Drop for PushOnExit {
            fn drop(&mut self) {
                *lock(&self.1) = Some(self.0.push(LaneSet(1), b"last\n"));
            }
        }
        thread_local! {
            static ON_EXIT: std::cell::RefCell<Option<PushOnExit>> = const { std::cell::RefCell::new(None) };
        }
        let queue = Arc::new(BatchQueue::new(1, 1024, Duration::ZERO).unwrap());
        let outcome = Arc::new(Mutex::new(None));
        std::thread::spawn({
            let (queue, outcome) = (Arc::clone(&queue), Arc::clone(&outcome));
            move || {
                // Registered before the shard list: destroyed after it, at thread exit.
                ON_EXIT.with(|slot| *slot.borrow_mut() = Some(PushOnExit(Arc::clone(&queue), outcome)));
                assert_eq!(queue.push(LaneSet(1), b"first\n"), Pushed::Accepted);
            }
        })
        .join()
        .unwrap();
        assert_eq!(*lock(&outcome), Some(Pushed::Accepted));
        let (lines, _) = take_lines(&queue);
        let mut lines = lines[0].clone();
        lines.sort();
        assert_eq!(lines, [b"first\n".to_vec(), b"last\n".to_vec()], "both written, neither lost");
    }

    #[test]
    fn a_sleeping_writer_is_woken_by_the_next_line() {
        let queue = Arc::new(BatchQueue::new(1, 1024, Duration::ZERO).unwrap());
        let writer = std::thread::spawn({
            let queue = Arc::clone(&queue);
            move || {
                let mut chunks = Vec::new();
                // Asleep after its empty looks: without the line's signal this wait ends empty.
                let taken = queue.take(&mut chunks, Duration::from_secs(60));
                queue.give_back(&mut chunks);
                taken.is_some()
            }
        });
        while !queue.writer_asleep.load(Ordering::Relaxed) {
            std::thread::yield_now();
        }
        assert_eq!(queue.push(LaneSet(1), b"x\n"), Pushed::Accepted);
        assert!(writer.join().unwrap(), "the writer took the line");
    }

    #[test]
    fn wait_written_returns_once_the_writer_marks_the_accepted_lines() {
        let queue = Arc::new(BatchQueue::new(1, 1024, Duration::ZERO).unwrap());
        queue.push(LaneSet(1), b"x\n");
        let writer = {
            let queue = queue.clone();
            std::thread::spawn(move || loop {
                // A writer keeps taking until it has answered a flush ticket.
                let mut chunks = Vec::new();
                let taken = queue.take(&mut chunks, Duration::from_secs(10)).unwrap();
                queue.give_back(&mut chunks);
                queue.mark_written(taken.flush, taken.pass);
                if taken.flush > 0 {
                    return;
                }
            })
        };
        assert!(queue.wait_written(Instant::now() + Duration::from_secs(10)));
        writer.join().unwrap();
    }
}
