//! Emitting a typed event allocates nothing on the caller's thread once warmed up: the line is
//! encoded into a reused thread-local buffer and copied into a queue whose buffers are reserved.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use chimera_log_runtime::{emit, AuditDurability, LogConfig, LogEvent};

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the only addition is a
// thread-local counter, which needs no allocation (const-initialised `Cell`).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[derive(LogEvent)]
struct Liquidation<'a> {
    protocol: &'a str,
    borrower: &'a str,
    profit_usd: &'a str,
    block_number: u64,
    debt: u128,
}

#[derive(LogEvent)]
#[log(audit)]
struct Submitted<'a> {
    block_number: u64,
    tx_hash: &'a str,
}

#[test]
fn emitting_typed_events_allocates_nothing_on_the_callers_thread_in_steady_state() {
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path()).console(false).audit_durability(AuditDurability::OsBuffer).build().unwrap();
    let logger = guard.logger("executor");
    let emit_some = |count: u64| {
        for block_number in 0..count {
            emit!(
                logger,
                Liquidation {
                    protocol: "moonwell",
                    borrower: "0x5a6b7c8d9e0f",
                    profit_usd: "120.00",
                    block_number,
                    debt: 1_001_500_000_000_000_000,
                }
            );
            if block_number.is_multiple_of(100) {
                emit!(logger, Submitted { block_number, tx_hash: "0xabc" });
            }
        }
    };
    emit_some(10_000); // warm up: thread-local buffers, the audit sink's buffer
    assert!(guard.flush(), "flush timed out");
    let before = allocations();
    emit_some(20_000);
    let during = allocations() - before;
    assert!(guard.flush(), "flush timed out");
    drop(guard);
    assert_eq!(during, 0, "allocations while emitting 20,000 events");
}
