//! OpenTelemetry ids on lines written inside spans (issue 28, item 1; feature `opentelemetry`):
//! with `tracing-opentelemetry`'s layer beside `ChimeraLayer` in a registry, every line written
//! inside a span (typed, ad-hoc, captured) carries `trace_id` and `span_id`, W3C hex, right after
//! its `context`, and they are the ids OpenTelemetry gave the span.
#![cfg(feature = "opentelemetry")]

mod common;

use chimera_log_runtime::{emit, AuditStore, ChimeraLayer, LogConfig, LogEvent};
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use serde_json::Value;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::prelude::*;

#[derive(LogEvent)]
#[log(audit, level = "info")]
struct ExecutionAttempt {
    block_number: u64,
    success: bool,
}

/// `(trace_id, span_id)` as W3C hex, from the span's own OpenTelemetry context.
fn ids_of(span: &tracing::Span) -> (String, String) {
    let context = span.context();
    let otel = context.span();
    let ids = otel.span_context();
    assert!(ids.is_valid(), "the span has OpenTelemetry ids");
    (format!("{:032x}", ids.trace_id()), format!("{:016x}", ids.span_id()))
}

fn ids_on(line: &Value) -> (String, String) {
    (line["trace_id"].as_str().unwrap_or_default().to_owned(), line["span_id"].as_str().unwrap_or_default().to_owned())
}

#[test]
fn lines_inside_a_span_with_an_opentelemetry_context_carry_its_trace_and_span_ids() {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(ChimeraLayer::new())
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("chimera-log-test")));
    let dir = tempfile::tempdir().unwrap();
    // A logger of its own, and no global one: captured events go through the global logger, so
    // this test sets one up for them (init_logging in-process: this binary has no other test).
    let guard = chimera_log_runtime::init_logging(
        LogConfig::new(dir.path()).console(false).audit_store(AuditStore::none()).capture(false),
    )
    .unwrap();
    let logger = guard.logger("executor");
    let (outer_ids, inner_ids) = tracing::subscriber::with_default(subscriber, || {
        logger.info("outside", serde_json::json!({}));
        let outer = tracing::info_span!("request", id = 7u64);
        let _outer = outer.enter();
        logger.info("in_outer", serde_json::json!({"k": 1}));
        let inner = tracing::info_span!("liquidate");
        let _inner = inner.enter();
        emit!(logger, ExecutionAttempt { block_number: 1, success: true });
        tracing::info!(n = 1u64, "captured_inside");
        (ids_of(&outer), ids_of(&inner))
    });
    assert!(guard.flush());
    drop(guard);
    assert_eq!(outer_ids.0, inner_ids.0, "one trace");
    let lines = common::json_lines(&dir.path().join("chimera.log"));
    let find = |event: &str| lines.iter().find(|l| l["event"] == event).unwrap_or_else(|| panic!("{event}: {lines:?}"));
    assert!(find("outside").get("trace_id").is_none(), "no span, no ids");
    assert_eq!(ids_on(find("in_outer")), outer_ids);
    assert_eq!(ids_on(find("execution_attempt")), inner_ids);
    assert_eq!(ids_on(find("captured_inside")), inner_ids, "captured events alike");
    // Right after the context, before the audit seal; the audit record carries them too.
    let text = std::fs::read_to_string(dir.path().join("chimera.log")).unwrap();
    let raw = text.lines().find(|l| l.contains("in_outer")).unwrap();
    let ordered: common::Ordered = serde_json::from_str(raw).unwrap();
    assert_eq!(ordered.keys(), ["timestamp", "level", "module", "event", "context", "trace_id", "span_id"]);
    let audit = common::json_lines(&dir.path().join(chimera_log_runtime::AUDIT_FILE));
    let record = audit.iter().find(|l| l["event"] == "execution_attempt").unwrap();
    assert_eq!(ids_on(record), inner_ids);
}
