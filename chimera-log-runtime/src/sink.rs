//! Sinks: where encoded lines end up. A sink receives finished lines (bytes ending in `\n`) and
//! knows nothing of events, levels or routing; the dispatcher (`write::dispatch`) decides which sinks
//! take a line. Rotation and the background writer replace a sink's insides or its caller, not
//! this interface.

use std::fmt::Debug;
use std::io;

/// A destination of finished lines.
pub(crate) trait Sink: Send + Debug {
    /// Writes one whole line. Returns only when the sink has taken all of it or failed.
    fn write_line(&mut self, line: &[u8]) -> io::Result<()>;

    /// Writes lines given back to back in `bytes`, `lens[i]` bytes each; the first error is
    /// returned after every line was offered.
    fn write_batch(&mut self, bytes: &[u8], lens: &[u32]) -> io::Result<()> {
        let mut outcome = Ok(());
        let mut at = 0;
        for &len in lens {
            let line = &bytes[at..at + len as usize];
            at += len as usize;
            if let Err(error) = self.write_line(line) {
                if outcome.is_ok() {
                    outcome = Err(error);
                }
            }
        }
        outcome
    }

    /// Writes out everything held back: buffered lines, lines a fault kept, batches not yet due.
    fn flush(&mut self) -> io::Result<()>;

    /// Called by the writer thread after each batch and when idle: time-driven work (a retry
    /// after a fault, a batch that came due). By default, a flush.
    fn tick(&mut self) -> io::Result<()> {
        self.flush()
    }

    /// Lines the sink dropped itself since the last call (a file whose retry buffer filled up
    /// while it could not be written). They are already in the sink's `dropped` counter; the
    /// writer reports them in a `log_events_dropped` line.
    fn take_dropped(&mut self) -> u64 {
        0
    }

    /// Whether the sink holds lines it was handed and has not written: after a flush or a tick,
    /// those a fault keeps for a retry. A flush is not answered while any are held.
    fn holds_lines(&self) -> bool {
        false
    }

    /// Whether the sink can take a short line now without dropping it: the writer reports drops
    /// only then, so the report itself is never what gets dropped.
    fn has_room(&self) -> bool {
        true
    }
}
