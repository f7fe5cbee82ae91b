//! The wall clock for timestamps, read from the CPU's time-stamp counter between readings of
//! the system clock.
//!
//! `clock_gettime` costs ~27 ns on the machine of BENCHMARKS.md, a sixth of an emit; the
//! counter (`rdtsc`) about half that. Each thread keeps an anchor, a reading of both clocks
//! taken together, and the rate between them measured over the last interval; a timestamp is the
//! anchor's time plus the ticks since, at that rate. Every [`WINDOW_NANOS`] the thread reads the
//! system clock again: the rate follows the system clock's own (NTP slews it), a step of the
//! system clock is seen within a millisecond, and the error in between stays about a
//! microsecond, the timestamp's resolution (a rate measured over at least half a millisecond,
//! from readings each bracketed within [`MAX_READ_TICKS`], is off by at most ~0.1%).
//!
//! Used only where the kernel itself reads time from the counter (its clocksource is `tsc`, so
//! it found the counter invariant and synchronised across CPUs); anywhere else, and until a
//! thread has measured the rate twice and found it agree (its first millisecond or so),
//! timestamps come from `clock_gettime`.

// Elsewhere only `now` (the system clock) is used.
#![cfg_attr(not(all(target_arch = "x86_64", target_os = "linux")), allow(dead_code))]

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
use std::cell::Cell;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
use std::sync::atomic::{AtomicU8, Ordering};

use crate::json::UnixTime;

/// How long an anchor serves, in system-clock nanoseconds.
const WINDOW_NANOS: u64 = 1_000_000;
/// A rate that moved by more than this fraction from one window to the next means the system
/// clock was stepped (or the counter misbehaved): the thread measures the rate again.
const RATE_TOLERANCE: u64 = 200; // 1/200
/// A reading of the system clock is an anchor only if the counter moved at most this much
/// across it (`clock_gettime` takes ~100 ticks): a thread interrupted in between would pair a
/// counter value with a later time, and extrapolate from the wrong point for a whole window.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
const MAX_READ_TICKS: u64 = 1_000;

/// Both clocks read together, and what a tick is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Anchor {
    ticks: u64,
    /// The system clock's time at `ticks`, as seconds and nanoseconds, so that a reading adds
    /// to it rather than divides.
    time: UnixTime,
    /// Nanoseconds per tick, as a 32.32 fixed-point number; 0 while not yet measured. A rate
    /// measured once is served (`window` > 0) only once a second measurement agrees with it.
    rate: u64,
    /// Ticks after `ticks` this anchor serves (the window, at `rate`): 0 while it serves none.
    /// Under [`WINDOW_NANOS`] at `rate`, so a reading adds less than that to `nanos`.
    window: u64,
}

impl Anchor {
    const UNMEASURED: Anchor = Anchor { ticks: 0, time: UnixTime { secs: 0, nanos: 0 }, rate: 0, window: 0 };

    /// The anchor of `ticks` read at `nanos`, system-clock nanoseconds since the epoch.
    fn new(ticks: u64, nanos: u64, rate: u64, window: u64) -> Anchor {
        Anchor { ticks, time: UnixTime::from_nanos(nanos), rate, window }
    }

    /// System-clock nanoseconds since the epoch at `ticks` (`time` was made from a `u64` of
    /// them, so they fit one).
    fn nanos(self) -> u64 {
        self.time.nanos_since_epoch().unwrap_or(0)
    }

    /// The time at `ticks` in nanoseconds since the epoch, if this anchor serves it.
    #[cfg(test)]
    fn read(self, ticks: u64) -> Option<u64> {
        self.read_time(ticks)?.nanos_since_epoch()
    }

    /// The time at `ticks`, if this anchor serves it: the anchor's time plus the ticks since, at
    /// its rate. The seconds carry at most once (the window is under a second), so no division.
    #[inline]
    pub(crate) fn read_time(self, ticks: u64) -> Option<UnixTime> {
        // A counter behind the anchor wraps to far past the window.
        let since = ticks.wrapping_sub(self.ticks);
        if since >= self.window {
            return None;
        }
        // Under `WINDOW_NANOS` (see `window`): fits, with the anchor's nanoseconds, in a `u32`.
        let elapsed = ((u128::from(since) * u128::from(self.rate)) >> 32) as u32;
        let (secs, nanos) = (self.time.secs, self.time.nanos + elapsed);
        Some(if nanos >= 1_000_000_000 {
            UnixTime { secs: secs + 1, nanos: nanos - 1_000_000_000 }
        } else {
            UnixTime { secs, nanos }
        })
    }

    /// The anchor after reading the system clock (`nanos`) at `ticks`: the rate measured since
    /// this anchor when that is at least a window ago and agrees with the last one; otherwise
    /// this anchor is kept (too soon to measure) or measuring starts over from here.
    pub(crate) fn next(self, ticks: u64, nanos: u64) -> Anchor {
        let restart = Anchor::new(ticks, nanos, 0, 0);
        let (Some(elapsed_ticks), Some(elapsed_nanos)) =
            (ticks.checked_sub(self.ticks), nanos.checked_sub(self.nanos()))
        else {
            // The system clock stepped back, or the counter did: measure again.
            return restart;
        };
        if self.nanos() == 0 || elapsed_ticks == 0 {
            return restart;
        }
        if elapsed_nanos < WINDOW_NANOS / 2 {
            // Not long enough to measure a rate precisely: keep the start.
            return Anchor { window: 0, ..self };
        }
        let rate = u64::try_from((u128::from(elapsed_nanos) << 32) / u128::from(elapsed_ticks)).unwrap_or(0);
        if rate == 0 {
            return restart;
        }
        if self.rate != 0 && rate.abs_diff(self.rate) > self.rate / RATE_TOLERANCE {
            // A step (or a stall of the counter): not a rate to extrapolate with.
            return restart;
        }
        if self.rate == 0 {
            // A first rate has nothing to agree with: a step of the system clock while it was
            // measured (a thread asleep across it) would go unseen, and a rate too low would
            // make a window last far longer than a millisecond. Kept, not served, until the
            // next window's rate agrees with it.
            return Anchor::new(ticks, nanos, rate, 0);
        }
        let window = u64::try_from((u128::from(WINDOW_NANOS) << 32) / u128::from(rate)).unwrap_or(u64::MAX);
        Anchor::new(ticks, nanos, rate, window)
    }
}

/// Asks, once per process, whether the counter may be used (a read of `/sys`), so that the
/// first emit does not pay for it.
pub(crate) fn prepare() {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    counter_is_the_kernels_clock();
}

/// Readings served from an anchor, for the tests to see that the counter was used.
#[cfg(test)]
static SERVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The time now, for a line's timestamp.
///
/// Inlined with the counter's path (a load, `rdtsc`, a thread-local read, a multiply, an add); the
/// rest, re-anchoring once a millisecond, is out of line. Called, it saved and restored six
/// registers per emit (BENCHMARKS.md, "Where the caller's time goes").
#[inline]
pub(crate) fn now() -> UnixTime {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    if counter_is_the_kernels_clock() {
        return from_counter();
    }
    UnixTime::now()
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
thread_local! {
    static ANCHOR: Cell<Anchor> = const { Cell::new(Anchor::UNMEASURED) };
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[inline]
fn from_counter() -> UnixTime {
    // SAFETY: `rdtsc` reads the time-stamp counter; it has no preconditions on x86_64, and
    // only runs where the kernel's clocksource is `tsc`, so the counter is there and usable.
    let ticks = unsafe { std::arch::x86_64::_rdtsc() };
    match ANCHOR.try_with(|anchor| anchor.get().read_time(ticks)) {
        Ok(Some(time)) => {
            #[cfg(test)]
            SERVED.fetch_add(1, Ordering::Relaxed);
            time
        }
        _ => from_system_clock(ticks),
    }
}

/// Outside the anchor's window (or not measured yet, or no thread-locals left): the system
/// clock, which also re-anchors the thread.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[cold]
fn from_system_clock(ticks: u64) -> UnixTime {
    let served = ANCHOR.try_with(|anchor| {
        let now = UnixTime::now();
        // SAFETY: as in `from_counter`.
        let after = unsafe { std::arch::x86_64::_rdtsc() };
        let across = after.wrapping_sub(ticks);
        if across <= MAX_READ_TICKS {
            anchor.set(anchor.get().next(ticks + across / 2, now.nanos_since_epoch()?));
        }
        Some(now)
    });
    served.ok().flatten().unwrap_or_else(UnixTime::now)
}

/// Whether the kernel reads time from the counter (asked once per process).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[inline]
fn counter_is_the_kernels_clock() -> bool {
    match COUNTER_IS_THE_KERNELS_CLOCK.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => ask_the_kernel(),
    }
}

/// 0: not asked yet, 1: yes, 2: no.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
static COUNTER_IS_THE_KERNELS_CLOCK: AtomicU8 = AtomicU8::new(0);

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[cold]
fn ask_the_kernel() -> bool {
    let source = std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource");
    let yes = source.is_ok_and(|source| source.trim() == "tsc");
    COUNTER_IS_THE_KERNELS_CLOCK.store(if yes { 1 } else { 2 }, Ordering::Relaxed);
    yes
}

#[cfg(test)]
mod tests {
    use super::*;

    const GHZ3: u64 = 3; // ticks per nanosecond in these tests

    fn measured() -> Anchor {
        let start = Anchor::UNMEASURED.next(1_000, 1_700_000_000_000_000_000);
        assert_eq!(start.rate, 0, "one reading measures nothing");
        let first = start.next(1_000 + 2_000_000 * GHZ3, 1_700_000_000_002_000_000);
        assert_ne!(first.rate, 0, "two readings a window apart measure the rate");
        assert_eq!(first.read(first.ticks), None, "a rate measured once is not served");
        let anchor = first.next(first.ticks + 1_000_000 * GHZ3, first.nanos() + 1_000_000);
        assert_eq!(anchor.rate, first.rate, "a second measurement that agrees confirms it");
        anchor
    }

    #[test]
    fn a_measured_anchor_extrapolates_within_its_window_only() {
        let anchor = measured();
        let at = |ns: u64| anchor.ticks + ns * GHZ3;
        assert_eq!(anchor.read(at(0)), Some(anchor.nanos()));
        let later = anchor.read(at(500_000)).unwrap();
        assert!(later.abs_diff(anchor.nanos() + 500_000) <= 1, "{later}");
        assert_eq!(anchor.read(at(WINDOW_NANOS)), None, "past the window: read the system clock");
        assert_eq!(anchor.read(anchor.ticks - 1), None, "a counter behind the anchor");
        assert_eq!(Anchor::UNMEASURED.read(5), None);
    }

    #[test]
    fn a_reading_across_a_second_carries_as_dividing_the_nanoseconds_would() {
        // An anchor 0.4 ms before a whole second, at 3 ticks per ns: its window crosses it.
        let rate = (1u64 << 32) / GHZ3;
        let window = u64::try_from((u128::from(WINDOW_NANOS) << 32) / u128::from(rate)).unwrap();
        let anchor = Anchor::new(5_000, 1_700_000_000_999_600_000, rate, window);
        let mut crossed = false;
        for since in (0..window).step_by(997).chain([window - 1]) {
            let exact = anchor.nanos() + ((u128::from(since) * u128::from(rate)) >> 32) as u64;
            let time = anchor.read_time(anchor.ticks + since).unwrap();
            assert_eq!(time, UnixTime::from_nanos(exact), "{since} ticks after the anchor");
            assert!(time.nanos < 1_000_000_000);
            crossed |= time.secs > anchor.time.secs;
        }
        assert!(crossed, "the readings reached the next second");
        assert_eq!(anchor.read_time(anchor.ticks + window), None, "past the window");
        assert_eq!(anchor.read_time(anchor.ticks - 1), None, "a counter behind the anchor");
    }

    #[test]
    fn a_step_of_the_system_clock_or_a_counter_going_back_starts_measuring_again() {
        let anchor = measured();
        let ticks = anchor.ticks + WINDOW_NANOS * GHZ3;
        // In step: a new anchor with the same rate.
        let next = anchor.next(ticks, anchor.nanos() + WINDOW_NANOS);
        assert_eq!((next.ticks, next.rate), (ticks, anchor.rate));
        // Stepped forward an hour: not a rate.
        assert_eq!(anchor.next(ticks, anchor.nanos() + 3_600_000_000_000).rate, 0);
        // Stepped back: not a rate.
        assert_eq!(anchor.next(ticks, anchor.nanos() - 1).rate, 0);
        // The counter went back (another CPU's, unsynchronised): not a rate.
        assert_eq!(anchor.next(anchor.ticks - 10, anchor.nanos() + WINDOW_NANOS).rate, 0);
    }

    #[test]
    fn a_step_back_while_a_thread_measures_its_first_rate_never_makes_timestamps_lag_the_system_clock() {
        // A thread's first reading, then it sleeps 10 s while the system clock is stepped back
        // by all but half a millisecond of that: its next reading is 0.5 ms of system time for
        // 10 s of ticks. Were that taken as the rate, a window would last 20 s of real time,
        // timestamps advancing 1 ms over it.
        let start = Anchor::UNMEASURED.next(1_000, 1_700_000_000_000_000_000);
        let woke_ticks = 1_000 + 10_000_000_000 * GHZ3;
        let woke_nanos = 1_700_000_000_000_500_000;
        let anchor = start.next(woke_ticks, woke_nanos);
        // 50 ms later the system clock says woke_nanos + 50 ms.
        let later = woke_ticks + 50_000_000 * GHZ3;
        if let Some(nanos) = anchor.read(later) {
            let lag = (woke_nanos + 50_000_000).abs_diff(nanos);
            assert!(lag <= 1_000_000, "a timestamp {lag} ns from the system clock");
        }
    }

    #[test]
    fn timestamps_stay_within_microseconds_of_the_system_clock() {
        // Reads for ~30 ms, across many windows, each fast reading between two system-clock
        // readings taken around it (give or take the extrapolation's error).
        let until = UnixTime::now().nanos_since_epoch().unwrap() + 30_000_000;
        let mut worst = 0;
        let mut reads = 0;
        loop {
            let before = UnixTime::now().nanos_since_epoch().unwrap();
            let fast = now().nanos_since_epoch().unwrap();
            let after = UnixTime::now().nanos_since_epoch().unwrap();
            let off = if fast < before { before - fast } else { fast.saturating_sub(after) };
            worst = worst.max(off);
            reads += 1;
            if after > until {
                break;
            }
        }
        assert!(reads > 1_000);
        assert!(worst <= 20_000, "a timestamp {worst} ns outside the system clock's readings around it");
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        if counter_is_the_kernels_clock() {
            // Other tests' threads count too; this thread alone read `reads` times.
            assert!(SERVED.load(Ordering::Relaxed) >= reads / 2, "the counter served most readings");
        }
    }
}
