//! What this machine allows a short job, for comparing the emit's tail against (BENCHMARKS.md,
//! "What sets p99.9"): no logger, only `rdtsc` and 173 bytes copied into a pre-touched ring,
//! each job timed with an `Instant` pair and spaced 2 us apart, as the emit bench's
//! `spaced_latency` times `emit!`.
//!
//!     rustc -O --edition 2021 bench/floor.rs -o /tmp/chimera-floor && /tmp/chimera-floor RING_BYTES [file]
//!
//! With `file`, a thread beside the jobs wakes about every millisecond to write 64 KiB to a
//! file in the temporary directory, as a logger's writer does under a steady trickle.

use std::hint::black_box;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    sorted[((sorted.len() as f64) * fraction) as usize]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let ring_bytes: usize = args.next().and_then(|a| a.parse().ok()).expect("usage: floor RING_BYTES [file]");
    let beside_a_writer = args.next().as_deref() == Some("file");
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
        taken.sort_unstable();
        println!(
            "ring {ring_bytes} B{}: median {} ns, p99 {} ns, p99.9 {} ns, over 500 ns {} of {}",
            if beside_a_writer { " beside a writer" } else { "" },
            percentile(&taken, 0.5),
            percentile(&taken, 0.99),
            percentile(&taken, 0.999),
            taken.iter().filter(|&&ns| ns > 500).count(),
            taken.len(),
        );
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(writer) = writer {
        writer.join().expect("the writer thread");
    }
}
