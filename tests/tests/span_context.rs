//! Span context on typed and ad-hoc events (issue 28, item 1): a line written inside a `tracing`
//! span carries the span stack in its context, as a captured event does, when the spans are
//! seen through `ChimeraLayer` on a `tracing_subscriber::Registry`. Here the registry is the
//! application's own, set as the thread's default (`with_default`); the capture `init_logging`
//! installs is the same registry and layer (tests/tests/capture.rs).

mod common;

use std::path::Path;

use chimera_log_runtime::{emit, AuditStore, ChimeraLayer, LogConfig, LogEvent};
use serde_json::{json, Value};
use tracing_subscriber::prelude::*;

#[derive(LogEvent)]
#[log(level = "info")]
struct BundleSent<'a> {
    protocol: &'a str,
    profit_usd: u128,
}

#[derive(LogEvent)]
#[log(level = "info")]
struct Spanned<'a> {
    span: &'a str,
}

#[derive(LogEvent)]
#[log(audit, level = "info")]
struct ExecutionAttempt {
    block_number: u64,
    success: bool,
}

fn config(dir: &Path) -> LogConfig {
    LogConfig::new(dir).console(false).audit_store(AuditStore::none())
}

fn lines(dir: &Path, file: &str) -> Vec<Value> {
    common::json_lines(&dir.join(file))
}

fn registry() -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::registry().with(ChimeraLayer::new())
}

#[test]
fn typed_and_ad_hoc_events_inside_spans_carry_the_stack_outermost_first_and_outside_none() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).build().unwrap();
    let logger = guard.logger("executor");
    tracing::subscriber::with_default(registry(), || {
        emit!(logger, BundleSent { protocol: "aave", profit_usd: 1 });
        let outer = tracing::info_span!("handle_block", block = 42u64);
        let _outer = outer.enter();
        let inner = tracing::info_span!("liquidate", protocol = "moonwell");
        let _inner = inner.enter();
        emit!(logger, BundleSent { protocol: "moonwell", profit_usd: 7 });
        logger.info("ad_hoc", json!({"attempt": 2}));
        logger.info("ad_hoc_empty", json!({}));
        drop(_inner);
        emit!(logger, BundleSent { protocol: "outer_only", profit_usd: 3 });
    });
    assert!(guard.flush());
    drop(guard);
    let lines = lines(dir.path(), "chimera.log");
    let stack = json!([{"name": "handle_block", "block": 42}, {"name": "liquidate", "protocol": "moonwell"}]);
    let contexts: Vec<&Value> = lines.iter().map(|line| &line["context"]).collect();
    assert_eq!(
        contexts,
        [
            &json!({"protocol": "aave", "profit_usd": 1}),
            &json!({"protocol": "moonwell", "profit_usd": 7, "span": stack}),
            &json!({"attempt": 2, "span": stack}),
            &json!({"span": stack}),
            &json!({"protocol": "outer_only", "profit_usd": 3, "span": [{"name": "handle_block", "block": 42}]}),
        ]
    );
    // The envelope is untouched: the contract's keys, in order.
    let text = std::fs::read_to_string(dir.path().join("chimera.log")).unwrap();
    let raw = text.lines().nth(1).unwrap();
    let ordered: common::Ordered = serde_json::from_str(raw).unwrap();
    assert_eq!(ordered.keys(), ["timestamp", "level", "module", "event", "context"]);
}

#[test]
fn a_field_named_span_keeps_its_name_and_the_stack_is_written_as_span_2() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).build().unwrap();
    let logger = guard.logger("m");
    tracing::subscriber::with_default(registry(), || {
        let span = tracing::info_span!("request", id = 7u64);
        let _entered = span.enter();
        emit!(logger, Spanned { span: "mine" });
    });
    assert!(guard.flush());
    drop(guard);
    let text = std::fs::read_to_string(dir.path().join("chimera.log")).unwrap();
    let context: common::Ordered =
        serde_json::from_value(serde_json::from_str::<Value>(&text).unwrap()["context"].clone()).unwrap();
    assert_eq!(context.keys(), ["span", "span_2"]);
    assert_eq!(
        lines(dir.path(), "chimera.log")[0]["context"],
        json!({"span": "mine", "span_2": [{"name": "request", "id": 7}]})
    );
}

#[test]
fn a_span_field_recorded_after_the_span_began_is_on_the_lines_written_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).build().unwrap();
    let logger = guard.logger("m");
    tracing::subscriber::with_default(registry(), || {
        let span = tracing::info_span!("bundle", tx = tracing::field::Empty);
        let _entered = span.enter();
        logger.info("before", json!({}));
        span.record("tx", "0xab");
        logger.info("after", json!({}));
    });
    assert!(guard.flush());
    drop(guard);
    let contexts: Vec<Value> =
        lines(dir.path(), "chimera.log").into_iter().map(|line| line["context"].clone()).collect();
    assert_eq!(contexts, [json!({"span": [{"name": "bundle"}]}), json!({"span": [{"name": "bundle", "tx": "0xab"}]})]);
}

#[test]
fn with_span_context_off_a_typed_line_inside_a_span_is_the_line_written_outside_it() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).span_context(false).build().unwrap();
    let logger = guard.logger("m");
    tracing::subscriber::with_default(registry(), || {
        emit!(logger, BundleSent { protocol: "aave", profit_usd: 5 });
        let span = tracing::info_span!("handle_block", block = 1u64);
        let _entered = span.enter();
        emit!(logger, BundleSent { protocol: "aave", profit_usd: 5 });
    });
    assert!(guard.flush());
    drop(guard);
    let lines = lines(dir.path(), "chimera.log");
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["context"], lines[1]["context"]);
    assert_eq!(lines[1]["context"], json!({"protocol": "aave", "profit_usd": 5}));
}

/// The audit record of an attempt made inside a span joins its trace: the span stack is in the
/// sealed line (the chain covers it, as the CLI's `verify` test checks).
#[test]
fn an_audit_record_written_inside_a_span_carries_the_stack_in_the_audit_file() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).build().unwrap();
    let logger = guard.logger("executor");
    tracing::subscriber::with_default(registry(), || {
        let span = tracing::info_span!("liquidation", borrower = "0x5a6b");
        let _entered = span.enter();
        emit!(logger, ExecutionAttempt { block_number: 9, success: true });
    });
    drop(guard);
    let audit = lines(dir.path(), chimera_log_runtime::AUDIT_FILE);
    let record = audit.iter().find(|line| line["event"] == "execution_attempt").expect("the record");
    assert_eq!(record["context"]["span"], json!([{"name": "liquidation", "borrower": "0x5a6b"}]));
    assert_eq!(record["context"]["block_number"], 9);
}

/// A subscriber that is not a registry with `ChimeraLayer` records no span fields: lines carry
/// no stack, and nothing fails.
#[test]
fn under_a_subscriber_without_chimera_layer_lines_carry_no_stack() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).build().unwrap();
    let logger = guard.logger("m");
    // Spans entered through ChimeraLayer on one registry, then a line under another subscriber
    // (a plain registry) on the same thread: the stack is looked up in the current one only.
    tracing::subscriber::with_default(tracing_subscriber::registry(), || {
        let span = tracing::info_span!("plain", n = 1u64);
        let _entered = span.enter();
        logger.info("no_layer", json!({"k": 1}));
    });
    assert!(guard.flush());
    drop(guard);
    assert_eq!(lines(dir.path(), "chimera.log")[0]["context"], json!({"k": 1}));
}
