//! Which threads are chimera-log's own: each thread the logger starts (writers, forwarders, the
//! maintenance and stderr threads, the CloudWatch runtime's blocking threads) carries a
//! thread-local mark from its first instruction, and capture leaves out what is logged on a
//! marked thread, so that the logger never feeds on itself (the CloudWatch SDK, hyper and rustls
//! log through `tracing`).
//!
//! The mark is not the thread's name: an application may name its threads as it likes
//! (`chimera-log-worker`), and what they log is captured. This module owns the mark and nothing
//! else; what a thread does is its starter's business.

use std::cell::Cell;
use std::io;
use std::thread::JoinHandle;

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
}
