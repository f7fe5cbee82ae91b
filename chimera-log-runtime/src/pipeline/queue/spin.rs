//! The lock of a thread's shard: a flag taken with one atomic swap and released with a plain
//! store.
//!
//! A shard is locked by its own thread for each line and by the writer once per pass, so the
//! lock is almost never contended, and what it costs uncontended is what matters. `std`'s `Mutex`
//! releases with an atomic swap (it must learn whether a waiter is parked); on x86 that swap
//! waits for the line just copied to leave the store buffer, and it was the single most costly
//! instruction of an emit (BENCHMARKS.md). Here nobody parks: the rare contender spins briefly,
//! then yields its time slice, so release is a `Release` store, which waits for nothing.
//!
//! Nothing waits under this lock for long: the pool's lock, held briefly, is the only lock taken
//! inside it, and a caller waiting for room waits after releasing it. So a contender waits for
//! a few dozen instructions, or for a holder the scheduler preempted, which `yield_now` lets run.
//!
//! Tested by stress (more threads than cores taking turns; the queue's and the burst tests push
//! millions of lines through it). Miri needs a nightly toolchain, which these machines cannot
//! fetch; loom 0.7.3 could not model a spinning acquire (its search exceeds its branch limit
//! even for a two-thread lock written as in its own examples), so neither checks it here.

use std::fmt;

use std::cell::UnsafeCell;
use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::yield_now;

/// Spins this many times before yielding: long enough for a holder that is running, short
/// enough not to burn a time slice on one that is not.
const SPINS: u32 = 64;

/// A value reached only while holding the lock, through [`with`](SpinLock::with).
pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only ever reached inside `with`, by the one thread that set `locked`
// (see `with`), so sharing the lock between threads shares the value with one thread at a
// time; moving values of `T` between threads that way needs `T: Send`, nothing more.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T: Default> Default for SpinLock<T> {
    fn default() -> Self {
        SpinLock::new(T::default())
    }
}

impl<T> fmt::Debug for SpinLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpinLock").finish_non_exhaustive()
    }
}

/// Clears the flag when the access ends, also if `f` panicked (nothing under this lock
/// panics; a lock left set would make the writer spin forever).
struct Unlock<'a>(&'a AtomicBool);

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        // Release: everything written under the lock is seen by whoever takes it next.
        self.0.store(false, Ordering::Release);
    }
}

impl<T> SpinLock<T> {
    pub(crate) fn new(value: T) -> Self {
        SpinLock { locked: AtomicBool::new(false), value: UnsafeCell::new(value) }
    }

    /// Runs `f` with the value, holding the lock.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // Acquire: everything written under the lock by its last holder is seen here.
        if self.locked.swap(true, Ordering::Acquire) {
            self.lock_contended();
        }
        let _unlock = Unlock(&self.locked);
        // SAFETY: this thread set `locked` (above or in `lock_contended`), and no other thread
        // can until `_unlock` clears it after `f` returns; so this is the only reference to the
        // value while it lives, and `f` cannot keep it (the borrow ends with the call).
        f(unsafe { &mut *self.value.get() })
    }

    #[cold]
    fn lock_contended(&self) {
        let mut spins = 0;
        loop {
            // Looks without writing until the flag is clear, then tries to take it.
            if !self.locked.load(Ordering::Relaxed) && !self.locked.swap(true, Ordering::Acquire) {
                return;
            }
            if spins < SPINS {
                spins += 1;
                spin_loop();
            } else {
                yield_now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_taking_turns_under_the_lock_lose_no_update() {
        let counter = SpinLock::new(0u64);
        // More threads than the machine's cores: holders get preempted, contenders must yield.
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..100_000 {
                        // A read and a write apart: without the lock, increments get lost.
                        counter.with(|n| *n = std::hint::black_box(*n) + 1);
                    }
                });
            }
        });
        assert_eq!(counter.with(|n| *n), 800_000);
    }

    #[test]
    fn a_panic_under_the_lock_releases_it() {
        let lock = SpinLock::new(1);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lock.with(|_| panic!("inside"))));
        assert!(caught.is_err());
        assert_eq!(lock.with(|n| *n), 1, "taken again, not spinning forever");
    }
}
