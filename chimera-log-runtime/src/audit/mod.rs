//! The audit trail: the hash chain every record of `executions.log` is sealed into (`chain`:
//! sealing, anchors, restart records, recovering the head at start), and the writer that puts a
//! sealed record in the file before `emit!` returns, with group commit (`writer`).

mod chain;
pub(crate) mod writer;

pub use chain::*;
