//! A cheap histogram of emit latency: log-linear buckets of atomic counters, sampled one event in
//! 64 so that measuring costs the caller almost nothing.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Sub-buckets per power of two: values are kept to within 25%.
const SUB: usize = 4;
const BUCKETS: usize = 64 * SUB;
/// One emit in this many is timed.
pub(crate) const SAMPLE_EVERY: u32 = 64;

#[derive(Debug)]
pub(crate) struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram { buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect() }
    }
}

fn bucket_of(nanos: u64) -> usize {
    if nanos < SUB as u64 {
        return nanos as usize;
    }
    let power = 63 - nanos.leading_zeros() as usize; // nanos in [2^power, 2^(power+1))
    let sub = ((nanos >> (power - 2)) & (SUB as u64 - 1)) as usize;
    (power - 1) * SUB + sub
}

/// The largest value that falls in `bucket`.
fn bucket_upper(bucket: usize) -> u64 {
    if bucket < SUB {
        return bucket as u64;
    }
    let power = bucket / SUB + 1;
    let sub = (bucket % SUB) as u64;
    let low = (1u64 << power) + (sub << (power - 2));
    low + (1u64 << (power - 2)) - 1
}

/// Whether the calling thread's current emit is one of the sampled ones.
#[inline]
pub(crate) fn sample_this_emit() -> bool {
    thread_local! {
        static COUNTER: Cell<u32> = const { Cell::new(0) };
    }
    COUNTER
        .try_with(|counter| {
            let next = counter.get().wrapping_add(1);
            counter.set(next);
            next % SAMPLE_EVERY == 0
        })
        .unwrap_or(false)
}

impl LatencyHistogram {
    pub(crate) fn record(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(nanos).min(BUCKETS - 1)].fetch_add(1, Relaxed);
    }

    /// Each bucket's count now (bucket `i`'s values are at most [`upper_bound(i)`](Self::upper_bound)).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn counts(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.load(Relaxed)).collect()
    }

    /// The largest value bucket `bucket` holds.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn upper_bound(bucket: usize) -> Duration {
        Duration::from_nanos(bucket_upper(bucket))
    }

    /// Forgets every value (a new window).
    pub(crate) fn reset(&self) {
        for bucket in self.buckets.iter() {
            bucket.store(0, Relaxed);
        }
    }

    /// The value at each quantile (bucket upper bound), and the number of samples.
    pub(crate) fn quantiles<const N: usize>(&self, quantiles: [f64; N]) -> ([Duration; N], u64) {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        let mut out = [Duration::ZERO; N];
        if total == 0 {
            return (out, 0);
        }
        for (slot, q) in out.iter_mut().zip(quantiles) {
            let rank = ((total as f64 * q).ceil() as u64).clamp(1, total);
            let mut seen = 0;
            for (bucket, count) in counts.iter().enumerate() {
                seen += count;
                if seen >= rank {
                    *slot = Duration::from_nanos(bucket_upper(bucket));
                    break;
                }
            }
        }
        (out, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_whose_upper_bound_is_within_25_percent() {
        for nanos in (0..10_000).chain([123_456, 9_999_999, u64::MAX / 2]) {
            let upper = bucket_upper(bucket_of(nanos));
            assert!(upper >= nanos, "{nanos} -> {upper}");
            assert!(upper as f64 <= nanos as f64 * 1.25 + 1.0, "{nanos} -> {upper}");
        }
    }

    #[test]
    fn quantiles_come_from_the_recorded_distribution() {
        let histogram = LatencyHistogram::default();
        for _ in 0..990 {
            histogram.record(Duration::from_nanos(100));
        }
        for _ in 0..10 {
            histogram.record(Duration::from_micros(50));
        }
        let ([median, p999], total) = histogram.quantiles([0.5, 0.999]);
        assert_eq!(total, 1000);
        assert!(median >= Duration::from_nanos(100) && median < Duration::from_nanos(125), "{median:?}");
        assert!(p999 >= Duration::from_micros(50) && p999 < Duration::from_nanos(62_500), "{p999:?}");
    }
}
