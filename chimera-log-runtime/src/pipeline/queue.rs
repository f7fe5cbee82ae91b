//! The bounded queue between callers and one writer thread.
//!
//! Callers append encoded lines to the current batch under a short lock (a `memcpy`, no
//! allocation once the buffers have grown); the writer swaps the whole batch for an empty one and
//! writes it without holding the lock. Capacity is in bytes: a line that does not fit is dropped,
//! counted per lane, and reported later by the writer. Sequence numbers let `flush` wait for
//! exactly the lines accepted before it.

use std::collections::TryReserveError;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The lines of one sink ("lane") in a batch: bytes back to back, and each line's length.
#[derive(Debug, Default)]
pub(crate) struct LaneBuf {
    pub(crate) bytes: Vec<u8>,
    pub(crate) lens: Vec<u32>,
}

/// Lines for every lane of a writer, taken at once.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) lanes: Vec<LaneBuf>,
    bytes: usize,
}

impl Batch {
    /// A batch whose first lane already holds `capacity` bytes, so that filling it never
    /// allocates (the memory is reserved, and only touched as lines arrive). The other lanes
    /// (route files, rarely busy) grow as they are used, up to `capacity` in all. An error when
    /// the memory cannot be reserved, rather than the abort of a failed allocation.
    pub(crate) fn new(lanes: usize, capacity: usize) -> Result<Self, TryReserveError> {
        let mut batch = Batch { lanes: Vec::new(), bytes: 0 };
        batch.lanes.try_reserve_exact(lanes)?;
        for lane in 0..lanes {
            let reserve = if lane == 0 { capacity } else { capacity.min(64 * 1024) };
            let mut buf = LaneBuf::default();
            buf.bytes.try_reserve_exact(reserve)?;
            buf.lens.try_reserve_exact(reserve / 64 + 16)?;
            batch.lanes.push(buf);
        }
        Ok(batch)
    }

    pub(crate) fn clear(&mut self) {
        for lane in &mut self.lanes {
            lane.bytes.clear();
            lane.lens.clear();
        }
        self.bytes = 0;
    }
}

/// Which lanes of a queue take a line: a bit per lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LaneSet(pub(crate) u64);

impl LaneSet {
    pub(crate) fn lanes(self) -> impl Iterator<Item = usize> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            let lane = bits.trailing_zeros();
            (bits != 0).then(|| {
                bits &= bits - 1;
                lane as usize
            })
        })
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// What became of a pushed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Accepted,
    /// The queue was full; the drop is counted for each lane of the line.
    Dropped,
    /// The queue is closed (shutdown); nothing was counted by the queue.
    Closed,
}

/// How long a busy writer waits before looking at the queue again, unsignalled.
const DOZE: Duration = Duration::from_millis(1);
/// Empty looks before the writer sleeps until signalled.
const DOZES: u32 = 20;

#[derive(Debug)]
struct State {
    batch: Batch,
    /// Lines accepted so far; the writer has written all of them when `written == accepted`.
    accepted: u64,
    written: u64,
    /// Drops per lane not yet reported in the log by the writer.
    dropped_unreported: Vec<u64>,
    closed: bool,
    writer_waiting: bool,
    /// Flushes asked for so far (each `wait_written` takes a ticket) ...
    flush_requests: u64,
    /// ... the highest ticket a writer pass has taken on ...
    flush_taken: u64,
    /// ... and the highest ticket whose pass is complete: lines written and sinks flushed.
    flush_done: u64,
    high_water: usize,
    /// A caller waited its whole bound for room: new lines are dropped at once (not waited for)
    /// until the writer takes a batch again.
    stalled: bool,
}

#[derive(Debug)]
pub(crate) struct BatchQueue {
    state: Mutex<State>,
    work: Condvar,
    written: Condvar,
    /// Signalled when the writer takes a batch, for callers waiting for room (`block`).
    room: Condvar,
    capacity: usize,
    /// How long a caller waits for room when the queue is full (`ZERO`: it drops at once;
    /// `Duration::MAX`: it waits as long as it takes).
    wait: Duration,
}

/// What the writer took from the queue.
#[derive(Debug)]
pub(crate) struct Taken {
    /// Accepted count covered by this batch: report it to `mark_written` once written.
    pub(crate) seq: u64,
    /// Drops per lane to report.
    pub(crate) dropped: Vec<u64>,
    /// The queue is closed and this was the last batch.
    pub(crate) last: bool,
    /// Flush tickets this pass answers (`0`: none): sinks that hold lines back must send them,
    /// then pass the ticket to `mark_written`.
    pub(crate) flush: u64,
}

impl BatchQueue {
    pub(crate) fn new(lanes: usize, capacity: usize, wait: Duration) -> Result<Self, TryReserveError> {
        Ok(BatchQueue {
            state: Mutex::new(State {
                batch: Batch::new(lanes, capacity)?,
                accepted: 0,
                written: 0,
                dropped_unreported: vec![0; lanes],
                closed: false,
                writer_waiting: false,
                flush_requests: 0,
                flush_taken: 0,
                flush_done: 0,
                high_water: 0,
                stalled: false,
            }),
            work: Condvar::new(),
            written: Condvar::new(),
            room: Condvar::new(),
            capacity,
            wait,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding this lock; recover anyway rather than lose the log.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends `line` to each lane in `lanes`. A line that does not fit waits for room, up to the
    /// queue's bound, or is dropped, unless the batch is empty: a single line larger than the
    /// capacity still goes through. Once a caller has waited its whole bound, the queue is
    /// stalled (the writer makes no progress: a dead disk, a terminal nobody reads) and lines are
    /// dropped without waiting until the writer takes a batch again.
    pub(crate) fn push(&self, lanes: LaneSet, line: &[u8]) -> Pushed {
        let copies = lanes.0.count_ones() as usize;
        let need = line.len() * copies;
        let mut state = self.lock();
        let full = |state: &State| state.batch.bytes > 0 && state.batch.bytes + need > self.capacity;
        if !self.wait.is_zero() && !state.stalled && !state.closed && full(&state) {
            // `Duration::MAX` waits as long as it takes; any other bound, however long, is one.
            let deadline = (self.wait != Duration::MAX).then(|| super::deadline_after(self.wait));
            while !state.closed && full(&state) {
                // Full: the writer may be dozing rather than waiting for a signal; wake it either way.
                state.writer_waiting = false;
                self.work.notify_one();
                let Some(deadline) = deadline else {
                    state = self.room.wait(state).unwrap_or_else(|e| e.into_inner());
                    continue;
                };
                let now = Instant::now();
                if now >= deadline {
                    state.stalled = true;
                    break;
                }
                state = self.room.wait_timeout(state, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
            }
        }
        if state.closed {
            return Pushed::Closed;
        }
        if state.batch.bytes > 0 && state.batch.bytes + need > self.capacity {
            for lane in lanes.lanes() {
                state.dropped_unreported[lane] += 1;
            }
            return Pushed::Dropped;
        }
        for lane in lanes.lanes() {
            let buf = &mut state.batch.lanes[lane];
            buf.bytes.extend_from_slice(line);
            buf.lens.push(line.len() as u32);
        }
        state.batch.bytes += need;
        state.high_water = state.high_water.max(state.batch.bytes);
        state.accepted += 1;
        let wake = std::mem::replace(&mut state.writer_waiting, false);
        drop(state);
        if wake {
            self.work.notify_one();
        }
        Pushed::Accepted
    }

    /// For the writer: waits up to `idle` for lines (or drops to report, or shutdown), then swaps
    /// the batch into `into` (which must be empty). `None` when it waited in vain.
    ///
    /// While lines keep coming, the writer dozes: it looks again every [`DOZE`] without asking
    /// to be woken, so callers never pay for a wake-up. Only after [`DOZES`] empty looks does it
    /// sleep until the next line signals it.
    pub(crate) fn take(&self, into: &mut Batch, idle: Duration) -> Option<Taken> {
        let mut state = self.lock();
        let deadline = Instant::now() + idle;
        let mut dozes = 0;
        loop {
            let has_drops = state.dropped_unreported.iter().any(|&n| n > 0);
            if state.batch.bytes > 0 || has_drops || state.closed || state.flush_requests > state.flush_taken {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                state.writer_waiting = false;
                return None;
            }
            let wait = if dozes < DOZES {
                dozes += 1;
                DOZE.min(deadline - now)
            } else {
                state.writer_waiting = true;
                deadline - now
            };
            state = self.work.wait_timeout(state, wait).unwrap_or_else(|e| e.into_inner()).0;
        }
        state.writer_waiting = false;
        std::mem::swap(&mut state.batch, into);
        let dropped = state.dropped_unreported.iter_mut().map(std::mem::take).collect();
        let flush = if state.flush_requests > state.flush_taken { state.flush_requests } else { 0 };
        state.flush_taken = state.flush_requests;
        let taken = Taken { seq: state.accepted, dropped, last: state.closed, flush };
        // Progress: the queue has room again, and waiting for it is worth it again.
        state.stalled = false;
        drop(state);
        if !self.wait.is_zero() {
            self.room.notify_all();
        }
        Some(taken)
    }

    /// For the writer: everything accepted up to `seq` is written, and the flushes up to
    /// `flush_ticket` are complete.
    pub(crate) fn mark_written(&self, seq: u64, flush_ticket: u64) {
        let mut state = self.lock();
        state.written = state.written.max(seq);
        state.flush_done = state.flush_done.max(flush_ticket);
        drop(state);
        self.written.notify_all();
    }

    /// Waits until every line accepted before the call is written, or `deadline`; `true` if so.
    pub(crate) fn wait_written(&self, deadline: Instant) -> bool {
        let mut state = self.lock();
        // A ticket asks for a whole writer pass, even with nothing in the queue: a sink may
        // hold lines back (CloudWatch batches), and the pass makes it send them.
        state.flush_requests += 1;
        let ticket = state.flush_requests;
        state.writer_waiting = false;
        self.work.notify_one();
        while state.flush_done < ticket {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self.written.wait_timeout(state, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }

    /// Waits until the writer has taken and handed to its sinks every line accepted before the
    /// call, without asking for a flush (a sink that holds lines back, CloudWatch batching,
    /// keeps holding them); `false` at `deadline`. For tests that assert what a sink did *not*
    /// do yet.
    pub(crate) fn wait_processed(&self, deadline: Instant) -> bool {
        let mut state = self.lock();
        let target = state.accepted;
        while state.written < target {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self.written.wait_timeout(state, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }

    /// Stops accepting lines; the writer finishes what was accepted and exits.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        drop(state);
        self.work.notify_all();
        self.room.notify_all();
    }

    /// The most bytes ever waiting in the queue.
    pub(crate) fn high_water(&self) -> usize {
        self.lock().high_water
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_that_waited_its_whole_bound_stalls_the_queue_until_the_writer_takes_a_batch() {
        let queue = BatchQueue::new(1, 10, Duration::from_millis(20)).unwrap();
        assert_eq!(queue.push(LaneSet(1), &[b'a'; 8]), Pushed::Accepted);
        // No writer takes anything: the bound passes, the line is dropped, the queue is stalled.
        assert_eq!(queue.push(LaneSet(1), b"bbbb"), Pushed::Dropped);
        assert!(queue.lock().stalled, "later lines are dropped without waiting");
        assert_eq!(queue.push(LaneSet(1), b"cccc"), Pushed::Dropped);
        let mut batch = Batch::new(1, 10).unwrap();
        let taken = queue.take(&mut batch, Duration::ZERO).unwrap();
        assert_eq!(taken.dropped, [2], "every drop counted");
        assert!(!queue.lock().stalled, "progress: waiting is worth it again");
        assert_eq!(queue.push(LaneSet(1), b"dddd"), Pushed::Accepted);
    }

    #[test]
    fn a_waiting_caller_gets_in_when_the_writer_makes_room_within_the_bound() {
        let queue = std::sync::Arc::new(BatchQueue::new(1, 10, Duration::from_secs(600)).unwrap());
        assert_eq!(queue.push(LaneSet(1), &[b'a'; 8]), Pushed::Accepted);
        let writer = std::thread::spawn({
            let queue = std::sync::Arc::clone(&queue);
            move || {
                let mut batch = Batch::new(1, 10).unwrap();
                // Takes the batch as soon as the caller is waiting (it wakes the writer).
                queue.take(&mut batch, Duration::from_secs(600)).unwrap();
                batch
            }
        });
        assert_eq!(queue.push(LaneSet(1), b"bbbb"), Pushed::Accepted, "waited for room, not dropped");
        assert_eq!(writer.join().unwrap().lanes[0].lens, [8]);
        assert!(!queue.lock().stalled);
    }

    #[test]
    fn full_queue_drops_and_counts_per_lane_and_an_oversized_line_still_passes_alone() {
        let queue = BatchQueue::new(2, 10, Duration::ZERO).unwrap();
        assert_eq!(queue.push(LaneSet(0b01), &[b'a'; 30]), Pushed::Accepted, "alone, over capacity");
        assert_eq!(queue.push(LaneSet(0b11), b"bb"), Pushed::Dropped);
        let mut batch = Batch::new(2, 10).unwrap();
        let taken = queue.take(&mut batch, Duration::ZERO).unwrap();
        assert_eq!(taken.dropped, [1, 1]);
        assert_eq!(batch.lanes[0].lens, [30]);
        assert_eq!(queue.push(LaneSet(0b11), b"cc"), Pushed::Accepted);
        queue.close();
        assert_eq!(queue.push(LaneSet(0b01), b"d"), Pushed::Closed);
        let mut next = Batch::new(2, 10).unwrap();
        let taken = queue.take(&mut next, Duration::ZERO).unwrap();
        assert!(taken.last);
        assert_eq!((next.lanes[0].bytes.as_slice(), next.lanes[1].bytes.as_slice()), (&b"cc"[..], &b"cc"[..]));
    }

    #[test]
    fn wait_written_returns_once_the_writer_marks_the_accepted_lines() {
        let queue = std::sync::Arc::new(BatchQueue::new(1, 1024, Duration::ZERO).unwrap());
        queue.push(LaneSet(1), b"x\n");
        let writer = {
            let queue = queue.clone();
            std::thread::spawn(move || loop {
                // A writer keeps taking until it has answered a flush ticket.
                let mut batch = Batch::new(1, 1024).unwrap();
                let taken = queue.take(&mut batch, Duration::from_secs(10)).unwrap();
                queue.mark_written(taken.seq, taken.flush);
                if taken.flush > 0 {
                    return;
                }
            })
        };
        assert!(queue.wait_written(Instant::now() + Duration::from_secs(10)));
        writer.join().unwrap();
    }
}
