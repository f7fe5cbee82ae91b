//! Several inputs read as one: a k-way merge by each line's `timestamp`, holding one line of each
//! input and no more (`query host-a/ host-b/`). It owns the order of lines across inputs; reading
//! an input is [`LineSource`]'s, deciding what a line means is the caller's.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::files::{Line, LineSource, ReadError};

/// Calls `each(input, path, number, line)` for every line of every source, until it returns
/// `false`. One source is read straight through. Several are merged: the next line given is the
/// earliest of the sources' next lines by their `timestamp` (an instant: offsets honoured), the
/// first source given winning a tie; within a source the order is always its own. A line with no
/// timestamp that parses (not JSON, no such key, a placeholder of a line over `--max-line`) keeps
/// its place in its source: it counts as the time of the line before it there, so it comes right
/// after that line (at a source's start, before every timed line).
pub(crate) fn for_each_merged(
    mut sources: Vec<LineSource>,
    mut each: impl FnMut(usize, &Path, usize, Line<'_>) -> bool,
) -> Result<(), ReadError> {
    if let [source] = sources.as_mut_slice() {
        while source.advance()? {
            if !each(0, source.path(), source.number(), source.line()) {
                break;
            }
        }
        return Ok(());
    }
    // The next line of each source not yet given, by (time, source): the smallest first.
    type Key = Reverse<(Option<DateTime<Utc>>, usize)>;
    let mut heads: BinaryHeap<Key> = BinaryHeap::with_capacity(sources.len());
    for (index, source) in sources.iter_mut().enumerate() {
        if source.advance()? {
            heads.push(Reverse((time_of(source.line()), index)));
        }
    }
    while let Some(Reverse((time, index))) = heads.pop() {
        let source = &mut sources[index];
        if !each(index, source.path(), source.number(), source.line()) {
            break;
        }
        if source.advance()? {
            heads.push(Reverse((time_of(source.line()).or(time), index)));
        }
    }
    Ok(())
}

/// The instant of a line's top-level `timestamp` (RFC 3339), if it has one that parses. The
/// logger writes it first, which is read without parsing the line; any other object is parsed.
pub(crate) fn time_of(line: Line<'_>) -> Option<DateTime<Utc>> {
    const FIRST: &[u8] = b"{\"timestamp\":\"";
    let Line::Kept(bytes) = line else { return None };
    let text = match bytes.strip_prefix(FIRST).and_then(|rest| Some(&rest[..rest.iter().position(|&b| b == b'"')?])) {
        // An escape inside the string is left to the JSON parser below.
        Some(stamp) if !stamp.contains(&b'\\') => std::str::from_utf8(stamp).ok()?.to_owned(),
        _ => match serde_json::from_slice::<serde_json::Value>(bytes).ok()?.get_mut("timestamp")?.take() {
            serde_json::Value::String(stamp) => stamp,
            _ => return None,
        },
    };
    DateTime::parse_from_rfc3339(&text).ok().map(|time| time.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_of_a_line_is_its_timestamp_first_or_anywhere_and_none_without_one() {
        let at = |text: &str| time_of(Line::Kept(text.as_bytes())).map(|t| t.to_rfc3339());
        assert_eq!(
            at(r#"{"timestamp":"2024-01-15T10:30:45.123456Z","level":"INFO"}"#).as_deref(),
            Some("2024-01-15T10:30:45.123456+00:00")
        );
        assert_eq!(
            at(r#"{"level":"INFO","timestamp":"2024-01-15T11:30:45+01:00"}"#).as_deref(),
            Some("2024-01-15T10:30:45+00:00")
        );
        assert_eq!(at(r#"{"timestamp":"2024-01-15T10:30:45\u005a"}"#).as_deref(), Some("2024-01-15T10:30:45+00:00"));
        for untimed in ["not json", "{}", r#"{"timestamp":5}"#, r#"{"timestamp":"yesterday"}"#, "[1]", ""] {
            assert_eq!(at(untimed), None, "{untimed}");
        }
        assert_eq!(time_of(Line::TooLong(1 << 30)), None);
    }
}
