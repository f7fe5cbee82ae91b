//! The line's `context` object: [`ContextWriter`] for typed events, [`write_adhoc_context`] for
//! ad-hoc ones.
//!
//! This module makes sure the context is always one JSON object, whatever the event holds. It
//! writes nothing outside the context's braces, and leaves escaping to `escape` and repeated
//! keys to `keys`.

use std::fmt::{self, Display};

use serde::Serialize;

use super::escape::{
    escape_into, quoted_bytes_into, quoted_into, serialize_into, write_display_string, write_unwritable,
};
use super::keys::make_keys_unique;

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
    #[inline]
    pub(crate) fn open(buf: &'a mut Vec<u8>) -> Self {
        buf.push(b'{');
        let start = buf.len();
        ContextWriter { buf, start }
    }

    /// Goes on with the context object `buf` holds from its first byte, still open (its `{` and
    /// the members written so far, no `}`); [`ContextWriter::finish`] is not needed if the
    /// caller closes it.
    #[cfg(feature = "tracing")]
    pub(crate) fn reopened(buf: &'a mut Vec<u8>) -> Self {
        debug_assert_eq!(buf.first(), Some(&b'{'));
        ContextWriter { buf, start: 1 }
    }

    /// A writer of one value into `buf`, not a whole object (deferred encoding's record of a
    /// field encoded on the caller).
    #[inline]
    pub(crate) fn value_only(buf: &'a mut Vec<u8>) -> Self {
        let start = buf.len();
        ContextWriter { buf, start }
    }

    #[inline]
    pub(crate) fn finish(self) {
        self.buf.push(b'}');
    }

    /// Starts member `key` as an array (`first`), or the array's next item: the caller then
    /// writes the item's JSON into [`buf_mut`](Self::buf_mut), and closes the array with `]`.
    #[cfg(feature = "tracing")]
    pub(crate) fn raw_list_item(&mut self, key: &str, first: bool) {
        if first {
            self.key(key);
            self.buf.push(b'[');
        } else {
            self.buf.push(b',');
        }
    }

    /// The line being written, for JSON the caller encodes itself.
    #[cfg(feature = "tracing")]
    pub(crate) fn buf_mut(&mut self) -> &mut Vec<u8> {
        self.buf
    }

    /// Writes one member whose value is JSON already (`raw` must be one valid JSON value).
    #[cfg(feature = "tracing")]
    pub(crate) fn field_raw(&mut self, key: &str, raw: &[u8]) {
        self.key(key);
        self.buf.extend_from_slice(raw);
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

    #[inline]
    fn key(&mut self, key: &str) {
        if self.buf.len() > self.start {
            self.buf.push(b',');
        }
        self.buf.push(b'"');
        escape_into(self.buf, key);
        self.buf.extend_from_slice(b"\":");
    }

    #[inline]
    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Writes `value` through serde_json (see [`write_serialized`]).
    pub(crate) fn serialize<T: Serialize + ?Sized>(&mut self, value: &T) {
        write_serialized(self.buf, value);
    }

    pub(crate) fn display<T: Display + ?Sized>(&mut self, value: &T) {
        write_display_string(self.buf, value);
    }

    #[inline]
    pub(crate) fn str_value(&mut self, value: &str) {
        quoted_into(self.buf, value);
    }

    /// A string's bytes, as [`str_value`](Self::str_value) writes the string.
    #[inline]
    pub(crate) fn str_bytes_value(&mut self, bytes: &[u8]) {
        quoted_bytes_into(self.buf, bytes);
    }

    #[inline]
    pub(crate) fn integer<I: itoa::Integer>(&mut self, value: I) {
        self.buf.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    #[inline]
    pub(crate) fn redacted(&mut self) {
        self.buf.extend_from_slice(b"\"[REDACTED]\"");
    }
}

/// Writes `value` through serde_json. A value that fails to serialize (a map with non-string
/// keys, a `Serialize` impl returning an error) is replaced by a string saying so, keeping the
/// line valid JSON. An object or list is checked for repeated keys (a hand-written `Serialize`
/// may write one twice), renamed by the rule of `keys`; a number or a string costs one look at
/// its first byte.
fn write_serialized<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) {
    let at = buf.len();
    match serialize_into(buf, value) {
        Ok(()) if matches!(buf.get(at), Some(b'{' | b'[')) => make_keys_unique(buf, at),
        Ok(()) => {}
        Err(error) => {
            buf.truncate(at);
            write_unwritable(buf, &error);
        }
    }
}

/// Appends `value` as serde_json writes an `f64` (what a captured float has always been): the
/// shortest text that reads back as the same number, `null` when it is not finite.
#[cfg(feature = "tracing")]
pub(crate) fn float_into(buf: &mut Vec<u8>, value: f64) {
    write_serialized(buf, &value);
}

/// Writes an ad-hoc context: a value serializing to an object is the context itself; `()`,
/// `None` or a unit struct is an empty context; anything else (a string, a number, a list, a
/// NaN written as `null`, a value that failed to serialize) is wrapped as `{"value": ...}` so
/// the context is always an object.
pub(crate) fn write_adhoc_context<T: Serialize + ?Sized>(buf: &mut Vec<u8>, context: &T) {
    let at = buf.len();
    write_serialized(buf, context);
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

/// [`IsNothing`]'s methods that answer without looking inside: `Ok(answer)` for a value, `Err`
/// for a compound, which is never nothing and need not be walked.
macro_rules! answer {
    (Ok($answer:literal): $($method:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $method(self, $(_: $arg),*) -> Result<bool, NotNothing> { Ok($answer) })*
    };
    (Err: $($method:ident($($arg:ty),*) -> $compound:ident),* $(,)?) => {
        $(fn $method(self, $(_: $arg),*) -> Result<Self::$compound, NotNothing> { Err(NotNothing) })*
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

    answer!(Ok(true): serialize_none(), serialize_unit(), serialize_unit_struct(&'static str));

    answer!(Ok(false):
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

    answer!(Err:
        serialize_seq(Option<usize>) -> SerializeSeq,
        serialize_tuple(usize) -> SerializeTuple,
        serialize_tuple_struct(&'static str, usize) -> SerializeTupleStruct,
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> SerializeTupleVariant,
        serialize_map(Option<usize>) -> SerializeMap,
        serialize_struct(&'static str, usize) -> SerializeStruct,
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> SerializeStructVariant,
    );

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
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn adhoc_context_that_fails_to_serialize_is_a_wrapped_placeholder() {
        let map = std::collections::BTreeMap::from([(vec![1u8], 2u8)]);
        let error = serde_json::to_vec(&map).unwrap_err();
        let mut buf = b"prefix".to_vec();
        write_adhoc_context(&mut buf, &map);
        let expected = format!("{{\"value\":\"[unserializable: {error}]\"}}");
        assert_eq!(std::str::from_utf8(&buf[6..]).unwrap(), expected);
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
