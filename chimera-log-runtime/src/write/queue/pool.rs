//! The queue's memory: a fixed number of chunks, shared by every thread's shard.
//!
//! A chunk holds the lines of one lane, back to back. A thread fills its own chunk without
//! touching the pool; it comes here only when the chunk is full (about once per
//! [`CHUNK_BYTES_MAX`]) and after the writer has taken it. The pool has `capacity / chunk` slots:
//! that many chunks, in the shards or in the writer's hands, are all the memory the queue uses,
//! apart from a line larger than a chunk, which gets a buffer of its own holding as many slots
//! as its size is worth (all of them when it is larger than the whole capacity: it then goes
//! through alone).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::deferred::RECORD;

/// The largest chunk: few enough pool visits per thread (one per 64 KiB of lines), small enough
/// that a thread's partly filled chunk is not much memory.
pub(crate) const CHUNK_BYTES_MAX: usize = 64 * 1024;
/// The most bytes of a pool's chunks written when it is made (see [`Pool::new`]); a larger
/// capacity has its other chunks mapped as lines first reach them.
const TOUCHED_MAX: usize = 64 * 1024 * 1024;
/// A queue has at least this many chunks (a small capacity gets small chunks), so that a few
/// threads each holding one still leave room.
const CHUNKS_MIN: usize = 16;

/// One thing a caller queues: an encoded line, or a typed event's record (`deferred`), which the
/// writer encodes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) record: bool,
}

impl<'a> Entry<'a> {
    pub(crate) fn line(bytes: &'a [u8]) -> Self {
        Entry { bytes, record: false }
    }

    pub(crate) fn record(bytes: &'a [u8]) -> Self {
        Entry { bytes, record: true }
    }

    pub(crate) fn len(self) -> usize {
        self.bytes.len()
    }

    /// Whether its length leaves the bit that marks a record free (under 2 GiB).
    pub(crate) fn fits(self) -> bool {
        Self::fits_len(self.bytes.len())
    }

    pub(crate) fn fits_len(len: usize) -> bool {
        len < RECORD as usize
    }
}

/// The lines of one lane, back to back, and each line's length.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub(crate) lane: usize,
    pub(crate) bytes: Vec<u8>,
    pub(crate) lens: Vec<u32>,
    /// How many bytes this chunk takes before it is full.
    limit: usize,
    /// Pool slots it holds: 1, or more for a line larger than a chunk.
    slots: usize,
    /// When its first line was queued: the writer measures how long lines wait (the write
    /// latency) from it, once per chunk.
    pub(crate) first_at: Option<Instant>,
    /// Some entries are records (their length has [`RECORD`] set), which the writer encodes.
    pub(crate) records: bool,
}

impl Chunk {
    pub(crate) fn has_room(&self, len: usize) -> bool {
        self.bytes.len() + len <= self.limit
    }

    pub(crate) fn append(&mut self, entry: Entry<'_>) {
        if self.lens.is_empty() {
            self.first_at = Some(Instant::now());
        }
        self.bytes.extend_from_slice(entry.bytes);
        // The queue refuses entries of 2 GiB or more (`Entry::fits`).
        let len = entry.bytes.len() as u32;
        if entry.record {
            self.records = true;
            self.lens.push(len | RECORD);
        } else {
            self.lens.push(len);
        }
    }

    /// Appends a record of `len` bytes that `write` writes straight into the chunk (no copy),
    /// once [`has_room`](Self::has_room) said yes for `len`. A `write` that writes more than
    /// it said only makes the chunk grow past its limit; the record is whole either way.
    pub(crate) fn append_record_with(&mut self, len: usize, write: impl FnOnce(&mut Vec<u8>)) {
        probe!(Found);
        if self.lens.is_empty() {
            self.first_at = Some(Instant::now());
            probe!(FirstInChunk = 1);
        }
        let start = self.bytes.len();
        probe!(Offset = start);
        write(&mut self.bytes);
        let written = self.bytes.len() - start;
        debug_assert_eq!(written, len, "a record's capture wrote other than it said");
        self.records = true;
        // Written under 2 GiB: the caller checked `len` (`Entry::fits`) and `write` keeps to it.
        self.lens.push(u32::try_from(written).unwrap_or(!RECORD) | RECORD);
        probe!(Written);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }
}

#[derive(Debug)]
struct State {
    /// Buffers of returned chunks, for reuse.
    free: Vec<Chunk>,
    /// Slots not held by any chunk.
    slots: usize,
    /// A caller waited its whole bound for room: later callers drop at once, without waiting,
    /// until the writer returns chunks again.
    stalled: bool,
    closed: bool,
    /// Callers waiting for room: only then does a returned chunk signal `room`.
    waiting: usize,
    /// Times the writer gave chunks back: its progress, which a waiting caller watches.
    returns: u64,
    /// The most bytes of chunks ever held at once (in shards or being written).
    high_water: usize,
}

/// Every chunk of one queue.
#[derive(Debug)]
pub(crate) struct Pool {
    state: Mutex<State>,
    /// Signalled when the writer returns chunks, for callers waiting for room.
    room: Condvar,
    chunk_bytes: usize,
    total: usize,
    /// What the writer is doing, for a caller deciding whether it is stalled.
    writer: WriterWatch,
}

/// Whether the writer is blocked on its output (a stalled disk, a terminal nobody reads) or only
/// slow to get the CPU, which a caller that waited its patience must tell apart: the first drops
/// lines, the second must not (a busy machine loses nothing).
#[derive(Debug)]
struct WriterWatch {
    epoch: Instant,
    /// When the writer entered the sink call it is in, in nanoseconds since `epoch` plus one;
    /// `0`: it is in none (it is taking lines, or waiting for the CPU to do so).
    output_since: AtomicU64,
    /// The writer thread's id (Linux), to read its scheduling state; `0` until it says.
    tid: AtomicU64,
}

impl WriterWatch {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    /// Since when the writer has been blocked in one sink call, if it is: `None` while it is
    /// between calls or running (a writer waiting for the CPU is not stalled).
    fn blocked_since(&self) -> Option<Instant> {
        let since = self.output_since.load(Ordering::Acquire);
        if since == 0 || self.is_running() {
            return None;
        }
        Some(self.epoch + Duration::from_nanos(since - 1))
    }

    /// Whether the writer thread is running or waiting only for a CPU (Linux: state `R` in
    /// `/proc`), rather than asleep in its sink call. `false` where that cannot be read.
    fn is_running(&self) -> bool {
        #[cfg(target_os = "linux")]
        {
            let tid = self.tid.load(Ordering::Relaxed);
            if tid != 0 {
                if let Ok(stat) = std::fs::read(format!("/proc/self/task/{tid}/stat")) {
                    // `pid (comm) S ...`: the state follows the last `)` (comm may hold one).
                    let state = stat.iter().rposition(|&b| b == b')').and_then(|end| stat.get(end + 2));
                    return state == Some(&b'R');
                }
            }
        }
        false
    }
}

/// The writer's sink call, from [`Pool::output`] until dropped.
#[must_use]
pub(crate) struct Output<'a>(&'a WriterWatch);

impl Drop for Output<'_> {
    fn drop(&mut self) {
        self.0.output_since.store(0, Ordering::Release);
    }
}

/// Why a caller gets no chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoRoom {
    /// Every slot is held (or the memory for a large line cannot be had).
    Full,
    /// The queue was closed (shutdown).
    Closed,
}

impl Pool {
    /// A pool of `capacity` bytes, its chunks reserved now, so that taking one never allocates;
    /// an error when the memory cannot be reserved, rather than the abort of a failed
    /// allocation.
    ///
    /// The chunks are also written once now (up to [`TOUCHED_MAX`] bytes of them), so that the
    /// kernel maps their pages before the first line: otherwise a caller takes a page fault
    /// (a microsecond or two) every 4 KiB of lines until the pool has gone round once, about one
    /// emit in a thousand under load (BENCHMARKS.md: it was the emit bench's p99.9). The pool's
    /// memory is then resident from the start, as it would be after its first burst.
    pub(crate) fn new(capacity: usize) -> Result<Self, std::collections::TryReserveError> {
        let chunk_bytes = (capacity / CHUNKS_MIN).clamp(1, CHUNK_BYTES_MAX);
        // Two at least: a line goes to two lanes at most (`chimera.log` and a route file).
        let total = (capacity / chunk_bytes).max(2);
        let mut free = Vec::new();
        free.try_reserve_exact(total)?;
        let touched = (TOUCHED_MAX / chunk_bytes).min(total);
        for index in 0..total {
            let mut chunk = Self::buffer(chunk_bytes)?;
            // The last ones pushed are the first taken.
            if index >= total - touched {
                chunk.bytes.resize(chunk_bytes, 0);
                chunk.bytes.clear();
                chunk.lens.resize(chunk.lens.capacity(), 0);
                chunk.lens.clear();
            }
            free.push(chunk);
        }
        Ok(Pool {
            state: Mutex::new(State {
                free,
                slots: total,
                stalled: false,
                closed: false,
                waiting: 0,
                returns: 0,
                high_water: 0,
            }),
            room: Condvar::new(),
            chunk_bytes,
            total,
            writer: WriterWatch { epoch: Instant::now(), output_since: AtomicU64::new(0), tid: AtomicU64::new(0) },
        })
    }

    /// An empty chunk that takes `bytes` bytes.
    fn buffer(bytes: usize) -> Result<Chunk, std::collections::TryReserveError> {
        let mut chunk = Chunk {
            lane: 0,
            bytes: Vec::new(),
            lens: Vec::new(),
            limit: bytes,
            slots: 1,
            first_at: None,
            records: false,
        };
        chunk.bytes.try_reserve_exact(bytes)?;
        chunk.lens.try_reserve_exact(bytes / 64 + 16)?;
        Ok(chunk)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding this lock; recover anyway rather than lose the log.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The size of a chunk.
    pub(crate) fn chunk_bytes(&self) -> usize {
        self.chunk_bytes
    }

    /// How many slots each copy of a line of `len` bytes going to `copies` lanes needs: one
    /// chunk, or as many as the line is large, and at most all of them between its copies.
    pub(crate) fn slots_for(&self, len: usize, copies: usize) -> usize {
        len.div_ceil(self.chunk_bytes).clamp(1, (self.total / copies.max(1)).max(1))
    }

    /// An empty chunk for `lane` with room for a line of `len` bytes (one of `copies`), if the
    /// slots are free.
    pub(crate) fn try_take(&self, lane: usize, len: usize, copies: usize) -> Result<Chunk, NoRoom> {
        let slots = self.slots_for(len, copies);
        let mut state = self.lock();
        if state.closed {
            return Err(NoRoom::Closed);
        }
        if state.slots < slots {
            return Err(NoRoom::Full);
        }
        let mut chunk = if len <= self.chunk_bytes {
            match state.free.pop() {
                Some(chunk) => chunk,
                None => Self::buffer(self.chunk_bytes).map_err(|_| NoRoom::Full)?,
            }
        } else {
            // A line larger than a chunk: a buffer of its own, freed once written.
            let mut chunk = Self::buffer(0).map_err(|_| NoRoom::Full)?;
            chunk.bytes.try_reserve_exact(len).map_err(|_| NoRoom::Full)?;
            chunk.limit = len;
            chunk
        };
        state.slots -= slots;
        state.high_water = state.high_water.max((self.total - state.slots) * self.chunk_bytes);
        chunk.lane = lane;
        chunk.slots = slots;
        Ok(chunk)
    }

    /// Gives chunks back (emptied), and wakes callers waiting for room: the writer made progress.
    pub(crate) fn give_back(&self, chunks: impl IntoIterator<Item = Chunk>) {
        let mut state = self.lock();
        let mut returned = false;
        for mut chunk in chunks {
            returned = true;
            state.slots += chunk.slots;
            if chunk.limit == self.chunk_bytes {
                chunk.bytes.clear();
                chunk.lens.clear();
                chunk.slots = 1;
                chunk.first_at = None;
                chunk.records = false;
                state.free.push(chunk);
            }
        }
        if returned {
            state.stalled = false;
            state.returns += 1;
            let waiting = state.waiting > 0;
            drop(state);
            if waiting {
                self.room.notify_all();
            }
        }
    }

    /// Called on the writer thread as it starts: callers may look at its scheduling state.
    pub(crate) fn writer_started(&self) {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: `gettid` takes nothing and cannot fail.
            let tid = unsafe { libc::gettid() };
            self.writer.tid.store(u64::try_from(tid).unwrap_or(0), Ordering::Relaxed);
        }
    }

    /// Marks the writer as inside a sink call (a write, a flush) until the result is dropped.
    #[inline]
    pub(crate) fn output(&self) -> Output<'_> {
        self.writer.output_since.store(self.writer.now(), Ordering::Release);
        Output(&self.writer)
    }

    /// Waits until `slots` slots are free or the pool closes, as long as the writer is not
    /// stalled: `false` (the caller drops its line) once the writer has given nothing back for
    /// `patience` and has been blocked in one sink call for `patience` (`None`: wait as long as
    /// it takes). That is a stalled output (a dead disk, a terminal nobody reads); the caller that
    /// saw it marks the pool stalled, and until the writer returns chunks others drop without
    /// waiting. A writer that is slow only because a busy machine gives it little CPU is between
    /// sink calls or runnable when the patience runs out, and the caller waits on: a busy machine
    /// loses no line. `since` carries the caller's watch across calls for one line: the writer's
    /// progress it last saw, and when.
    pub(crate) fn wait_for_room(
        &self,
        slots: usize,
        patience: Option<Duration>,
        since: &mut Option<(u64, Instant)>,
    ) -> bool {
        let mut state = self.lock();
        state.waiting += 1;
        let room = loop {
            if state.closed || state.slots >= slots {
                break true;
            }
            let Some(patience) = patience else {
                state = self.room.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            let now = Instant::now();
            let (seen, at) = since.get_or_insert((state.returns, now));
            if *seen != state.returns {
                // The writer made progress since: patience counts from now.
                *seen = state.returns;
                *at = now;
            }
            let mut deadline = at.checked_add(patience).unwrap_or(now);
            if now >= deadline && !state.stalled {
                // No progress for the whole patience: stalled only if blocked on its output
                // for as long; otherwise a patience from when it is seen blocked.
                match self.writer.blocked_since() {
                    Some(blocked) => deadline = deadline.max(blocked.checked_add(patience).unwrap_or(now)),
                    None => {
                        *at = now;
                        deadline = now.checked_add(patience).unwrap_or(now);
                    }
                }
            }
            if state.stalled || now >= deadline {
                state.stalled = true;
                break false;
            }
            state = self.room.wait_timeout(state, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        };
        state.waiting -= 1;
        room
    }

    /// The most bytes of chunks ever held at once, in whole chunks: lines waiting in the shards
    /// or being written.
    pub(crate) fn high_water(&self) -> usize {
        self.lock().high_water
    }

    /// The bytes of chunks held now (in shards or being written), in whole chunks.
    pub(crate) fn held(&self) -> usize {
        (self.total - self.lock().slots.min(self.total)) * self.chunk_bytes
    }

    /// No more chunks are handed out; waiting callers return.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.room.notify_all();
    }

    #[cfg(test)]
    pub(crate) fn is_stalled(&self) -> bool {
        self.lock().stalled
    }

    /// How many slots the pool has.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    #[cfg(test)]
    pub(crate) fn free_slots(&self) -> usize {
        self.lock().slots
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A writer that gives chunks back one at a time, each well within the caller's patience,
    /// but all of them only after more than it: the caller waits as long as the writer makes
    /// progress, and gets its room (with a bound fixed at the first wait, it dropped its line
    /// although the writer was writing: a writer slowed by a busy machine is not stalled).
    #[test]
    fn a_caller_waits_past_its_patience_while_the_writer_keeps_giving_chunks_back() {
        let pool = Pool::new(32).unwrap();
        let total = pool.total();
        let chunks: Vec<Chunk> = (0..total).map(|_| pool.try_take(0, 1, 1).unwrap()).collect();
        let patience = Duration::from_millis(900);
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| pool.wait_for_room(total, Some(patience), &mut None));
            while pool.lock().waiting == 0 {
                std::thread::yield_now();
            }
            let started = Instant::now();
            for chunk in chunks {
                // A slow writer: a chunk every 300 ms, the last one long past the patience.
                std::thread::sleep(Duration::from_millis(300));
                pool.give_back([chunk]);
            }
            assert!(started.elapsed() > patience);
            assert!(waiter.join().unwrap(), "the caller got its room, not a drop");
        });
        assert!(!pool.is_stalled());
    }

    /// No chunk given back for the whole patience, the writer blocked in its sink call all that
    /// time: its output is stalled, the caller drops.
    #[test]
    fn a_caller_drops_once_its_patience_passes_with_the_writer_blocked_in_its_output() {
        let pool = Pool::new(32).unwrap();
        let _held: Vec<Chunk> = (0..pool.total()).map(|_| pool.try_take(0, 1, 1).unwrap()).collect();
        let (blocked, release) = std::sync::mpsc::channel::<()>();
        let (entered, inside) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            let pool = &pool;
            scope.spawn(move || {
                pool.writer_started();
                let _output = pool.output();
                entered.send(()).unwrap();
                // Asleep in its write, as on a dead disk.
                let _ = release.recv();
            });
            inside.recv().unwrap();
            assert!(!pool.wait_for_room(1, Some(Duration::from_millis(50)), &mut None));
            assert!(pool.is_stalled());
            drop(blocked);
        });
    }

    /// A writer that gives nothing back for longer than the caller's patience, but is between
    /// sink calls all that time (it waits for the CPU to take lines, on a busy machine): not
    /// stalled, the caller waits for its room (it used to drop: no verdict may depend on how busy
    /// the machine is).
    #[test]
    fn a_caller_waits_past_its_patience_while_the_writer_is_between_sink_calls() {
        let pool = Pool::new(32).unwrap();
        let held: Vec<Chunk> = (0..pool.total()).map(|_| pool.try_take(0, 1, 1).unwrap()).collect();
        let patience = Duration::from_millis(50);
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| pool.wait_for_room(1, Some(patience), &mut None));
            std::thread::sleep(patience * 6);
            pool.give_back(held);
            assert!(waiter.join().unwrap(), "the caller got its room, not a drop");
        });
        assert!(!pool.is_stalled());
    }

    /// A writer inside its sink call for longer than the patience, but running all that time
    /// (on the CPU or waiting only for it): not stalled, the caller waits for its room.
    #[test]
    fn a_caller_waits_past_its_patience_while_the_writer_runs_inside_its_sink_call() {
        let pool = Pool::new(32).unwrap();
        let held: Vec<Chunk> = (0..pool.total()).map(|_| pool.try_take(0, 1, 1).unwrap()).collect();
        let patience = Duration::from_millis(50);
        let (entered, inside) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            let pool = &pool;
            scope.spawn(move || {
                pool.writer_started();
                let output = pool.output();
                entered.send(()).unwrap();
                let started = Instant::now();
                // Busy in the call (a slow encoder, a CPU-bound sink): runnable all along.
                while started.elapsed() < patience * 6 {
                    std::hint::spin_loop();
                }
                drop(output);
                pool.give_back(held);
            });
            inside.recv().unwrap();
            assert!(pool.wait_for_room(1, Some(patience), &mut None), "the caller got its room, not a drop");
        });
        assert!(!pool.is_stalled());
    }

    /// The writer was between calls for most of the patience, then blocked in a sink call: the
    /// patience counts from when it blocked, not from its last chunk given back.
    #[test]
    fn the_patience_counts_from_when_the_writer_blocked_in_its_output() {
        let pool = Pool::new(32).unwrap();
        let held: Vec<Chunk> = (0..pool.total()).map(|_| pool.try_take(0, 1, 1).unwrap()).collect();
        let patience = Duration::from_millis(200);
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| pool.wait_for_room(1, Some(patience), &mut None));
            while pool.lock().waiting == 0 {
                std::thread::yield_now();
            }
            // Between calls for most of the patience, then in one call (asleep) for less than it.
            std::thread::sleep(patience * 3 / 4);
            let output = pool.output();
            std::thread::sleep(patience * 3 / 4);
            drop(output);
            pool.give_back(held);
            assert!(waiter.join().unwrap(), "blocked for less than the patience: the caller waited");
        });
    }

    /// Whether every page of `bytes` bytes at `start` is mapped (`mincore`).
    fn resident(start: *const u8, bytes: usize) -> bool {
        let page = 4096;
        let first = start as usize / page * page;
        let end = (start as usize + bytes).div_ceil(page) * page;
        let mut pages = vec![0u8; (end - first) / page];
        // SAFETY: `first..end` covers the chunk's own allocation (rounded out to whole pages,
        // which `mincore` requires; it only reports on them), and `pages` has a byte per page.
        let status = unsafe { libc::mincore(first as *mut libc::c_void, end - first, pages.as_mut_ptr()) };
        status == 0 && pages.iter().all(|&page| page & 1 == 1)
    }

    #[test]
    fn a_new_pools_chunks_are_mapped_before_the_first_line_reaches_them() {
        let pool = Pool::new(4 * 1024 * 1024).unwrap();
        let state = pool.lock();
        assert_eq!(state.free.len(), 64);
        for chunk in &state.free {
            assert!(chunk.bytes.is_empty() && chunk.lens.is_empty(), "touched, not filled");
            assert!(resident(chunk.bytes.as_ptr(), chunk.bytes.capacity()), "a chunk's bytes are mapped");
            assert!(resident(chunk.lens.as_ptr().cast(), chunk.lens.capacity() * 4), "its lengths are mapped");
        }
    }
}
