//! The line (DESIGN §3): key order, timestamp, levels, escaping, exact integers, exceptions, and
//! what each field attribute writes.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use chimera_log_runtime::{emit, Level, LogConfig, LogEvent, LogGuard};
use common::{json_lines, raw_lines, ManualClock, Ordered};
use serde_json::{json, Value};

fn start(dir: &tempfile::TempDir) -> LogGuard {
    LogConfig::new(dir.path())
        .console(false)
        .level(Level::Trace)
        .clock(Arc::new(ManualClock::at_micros(1_705_314_645_123_456)))
        .build()
        .unwrap()
}

#[derive(LogEvent)]
#[log(level = "warning")]
struct StateDivergence<'a> {
    protocol: &'a str,
    user: &'a str,
    cached_value: u128,
    canonical_value: u128,
    divergence_bps: u32,
    block_number: u64,
}

#[test]
fn line_has_keys_in_contract_order_with_rfc3339_microsecond_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let guard = start(&dir);
    let logger = guard.logger("state_engine");
    emit!(
        logger,
        StateDivergence {
            protocol: "moonwell",
            user: "0xabc",
            cached_value: 1,
            canonical_value: 2,
            divergence_bps: 3,
            block_number: 4,
        }
    );
    drop(guard);
    let lines = raw_lines(&dir.path().join("chimera.log"));
    assert_eq!(
        lines,
        [
            r#"{"timestamp":"2024-01-15T10:30:45.123456Z","level":"WARNING","module":"state_engine","event":"state_divergence","context":{"protocol":"moonwell","user":"0xabc","cached_value":1,"canonical_value":2,"divergence_bps":3,"block_number":4}}"#
        ]
    );
    let parsed: Ordered = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(parsed.keys(), ["timestamp", "level", "module", "event", "context"]);
}

#[test]
fn timestamps_come_from_the_clock_in_utc() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_micros(0));
    let guard = LogConfig::new(dir.path()).console(false).clock(clock.clone()).build().unwrap();
    let logger = guard.logger("m");
    for (micros, expected) in [
        (0u64, "1970-01-01T00:00:00.000000Z"),
        (951_782_400_000_001, "2000-02-29T00:00:00.000001Z"),
        (4_102_444_799_999_999, "2099-12-31T23:59:59.999999Z"),
    ] {
        clock.set(std::time::UNIX_EPOCH + std::time::Duration::from_micros(micros));
        logger.info("tick", json!({ "expected": expected }));
    }
    drop(guard);
    for line in json_lines(&dir.path().join("chimera.log")) {
        assert_eq!(line["timestamp"], line["context"]["expected"]);
    }
}

#[test]
fn every_level_is_written_with_its_contract_string() {
    let dir = tempfile::tempdir().unwrap();
    let guard = start(&dir);
    let logger = guard.logger("m");
    logger.trace("t", json!({}));
    logger.debug("d", json!({}));
    logger.info("i", json!({}));
    logger.warning("w", json!({}));
    logger.error("e", json!({}));
    logger.critical("c", json!({}));
    drop(guard);
    let levels: Vec<Value> = json_lines(&dir.path().join("chimera.log")).iter().map(|l| l["level"].clone()).collect();
    assert_eq!(levels, ["TRACE", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]);
}

#[derive(LogEvent)]
struct Hostile<'a> {
    text: &'a str,
    #[log(display)]
    shown: &'a str,
}

#[test]
fn no_input_can_forge_a_second_record() {
    let dir = tempfile::tempdir().unwrap();
    let guard = start(&dir);
    let forged = "x\"}\n{\"timestamp\":\"2000-01-01T00:00:00.000000Z\",\"level\":\"CRITICAL\",\"event\":\"forged\"}\r\u{0}\u{1b}[31m\\";
    let logger = guard.logger(forged);
    emit!(logger, Hostile { text: forged, shown: forged });
    logger.info(forged, json!({ forged: forged }));
    drop(guard);
    let lines = json_lines(&dir.path().join("chimera.log"));
    assert_eq!(lines.len(), 2, "each event is exactly one line");
    assert_eq!(lines[0]["module"], forged);
    assert_eq!(lines[0]["context"]["text"], forged);
    assert_eq!(lines[0]["context"]["shown"], forged);
    assert_eq!(lines[1]["event"], forged);
    assert_eq!(lines[1]["context"][forged], forged);
}

#[derive(LogEvent)]
struct Numbers {
    max_u64: u64,
    max_u128: u128,
    min_i128: i128,
    nan: f64,
    infinity: f32,
    half: f64,
}

#[test]
fn big_integers_are_exact_and_non_finite_floats_are_null() {
    let dir = tempfile::tempdir().unwrap();
    let guard = start(&dir);
    emit!(
        guard.logger("m"),
        Numbers {
            max_u64: u64::MAX,
            max_u128: u128::MAX,
            min_i128: i128::MIN,
            nan: f64::NAN,
            infinity: f32::INFINITY,
            half: 0.5
        }
    );
    drop(guard);
    let line = &raw_lines(&dir.path().join("chimera.log"))[0];
    assert!(line.contains(&format!("\"max_u64\":{}", u64::MAX)), "{line}");
    assert!(line.contains(&format!("\"max_u128\":{}", u128::MAX)), "{line}");
    assert!(line.contains(&format!("\"min_i128\":{}", i128::MIN)), "{line}");
    assert!(line.contains("\"nan\":null,\"infinity\":null,\"half\":0.5"), "{line}");
}

#[derive(Debug)]
struct Outer(Middle);
#[derive(Debug)]
struct Middle(std::io::Error);

impl std::fmt::Display for Outer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fetching position failed")
    }
}
impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}
impl std::fmt::Display for Middle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("rpc call \"eth_call\" failed")
    }
}
impl std::error::Error for Middle {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[derive(LogEvent)]
#[log(level = "error")]
struct RpcFailed<'a> {
    provider: &'a str,
}

#[test]
fn error_attached_to_an_event_is_written_as_exception_with_its_causes() {
    let dir = tempfile::tempdir().unwrap();
    let guard = start(&dir);
    let logger = guard.logger("rpc");
    let error = Outer(Middle(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out\nafter 5s")));
    emit!(logger, RpcFailed { provider: "quicknode" }, error = &error);
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(error);
    logger.log_with_error(Level::Error, "unexpected_error", &json!({"operation": "fetch_position"}), &*boxed);
    drop(guard);
    let lines = raw_lines(&dir.path().join("chimera.log"));
    let first: Ordered = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first.keys(), ["timestamp", "level", "module", "event", "context", "exception"]);
    assert_eq!(
        first.get("exception").unwrap(),
        &json!({
            "type": "line_format::Outer",
            "message": "fetching position failed",
            "causes": ["rpc call \"eth_call\" failed", "timed out\nafter 5s"],
        })
    );
    let second: Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(second["context"], json!({"operation": "fetch_position"}));
    assert_eq!(second["exception"]["message"], "fetching position failed");
    assert_eq!(second["exception"]["causes"].as_array().unwrap().len(), 2);
}

fn outer_error() -> Outer {
    Outer(Middle(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out")))
}

/// `error = &e` takes a concrete error, a `dyn Error`, a `Box<dyn Error (+ Send (+ Sync))>` and
/// an `anyhow::Error` alike. `type` is the concrete type where Rust knows it; where it is erased,
/// the type that was passed, spelt without the standard library's paths — never
/// `dyn core::error::Error + …`. The message and causes are the error's whatever the form.
#[test]
fn error_takes_concrete_boxed_and_anyhow_errors_and_type_names_the_concrete_type_where_known() {
    use anyhow::Context;
    type BoxError = Box<dyn std::error::Error + Send + Sync>;
    let dir = tempfile::tempdir().unwrap();
    let guard = start(&dir);
    let logger = guard.logger("rpc");
    let event = RpcFailed { provider: "quicknode" };
    let concrete = outer_error();
    emit!(logger, event, error = &concrete);
    let boxed: BoxError = Box::new(outer_error());
    emit!(logger, event, error = &boxed);
    emit!(logger, event, error = &*boxed);
    let sendable: Box<dyn std::error::Error + Send> = Box::new(outer_error());
    emit!(logger, event, error = &sendable);
    let plain: Box<dyn std::error::Error> = Box::new(outer_error());
    emit!(logger, event, error = &plain);
    let boxed_concrete: Box<Outer> = Box::new(outer_error());
    emit!(logger, event, error = &boxed_concrete);
    let from_question_mark: anyhow::Error = outer_error().into();
    emit!(logger, event, error = &from_question_mark);
    let with_context = Err::<(), _>(outer_error()).context("reading the position").unwrap_err();
    emit!(logger, event, error = &with_context);
    drop(guard);
    let exceptions: Vec<Value> =
        json_lines(&dir.path().join("chimera.log")).iter().map(|l| l["exception"].clone()).collect();
    let types: Vec<&str> = exceptions.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "line_format::Outer",
            "Box<dyn Error + Send + Sync>",
            "dyn Error + Send + Sync",
            "Box<dyn Error + Send>",
            "Box<dyn Error>",
            "Box<line_format::Outer>",
            "anyhow::Error",
            "anyhow::Error",
        ]
    );
    let whole = json!({
        "message": "fetching position failed",
        "causes": ["rpc call \"eth_call\" failed", "timed out"],
    });
    for exception in &exceptions[..7] {
        assert_eq!((&exception["message"], &exception["causes"]), (&whole["message"], &whole["causes"]), "{exception}");
    }
    assert_eq!(exceptions[7]["message"], "reading the position");
    assert_eq!(
        exceptions[7]["causes"],
        json!(["fetching position failed", "rpc call \"eth_call\" failed", "timed out"])
    );
}

#[allow(dead_code)] // never written by the logger: that is the point
struct Secret(String);

#[derive(LogEvent)]
struct Attributes<'a> {
    #[log(rename = "wallet address")]
    wallet: &'a str,
    #[log(skip)]
    _internal: Secret,
    #[log(redact)]
    private_key: Secret,
    #[log(display)]
    peer: std::net::SocketAddr,
    tags: BTreeMap<&'a str, u32>,
    tx_hash: Option<&'a str>,
}

#[test]
fn field_attributes_rename_skip_redact_and_display() {
    let dir = tempfile::tempdir().unwrap();
    let guard = start(&dir);
    emit!(
        guard.logger("m"),
        Attributes {
            wallet: "0x1",
            _internal: Secret("never written".into()),
            private_key: Secret("0xdeadbeef".into()),
            peer: "127.0.0.1:8545".parse().unwrap(),
            tags: BTreeMap::from([("a", 1)]),
            tx_hash: None,
        }
    );
    drop(guard);
    let line = &raw_lines(&dir.path().join("chimera.log"))[0];
    assert!(!line.contains("never written") && !line.contains("0xdeadbeef"), "{line}");
    assert_eq!(
        common::context_in_order(line).0,
        [
            ("wallet address".to_owned(), json!("0x1")),
            ("private_key".to_owned(), json!("[REDACTED]")),
            ("peer".to_owned(), json!("127.0.0.1:8545")),
            ("tags".to_owned(), json!({"a": 1})),
            ("tx_hash".to_owned(), Value::Null),
        ]
    );
}

#[derive(LogEvent)]
#[log(name = "custom.name", level = "CRITICAL")]
struct Named;

#[derive(LogEvent)]
struct r#Match {
    r#type: u8,
}

#[derive(LogEvent)]
struct Heartbeat;

#[derive(LogEvent)]
struct Generic<'a, T: serde::Serialize, D> {
    value: T,
    #[log(display)]
    shown: D,
    borrowed: &'a [T],
}

#[derive(LogEvent)]
#[log(name = "quote\" backslash\\ newline\n separator\u{2028} end")]
struct HostileName;

#[derive(LogEvent)]
#[log(name = "a")]
struct OneLetter;

#[derive(LogEvent)]
#[log(name = "a_name_of_exactly_thirty_two_chr")]
struct ThirtyTwo;

#[derive(LogEvent)]
#[log(name = "a_name_longer_than_the_thirty_two_bytes_copied_in_words")]
struct LongName;

#[test]
fn event_names_are_written_exactly_whatever_their_length_and_characters() {
    // Plain names are copied as they are (checked when compiling), any other escaped.
    let dir = tempfile::tempdir().unwrap();
    let guard = start(&dir);
    let logger = guard.logger("m");
    emit!(logger, HostileName);
    emit!(logger, OneLetter);
    emit!(logger, ThirtyTwo);
    emit!(logger, LongName);
    drop(guard);
    let raw = std::fs::read_to_string(dir.path().join("chimera.log")).unwrap();
    assert_eq!(raw.lines().count(), 4, "a name cannot end a line early: {raw}");
    let lines = json_lines(&dir.path().join("chimera.log"));
    assert_eq!(lines[0]["event"], "quote\" backslash\\ newline\n separator\u{2028} end");
    assert!(raw.contains("\\u2028"), "U+2028 escaped in the line");
    assert_eq!(lines[1]["event"], "a");
    assert_eq!(lines[2]["event"], "a_name_of_exactly_thirty_two_chr");
    assert_eq!(lines[3]["event"], "a_name_longer_than_the_thirty_two_bytes_copied_in_words");
}

#[test]
fn event_names_come_from_the_type_or_the_name_attribute() {
    let dir = tempfile::tempdir().unwrap();
    let guard = start(&dir);
    let logger = guard.logger("m");
    emit!(logger, Named);
    emit!(logger, r#Match { r#type: 1 });
    emit!(logger, Heartbeat);
    emit!(logger, Generic { value: 5u8, shown: 1.5f32, borrowed: &[1, 2] });
    drop(guard);
    let lines = json_lines(&dir.path().join("chimera.log"));
    assert_eq!(lines[0]["event"], "custom.name");
    assert_eq!(lines[0]["level"], "CRITICAL");
    assert_eq!(lines[1]["event"], "match");
    assert_eq!(lines[1]["context"], json!({"type": 1}));
    assert_eq!(lines[2]["event"], "heartbeat");
    assert_eq!(lines[2]["context"], json!({}));
    assert_eq!(lines[3]["event"], "generic");
    assert_eq!(lines[3]["context"], json!({"value": 5, "shown": "1.5", "borrowed": [1, 2]}));
}

#[derive(serde::Serialize)]
struct Position {
    debt: u64,
}

#[test]
fn adhoc_context_accepts_any_serialize_and_wraps_non_objects() {
    let dir = tempfile::tempdir().unwrap();
    let guard = start(&dir);
    let logger = guard.logger("m");
    logger.info("struct_context", Position { debt: 7 });
    logger.info("map_context", BTreeMap::from([("k", "v")]));
    logger.info("no_context", ());
    logger.info("scalar_context", 42);
    drop(guard);
    let contexts: Vec<Value> =
        json_lines(&dir.path().join("chimera.log")).iter().map(|l| l["context"].clone()).collect();
    assert_eq!(contexts, [json!({"debt": 7}), json!({"k": "v"}), json!({}), json!({"value": 42})]);
}

/// A hand-written `Serialize` that writes key `a` twice (and `a_2` of its own), and a nested
/// object with key `k` twice: what serde_json would pass through as it is.
struct RepeatsKeys;

impl serde::Serialize for RepeatsKeys {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Inner;
        impl serde::Serialize for Inner {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(None)?;
                map.serialize_entry("k", "first")?;
                map.serialize_entry("k", "second")?;
                map.end()
            }
        }
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("a", &1)?;
        map.serialize_entry("a", &2)?;
        map.serialize_entry("a_2", &3)?;
        map.serialize_entry("nested", &[Inner])?;
        map.end()
    }
}

#[derive(LogEvent)]
struct CarriesRepeats {
    first: u64,
    value: RepeatsKeys,
}

#[test]
fn a_key_written_twice_in_an_adhoc_context_or_a_serialized_value_is_kept_once_the_later_renamed() {
    let dir = tempfile::tempdir().unwrap();
    let guard = start(&dir);
    let logger = guard.logger("m");
    logger.info("adhoc", RepeatsKeys);
    emit!(logger, CarriesRepeats { first: 0, value: RepeatsKeys });
    drop(guard);
    let lines = raw_lines(&dir.path().join("chimera.log"));
    // The first keeps the key; the later one takes the first number free in its object (`a_2`
    // is the object's own): nothing dropped, no key twice.
    let adhoc = common::context_in_order(&lines[0]);
    assert_eq!(adhoc.keys(), ["a", "a_3", "a_2", "nested"], "{}", lines[0]);
    assert_eq!(
        (adhoc.get("a"), adhoc.get("a_3"), adhoc.get("a_2")),
        (Some(&json!(1)), Some(&json!(2)), Some(&json!(3)))
    );
    let nested = r#""nested":[{"k":"first","k_2":"second"}]"#;
    assert!(lines[0].contains(nested), "{}", lines[0]);
    let typed = common::context_in_order(&lines[1]);
    assert_eq!(typed.keys(), ["first", "value"], "{}", lines[1]);
    assert!(
        lines[1].contains(r#""value":{"a":1,"a_3":2,"a_2":3,"nested":[{"k":"first","k_2":"second"}]}"#),
        "{}",
        lines[1]
    );
}

#[test]
fn context_keys_named_like_the_envelopes_stay_in_the_context_and_each_top_level_key_is_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let guard = start(&dir);
    let context = json!({"timestamp": "t", "level": "l", "module": "m", "event": "e", "context": "c"});
    guard.logger("m").info("envelope_names", &context);
    drop(guard);
    let line = &raw_lines(&dir.path().join("chimera.log"))[0];
    let top: Ordered = serde_json::from_str(line).unwrap();
    assert_eq!(top.keys(), ["timestamp", "level", "module", "event", "context"]);
    assert_eq!(top.get("context"), Some(&context));
}
