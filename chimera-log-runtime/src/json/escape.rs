//! JSON strings: how text, a `Display` value or a `Serialize` value's strings are escaped into a
//! line.
//!
//! This module owns the promise that no input can end a line early or forge a second record:
//! every string reaches a line through [`escape_into`] or through serde_json with
//! [`LineFormatter`]. It writes string contents and whole strings only, never a key or an object.

use std::fmt::{self, Display, Write as _};
use std::mem::MaybeUninit;

use serde::Serialize;

/// Appends `s` escaped as the inside of a JSON string: quotes, backslashes, every control
/// character (newlines included) and the line separators U+0085, U+2028 and U+2029 are escaped,
/// the rest is copied as is.
///
/// The usual string has nothing to escape: it is tested sixteen bytes at a time and each block
/// stored as it was loaded (a few stores, rather than a scan and then a `memcpy` call, which
/// costs more than the copy for strings this short). A string of up to sixteen bytes is one
/// test of its first and last eight bytes (overlapping when shorter), a longer one ends with its
/// last sixteen bytes, overlapping the block before: no loop over single bytes. At the first
/// block that may need escaping, the rest goes through [`escape_from`].
#[inline]
pub(super) fn escape_into(buf: &mut Vec<u8>, s: &str) {
    escape_with::<false>(buf, s.as_bytes());
}

/// [`escape_into`] for the bytes of a string (UTF-8 that was a `&str`: deferred encoding's
/// record keeps a string's bytes, and reading them back as `&str` would check them again).
/// Bytes that are not UTF-8 come out as they went in, unescaped but for ASCII.
pub(super) fn escape_bytes_into(buf: &mut Vec<u8>, bytes: &[u8]) {
    escape_with::<false>(buf, bytes);
}

/// Appends `"s"` escaped as serde_json escapes a string (with [`LineFormatter`]'s line
/// separators): as [`escape_into`], except that a backspace and a form feed are the short `\b`
/// and `\f`, not `\u0008` and `\u000c`. A `&str` captured from `tracing` has always been
/// written through serde_json, and its lines stay as they were; this writes them at
/// [`escape_into`]'s speed.
#[cfg(any(test, feature = "tracing"))]
#[inline]
pub(crate) fn quoted_as_serde_json_into(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    escape_with::<true>(buf, s.as_bytes());
    buf.push(b'"');
}

/// [`escape_into`], with serde_json's `\b` and `\f` when `SHORT_BF`.
#[inline(always)]
fn escape_with<const SHORT_BF: bool>(buf: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len();
    let start = buf.len();
    // Room for the string and the padding a string shorter than a word is stored with.
    buf.reserve(len + 8);
    let room = &mut buf.spare_capacity_mut()[..len + 8];
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"));
    if len < 8 {
        let padded = padded_word(bytes);
        if needs_escape(padded) {
            commit(buf, start, 0);
            return escape_from::<SHORT_BF>(buf, bytes);
        }
        // The padding past the end is stored but not committed.
        store_word(room, 0, padded);
    } else if len <= 16 {
        let (first, last) = (word(0), word(len - 8));
        if pair_needs_escape(first, last) {
            commit(buf, start, 0);
            return escape_from::<SHORT_BF>(buf, bytes);
        }
        store_word(room, 0, first);
        store_word(room, len - 8, last);
    } else {
        let mut done = 0;
        while done + 16 <= len {
            let (low, high) = (word(done), word(done + 8));
            if pair_needs_escape(low, high) {
                // `done` follows whole blocks of ASCII: a character boundary.
                commit(buf, start, done);
                return escape_from::<SHORT_BF>(buf, &bytes[done..]);
            }
            store_word(room, done, low);
            store_word(room, done + 8, high);
            done += 16;
        }
        if done < len {
            // The last sixteen bytes, overlapping some already stored (stored again).
            let (low, high) = (word(len - 16), word(len - 8));
            if pair_needs_escape(low, high) {
                commit(buf, start, done);
                return escape_from::<SHORT_BF>(buf, &bytes[done..]);
            }
            store_word(room, len - 16, low);
            store_word(room, len - 8, high);
        }
    }
    commit(buf, start, len);
}

/// Whether any of the sixteen bytes of two words needs escaping (see [`needs_escape`]): on
/// x86_64 three SSE2 compares and one mask (a signed compare below the space catches both the
/// control characters and every byte of a non-ASCII character).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
#[target_feature(enable = "sse2")]
fn sse2_pair_needs_escape(low: u64, high: u64) -> bool {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_set_epi64x,
    };
    let v = _mm_set_epi64x(high as i64, low as i64);
    let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
    let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
    let below_space = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20));
    _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), below_space)) != 0
}

/// Whether any of the sixteen bytes of two words needs escaping (see [`needs_escape`]).
#[inline(always)]
fn pair_needs_escape(low: u64, high: u64) -> bool {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        // SAFETY: SSE2 is enabled for the whole build (the `cfg` above; it is part of the
        // x86_64 baseline), so the CPU running this code has it.
        unsafe { sse2_pair_needs_escape(low, high) }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        needs_escape(low) || needs_escape(high)
    }
}

/// Stores `word` at `at` in the room past a buffer's end.
#[inline(always)]
fn store_word(room: &mut [MaybeUninit<u8>], at: usize, word: u64) {
    room[at..at + 8].copy_from_slice(&word.to_le_bytes().map(MaybeUninit::new));
}

/// Makes the `len` bytes stored past `start`, `buf`'s end, part of it.
#[inline(always)]
fn commit(buf: &mut Vec<u8>, start: usize, len: usize) {
    debug_assert!(start + len <= buf.capacity());
    // SAFETY: the callers (`escape_into`, `push_short`) pass `start`, the buffer's length before
    // they reserved room past it, and `len` bytes of that room they stored: every byte in
    // `start..start + len` lies in a word `store_word` wrote (on each of their paths the words
    // stored cover `0..len` without a gap: from the start, and the last one ending at `len`),
    // so all of them are initialised.
    unsafe { buf.set_len(start + len) }
}

/// Whether `s` is written in a JSON string as it is: printable ASCII, no quote, no backslash.
pub(crate) const fn is_plain(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        if !matches!(bytes[at], 0x20..=0x7e) || bytes[at] == b'"' || bytes[at] == b'\\' {
            return false;
        }
        at += 1;
    }
    true
}

/// Appends `bytes` (already JSON), in a few word stores when short (up to 32 bytes: words
/// from each end, overlapping in the middle): the stores of [`escape_into`] without the test,
/// for text escaped once and copied into every line. No loop, which the compiler would turn
/// into a `memcpy` call costing more than the copy; always inlined, for the same reason (a
/// captured event makes eight of these copies: 5 % of its instructions were calls and returns).
#[inline(always)]
pub(crate) fn push_short(buf: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len();
    if len > 32 {
        return buf.extend_from_slice(bytes);
    }
    let start = buf.len();
    buf.reserve(len + 8);
    let room = &mut buf.spare_capacity_mut()[..len + 8];
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"));
    if len < 8 {
        store_word(room, 0, padded_word(bytes));
    } else {
        store_word(room, 0, word(0));
        if len > 16 {
            store_word(room, 8, word(8));
            store_word(room, len - 16, word(len - 16));
        }
        store_word(room, len - 8, word(len - 8));
    }
    commit(buf, start, len);
}

/// Up to eight bytes as one word, padded with spaces (nothing to escape). Built in a register
/// from two loads that may overlap (a copy to memory read back as one word would stall the
/// load, and a loop over the bytes costs more than the rest of a short string's escaping).
#[inline(always)]
fn padded_word(bytes: &[u8]) -> u64 {
    let len = bytes.len().min(8);
    let spaces = u64::from_le_bytes([b' '; 8]);
    let word = match len {
        0 => return spaces,
        8 => return u64::from_le_bytes(bytes[..8].try_into().expect("eight bytes")),
        // The first four and the last four: where they overlap they hold the same bytes.
        4..=7 => {
            let half = |at: usize| u64::from(u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes")));
            half(0) | half(len - 4) << (8 * (len - 4))
        }
        _ => {
            let byte = |at: usize| u64::from(bytes[at]) << (8 * at);
            byte(0) | byte(len / 2) | byte(len - 1)
        }
    };
    word | spaces & !(u64::MAX >> (64 - 8 * len))
}

/// Appends `bytes` escaped (see [`escape_into`]; serde_json's `\b` and `\f` when `SHORT_BF`);
/// `bytes` is valid UTF-8 from a whole character on. Runs without anything to escape are still
/// found a word at a time and copied whole.
fn escape_from<const SHORT_BF: bool>(buf: &mut Vec<u8>, bytes: &[u8]) {
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
            [0x08, ..] if SHORT_BF => (b"\\b", 1),
            [0x0c, ..] if SHORT_BF => (b"\\f", 1),
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

/// [`quoted_into`] for a string's bytes (see [`escape_bytes_into`]).
#[inline]
pub(crate) fn quoted_bytes_into(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.push(b'"');
    escape_bytes_into(buf, bytes);
    buf.push(b'"');
}

/// Appends `value`'s `Display` output as an escaped JSON string; if `Display` returns an error,
/// a string saying so instead.
pub(crate) fn write_display_string<T: Display + ?Sized>(buf: &mut Vec<u8>, value: &T) {
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
        for len in 0..50 {
            for at in 0..len.max(1) {
                for &special in &specials {
                    let text: String = (0..len).map(|i| if i == at { special } else { 'a' }).collect();
                    // A buffer with no room to spare: `escape_into` reserves its own.
                    let mut buf = Vec::with_capacity(1);
                    buf.push(b'"');
                    escape_into(&mut buf, &text);
                    buf.push(b'"');
                    let parsed: String = serde_json::from_slice(&buf).unwrap();
                    assert_eq!(parsed, text);
                }
            }
        }
    }

    #[test]
    fn escape_into_and_push_short_agree_with_serde_json_on_random_strings_after_random_prefixes() {
        // Strings of 0 to 99 characters drawn from ASCII, every kind of escape and multi-byte
        // characters (the line separators among them), each appended after a prefix of random
        // length to a buffer with random spare room; a small xorshift keeps the run repeatable.
        let alphabet: Vec<char> = ('a'..='z')
            .chain([
                ' ', '"', '\\', '\n', '\t', '\u{0}', '\u{1f}', '\u{7f}', 'é', '€', '\u{85}', '\u{2028}', '\u{2029}',
                '😀',
            ])
            .collect();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        for _ in 0..20_000 {
            let len = next(100);
            // Mostly plain text, so that long clean runs (the block paths) are common.
            let text: String = (0..len)
                .map(|_| if next(8) == 0 { alphabet[26 + next(alphabet.len() - 26)] } else { alphabet[next(26)] })
                .collect();
            let prefix = vec![b'p'; next(40)];
            let mut buf = Vec::with_capacity(prefix.len() + next(24));
            buf.extend_from_slice(&prefix);
            escape_into(&mut buf, &text);
            let parsed: String = serde_json::from_slice(&[b"\"", &buf[prefix.len()..], b"\""].concat()).unwrap();
            assert_eq!(parsed, text, "escaped {text:?} as {:?}", String::from_utf8_lossy(&buf));
            assert_eq!(&buf[..prefix.len()], &prefix[..], "the prefix is untouched");
            let escaped = std::str::from_utf8(&buf[prefix.len()..]).unwrap();
            assert!(
                !escaped.contains(|c: char| c < ' ' || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}')),
                "{escaped:?}"
            );
            // `push_short` copies what it is given, exactly.
            let mut copy = Vec::with_capacity(prefix.len() + next(24));
            copy.extend_from_slice(&prefix);
            push_short(&mut copy, text.as_bytes());
            assert_eq!(copy, [&prefix[..], text.as_bytes()].concat());
        }
    }

    #[test]
    fn quoted_as_serde_json_writes_exactly_the_bytes_serde_json_writes_for_a_str() {
        // Every special character at every position of short and long strings, then random
        // strings: the bytes must be serde_json's (through `LineFormatter`), not merely
        // equivalent JSON.
        let specials: Vec<char> = (0u8..0x20)
            .map(char::from)
            .chain(['"', '\\', '\u{7f}', 'é', '\u{85}', '\u{2028}', '\u{2029}', '😀', 'z'])
            .collect();
        let mut texts: Vec<String> = Vec::new();
        for len in [1, 7, 8, 9, 16, 17, 31, 40] {
            for at in 0..len {
                for &special in &specials {
                    texts.push((0..len).map(|i| if i == at { special } else { 'a' }).collect());
                }
            }
        }
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        for _ in 0..5_000 {
            let len = next(60);
            texts.push((0..len).map(|_| if next(4) == 0 { specials[next(specials.len())] } else { 'q' }).collect());
        }
        for text in &texts {
            let mut ours = b"prefix".to_vec();
            quoted_as_serde_json_into(&mut ours, text);
            let mut theirs = b"prefix".to_vec();
            serialize_into(&mut theirs, text.as_str()).unwrap();
            assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs), "{text:?}");
        }
    }

    #[test]
    fn a_plain_string_is_one_escaping_leaves_as_it_is() {
        let samples = [
            "",
            "a",
            "liquidation_attempt",
            "custom.name",
            "with space",
            "~!@#$%^&*()",
            "quote\"",
            "back\\slash",
            "new\nline",
            "tab\t",
            "\u{7f}",
            "é",
            "\u{2028}",
        ];
        for sample in samples {
            let mut escaped = Vec::new();
            escape_into(&mut escaped, sample);
            let unchanged = escaped == sample.as_bytes() && sample.is_ascii() && !sample.contains('\u{7f}');
            assert_eq!(is_plain(sample), unchanged, "{sample:?}");
        }
        // Usable where typed events use it: in a `const` block.
        const { assert!(is_plain("state_divergence") && !is_plain("a\"b")) };
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
