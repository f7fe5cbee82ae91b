//! The maintenance thread: compression, retention and crash repair of backups, off the logging
//! path. Logging never waits for it; shutdown waits for it only up to a timeout, and whatever it
//! leaves unfinished the next start repairs (`backup::scan_for_repair`).

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::dir::backup::{self, ArchiveMark, Repair, Stamp};
use crate::report::FailureReporter;
use crate::stats::MaintenanceCounters;

/// Work for the maintenance thread, about the backups of one file.
#[derive(Debug)]
pub(crate) enum Job {
    /// Compress a freshly rotated backup.
    Compress { name: String, stamp: Stamp },
    /// Finish what a crash interrupted.
    Repair { name: String, work: Repair },
    /// Keep only the newest `keep` backups, as of `now` (see `backup::list_backups`), and every
    /// backup not yet archived by the audit store (`archived`, when one follows the file).
    Retain { name: String, keep: usize, now: std::time::SystemTime, archived: Option<Arc<ArchiveMark>> },
    /// Finish: the jobs queued before this one are done, later ones are not.
    Stop,
    /// A job with a bug: it panics (for the test of what a panic leaves behind).
    #[cfg(test)]
    Panic,
}

/// Handle to the thread, which runs until it reaches `Job::Stop` in its queue.
#[derive(Debug)]
pub(crate) struct Maintenance {
    sender: Mutex<Option<Sender<Job>>>,
    finished: Arc<(Mutex<bool>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
    pub(crate) counters: Arc<MaintenanceCounters>,
}

impl Maintenance {
    /// Starts the thread, which holds `dir_lock` until it ends (see `thread::DirLock`).
    pub(crate) fn start(dir: PathBuf, dir_lock: crate::thread::DirLock) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel();
        let finished = Arc::new((Mutex::new(false), Condvar::new()));
        let counters = Arc::new(MaintenanceCounters::default());
        let thread = crate::thread::spawn("chimera-log-maintenance", {
            let finished = Arc::clone(&finished);
            let counters = Arc::clone(&counters);
            move || {
                let _dir_lock = dir_lock;
                let _finish = Finish(&finished);
                run(&dir, receiver, &counters);
            }
        })?;
        Ok(Maintenance { sender: Mutex::new(Some(sender)), finished, thread: Mutex::new(Some(thread)), counters })
    }

    /// A sender for a file sink to queue its jobs on.
    pub(crate) fn sender(&self) -> Option<Sender<Job>> {
        self.sender.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Lets the thread finish its queue and waits up to `timeout` for it; `false` if it is still
    /// working (it is then left to run; the next start finishes anything it did not).
    pub(crate) fn shutdown(&self, timeout: Duration) -> bool {
        if let Some(sender) = self.sender.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = sender.send(Job::Stop);
        }
        let (done, signal) = &*self.finished;
        let guard = done.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = signal.wait_timeout_while(guard, timeout, |done| !*done).unwrap_or_else(|e| e.into_inner());
        let finished = *guard;
        drop(guard);
        if finished {
            if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = thread.join();
            }
        }
        finished
    }
}

/// Says the thread is finished when it ends, also by a panic (a bug in a job): shutdown then
/// returns at once rather than waiting its whole timeout for a thread that is gone. The jobs
/// left in the queue are not done; the next start repairs what they would have (compression),
/// and the next rotation applies retention.
struct Finish<'a>(&'a (Mutex<bool>, Condvar));

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        let (done, signal) = self.0;
        *done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        signal.notify_all();
    }
}

impl Drop for Maintenance {
    /// Never shut down (the logger's start failed after this began): stops the thread rather
    /// than leave it running with the directory's lock.
    fn drop(&mut self) {
        if self.sender.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
            self.shutdown(crate::thread::STOP_WHEN_DROPPED);
        }
    }
}

fn run(dir: &std::path::Path, jobs: Receiver<Job>, counters: &MaintenanceCounters) {
    let reporter = FailureReporter::default();
    for job in jobs {
        match job {
            Job::Compress { name, stamp } => match backup::compress(dir, &name, stamp) {
                Ok(()) => {
                    counters.compressed.fetch_add(1, Relaxed);
                }
                Err(error) => {
                    counters.compression_failures.fetch_add(1, Relaxed);
                    reporter.report(&format_args!("compressing a {name} backup (kept uncompressed)"), &error);
                }
            },
            Job::Repair { name, work } => match backup::repair(dir, &name, &work) {
                Ok(compressed) => {
                    counters.compressed.fetch_add(u64::from(compressed), Relaxed);
                }
                Err(error) => {
                    counters.compression_failures.fetch_add(1, Relaxed);
                    reporter.report(&format_args!("repairing a {name} backup (kept as found)"), &error);
                }
            },
            Job::Retain { name, keep, now, archived } => {
                match backup::apply_retention(dir, &name, keep, now, archived.as_deref()) {
                    Ok((removed, kept)) => {
                        counters.removed_backups.fetch_add(removed as u64, Relaxed);
                        // Only the archived (audit) file's count: another file's must not reset it.
                        let before = match archived {
                            Some(_) => counters.kept_for_store.swap(kept as u64, Relaxed),
                            None => u64::MAX,
                        };
                        // Once when the overrun begins, not at every rotation while it lasts.
                        if kept > 0 && before == 0 {
                            diag!(
                                "chimera-log: keeping {kept} {name} backup(s) beyond the {keep} configured: their \
                                 records are not in the audit store or the S3 archive yet (see stats().audit_store, \
                                 stats().archive); retention removes them at the first rotation or start after \
                                 they are"
                            );
                        }
                    }
                    Err(error) => {
                        counters.retention_failures.fetch_add(1, Relaxed);
                        reporter.report(&format_args!("removing old {name} backups"), &error);
                    }
                }
            }
            Job::Stop => return,
            #[cfg(test)]
            Job::Panic => panic!("a maintenance job with a bug (expected by this test)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_does_not_wait_its_timeout_for_a_maintenance_thread_that_panicked() {
        let (dir, dir_lock) = crate::thread::locked_test_dir();
        let maintenance = Maintenance::start(dir.path().to_owned(), Arc::clone(&dir_lock)).unwrap();
        maintenance.sender().unwrap().send(Job::Panic).unwrap();
        // Without the thread saying it finished, this waits the whole timeout and says `false`.
        assert!(maintenance.shutdown(Duration::from_secs(30)), "the thread counts as finished");
        assert!(maintenance.thread.lock().unwrap().is_none(), "joined");
        assert_eq!(Arc::strong_count(&dir_lock), 1, "the thread's share of the directory lock is given up");
    }

    #[test]
    fn maintenance_dropped_without_a_shutdown_stops_its_thread_and_gives_up_the_directory_lock() {
        // As when a logger's start fails after maintenance began.
        let (dir, dir_lock) = crate::thread::locked_test_dir();
        let maintenance = Maintenance::start(dir.path().to_owned(), Arc::clone(&dir_lock)).unwrap();
        assert_eq!(Arc::strong_count(&dir_lock), 2);
        drop(maintenance);
        assert_eq!(Arc::strong_count(&dir_lock), 1, "the thread ended and was joined");
    }
}
