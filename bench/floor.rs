//! What this machine allows a short job, for comparing the emit's tail against (BENCHMARKS.md,
//! "What sets p99.9"): no logger, only `rdtsc` and 173 bytes copied into a pre-touched ring,
//! each job timed with an `Instant` pair and spaced 2 us apart, as the emit bench's
//! `spaced_latency` times `emit!`.
//!
//!     rustc -O --edition 2021 bench/floor.rs -o /tmp/chimera-floor && /tmp/chimera-floor RING_BYTES [file|publish|lock]
//!
//! With `file`, a thread beside the jobs wakes about every millisecond to write 64 KiB to a
//! file in the temporary directory, as a logger's writer does under a steady trickle.
//!
//! With `publish` or `lock`, a reader thread beside the jobs wakes about every millisecond and
//! reads every record copied since it last looked, as the queue's writer does: the two ways a
//! caller and the writer can share memory (docs/internals.md, "Where the caller's time goes").
//! `publish`: the job copies its record into the ring's next slot and publishes the count of
//! records with a release store; the reader reads up to that count and publishes how far it
//! has read, which the job reads only when its last look says the ring is full. `lock`: the
//! same, and the job copies under a flag taken with a compare-and-swap, which the reader takes
//! to read the count at each look, as the writer takes a shard's lock today.

use std::hint::black_box;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    sorted[((sorted.len() as f64) * fraction) as usize]
}

/// A record's size, as in the emit bench.
const RECORD: usize = 173;

/// A ring of fixed-size records shared by the job (which copies into it) and a reader thread.
struct Shared {
    ring: *mut u8,
    slots: u64,
    /// Records copied (the job's release store).
    written: AtomicU64,
    /// Records read (the reader's release store).
    read: AtomicU64,
    flag: AtomicBool,
    stop: AtomicBool,
}

// SAFETY: the ring's bytes are reached by the job only in slots the reader is done with (the
// `read` count), and by the reader only in slots the job has published (the `written` count):
// no byte is written and read at once.
unsafe impl Sync for Shared {}

impl Shared {
    fn slot(&self, record: u64) -> *mut u8 {
        // SAFETY: `record % slots` is within the ring, which holds `slots` whole records.
        unsafe { self.ring.add((record % self.slots) as usize * RECORD) }
    }

    fn take_flag(&self) {
        while self.flag.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            std::hint::spin_loop();
        }
    }

    /// The reader: every ~millisecond, every record since its last look, summed as an encoder
    /// would read it.
    fn read_on(&self, lock: bool) {
        let mut read = 0u64;
        let mut sum = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            // `lock`: the count taken under the flag, as the writer takes a shard's chunks,
            // and the records read after it is released.
            if lock {
                self.take_flag();
            }
            let written = self.written.load(Ordering::Acquire);
            if lock {
                self.flag.store(false, Ordering::Release);
            }
            for record in read..written {
                // SAFETY: the job copied this slot before publishing `written`, and copies into
                // it again only after `read` passes it: see `Sync` above.
                let bytes = unsafe { std::slice::from_raw_parts(self.slot(record), RECORD) };
                sum = sum.wrapping_add(bytes.iter().map(|&b| u64::from(b)).sum::<u64>());
            }
            read = written;
            self.read.store(read, Ordering::Release);
            std::thread::sleep(Duration::from_micros(800));
        }
        black_box(sum);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let ring_bytes: usize =
        args.next().and_then(|a| a.parse().ok()).expect("usage: floor RING_BYTES [file|publish|lock]");
    let mode = args.next().unwrap_or_default();
    if !matches!(mode.as_str(), "" | "file" | "publish" | "lock") {
        panic!("usage: floor RING_BYTES [file|publish|lock]");
    }
    if mode == "publish" || mode == "lock" {
        return beside_a_reader(ring_bytes, mode == "lock");
    }
    let beside_a_writer = mode == "file";
    let stop = Arc::new(AtomicBool::new(false));
    let writer = beside_a_writer.then(|| {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let path = std::env::temp_dir().join(format!("chimera-floor-{}", std::process::id()));
            let mut file = std::fs::File::create(&path).expect("a file in the temporary directory");
            let block = vec![b'x'; 64 * 1024];
            for round in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                file.write_all(&block).expect("write");
                if round % 1000 == 999 {
                    file.set_len(0).expect("truncate");
                }
                std::thread::sleep(Duration::from_micros(800));
            }
            let _ = std::fs::remove_file(path);
        })
    });
    let mut ring = vec![1u8; ring_bytes.max(173)];
    let payload = [7u8; 165];
    let mut at = 0;
    for _ in 0..2 {
        let mut taken = Vec::with_capacity(1_000_000);
        for _ in 0..1_000_000 {
            let start = Instant::now();
            // SAFETY: `rdtsc` has no preconditions on x86_64.
            let ticks = unsafe { std::arch::x86_64::_rdtsc() };
            if at + 173 > ring.len() {
                at = 0;
            }
            ring[at..at + 8].copy_from_slice(&ticks.to_ne_bytes());
            ring[at + 8..at + 173].copy_from_slice(black_box(&payload));
            at += 173;
            black_box(&ring);
            taken.push(start.elapsed().as_nanos() as u64);
            let until = Instant::now() + Duration::from_micros(2);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        report(ring_bytes, if beside_a_writer { " beside a writer" } else { "" }, &mut taken);
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(writer) = writer {
        writer.join().expect("the writer thread");
    }
}

fn report(ring_bytes: usize, beside: &str, taken: &mut [u64]) {
    taken.sort_unstable();
    println!(
        "ring {ring_bytes} B{beside}: median {} ns, p99 {} ns, p99.9 {} ns, over 500 ns {} of {}",
        percentile(taken, 0.5),
        percentile(taken, 0.99),
        percentile(taken, 0.999),
        taken.iter().filter(|&&ns| ns > 500).count(),
        taken.len(),
    );
}

/// The jobs beside a reader thread (`publish` or `lock`, see the file's docs).
fn beside_a_reader(ring_bytes: usize, lock: bool) {
    let slots = (ring_bytes / RECORD).max(2);
    let mut ring = vec![1u8; slots * RECORD];
    let shared = Shared {
        ring: ring.as_mut_ptr(),
        slots: slots as u64,
        written: AtomicU64::new(0),
        read: AtomicU64::new(0),
        flag: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    };
    let payload = [7u8; RECORD - 8];
    std::thread::scope(|scope| {
        scope.spawn(|| shared.read_on(lock));
        let mut written = 0u64;
        let mut read_seen = 0u64;
        for _ in 0..2 {
            let mut taken = Vec::with_capacity(1_000_000);
            for _ in 0..1_000_000 {
                let start = Instant::now();
                // SAFETY: `rdtsc` has no preconditions on x86_64.
                let ticks = unsafe { std::arch::x86_64::_rdtsc() };
                while written - read_seen >= shared.slots {
                    // Full by the last look: look again (the reader frees slots each pass).
                    read_seen = shared.read.load(Ordering::Acquire);
                }
                if lock {
                    shared.take_flag();
                }
                let slot = shared.slot(written);
                // SAFETY: the slot is free (the reader has read it: the `read` count looked at
                // above), and `RECORD` bytes from it are within the ring.
                unsafe {
                    std::ptr::copy_nonoverlapping(ticks.to_ne_bytes().as_ptr(), slot, 8);
                    std::ptr::copy_nonoverlapping(black_box(&payload).as_ptr(), slot.add(8), RECORD - 8);
                }
                written += 1;
                shared.written.store(written, Ordering::Release);
                if lock {
                    shared.flag.store(false, Ordering::Release);
                }
                taken.push(start.elapsed().as_nanos() as u64);
                let until = Instant::now() + Duration::from_micros(2);
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
            }
            report(ring_bytes, if lock { " beside a reader, lock" } else { " beside a reader, publish" }, &mut taken);
        }
        shared.stop.store(true, Ordering::Relaxed);
    });
    drop(ring);
}
