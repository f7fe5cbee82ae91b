//! The logger's threads: what marks a thread as one of the logger's own, what a thread is to the
//! pipeline (its role, for the panic hook), the directory lock each thread that writes into the
//! log directory holds, and the control a forwarder's thread shares with the application's
//! threads (requests under a lock, tickets, back-off, the stop).
//!
//! The own-thread mark is not the thread's name: an application may name its threads as it
//! likes (`chimera-log-worker`), and what they log is captured. Capture leaves out what is logged
//! on a marked thread, so that the logger never feeds on itself (the CloudWatch SDK, hyper and
//! rustls log through `tracing`). This module knows nothing of lines, files or destinations.

use std::cell::Cell;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::dir::safe_fs;
use crate::error::Error;

thread_local! {
    static OWN: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as one of the logger's own: for threads started by someone else on
/// the logger's behalf (a tokio runtime's `on_thread_start`).
pub(crate) fn mark() {
    OWN.with(|own| own.set(true));
}

/// Whether the current thread is one of the logger's own (a thread-local already destroyed, at
/// the thread's exit, reads as not: an application thread's last words are kept).
#[cfg(any(feature = "tracing", test))]
pub(crate) fn is_own() -> bool {
    OWN.try_with(Cell::get).unwrap_or(false)
}

/// Starts thread `name`, marked as the logger's own before `work` runs (the writers and forwarders,
/// started elsewhere, call [`mark`] first thing).
pub(crate) fn spawn<T: Send + 'static>(
    name: impl Into<String>,
    work: impl FnOnce() -> T + Send + 'static,
) -> io::Result<JoinHandle<T>> {
    std::thread::Builder::new().name(name.into()).spawn(move || {
        mark();
        work()
    })
}

/// The log directory's lock (`safe_fs::lock_dir`), released when its last holder drops it: the
/// instance until `close`, each of its threads that writes into the directory (the files writer,
/// maintenance, the forwarders, which save cursors there) until that thread ends, and an audit
/// write still in progress when `close` gave up on it (see `AuditWriter::keep_until_written`).
/// So a thread left running by a shutdown that timed out (a stalled disk) keeps the directory
/// from a new logger until it has finished, and no longer. The audit file's sink, which the
/// instance owns, writes nothing after `close` or after the write `close` gave up on (it drops
/// what it could not write then, before the lock it may keep is released).
pub(crate) type DirLock = Arc<safe_fs::DirectoryLock>;

/// A directory of its own and its lock, for unit tests of the threads that hold it.
#[cfg(test)]
pub(crate) fn locked_test_dir() -> (tempfile::TempDir, DirLock) {
    let dir = tempfile::tempdir().unwrap();
    let lock = safe_fs::lock_dir(dir.path()).unwrap();
    (dir, Arc::new(lock))
}

/// How long a thread's handle waits for the thread when it is dropped without having been shut
/// down (a start that failed after the thread began): the thread holds the directory's lock,
/// and must not outlive the failed start, or a retry would find the directory in use.
pub(crate) const STOP_WHEN_DROPPED: Duration = Duration::from_secs(5);

/// What the current thread is to the pipeline, for the panic hook: a flush waits for the
/// writers and forwarders, so one of them that panics must not wait for itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ThreadRole {
    /// Any thread of the application (and the maintenance thread).
    Caller,
    /// A writer thread: the only one that drains its queue.
    Writer,
    /// A forwarder (CloudWatch shipper, audit archiver): follows the files, and a flush waits
    /// for it.
    Forwarder,
}

thread_local! {
    static ROLE: std::cell::Cell<ThreadRole> = const { std::cell::Cell::new(ThreadRole::Caller) };
}

/// Marks the current thread, at the start of a pipeline thread.
pub(crate) fn set_thread_role(role: ThreadRole) {
    ROLE.with(|current| current.set(role));
}

/// What the current thread is to the pipeline (a thread-local that is gone counts as a caller).
pub(crate) fn thread_role() -> ThreadRole {
    ROLE.try_with(std::cell::Cell::get).unwrap_or(ThreadRole::Caller)
}

/// `timeout` from now; a timeout too long to add (`Duration::MAX`: "wait as long as it takes")
/// saturates at a century rather than overflow.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);
    let now = Instant::now();
    now.checked_add(timeout).or_else(|| now.checked_add(CENTURY)).unwrap_or(now)
}

/// What a forwarder's thread and the application's threads share: requests of type `R` under a
/// lock, and a condition variable signalled whenever either side changes them.
#[derive(Debug, Default)]
pub(crate) struct Control<R> {
    requests: Mutex<R>,
    pub(crate) changed: Condvar,
}

/// A forwarder thread's life as its requests record it: the stop asked of it, and its end.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Lifecycle {
    /// The instant to stop by, once asked.
    stop: Option<Instant>,
    /// The thread has ended (every request is then as answered as it will be).
    finished: bool,
}

/// The requests every forwarder answers: flushes (counted tickets), a stop, and its end. A
/// forwarder's own requests say how many flushes were asked and hold a [`Lifecycle`]; the rest
/// is the same for all.
pub(crate) trait Requests {
    /// The number of flushes asked for so far.
    fn flushes_asked(&self) -> u64;
    fn lifecycle(&self) -> &Lifecycle;
    fn lifecycle_mut(&mut self) -> &mut Lifecycle;

    /// The instant to stop by, once asked.
    fn stop(&self) -> Option<Instant> {
        self.lifecycle().stop
    }
    /// Whether the thread has ended (every request is then as answered as it will be).
    fn finished(&self) -> bool {
        self.lifecycle().finished
    }
    /// Records that the thread has ended.
    fn set_finished(&mut self) {
        self.lifecycle_mut().finished = true;
    }
    /// Asks the thread to stop by `at`.
    fn set_stop(&mut self, at: Instant) {
        self.lifecycle_mut().stop = Some(at);
    }
}

/// A forwarder's thread as the application's threads hold it: the control it shares with them
/// and its join handle. One type for every forwarder: the same stop, the same join, the same
/// bound when dropped without a shutdown.
#[derive(Debug)]
pub(crate) struct ForwarderThread<R: Requests> {
    pub(crate) control: Arc<Control<R>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl<R: Requests + Send + 'static> ForwarderThread<R> {
    /// Starts thread `name` running `work` (see [`spawn_forwarder`]).
    pub(crate) fn start(
        name: &str,
        work: impl FnOnce() + Send + 'static,
        control: Arc<Control<R>>,
        dir_lock: Option<DirLock>,
    ) -> Result<Self, Error> {
        let thread = spawn_forwarder(name, work, Arc::clone(&control), dir_lock)?;
        Ok(ForwarderThread { control, thread: Mutex::new(Some(thread)) })
    }
}

impl<R: Requests> ForwarderThread<R> {
    /// Asks the thread to send what it can by `deadline` and stop (it gives up a little before:
    /// [`give_up_before`]), and joins it; `false` if it had not ended by then (it is left to end
    /// on its own; the next start sends the rest).
    pub(crate) fn shutdown(&self, deadline: Instant) -> bool {
        let give_up = give_up_before(deadline);
        let finished =
            self.control.ticket(deadline, |requests| requests.set_stop(give_up), |requests, ()| requests.finished());
        if finished {
            if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = thread.join();
            }
        }
        finished
    }
}

impl<R: Requests> Drop for ForwarderThread<R> {
    /// Never shut down (the logger's start failed after the thread began): stops it rather than
    /// leave it running with the directory's lock.
    fn drop(&mut self) {
        if !self.control.stop_asked() {
            self.shutdown(Instant::now() + STOP_WHEN_DROPPED);
        }
    }
}

impl<R: Requests> Control<R> {
    /// Whether the thread was ever asked to stop.
    pub(crate) fn stop_asked(&self) -> bool {
        self.lock().stop().is_some()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, R> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a request (`take` returns its ticket) and waits until `done` says the thread
    /// answered it (`true`), or the thread ended without answering it, or `deadline` (`false`:
    /// an ended thread answers nothing more, and what it had not sent is not sent).
    pub(crate) fn ticket<T>(
        &self,
        deadline: Instant,
        take: impl FnOnce(&mut R) -> T,
        done: impl Fn(&R, &T) -> bool,
    ) -> bool {
        let mut requests = self.lock();
        let ticket = take(&mut requests);
        self.changed.notify_all();
        loop {
            if done(&requests, &ticket) {
                return true;
            }
            if requests.finished() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            requests = self.changed.wait_timeout(requests, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Waits `wait` as `clock` counts time before a retry: the clock says how long that is in
    /// real time ([`Clock::begin_wait`]), and the wait itself stays on the condition variable,
    /// so that a flush or stop asked for meanwhile cuts it short. It never outlasts `give_up`,
    /// which stays on the monotonic `Instant`: it bounds how long an application thread waits
    /// in a flush or shutdown, and must come even when a test clock stands still or the wall
    /// clock jumps.
    pub(crate) fn back_off(&self, clock: &dyn Clock, wait: Duration, give_up: Option<Instant>) {
        let real = clock.begin_wait(wait);
        let real = give_up.map_or(real, |at| real.min(at.saturating_duration_since(Instant::now())));
        let requests = self.lock();
        let before = (requests.stop(), requests.flushes_asked());
        let _ = self
            .changed
            .wait_timeout_while(requests, real, |requests| (requests.stop(), requests.flushes_asked()) == before);
    }
}

/// When a forwarder stopping by `deadline` gives up sending: a little before it (a tenth of the
/// time left, at most 100 ms), so that it has saved its cursor and ended by the deadline itself.
pub(crate) fn give_up_before(deadline: Instant) -> Instant {
    let margin = deadline.saturating_duration_since(Instant::now()).div_f64(10.0).min(Duration::from_millis(100));
    deadline.checked_sub(margin).unwrap_or(deadline)
}

/// Runs its function when dropped.
struct OnDrop<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// Starts a forwarder's thread `name` running `work`; when it ends, `control` records so and
/// tells the threads waiting on it. It holds `dir_lock` until then.
pub(crate) fn spawn_forwarder<R: Requests + Send + 'static>(
    name: &str,
    work: impl FnOnce() + Send + 'static,
    control: Arc<Control<R>>,
    dir_lock: Option<DirLock>,
) -> Result<std::thread::JoinHandle<()>, Error> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            // Dropped last: a forwarder left running by a shutdown that timed out keeps the
            // directory (its cursor is saved there) until it has finished.
            let _dir_lock = dir_lock;
            set_thread_role(ThreadRole::Forwarder);
            mark();
            // Also if `work` panics (a bug): a flush or a shutdown waiting for this forwarder
            // then returns instead of waiting out its timeout.
            let _finished = OnDrop(Some(move || {
                control.lock().set_finished();
                control.changed.notify_all();
            }));
            work();
        })
        .map_err(|source| Error::Thread { source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_the_logger_starts_is_marked_and_one_merely_named_like_it_is_not() {
        assert!(spawn("chimera-log-test", is_own).unwrap().join().unwrap());
        let named = std::thread::Builder::new().name("chimera-log-worker".into()).spawn(is_own).unwrap();
        assert!(!named.join().unwrap());
        assert!(!is_own());
    }

    /// Requests with nothing but the lifecycle.
    #[derive(Debug, Default)]
    struct Ended(Lifecycle);

    impl Requests for Ended {
        fn flushes_asked(&self) -> u64 {
            0
        }
        fn lifecycle(&self) -> &Lifecycle {
            &self.0
        }
        fn lifecycle_mut(&mut self) -> &mut Lifecycle {
            &mut self.0
        }
    }

    #[test]
    fn a_forwarder_thread_that_panics_still_says_it_has_finished() {
        let control = Arc::new(Control::<Ended>::default());
        let thread = spawn_forwarder(
            "test-panicking-forwarder",
            || panic!("a forwarder bug (expected by this test)"),
            Arc::clone(&control),
            None,
        )
        .unwrap();
        assert!(thread.join().is_err(), "the work panicked");
        assert!(control.lock().finished(), "waiters are told it ended, so a flush does not wait out its timeout");
        let asked = std::time::Instant::now();
        let answered = control.ticket(asked + std::time::Duration::from_secs(600), |_| (), |_, ()| false);
        assert!(!answered, "a flush the ended thread never answered is not done");
        assert!(asked.elapsed() < std::time::Duration::from_secs(60), "and says so at once, not at its deadline");
    }
}
