//! A line of `chimera.log` as an OTLP `LogRecord`, and a batch of them as an export request:
//! the mapping docs/otlp.md tabulates, and nothing else (no I/O, no HTTP).
//!
//! The line is read through `serde_json`'s `RawValue`, so a number keeps its text: an integer
//! that fits an `i64` is an `int_value`, a larger one (a `u128` balance) a `string_value` with its
//! exact digits, never a rounded double.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::value::RawValue;

use crate::config::otlp::OtlpConfig;
use crate::event::Level;

/// The envelope's keys that are mapped to fields of the record; any other top-level key of a
/// line becomes an attribute of its own name.
const ENVELOPE: [&str; 7] = ["timestamp", "level", "module", "event", "context", "trace_id", "span_id"];

/// OpenTelemetry's severity number for a level: the first of each range (TRACE 1, DEBUG 5,
/// INFO 9, WARN 13, ERROR 17, FATAL 21).
pub(crate) fn severity_number(level: Level) -> i32 {
    match level {
        Level::Trace => 1,
        Level::Debug => 5,
        Level::Info => 9,
        Level::Warning => 13,
        Level::Error => 17,
        Level::Critical => 21,
    }
}

/// A line mapped: the record and the module it goes under (its instrumentation scope).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mapped {
    pub(crate) module: String,
    pub(crate) record: LogRecord,
}

/// Maps one line (without its newline), read at `observed_nanos`. A line that is not a JSON
/// object (a torn line, a hand-written one) is shipped as it is, as the body, with
/// severity unspecified: nothing is left out on a guess.
pub(crate) fn map_line(line: &str, observed_nanos: u64) -> Mapped {
    let Ok(InOrder(members)) = serde_json::from_str::<InOrder<'_>>(line) else {
        return Mapped {
            module: String::new(),
            record: LogRecord {
                observed_time_unix_nano: observed_nanos,
                body: Some(string_value(line.to_owned())),
                ..LogRecord::default()
            },
        };
    };
    let get = |key: &str| members.iter().find(|(name, _)| name == key).map(|(_, raw)| *raw);
    let text = |key: &str| get(key).and_then(|raw| serde_json::from_str::<String>(raw.get()).ok());
    let mut record = LogRecord { observed_time_unix_nano: observed_nanos, ..LogRecord::default() };
    if let Some(time) = text("timestamp").and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok()) {
        record.time_unix_nano = time.timestamp_nanos_opt().and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
    }
    if let Some(level) = text("level") {
        if let Ok(parsed) = level.parse::<Level>() {
            record.severity_number = severity_number(parsed);
        }
        record.severity_text = level;
    }
    let event = text("event").unwrap_or_default();
    record.body = Some(string_value(event.clone()));
    record.event_name = event;
    if let Some(context) = get("context") {
        match value_of(context) {
            Some(Value::KvlistValue(list)) => record.attributes.extend(list.values),
            Some(other) => record.attributes.push(key_value("context", Some(other))),
            None => {}
        }
    }
    if let Some(id) = text("trace_id").and_then(|hex| hex_bytes(&hex, 16)) {
        record.trace_id = id;
    }
    if let Some(id) = text("span_id").and_then(|hex| hex_bytes(&hex, 8)) {
        record.span_id = id;
    }
    for (key, raw) in &members {
        if ENVELOPE.contains(&key.as_str()) {
            continue;
        }
        if key == "exception" {
            record.attributes.extend(exception_attributes(raw));
        } else {
            record.attributes.push(key_value(key, value_of(raw)));
        }
    }
    Mapped { module: text("module").unwrap_or_default(), record }
}

/// The members of a JSON object in the order they are written, each value's text kept.
struct InOrder<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for InOrder<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = InOrder<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut members = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, &'de RawValue>()? {
                    members.push((key, value));
                }
                Ok(InOrder(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// The OpenTelemetry semantic conventions' exception attributes: `exception.type`,
/// `exception.message`, and, when the error has causes, `exception.stacktrace` holding the
/// cause chain as a Rust error report prints it (a Rust error carries no stack trace).
fn exception_attributes(raw: &RawValue) -> Vec<KeyValue> {
    #[derive(serde::Deserialize)]
    struct Exception {
        #[serde(default, rename = "type")]
        kind: Option<String>,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        causes: Vec<String>,
    }
    let Ok(exception) = serde_json::from_str::<Exception>(raw.get()) else {
        return vec![key_value("exception", value_of(raw))];
    };
    let mut attributes = Vec::new();
    if let Some(kind) = exception.kind {
        attributes.push(key_value("exception.type", Some(Value::StringValue(kind))));
    }
    let message = exception.message.unwrap_or_default();
    if !exception.causes.is_empty() {
        let mut report = format!("{message}\n\nCaused by:");
        for (i, cause) in exception.causes.iter().enumerate() {
            report.push_str(&format!("\n    {i}: {cause}"));
        }
        attributes.push(key_value("exception.stacktrace", Some(Value::StringValue(report))));
    }
    attributes.insert(attributes.len().min(1), key_value("exception.message", Some(Value::StringValue(message))));
    attributes
}

/// A JSON value as an OTLP value: objects as key-value lists (members in order), arrays as
/// arrays, strings, booleans, integers within `i64` as integers, other integers as strings of
/// their exact digits, other numbers as doubles; `null` as no value.
fn value_of(raw: &RawValue) -> Option<Value> {
    let text = raw.get().trim();
    match text.as_bytes().first()? {
        b'{' => {
            let members = serde_json::from_str::<InOrder<'_>>(text).ok()?;
            Some(Value::KvlistValue(KeyValueList {
                values: members.0.iter().map(|(key, raw)| key_value(key, value_of(raw))).collect(),
            }))
        }
        b'[' => {
            let items = serde_json::from_str::<Vec<&RawValue>>(text).ok()?;
            Some(Value::ArrayValue(ArrayValue {
                values: items.into_iter().map(|item| AnyValue { value: value_of(item) }).collect(),
            }))
        }
        b'"' => serde_json::from_str::<String>(text).ok().map(Value::StringValue),
        b't' | b'f' => serde_json::from_str::<bool>(text).ok().map(Value::BoolValue),
        b'n' => None,
        _ if text.contains(['.', 'e', 'E']) => text.parse::<f64>().ok().map(Value::DoubleValue),
        _ => Some(text.parse::<i64>().map_or_else(|_| Value::StringValue(text.to_owned()), Value::IntValue)),
    }
}

fn key_value(key: &str, value: Option<Value>) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value }), ..KeyValue::default() }
}

fn string_value(text: String) -> AnyValue {
    AnyValue { value: Some(Value::StringValue(text)) }
}

/// `hex` as `len` bytes; `None` unless it is exactly `2 * len` hex digits and not all zero (the
/// W3C invalid id).
fn hex_bytes(hex: &str, len: usize) -> Option<Vec<u8>> {
    if hex.len() != 2 * len {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..len).map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()).collect();
    bytes.filter(|bytes| bytes.iter().any(|&b| b != 0))
}

/// The resource every request describes: `service.name` and the configured attributes, and
/// the SDK's own (`telemetry.sdk.*`).
pub(crate) fn resource(config: &OtlpConfig) -> Resource {
    let mut attributes = vec![key_value("service.name", Some(Value::StringValue(config.effective_service_name())))];
    for (key, value) in &config.resource_attributes {
        if key != "service.name" {
            attributes.push(key_value(key, Some(Value::StringValue(value.clone()))));
        }
    }
    for (key, value) in [
        ("telemetry.sdk.name", "chimera-log"),
        ("telemetry.sdk.language", "rust"),
        ("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
    ] {
        attributes.push(key_value(key, Some(Value::StringValue(value.to_owned()))));
    }
    Resource { attributes, ..Resource::default() }
}

/// One export request: the records under one resource, grouped by module (one scope each, in
/// the order modules first appear), each module's records in file order.
pub(crate) fn request(resource: &Resource, records: Vec<Mapped>) -> ExportLogsServiceRequest {
    let mut scopes: Vec<ScopeLogs> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for Mapped { module, record } in records {
        let at = *index.entry(module.clone()).or_insert_with(|| {
            scopes.push(ScopeLogs {
                scope: Some(InstrumentationScope { name: module, ..InstrumentationScope::default() }),
                ..ScopeLogs::default()
            });
            scopes.len() - 1
        });
        scopes[at].log_records.push(record);
    }
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource.clone()),
            scope_logs: scopes,
            ..ResourceLogs::default()
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attribute<'a>(record: &'a LogRecord, key: &str) -> Option<&'a Value> {
        record.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn the_envelope_maps_to_time_severity_event_name_body_and_scope() {
        let line = r#"{"timestamp":"2024-01-15T10:30:45.123456Z","level":"WARNING","module":"state_engine","event":"state_divergence","context":{}}"#;
        let mapped = map_line(line, 7);
        assert_eq!(mapped.module, "state_engine");
        let record = mapped.record;
        assert_eq!(record.time_unix_nano, 1_705_314_645_123_456_000);
        assert_eq!(record.observed_time_unix_nano, 7);
        assert_eq!((record.severity_number, record.severity_text.as_str()), (13, "WARNING"));
        assert_eq!(record.event_name, "state_divergence");
        assert_eq!(record.body, Some(string_value("state_divergence".into())));
        assert!(record.attributes.is_empty());
    }

    #[test]
    fn every_level_has_the_first_severity_number_of_its_range() {
        let numbers: Vec<i32> = Level::ALL.iter().map(|&level| severity_number(level)).collect();
        assert_eq!(numbers, [1, 5, 9, 13, 17, 21]);
    }

    #[test]
    fn context_fields_become_typed_attributes_and_big_integers_stay_exact_as_strings() {
        let line = r#"{"timestamp":"2024-01-15T10:30:45.123456Z","level":"INFO","module":"m","event":"e","context":{"n":-42,"big":340282366920938463463374607431768211455,"u64":18446744073709551615,"f":1.5,"e":1e3,"ok":true,"s":"x\ny","none":null,"list":[1,"a"],"nested":{"a":{"b":2}}}}"#;
        let record = map_line(line, 0).record;
        assert_eq!(attribute(&record, "n"), Some(&Value::IntValue(-42)));
        assert_eq!(
            attribute(&record, "big"),
            Some(&Value::StringValue("340282366920938463463374607431768211455".into()))
        );
        assert_eq!(attribute(&record, "u64"), Some(&Value::StringValue("18446744073709551615".into())));
        assert_eq!(attribute(&record, "f"), Some(&Value::DoubleValue(1.5)));
        assert_eq!(attribute(&record, "e"), Some(&Value::DoubleValue(1000.0)));
        assert_eq!(attribute(&record, "ok"), Some(&Value::BoolValue(true)));
        assert_eq!(attribute(&record, "s"), Some(&Value::StringValue("x\ny".into())));
        assert_eq!(attribute(&record, "none"), None);
        assert!(record.attributes.iter().any(|kv| kv.key == "none"), "a null is an attribute without a value");
        let Some(Value::ArrayValue(list)) = attribute(&record, "list") else { panic!("{record:?}") };
        assert_eq!(list.values[0].value, Some(Value::IntValue(1)));
        assert_eq!(list.values[1].value, Some(Value::StringValue("a".into())));
        let Some(Value::KvlistValue(nested)) = attribute(&record, "nested") else { panic!("{record:?}") };
        let Some(Value::KvlistValue(a)) = nested.values[0].value.as_ref().and_then(|v| v.value.as_ref()) else {
            panic!("{nested:?}")
        };
        assert_eq!(
            (a.values[0].key.as_str(), &a.values[0].value),
            ("b", &Some(AnyValue { value: Some(Value::IntValue(2)) }))
        );
        let keys: Vec<&str> = record.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["n", "big", "u64", "f", "e", "ok", "s", "none", "list", "nested"], "in the line's order");
    }

    #[test]
    fn trace_and_span_ids_are_bytes_and_the_span_stack_is_a_list_attribute() {
        let line = r#"{"timestamp":"2024-01-15T10:30:45.123456Z","level":"INFO","module":"m","event":"e","context":{"span":[{"name":"request","id":7}]},"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}"#;
        let record = map_line(line, 0).record;
        assert_eq!(record.trace_id, hex_bytes("4bf92f3577b34da6a3ce929d0e0e4736", 16).unwrap());
        assert_eq!(record.trace_id[0], 0x4b);
        assert_eq!(record.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert!(matches!(attribute(&record, "span"), Some(Value::ArrayValue(spans)) if spans.values.len() == 1));
        assert!(hex_bytes("00000000000000000000000000000000", 16).is_none(), "the invalid id is no id");
        assert!(hex_bytes("zz", 1).is_none());
    }

    #[test]
    fn an_exception_maps_to_the_semantic_conventions() {
        let line = r#"{"timestamp":"2024-01-15T10:30:45.123456Z","level":"ERROR","module":"m","event":"rpc_failed","context":{},"exception":{"type":"std::io::Error","message":"reset","causes":["socket closed","eof"]}}"#;
        let record = map_line(line, 0).record;
        assert_eq!(attribute(&record, "exception.type"), Some(&Value::StringValue("std::io::Error".into())));
        assert_eq!(attribute(&record, "exception.message"), Some(&Value::StringValue("reset".into())));
        assert_eq!(
            attribute(&record, "exception.stacktrace"),
            Some(&Value::StringValue("reset\n\nCaused by:\n    0: socket closed\n    1: eof".into()))
        );
        let without = r#"{"timestamp":"2024-01-15T10:30:45.123456Z","level":"ERROR","module":"m","event":"e","context":{},"exception":{"type":"E","message":"m","causes":[]}}"#;
        assert_eq!(attribute(&map_line(without, 0).record, "exception.stacktrace"), None);
    }

    #[test]
    fn a_line_that_is_not_json_is_shipped_whole_as_the_body() {
        let record = map_line("torn {\"timest", 5).record;
        assert_eq!(record.body, Some(string_value("torn {\"timest".into())));
        assert_eq!((record.severity_number, record.observed_time_unix_nano), (0, 5));
    }

    #[test]
    fn a_request_groups_records_by_module_in_order_under_one_resource() {
        let config = OtlpConfig::new("http://c").service_name("bot").resource_attribute("team", "x");
        let line = |module: &str, event: &str| {
            format!(
                r#"{{"timestamp":"2024-01-15T10:30:45.123456Z","level":"INFO","module":"{module}","event":"{event}","context":{{}}}}"#
            )
        };
        let records = [("a", "1"), ("b", "2"), ("a", "3")].map(|(m, e)| map_line(&line(m, e), 0)).to_vec();
        let request = request(&resource(&config), records);
        let resource_logs = &request.resource_logs[0];
        let resource = resource_logs.resource.as_ref().unwrap();
        assert_eq!(resource.attributes[0], key_value("service.name", Some(Value::StringValue("bot".into()))));
        assert_eq!(resource.attributes[1], key_value("team", Some(Value::StringValue("x".into()))));
        let scopes: Vec<(&str, Vec<&str>)> = resource_logs
            .scope_logs
            .iter()
            .map(|scope| {
                let name = scope.scope.as_ref().unwrap().name.as_str();
                (name, scope.log_records.iter().map(|r| r.event_name.as_str()).collect())
            })
            .collect();
        assert_eq!(scopes, [("a", vec!["1", "3"]), ("b", vec!["2"])]);
    }
}
