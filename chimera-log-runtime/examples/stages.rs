//! Where the caller's time goes: the latency bench's spaced emits (the 7-field event, 2 us
//! apart, 1,000,000 of them), each emit's stage boundaries read from `probe`.
//!
//! `RUSTFLAGS="--cfg chimera_probe" CARGO_TARGET_DIR=target/probe cargo run --release -p
//! chimera-log-runtime --example stages`
//!
//! Prints, in counter ticks (the machine's rate is in `/proc/cpuinfo` or `dmesg | grep tsc`),
//! each stage's median over the fast half of the emits and over those slower than 500 ns, by
//! what the slow ones had in common. Every mark costs one `rdtsc`, which each stage includes.

#[cfg(not(chimera_probe))]
fn main() {
    eprintln!("stages: build with RUSTFLAGS=\"--cfg chimera_probe\" (see this example's docs)");
    std::process::exit(2);
}

#[cfg(chimera_probe)]
fn main() {
    probed::run();
}

/// The emit bench's event, the same definition.
#[cfg(chimera_probe)]
#[path = "../benches/common/divergence.rs"]
mod divergence;

#[cfg(chimera_probe)]
mod probed {
    use std::time::{Duration, Instant};

    use chimera_log_runtime::probe::{self, Mark, MARKS};
    use chimera_log_runtime::{emit, AuditDurability, LogConfig};

    use super::divergence::divergence;

    const STAGES: [(&str, Mark, Mark); 8] = [
        ("route", Mark::Start, Mark::Routed),
        ("clock", Mark::Routed, Mark::Timed),
        ("to lock", Mark::Timed, Mark::Locking),
        ("lock", Mark::Locking, Mark::Locked),
        ("find chunk", Mark::Locked, Mark::Found),
        ("write", Mark::Found, Mark::Written),
        ("release", Mark::Written, Mark::Released),
        ("return", Mark::Released, Mark::Done),
    ];

    /// An emit's stage boundaries, and the longest gap between two readings of the clock in
    /// the spin before it (an interrupt, or the thread descheduled).
    type Slots = [u64; MARKS + 1];

    /// A gap this long in the spin before an emit means the CPU was taken away meanwhile.
    const INTERRUPTED_TICKS: u64 = 2_000;

    fn at(slots: &Slots, mark: Mark) -> u64 {
        slots[mark as usize]
    }

    fn total(slots: &Slots) -> u64 {
        at(slots, Mark::Done).wrapping_sub(at(slots, Mark::Start))
    }

    /// Why a slow emit was slow, as far as its slots tell.
    fn kind(slots: &Slots) -> &'static str {
        if slots[MARKS] > INTERRUPTED_TICKS {
            "the CPU was taken away just before"
        } else if at(slots, Mark::PoolVisit) != 0 {
            "took a chunk from the pool"
        } else if at(slots, Mark::FirstInChunk) != 0 {
            "first record of a chunk"
        } else if at(slots, Mark::Offset) % 4096 + 200 > 4096 {
            "crossed into a new page"
        } else {
            "none of those"
        }
    }

    fn print_stages(label: &str, emits: &[&Slots]) {
        print!("{label:>28} ({:>6}):", emits.len());
        for (name, from, to) in STAGES {
            let mut ticks: Vec<u64> = emits.iter().map(|s| at(s, to).wrapping_sub(at(s, from))).collect();
            ticks.sort_unstable();
            print!(" {name} {}", ticks.get(ticks.len() / 2).copied().unwrap_or(0));
        }
        println!();
    }

    pub(super) fn run() {
        let dir = tempfile::tempdir().unwrap();
        let guard = LogConfig::new(dir.path())
            .console(false)
            .max_bytes(u64::MAX)
            .audit_durability(AuditDurability::OsBuffer)
            .build()
            .unwrap();
        let logger = guard.logger("bench");
        let mut emits: Vec<Slots> = Vec::with_capacity(1_000_000);
        let mut gap = 0;
        for round in 0..100u64 {
            for seq in round * 10_000..(round + 1) * 10_000 {
                emit!(logger, divergence(seq));
                let mut slots = [0; MARKS + 1];
                slots[..MARKS].copy_from_slice(&probe::take());
                slots[MARKS] = gap;
                emits.push(slots);
                gap = spin(Duration::from_micros(2));
            }
            assert!(guard.flush(), "flush timed out");
        }
        let written: Vec<&Slots> = emits.iter().filter(|s| at(s, Mark::Written) != 0).collect();
        assert_eq!(written.len(), emits.len(), "every emit must take the in-place path");
        let mut totals: Vec<u64> = written.iter().map(|s| total(s)).collect();
        totals.sort_unstable();
        let quantile = |q: f64| totals[((totals.len() - 1) as f64 * q) as usize];
        let ticks_per_ns = tsc_ghz();
        println!(
            "1,000,000 emits, ticks: median {}, p99 {}, p99.9 {} ({:.2} ticks per ns)",
            quantile(0.5),
            quantile(0.99),
            quantile(0.999),
            ticks_per_ns
        );
        println!("each stage's median, in ticks:");
        let median = quantile(0.5);
        print_stages("the faster half", &written.iter().copied().filter(|s| total(s) <= median).collect::<Vec<_>>());
        let slow_over = (500.0 * ticks_per_ns) as u64;
        for what in [
            "the CPU was taken away just before",
            "took a chunk from the pool",
            "first record of a chunk",
            "crossed into a new page",
            "none of those",
        ] {
            let slow: Vec<&Slots> =
                written.iter().copied().filter(|s| total(s) > slow_over && kind(s) == what).collect();
            let all = written.iter().filter(|s| kind(s) == what).count();
            println!("over 500 ns, {what}: {} of {all}", slow.len());
            if !slow.is_empty() {
                print_stages("", &slow);
            }
        }
    }

    /// Spins for `time`; returns the longest gap between two readings of the counter.
    fn spin(time: Duration) -> u64 {
        let until = Instant::now() + time;
        let mut longest = 0;
        // SAFETY: `rdtsc` has no preconditions.
        let mut last = unsafe { core::arch::x86_64::_rdtsc() };
        while Instant::now() < until {
            std::hint::spin_loop();
            // SAFETY: as above.
            let now = unsafe { core::arch::x86_64::_rdtsc() };
            longest = longest.max(now.wrapping_sub(last));
            last = now;
        }
        longest
    }

    /// The counter's rate in ticks per nanosecond, measured over 100 ms of sleep.
    fn tsc_ghz() -> f64 {
        let start = Instant::now();
        // SAFETY: `rdtsc` has no preconditions.
        let ticks = unsafe { core::arch::x86_64::_rdtsc() };
        std::thread::sleep(Duration::from_millis(100));
        // SAFETY: as above.
        let after = unsafe { core::arch::x86_64::_rdtsc() };
        (after - ticks) as f64 / start.elapsed().as_nanos() as f64
    }
}
