//! Where the logger reads the time, and how long its waits take: injected, so tests of
//! timestamps, rotation, batching and retry backoff control time instead of sleeping.

use std::fmt::Debug;
use std::time::{Duration, SystemTime};

/// A source of wall-clock time for timestamps, and the pace of the logger's waits.
pub trait Clock: Send + Sync + Debug {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// Called when the logger begins a wait of `wait` by this clock (the CloudWatch sink's
    /// backoff before sending a failed request again); returns how long the wait lasts in real
    /// time. The default is `wait` itself. A test clock may advance its own time by `wait` and
    /// return zero, so that retries run without sleeping.
    ///
    /// This does not block: the caller blocks for the answer on its own condition variable, so
    /// a flush or shutdown still cuts the wait short, and never past a flush or shutdown
    /// deadline (those bound, in real time, how long the application's thread is kept).
    fn begin_wait(&self, wait: Duration) -> Duration {
        wait
    }
}

/// The system's wall clock; the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}
