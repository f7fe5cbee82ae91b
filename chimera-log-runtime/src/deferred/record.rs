//! The capture format: how a typed event's fields are laid out in its record, written by
//! [`Capture`] on the caller's thread and read back by [`Replayer`] on the writer's.
//!
//! Fields are written in the order the derive lists them. A field on one of the encoder's fast
//! paths (declared `&str` or as a primitive integer) is written bare: the event type's replay
//! function, generated beside its capture, knows its type. Any other field starts with a tag
//! saying what follows, chosen by the value's type where the capture is compiled ([`Value`]),
//! so no type name is trusted by its spelling alone. Native byte order (the record never leaves
//! the process).
//!
//! | field | bytes |
//! |---|---|
//! | `&str` (fast path) | length (`usize`), then the UTF-8 bytes |
//! | primitive integer (fast path) | its bytes (`to_ne_bytes`) |
//! | `String`, `Option<String>`, `Option<&str>` (`Some`) | [`TAG_STR`], length, bytes |
//! | float, `bool`, `char`, integer, an `Option` of one (`Some`) | its tag (see [`Scalar`]), its bytes (`bool` one byte, `char` as `u32`) |
//! | `None` of those `Option`s | [`TAG_NULL`] |
//! | anything else (`Serialize`, `display`) | [`TAG_ENCODED`], length, the JSON value encoded on the caller |
//!
//! A record is read only by the replay function of the type that wrote it; reading past its end
//! (a bug, not an input) gives zeros and empty strings rather than a panic on the writer thread.

use serde::Serialize;

use crate::json::ContextWriter;

/// `None`: the value is JSON `null`.
pub(crate) const TAG_NULL: u8 = 0;
/// A string, written through `Serialize` (as a `String` field is).
pub(crate) const TAG_STR: u8 = 1;
/// A JSON value encoded on the caller.
pub(crate) const TAG_ENCODED: u8 = 2;

/// A value captured by its bytes: integers, floats, `bool` and `char`.
pub trait Scalar: Copy + Serialize + sealed::Sealed {
    #[doc(hidden)]
    const SIZE: usize;
    /// Its tag, when it is written tagged.
    #[doc(hidden)]
    const TAG: u8;
    #[doc(hidden)]
    fn put(self, buf: &mut Vec<u8>);
    /// Reads the value back from exactly [`SIZE`](Self::SIZE) bytes.
    #[doc(hidden)]
    fn take(bytes: &[u8]) -> Self;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! by_bytes {
    ($($ty:ty = $tag:expr),*) => {$(
        impl sealed::Sealed for $ty {}
        impl Scalar for $ty {
            const SIZE: usize = std::mem::size_of::<$ty>();
            const TAG: u8 = $tag;
            #[inline]
            fn put(self, buf: &mut Vec<u8>) {
                buf.extend_from_slice(&self.to_ne_bytes());
            }
            #[inline]
            fn take(bytes: &[u8]) -> Self {
                let mut raw = [0; std::mem::size_of::<$ty>()];
                raw.copy_from_slice(bytes);
                <$ty>::from_ne_bytes(raw)
            }
        }
    )*};
}

by_bytes!(
    u8 = 10,
    u16 = 11,
    u32 = 12,
    u64 = 13,
    u128 = 14,
    usize = 15,
    i8 = 16,
    i16 = 17,
    i32 = 18,
    i64 = 19,
    i128 = 20,
    isize = 21,
    f32 = 22,
    f64 = 23
);

impl sealed::Sealed for bool {}
impl Scalar for bool {
    const SIZE: usize = 1;
    const TAG: u8 = 24;
    #[inline]
    fn put(self, buf: &mut Vec<u8>) {
        buf.push(u8::from(self));
    }
    #[inline]
    fn take(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
}

impl sealed::Sealed for char {}
impl Scalar for char {
    const SIZE: usize = 4;
    const TAG: u8 = 25;
    #[inline]
    fn put(self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&u32::from(self).to_ne_bytes());
    }
    #[inline]
    fn take(bytes: &[u8]) -> Self {
        char::from_u32(u32::take(bytes)).unwrap_or(char::REPLACEMENT_CHARACTER)
    }
}

/// A field's value, for the derive's capture of a field off the fast paths:
/// `(&Value(&self.field)).__chimera_capture(capture, |writer| ..)`. A type the capture knows
/// ([`CaptureValue`]) is copied; any other is encoded by the closure ([`CaptureEncoded`]),
/// which makes the call the line's encoding makes.
#[derive(Debug)]
pub struct Value<'a, T: ?Sized>(pub &'a T);

/// The types a record holds by value (the first choice of the call above).
pub trait CaptureValue {
    #[doc(hidden)]
    fn __chimera_capture(&self, capture: &mut Capture<'_>, encode: impl FnOnce(&mut ContextWriter<'_>));
    /// The bytes `__chimera_capture` writes: it runs none of the user's code, so the record
    /// can be written in place (`LogEvent::__capture_len`).
    #[doc(hidden)]
    fn __chimera_len(&self) -> Option<usize>;
}

/// Any other type: its JSON, encoded now (the call's second choice, through one more `&`).
pub trait CaptureEncoded {
    #[doc(hidden)]
    fn __chimera_capture(&self, capture: &mut Capture<'_>, encode: impl FnOnce(&mut ContextWriter<'_>));
    /// `None`: encoding runs the type's `Serialize`, so the record is captured into a buffer.
    #[doc(hidden)]
    fn __chimera_len(&self) -> Option<usize>;
}

impl<T: ?Sized> CaptureEncoded for &Value<'_, T> {
    #[inline]
    fn __chimera_capture(&self, capture: &mut Capture<'_>, encode: impl FnOnce(&mut ContextWriter<'_>)) {
        capture.encoded(encode);
    }

    #[inline]
    fn __chimera_len(&self) -> Option<usize> {
        None
    }
}

impl<T: Scalar> CaptureValue for Value<'_, T> {
    #[inline]
    fn __chimera_capture(&self, capture: &mut Capture<'_>, _: impl FnOnce(&mut ContextWriter<'_>)) {
        capture.buf.push(T::TAG);
        self.0.put(capture.buf);
    }

    #[inline]
    fn __chimera_len(&self) -> Option<usize> {
        Some(1 + T::SIZE)
    }
}

impl<T: Scalar> CaptureValue for Value<'_, Option<T>> {
    #[inline]
    fn __chimera_capture(&self, capture: &mut Capture<'_>, encode: impl FnOnce(&mut ContextWriter<'_>)) {
        match self.0 {
            None => capture.buf.push(TAG_NULL),
            Some(value) => Value(value).__chimera_capture(capture, encode),
        }
    }

    #[inline]
    fn __chimera_len(&self) -> Option<usize> {
        Some(if self.0.is_some() { 1 + T::SIZE } else { 1 })
    }
}

impl CaptureValue for Value<'_, String> {
    #[inline]
    fn __chimera_capture(&self, capture: &mut Capture<'_>, _: impl FnOnce(&mut ContextWriter<'_>)) {
        capture.tagged_str(self.0);
    }

    #[inline]
    fn __chimera_len(&self) -> Option<usize> {
        Some(tagged_str_len(self.0))
    }
}

/// `Option<String>` and `Option<&str>`: `None` as [`TAG_NULL`], a string as [`TAG_STR`].
macro_rules! optional_str {
    ($($ty:ty),*) => {$(
        impl CaptureValue for Value<'_, $ty> {
            #[inline]
            fn __chimera_capture(&self, capture: &mut Capture<'_>, _: impl FnOnce(&mut ContextWriter<'_>)) {
                match self.0.as_deref() {
                    None => capture.buf.push(TAG_NULL),
                    Some(value) => capture.tagged_str(value),
                }
            }

            #[inline]
            fn __chimera_len(&self) -> Option<usize> {
                Some(self.0.as_deref().map_or(1, tagged_str_len))
            }
        }
    )*};
}

optional_str!(Option<String>, Option<&str>);

/// The bytes [`Capture::tagged_str`] writes for `value`.
#[inline]
fn tagged_str_len(value: &str) -> usize {
    1 + size_of::<usize>() + value.len()
}

/// A field spelt `&str`, for the derive's `__capture_len`:
/// `(&StrLen(&self.field)).__chimera_str_len()` is the bytes [`Capture::str`] writes for it when
/// its type is core's `str` ([`CoreStr`]), and `None` for a type of the user's merely named `str`
/// ([`OtherStr`]): its capture goes through the type's `Deref`, the user's code, which must not
/// run under the queue's lock (nor may its length be trusted to stay the same).
#[derive(Debug)]
pub struct StrLen<'a, T: ?Sized>(pub &'a T);

/// Core's `str` (the call's first choice).
pub trait CoreStr {
    #[doc(hidden)]
    fn __chimera_str_len(&self) -> Option<usize>;
}

/// Any other type (the call's second choice, through one more `&`).
pub trait OtherStr {
    #[doc(hidden)]
    fn __chimera_str_len(&self) -> Option<usize>;
}

impl CoreStr for StrLen<'_, &str> {
    #[inline]
    fn __chimera_str_len(&self) -> Option<usize> {
        Some(size_of::<usize>() + self.0.len())
    }
}

impl<T: ?Sized> OtherStr for &StrLen<'_, T> {
    #[inline]
    fn __chimera_str_len(&self) -> Option<usize> {
        None
    }
}

/// Writes an event's fields into its record (the derive's generated `capture`).
#[derive(Debug)]
pub struct Capture<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Capture<'a> {
    pub(crate) fn new(buf: &'a mut Vec<u8>) -> Self {
        Capture { buf }
    }

    #[inline]
    fn len(&mut self, len: usize) {
        self.buf.extend_from_slice(&len.to_ne_bytes());
    }

    /// A field declared `&str` (the fast path: no tag).
    #[inline]
    pub fn str(&mut self, value: &str) {
        self.len(value.len());
        self.buf.extend_from_slice(value.as_bytes());
    }

    /// A field declared as a primitive integer (the fast path: no tag).
    #[inline]
    pub fn scalar<T: Scalar>(&mut self, value: T) {
        value.put(self.buf);
    }

    #[inline]
    fn tagged_str(&mut self, value: &str) {
        self.buf.push(TAG_STR);
        self.str(value);
    }

    /// Any other field (another `Serialize` type, or `#[log(display)]`): its JSON value, which
    /// `write` encodes now, on the caller's thread, with the same call the line's encoding makes
    /// (the derive passes it, so a type error in it is reported once).
    pub fn encoded(&mut self, write: impl FnOnce(&mut ContextWriter<'_>)) {
        self.buf.push(TAG_ENCODED);
        let at = self.buf.len();
        self.len(0);
        write(&mut ContextWriter::value_only(self.buf));
        let len = self.buf.len() - at - size_of::<usize>();
        self.buf[at..at + size_of::<usize>()].copy_from_slice(&len.to_ne_bytes());
    }
}

/// Reads an event's fields back from its record (the derive's generated replay function).
#[derive(Debug)]
pub struct Replayer<'a> {
    rest: &'a [u8],
}

impl<'a> Replayer<'a> {
    pub(crate) fn new(record: &'a [u8]) -> Self {
        Replayer { rest: record }
    }

    /// The next `n` bytes (fewer at the record's end, which only a bug reaches).
    #[inline]
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = rest;
        taken
    }

    #[inline]
    fn len(&mut self) -> usize {
        let bytes = self.bytes(size_of::<usize>());
        if bytes.len() < size_of::<usize>() {
            return 0;
        }
        usize::take(bytes)
    }

    /// A field written by [`Capture::str`], as its bytes (UTF-8, from a `&str`), for the
    /// string fast path's escaper, which reads bytes and need not check them again.
    #[inline]
    pub fn str_bytes(&mut self) -> &'a [u8] {
        let len = self.len();
        self.bytes(len)
    }

    /// A field written by [`Capture::str`].
    #[inline]
    pub fn str(&mut self) -> &'a str {
        let len = self.len();
        // Written from a `&str`: always UTF-8.
        std::str::from_utf8(self.bytes(len)).unwrap_or_default()
    }

    /// A field written by [`Capture::scalar`].
    #[inline]
    pub fn scalar<T: Scalar>(&mut self) -> T {
        let bytes = self.bytes(T::SIZE);
        if bytes.len() < T::SIZE {
            return T::take(&[0; 16][..T::SIZE]);
        }
        T::take(bytes)
    }

    /// A field written tagged (through [`Value`] or [`Capture::encoded`]): writes its JSON as the
    /// line's encoding on the caller would have.
    pub fn value(&mut self, writer: &mut ContextWriter<'_>) {
        macro_rules! scalars {
            ($tag:expr, $($ty:ty),*) => {
                match $tag {
                    $(<$ty as Scalar>::TAG => writer.serialize(&self.scalar::<$ty>()),)*
                    _ => writer.raw(b"null"),
                }
            };
        }
        match self.bytes(1).first().copied().unwrap_or(TAG_NULL) {
            TAG_NULL => writer.raw(b"null"),
            TAG_STR => writer.serialize(self.str()),
            TAG_ENCODED => {
                let len = self.len();
                writer.raw(self.bytes(len));
            }
            tag => scalars!(tag, u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64, bool, char),
        }
    }

    /// What is left after the fields (nothing, unless a replay function is wrong).
    #[cfg(test)]
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line's bytes for one field value, through the record.
    fn replayed(capture: impl FnOnce(&mut Capture<'_>)) -> String {
        let mut record = Vec::new();
        capture(&mut Capture::new(&mut record));
        let mut line = Vec::new();
        let mut replay = Replayer::new(&record);
        replay.value(&mut ContextWriter::value_only(&mut line));
        assert!(replay.rest().is_empty(), "the whole record is read");
        String::from_utf8(line).unwrap()
    }

    fn through_value<T>(value: &T) -> String
    where
        for<'a> Value<'a, T>: CaptureValue,
    {
        replayed(|capture| Value(value).__chimera_capture(capture, |_| unreachable!("captured by value")))
    }

    #[test]
    fn every_tagged_kind_replays_as_serde_json_writes_it() {
        assert_eq!(through_value(&u128::MAX), serde_json::to_string(&u128::MAX).unwrap());
        assert_eq!(through_value(&-7i8), "-7");
        assert_eq!(through_value(&f64::NAN), "null");
        assert_eq!(through_value(&-0.0f64), serde_json::to_string(&-0.0f64).unwrap());
        assert_eq!(through_value(&1.5e300f64), serde_json::to_string(&1.5e300f64).unwrap());
        assert_eq!(through_value(&0.1f32), serde_json::to_string(&0.1f32).unwrap());
        assert_eq!(through_value(&true), "true");
        assert_eq!(through_value(&'\u{7}'), serde_json::to_string(&'\u{7}').unwrap());
        assert_eq!(through_value(&None::<u64>), "null");
        assert_eq!(through_value(&Some(3usize)), "3");
        let text = "a \"quoted\" é \u{1}\n".to_owned();
        assert_eq!(through_value(&text), serde_json::to_string(&text).unwrap());
        assert_eq!(through_value(&Some(text.clone())), serde_json::to_string(&text).unwrap());
        assert_eq!(through_value(&Some(text.as_str())), serde_json::to_string(&text).unwrap());
        assert_eq!(through_value(&None::<&str>), "null");
        assert_eq!(replayed(|capture| capture.encoded(|writer| writer.serialize(&vec![1, 2]))), "[1,2]");
    }

    #[test]
    fn fast_path_fields_read_back_bare() {
        let mut record = Vec::new();
        let mut capture = Capture::new(&mut record);
        capture.str("a \"quoted\" é");
        capture.scalar(i128::MIN);
        let mut replay = Replayer::new(&record);
        assert_eq!(replay.str(), "a \"quoted\" é");
        assert_eq!(replay.scalar::<i128>(), i128::MIN);
        assert!(replay.rest().is_empty());
    }

    #[test]
    fn reading_past_the_end_of_a_record_gives_zeros_not_a_panic() {
        let mut replay = Replayer::new(&[1, 2, 3]);
        assert_eq!(replay.scalar::<u64>(), 0);
        assert_eq!(replay.str(), "");
        let mut line = Vec::new();
        replay.value(&mut ContextWriter::value_only(&mut line));
        assert_eq!(line, b"null");
        let mut replay = Replayer::new(&[TAG_ENCODED, 200]);
        replay.value(&mut ContextWriter::value_only(&mut line));
    }
}
