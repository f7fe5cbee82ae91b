//! Where an emit's time goes, stage by stage: a maintainer's tool, compiled only with
//! `RUSTFLAGS="--cfg chimera_probe"` (without it [`probe!`] expands to nothing).
//!
//! Each stage boundary of the in-place record path (`Logger::emit_record`,
//! `BatchQueue::push_record_into`, `Chunk::append_record_with`) stores the time-stamp counter in
//! a slot of the calling thread's own; [`take`] returns the slots of the thread's last emit and
//! clears them. `examples/stages.rs` prints the medians of each stage for fast and slow emits
//! (BENCHMARKS.md, "Where the caller's time goes"). Each mark costs one `rdtsc`, ~22 ticks
//! here, which the figures include.

use std::cell::Cell;

/// A boundary between two stages of an emit, or a fact about it.
#[derive(Debug, Clone, Copy)]
pub enum Mark {
    /// `emit_record` entered.
    Start = 0,
    /// Its destinations and module level decided.
    Routed,
    /// The timestamp read.
    Timed,
    /// About to take the shard's lock.
    Locking,
    /// The shard's lock held.
    Locked,
    /// The chunk found with room (a pool visit, if any, done).
    Found,
    /// The record written into the chunk, its length noted.
    Written,
    /// The shard's lock released.
    Released,
    /// `after_emit` done: the emit returns.
    Done,
    /// Set (to 1) when the emit took a chunk from the pool.
    PoolVisit,
    /// Set (to 1) when the record was its chunk's first.
    FirstInChunk,
    /// The record's offset in its chunk.
    Offset,
}

/// How many slots a thread keeps.
pub const MARKS: usize = Mark::Offset as usize + 1;

thread_local! {
    static SLOTS: [Cell<u64>; MARKS] = const { [const { Cell::new(0) }; MARKS] };
}

/// Stores the counter's value now at `mark`.
#[inline(always)]
pub fn mark(mark: Mark) {
    // SAFETY: `rdtsc` has no preconditions; every x86_64 CPU has it.
    #[cfg(target_arch = "x86_64")]
    let now = unsafe { core::arch::x86_64::_rdtsc() };
    #[cfg(not(target_arch = "x86_64"))]
    let now = 0;
    set(mark, now);
}

/// Stores `value` at `mark`.
#[inline(always)]
pub fn set(mark: Mark, value: u64) {
    let _ = SLOTS.try_with(|slots| slots[mark as usize].set(value));
}

/// The slots of this thread's last emit (0: not reached), cleared.
pub fn take() -> [u64; MARKS] {
    SLOTS.with(|slots| std::array::from_fn(|i| slots[i].replace(0)))
}
