//! Deferred encoding: a typed event leaves a record of its fields in the queue, and the writer
//! thread encodes the line from it.
//!
//! The caller of `emit!` for a general (non-audit) typed event copies the event's fields into
//! its shard of the queue (integers and floats by value, strings by their bytes) instead of
//! encoding JSON; the writer thread, which has the time, encodes each record into the very line
//! the caller would have written (`json::encode_line`, the same calls in the same order). What
//! the derive generates for each type: a capture (the `LogEvent::__capture` method) and a replay
//! function reading the fields back, named by the type's [`Replay`].
//!
//! Not deferred, and encoded on the caller as before: audit events (sealed and written before
//! `emit!` returns), events with an error attached, events written inside a span that the line
//! names, ad-hoc and `tracing` events, and events of hand-written `LogEvent` impls. A field
//! whose type is not one the capture knows (any other `Serialize` type, or `#[log(display)]`) is
//! encoded on the caller into the record, as JSON, and copied into the line by the writer.
//!
//! - `record`: the capture format, [`Capture`] and [`Replayer`];
//! - `replay`: the registry of event types, each type's [`Replay`];
//! - `encode`: a record's header, the writer's [`Encoder`].

mod encode;
mod record;
mod replay;

pub(crate) use encode::{record_len, write_record, Encoder};
pub use record::{Capture, CaptureEncoded, CaptureValue, CoreStr, OtherStr, Replayer, Scalar, StrLen, Value};
pub use replay::Replay;

/// The bit of a chunk's line length that says the entry is a record, not a line. A line of 2 GiB
/// or more is refused by the queue (see `BatchQueue::push`), so the bit is never a length's.
pub(crate) const RECORD: u32 = 1 << 31;

/// Appends to `out` (and its lengths to `out_lens`) the lines of a chunk's entries: lines as
/// they are, records encoded by `encoder`.
pub(crate) fn encode_entries(
    encoder: &mut Encoder,
    bytes: &[u8],
    lens: &[u32],
    out: &mut Vec<u8>,
    out_lens: &mut Vec<u32>,
) {
    let mut at = 0;
    for &len in lens {
        let size = (len & !RECORD) as usize;
        let entry = &bytes[at..at + size];
        at += size;
        let start = out.len();
        if len & RECORD == 0 {
            out.extend_from_slice(entry);
        } else {
            encoder.encode(entry, out);
        }
        out_lens.push((out.len() - start) as u32);
    }
}
