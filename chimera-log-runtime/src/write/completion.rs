//! Work handed to a thread of the logger's own, and the caller told when it is done: the
//! [`Emitted`] future `emit_async!` returns (or a blocking wait), and [`AsyncWorker`], a thread
//! that takes jobs in the order they were handed in and finishes them in batches.
//!
//! `emit_async!` hands it the audit records of async callers, so a tokio worker never waits on
//! the audit file's write or sync (`dispatch` decides what a job is and does; this module knows
//! nothing of lines, files or the audit chain).

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::Instant;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Set once by the thread that did the work; awaited by an [`Emitted`] or waited for by a thread.
#[derive(Debug, Default)]
struct Completion {
    state: Mutex<CompletionState>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct CompletionState {
    done: bool,
    waker: Option<Waker>,
}

impl Completion {
    fn complete(&self) {
        let waker = {
            let mut state = lock(&self.state);
            state.done = true;
            state.waker.take()
        };
        self.done.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// What [`emit_async!`](crate::emit_async) returns: a future that resolves once the event is
/// where [`emit!`](crate::emit) would have left it: an audit record in `executions.log` and, by
/// default, synced to disk; any other event queued for its sinks (at once).
///
/// The event is handed in when `emit_async!` is called, not when the future is first polled: a
/// future dropped unawaited loses nothing, it only leaves the caller not knowing when the record
/// became durable.
#[must_use = "the event is emitted already; `.await` this to know its audit record is durable"]
#[derive(Debug)]
pub struct Emitted {
    completion: Option<Arc<Completion>>,
}

impl Emitted {
    /// Resolved already: nothing to wait for.
    pub(crate) fn ready() -> Self {
        Emitted { completion: None }
    }

    /// Blocks the calling thread until resolved.
    pub(crate) fn wait(self) {
        if let Some(completion) = self.completion {
            let state = lock(&completion.state);
            drop(completion.done.wait_while(state, |state| !state.done).unwrap_or_else(|e| e.into_inner()));
        }
    }
}

impl Future for Emitted {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(completion) = &self.completion else {
            return Poll::Ready(());
        };
        let mut state = lock(&completion.state);
        if state.done {
            return Poll::Ready(());
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

thread_local! {
    /// The last job this thread handed to a worker: the worker's key and the job's ticket.
    static LAST_HANDED: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// A thread that does jobs of type `T` in the order they were handed in, a batch at a time:
/// everything waiting when it looks. Each job's [`Emitted`] resolves once its batch is done.
#[derive(Debug)]
pub(crate) struct AsyncWorker<T> {
    /// Tells this worker's jobs from another's in a thread's [`LAST_HANDED`].
    key: u64,
    state: Mutex<WorkerState<T>>,
    /// Jobs arrived, or the stop.
    arrived: Condvar,
    /// The thread ended.
    ended: Condvar,
    /// The ticket of the last job done.
    done_through: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
struct WorkerState<T> {
    jobs: Vec<(T, Arc<Completion>)>,
    /// The ticket of the last job handed in.
    last_ticket: u64,
    stopping: bool,
    ended: bool,
}

impl<T: Send + 'static> AsyncWorker<T> {
    /// Starts the thread `name`; `process` does a batch of jobs (in the order handed in) and
    /// returns when they are done. `key` must be unique among workers (a logger's id).
    pub(crate) fn start(
        name: &str,
        key: u64,
        mut process: impl FnMut(Vec<T>) + Send + 'static,
    ) -> io::Result<Arc<Self>> {
        let worker = Arc::new(AsyncWorker {
            key,
            state: Mutex::new(WorkerState { jobs: Vec::new(), last_ticket: 0, stopping: false, ended: false }),
            arrived: Condvar::new(),
            ended: Condvar::new(),
            done_through: AtomicU64::new(0),
            thread: Mutex::new(None),
        });
        let thread = crate::thread::spawn(name, {
            let worker = Arc::clone(&worker);
            move || worker.run(&mut process)
        })?;
        *lock(&worker.thread) = Some(thread);
        Ok(worker)
    }

    fn run(&self, process: &mut impl FnMut(Vec<T>)) {
        loop {
            let (batch, last_ticket) = {
                let state = lock(&self.state);
                let mut state = self
                    .arrived
                    .wait_while(state, |state| state.jobs.is_empty() && !state.stopping)
                    .unwrap_or_else(|e| e.into_inner());
                if state.jobs.is_empty() {
                    state.ended = true;
                    self.ended.notify_all();
                    return;
                }
                (std::mem::take(&mut state.jobs), state.last_ticket)
            };
            let (jobs, completions): (Vec<T>, Vec<Arc<Completion>>) = batch.into_iter().unzip();
            // A panic in the work (a bug in a sink, reported by the panic hook) must not leave
            // the callers waiting for ever: they are told, and the thread goes on.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| process(jobs)));
            self.done_through.store(last_ticket, Ordering::Release);
            for completion in completions {
                completion.complete();
            }
        }
    }

    /// Hands `job` in; `Err(job)` once the worker is stopping.
    pub(crate) fn push(&self, job: T) -> Result<Emitted, T> {
        let completion = Arc::new(Completion::default());
        let mut state = lock(&self.state);
        if state.stopping {
            return Err(job);
        }
        state.last_ticket += 1;
        let ticket = state.last_ticket;
        state.jobs.push((job, Arc::clone(&completion)));
        drop(state);
        self.arrived.notify_one();
        LAST_HANDED.with(|last| last.set((self.key, ticket)));
        Ok(Emitted { completion: Some(completion) })
    }

    /// Whether a job this thread handed in is not done yet.
    pub(crate) fn pending_from_this_thread(&self) -> bool {
        let (key, ticket) = LAST_HANDED.with(Cell::get);
        key == self.key && ticket > self.done_through.load(Ordering::Acquire)
    }

    /// Takes no more jobs, does those handed in, and ends the thread; `false` if that did not
    /// happen by `deadline` (the thread is left to finish).
    pub(crate) fn shutdown(&self, deadline: Instant) -> bool {
        let mut state = lock(&self.state);
        state.stopping = true;
        self.arrived.notify_all();
        while !state.ended {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self.ended.wait_timeout(state, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        drop(state);
        if let Some(thread) = lock(&self.thread).take() {
            let _ = thread.join();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A waker that counts its wakes.
    struct CountingWaker(AtomicU64);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn jobs_are_done_in_the_order_handed_in_and_each_future_resolves_after_its_batch() {
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Mutex::new(released);
        let done = Arc::new(Mutex::new(Vec::new()));
        let worker = AsyncWorker::start("test-worker", 1, {
            let done = Arc::clone(&done);
            move |jobs: Vec<u32>| {
                released.lock().unwrap().recv().unwrap();
                done.lock().unwrap().extend(jobs);
            }
        })
        .unwrap();
        let waker = Arc::new(CountingWaker(AtomicU64::new(0)));
        let task_waker = Waker::from(Arc::clone(&waker));
        let mut cx = Context::from_waker(&task_waker);
        let mut futures: Vec<Emitted> = (0..10).map(|job| worker.push(job).unwrap()).collect();
        assert!(worker.pending_from_this_thread());
        for future in &mut futures {
            assert!(Pin::new(future).poll(&mut cx).is_pending(), "not done before the work is");
        }
        release.send(()).unwrap();
        release.send(()).unwrap(); // a second batch, if the first took fewer than ten
        let first = futures.remove(0);
        first.wait();
        for future in futures {
            future.wait();
        }
        assert!(!worker.pending_from_this_thread());
        assert_eq!(*done.lock().unwrap(), (0..10).collect::<Vec<_>>());
        assert!(waker.0.load(Ordering::Relaxed) >= 1, "the pending task was woken");
        drop(release);
        assert!(worker.shutdown(Instant::now() + std::time::Duration::from_secs(30)));
        assert!(worker.push(11).is_err(), "stopped: refused");
    }
}
