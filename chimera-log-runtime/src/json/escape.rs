//! JSON strings: how text, a `Display` value or a `Serialize` value's strings are escaped into a
//! line.
//!
//! This module owns the promise that no input can end a line early or forge a second record:
//! every string reaches a line through [`escape_into`] or through serde_json with
//! [`LineFormatter`]. It writes string contents and whole strings only, never a key or an object.

use std::fmt::{self, Display, Write as _};

use serde::Serialize;

/// Appends `s` escaped as the inside of a JSON string: quotes, backslashes, every control
/// character (newlines included) and the line separators U+0085, U+2028 and U+2029 are escaped,
/// the rest is copied as is.
///
/// The usual string has nothing to escape: it is read eight bytes at a time, and each word that
/// needs no escaping is stored as it was loaded (one store, rather than a scan and then a
/// `memcpy` call, which costs more than the copy for strings this short). At the first word that
/// may need escaping, the rest goes through [`escape_from`].
#[inline]
pub(super) fn escape_into(buf: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let start = buf.len();
    // Room for the string and the one word the tail may store past its end.
    buf.reserve(bytes.len() + 8);
    let mut words = bytes.chunks_exact(8);
    let mut done = 0;
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().expect("an 8-byte chunk"));
        if needs_escape(word) {
            // `done` follows whole words of ASCII: a character boundary.
            return escape_from(buf, &bytes[done..]);
        }
        buf.extend_from_slice(&word.to_le_bytes());
        done += 8;
    }
    let rest = words.remainder();
    if rest.is_empty() {
        return;
    }
    match bytes.len().checked_sub(8) {
        // The last eight bytes, overlapping some already stored: one load, and one store over
        // the same bytes again.
        Some(from) => {
            let last = u64::from_le_bytes(bytes[from..].try_into().expect("eight bytes"));
            if needs_escape(last) {
                return escape_from(buf, rest);
            }
            buf.truncate(start + from);
            buf.extend_from_slice(&last.to_le_bytes());
        }
        // Shorter than a word: stored padded, the padding cut off again.
        None => {
            let last = padded_word(rest);
            if needs_escape(last) {
                return escape_from(buf, rest);
            }
            buf.extend_from_slice(&last.to_le_bytes());
            buf.truncate(start + bytes.len());
        }
    }
}

/// Appends `bytes` (already JSON), a word at a time when short: the same stores as
/// [`escape_into`] without the test, for text escaped once and copied into every line.
#[inline]
pub(crate) fn push_short(buf: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.len() > 64 {
        return buf.extend_from_slice(bytes);
    }
    let start = buf.len();
    buf.reserve(bytes.len() + 8);
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let word: [u8; 8] = word.try_into().expect("an 8-byte chunk");
        buf.extend_from_slice(&word);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        buf.extend_from_slice(&padded_word(rest).to_le_bytes());
        buf.truncate(start + bytes.len());
    }
}

/// Up to eight bytes as one word, padded with spaces (nothing to escape). Built in a register: a
/// copy to memory then read as one word would stall the load.
#[inline]
fn padded_word(bytes: &[u8]) -> u64 {
    bytes.iter().take(8).enumerate().fold(u64::from_le_bytes([b' '; 8]), |word, (at, &byte)| {
        word & !(0xff << (8 * at)) | u64::from(byte) << (8 * at)
    })
}

/// Appends `bytes` escaped (see [`escape_into`]); `bytes` is valid UTF-8 from a whole character
/// on. Runs without anything to escape are still found a word at a time and copied whole.
fn escape_from(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.reserve(bytes.len() + 2);
    let mut run_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let word = match bytes.get(i..i + 8) {
            Some(chunk) => u64::from_le_bytes(chunk.try_into().expect("an 8-byte slice")),
            // The last eight bytes, overlapping some already looked at (they pass again).
            None if bytes.len() >= 8 => {
                u64::from_le_bytes(bytes[bytes.len() - 8..].try_into().expect("an 8-byte slice"))
            }
            None => padded_word(&bytes[i..]),
        };
        if !needs_escape(word) {
            i += 8;
            continue;
        }
        // The escape, and the length of the UTF-8 sequence it replaces.
        let (escape, len): (&[u8], usize) = match &bytes[i..] {
            [b'"', ..] => (b"\\\"", 1),
            [b'\\', ..] => (b"\\\\", 1),
            [b'\n', ..] => (b"\\n", 1),
            [b'\r', ..] => (b"\\r", 1),
            [b'\t', ..] => (b"\\t", 1),
            [control @ 0x00..=0x1f, ..] => (&CONTROL_ESCAPES[usize::from(*control)], 1),
            // U+0085 is C2 85; U+2028 and U+2029 are E2 80 A8 and E2 80 A9.
            [0xc2, 0x85, ..] => (b"\\u0085", 2),
            [0xe2, 0x80, 0xa8, ..] => (b"\\u2028", 3),
            [0xe2, 0x80, 0xa9, ..] => (b"\\u2029", 3),
            _ => {
                i += 1;
                continue;
            }
        };
        buf.extend_from_slice(&bytes[run_start..i]);
        buf.extend_from_slice(escape);
        i += len;
        run_start = i;
    }
    buf.extend_from_slice(&bytes[run_start..]);
}

/// `\u00xx` for each control character, indexed by the character.
const CONTROL_ESCAPES: [[u8; 6]; 0x20] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0; 6]; 0x20];
    let mut b = 0;
    while b < table.len() {
        table[b] = [b'\\', b'u', b'0', b'0', HEX[b >> 4], HEX[b & 0xf]];
        b += 1;
    }
    table
};

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
#[inline]
pub(crate) fn quoted_into(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    escape_into(buf, s);
    buf.push(b'"');
}

/// Appends `value`'s `Display` output as an escaped JSON string; if `Display` returns an error,
/// a string saying so instead.
pub(super) fn write_display_string<T: Display + ?Sized>(buf: &mut Vec<u8>, value: &T) {
    let at = buf.len();
    buf.push(b'"');
    if write!(Escaper(buf), "{value}").is_err() {
        buf.truncate(at);
        write_unwritable(buf, &"its Display impl returned an error");
        return;
    }
    buf.push(b'"');
}

/// Appends the string that stands in for a value that could not be written, so the line stays
/// valid JSON: `"[unserializable: <reason>]"`.
pub(super) fn write_unwritable(buf: &mut Vec<u8>, reason: &dyn Display) {
    buf.extend_from_slice(b"\"[unserializable: ");
    let _ = write!(Escaper(buf), "{reason}");
    buf.extend_from_slice(b"]\"");
}

/// `fmt::Write` adapter escaping everything written through it.
struct Escaper<'a>(&'a mut Vec<u8>);

impl fmt::Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

/// Writes `value` as compact JSON, as serde_json does, except that strings also escape U+0085,
/// U+2028 and U+2029: valid JSON either way, but line splitters of other languages (JavaScript,
/// Python's `str.splitlines`) break lines there, and one event must stay one line for them too.
pub(super) fn serialize_into<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) -> serde_json::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_into_escapes_quotes_backslashes_and_every_control_character() {
        let mut buf = Vec::new();
        escape_into(&mut buf, "a\"b\\c\nd\re\tf\u{0}\u{1f}\u{7f}é");
        assert_eq!(String::from_utf8(buf).unwrap(), "a\\\"b\\\\c\\nd\\re\\tf\\u0000\\u001f\u{7f}é");
    }

    #[test]
    fn escape_into_agrees_with_serde_json_on_every_position_of_every_special_byte() {
        let specials: Vec<char> = (0u8..0x20).map(char::from).chain(['"', '\\', 'é', '\u{2028}', 'z']).collect();
        for len in 0..40 {
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
    fn push_short_appends_exactly_the_bytes_whatever_their_length_and_whatever_came_before() {
        for len in 0..100 {
            let bytes: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let mut buf = b"prefix".to_vec();
            push_short(&mut buf, &bytes);
            assert_eq!(buf, [&b"prefix"[..], &bytes].concat(), "length {len}");
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
}
