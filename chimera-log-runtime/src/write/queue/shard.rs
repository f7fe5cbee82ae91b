//! A thread's own part of a queue: the chunks it is filling, and those it has filled for the
//! writer. Its lock (a [`FlagLock`]) is taken by its thread on each line and by the writer once
//! per pass, never by another caller, so callers on different threads do not wait for one
//! another, and the lock is almost never contended.
//!
//! Each thread finds its shard of a queue through a thread-local list (a queue id each); a
//! thread that has none yet (its first line into this queue) registers a new one with the
//! queue. A thread that cannot use its thread-locals (it is exiting) uses the queue's shared
//! shard instead.

use std::cell::RefCell;
use std::sync::Arc;

use super::flag_lock::FlagLock;
use super::lanes::LaneSet;
use super::pool::{Chunk, Entry, NoRoom, Pool};

#[derive(Debug, Default)]
pub(crate) struct ShardState {
    /// The chunk being filled, per lane.
    current: Vec<Option<Chunk>>,
    /// Chunks filled, oldest first.
    full: Vec<Chunk>,
    /// The writer has taken its last pass: no more lines.
    pub(crate) closed: bool,
    /// Records taken in place, per tally (the dispatcher's: the event's level), counted here
    /// under the lock the record takes anyway rather than with an atomic add of their own.
    pub(crate) tallies: [u64; TALLIES],
}

/// How many tallies a shard keeps (one per level).
pub(crate) const TALLIES: usize = 6;

#[derive(Debug, Default)]
pub(crate) struct Shard {
    state: FlagLock<ShardState>,
}

impl Shard {
    /// Runs `f` with the shard's state, holding its lock: nothing in `f` may wait for long (the
    /// pool's lock, held briefly by whoever has it, is the one it may take; a caller waiting for
    /// room waits after releasing this one), nor log (it would wait for itself). Nothing under
    /// it panics; were it to, the lock is released and the state is still whole (every change
    /// under it is one assignment).
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut ShardState) -> R) -> R {
        self.state.with(f)
    }
}

impl ShardState {
    /// Makes sure each lane in `lanes` has a chunk with room for `len` more bytes, so that the
    /// line goes to all its lanes or none. A chunk without room goes to the writer's list.
    pub(crate) fn make_room(&mut self, pool: &Pool, lanes: LaneSet, len: usize) -> Result<(), NoRoom> {
        let copies = lanes.0.count_ones() as usize;
        let mut fresh = 0u64;
        for lane in lanes.lanes() {
            if self.current.len() <= lane {
                self.current.resize_with(lane + 1, || None);
            }
            if self.current[lane].as_ref().is_some_and(|chunk| chunk.has_room(len)) {
                continue;
            }
            match pool.try_take(lane, len, copies) {
                Ok(chunk) => {
                    if self.full.capacity() == 0 {
                        // Once, at this shard's first chunk: room for as many full chunks as the
                        // pool has slots, so a writer slow to collect them never makes a
                        // caller allocate.
                        self.full.reserve_exact(pool.total());
                    }
                    fresh |= 1 << lane;
                    if let Some(filled) = self.current[lane].replace(chunk) {
                        self.full.push(filled);
                    }
                }
                Err(no_room) => {
                    // Give back what this line took, so that a caller waiting for room does not
                    // hold part of it.
                    let taken = LaneSet(fresh).lanes().filter_map(|lane| self.current[lane].take());
                    pool.give_back(taken);
                    return Err(no_room);
                }
            }
        }
        Ok(())
    }

    /// Appends `line` to the chunk of its one lane if that has room (the usual line), without
    /// [`make_room`](Self::make_room)'s bookkeeping; `false` when the line needs it.
    #[inline]
    pub(crate) fn append_if_room(&mut self, lanes: LaneSet, line: Entry<'_>) -> bool {
        if !lanes.0.is_power_of_two() {
            return false;
        }
        match self.current.get_mut(lanes.0.trailing_zeros() as usize) {
            Some(Some(chunk)) if chunk.has_room(line.len()) => {
                chunk.append(line);
                true
            }
            _ => false,
        }
    }

    /// [`append_if_room`](Self::append_if_room) for a record written in place: `write` is
    /// called (and `true` returned) only if the lane's chunk has room for `len` bytes.
    #[inline]
    pub(crate) fn append_record_if_room(
        &mut self,
        lane: usize,
        len: usize,
        write: &mut Option<impl FnOnce(&mut Vec<u8>)>,
    ) -> bool {
        match self.current.get_mut(lane) {
            Some(Some(chunk)) if chunk.has_room(len) => {
                if let Some(write) = write.take() {
                    chunk.append_record_with(len, write);
                }
                true
            }
            _ => false,
        }
    }

    /// Appends `line` to each lane in `lanes`, after [`make_room`](Self::make_room).
    pub(crate) fn append(&mut self, lanes: LaneSet, line: Entry<'_>) {
        for lane in lanes.lanes() {
            if let Some(chunk) = &mut self.current[lane] {
                chunk.append(line);
            }
        }
    }

    /// Moves every line of this shard to `into`, each lane's in the order they came; returns
    /// the bytes moved.
    pub(crate) fn take_into(&mut self, into: &mut Vec<Chunk>) -> usize {
        let mut bytes = 0;
        for chunk in self.full.drain(..) {
            bytes += chunk.bytes.len();
            into.push(chunk);
        }
        for slot in &mut self.current {
            if slot.as_ref().is_some_and(|chunk| !chunk.is_empty()) {
                if let Some(chunk) = slot.take() {
                    bytes += chunk.bytes.len();
                    into.push(chunk);
                }
            }
        }
        bytes
    }

    /// Empty chunks this shard still holds, to give back to the pool when it goes away.
    pub(crate) fn take_empty(&mut self, into: &mut Vec<Chunk>) {
        into.extend(self.current.iter_mut().filter_map(Option::take));
    }
}

thread_local! {
    /// This thread's shard of each queue it has written to: (queue id, shard).
    static SHARDS: RefCell<Vec<(u64, Arc<Shard>)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's shard of the queue `id`, registering one with `register` on the
/// first line; `None` when the thread has no usable thread-locals (it is exiting), or `register`
/// refused (the queue is closed).
///
/// Inlined into the emit, the registration kept out of line: called, this and
/// `BatchQueue::push_record_with` cost the emit about 5 ns each (BENCHMARKS.md, "The caller's
/// time, removal by removal").
#[inline]
pub(crate) fn with_own_shard<R>(
    id: u64,
    register: impl FnOnce() -> Option<Arc<Shard>>,
    f: impl FnOnce(&Shard) -> R,
) -> Option<R> {
    SHARDS
        .try_with(|shards| {
            {
                let shards = shards.try_borrow().ok()?;
                if let Some((_, shard)) = shards.iter().find(|(queue, _)| *queue == id) {
                    return Some(f(shard));
                }
            }
            let shard = register_own_shard(shards, id, register)?;
            Some(f(&shard))
        })
        .ok()
        .flatten()
}

/// The thread's first line into the queue `id`: a shard from `register`, kept in its list.
#[cold]
fn register_own_shard(
    shards: &RefCell<Vec<(u64, Arc<Shard>)>>,
    id: u64,
    register: impl FnOnce() -> Option<Arc<Shard>>,
) -> Option<Arc<Shard>> {
    let shard = register()?;
    let mut shards = shards.try_borrow_mut().ok()?;
    // The shards of closed queues are of no more use (the writer has emptied them).
    shards.retain(|(_, shard)| !shard.with(|state| state.closed));
    shards.push((id, Arc::clone(&shard)));
    Some(shard)
}
