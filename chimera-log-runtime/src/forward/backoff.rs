//! How long a forwarder (CloudWatch, OTLP) waits before sending a failed request again: an exponential backoff
//! whose cap depends on why the request failed, spread by per-process jitter. Pure arithmetic:
//! no waiting, no clock and no I/O here (the forwarder waits, through its `Clock`).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::time::{Duration, SystemTime};

/// The first wait of a batch's retries, and the first after throttling begins.
pub(crate) const BACKOFF_START: Duration = Duration::from_millis(100);
/// Throttling and 5xx are retried at least this often: once an outage ends, delivery resumes
/// within this (jittered) wait, and one request every two seconds per process is nothing to
/// the service's quota (thousands of `PutLogEvents` a second per account).
pub(crate) const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// Missing or refused credentials are retried this often at most: a role attached later still
/// delivers, without hammering the credential chain.
pub(crate) const CREDENTIALS_BACKOFF_CAP: Duration = Duration::from_secs(60);

/// Why a request is sent again, which sets how the waits grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pace {
    /// 5xx, timeouts, connection failures: capped at [`BACKOFF_CAP`].
    Outage,
    /// Throttled: capped at [`BACKOFF_CAP`], and restarted from [`BACKOFF_START`] when it
    /// follows an outage (the service is back; the outage's long wait is not what throttling
    /// asks for).
    Throttled,
    /// Credentials missing or refused: capped at [`CREDENTIALS_BACKOFF_CAP`].
    Credentials,
}

/// The waits between the attempts to send one batch, before jitter: each is twice the one
/// before, up to the cap of the failure's [`Pace`].
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    throttled: bool,
}

impl Backoff {
    /// A batch's first retry waits [`BACKOFF_START`].
    pub(crate) fn new() -> Self {
        Backoff { next: BACKOFF_START, throttled: false }
    }

    /// The wait before sending again after a failure paced by `pace`. The cap applies to the
    /// waits that follow: a wait that grew under the credentials cap is used once more when an
    /// outage follows, and the next is back under the outage's cap.
    pub(crate) fn next_wait(&mut self, pace: Pace) -> Duration {
        let cap = match pace {
            Pace::Credentials => CREDENTIALS_BACKOFF_CAP,
            Pace::Throttled => {
                if !self.throttled {
                    self.next = BACKOFF_START;
                }
                self.throttled = true;
                BACKOFF_CAP
            }
            Pace::Outage => {
                self.throttled = false;
                BACKOFF_CAP
            }
        };
        let wait = self.next;
        self.next = (self.next * 2).min(cap);
        wait
    }
}

/// Spreads waits so that many processes recovering from one outage do not retry in step.
///
/// Seeded once per sink from the standard library's `RandomState` (keyed from the operating
/// system's randomness, and different for each `RandomState` made), hashed with the process id,
/// the thread id and the real time; then a splitmix64 sequence. The seed does not come from the
/// injected `Clock`: a test clock reads the same time in every process, and every process would
/// jitter the same.
#[derive(Debug)]
pub(crate) struct Jitter {
    state: u64,
}

impl Jitter {
    pub(crate) fn new() -> Self {
        Self::seeded_at(SystemTime::now())
    }

    /// Seeded as at the real time `now`; `RandomState` makes two seeds of one moment differ.
    fn seeded_at(now: SystemTime) -> Self {
        let mut hasher = RandomState::new().build_hasher();
        std::process::id().hash(&mut hasher);
        std::thread::current().id().hash(&mut hasher);
        now.hash(&mut hasher);
        Jitter { state: hasher.finish() }
    }

    /// `wait` shortened by a pseudo-random amount: uniform in `[wait / 2, wait)` (to the
    /// nanosecond; a zero wait stays zero). Half the wait is kept so the backoff still grows.
    pub(crate) fn jittered(&mut self, wait: Duration) -> Duration {
        let nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
        let half = nanos / 2;
        let span = nanos - half;
        // Lemire's multiply-shift: a uniform draw in [0, span) without a division.
        let offset = ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as u64;
        Duration::from_nanos(half + offset)
    }

    /// splitmix64 (Steele, Lea and Flood), as `java.util.SplittableRandom` and the seeding of
    /// the xoshiro generators: any state, zero included, gives a full-period sequence.
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waits(backoff: &mut Backoff, pace: Pace, count: usize) -> Vec<Duration> {
        (0..count).map(|_| backoff.next_wait(pace)).collect()
    }

    const fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn an_outage_backoff_doubles_from_100_ms_up_to_2_s() {
        let mut backoff = Backoff::new();
        assert_eq!(waits(&mut backoff, Pace::Outage, 8), [100, 200, 400, 800, 1600, 2000, 2000, 2000].map(ms));
    }

    #[test]
    fn a_credentials_backoff_doubles_up_to_a_minute() {
        let mut backoff = Backoff::new();
        let waits = waits(&mut backoff, Pace::Credentials, 12);
        assert_eq!(waits[..10], [100, 200, 400, 800, 1600, 3200, 6400, 12_800, 25_600, 51_200].map(ms));
        assert_eq!(waits[10..], [ms(60_000); 2]);
    }

    #[test]
    fn throttling_after_an_outage_starts_again_from_100_ms_and_keeps_growing_while_throttled() {
        let mut backoff = Backoff::new();
        waits(&mut backoff, Pace::Outage, 4);
        assert_eq!(waits(&mut backoff, Pace::Throttled, 3), [100, 200, 400].map(ms));
        // An outage in between ends the throttling: the next throttle starts over.
        assert_eq!(backoff.next_wait(Pace::Outage), ms(800));
        assert_eq!(backoff.next_wait(Pace::Throttled), ms(100));
    }

    #[test]
    fn a_wait_grown_under_the_credentials_cap_falls_back_under_the_outage_cap() {
        let mut backoff = Backoff::new();
        waits(&mut backoff, Pace::Credentials, 8);
        assert_eq!(waits(&mut backoff, Pace::Outage, 2), [ms(25_600), ms(2000)]);
    }

    #[test]
    fn jittered_waits_are_within_half_the_wait_and_the_wait() {
        let mut jitter = Jitter::new();
        for wait in [ms(100), ms(2000), ms(60_000), Duration::from_nanos(3), Duration::from_nanos(1)] {
            for _ in 0..10_000 {
                let jittered = jitter.jittered(wait);
                assert!(jittered >= wait / 2 && jittered < wait, "{jittered:?} for {wait:?}");
            }
        }
        assert_eq!(jitter.jittered(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn jittered_waits_spread_over_their_range() {
        let mut jitter = Jitter::new();
        let draws: Vec<Duration> = (0..1000).map(|_| jitter.jittered(ms(2000))).collect();
        assert!(draws.iter().any(|&d| d < ms(1100)), "none in the lowest tenth");
        assert!(draws.iter().any(|&d| d >= ms(1900)), "none in the highest tenth");
    }

    /// The old seed was the injected clock's reading: two sinks on one test clock (which reads
    /// whole seconds, the same in every process) retried in step.
    #[test]
    fn two_jitter_sources_seeded_at_the_same_whole_second_draw_different_waits() {
        let second = SystemTime::UNIX_EPOCH + Duration::from_secs(1_705_314_645);
        let (mut a, mut b) = (Jitter::seeded_at(second), Jitter::seeded_at(second));
        let draws = |jitter: &mut Jitter| (0..8).map(|_| jitter.jittered(ms(2000))).collect::<Vec<_>>();
        assert_ne!(draws(&mut a), draws(&mut b));
    }
}
