//! The write path: which sinks take a line (`dispatch`), and getting it there without making the
//! caller wait — the bounded queue, the writer threads that drain it, the console — behind one
//! `Sink` trait. The audit file is written through by `audit::writer` (for `emit_async!`, on a
//! thread of its own: `completion`); forwarders follow the files.

pub(crate) mod completion;
pub(crate) mod console;
pub(crate) mod dispatch;
pub(crate) mod latency;
#[cfg(feature = "metrics")]
pub(crate) mod metrics;
pub(crate) mod queue;
pub(crate) mod watch;
pub(crate) mod writer;
