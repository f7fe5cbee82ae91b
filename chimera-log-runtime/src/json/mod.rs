//! The line encoder: the envelope (`timestamp, level, module, event, context[, exception]`),
//! JSON string escaping and the timestamp format.
//!
//! This module turns one event into one line of bytes and nothing else: it does no I/O, takes no
//! lock and decides no routing. Every string that reaches a line goes through `escape`, so no
//! input can end a line early or forge a second record.
//!
//! - `line`: the envelope and the `exception` object, [`encode_line`];
//! - `context`: the `context` object, [`ContextWriter`] and [`write_adhoc_context`];
//! - `escape`: JSON strings, from text, `Display` and serde_json;
//! - `keys`: the rule for a key that repeats in an object (`rename_repeats`, `make_keys_unique`);
//! - `timestamp`: the `timestamp` format.

mod context;
mod escape;
mod keys;
mod line;
mod timestamp;

#[cfg(feature = "tracing")]
pub(crate) use context::float_into;
pub(crate) use context::write_adhoc_context;
pub use context::ContextWriter;
pub(crate) use escape::{is_plain, quoted_into};
#[cfg(feature = "tracing")]
pub(crate) use escape::{push_short, quoted_as_serde_json_into, write_display_string};
#[cfg(feature = "tracing")]
pub(crate) use keys::{make_keys_unique, rename_repeats};
#[cfg(feature = "tracing")]
pub(crate) use line::TraceIds;
pub(crate) use line::{encode_line, Envelope, EventName, Exception};
pub(crate) use timestamp::{write_timestamp, UnixTime};
