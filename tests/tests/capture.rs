//! Capture of what the rest of the program logs (issue 14): `tracing` events and `log` records
//! become chimera lines; `ChimeraLayer` composes with `EnvFilter`; per-module levels apply; an
//! application's own subscriber is left alone. Each test runs in a child process of its own: the
//! global subscriber and the global logger are per process.

mod common;

use std::path::Path;
use std::process::Command;

use chimera_log_runtime::{init_logging, AuditStore, LogConfig};
use serde_json::{json, Value};

const MODE: &str = "CHIMERA_CAPTURE_TEST_DIR";

fn config(dir: &Path) -> LogConfig {
    LogConfig::new(dir).console(false).audit_store(AuditStore::none())
}

/// Runs `test` in a child process with `dir` as its log directory; returns its stderr.
fn in_child(test: &str, dir: &Path) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(MODE, dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "child failed: {stderr}");
    stderr
}

fn child_dir() -> Option<std::path::PathBuf> {
    std::env::var_os(MODE).map(Into::into)
}

fn lines(dir: &Path) -> Vec<Value> {
    common::json_lines(&dir.join("chimera.log"))
}

#[test]
fn tracing_events_and_log_records_become_lines_of_the_contracts_shape_with_their_spans() {
    if let Some(dir) = child_dir() {
        let guard = init_logging(config(&dir).level(chimera_log_runtime::Level::Trace)).unwrap();
        let outer = tracing::info_span!("handle_block", block = 42u64);
        let _outer = outer.enter();
        let inner = tracing::debug_span!("liquidate", protocol = "moonwell");
        let _inner = inner.enter();
        tracing::info!(profit_usd = 12.5, gas = 21_000u64, ok = true, tx = "0xab", items = ?vec![1, 2], "bundle_sent");
        tracing::warn!(target: "hyper::client", "connection reset");
        log::warn!(target: "reqwest::connect", "retrying {} of {}", 2, 3);
        log::error!("plain log error");
        tracing::trace!(n = 1, "a_trace");
        drop(_inner);
        drop(_outer);
        assert!(guard.flush());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    in_child("tracing_events_and_log_records_become_lines_of_the_contracts_shape_with_their_spans", dir.path());
    let lines = lines(dir.path());
    let find = |event: &str| lines.iter().find(|l| l["event"] == event).unwrap_or_else(|| panic!("{event}: {lines:?}"));
    let sent = find("bundle_sent");
    let text = std::fs::read_to_string(dir.path().join("chimera.log")).unwrap();
    let raw = text.lines().find(|l| l.contains("bundle_sent")).unwrap();
    let ordered: common::Ordered = serde_json::from_str(raw).unwrap();
    assert_eq!(ordered.keys(), ["timestamp", "level", "module", "event", "context"], "the contract's keys, in order");
    assert_eq!((sent["level"].as_str(), sent["module"].as_str()), (Some("INFO"), Some("capture")));
    assert_eq!(
        sent["context"],
        json!({
            "profit_usd": 12.5, "gas": 21000, "ok": true, "tx": "0xab", "items": "[1, 2]",
            "span": [{"name": "handle_block", "block": 42}, {"name": "liquidate", "protocol": "moonwell"}]
        })
    );
    let reset = find("connection reset");
    assert_eq!((reset["level"].as_str(), reset["module"].as_str()), (Some("WARNING"), Some("hyper::client")));
    let retrying = find("retrying 2 of 3");
    assert_eq!((retrying["level"].as_str(), retrying["module"].as_str()), (Some("WARNING"), Some("reqwest::connect")));
    assert!(retrying["context"].as_object().unwrap().keys().all(|k| !k.starts_with("log.")), "{retrying}");
    assert_eq!(find("plain log error")["level"], "ERROR");
    assert_eq!(find("a_trace")["level"], "TRACE", "TRACE is TRACE");
    assert!(!common::json_lines(&dir.path().join("executions.log"))
        .iter()
        .any(|l| l.get("event").is_some_and(|e| e != "audit_anchor")));
}

#[test]
fn chimera_layer_composes_with_env_filter_and_per_module_levels_apply_to_captured_events() {
    if let Some(dir) = child_dir() {
        use tracing_subscriber::prelude::*;
        let config = config(&dir).capture(false).level_for("noisy", chimera_log_runtime::Level::Error);
        let guard = init_logging(config).unwrap();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("info,filtered=error"))
            .with(chimera_log_runtime::ChimeraLayer::new());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("kept");
            tracing::debug!("below_env_filter");
            tracing::warn!(target: "filtered::x", "cut_by_env_filter");
            tracing::warn!(target: "noisy::x", "cut_by_level_for");
            tracing::error!(target: "noisy::x", "noisy_error_kept");
        });
        assert!(guard.flush());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    in_child("chimera_layer_composes_with_env_filter_and_per_module_levels_apply_to_captured_events", dir.path());
    let events: Vec<String> = lines(dir.path()).iter().map(|l| l["event"].as_str().unwrap().to_owned()).collect();
    assert_eq!(events, ["kept", "noisy_error_kept"]);
}

/// The application's own `fmt` layer, writing into `theirs.txt` beside the logs.
fn their_fmt_layer<S>(dir: &Path) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let file = std::fs::File::create(dir.join("theirs.txt")).unwrap();
    tracing_subscriber::fmt::layer().with_writer(std::sync::Mutex::new(file))
}

fn theirs(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("theirs.txt")).unwrap()
}

fn events(dir: &Path) -> Vec<String> {
    lines(dir).iter().map(|l| l["event"].as_str().unwrap().to_owned()).collect()
}

/// Order: the application's subscriber, then `init_logging`. Without `ChimeraLayer` in it, what
/// the dependencies log could never reach `chimera.log`: the start is refused, with what to do,
/// before anything is created; with `capture(false)` it starts and leaves the subscriber alone.
#[test]
fn a_subscriber_without_chimera_layer_installed_first_is_an_error_saying_what_to_do_and_capture_off_starts() {
    if let Some(dir) = child_dir() {
        use tracing_subscriber::prelude::*;
        tracing_subscriber::registry().with(their_fmt_layer(&dir)).init();
        let error = init_logging(config(&dir)).expect_err("refused");
        assert!(matches!(error, chimera_log_runtime::Error::SubscriberInstalled), "{error}");
        let text = error.to_string();
        assert!(text.contains("ChimeraLayer") && text.contains("capture(false)"), "{text}");
        assert!(!dir.join("chimera.log").exists() && !dir.join("executions.log").exists(), "nothing is created");
        let guard = init_logging(config(&dir).capture(false)).unwrap();
        tracing::warn!("their_event");
        assert!(guard.flush());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let stderr = in_child(
        "a_subscriber_without_chimera_layer_installed_first_is_an_error_saying_what_to_do_and_capture_off_starts",
        dir.path(),
    );
    assert!(!stderr.contains("chimera-log:"), "nothing to tell: {stderr}");
    assert!(theirs(dir.path()).contains("their_event"));
    assert!(!events(dir.path()).contains(&"their_event".to_owned()));
}

/// Order: the application's subscriber holding `ChimeraLayer` beside its `fmt` layer, then
/// `init_logging` with capture on (the default): that subscriber is the capture, nothing is said,
/// and every event, `log` records too, reaches both `chimera.log` and the `fmt` output.
#[test]
fn a_subscriber_with_chimera_layer_installed_first_is_the_capture_and_both_outputs_get_each_event() {
    if let Some(dir) = child_dir() {
        use tracing_subscriber::prelude::*;
        tracing_subscriber::registry()
            .with(chimera_log_runtime::ChimeraLayer::new())
            .with(their_fmt_layer(&dir))
            .init();
        let guard = init_logging(config(&dir)).unwrap();
        tracing::warn!(target: "hyper::client", "dependency_event");
        log::warn!(target: "reqwest::connect", "log_record");
        assert!(guard.flush());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let stderr = in_child(
        "a_subscriber_with_chimera_layer_installed_first_is_the_capture_and_both_outputs_get_each_event",
        dir.path(),
    );
    assert!(!stderr.contains("chimera-log:"), "nothing to tell: {stderr}");
    assert_eq!(events(dir.path()), ["dependency_event", "log_record"]);
    let theirs = theirs(dir.path());
    assert!(theirs.contains("dependency_event") && theirs.contains("log_record"), "{theirs}");
}

/// A scoped default on the caller's thread (`set_default`, `with_default`) is not the global
/// subscriber: starting inside one installs the capture, which then sees the events outside it.
#[test]
fn a_scoped_subscriber_on_the_callers_thread_is_not_taken_for_a_global_one() {
    if let Some(dir) = child_dir() {
        let guard = tracing::subscriber::with_default(tracing_subscriber::registry(), || init_logging(config(&dir)))
            .expect("no global subscriber: the start installs the capture");
        tracing::warn!("captured_outside_the_scope");
        assert!(guard.flush());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    in_child("a_scoped_subscriber_on_the_callers_thread_is_not_taken_for_a_global_one", dir.path());
    assert_eq!(events(dir.path()), ["captured_outside_the_scope"]);
}

/// Order: `init_logging` with capture on, then the application's subscriber. A global subscriber
/// can be set once per process: `tracing`'s `try_init` says so (its `init` panics), never
/// chimera-log, and the capture goes on.
#[test]
fn a_subscriber_installed_after_init_logging_with_capture_on_is_refused_by_tracing_and_capture_goes_on() {
    if let Some(dir) = child_dir() {
        use tracing_subscriber::prelude::*;
        let guard = init_logging(config(&dir)).unwrap();
        assert!(tracing_subscriber::registry().with(their_fmt_layer(&dir)).try_init().is_err());
        tracing::warn!(target: "hyper::client", "dependency_event");
        assert!(guard.flush());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    in_child(
        "a_subscriber_installed_after_init_logging_with_capture_on_is_refused_by_tracing_and_capture_goes_on",
        dir.path(),
    );
    assert_eq!(events(dir.path()), ["dependency_event"]);
    assert!(theirs(dir.path()).is_empty());
}

/// Order: `init_logging` with `capture(false)`, then the application's subscriber holding
/// `ChimeraLayer` beside its `fmt` layer (the composition the README shows, in this order).
#[test]
fn with_capture_off_chimera_layer_composes_into_a_subscriber_installed_after_init_logging() {
    if let Some(dir) = child_dir() {
        use tracing_subscriber::prelude::*;
        let guard = init_logging(config(&dir).capture(false)).unwrap();
        tracing_subscriber::registry()
            .with(chimera_log_runtime::ChimeraLayer::new())
            .with(their_fmt_layer(&dir))
            .init();
        tracing::warn!(target: "hyper::client", "dependency_event");
        log::warn!(target: "reqwest::connect", "log_record");
        assert!(guard.flush());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let stderr =
        in_child("with_capture_off_chimera_layer_composes_into_a_subscriber_installed_after_init_logging", dir.path());
    assert!(!stderr.contains("chimera-log:"), "nothing to tell: {stderr}");
    assert_eq!(events(dir.path()), ["dependency_event", "log_record"]);
    let theirs = theirs(dir.path());
    assert!(theirs.contains("dependency_event") && theirs.contains("log_record"), "{theirs}");
}

/// The system clock, which also logs through `tracing` when a thread other than `caller` reads
/// it: the logger's own threads do (the writer to stamp a rotated backup, the audit store's
/// follower), so what they log is the logger's internals logging.
#[derive(Debug)]
struct ChattyClock {
    caller: std::thread::ThreadId,
    reads_elsewhere: std::sync::atomic::AtomicU64,
}

impl chimera_log_runtime::Clock for ChattyClock {
    fn now(&self) -> std::time::SystemTime {
        if std::thread::current().id() != self.caller {
            self.reads_elsewhere.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!("clock_read_by_the_logger");
            log::warn!("clock_read_by_the_logger_through_log");
        }
        std::time::SystemTime::now()
    }
}

#[test]
fn events_from_the_loggers_own_threads_are_never_captured() {
    if let Some(dir) = child_dir() {
        let clock = std::sync::Arc::new(ChattyClock {
            caller: std::thread::current().id(),
            reads_elsewhere: std::sync::atomic::AtomicU64::new(0),
        });
        let config = config(&dir).audit_store(AuditStore::sqlite(dir.join("audit.db"))).max_bytes(300);
        let guard = init_logging(config.clock(clock.clone())).unwrap();
        for n in 0..20u64 {
            tracing::warn!(n, "from_the_application");
        }
        assert!(guard.flush());
        let stats = guard.stats();
        assert!(stats.sink("chimera.log").unwrap().rotations > 0, "the writer rotated, reading the clock: {stats:?}");
        assert!(clock.reads_elsewhere.load(std::sync::atomic::Ordering::Relaxed) > 0);
        assert_eq!(stats.events_by_level.iter().sum::<u64>(), 20, "{stats:?}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    in_child("events_from_the_loggers_own_threads_are_never_captured", dir.path());
}

#[test]
fn events_from_an_application_thread_named_like_the_loggers_own_are_captured() {
    if let Some(dir) = child_dir() {
        let guard = init_logging(config(&dir)).unwrap();
        std::thread::Builder::new()
            .name("chimera-log-worker".into())
            .spawn(|| {
                tracing::info!(job = 7u64, "from_tracing");
                log::info!("from_log");
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(guard.flush());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    in_child("events_from_an_application_thread_named_like_the_loggers_own_are_captured", dir.path());
    let lines = lines(dir.path());
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["from_tracing", "from_log"]);
    assert_eq!(lines[0]["context"], json!({"job": 7}));
}

#[test]
fn a_callsite_disabled_under_one_loggers_levels_is_enabled_under_the_next_ones() {
    if let Some(dir) = child_dir() {
        // One callsite, cached by tracing as disabled under the first logger's `info`.
        let tick = |n: u64| tracing::debug!(target: "engine::ws", n, "tick");
        let guard = init_logging(config(&dir)).unwrap();
        tick(1);
        assert!(guard.flush());
        drop(guard);
        let guard = init_logging(config(&dir).level_for("engine", chimera_log_runtime::Level::Debug)).unwrap();
        tick(2);
        assert!(guard.flush());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    in_child("a_callsite_disabled_under_one_loggers_levels_is_enabled_under_the_next_ones", dir.path());
    let ticks: Vec<u64> = lines(dir.path())
        .iter()
        .filter(|l| l["event"] == "tick")
        .map(|l| l["context"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ticks, [2]);
}

#[test]
fn a_later_start_with_capture_off_captures_nothing_and_without_a_logger_warnings_are_counted() {
    if let Some(dir) = child_dir() {
        let guard = init_logging(config(&dir)).unwrap();
        assert_eq!(log::max_level(), log::LevelFilter::Info, "log records below every level are not formatted");
        tracing::info!("first");
        assert!(guard.flush());
        drop(guard);
        assert_eq!(log::max_level(), log::LevelFilter::Warn);
        let before = chimera_log_runtime::events_without_logger();
        let warn = || tracing::warn!(target: "quiet", "no_logger");
        warn();
        tracing::info!("no_logger_info");
        assert_eq!(chimera_log_runtime::events_without_logger(), before + 1, "the warning is counted");
        let guard = init_logging(config(&dir).capture(false)).unwrap();
        assert_eq!(log::max_level(), log::LevelFilter::Off);
        warn();
        tracing::warn!("second");
        log::warn!("second_log");
        assert!(guard.flush());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    in_child("a_later_start_with_capture_off_captures_nothing_and_without_a_logger_warnings_are_counted", dir.path());
    let events: Vec<String> = lines(dir.path()).iter().map(|l| l["event"].as_str().unwrap().to_owned()).collect();
    assert_eq!(events, ["first"]);
}

/// Logs through `tracing` while it is being formatted.
struct Chatty;

impl std::fmt::Debug for Chatty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        tracing::info!("from_inside_debug");
        f.write_str("chatty")
    }
}

#[test]
fn keys_never_repeat_a_recorded_span_field_replaces_its_value_and_a_nested_event_is_kept() {
    if let Some(dir) = child_dir() {
        let guard = init_logging(config(&dir)).unwrap();
        let span = tracing::info_span!("request", name = "alice", status = 0u64);
        span.record("status", 200u64);
        span.in_scope(|| tracing::info!(span = "mine", value = ?Chatty, "outer"));
        assert!(guard.flush());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    in_child("keys_never_repeat_a_recorded_span_field_replaces_its_value_and_a_nested_event_is_kept", dir.path());
    let text = std::fs::read_to_string(dir.path().join("chimera.log")).unwrap();
    let raw = text.lines().find(|l| l.contains("\"outer\"")).unwrap();
    // Exactly, as written: each key once, the recorded value replacing the first.
    let context =
        r#""context":{"span":"mine","value":"chatty","span_2":[{"name":"request","name_2":"alice","status":200}]}"#;
    assert!(raw.contains(context), "{raw}");
    assert!(text.contains("\"event\":\"from_inside_debug\""), "the nested event is written: {text}");
}

#[test]
fn a_repeated_field_or_a_field_named_like_the_span_stack_is_kept_once_the_later_renamed() {
    if let Some(dir) = child_dir() {
        let guard = init_logging(config(&dir)).unwrap();
        tracing::info!(a = 1u64, a = 2u64, "twice");
        let span = tracing::info_span!("request", b = 1u64, b = 2u64);
        span.in_scope(|| tracing::info!(span = "mine", span_stack = "also_mine", span_2 = 0u64, "stacked"));
        assert!(guard.flush());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    in_child("a_repeated_field_or_a_field_named_like_the_span_stack_is_kept_once_the_later_renamed", dir.path());
    let text = std::fs::read_to_string(dir.path().join("chimera.log")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let twice = common::context_in_order(lines[0]);
    assert_eq!(twice.keys(), ["a", "a_2"], "{}", lines[0]);
    assert_eq!((twice.get("a"), twice.get("a_2")), (Some(&json!(1)), Some(&json!(2))));
    // The user's fields come first and keep their names; the span stack, written last, takes
    // the first free `span_N`; inside the span, its own `name` comes first.
    let stacked = common::context_in_order(lines[1]);
    assert_eq!(stacked.keys(), ["span", "span_stack", "span_2", "span_3"], "{}", lines[1]);
    assert_eq!(stacked.get("span"), Some(&json!("mine")));
    assert_eq!(stacked.get("span_stack"), Some(&json!("also_mine")));
    assert_eq!(stacked.get("span_2"), Some(&json!(0)));
    assert!(lines[1].contains(r#""span_3":[{"name":"request","b":1,"b_2":2}]"#), "{}", lines[1]);
}

#[derive(chimera_log_runtime::LogEvent)]
#[log(audit, level = "info")]
struct LiquidationExecuted<'a> {
    block_number: u64,
    borrower: &'a str,
}

#[tracing::instrument(skip(logger))]
fn liquidate(logger: &chimera_log_runtime::Logger, block_number: u64, borrower: &str) {
    chimera_log_runtime::emit!(logger, LiquidationExecuted { block_number, borrower });
}

/// Issue 28: a typed `emit!` inside an `#[instrument]`ed function, under the capture that
/// `init_logging` installs, carries the function's span in `chimera.log` and in the audit file,
/// in the representation captured events have.
#[test]
fn a_typed_emit_inside_an_instrumented_function_carries_its_span_under_the_installed_capture() {
    if let Some(dir) = child_dir() {
        let guard = init_logging(config(&dir)).unwrap();
        let logger = guard.logger("executor");
        let request = tracing::info_span!("request", id = 7u64);
        request.in_scope(|| liquidate(&logger, 42, "0x5a6b"));
        tracing::info!(parent: &request, "captured");
        assert!(guard.flush());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    in_child("a_typed_emit_inside_an_instrumented_function_carries_its_span_under_the_installed_capture", dir.path());
    let stack = json!([{"name": "request", "id": 7}, {"name": "liquidate", "block_number": 42, "borrower": "0x5a6b"}]);
    let lines = lines(dir.path());
    let typed = lines.iter().find(|line| line["event"] == "liquidation_executed").expect("the typed line");
    assert_eq!(typed["context"], json!({"block_number": 42, "borrower": "0x5a6b", "span": stack}));
    let audit = common::json_lines(&dir.path().join(chimera_log_runtime::AUDIT_FILE));
    let record = audit.iter().find(|line| line["event"] == "liquidation_executed").expect("the audit record");
    assert_eq!(record["context"]["span"], stack);
    let captured = lines.iter().find(|line| line["event"] == "captured").expect("the captured line");
    assert_eq!(captured["context"]["span"], json!([{"name": "request", "id": 7}]), "one representation for both");
}

/// An error with a cause, for the `record_error` path (`err = &e as &dyn Error`).
#[derive(Debug)]
struct Refused(std::io::Error);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused: \"nonce\"\ttoo low")
    }
}

impl std::error::Error for Refused {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Issue 30 item 2: the captured path was rewritten for speed, and its lines must not change.
/// The expected bytes are the lines the capture wrote before the rewrite (main at 1a4b9d9), for
/// events holding every kind of value `tracing` records: `&str` with every escape (serde_json's
/// short `\b` and `\f` for a `&str`, `\u0008` for `Display` and `Debug` text, as ever), the
/// integer kinds, floats (a NaN is `null`), bools, `?Debug`, `%Display`, an error, bytes, a
/// message given as a value, a callsite's name standing for a missing message, a target to
/// escape, keys that repeat, a `log` record, and span stacks (entered, and an explicit parent).
#[test]
fn captured_lines_are_byte_for_byte_what_the_capture_wrote_before_its_rewrite() {
    if let Some(dir) = child_dir() {
        // 2024-01-15T10:30:45.123456Z
        let clock = std::sync::Arc::new(common::ManualClock::at_micros(1_705_314_645_123_456));
        let guard = init_logging(config(&dir).level(chimera_log_runtime::Level::Trace).clock(clock)).unwrap();
        let error = Refused(std::io::Error::other("inner"));
        tracing::info!(
            s = "q\"b\\s\n\t\r\u{8}\u{c}\u{1}\u{1f}\u{7f} é\u{2028}\u{2029}\u{85}😀",
            i = -5i64,
            u = 7u64,
            small = -3i32,
            big = i128::MIN,
            ubig = u128::MAX,
            f = 1.5f64,
            tiny = 1e-7f64,
            huge = 1e21f64,
            neg_zero = -0.0f64,
            nan = f64::NAN,
            inf = f64::INFINITY,
            b = true,
            d = ?vec!["x\"y\u{8}"],
            disp = %"a\u{8}b\u{c}\u{2028}",
            err = &error as &(dyn std::error::Error + 'static),
            bytes = &b"\x00ab"[..],
            "msg \"quoted\"\u{8} {}",
            1
        );
        tracing::info!(message = 42u64, k = "v");
        tracing::event!(name: "custom\"name", tracing::Level::WARN, only = 1u64);
        tracing::error!(target: "we\"ird::t\u{2028}", a = 1u64, a = "again", a_2 = false, "repeats");
        tracing::event!(name: "", target: "", tracing::Level::TRACE, "");
        log::warn!(target: "bridged::x", "hello {} \u{8}", "w\"orld");
        log::info!("plain log");
        let outer = tracing::info_span!("outer", name = "n\"1", n = 1u64, n = -2i64, f = 0.25f64);
        let inner = tracing::debug_span!(parent: &outer, "inner\u{8}", d = ?Some(3), s = "x\u{8}y", later = tracing::field::Empty);
        inner.record("later", 9u64);
        {
            let _outer = outer.enter();
            let _inner = inner.enter();
            tracing::info!(span = "mine", span_2 = 0u64, x = 1u64, "in_spans");
            log::info!("log_in_spans");
        }
        tracing::info!(parent: &inner, "explicit_parent");
        tracing::info!(parent: None, "root_event");
        assert!(guard.flush());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    in_child("captured_lines_are_byte_for_byte_what_the_capture_wrote_before_its_rewrite", dir.path());
    let text = std::fs::read_to_string(dir.path().join("chimera.log")).unwrap();
    let lines: Vec<&str> = text.lines().filter(|line| !common::is_watch_line(line)).collect();
    let expected = [
        concat!(
            r#"{"timestamp":"2024-01-15T10:30:45.123456Z","level":"INFO","module":"capture","event":"msg \"quoted\"\u0008 1","context":{"s":"q\"b\\s\n\t\r\b\f\u0001\u001f"#,
            "\u{7f}",
            r#" é\u2028\u2029\u0085😀","i":-5,"u":7,"small":-3,"big":-170141183460469231731687303715884105728,"ubig":340282366920938463463374607431768211455,"f":1.5,"tiny":1e-7,"huge":1e+21,"neg_zero":-0.0,"nan":null,"inf":null,"b":true,"d":"[\"x\\\"y\\u{8}\"]","disp":"a\u0008b\u000c\u2028","err":"refused: \"nonce\"\ttoo low","bytes":"[00 61 62]"}}"#
        ),
        r#"{"timestamp":"2024-01-15T10:30:45.123456Z","level":"INFO","module":"capture","event":"42","context":{"k":"v"}}"#,
        r#"{"timestamp":"2024-01-15T10:30:45.123456Z","level":"WARNING","module":"capture","event":"custom\"name","context":{"only":1}}"#,
        r#"{"timestamp":"2024-01-15T10:30:45.123456Z","level":"ERROR","module":"we\"ird::t\u2028","event":"repeats","context":{"a":1,"a_3":"again","a_2":false}}"#,
        r#"{"timestamp":"2024-01-15T10:30:45.123456Z","level":"TRACE","module":"","event":"","context":{}}"#,
        r#"{"timestamp":"2024-01-15T10:30:45.123456Z","level":"WARNING","module":"bridged::x","event":"hello w\"orld \u0008","context":{}}"#,
        r#"{"timestamp":"2024-01-15T10:30:45.123456Z","level":"INFO","module":"capture","event":"plain log","context":{}}"#,
        r#"{"timestamp":"2024-01-15T10:30:45.123456Z","level":"INFO","module":"capture","event":"in_spans","context":{"span":"mine","span_2":0,"x":1,"span_3":[{"name":"outer","name_2":"n\"1","n":1,"n_2":-2,"f":0.25},{"name":"inner\b","d":"Some(3)","s":"x\by","later":9}]}}"#,
        r#"{"timestamp":"2024-01-15T10:30:45.123456Z","level":"INFO","module":"capture","event":"log_in_spans","context":{"span":[{"name":"outer","name_2":"n\"1","n":1,"n_2":-2,"f":0.25},{"name":"inner\b","d":"Some(3)","s":"x\by","later":9}]}}"#,
        r#"{"timestamp":"2024-01-15T10:30:45.123456Z","level":"INFO","module":"capture","event":"explicit_parent","context":{"span":[{"name":"outer","name_2":"n\"1","n":1,"n_2":-2,"f":0.25},{"name":"inner\b","d":"Some(3)","s":"x\by","later":9}]}}"#,
        r#"{"timestamp":"2024-01-15T10:30:45.123456Z","level":"INFO","module":"capture","event":"root_event","context":{}}"#,
    ];
    assert_eq!(lines.len(), expected.len(), "{text}");
    for (line, expected) in lines.iter().zip(expected) {
        assert_eq!(*line, expected);
    }
}

/// Each thread keeps what a line needs of a callsite (keys, module) in a small table by address;
/// 81 callsites, each with a target and a key of its own, twice over, take slots from one another
/// and every line still has its own callsite's module and key.
#[test]
fn events_of_more_callsites_than_a_thread_keeps_each_get_their_own_module_and_keys() {
    macro_rules! grid {
        ($($target:literal)*; $keys:tt) => { $( grid!(@row $target; $keys); )* };
        (@row $target:literal; [$($key:literal)*]) => { $( tracing::info!(target: $target, { $key = 1u64 }, "cell"); )* };
    }
    const TARGETS: [&str; 9] = ["t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9"];
    const KEYS: [&str; 9] = ["k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"];
    if let Some(dir) = child_dir() {
        let guard = init_logging(config(&dir)).unwrap();
        for _ in 0..2 {
            grid!("t1" "t2" "t3" "t4" "t5" "t6" "t7" "t8" "t9"; ["k1" "k2" "k3" "k4" "k5" "k6" "k7" "k8" "k9"]);
        }
        assert!(guard.flush());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    in_child("events_of_more_callsites_than_a_thread_keeps_each_get_their_own_module_and_keys", dir.path());
    let lines = lines(dir.path());
    let expected: Vec<(&str, Value)> = (0..2)
        .flat_map(|_| TARGETS.iter().flat_map(|target| KEYS.iter().map(move |key| (*target, json!({ *key: 1 })))))
        .collect();
    let written: Vec<(&str, Value)> =
        lines.iter().map(|line| (line["module"].as_str().unwrap(), line["context"].clone())).collect();
    assert_eq!(written, expected);
}

#[test]
fn captured_events_are_timed_and_bring_log_health_as_typed_events_do() {
    use std::time::{Duration, UNIX_EPOCH};
    if let Some(dir) = child_dir() {
        let clock = std::sync::Arc::new(common::ManualClock::at_micros(1_000_000_000));
        let config = config(&dir).clock(clock.clone()).health_interval(Duration::from_secs(60));
        let guard = init_logging(config).unwrap();
        for seq in 0..6_400u64 {
            tracing::info!(seq, "tick");
        }
        clock.set(UNIX_EPOCH + Duration::from_secs(1_000 + 61));
        log::info!("after_one_interval");
        assert!(guard.flush());
        // One emit in 64 is timed, counted per thread: 6,401 captured events, 100 samples.
        assert_eq!(guard.stats().emit_latency.samples, 100);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    in_child("captured_events_are_timed_and_bring_log_health_as_typed_events_do", dir.path());
    let lines = lines(dir.path());
    let events: Vec<&str> = lines.iter().map(|line| line["event"].as_str().unwrap()).collect();
    assert_eq!(events.len(), 6_402, "{:?}", &events[6_395..]);
    assert!(events[..6_400].iter().all(|event| *event == "tick"));
    assert_eq!(events[6_400..], ["after_one_interval", "log_health"]);
    assert_eq!(lines[6_401]["context"]["events_by_level"][2], 6_401, "INFO, the captured events counted");
}
