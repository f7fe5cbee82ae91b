//! The queue's memory: a fixed number of chunks, shared by every thread's shard.
//!
//! A chunk holds the lines of one lane, back to back. A thread fills its own chunk without
//! touching the pool; it comes here only when the chunk is full (about once per
//! [`CHUNK_BYTES_MAX`]) and after the writer has taken it. The pool has `capacity / chunk` slots:
//! that many chunks, in the shards or in the writer's hands, are all the memory the queue uses,
//! apart from a line larger than a chunk, which gets a buffer of its own holding as many slots
//! as its size is worth (all of them when it is larger than the whole capacity: it then goes
//! through alone).

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The largest chunk: few enough pool visits per thread (one per 64 KiB of lines), small enough
/// that a thread's partly filled chunk is not much memory.
pub(crate) const CHUNK_BYTES_MAX: usize = 64 * 1024;
/// The most bytes of a pool's chunks written when it is made (see [`Pool::new`]); a larger
/// capacity has its other chunks mapped as lines first reach them.
const TOUCHED_MAX: usize = 64 * 1024 * 1024;
/// A queue has at least this many chunks (a small capacity gets small chunks), so that a few
/// threads each holding one still leave room.
const CHUNKS_MIN: usize = 16;

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
}

impl Chunk {
    pub(crate) fn has_room(&self, len: usize) -> bool {
        self.bytes.len() + len <= self.limit
    }

    pub(crate) fn append(&mut self, line: &[u8]) {
        self.bytes.extend_from_slice(line);
        self.lens.push(line.len() as u32);
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
        })
    }

    /// An empty chunk that takes `bytes` bytes.
    fn buffer(bytes: usize) -> Result<Chunk, std::collections::TryReserveError> {
        let mut chunk = Chunk { lane: 0, bytes: Vec::new(), lens: Vec::new(), limit: bytes, slots: 1 };
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

    /// Waits until `slots` slots are free or the pool closes, as long as the writer makes
    /// progress: `false` (the caller drops its line) once `patience` has passed without the
    /// writer giving a chunk back (`None`: wait as long as it takes). A writer starved of CPU by
    /// a busy machine still gives chunks back now and then, and the caller waits on; a writer
    /// that gives nothing back for `patience` is stalled (a dead disk, a terminal nobody reads),
    /// the caller that saw it marks the pool stalled, and until the writer returns chunks others
    /// drop without waiting. `since` carries the caller's watch across calls for one line: the
    /// writer's progress it last saw, and when.
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
            let deadline = at.checked_add(patience).unwrap_or(now);
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

    /// No chunk given back for the whole patience: the writer is stalled, the caller drops.
    #[test]
    fn a_caller_drops_once_its_patience_passes_without_any_chunk_given_back() {
        let pool = Pool::new(32).unwrap();
        let _held: Vec<Chunk> = (0..pool.total()).map(|_| pool.try_take(0, 1, 1).unwrap()).collect();
        assert!(!pool.wait_for_room(1, Some(Duration::from_millis(50)), &mut None));
        assert!(pool.is_stalled());
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
