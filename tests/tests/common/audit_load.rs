//! An audit event and a multi-threaded load of it, for the audit-store tests (SQLite and
//! PostgreSQL alike).

use chimera_log_runtime::{emit, LogEvent, LogGuard};

#[derive(LogEvent)]
#[log(audit)]
pub struct Executed<'a> {
    pub block_number: u64,
    pub pad: &'a str,
}

/// `each` audit events from each of `threads` threads; thread `t`'s block numbers start at
/// `first + t * 1,000,000`.
pub fn emit_from_threads(guard: &LogGuard, threads: u64, each: u64, first: u64) {
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let logger = guard.logger("executor");
            scope.spawn(move || {
                for i in 0..each {
                    emit!(logger, Executed { block_number: first + thread * 1_000_000 + i, pad: "0123456789abcdef" });
                }
            });
        }
    });
}
