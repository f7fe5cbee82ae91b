//! Forwarders: outputs that take their lines from a file the logger has written, not from the
//! caller. A forwarder follows the file from a cursor it persists, so the local file is its buffer:
//! an outage or a restart delays lines, it does not lose them (DESIGN §10). CloudWatch and the
//! audit store are forwarders.
//!
//! The pipeline has two kinds of output, and a new one is written as one of them:
//! - a [`Sink`](crate::sink::Sink), handed finished lines by a writer thread (console, files);
//! - a [`Forwarder`], started here and driven through this trait (flush, shutdown, stats).
//!
//! Only [`start`] knows which forwarders exist; the dispatcher drives them all alike.

use std::fmt::Debug;
use std::path::Path;
use std::time::{Duration, Instant};

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::clock::Clock;
use crate::config::LogConfig;
use crate::error::Error;
use crate::sink::backup::ArchiveMark;
use crate::stats::Stats;
use crate::store::{Archiver, ArchiverConfig};

/// An output that follows a file the logger writes and sends its lines elsewhere.
pub(crate) trait Forwarder: Send + Sync + Debug {
    /// Waits until everything the followed file holds now has been sent and acknowledged;
    /// `false` at `deadline`. Called after the file's writer has flushed.
    fn flush(&self, deadline: Instant) -> bool;

    /// Waits until the forwarder has read what the file holds now, sending only what is due.
    fn wait_processed(&self, deadline: Instant) -> bool;

    /// Sends what it can by `deadline`, saves its cursor and stops its thread; `false` if the
    /// thread had not ended by then (the next start sends the rest).
    fn shutdown(&self, deadline: Instant) -> bool;

    /// Puts its counters into `stats`; `audit_seq` is the newest audit record's number (how far
    /// the audit file has got, for a lag).
    fn report(&self, stats: &mut Stats, audit_seq: u64);
}

/// What a forwarder's thread and the application's threads share: requests of type `R` under a
/// lock, and a condition variable signalled whenever either side changes them.
#[derive(Debug, Default)]
pub(crate) struct Control<R> {
    requests: Mutex<R>,
    pub(crate) changed: Condvar,
}

/// The requests every forwarder answers: flushes (counted tickets), a stop, and its end.
pub(crate) trait Requests {
    /// The number of flushes asked for so far.
    fn flushes_asked(&self) -> u64;
    /// The instant to stop by, once asked.
    fn stop(&self) -> Option<Instant>;
    /// Whether the thread has ended (every request is then as answered as it will be).
    fn finished(&self) -> bool;
    /// Records that the thread has ended.
    fn set_finished(&mut self);
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
pub(crate) fn spawn<R: Requests + Send + 'static>(
    name: &str,
    work: impl FnOnce() + Send + 'static,
    control: Arc<Control<R>>,
    dir_lock: Option<super::DirLock>,
) -> Result<std::thread::JoinHandle<()>, Error> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            // Dropped last: a forwarder left running by a shutdown that timed out keeps the
            // directory (its cursor is saved there) until it has finished.
            let _dir_lock = dir_lock;
            super::set_thread_role(super::ThreadRole::Forwarder);
            crate::own_thread::mark();
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

/// Starts the forwarders `config` asks for, following files in `dir`. Call after the files they
/// follow are open: a first start forwards what is written from then on.
/// `archived` is the mark the audit file's retention reads, when the audit store is on.
pub(crate) fn start(
    config: &LogConfig,
    dir: &Path,
    archived: Option<Arc<ArchiveMark>>,
    dir_lock: &super::DirLock,
) -> Result<Vec<Box<dyn Forwarder>>, Error> {
    let mut forwarders: Vec<Box<dyn Forwarder>> = Vec::new();
    if let (Some(target), Some(mark)) = (config.audit_store.resolve(dir), archived) {
        let archiver_config =
            ArchiverConfig { target, stream: crate::store::default_stream(dir), retention: config.audit_retention };
        forwarders.push(Box::new(Archiver::start(
            archiver_config,
            dir,
            Arc::clone(&config.clock),
            mark,
            Arc::clone(dir_lock),
        )?));
    }
    #[cfg(feature = "cloudwatch")]
    if let Some(cloudwatch) = &config.cloudwatch {
        let shipper = crate::sink::cloudwatch::Shipper::start(
            cloudwatch.clone(),
            dir,
            config.clock.clone(),
            Arc::clone(dir_lock),
        )?;
        forwarders.push(Box::new(shipper));
    }
    Ok(forwarders)
}

impl Forwarder for Archiver {
    fn flush(&self, deadline: Instant) -> bool {
        Archiver::flush(self, deadline)
    }

    fn wait_processed(&self, deadline: Instant) -> bool {
        // Nothing is held back for a batch: processed is stored.
        Archiver::flush(self, deadline)
    }

    fn shutdown(&self, deadline: Instant) -> bool {
        Archiver::shutdown(self, deadline)
    }

    fn report(&self, stats: &mut Stats, audit_seq: u64) {
        stats.audit_store = Some(self.counters.snapshot(audit_seq));
    }
}

#[cfg(feature = "cloudwatch")]
impl Forwarder for crate::sink::cloudwatch::Shipper {
    fn flush(&self, deadline: Instant) -> bool {
        crate::sink::cloudwatch::Shipper::flush(self, deadline)
    }

    fn wait_processed(&self, deadline: Instant) -> bool {
        crate::sink::cloudwatch::Shipper::wait_processed(self, deadline)
    }

    fn shutdown(&self, deadline: Instant) -> bool {
        crate::sink::cloudwatch::Shipper::shutdown(self, deadline)
    }

    fn report(&self, stats: &mut Stats, _: u64) {
        stats.cloudwatch = Some(self.counters.snapshot());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::Requests as _;

    /// Requests with nothing but the end.
    #[derive(Debug, Default)]
    struct Ended(bool);

    impl super::Requests for Ended {
        fn flushes_asked(&self) -> u64 {
            0
        }
        fn stop(&self) -> Option<std::time::Instant> {
            None
        }
        fn finished(&self) -> bool {
            self.0
        }
        fn set_finished(&mut self) {
            self.0 = true;
        }
    }

    #[test]
    fn a_forwarder_thread_that_panics_still_says_it_has_finished() {
        let control = Arc::new(super::Control::<Ended>::default());
        let thread = super::spawn(
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
