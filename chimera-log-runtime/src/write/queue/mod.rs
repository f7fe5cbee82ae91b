//! The bounded queue between callers and one writer thread.
//!
//! Each thread appends its encoded lines to its own shard (`shard.rs`): a `memcpy` into a chunk
//! under a lock only the writer ever shares (`flag_lock.rs`), so callers on different threads never wait for
//! each other. Chunks come from a fixed pool (`pool.rs`) whose size is the queue's capacity in
//! bytes. The writer takes every shard's lines in one pass, writes them without holding any
//! lock a caller needs, and gives the chunks back.
//!
//! Order: the lines of one thread reach a file in the order they were queued; lines of
//! different threads queued within one writer pass (about a millisecond under load) may appear
//! in either order (each line carries its timestamp).
//!
//! A line that finds no room waits for it, up to the queue's bound, or is dropped, counted per
//! lane and reported later by the writer. The writer is not woken per line: while lines keep
//! coming it looks again on its own, and only once idle does it ask the next line to wake it.

mod batch;
mod flag_lock;
mod lanes;
mod pool;
mod shard;

pub(crate) use batch::BatchQueue;
pub(crate) use lanes::{LaneSet, Pushed};
pub(crate) use pool::{Chunk, Entry};
pub(crate) use shard::TALLIES;
