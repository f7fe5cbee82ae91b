//! One whole line: the envelope `timestamp, level, module, event, context[, trace_id, span_id][, exception][, audit_key]`,
//! in the contract's order, and the `exception` object.
//!
//! This module fixes the order and names of the envelope's keys; the context object is written
//! by the caller's closure (see `context`).

use std::borrow::Cow;
use std::error::Error;
use std::fmt;

use super::escape::{is_plain, push_short, quoted_into, write_display_string};
use super::timestamp::{write_timestamp, UnixTime};
use crate::event::Level;

/// The envelope of one line; the context is written by the caller's closure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Envelope<'a> {
    pub(crate) time: UnixTime,
    pub(crate) level: Level,
    /// The module name already quoted and escaped (computed once per logger).
    pub(crate) module_json: &'a str,
    pub(crate) event: EventName<'a>,
    pub(crate) exception: Option<Exception<'a>>,
    /// The audit identity field's key, when it is not `block_number`.
    pub(crate) audit_key: Option<&'a str>,
    /// The OpenTelemetry ids of the span the line was written in, if it has them.
    pub(crate) trace: Option<TraceIds>,
}

/// A span's OpenTelemetry trace and span ids, written as W3C hex (`trace_id`: 32 digits,
/// `span_id`: 16) after the line's `context`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceIds {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
}

fn push_hex(buf: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        buf.push(DIGITS[usize::from(byte >> 4)]);
        buf.push(DIGITS[usize::from(byte & 0xf)]);
    }
}

/// A line's `event`, and whether it has nothing to escape: known at compile time for a typed
/// event, whose name is then copied as it is rather than scanned on every line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventName<'a> {
    name: &'a str,
    plain: bool,
}

impl<'a> EventName<'a> {
    /// `name`, looked at now (in a `const` block: once, when compiling).
    pub(crate) const fn checked(name: &'a str) -> Self {
        EventName { name, plain: is_plain(name) }
    }

    /// `name`, looked at already: `plain` is what [`is_plain`] said of it.
    pub(crate) const fn known(name: &'a str, plain: bool) -> Self {
        EventName { name, plain }
    }
}

/// A name escaped as it is written.
impl<'a> From<&'a str> for EventName<'a> {
    fn from(name: &'a str) -> Self {
        EventName { name, plain: false }
    }
}

/// Appends one complete line, `\n` included, keys in the contract's order.
pub(crate) fn encode_line(buf: &mut Vec<u8>, envelope: Envelope<'_>, write_context: impl FnOnce(&mut Vec<u8>)) {
    buf.extend_from_slice(b"{\"timestamp\":\"");
    write_timestamp(buf, envelope.time);
    // One constant per level: each a copy of known length, compiled to a few stores.
    match envelope.level {
        Level::Trace => buf.extend_from_slice(b"\",\"level\":\"TRACE\",\"module\":"),
        Level::Debug => buf.extend_from_slice(b"\",\"level\":\"DEBUG\",\"module\":"),
        Level::Info => buf.extend_from_slice(b"\",\"level\":\"INFO\",\"module\":"),
        Level::Warning => buf.extend_from_slice(b"\",\"level\":\"WARNING\",\"module\":"),
        Level::Error => buf.extend_from_slice(b"\",\"level\":\"ERROR\",\"module\":"),
        Level::Critical => buf.extend_from_slice(b"\",\"level\":\"CRITICAL\",\"module\":"),
    }
    push_short(buf, envelope.module_json.as_bytes());
    buf.extend_from_slice(b",\"event\":");
    if envelope.event.plain {
        buf.push(b'"');
        push_short(buf, envelope.event.name.as_bytes());
        buf.push(b'"');
    } else {
        quoted_into(buf, envelope.event.name);
    }
    buf.extend_from_slice(b",\"context\":");
    write_context(buf);
    if let Some(trace) = envelope.trace {
        buf.extend_from_slice(b",\"trace_id\":\"");
        push_hex(buf, &trace.trace_id);
        buf.extend_from_slice(b"\",\"span_id\":\"");
        push_hex(buf, &trace.span_id);
        buf.push(b'"');
    }
    if let Some(exception) = envelope.exception {
        buf.extend_from_slice(b",\"exception\":");
        write_exception(buf, exception);
    }
    if let Some(key) = envelope.audit_key {
        buf.extend_from_slice(b",\"audit_key\":");
        quoted_into(buf, key);
    }
    buf.extend_from_slice(b"}\n");
}

/// An error attached to an event (`emit!(.., error = &e)`), written as the line's `exception`.
#[derive(Clone, Copy)]
pub(crate) struct Exception<'a> {
    pub(crate) type_name: &'a str,
    pub(crate) error: &'a (dyn Error + 'a),
}

impl fmt::Debug for Exception<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exception").field("type_name", &self.type_name).finish_non_exhaustive()
    }
}

/// A type name as `std::any::type_name` gives it, with the standard library's paths that only
/// make an erased error's name long taken out: `Box<dyn Error + Send + Sync>`, not
/// `alloc::boxed::Box<dyn core::error::Error + core::marker::Send + core::marker::Sync>`.
/// Concrete types keep their full path.
fn readable_type_name(name: &str) -> Cow<'_, str> {
    const SHORTER: [(&str, &str); 6] = [
        ("alloc::boxed::Box<", "Box<"),
        ("alloc::sync::Arc<", "Arc<"),
        ("alloc::rc::Rc<", "Rc<"),
        ("dyn core::error::Error", "dyn Error"),
        ("core::marker::Send", "Send"),
        ("core::marker::Sync", "Sync"),
    ];
    if !SHORTER.iter().any(|(long, _)| name.contains(long)) {
        return Cow::Borrowed(name);
    }
    let mut name = name.to_owned();
    for (long, short) in SHORTER {
        name = name.replace(long, short);
    }
    Cow::Owned(name)
}

/// Appends `{"type":"…","message":"…","causes":["…", …]}`: the message is the error's
/// `Display`, the causes its `source()` chain, outermost first.
fn write_exception(buf: &mut Vec<u8>, exception: Exception<'_>) {
    buf.extend_from_slice(b"{\"type\":");
    quoted_into(buf, &readable_type_name(exception.type_name));
    buf.extend_from_slice(b",\"message\":");
    write_display_string(buf, exception.error);
    buf.extend_from_slice(b",\"causes\":[");
    let mut source = exception.error.source();
    let mut first = true;
    while let Some(cause) = source {
        if !first {
            buf.push(b',');
        }
        first = false;
        write_display_string(buf, cause);
        source = cause.source();
    }
    buf.extend_from_slice(b"]}");
}
