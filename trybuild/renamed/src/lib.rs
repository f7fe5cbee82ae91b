//! A crate depending on the runtime as `chimera`: the derive must reach it through
//! `#[log(crate = "::chimera")]`, since `::chimera_log_runtime` does not exist here.

use chimera::{emit, LogEvent, Logger};

/// An event derived against the renamed runtime.
#[derive(LogEvent, Debug)]
#[log(crate = "::chimera", audit, level = "warn")]
pub struct RenamedEvent<'a> {
    /// Where on the chain.
    pub block_number: u64,
    /// Some text.
    pub note: &'a str,
}

/// Emits one [`RenamedEvent`].
pub fn emit_renamed(logger: &Logger, note: &str) {
    emit!(logger, RenamedEvent { block_number: 7, note });
}
