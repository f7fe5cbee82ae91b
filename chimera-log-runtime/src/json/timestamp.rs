//! The line's `timestamp`: RFC 3339 UTC with microseconds and `Z`, `2024-01-15T10:30:45.123456Z`.
//!
//! This module formats a given time; it never reads the clock (the caller passes the time).

use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

/// A point in time as a line writes it: whole seconds since the epoch (negative before 1970) and
/// the nanoseconds into that second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnixTime {
    pub(crate) secs: i64,
    pub(crate) nanos: u32,
}

impl UnixTime {
    /// The system's wall clock. On Unix it is read with `clock_gettime` directly rather than
    /// through `SystemTime` and `duration_since` (27 ns instead of 43 ns on the machine of
    /// BENCHMARKS.md): the same clock, without the conversions.
    pub(crate) fn now() -> Self {
        #[cfg(unix)]
        {
            let mut spec = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: `spec` is a valid, writable timespec for the duration of the call, and
            // CLOCK_REALTIME is a clock every Unix has.
            if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut spec) } == 0 {
                if let Ok(nanos @ 0..1_000_000_000) = u32::try_from(spec.tv_nsec) {
                    // `time_t` is 64 bits here, 32 on some targets.
                    #[allow(clippy::useless_conversion)]
                    return UnixTime { secs: i64::from(spec.tv_sec), nanos };
                }
            }
        }
        SystemTime::now().into()
    }

    /// `nanos` nanoseconds after the epoch.
    #[cfg_attr(not(all(target_arch = "x86_64", target_os = "linux")), allow(dead_code))]
    pub(crate) fn from_nanos(nanos: u64) -> Self {
        UnixTime { secs: (nanos / 1_000_000_000) as i64, nanos: (nanos % 1_000_000_000) as u32 }
    }

    /// Nanoseconds since the epoch; `None` before it (or past the year 2554).
    pub(crate) fn nanos_since_epoch(self) -> Option<u64> {
        u64::try_from(self.secs).ok()?.checked_mul(1_000_000_000)?.checked_add(u64::from(self.nanos))
    }

    /// Microseconds since the epoch; 0 before it.
    pub(crate) fn micros(self) -> u64 {
        u64::try_from(self.secs).map_or(0, |secs| secs.saturating_mul(1_000_000) + u64::from(self.nanos / 1_000))
    }
}

impl From<SystemTime> for UnixTime {
    fn from(time: SystemTime) -> Self {
        match time.duration_since(UNIX_EPOCH) {
            Ok(after) => {
                UnixTime { secs: i64::try_from(after.as_secs()).unwrap_or(i64::MAX), nanos: after.subsec_nanos() }
            }
            // Before 1970: floor to the whole second below, keep the fraction positive.
            Err(before) => {
                let before = before.duration();
                let secs = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
                match before.subsec_nanos() {
                    0 => UnixTime { secs: -secs, nanos: 0 },
                    nanos => UnixTime { secs: -secs - 1, nanos: 1_000_000_000 - nanos },
                }
            }
        }
    }
}

/// Appends `time` as RFC 3339 UTC with microseconds and `Z`: `2024-01-15T10:30:45.123456Z`.
///
/// The calendar part changes once a second, so each thread keeps the last one it formatted and
/// only writes the microseconds anew.
pub(crate) fn write_timestamp(buf: &mut Vec<u8>, time: impl Into<UnixTime>) {
    thread_local! {
        static LAST_SECOND: std::cell::Cell<(i64, [u8; 19])> = const { std::cell::Cell::new((i64::MIN, [0; 19])) };
    }
    let UnixTime { secs, nanos } = time.into();
    let cached = LAST_SECOND.try_with(std::cell::Cell::get).ok().filter(|(second, _)| *second == secs);
    match cached {
        Some((_, prefix)) => buf.extend_from_slice(&prefix),
        None => {
            let start = buf.len();
            if !write_calendar_second(buf, secs) {
                // Out of chrono's range (hundreds of thousands of years): the epoch says "clock broken".
                buf.extend_from_slice(b"1970-01-01T00:00:00.000000Z");
                return;
            }
            if let Ok(prefix) = <[u8; 19]>::try_from(&buf[start..]) {
                let _ = LAST_SECOND.try_with(|last| last.set((secs, prefix)));
            }
        }
    }
    buf.extend_from_slice(&fraction(nanos / 1_000));
}

/// `.uuuuuuZ`: the microseconds and the zone, eight bytes made in a register and stored at once,
/// two digits at a time.
#[inline]
fn fraction(micros: u32) -> [u8; 8] {
    let micros = micros as usize;
    let [a, b] = DIGIT_PAIRS[micros / 10_000 % 100];
    let [c, d] = DIGIT_PAIRS[micros / 100 % 100];
    let [e, f] = DIGIT_PAIRS[micros % 100];
    [b'.', a, b, c, d, e, f, b'Z']
}

/// `00` to `99`, indexed by their value.
const DIGIT_PAIRS: [[u8; 2]; 100] = {
    let mut pairs = [[0; 2]; 100];
    let mut n = 0;
    while n < pairs.len() {
        pairs[n] = [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
        n += 1;
    }
    pairs
};

/// Appends `yyyy-mm-ddThh:mm:ss` of the second `secs` after the epoch; `false` if out of range.
fn write_calendar_second(buf: &mut Vec<u8>, secs: i64) -> bool {
    use chrono::{Datelike, Timelike};
    let Some(datetime) = chrono::DateTime::from_timestamp(secs, 0) else {
        return false;
    };
    let date = datetime.date_naive();
    let time = datetime.time();
    let year = date.year();
    if (0..=9999).contains(&year) {
        push_digits(buf, year as u32, 4);
    } else {
        let _ = write!(RawWriter(buf), "{year:+05}");
    }
    buf.push(b'-');
    push_digits(buf, date.month(), 2);
    buf.push(b'-');
    push_digits(buf, date.day(), 2);
    buf.push(b'T');
    push_digits(buf, time.hour(), 2);
    buf.push(b':');
    push_digits(buf, time.minute(), 2);
    buf.push(b':');
    push_digits(buf, time.second(), 2);
    true
}

/// Appends the last `width` (at most 10) decimal digits of `value`, zero-padded. The digits are
/// made on the stack and appended at once (growing `buf` and then filling it cost twice).
fn push_digits(buf: &mut Vec<u8>, mut value: u32, width: usize) {
    let mut digits = [b'0'; 10];
    let digits = &mut digits[..width];
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
    buf.extend_from_slice(digits);
}

struct RawWriter<'a>(&'a mut Vec<u8>);

impl fmt::Write for RawWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn timestamp(time: SystemTime) -> String {
        let mut buf = Vec::new();
        write_timestamp(&mut buf, time);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn timestamp_is_rfc3339_utc_with_microseconds_and_z() {
        let time = UNIX_EPOCH + Duration::new(1_705_314_645, 123_456_789);
        assert_eq!(timestamp(time), "2024-01-15T10:30:45.123456Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn the_system_clock_read_directly_is_the_clock_system_time_reads() {
        let key = |time: UnixTime| (time.secs, time.nanos);
        for _ in 0..1_000 {
            let before = UnixTime::from(SystemTime::now());
            let now = UnixTime::now();
            let after = UnixTime::from(SystemTime::now());
            assert!(key(before) <= key(now) && key(now) <= key(after), "{before:?} {now:?} {after:?}");
        }
        assert_eq!(UnixTime::from(UNIX_EPOCH - Duration::from_secs(5)).micros(), 0);
        assert_eq!(UnixTime::from(UNIX_EPOCH + Duration::new(2, 3_999)).micros(), 2_000_003);
    }

    #[test]
    fn every_microsecond_is_written_as_six_digits() {
        for micros in 0..1_000_000 {
            assert_eq!(fraction(micros), format!(".{micros:06}Z").as_bytes(), "{micros}");
        }
    }

    #[test]
    fn timestamp_before_epoch_keeps_a_positive_fraction() {
        let time = UNIX_EPOCH - Duration::from_micros(1);
        assert_eq!(timestamp(time), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn timestamp_agrees_with_chrono_over_many_dates() {
        // A stride through four centuries, leap days included.
        let mut secs: i64 = -2_208_988_800;
        while secs < 32_503_680_000 {
            let whole = if secs >= 0 {
                UNIX_EPOCH + Duration::from_secs(secs as u64)
            } else {
                UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
            };
            let time = whole + Duration::from_nanos(654_321_000);
            let expected = chrono::DateTime::<chrono::Utc>::from(time).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
            assert_eq!(timestamp(time), expected);
            secs += 7_777_777;
        }
    }
}
