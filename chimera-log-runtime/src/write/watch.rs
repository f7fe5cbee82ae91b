//! The files' writer watching its own health (issue 29): how long lines wait between the caller
//! and the file (the write latency, enqueue → handed to the file), and the log directory's free
//! space. Every interval it closes a window of latency figures, and when the window's p99 passed
//! its threshold (the design's 10 ms) or the free space is below its threshold, the writer says
//! so in `chimera.log` (`log_write_slow`, `log_disk_low`, WARNING).
//!
//! Measuring costs the caller one clock read per chunk (its first line), not per line: the
//! writer takes the chunk's age when it has handed it to the file, so a figure is the oldest
//! line's wait in that chunk.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::latency::LatencyHistogram;

/// What the files' writer watches, and when it warns.
#[derive(Debug, Clone)]
pub(crate) struct WatchConfig {
    /// A window whose p99 is above this is reported (`log_write_slow`).
    pub(crate) slow: Duration,
    /// How long a window lasts; the free space is read as often.
    pub(crate) every: Duration,
    /// The log directory, whose file system's free space is read.
    pub(crate) dir: PathBuf,
    /// Free bytes below this are reported (`log_disk_low`).
    pub(crate) disk_low: u64,
}

/// The figures the writer publishes for `stats()`.
#[derive(Debug)]
pub(crate) struct WatchFigures {
    /// Every write-latency figure since start.
    pub(crate) latency: LatencyHistogram,
    /// The last closed window's median, p99 and maximum, in nanoseconds, and its figures.
    pub(crate) window_median_ns: AtomicU64,
    pub(crate) window_p99_ns: AtomicU64,
    pub(crate) window_max_ns: AtomicU64,
    pub(crate) window_samples: AtomicU64,
    /// The directory's free bytes at the last reading (`u64::MAX`: not read yet, or unreadable).
    pub(crate) disk_free: AtomicU64,
    /// Windows reported slow, and low-space readings reported.
    pub(crate) slow_warnings: AtomicU64,
    pub(crate) disk_low_warnings: AtomicU64,
}

impl Default for WatchFigures {
    fn default() -> Self {
        WatchFigures {
            latency: LatencyHistogram::default(),
            window_median_ns: AtomicU64::new(0),
            window_p99_ns: AtomicU64::new(0),
            window_max_ns: AtomicU64::new(0),
            window_samples: AtomicU64::new(0),
            disk_free: AtomicU64::new(u64::MAX),
            slow_warnings: AtomicU64::new(0),
            disk_low_warnings: AtomicU64::new(0),
        }
    }
}

/// A warning the writer writes into `chimera.log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Warning {
    /// A window's p99 passed the threshold.
    Slow { median: Duration, p99: Duration, max: Duration, samples: u64, threshold: Duration },
    /// The directory's file system has less free space than the threshold.
    DiskLow { free: u64, threshold: u64 },
}

/// The writer's side: the open window and when it closes.
#[derive(Debug)]
pub(crate) struct Watch {
    config: WatchConfig,
    figures: Arc<WatchFigures>,
    window: LatencyHistogram,
    window_max: Duration,
    /// `None`: an interval too long to end (`Duration::MAX` turns the warnings off).
    closes_at: Option<Instant>,
}

impl Watch {
    pub(crate) fn new(config: WatchConfig, figures: Arc<WatchFigures>) -> Self {
        let closes_at = Instant::now().checked_add(config.every);
        let watch =
            Watch { config, figures, window: LatencyHistogram::default(), window_max: Duration::ZERO, closes_at };
        // A first reading at start, so `stats()` shows the free space at once.
        watch.figures.disk_free.store(free_bytes(&watch.config.dir).unwrap_or(u64::MAX), Relaxed);
        watch
    }

    /// A chunk whose first line was queued at `first_at` has been handed to the file.
    pub(crate) fn written(&mut self, first_at: Instant) {
        let waited = first_at.elapsed();
        self.figures.latency.record(waited);
        self.window.record(waited);
        self.window_max = self.window_max.max(waited);
    }

    /// Closes the window if it is due: publishes its figures, reads the free space, and returns
    /// what to warn about.
    pub(crate) fn check(&mut self, now: Instant) -> Vec<Warning> {
        let mut warnings = Vec::new();
        if self.closes_at.is_none_or(|closes_at| now < closes_at) {
            return warnings;
        }
        self.closes_at = now.checked_add(self.config.every);
        let ([median, p99], samples) = self.window.quantiles([0.5, 0.99]);
        // A quantile is its bucket's upper bound (within 25%); the maximum is exact and bounds it.
        let (median, p99) = (median.min(self.window_max), p99.min(self.window_max));
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.figures.window_median_ns.store(nanos(median), Relaxed);
        self.figures.window_p99_ns.store(nanos(p99), Relaxed);
        self.figures.window_max_ns.store(nanos(self.window_max), Relaxed);
        self.figures.window_samples.store(samples, Relaxed);
        if samples > 0 && p99 > self.config.slow {
            self.figures.slow_warnings.fetch_add(1, Relaxed);
            warnings.push(Warning::Slow { median, p99, max: self.window_max, samples, threshold: self.config.slow });
        }
        self.window.reset();
        self.window_max = Duration::ZERO;
        match free_bytes(&self.config.dir) {
            Some(free) => {
                self.figures.disk_free.store(free, Relaxed);
                if free < self.config.disk_low {
                    self.figures.disk_low_warnings.fetch_add(1, Relaxed);
                    warnings.push(Warning::DiskLow { free, threshold: self.config.disk_low });
                }
            }
            None => self.figures.disk_free.store(u64::MAX, Relaxed),
        }
        warnings
    }
}

/// The bytes an unprivileged process may still write on `dir`'s file system.
#[cfg(unix)]
pub(crate) fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string that lives across the call, and `stat` points to
    // memory for one `statvfs`, which the call fills when it returns 0 (read only then).
    let done = unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) };
    if done != 0 {
        return None;
    }
    // SAFETY: `statvfs` returned 0, so it wrote the whole struct.
    let stat = unsafe { stat.assume_init() };
    // `fsblkcnt_t` and `c_ulong` are 32 bits on some targets.
    #[allow(clippy::useless_conversion)]
    let (available, block) = (u64::from(stat.f_bavail), u64::from(stat.f_frsize));
    Some(available.saturating_mul(block))
}

#[cfg(not(unix))]
pub(crate) fn free_bytes(_dir: &std::path::Path) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(slow: Duration, disk_low: u64) -> Watch {
        let dir = std::env::temp_dir();
        Watch::new(WatchConfig { slow, every: Duration::ZERO, dir, disk_low }, Arc::default())
    }

    #[test]
    fn a_window_whose_p99_is_above_the_threshold_is_reported_once_and_then_reset() {
        let mut watch = watch(Duration::from_millis(10), 0);
        let now = Instant::now();
        for _ in 0..99 {
            watch.written(now);
        }
        watch.written(now - Duration::from_millis(50));
        // One slow chunk in a hundred is the p99 and above the threshold: reported.
        watch.written(now - Duration::from_millis(60));
        let warnings = watch.check(Instant::now());
        assert!(matches!(warnings.as_slice(), [Warning::Slow { samples: 101, .. }]), "{warnings:?}");
        assert!(watch.figures.window_max_ns.load(Relaxed) >= 60_000_000);
        assert_eq!(watch.figures.slow_warnings.load(Relaxed), 1);
        // The next window has nothing slow in it.
        watch.written(Instant::now());
        assert_eq!(watch.check(Instant::now()), []);
        assert_eq!(watch.figures.window_samples.load(Relaxed), 1);
    }

    #[test]
    fn an_interval_too_long_to_end_never_closes_a_window_and_does_not_overflow() {
        let mut watch = Watch::new(
            WatchConfig { slow: Duration::ZERO, every: Duration::MAX, dir: std::env::temp_dir(), disk_low: u64::MAX },
            Arc::default(),
        );
        watch.written(Instant::now() - Duration::from_secs(1));
        assert_eq!(watch.check(Instant::now()), []);
        assert_eq!(watch.figures.window_samples.load(Relaxed), 0);
    }

    #[test]
    fn a_window_of_fast_writes_is_not_reported() {
        let mut watch = watch(Duration::from_millis(10), 0);
        for _ in 0..1_000 {
            watch.written(Instant::now());
        }
        assert_eq!(watch.check(Instant::now()), []);
        assert_eq!(watch.figures.window_samples.load(Relaxed), 1_000);
    }

    #[test]
    fn free_space_below_the_threshold_is_reported_and_above_it_is_not() {
        let free = free_bytes(&std::env::temp_dir()).expect("the temporary directory's file system is readable");
        assert!(free > 0);
        assert_eq!(watch(Duration::MAX, 0).check(Instant::now()), []);
        let warnings = watch(Duration::MAX, u64::MAX).check(Instant::now());
        assert!(matches!(warnings.as_slice(), [Warning::DiskLow { threshold: u64::MAX, .. }]), "{warnings:?}");
    }

    #[test]
    fn the_free_space_of_a_directory_that_is_gone_is_unknown_not_zero() {
        assert_eq!(free_bytes(std::path::Path::new("/nonexistent/chimera-log")), None);
        let mut watch = Watch::new(
            WatchConfig {
                slow: Duration::MAX,
                every: Duration::ZERO,
                dir: "/nonexistent/x".into(),
                disk_low: u64::MAX,
            },
            Arc::default(),
        );
        assert_eq!(watch.check(Instant::now()), [], "unknown space is not low space");
        assert_eq!(watch.figures.disk_free.load(Relaxed), u64::MAX);
    }
}
