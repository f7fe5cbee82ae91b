//! The lock of a shard ([`FlagLock`]): one flag, taken with a compare-and-swap and released
//! with a plain store.
//!
//! Why not `std`'s `Mutex`: its unlock is an atomic swap (it must learn whether a waiter sleeps
//! on the lock), and on x86 a swap waits for every store before it to reach the cache: the
//! record the caller has just written into the chunk, memory the writer thread last read on the
//! other core. That wait was 13 ns of a 63 ns emit (50 ns with the flag; BENCHMARKS.md,
//! "Issue 30 on a quiet machine"). Here no one sleeps on the flag: it has two users (the
//! shard's own thread on each line, the writer once per pass; `stats()` now and then), each
//! holding it for at most a few hundred nanoseconds, so a waiter spins briefly, then yields its
//! CPU until the flag is free.
//! A holder descheduled mid-line costs the waiter its yields, never a lost line.
//!
//! Checked with loom: `RUSTFLAGS="--cfg chimera_loom" cargo test -p chimera-log-runtime --lib
//! --no-default-features flag_lock` (run by `scripts/test-all.sh`, the README's test command),
//! in the interleavings of two threads up to three preemptions.

#[cfg(chimera_loom)]
use loom::{cell::UnsafeCell, sync::atomic::AtomicBool, thread::yield_now};
#[cfg(not(chimera_loom))]
use std::{sync::atomic::AtomicBool, thread::yield_now};

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

/// Spins before a waiter starts yielding: the usual holder is done in well under that.
const SPINS: u32 = 64;

/// A value behind a flag; see the module's docs.
#[derive(Default)]
pub(crate) struct FlagLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

impl<T> std::fmt::Debug for FlagLock<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlagLock").field("locked", &self.locked).finish_non_exhaustive()
    }
}

// SAFETY: the value is reached only through `with`, by one thread at a time (the flag), so a
// `FlagLock` shared between threads hands each `&mut T` to one thread at a time, as `Mutex`
// does: `T: Send` is all it needs.
unsafe impl<T: Send> Sync for FlagLock<T> {}

impl<T> FlagLock<T> {
    /// Runs `f` with the value, the flag held; released when `f` returns or unwinds.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        if self.locked.compare_exchange_weak(false, true, Acquire, Relaxed).is_err() {
            self.wait_and_take();
        }
        let _held = Held(&self.locked);
        // SAFETY: the flag is ours (taken above with `Acquire`, after every earlier holder
        // released it with `Release`): no other `&mut` to the value exists until `_held` drops,
        // and everything earlier holders wrote is visible.
        self.value.with_mut(|value| f(unsafe { &mut *value }))
    }

    /// Tries again and again, each time with a compare-and-swap (which reads the flag's latest
    /// value: a plain load may go on reading an old one, as far as the memory model goes, and
    /// loom explores that). Contention here is the writer's pass meeting a line, so nothing is
    /// gained by reading before swapping.
    #[cold]
    fn wait_and_take(&self) {
        let mut spins = 0;
        while self.locked.compare_exchange_weak(false, true, Acquire, Relaxed).is_err() {
            if spins < SPINS && !cfg!(chimera_loom) {
                spins += 1;
                std::hint::spin_loop();
            } else {
                yield_now();
            }
        }
    }
}

/// Releases the flag when dropped.
struct Held<'a>(&'a AtomicBool);

impl Drop for Held<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.store(false, Release);
    }
}

/// `std`'s `UnsafeCell` with loom's way in (`with_mut`), so that the same code runs under both.
#[cfg(not(chimera_loom))]
#[derive(Default)]
struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(chimera_loom))]
impl<T> UnsafeCell<T> {
    #[inline]
    fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(all(test, chimera_loom))]
mod tests {
    use super::FlagLock;
    use loom::sync::Arc;

    /// Every interleaving with up to three preemptions (loom's advice for spinning code: the
    /// unbounded search never ends, each spin being a new branch).
    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(f);
    }

    #[test]
    fn flag_lock_gives_each_thread_the_value_alone_and_every_earlier_write() {
        // Two threads (the shard's and the writer's), each taking the lock twice. (Three
        // spinning threads exceed loom's branch limit whatever the bound.)
        model(|| {
            let lock = Arc::new(FlagLock::<(u64, Vec<u64>)>::default());
            let add = |lock: &FlagLock<(u64, Vec<u64>)>, id: u64| {
                lock.with(|(count, seen)| {
                    // A read-modify-write of plain memory: lost if two ran at once (and loom
                    // reports the racing access itself).
                    let before = *count;
                    seen.push(id);
                    *count = before + 1;
                });
            };
            let other = {
                let lock = Arc::clone(&lock);
                loom::thread::spawn(move || {
                    add(&lock, 1);
                    add(&lock, 1);
                })
            };
            add(&lock, 2);
            lock.with(|(count, seen)| {
                assert_eq!(*count as usize, seen.len(), "whole updates only");
            });
            add(&lock, 2);
            other.join().unwrap();
            lock.with(|(count, seen)| {
                assert_eq!(*count, 4);
                seen.sort_unstable();
                assert_eq!(*seen, [1, 1, 2, 2]);
            });
        });
    }

    #[test]
    fn flag_lock_is_released_when_its_closure_panics() {
        model(|| {
            let lock = Arc::new(FlagLock::<u64>::default());
            let panicking = {
                let lock = Arc::clone(&lock);
                loom::thread::spawn(move || {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        lock.with(|value| {
                            *value += 1;
                            panic!("a bug under the lock (expected by this test)");
                        })
                    }));
                })
            };
            panicking.join().unwrap();
            // Taken again: the flag was released by the unwinding.
            assert_eq!(lock.with(|value| *value), 1);
        });
    }
}
