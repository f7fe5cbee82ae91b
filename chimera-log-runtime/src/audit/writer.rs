//! The audit writer: `executions.log` written through on the caller's thread, so an audit event
//! is in the file when `emit!` returns, then made durable with group commit: one caller syncs
//! for everyone whose line was written before its sync began.
//!
//! The audit file never drops a line for lack of queue space: there is no queue; the caller
//! waits for its write (and sync). Only a disk that stays broken past the file sink's retry
//! buffer can make it drop, counted in `dropped` (see `sink/file.rs`), or a shutdown that came
//! while an emit waited for a stalled write ahead of it (refused; `dropped` when another sink
//! took the event); no `log_events_dropped` line is written into the audit file, whose every
//! line is a sealed record.

use std::fs::File;
use std::io;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::audit::{seal, ChainHead, ChainKey};
use crate::config::AuditDurability;
use crate::file::rotating::FileSink;
use crate::report::FailureReporter;
use crate::sink::Sink;
use crate::stats::SinkCounters;

thread_local! {
    /// This thread holds an audit writer's lock: what runs meanwhile on it (the panic hook, when
    /// the sink panics under the lock) must not take the lock again.
    static HOLDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The audit writer's state, locked; the thread is marked as holding it until the guard drops
/// (at the end of the access, or while unwinding after the panic hook has run).
struct Locked<'a>(MutexGuard<'a, Guarded>, &'a AuditWriter);

impl Deref for Locked<'_> {
    type Target = Guarded;
    fn deref(&self) -> &Guarded {
        &self.0
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Guarded {
        &mut self.0
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let mut panic = None;
        let sink_panicked = std::mem::take(&mut self.0.sink_panicked);
        if self.1.closed.load(Ordering::Acquire) {
            // Closed: whatever the sink still holds (a write that failed) is written now or
            // dropped, before the gate (and with it, maybe, the directory's lock) is given up:
            // nothing of this logger may reach the file once another logger can own it. No
            // new attempt after the sink panicked in this write or flush (it would fail the
            // same way); an attempt that panics drops what is held, and its panic goes on once
            // the gate is left (unless the thread is unwinding already).
            let guarded = &mut *self.0;
            if sink_panicked {
                guarded.sink.close(false);
            } else if let Err(payload) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| guarded.sink.close(true)))
            {
                guarded.sink.close(false);
                panic = Some(payload);
            }
        }
        HOLDING.with(|holding| holding.set(false));
        // The next holder may find the state's own lock still held for the few instructions
        // until this guard's fields drop; it waits for them, not for a write.
        self.1.gate.leave();
        // After leaving (see `keep_until_written`): once closed, whoever held the gate last has
        // ended the write a shutdown gave up on, if there was one.
        if self.1.closed.load(Ordering::Acquire) {
            drop(self.1.kept_lock.lock().unwrap_or_else(|e| e.into_inner()).take());
        }
        // Not while unwinding already (a panic out of a destructor then aborts): the hook has
        // reported it.
        if let (Some(payload), false) = (panic, std::thread::panicking()) {
            std::panic::resume_unwind(payload);
        }
    }
}

/// Who may take the audit writer's state: one thread at a time, as with a `Mutex`, except that a
/// thread can give up waiting at a deadline. An audit emit waits as long as the write ahead of
/// it takes (its line must be in the file when it returns), but a flush or a shutdown behind a
/// write stalled on a dead disk must end within its timeout.
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<GateState>,
    left: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    taken: bool,
    /// Threads waiting to enter: only then does leaving signal (a signal is a system call).
    waiting: usize,
}

impl Gate {
    /// Takes the gate, waiting until `deadline` (`None`: as long as it takes); `false` if the
    /// deadline came first.
    fn enter(&self, deadline: Option<Instant>) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.waiting += 1;
        let entered = loop {
            if !state.taken {
                state.taken = true;
                break true;
            }
            state = match deadline {
                None => self.left.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break false;
                    }
                    self.left.wait_timeout(state, deadline - now).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        };
        state.waiting -= 1;
        entered
    }

    fn leave(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.taken = false;
        let waiting = state.waiting > 0;
        drop(state);
        if waiting {
            self.left.notify_one();
        }
    }
}

#[derive(Debug)]
struct Guarded {
    sink: FileSink,
    /// Lines written so far; a sync that starts after line `n` was written covers it.
    written: u64,
    /// The sink panicked in the write under way (a bug): the guard must not try it again.
    sink_panicked: bool,
    /// The audit chain's head: the last record written.
    head: ChainHead,
    /// The line being sealed, reused.
    sealed: Vec<u8>,
    /// When the chain head was last recorded in the general log.
    last_checkpoint: SystemTime,
}

/// A chain head to record in the general log (`audit_checkpoint`), outside the audit file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub(crate) head: ChainHead,
    /// Why: a rotation of the audit file, or the interval.
    pub(crate) rotated: bool,
}

#[derive(Debug)]
pub(crate) struct AuditWriter {
    /// Taken before `inner`, which is then held by nobody else but for the few instructions
    /// after a holder has left the gate (see [`Locked`]).
    gate: Gate,
    inner: Mutex<Guarded>,
    /// No more lines (shutdown); set before the close waits for the gate.
    closed: AtomicBool,
    /// The chain head's `seq`, readable without waiting for a write (`stats()`).
    head_seq: AtomicU64,
    /// The log directory's lock, kept after a close that gave up until the write it gave up
    /// on has ended (`keep_until_written`).
    kept_lock: Mutex<Option<crate::thread::DirLock>>,
    commit: GroupCommit,
    durability: AuditDurability,
    key: ChainKey,
    checkpoint_interval: Duration,
    pub(crate) counters: Arc<SinkCounters>,
    failures: FailureReporter,
}

impl AuditWriter {
    pub(crate) fn new(
        sink: FileSink,
        durability: AuditDurability,
        counters: Arc<SinkCounters>,
        chain: (ChainHead, ChainKey, Duration),
        now: SystemTime,
    ) -> Self {
        let (head, key, checkpoint_interval) = chain;
        AuditWriter {
            gate: Gate::default(),
            head_seq: AtomicU64::new(head.seq),
            closed: AtomicBool::new(false),
            kept_lock: Mutex::new(None),
            inner: Mutex::new(Guarded {
                sink,
                written: 0,
                sink_panicked: false,
                head,
                sealed: Vec::with_capacity(1024),
                last_checkpoint: now,
            }),
            commit: GroupCommit::default(),
            durability,
            key,
            checkpoint_interval,
            counters,
            failures: FailureReporter::default(),
        }
    }

    /// The state, waiting as long as it takes.
    fn lock(&self) -> Locked<'_> {
        self.gate.enter(None);
        self.locked()
    }

    /// The state, or `None` at `deadline`.
    fn lock_until(&self, deadline: Instant) -> Option<Locked<'_>> {
        self.gate.enter(Some(deadline)).then(|| self.locked())
    }

    /// The state once the gate is taken.
    fn locked(&self) -> Locked<'_> {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        HOLDING.with(|holding| holding.set(true));
        Locked(guard, self)
    }

    fn report(&self, error: &io::Error) {
        self.counters.write_errors.fetch_add(1, Relaxed);
        self.failures.report(&format_args!("writing to {}", crate::dir::layout::AUDIT_FILE), error);
    }

    /// Seals `line` into the next audit record, writes it through (and syncs it, by default).
    /// `Err(())` if the writer is closed; `Ok(Some(_))` when the chain head is due to be recorded
    /// in the general log (the file rotated, or the checkpoint interval passed).
    pub(crate) fn write(&self, line: &[u8], now: SystemTime) -> Result<Option<Checkpoint>, ()> {
        let (written, checkpoint) = self.write_unsynced(line, now)?;
        self.make_durable(written);
        Ok(checkpoint)
    }

    /// [`write`](Self::write) without the sync: the record is in the file; it is durable once
    /// [`make_durable`](Self::make_durable) is called with the returned number (or a later one).
    pub(crate) fn write_unsynced(&self, line: &[u8], now: SystemTime) -> Result<(u64, Option<Checkpoint>), ()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(());
        }
        let (seq, checkpoint) = {
            let mut inner = self.lock();
            let inner = &mut *inner;
            // Again: the close may have come while this waited behind another write.
            if self.closed.load(Ordering::Acquire) {
                return Err(());
            }
            seal(line, &mut inner.head, &self.key, &mut inner.sealed);
            self.head_seq.store(inner.head.seq, Relaxed);
            let rotations = self.counters.rotations.load(Relaxed);
            // A record the sink took counts as written (a fault only delays it, or shutdown
            // drops it and takes the count back); one it dropped (its retry buffer full on a
            // failing disk) is counted there as dropped. A panic in the sink (a bug) leaves the
            // record pending there, to go out with the next write: it is counted before the
            // panic goes on to the caller. Its bytes count before the sink sees it: the sink
            // takes back those of a record it drops.
            self.counters.bytes.fetch_add(inner.sealed.len() as u64, Relaxed);
            let taken = inner.sink.take_record(&inner.sealed, inner.head);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.sink.write_taken()));
            // Earlier records the sink dropped meanwhile (the rest of a torn one whose file was
            // replaced) were counted as written when taken: they leave `lines`.
            let earlier = inner.sink.take_dropped() - u64::from(!taken);
            self.counters.lines.fetch_add(u64::from(taken), Relaxed);
            self.counters.lines.fetch_sub(earlier, Relaxed);
            inner.written += 1;
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(error)) => self.report(&error),
                Err(panic) => {
                    inner.sink_panicked = true;
                    std::panic::resume_unwind(panic)
                }
            }
            let rotated = self.counters.rotations.load(Relaxed) != rotations;
            let interval = now.duration_since(inner.last_checkpoint).unwrap_or_default() >= self.checkpoint_interval;
            let checkpoint = (rotated || interval).then(|| {
                inner.last_checkpoint = now;
                // The last record in the file: this one may still be pending (a fault), and
                // be dropped at shutdown, so its head is not one to vouch for.
                Checkpoint { head: inner.sink.written_head().unwrap_or(inner.head), rotated }
            });
            (inner.written, checkpoint)
        };
        Ok((seq, checkpoint))
    }

    /// With `AuditDurability::Sync`, returns once every record up to the `written`-th is synced
    /// (group commit: one sync covers every record written before it began).
    pub(crate) fn make_durable(&self, written: u64) {
        if self.durability == AuditDurability::Sync {
            let synced = self.commit.wait_synced(written, || {
                let (target, file, faults) = {
                    let inner = self.lock();
                    (inner.written, inner.sink.current_file(), inner.sink.faults())
                };
                if let Some(faults) = faults {
                    faults.syncing(crate::dir::layout::AUDIT_FILE);
                }
                (target, file.map_or(Ok(()), |file: Arc<File>| file.sync_data()))
            });
            if let Err(error) = synced {
                self.report(&error);
            }
        }
    }

    /// Writes out anything a fault held back (a fault still there is reported and counted as
    /// ever); `false` if a write ahead of it (stalled) keeps it waiting until `deadline`, if this
    /// thread is inside a write itself, or once the writer is closed.
    pub(crate) fn flush(&self, deadline: Instant) -> bool {
        if self.closed.load(Ordering::Acquire) {
            // Its sink wrote or dropped its last lines as it closed.
            return false;
        }
        if HOLDING.with(std::cell::Cell::get) {
            // This thread is inside a write (the panic hook, for a panic in the sink): the lock
            // is its own, and taking it again would never return.
            return false;
        }
        let Some(mut inner) = self.lock_until(deadline) else {
            return false;
        };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.sink.flush())) {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                // Records a fault holds back for a retry are not written yet.
                self.report(&error);
                false
            }
            Err(panic) => {
                // As in `write`: the guard must not try the sink again.
                inner.sink_panicked = true;
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// Stops accepting lines, and makes a last attempt at anything a fault held back: what still
    /// cannot be written is dropped and counted, so that nothing of this writer reaches the file
    /// afterwards (see `Locked`). `false` if a stalled write kept it waiting until `deadline`:
    /// that write, when it ends, does the same.
    pub(crate) fn close(&self, deadline: Instant) -> bool {
        self.closed.store(true, Ordering::Release);
        if HOLDING.with(std::cell::Cell::get) {
            // This thread is inside a write (see `flush`); that write's guard closes the sink.
            return false;
        }
        // Entering and leaving closes the sink (see `Locked`).
        self.lock_until(deadline).is_some()
    }

    /// After a `close` that gave up on a stalled write: keeps `lock` (the log directory's) until
    /// that write has ended and the sink has written or dropped what it held, so that no new
    /// logger starts on the directory while the record it sealed may still land (it would fork
    /// the chain of the new logger's records). Released by the next holder of the gate to leave
    /// it, which is that write or comes after it; stored before looking, and looked at by a
    /// leaving holder after it left, so that one of the two releases it.
    pub(crate) fn keep_until_written(&self, lock: crate::thread::DirLock) {
        *self.kept_lock.lock().unwrap_or_else(|e| e.into_inner()) = Some(lock);
        // Free already (the write ended meanwhile): entering and leaving releases it now.
        drop(self.lock_until(Instant::now()));
    }

    /// The `seq` of the newest record sealed.
    pub(crate) fn head_seq(&self) -> u64 {
        self.head_seq.load(Relaxed)
    }

    pub(crate) fn syncs(&self) -> u64 {
        self.commit.syncs.load(Relaxed)
    }
}

/// Group commit: callers wait until their line is synced; whoever finds no sync running starts
/// one covering every line written so far, and the others wait for it.
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    state: Mutex<CommitState>,
    done: Condvar,
    pub(crate) syncs: AtomicU64,
}

#[derive(Debug, Default)]
struct CommitState {
    synced: u64,
    syncing: bool,
}

impl GroupCommit {
    /// Returns once line `seq` is covered by a sync. `sync` captures the latest written line
    /// number, syncs, and returns both; it runs on one caller at a time.
    pub(crate) fn wait_synced(&self, seq: u64, sync: impl Fn() -> (u64, io::Result<()>)) -> io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if state.synced >= seq {
                return Ok(());
            }
            if !state.syncing {
                state.syncing = true;
                drop(state);
                let led = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&sync));
                state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                state.syncing = false;
                let (target, result) = match led {
                    Ok(led) => led,
                    Err(panic) => {
                        // Another waiter leads the next sync; none waits for this one for ever.
                        self.done.notify_all();
                        drop(state);
                        std::panic::resume_unwind(panic)
                    }
                };
                self.syncs.fetch_add(1, Relaxed);
                // A failed sync is reported by its leader; the lines are written, and waiting
                // for a sync that cannot succeed would block every emitter.
                state.synced = state.synced.max(target);
                self.done.notify_all();
                result?;
                continue;
            }
            state = self.done.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn a_sync_that_panics_leaves_the_next_waiter_to_lead_not_to_wait_for_ever() {
        let commit = Arc::new(GroupCommit::default());
        let (leading, led) = mpsc::channel();
        let (go, went) = mpsc::channel::<()>();
        let (returned, waited) = mpsc::channel();
        let leader = std::thread::spawn({
            let commit = Arc::clone(&commit);
            move || {
                commit.wait_synced(1, || {
                    leading.send(()).unwrap();
                    went.recv().unwrap();
                    panic!("a sync that panics (expected by this test)");
                })
            }
        });
        led.recv().unwrap();
        // Not joined: without the fix it would wait for ever, and the test must fail, not hang.
        std::thread::spawn({
            let commit = Arc::clone(&commit);
            move || {
                let result = commit.wait_synced(2, || (2, Ok(())));
                returned.send(result.is_ok()).unwrap();
            }
        });
        go.send(()).unwrap();
        assert!(leader.join().is_err(), "the leader's panic goes on to its caller");
        let follower = waited.recv_timeout(Duration::from_secs(30));
        assert_eq!(follower, Ok(true), "the waiter led its own sync and returned");
    }

    #[test]
    fn the_gate_admits_one_thread_at_a_time_and_a_timed_wait_gives_up_at_its_deadline() {
        let gate = Gate::default();
        assert!(gate.enter(None));
        let started = Instant::now();
        assert!(!gate.enter(Some(started + Duration::from_millis(50))), "held: the timed wait gives up");
        assert!(started.elapsed() >= Duration::from_millis(50), "not before its deadline");
        gate.leave();
        assert!(gate.enter(Some(Instant::now())), "free: entered even at a deadline already passed");
        gate.leave();

        // Threads taking turns, some with deadlines that pass while they wait: a count kept
        // under the gate (a read and a write apart) loses no update, and nobody waits for ever.
        let count = std::sync::atomic::AtomicU64::new(0);
        let given_up = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|scope| {
            for thread in 0..6u64 {
                let (gate, count, given_up) = (&gate, &count, &given_up);
                scope.spawn(move || {
                    for round in 0..2_000u64 {
                        let deadline = (thread % 2 == 0).then(|| Instant::now() + Duration::from_micros(round % 50));
                        if !gate.enter(deadline) {
                            given_up.fetch_add(1, Relaxed);
                            continue;
                        }
                        let seen = count.load(Relaxed);
                        std::hint::black_box(seen);
                        count.store(seen + 1, Relaxed);
                        gate.leave();
                    }
                });
            }
        });
        assert_eq!(count.load(Relaxed) + given_up.load(Relaxed), 12_000);
    }

    #[test]
    fn callers_arriving_during_a_sync_share_the_next_one() {
        let commit = Arc::new(GroupCommit::default());
        let written = Arc::new(AtomicU64::new(1));
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let sync = {
            let written = written.clone();
            move || {
                let target = written.load(Relaxed);
                if target == 1 {
                    // The first sync blocks until the test has queued more writers behind it.
                    started_tx.send(()).unwrap();
                    release_rx.lock().unwrap().recv().unwrap();
                }
                (target, Ok(()))
            }
        };
        std::thread::scope(|scope| {
            let first = scope.spawn(|| commit.wait_synced(1, &sync));
            started_rx.recv().unwrap();
            // Lines 2..=9 are written while sync #1 runs.
            written.store(9, Relaxed);
            let waiters: Vec<_> = (2..=9)
                .map(|seq| {
                    scope.spawn({
                        let commit = &commit;
                        let sync = &sync;
                        move || commit.wait_synced(seq, sync)
                    })
                })
                .collect();
            // However the waiters interleave with the release, sync #2 reads line 9 as written.
            release_tx.send(()).unwrap();
            first.join().unwrap().unwrap();
            for waiter in waiters {
                waiter.join().unwrap().unwrap();
            }
        });
        assert_eq!(commit.syncs.load(Relaxed), 2, "eight writers behind one sync share the next");
    }
}
