//! Where the logger reads the time: injected, so tests of timestamps, rotation and batching
//! control time instead of sleeping.

use std::fmt::Debug;
use std::time::SystemTime;

/// A source of wall-clock time for timestamps.
pub trait Clock: Send + Sync + Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock; the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}
