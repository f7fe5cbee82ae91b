//! One audit record as a row: the columns a query filters on, taken from the sealed line, and
//! the line itself, so that a row verifies on its own.

use crate::audit::{hex, parse_sealed};

/// One sealed record, ready to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) seq: u64,
    /// The chain value, hex.
    pub(crate) chain: String,
    /// RFC 3339 UTC with microseconds, as in the line (text order is time order).
    pub(crate) timestamp: String,
    pub(crate) level: String,
    pub(crate) module: String,
    pub(crate) event: String,
    /// The identity field's name and value: `block_number`, or the event's `#[log(audit, key =
    /// "...")]` field (named in the line's `audit_key`); a string value as is, any other as JSON.
    pub(crate) key_name: Option<String>,
    pub(crate) key_value: Option<String>,
    /// `context.block_number` when the record has one (whatever its identity), as JSON text.
    pub(crate) block_number: Option<String>,
    /// The whole sealed line, without its newline.
    pub(crate) record: String,
}

impl Row {
    /// The row of a sealed audit line; `None` for any other line (the anchor at the top of each
    /// file, a torn line), which is not a record. A sealed line always gives a row: were it
    /// skipped, the cursor would pass it and the store would hold a gap for good.
    pub(crate) fn from_line(line: &[u8]) -> Option<Row> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let sealed = parse_sealed(line)?;
        // The writer writes UTF-8 only: a line that is not is damaged, and stored as well as it
        // can be, so that `verify --store` reports its chain at its seq rather than a gap.
        let record = String::from_utf8_lossy(line).into_owned();
        let columns = match serde_json::from_str::<serde_json::Value>(&record) {
            Ok(value) => Columns::of_value(&value),
            // Deeper than serde_json's recursion limit (128): the envelope is read without
            // descending into nested values.
            Err(_) => match serde_json::from_str::<Envelope>(&record) {
                Ok(envelope) => Columns::of_envelope(envelope),
                Err(_) => Columns { timestamp: leading_timestamp(&record), ..Columns::default() },
            },
        };
        // PostgreSQL refuses a NUL in text; both databases get the same columns. The record
        // itself holds none: the writer escapes it (`\u0000`).
        let text = |column: String| if column.contains('\0') { column.replace('\0', "\u{fffd}") } else { column };
        Some(Row {
            seq: sealed.seq,
            chain: hex(&sealed.chain),
            timestamp: text(columns.timestamp),
            level: text(columns.level),
            module: text(columns.module),
            event: text(columns.event),
            key_name: columns.key_name.map(text),
            key_value: columns.key_value.map(text),
            block_number: columns.block_number.map(text),
            record,
        })
    }
}

/// The columns derived from a record's JSON.
#[derive(Debug, Default)]
struct Columns {
    timestamp: String,
    level: String,
    module: String,
    event: String,
    key_name: Option<String>,
    key_value: Option<String>,
    block_number: Option<String>,
}

impl Columns {
    fn of_value(value: &serde_json::Value) -> Columns {
        let text = |key: &str| value.get(key).and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
        let key_name = match value.get("audit_key").and_then(serde_json::Value::as_str) {
            Some(key) => Some(key.to_owned()),
            None => value.get("context").and_then(|c| c.get("block_number")).map(|_| "block_number".to_owned()),
        };
        let context = value.get("context");
        let key_value = key_name.as_deref().and_then(|key| context?.get(key)).map(value_text);
        let block_number = context.and_then(|c| c.get("block_number")).map(value_text);
        Columns {
            timestamp: text("timestamp"),
            level: text("level"),
            module: text("module"),
            event: text("event"),
            key_name,
            key_value,
            block_number,
        }
    }

    /// As [`of_value`](Self::of_value), except that an identity or `block_number` that is an
    /// object or array (not read) leaves its column empty.
    fn of_envelope(envelope: Envelope) -> Columns {
        let text = |field: Option<Shallow>| match field {
            Some(Shallow::Scalar(serde_json::Value::String(s))) => s,
            _ => String::new(),
        };
        let context = envelope.context.unwrap_or_default();
        let block_number = context.get("block_number");
        let key_name = match envelope.audit_key {
            Some(Shallow::Scalar(serde_json::Value::String(key))) => Some(key),
            _ => block_number.map(|_| "block_number".to_owned()),
        };
        let scalar_text = |field: Option<&Shallow>| match field {
            Some(Shallow::Scalar(value)) => Some(value_text(value)),
            _ => None,
        };
        Columns {
            key_value: scalar_text(key_name.as_deref().and_then(|key| context.get(key))),
            block_number: scalar_text(block_number),
            key_name,
            timestamp: text(envelope.timestamp),
            level: text(envelope.level),
            module: text(envelope.module),
            event: text(envelope.event),
        }
    }
}

/// A string value as is, any other as JSON.
fn value_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The timestamp the writer puts first, for a line that is not JSON at all: without it, the
/// row would be expired at the next retention pass.
fn leading_timestamp(record: &str) -> String {
    let rest = record.strip_prefix(r#"{"timestamp":""#);
    rest.and_then(|rest| rest.split_once('"')).map_or_else(String::new, |(time, _)| time.to_owned())
}

/// The top-level fields of a record and its context's, read without descending further.
#[derive(serde::Deserialize)]
struct Envelope {
    timestamp: Option<Shallow>,
    level: Option<Shallow>,
    module: Option<Shallow>,
    event: Option<Shallow>,
    audit_key: Option<Shallow>,
    context: Option<std::collections::HashMap<String, Shallow>>,
}

/// A JSON value kept when it is a scalar; an object or array is skipped, which serde_json does
/// without recursion (and so without its depth limit).
enum Shallow {
    Scalar(serde_json::Value),
    Nested,
}

impl<'de> serde::Deserialize<'de> for Shallow {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ShallowVisitor)
    }
}

struct ShallowVisitor;

impl<'de> serde::de::Visitor<'de> for ShallowVisitor {
    type Value = Shallow;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Shallow, E> {
        Ok(Shallow::Scalar(v.into()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Shallow, E> {
        Ok(Shallow::Scalar(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Shallow, E> {
        Ok(Shallow::Scalar(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Shallow, E> {
        Ok(Shallow::Scalar(v.into()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Shallow, E> {
        Ok(Shallow::Scalar(v.into()))
    }
    fn visit_string<E>(self, v: String) -> Result<Shallow, E> {
        Ok(Shallow::Scalar(v.into()))
    }
    fn visit_unit<E>(self) -> Result<Shallow, E> {
        Ok(Shallow::Scalar(serde_json::Value::Null))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Shallow, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Shallow::Nested)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Shallow, A::Error> {
        while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
        Ok(Shallow::Nested)
    }
}

/// What one insert did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Inserted {
    /// Rows written.
    pub(crate) stored: u64,
    /// Rows already present with the same chain (a repeat after a crash): nothing to do.
    pub(crate) duplicates: u64,
    /// Rows already present with a different chain: the `seq`s, never overwritten.
    pub(crate) conflicts: Vec<u64>,
}

/// A record read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredRecord {
    /// The logger's stream.
    pub stream: String,
    /// The record's number, from its column.
    pub seq: u64,
    /// The chain value, hex, from its column.
    pub chain: String,
    /// The whole sealed line as it was in `executions.log`; empty when it was not read, being
    /// longer than the scan's [`max_record`](super::ScanFilter::max_record) (see
    /// [`is_skipped`](Self::is_skipped)).
    pub record: String,
    /// The record's length in bytes, as the database counts it (read without reading the record).
    pub record_length: u64,
    pub(crate) skipped: bool,
    /// The columns taken from the record, as the database holds them.
    pub(crate) derived: DerivedColumns,
}

impl StoredRecord {
    /// Whether the record was left unread: longer than the scan's
    /// [`max_record`](super::ScanFilter::max_record), so [`record`](Self::record) is empty.
    pub fn is_skipped(&self) -> bool {
        self.skipped
    }

    /// The columns taken from the record (`timestamp`, `level`, `module`, `event`, `key_name`,
    /// `key_value`, `block_number`, and PostgreSQL's `record_json`) whose stored value is not the
    /// one the archiver derives from the record: edited, so a query selecting rows by such a
    /// column misses the record or finds it for another value. None when the record was not read
    /// or is not a sealed record (nothing is derived from it then).
    pub fn altered_columns(&self) -> Vec<&'static str> {
        if self.skipped {
            return Vec::new();
        }
        let Some(row) = Row::from_line(self.record.as_bytes()) else { return Vec::new() };
        let stored = &self.derived;
        let mut altered: Vec<&'static str> = [
            ("timestamp", stored.timestamp.as_deref() == Some(row.timestamp.as_str())),
            ("level", stored.level.as_deref() == Some(row.level.as_str())),
            ("module", stored.module.as_deref() == Some(row.module.as_str())),
            ("event", stored.event.as_deref() == Some(row.event.as_str())),
            ("key_name", stored.key_name == row.key_name),
            ("key_value", stored.key_value == row.key_value),
            ("block_number", stored.block_number == row.block_number),
        ]
        .into_iter()
        .filter_map(|(column, same)| (!same).then_some(column))
        .collect();
        if let Some(json) = &stored.record_json {
            if !record_json_agrees(json.as_deref(), &self.record) {
                altered.push("record_json");
            }
        }
        altered
    }
}

/// The columns of a stored row that are taken from its record, as read back (each as text; a
/// value of another type, which SQLite lets a column hold, as a text no record gives).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DerivedColumns {
    pub(crate) timestamp: Option<String>,
    pub(crate) level: Option<String>,
    pub(crate) module: Option<String>,
    pub(crate) event: Option<String>,
    pub(crate) key_name: Option<String>,
    pub(crate) key_value: Option<String>,
    pub(crate) block_number: Option<String>,
    /// PostgreSQL's `record_json` as text, `Some(None)` when NULL; `None` on SQLite, which has no
    /// such column.
    pub(crate) record_json: Option<Option<String>>,
}

/// Whether `record_json` (as `jsonb` prints it, or NULL) is what inserting `record` stores: the
/// same JSON (`jsonb` orders keys and may write numbers otherwise), or NULL for a record `jsonb`
/// refuses (a `\u0000` escape). A record serde_json cannot read (nested past its limit) is not
/// compared.
pub(crate) fn record_json_agrees(record_json: Option<&str>, record: &str) -> bool {
    let Ok(from_record) = serde_json::from_str::<serde_json::Value>(record) else { return true };
    match record_json {
        // `jsonb` refuses a NUL in a string: only such a record may be stored without its JSON.
        None => record.contains("\\u0000"),
        Some(json) => serde_json::from_str::<serde_json::Value>(json)
            .is_ok_and(|from_column| same_json(&from_record, &from_column)),
    }
}

/// JSON equality up to key order and the spelling of numbers (`1e2` and `100` are one number).
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(key, value)| b.get(key).is_some_and(|other| same_json(value, other)))
        }
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_json(a, b)),
        (Value::Number(a), Value::Number(b)) => match (a.as_i128(), b.as_i128()) {
            (Some(a), Some(b)) => a == b,
            _ => a.as_f64() == b.as_f64(),
        },
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{seal, ChainHead, ChainKey};

    fn sealed(body: &str) -> Vec<u8> {
        let mut out = Vec::new();
        seal(format!("{body}\n").as_bytes(), &mut ChainHead::default(), &ChainKey::unkeyed(), &mut out);
        out
    }

    #[test]
    fn a_sealed_line_gives_its_columns_and_identity() {
        let line = sealed(
            r#"{"timestamp":"2026-01-02T03:04:05.000006Z","level":"INFO","module":"exec","event":"execution_attempt","context":{"block_number":42,"tx":"0xab"}}"#,
        );
        let row = Row::from_line(&line).unwrap();
        assert_eq!((row.seq, row.event.as_str(), row.level.as_str()), (1, "execution_attempt", "INFO"));
        assert_eq!((row.key_name.as_deref(), row.key_value.as_deref()), (Some("block_number"), Some("42")));
        assert_eq!(row.timestamp, "2026-01-02T03:04:05.000006Z");
        assert_eq!(row.record.as_bytes(), line.strip_suffix(b"\n").unwrap());
    }

    #[test]
    fn a_declared_key_names_the_identity_and_a_string_value_is_kept_as_text() {
        let line = sealed(
            r#"{"timestamp":"t","level":"INFO","module":"m","event":"submitted","context":{"tx_hash":"0xff"},"audit_key":"tx_hash"}"#,
        );
        let row = Row::from_line(&line).unwrap();
        assert_eq!((row.key_name.as_deref(), row.key_value.as_deref()), (Some("tx_hash"), Some("0xff")));
        assert_eq!(row.block_number, None);
    }

    #[test]
    fn a_record_nested_deeper_than_serde_jsons_limit_is_still_a_row_with_its_columns() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let line = sealed(&format!(
            r#"{{"timestamp":"2026-01-02T03:04:05.000006Z","level":"INFO","module":"m","event":"deep","context":{{"block_number":7,"tx_hash":"0xff","payload":{deep}}},"audit_key":"tx_hash"}}"#
        ));
        assert!(serde_json::from_slice::<serde_json::Value>(&line).is_err(), "deeper than the limit");
        let row = Row::from_line(&line).expect("a sealed record is a row");
        assert_eq!((row.seq, row.event.as_str(), row.timestamp.as_str()), (1, "deep", "2026-01-02T03:04:05.000006Z"));
        assert_eq!((row.key_name.as_deref(), row.key_value.as_deref()), (Some("tx_hash"), Some("0xff")));
        assert_eq!(row.block_number.as_deref(), Some("7"));
        assert_eq!(row.record.as_bytes(), line.strip_suffix(b"\n").unwrap());
    }

    #[test]
    fn a_sealed_line_that_is_not_json_is_still_a_row_with_its_timestamp() {
        let line = sealed(r#"{"timestamp":"2026-01-02T03:04:05.000006Z","level":"INFO",oops}"#);
        let row = Row::from_line(&line).expect("a sealed record is a row");
        assert_eq!((row.seq, row.timestamp.as_str(), row.event.as_str()), (1, "2026-01-02T03:04:05.000006Z", ""));
        assert_eq!(row.record.as_bytes(), line.strip_suffix(b"\n").unwrap());
    }

    #[test]
    fn a_nul_in_a_column_taken_from_the_record_is_replaced_and_the_record_is_kept_exactly() {
        let line = sealed(
            r#"{"timestamp":"t","level":"INFO","module":"m","event":"submitted","context":{"tx_hash":"0x\u0000ff"},"audit_key":"tx_hash"}"#,
        );
        let row = Row::from_line(&line).unwrap();
        assert_eq!(row.key_value.as_deref(), Some("0x\u{fffd}ff"));
        assert_eq!(row.record.as_bytes(), line.strip_suffix(b"\n").unwrap());
    }

    #[test]
    fn record_json_agrees_whatever_jsonb_does_to_key_order_spaces_and_numbers_and_only_then() {
        let record = r#"{"b":1,"a":{"x":[1.5,100.0,1e20]},"seq":3}"#;
        assert!(record_json_agrees(
            Some(r#"{"a": {"x": [1.5, 100.0, 100000000000000000000]}, "b": 1, "seq": 3}"#),
            record
        ));
        assert!(!record_json_agrees(Some(r#"{"a": {"x": [1.5, 100.0, 1e20]}, "b": 2, "seq": 3}"#), record));
        assert!(!record_json_agrees(Some(r#"{"a": {"x": [1.5, 100.0, 1e20]}, "b": 1}"#), record));
        // NULL only for a record jsonb refuses.
        assert!(!record_json_agrees(None, record));
        assert!(record_json_agrees(None, r#"{"a":"\u0000"}"#));
        // A record serde_json cannot read whole (nested past its limit) is not compared.
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(record_json_agrees(Some("[]"), &deep));
    }

    #[test]
    fn anchors_and_torn_lines_are_not_rows() {
        assert!(Row::from_line(br#"{"event":"audit_anchor","previous_seq":0,"anchor":"00"}"#).is_none());
        assert!(Row::from_line(br#"{"timestamp":"t","level":"IN"#).is_none());
    }
}
