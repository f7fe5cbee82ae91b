//! Issue 30's event, shared by the emit bench (`spaced_latency`) and `examples/stages.rs`, so
//! that the stage probe times the same emits as the bench.

use std::hint::black_box;

use chimera_log_runtime::LogEvent;

/// Three `&str`, two `u128`, a `u32`, a `u64`.
#[derive(LogEvent)]
pub(crate) struct Divergence<'a> {
    pub(crate) protocol: &'a str,
    pub(crate) user: &'a str,
    pub(crate) market: &'a str,
    pub(crate) cached_value: u128,
    pub(crate) canonical_value: u128,
    pub(crate) divergence_bps: u32,
    pub(crate) block_number: u64,
}

/// The `seq`th event; `black_box` keeps the compiler from folding its fields into the encoder.
pub(crate) fn divergence(seq: u64) -> Divergence<'static> {
    black_box(Divergence {
        protocol: "moonwell",
        user: "0x5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b",
        market: "USDC",
        cached_value: 1_000_000_000_000_000_000u128 + u128::from(seq),
        canonical_value: 1_000_000_000_000_000_123u128,
        divergence_bps: 12,
        block_number: 12_345_678 + seq,
    })
}
