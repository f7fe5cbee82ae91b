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
    /// file, a torn line), which is not a record.
    pub(crate) fn from_line(line: &[u8]) -> Option<Row> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let sealed = parse_sealed(line)?;
        let record = std::str::from_utf8(line).ok()?;
        let value: serde_json::Value = serde_json::from_str(record).ok()?;
        let text = |key: &str| value.get(key).and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
        let key_name = match value.get("audit_key").and_then(serde_json::Value::as_str) {
            Some(key) => Some(key.to_owned()),
            None => value.get("context").and_then(|c| c.get("block_number")).map(|_| "block_number".to_owned()),
        };
        let as_text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let context = value.get("context");
        let key_value = key_name.as_deref().and_then(|key| context?.get(key)).map(as_text);
        let block_number = context.and_then(|c| c.get("block_number")).map(as_text);
        Some(Row {
            seq: sealed.seq,
            chain: hex(&sealed.chain),
            timestamp: text("timestamp"),
            level: text("level"),
            module: text("module"),
            event: text("event"),
            key_name,
            key_value,
            block_number,
            record: record.to_owned(),
        })
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
    /// The whole sealed line as it was in `executions.log`.
    pub record: String,
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
    fn anchors_and_torn_lines_are_not_rows() {
        assert!(Row::from_line(br#"{"event":"audit_anchor","previous_seq":0,"anchor":"00"}"#).is_none());
        assert!(Row::from_line(br#"{"timestamp":"t","level":"IN"#).is_none());
    }
}
