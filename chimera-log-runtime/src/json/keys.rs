//! A key never repeats in an object of a line: the one rule for a key written twice, and its
//! application to JSON that serde wrote.
//!
//! The rule ([`rename_repeats`]): in each object, the first member written under a key keeps it;
//! each later one is renamed `key_2`, `key_3`, …, with the smallest number that gives a name no
//! other member of the object has. Nothing is dropped, and the names depend on the object alone.
//!
//! Typed events need none of this for their own keys (the derive rejects two fields with one
//! key); it applies to what the logger cannot see at compile time: captured `tracing` fields,
//! the span stack, ad-hoc contexts, and any value written through `Serialize` (a hand-written
//! impl may write a key twice). This module renames keys and touches nothing else.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// Objects with at most this many keys are checked pair by pair, without allocating.
const FEW_KEYS: usize = 16;

/// The renamings the rule asks for in an object whose keys are `keys`, in writing order: each
/// `(index in keys, new key)`. Empty, without allocating, when no key repeats. Keys are compared
/// as given (raw text, or escaped JSON of keys without escapes): a suffix `_N` reads the same
/// either way.
pub(crate) fn rename_repeats<K: AsRef<[u8]>>(keys: &[K]) -> Vec<(usize, Vec<u8>)> {
    if !has_repeats(keys) {
        return Vec::new();
    }
    let mut taken: HashSet<Vec<u8>> = keys.iter().map(|key| key.as_ref().to_vec()).collect();
    let mut seen: HashSet<&[u8]> = HashSet::new();
    // The next number to try for each repeated key: a thousand repeats cost a thousand tries.
    let mut next: HashMap<&[u8], u64> = HashMap::new();
    let mut renamed = Vec::new();
    for (index, key) in keys.iter().enumerate() {
        let key = key.as_ref();
        if seen.insert(key) {
            continue;
        }
        let number = next.entry(key).or_insert(2);
        let name = loop {
            let mut name = key.to_vec();
            name.push(b'_');
            name.extend_from_slice(itoa::Buffer::new().format(*number).as_bytes());
            *number += 1;
            if taken.insert(name.clone()) {
                break name;
            }
        };
        renamed.push((index, name));
    }
    renamed
}

fn has_repeats<K: AsRef<[u8]>>(keys: &[K]) -> bool {
    if keys.len() <= FEW_KEYS {
        return keys
            .iter()
            .enumerate()
            .any(|(i, key)| keys[..i].iter().any(|earlier| earlier.as_ref() == key.as_ref()));
    }
    let mut seen = HashSet::with_capacity(keys.len());
    keys.iter().any(|key| !seen.insert(key.as_ref()))
}

/// Applies the rule to every object of the JSON value written from `buf[at..]` (serde's output:
/// valid JSON, compact or not). Keys that hold an escape are compared by their text.
pub(crate) fn make_keys_unique(buf: &mut Vec<u8>, at: usize) {
    let insertions = repeats_in(&buf[at..]);
    if insertions.is_empty() {
        return;
    }
    let tail = buf.split_off(at);
    let mut copied = 0;
    for (position, suffix) in insertions {
        buf.extend_from_slice(&tail[copied..position]);
        buf.extend_from_slice(&suffix);
        copied = position;
    }
    buf.extend_from_slice(&tail[copied..]);
}

/// Where `json` needs a suffix after a key's last byte, in order of position.
fn repeats_in(json: &[u8]) -> Vec<(usize, Vec<u8>)> {
    /// A frame of an array on the stack (an object's frame is where its keys start in `keys`).
    const ARRAY: usize = usize::MAX;
    let mut stack: Vec<usize> = Vec::new();
    // The key ranges (inside the quotes) of the objects open at this point.
    let mut keys: Vec<(usize, usize)> = Vec::new();
    let mut insertions = Vec::new();
    let mut expecting_key = false;
    let mut i = 0;
    while let Some(&byte) = json.get(i) {
        match byte {
            b'"' => {
                let start = i + 1;
                let mut end = start;
                while let Some(&byte) = json.get(end) {
                    match byte {
                        b'\\' => end += 2,
                        b'"' => break,
                        _ => end += 1,
                    }
                }
                if end >= json.len() {
                    break; // not JSON after all: leave it as it is
                }
                if expecting_key {
                    keys.push((start, end));
                    expecting_key = false;
                }
                i = end;
            }
            b'{' => {
                stack.push(keys.len());
                expecting_key = true;
            }
            b'[' => {
                stack.push(ARRAY);
                expecting_key = false;
            }
            b'}' => {
                if let Some(from) = stack.pop().filter(|from| *from != ARRAY) {
                    let object: Vec<Cow<'_, [u8]>> =
                        keys[from..].iter().map(|&(start, end)| key_text(json, start, end)).collect();
                    for (index, name) in rename_repeats(&object) {
                        let suffix = name[object[index].len()..].to_vec();
                        insertions.push((keys[from + index].1, suffix));
                    }
                    keys.truncate(from);
                }
                expecting_key = false;
            }
            b']' => {
                stack.pop();
            }
            b',' => expecting_key = stack.last().is_some_and(|frame| *frame != ARRAY),
            _ => {}
        }
        i += 1;
    }
    // Inner objects close first: put the insertions in the order of the text.
    insertions.sort_by_key(|(position, _)| *position);
    insertions
}

/// A key's text: its bytes as written, or, when it holds an escape, the text they stand for.
fn key_text(json: &[u8], start: usize, end: usize) -> Cow<'_, [u8]> {
    let written = &json[start..end];
    if !written.contains(&b'\\') {
        return Cow::Borrowed(written);
    }
    match serde_json::from_slice::<String>(&json[start - 1..=end]) {
        Ok(text) => Cow::Owned(text.into_bytes()),
        Err(_) => Cow::Borrowed(written),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unique(json: &str) -> String {
        let mut buf = b"prefix".to_vec();
        buf.extend_from_slice(json.as_bytes());
        make_keys_unique(&mut buf, 6);
        String::from_utf8(buf[6..].to_vec()).unwrap()
    }

    #[test]
    fn the_first_keeps_its_key_and_later_ones_take_the_first_free_number() {
        assert_eq!(unique(r#"{"a":1,"b":2}"#), r#"{"a":1,"b":2}"#);
        assert_eq!(unique(r#"{"a":1,"a":2,"a":3}"#), r#"{"a":1,"a_2":2,"a_3":3}"#);
        // `a_2` is the object's own key, written later: the repeat of `a` does not take it.
        assert_eq!(unique(r#"{"a":1,"a":2,"a_2":3}"#), r#"{"a":1,"a_3":2,"a_2":3}"#);
    }

    #[test]
    fn every_object_is_checked_on_its_own_at_any_depth() {
        assert_eq!(
            unique(r#"{"a":{"a":1,"a":[{"x":"}","x":"{\"x\":1}"}]},"a":[1,{"k":0,"k":1}]}"#),
            r#"{"a":{"a":1,"a_2":[{"x":"}","x_2":"{\"x\":1}"}]},"a_2":[1,{"k":0,"k_2":1}]}"#
        );
        assert_eq!(unique(r#"[{"a":1},{"a":1}]"#), r#"[{"a":1},{"a":1}]"#);
    }

    #[test]
    fn keys_are_compared_by_their_text_whitespace_and_escapes_aside() {
        assert_eq!(unique("{ \"a\" : 1 ,\n \"\\u0061\" : 2 }"), "{ \"a\" : 1 ,\n \"\\u0061_2\" : 2 }");
        assert_eq!(unique(r#"{"a\"b":1,"a\"b":2}"#), r#"{"a\"b":1,"a\"b_2":2}"#);
    }

    #[test]
    fn a_key_repeated_a_hundred_thousand_times_gets_as_many_distinct_names() {
        let keys = vec!["k"; 100_000];
        let renamed = rename_repeats(&keys);
        assert_eq!(renamed.len(), 99_999);
        assert_eq!(renamed.last().unwrap(), &(99_999, b"k_100000".to_vec()));
    }

    #[test]
    fn what_is_not_json_is_left_alone_without_a_panic() {
        for text in [r#"{"a":1,"a"#, r#"{"a\"#, "}}]]", r#"{"a":1,"a":2"#] {
            assert_eq!(unique(text), text);
        }
    }
}
