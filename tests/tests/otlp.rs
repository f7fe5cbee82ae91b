//! The OTLP/HTTP forwarder against a receiver of the tests' own (`otlp/receiver.rs`), which
//! decodes every request with the protobuf types the forwarder encodes with.
#![cfg(feature = "otlp")]

mod common;
#[path = "otlp/receiver.rs"]
mod receiver;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use chimera_log_runtime::{emit, AuditStore, Clock, LogConfig, LogEvent, LogGuard, OtlpConfig};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use receiver::{Receiver, Reply};
use serde_json::json;

/// These tests count every line shipped: the writer's health warnings (a slow window on a busy
/// machine) would be lines too, so the watch is off (tests/tests/watch.rs tests it).
fn config(dir: &std::path::Path, otlp: OtlpConfig) -> LogConfig {
    LogConfig::new(dir).console(false).audit_store(AuditStore::none()).watch_interval(Duration::MAX).otlp(otlp)
}

fn start(dir: &std::path::Path, otlp: OtlpConfig) -> LogGuard {
    config(dir, otlp).build().unwrap()
}

fn attribute<'a>(record: &'a LogRecord, key: &str) -> Option<&'a Value> {
    record.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

/// The `seq` attribute of every record received, and how many times each arrived.
fn seq_counts(receiver: &Receiver) -> BTreeMap<i64, u32> {
    let mut counts = BTreeMap::new();
    for (_, record) in receiver.records() {
        if let Some(Value::IntValue(seq)) = attribute(&record, "seq") {
            *counts.entry(*seq).or_default() += 1;
        }
    }
    counts
}

/// Asserts that exactly the seqs in `range` arrived, each once.
fn assert_exactly_once(receiver: &Receiver, range: std::ops::Range<i64>) {
    let counts = seq_counts(receiver);
    let twice: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).map(|(seq, _)| *seq).collect();
    assert!(
        twice.is_empty(),
        "{} seq(s) arrived more than once, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(10)]
    );
    let missing: Vec<_> = range.clone().filter(|seq| !counts.contains_key(seq)).collect();
    assert!(missing.is_empty(), "{} seq(s) never arrived, e.g. {:?}", missing.len(), &missing[..missing.len().min(10)]);
    assert_eq!(counts.len(), range.count(), "nothing else arrived");
}

#[derive(LogEvent)]
#[log(level = "error")]
struct RpcFailed {
    provider: &'static str,
    cached: u128,
    bps: f64,
    ok: bool,
    nested: BTreeMap<&'static str, Vec<u32>>,
}

#[test]
fn a_line_arrives_mapped_with_the_environments_endpoint_headers_and_resource() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(|_| Reply::Accept);
    let guard = LogConfig::from_vars([
        ("CHIMERA_LOG_DIR", dir.path().to_str().unwrap()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint().as_str()),
        ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20token,x-scope-orgid=team-1"),
        ("OTEL_SERVICE_NAME", "liquidator"),
        ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test,service.version=1.2"),
    ])
    .unwrap()
    .console(false)
    .audit_store(AuditStore::none())
    .build()
    .unwrap();
    let error = std::io::Error::other("connection reset");
    let logger = guard.logger("state_engine");
    emit!(
        logger,
        RpcFailed {
            provider: "alchemy",
            cached: u128::MAX,
            bps: 12.5,
            ok: false,
            nested: BTreeMap::from([("a", vec![1, 2])]),
        },
        error = &error
    );
    assert!(guard.flush());
    drop(guard);

    let taken = receiver.taken();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].headers.get("authorization").map(String::as_str), Some("Bearer token"));
    assert_eq!(taken[0].headers.get("x-scope-orgid").map(String::as_str), Some("team-1"));
    let resource = taken[0].request.resource_logs[0].resource.as_ref().unwrap();
    let resource: BTreeMap<&str, &Value> = resource
        .attributes
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_ref().unwrap().value.as_ref().unwrap()))
        .collect();
    assert_eq!(resource["service.name"], &Value::StringValue("liquidator".into()));
    assert_eq!(resource["deployment.environment.name"], &Value::StringValue("test".into()));
    assert_eq!(resource["service.version"], &Value::StringValue("1.2".into()));

    let line: serde_json::Value = serde_json::from_str(&common::raw_lines(&dir.path().join("chimera.log"))[0]).unwrap();
    let records = receiver.records();
    assert_eq!(records.len(), 1);
    let (scope, record) = &records[0];
    assert_eq!(scope, "state_engine");
    let time = chrono::DateTime::parse_from_rfc3339(line["timestamp"].as_str().unwrap()).unwrap();
    assert_eq!(record.time_unix_nano, time.timestamp_nanos_opt().unwrap() as u64);
    assert!(record.observed_time_unix_nano >= record.time_unix_nano);
    assert_eq!((record.severity_number, record.severity_text.as_str()), (17, "ERROR"));
    assert_eq!(record.event_name, "rpc_failed");
    assert_eq!(record.body.as_ref().unwrap().value, Some(Value::StringValue("rpc_failed".into())));
    assert_eq!(attribute(record, "provider"), Some(&Value::StringValue("alchemy".into())));
    assert_eq!(attribute(record, "cached"), Some(&Value::StringValue(u128::MAX.to_string())), "exact, as a string");
    assert_eq!(attribute(record, "bps"), Some(&Value::DoubleValue(12.5)));
    assert_eq!(attribute(record, "ok"), Some(&Value::BoolValue(false)));
    assert!(matches!(attribute(record, "nested"), Some(Value::KvlistValue(list)) if list.values[0].key == "a"));
    assert_eq!(attribute(record, "exception.message"), Some(&Value::StringValue("connection reset".into())));
    let kind = line["exception"]["type"].as_str().unwrap().to_owned();
    assert_eq!(attribute(record, "exception.type"), Some(&Value::StringValue(kind)));
}

#[test]
fn a_20000_line_burst_arrives_exactly_once_while_every_4th_request_is_refused_with_503() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(|n| if n % 4 == 0 { Reply::Status(503, None) } else { Reply::Accept });
    let guard = config(dir.path(), OtlpConfig::new(receiver.endpoint()))
        .shutdown_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let logger = guard.logger("burst");
    for seq in 0..20_000i64 {
        logger.info("tick", json!({ "seq": seq }));
    }
    assert!(guard.flush());
    let stats = guard.stats().otlp.unwrap();
    drop(guard);
    assert_exactly_once(&receiver, 0..20_000);
    assert!(receiver.refused() >= 1, "the receiver refused some requests");
    assert_eq!(stats.batches_retried, receiver.refused(), "{stats:?}");
    assert_eq!((stats.events_sent, stats.events_refused, stats.down), (20_000, 0, false), "{stats:?}");
    assert!(stats.batches_sent >= 40, "at most 512 records per request: {stats:?}");
}

/// The receiver is down (connections refused) for 30 s while the application goes on logging;
/// the test knows the forwarder is retrying from its flushes failing and from `stats()`, not
/// from sleeping.
#[test]
fn thirty_seconds_of_receiver_down_under_load_are_caught_up_exactly_once_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start(|_| Reply::Accept);
    let guard = config(dir.path(), OtlpConfig::new(receiver.endpoint()))
        .shutdown_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let logger = guard.logger("load");
    let mut seq = 0i64;
    for _ in 0..500 {
        logger.info("tick", json!({ "seq": seq }));
        seq += 1;
    }
    assert!(guard.flush());
    receiver.down();
    let down_at = Instant::now();
    let mut failed_flushes = 0;
    while down_at.elapsed() < Duration::from_secs(30) {
        for _ in 0..1_000 {
            logger.info("tick", json!({ "seq": seq }));
            seq += 1;
        }
        assert!(!guard.flush(), "nothing can be shipped while the receiver is down");
        failed_flushes += 1;
        let stats = guard.stats();
        let otlp = stats.otlp.unwrap();
        assert!(otlp.down && otlp.batches_retried >= failed_flushes, "retrying: {otlp:?}");
        assert!(otlp.lag_bytes > 0, "{otlp:?}");
        assert_eq!(stats.sink("chimera.log").unwrap().lines, seq as u64, "the files keep up meanwhile");
    }
    receiver.up();
    assert!(guard.flush(), "caught up once the receiver is back");
    let otlp = guard.stats().otlp.unwrap();
    drop(guard);
    assert!(!otlp.down, "{otlp:?}");
    assert_eq!((otlp.events_sent, otlp.lag_bytes), (seq as u64, 0), "{otlp:?}");
    assert_exactly_once(&receiver, 0..seq);
}

#[test]
fn a_restart_mid_stream_sends_nothing_twice_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Takes the first 10 requests of the first run, then refuses everything.
    let receiver = Receiver::start(|n| if n <= 10 { Reply::Accept } else { Reply::Status(503, None) });
    let otlp = || OtlpConfig::new(receiver.endpoint()).max_batch_events(100);
    let guard = config(dir.path(), otlp()).shutdown_timeout(Duration::from_secs(1)).build().unwrap();
    let logger = guard.logger("m");
    for seq in 0..5_000i64 {
        logger.info("tick", json!({ "seq": seq }));
    }
    assert!(!guard.flush(), "stuck behind the 503s");
    drop(guard);
    let first_run = seq_counts(&receiver).len();
    assert!(first_run > 0 && first_run < 5_000, "the restart came mid-stream: {first_run} shipped");

    receiver.set_policy(|_| Reply::Accept);
    let guard = start(dir.path(), otlp());
    let logger = guard.logger("m");
    for seq in 5_000..6_000i64 {
        logger.info("tick", json!({ "seq": seq }));
    }
    assert!(guard.flush());
    drop(guard);
    assert_exactly_once(&receiver, 0..6_000);
}

#[test]
fn a_partial_success_is_counted_and_not_sent_again_and_a_400_drops_only_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(|n| match n {
        1 => Reply::Partial(3),
        2 => Reply::Status(400, None),
        _ => Reply::Accept,
    });
    let guard = start(dir.path(), OtlpConfig::new(receiver.endpoint()).max_batch_events(10));
    let logger = guard.logger("m");
    for seq in 0..30i64 {
        logger.info("tick", json!({ "seq": seq }));
    }
    assert!(guard.flush());
    let stats = guard.stats().otlp.unwrap();
    drop(guard);
    assert_eq!((stats.events_rejected, stats.events_refused, stats.events_sent), (3, 10, 17), "{stats:?}");
    assert_eq!((stats.batches_sent, stats.batches_failed, stats.batches_retried), (2, 1, 0), "{stats:?}");
    let counts = seq_counts(&receiver);
    assert_eq!(counts.keys().copied().collect::<Vec<_>>(), (0..10).chain(20..30).collect::<Vec<_>>());
    assert!(counts.values().all(|&n| n == 1), "the partially rejected batch was not sent again");
}

/// Records the waits the forwarder asks of it, and lets none take real time.
#[derive(Debug, Default)]
struct RecordingClock(Mutex<Vec<Duration>>);

impl Clock for RecordingClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
    fn begin_wait(&self, wait: Duration) -> Duration {
        self.0.lock().unwrap().push(wait);
        Duration::ZERO
    }
}

#[test]
fn retry_after_in_seconds_or_as_an_http_date_sets_the_wait_before_the_next_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let date = chrono::DateTime::<chrono::Utc>::from(SystemTime::now() + Duration::from_secs(90));
    let date = date.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let receiver = Receiver::start(move |n| match n {
        1 => Reply::Status(429, Some("42".into())),
        2 => Reply::Status(503, Some(date.clone())),
        _ => Reply::Accept,
    });
    let clock = Arc::new(RecordingClock::default());
    let guard = config(dir.path(), OtlpConfig::new(receiver.endpoint())).clock(clock.clone()).build().unwrap();
    guard.logger("m").info("tick", json!({ "seq": 0 }));
    assert!(guard.flush());
    drop(guard);
    let waits = clock.0.lock().unwrap().clone();
    assert_eq!(waits.len(), 2, "{waits:?}");
    assert_eq!(waits[0], Duration::from_secs(42));
    assert!(waits[1] > Duration::from_secs(80) && waits[1] <= Duration::from_secs(90), "{waits:?}");
    assert_exactly_once(&receiver, 0..1);
}

#[test]
fn a_dead_endpoint_costs_one_stderr_line_never_holds_up_the_files_and_frees_the_directory_at_shutdown() {
    const CHILD: &str = "CHIMERA_OTLP_DEAD_ENDPOINT_CHILD";
    if let Ok(dir) = std::env::var(CHILD) {
        let dir = std::path::Path::new(&dir);
        // A port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dead = OtlpConfig::new(format!("http://127.0.0.1:{port}")).timeout(Duration::from_millis(500));
        let guard = config(dir, dead).shutdown_timeout(Duration::from_millis(1_500)).build().unwrap();
        let logger = guard.logger("m");
        for seq in 0..1_000i64 {
            logger.info("tick", json!({ "seq": seq }));
        }
        assert!(!guard.flush());
        for seq in 1_000..2_000i64 {
            logger.info("tick", json!({ "seq": seq }));
        }
        let stats_logger = guard.logger("stats");
        drop(guard); // bounded by the shutdown timeout although nothing answers
        let otlp = stats_logger.stats().unwrap().otlp.unwrap();
        assert_eq!(common::json_lines(&dir.join("chimera.log")).len(), 2_000, "the files are complete");
        assert_eq!((otlp.events_sent, otlp.events_refused), (0, 0), "nothing lost: the lines wait in the file");
        assert!(otlp.batches_retried >= 2 && otlp.batches_failed >= 1 && otlp.down, "{otlp:?}");
        // The forwarder's thread has ended and let go of the directory: a new logger starts on it.
        let receiver = Receiver::start(|_| Reply::Accept);
        let guard = start(dir, OtlpConfig::new(receiver.endpoint()));
        assert!(guard.flush());
        drop(guard);
        assert_exactly_once(&receiver, 0..2_000);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "a_dead_endpoint_costs_one_stderr_line_never_holds_up_the_files_and_frees_the_directory_at_shutdown",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let ours: Vec<&str> = stderr.lines().filter(|line| line.starts_with("chimera-log: OTLP")).collect();
    assert_eq!(ours.len(), 1, "one line for the whole outage: {stderr}");
    assert!(ours[0].contains("delivery to http://127.0.0.1:") && ours[0].contains("stopped"), "{ours:?}");
}

/// The span stack and the OpenTelemetry ids a line carries (issue 28, item 1) arrive as the
/// record's `span` attribute and its `trace_id`/`span_id` bytes.
#[cfg(feature = "opentelemetry")]
#[test]
fn a_line_inside_a_span_arrives_with_the_spans_trace_and_span_ids_as_bytes() {
    use opentelemetry::trace::{TraceContextExt, TracerProvider};
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::prelude::*;

    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(chimera_log_runtime::ChimeraLayer::new())
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("chimera-log-test")));
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(|_| Reply::Accept);
    let guard = start(dir.path(), OtlpConfig::new(receiver.endpoint()));
    let logger = guard.logger("executor");
    let (trace_id, span_id) = tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("request", id = 7u64);
        let _entered = span.enter();
        logger.info("in_span", json!({ "k": 1 }));
        let context = span.context();
        let otel = context.span();
        let ids = otel.span_context();
        (format!("{:032x}", ids.trace_id()), format!("{:016x}", ids.span_id()))
    });
    assert!(guard.flush());
    drop(guard);
    let records = receiver.records();
    let (_, record) = records.iter().find(|(_, r)| r.event_name == "in_span").expect("the line arrived");
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!((hex(&record.trace_id), hex(&record.span_id)), (trace_id, span_id));
    let Some(Value::ArrayValue(spans)) = attribute(record, "span") else { panic!("{record:?}") };
    let Some(Value::KvlistValue(request)) = spans.values[0].value.as_ref() else { panic!("{spans:?}") };
    let name = request.values.iter().find(|kv| kv.key == "name").and_then(|kv| kv.value.clone()?.value);
    assert_eq!(name, Some(Value::StringValue("request".into())));
}
