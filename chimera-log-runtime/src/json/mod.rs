//! The line encoder: the envelope (`timestamp, level, module, event, context[, exception]`),
//! JSON string escaping and the timestamp format.
//!
//! This module turns one event into one line of bytes and nothing else: it does no I/O, takes no
//! lock and decides no routing. Every string that reaches a line goes through [`escape_into`] or
//! serde_json's own escaping, so no input can end a line early or forge a second record.

use std::error::Error;
use std::fmt::{self, Display, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::event::Level;

/// Writes the members of an event's `context` object into the line being encoded.
///
/// `#[derive(LogEvent)]` generates the calls; a hand-written [`LogEvent`](crate::LogEvent) impl
/// uses [`ContextWriter::field`]:
///
/// ```
/// use chimera_log_runtime::{ContextWriter, Level, LogEvent, Routes};
///
/// struct Heartbeat { uptime_s: u64 }
///
/// impl LogEvent for Heartbeat {
///     const NAME: &'static str = "heartbeat";
///     const LEVEL: Level = Level::Debug;
///     const ROUTES: Routes = Routes::GENERAL;
///     fn write_context(&self, writer: &mut ContextWriter<'_>) {
///         writer.field("uptime_s", &self.uptime_s);
///     }
/// }
/// ```
#[derive(Debug)]
pub struct ContextWriter<'a> {
    buf: &'a mut Vec<u8>,
    /// Position just after the context's `{`: nothing written yet means no comma is needed.
    start: usize,
}

impl<'a> ContextWriter<'a> {
    /// Opens a context object in `buf`; [`ContextWriter::finish`] closes it.
    pub(crate) fn open(buf: &'a mut Vec<u8>) -> Self {
        buf.push(b'{');
        let start = buf.len();
        ContextWriter { buf, start }
    }

    pub(crate) fn finish(self) {
        self.buf.push(b'}');
    }

    /// Writes one member: `key` escaped, `value` through `Serialize`.
    pub fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) {
        self.key(key);
        self.serialize(value);
    }

    /// Writes one member whose value is written as a JSON string through `Display`.
    pub fn field_display<T: Display + ?Sized>(&mut self, key: &str, value: &T) {
        self.key(key);
        self.display(value);
    }

    fn key(&mut self, key: &str) {
        if self.buf.len() > self.start {
            self.buf.push(b',');
        }
        self.buf.push(b'"');
        escape_into(self.buf, key);
        self.buf.extend_from_slice(b"\":");
    }

    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Writes `value` through serde_json. A value that fails to serialize (a map with non-string
    /// keys, a `Serialize` impl returning an error) is replaced by a string saying so, keeping
    /// the line valid JSON.
    pub(crate) fn serialize<T: Serialize + ?Sized>(&mut self, value: &T) {
        let at = self.buf.len();
        if let Err(error) = serialize_into(self.buf, value) {
            self.buf.truncate(at);
            write_unwritable(self.buf, &error);
        }
    }

    pub(crate) fn display<T: Display + ?Sized>(&mut self, value: &T) {
        let at = self.buf.len();
        self.buf.push(b'"');
        if write!(Escaper(self.buf), "{value}").is_err() {
            self.buf.truncate(at);
            write_unwritable(self.buf, &"its Display impl returned an error");
            return;
        }
        self.buf.push(b'"');
    }

    pub(crate) fn str_value(&mut self, value: &str) {
        self.buf.push(b'"');
        escape_into(self.buf, value);
        self.buf.push(b'"');
    }

    pub(crate) fn integer<I: itoa::Integer>(&mut self, value: I) {
        self.buf.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    pub(crate) fn redacted(&mut self) {
        self.buf.extend_from_slice(b"\"[REDACTED]\"");
    }
}

fn write_unwritable(buf: &mut Vec<u8>, reason: &dyn Display) {
    buf.extend_from_slice(b"\"[unserializable: ");
    let _ = write!(Escaper(buf), "{reason}");
    buf.extend_from_slice(b"]\"");
}

/// Writes `value` as compact JSON, as serde_json does, except that strings also escape U+0085,
/// U+2028 and U+2029: valid JSON either way, but line splitters of other languages (JavaScript,
/// Python's `str.splitlines`) break lines there, and one event must stay one line for them too.
pub(crate) fn serialize_into<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) -> serde_json::Result<()> {
    value.serialize(&mut serde_json::Serializer::with_formatter(buf, LineFormatter))
}

/// serde_json's compact format, with the line separators escaped (see [`serialize_into`]).
struct LineFormatter;

impl serde_json::ser::Formatter for LineFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut rest = fragment;
        while let Some(at) = rest.find(['\u{85}', '\u{2028}', '\u{2029}']) {
            let separator = rest[at..].chars().next().expect("find returned a char boundary");
            writer.write_all(&rest.as_bytes()[..at])?;
            write!(writer, "\\u{:04x}", separator as u32)?;
            rest = &rest[at + separator.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }
}

/// Whether a value serializes as "nothing": `()`, `None` or a unit struct (and not, say, a NaN,
/// which serde_json also writes as `null`).
struct IsNothing;

#[derive(Debug)]
struct NotNothing;

impl fmt::Display for NotNothing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not nothing")
    }
}

impl std::error::Error for NotNothing {}

impl serde::ser::Error for NotNothing {
    fn custom<T: Display>(_: T) -> Self {
        NotNothing
    }
}

macro_rules! not_nothing {
    ($($method:ident($($ty:ty),*)),* $(,)?) => {
        $(fn $method(self, $(_: $ty),*) -> Result<bool, NotNothing> { Ok(false) })*
    };
}

impl serde::Serializer for IsNothing {
    type Ok = bool;
    type Error = NotNothing;
    type SerializeSeq = serde::ser::Impossible<bool, NotNothing>;
    type SerializeTuple = serde::ser::Impossible<bool, NotNothing>;
    type SerializeTupleStruct = serde::ser::Impossible<bool, NotNothing>;
    type SerializeTupleVariant = serde::ser::Impossible<bool, NotNothing>;
    type SerializeMap = serde::ser::Impossible<bool, NotNothing>;
    type SerializeStruct = serde::ser::Impossible<bool, NotNothing>;
    type SerializeStructVariant = serde::ser::Impossible<bool, NotNothing>;

    not_nothing!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_variant(&'static str, u32, &'static str),
    );

    fn serialize_none(self) -> Result<bool, NotNothing> {
        Ok(true)
    }
    fn serialize_unit(self) -> Result<bool, NotNothing> {
        Ok(true)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<bool, NotNothing> {
        Ok(true)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<bool, NotNothing> {
        value.serialize(self)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<bool, NotNothing> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<bool, NotNothing> {
        Ok(false)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotNothing> {
        Err(NotNothing)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotNothing> {
        Err(NotNothing)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, NotNothing> {
        Err(NotNothing)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NotNothing> {
        Err(NotNothing)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotNothing> {
        Err(NotNothing)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, NotNothing> {
        Err(NotNothing)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NotNothing> {
        Err(NotNothing)
    }
}

/// Writes an ad-hoc context: a value serializing to an object is the context itself; `()`,
/// `None` or a unit struct is an empty context; anything else (a string, a number, a list, a
/// NaN written as `null`) is wrapped as `{"value": ...}` so the context is always an object.
pub(crate) fn write_adhoc_context<T: Serialize + ?Sized>(buf: &mut Vec<u8>, context: &T) {
    let at = buf.len();
    if let Err(error) = serialize_into(buf, context) {
        buf.truncate(at);
        buf.extend_from_slice(b"{\"value\":");
        write_unwritable(buf, &error);
        buf.push(b'}');
        return;
    }
    match buf.get(at) {
        Some(b'{') => {}
        // Only a `null` is worth the second look that tells nothing from a non-finite float.
        Some(b'n') if context.serialize(IsNothing).unwrap_or(false) => {
            buf.truncate(at);
            buf.extend_from_slice(b"{}");
        }
        _ => {
            buf.splice(at..at, b"{\"value\":".iter().copied());
            buf.push(b'}');
        }
    }
}

/// Appends `s` escaped as the inside of a JSON string: quotes, backslashes, every control
/// character (newlines included) and the line separators U+0085, U+2028 and U+2029 are escaped,
/// the rest is copied as is.
///
/// Runs of ASCII without anything to escape are found eight bytes at a time and copied whole.
pub fn escape_into(buf: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    buf.reserve(bytes.len() + 2);
    let mut run_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + 8) {
            let word = u64::from_le_bytes(chunk.try_into().expect("an 8-byte slice"));
            if !needs_escape(word) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            // U+0085 is C2 85; U+2028 and U+2029 are E2 80 A8 and E2 80 A9.
            0xc2 if bytes.get(i + 1) == Some(&0x85) => b"\\u0085",
            0xe2 if bytes.get(i + 1) == Some(&0x80) && matches!(bytes.get(i + 2), Some(0xa8)) => b"\\u2028",
            0xe2 if bytes.get(i + 1) == Some(&0x80) && matches!(bytes.get(i + 2), Some(0xa9)) => b"\\u2029",
            _ => {
                i += 1;
                continue;
            }
        };
        buf.extend_from_slice(&bytes[run_start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            buf.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]);
            i += 1;
        } else {
            buf.extend_from_slice(escape);
            i += if b < 0x80 {
                1
            } else if b == 0xc2 {
                2
            } else {
                3
            };
        }
        run_start = i;
    }
    buf.extend_from_slice(&bytes[run_start..]);
}

/// Whether any of the eight bytes of `word` is a control character, a quote, a backslash, or
/// not ASCII (which may start a line separator, and is looked at byte by byte).
#[inline]
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte below 0x20, or equal to the quote or the backslash, once XORed to zero.
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    (below_space | has_zero(quote) | has_zero(backslash) | (word & HIGH)) != 0
}

/// Appends `"s"` with `s` escaped.
pub(crate) fn quoted_into(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    escape_into(buf, s);
    buf.push(b'"');
}

/// `fmt::Write` adapter escaping everything written through it.
struct Escaper<'a>(&'a mut Vec<u8>);

impl fmt::Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

/// Appends `time` as RFC 3339 UTC with microseconds and `Z`: `2024-01-15T10:30:45.123456Z`.
///
/// The calendar part changes once a second, so each thread keeps the last one it formatted and
/// only writes the microseconds anew.
pub(crate) fn write_timestamp(buf: &mut Vec<u8>, time: SystemTime) {
    thread_local! {
        static LAST_SECOND: std::cell::Cell<(i64, [u8; 19])> = const { std::cell::Cell::new((i64::MIN, [0; 19])) };
    }
    let (secs, nanos) = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => (after.as_secs() as i64, after.subsec_nanos()),
        // Before 1970: floor to the whole second below, keep the fraction positive.
        Err(before) => {
            let before = before.duration();
            let (secs, nanos) = (before.as_secs() as i64, before.subsec_nanos());
            if nanos == 0 {
                (-secs, 0)
            } else {
                (-secs - 1, 1_000_000_000 - nanos)
            }
        }
    };
    let cached = LAST_SECOND.try_with(std::cell::Cell::get).ok().filter(|(second, _)| *second == secs);
    match cached {
        Some((_, prefix)) => buf.extend_from_slice(&prefix),
        None => {
            let start = buf.len();
            if !write_calendar_second(buf, secs) {
                // Out of chrono's range (hundreds of thousands of years): the epoch says "clock broken".
                buf.extend_from_slice(b"1970-01-01T00:00:00.000000Z");
                return;
            }
            if let Ok(prefix) = <[u8; 19]>::try_from(&buf[start..]) {
                let _ = LAST_SECOND.try_with(|last| last.set((secs, prefix)));
            }
        }
    }
    buf.push(b'.');
    push_digits(buf, nanos / 1_000, 6);
    buf.push(b'Z');
}

/// Appends `yyyy-mm-ddThh:mm:ss` of the second `secs` after the epoch; `false` if out of range.
fn write_calendar_second(buf: &mut Vec<u8>, secs: i64) -> bool {
    use chrono::{Datelike, Timelike};
    let Some(datetime) = chrono::DateTime::from_timestamp(secs, 0) else {
        return false;
    };
    let date = datetime.date_naive();
    let time = datetime.time();
    let year = date.year();
    if (0..=9999).contains(&year) {
        push_digits(buf, year as u32, 4);
    } else {
        let _ = write!(RawWriter(buf), "{year:+05}");
    }
    buf.push(b'-');
    push_digits(buf, date.month(), 2);
    buf.push(b'-');
    push_digits(buf, date.day(), 2);
    buf.push(b'T');
    push_digits(buf, time.hour(), 2);
    buf.push(b':');
    push_digits(buf, time.minute(), 2);
    buf.push(b':');
    push_digits(buf, time.second(), 2);
    true
}

fn push_digits(buf: &mut Vec<u8>, mut value: u32, width: usize) {
    let end = buf.len() + width;
    buf.resize(end, b'0');
    for slot in buf[end - width..end].iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

struct RawWriter<'a>(&'a mut Vec<u8>);

impl fmt::Write for RawWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
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

/// Appends `{"type":"…","message":"…","causes":["…", …]}`: the message is the error's
/// `Display`, the causes its `source()` chain, outermost first.
fn write_exception(buf: &mut Vec<u8>, exception: Exception<'_>) {
    buf.extend_from_slice(b"{\"type\":");
    quoted_into(buf, exception.type_name);
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

fn write_display_string(buf: &mut Vec<u8>, value: &dyn Display) {
    let at = buf.len();
    buf.push(b'"');
    if write!(Escaper(buf), "{value}").is_err() {
        buf.truncate(at);
        write_unwritable(buf, &"its Display impl returned an error");
        return;
    }
    buf.push(b'"');
}

/// The envelope of one line; the context is written by the caller's closure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Envelope<'a> {
    pub(crate) time: SystemTime,
    pub(crate) level: Level,
    /// The module name already quoted and escaped (computed once per logger).
    pub(crate) module_json: &'a str,
    pub(crate) event: &'a str,
    pub(crate) exception: Option<Exception<'a>>,
}

/// Appends one complete line, `\n` included, keys in the contract's order.
pub(crate) fn encode_line(buf: &mut Vec<u8>, envelope: Envelope<'_>, write_context: impl FnOnce(&mut Vec<u8>)) {
    buf.extend_from_slice(b"{\"timestamp\":\"");
    write_timestamp(buf, envelope.time);
    buf.extend_from_slice(b"\",\"level\":\"");
    buf.extend_from_slice(envelope.level.as_str().as_bytes());
    buf.extend_from_slice(b"\",\"module\":");
    buf.extend_from_slice(envelope.module_json.as_bytes());
    buf.extend_from_slice(b",\"event\":");
    quoted_into(buf, envelope.event);
    buf.extend_from_slice(b",\"context\":");
    write_context(buf);
    if let Some(exception) = envelope.exception {
        buf.extend_from_slice(b",\"exception\":");
        write_exception(buf, exception);
    }
    buf.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn timestamp(time: SystemTime) -> String {
        let mut buf = Vec::new();
        write_timestamp(&mut buf, time);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn timestamp_is_rfc3339_utc_with_microseconds_and_z() {
        let time = UNIX_EPOCH + Duration::new(1_705_314_645, 123_456_789);
        assert_eq!(timestamp(time), "2024-01-15T10:30:45.123456Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn timestamp_before_epoch_keeps_a_positive_fraction() {
        let time = UNIX_EPOCH - Duration::from_micros(1);
        assert_eq!(timestamp(time), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn timestamp_agrees_with_chrono_over_many_dates() {
        // A stride through four centuries, leap days included.
        let mut secs: i64 = -2_208_988_800;
        while secs < 32_503_680_000 {
            let whole = if secs >= 0 {
                UNIX_EPOCH + Duration::from_secs(secs as u64)
            } else {
                UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
            };
            let time = whole + Duration::from_nanos(654_321_000);
            let expected = chrono::DateTime::<chrono::Utc>::from(time).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
            assert_eq!(timestamp(time), expected);
            secs += 7_777_777;
        }
    }

    #[test]
    fn escape_into_escapes_quotes_backslashes_and_every_control_character() {
        let mut buf = Vec::new();
        escape_into(&mut buf, "a\"b\\c\nd\re\tf\u{0}\u{1f}\u{7f}é");
        assert_eq!(String::from_utf8(buf).unwrap(), "a\\\"b\\\\c\\nd\\re\\tf\\u0000\\u001f\u{7f}é");
    }

    #[test]
    fn escape_into_agrees_with_serde_json_on_every_position_of_every_special_byte() {
        let specials: Vec<char> = (0u8..0x20).map(char::from).chain(['"', '\\', 'é', '\u{2028}', 'z']).collect();
        for len in 0..20 {
            for at in 0..len.max(1) {
                for &special in &specials {
                    let text: String = (0..len).map(|i| if i == at { special } else { 'a' }).collect();
                    let mut buf = vec![b'"'];
                    escape_into(&mut buf, &text);
                    buf.push(b'"');
                    let parsed: String = serde_json::from_slice(&buf).unwrap();
                    assert_eq!(parsed, text);
                }
            }
        }
    }

    #[test]
    fn adhoc_context_that_is_not_an_object_is_wrapped() {
        for (value, expected) in [
            (serde_json::json!({"a": 1}), "{\"a\":1}"),
            (serde_json::json!(null), "{}"),
            (serde_json::json!("text"), "{\"value\":\"text\"}"),
            (serde_json::json!([1, 2]), "{\"value\":[1,2]}"),
        ] {
            let mut buf = b"prefix".to_vec();
            write_adhoc_context(&mut buf, &value);
            assert_eq!(&buf[6..], expected.as_bytes());
        }
    }

    #[test]
    fn a_non_finite_float_as_the_whole_context_is_a_null_value_not_an_empty_context() {
        #[derive(Serialize)]
        struct Unit;
        type Write<'a> = &'a dyn Fn(&mut Vec<u8>);
        let cases: [(Write<'_>, &str); 7] = [
            (&|buf| write_adhoc_context(buf, &f64::NAN), "{\"value\":null}"),
            (&|buf| write_adhoc_context(buf, &f32::INFINITY), "{\"value\":null}"),
            (&|buf| write_adhoc_context(buf, &Some(f64::NEG_INFINITY)), "{\"value\":null}"),
            (&|buf| write_adhoc_context(buf, &()), "{}"),
            (&|buf| write_adhoc_context(buf, &None::<u8>), "{}"),
            (&|buf| write_adhoc_context(buf, &Some(())), "{}"),
            (&|buf| write_adhoc_context(buf, &Unit), "{}"),
        ];
        for (write, expected) in cases {
            let mut buf = Vec::new();
            write(&mut buf);
            assert_eq!(String::from_utf8(buf).unwrap(), expected);
        }
    }

    #[test]
    fn line_separators_are_escaped_in_every_string_a_line_holds() {
        let hostile = "a\u{2028}b\u{2029}c\u{85}d\u{e9}\u{2027}\u{c2}";
        let mut escaped = Vec::new();
        escape_into(&mut escaped, hostile);
        let mut serialized = Vec::new();
        serialize_into(&mut serialized, &serde_json::json!({ hostile: [hostile] })).unwrap();
        for bytes in [&escaped, &serialized] {
            let text = std::str::from_utf8(bytes).unwrap();
            assert!(!text.contains(['\u{85}', '\u{2028}', '\u{2029}']), "{text}");
            assert!(text.contains("\\u2028") && text.contains("\\u2029") && text.contains("\\u0085"), "{text}");
        }
        let back: String = serde_json::from_slice(&[b"\"", &escaped[..], b"\""].concat()).unwrap();
        assert_eq!(back, hostile);
        let back: serde_json::Value = serde_json::from_slice(&serialized).unwrap();
        assert_eq!(back, serde_json::json!({ hostile: [hostile] }));
    }

    #[test]
    fn unserializable_value_becomes_a_string_and_the_line_stays_valid() {
        let mut map = std::collections::BTreeMap::new();
        map.insert(vec![1u8], 2u8); // a map with non-string keys cannot be JSON
        let mut buf = Vec::new();
        let mut writer = ContextWriter::open(&mut buf);
        writer.field("ok", &1);
        writer.field("bad", &map);
        writer.finish();
        let value: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(value["ok"], 1);
        assert!(value["bad"].as_str().unwrap().starts_with("[unserializable: "));
    }
}
