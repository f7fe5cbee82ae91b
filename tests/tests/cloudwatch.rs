//! The CloudWatch Logs sink against a real CloudWatch Logs API served locally by moto
//! (`scripts/test-all.sh` installs and starts it and exports its address in
//! `CHIMERA_TEST_CLOUDWATCH_ENDPOINT`). Every test reads the stream back with `GetLogEvents`.
#![cfg(feature = "cloudwatch")]

mod common;

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatchlogs::Client;
use chimera_log_runtime::{emit, CloudWatchConfig, LogConfig, LogEvent, LogGuard};
use common::ManualClock;
use serde_json::{json, Value};

fn endpoint() -> String {
    std::env::var("CHIMERA_TEST_CLOUDWATCH_ENDPOINT").expect(
        "CHIMERA_TEST_CLOUDWATCH_ENDPOINT is not set: the CloudWatch tests need moto; run ./scripts/test-all.sh, \
         which installs and starts it",
    )
}

/// A group name no other test (or earlier run against the same moto) uses.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Relaxed))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn client(runtime: &tokio::runtime::Runtime) -> Client {
    let shared =
        runtime.block_on(aws_config::defaults(aws_config::BehaviorVersion::latest()).region("us-east-1").load());
    Client::from_conf(aws_sdk_cloudwatchlogs::config::Builder::from(&shared).endpoint_url(endpoint()).build())
}

fn cloudwatch(group: &str, stream: &str) -> CloudWatchConfig {
    CloudWatchConfig::new(group).region("us-east-1").log_stream(stream).endpoint_url(endpoint())
}

fn cloudwatch_config(group: &str, stream: &str) -> CloudWatchConfig {
    cloudwatch(group, stream)
}

fn start(dir: &std::path::Path, cloudwatch: CloudWatchConfig) -> LogGuard {
    LogConfig::new(dir).console(false).cloudwatch(cloudwatch).build().unwrap()
}

/// Every message of a stream, oldest first, with its timestamp.
fn read_stream(client: &Client, runtime: &tokio::runtime::Runtime, group: &str, stream: &str) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = runtime
            .block_on(
                client
                    .get_log_events()
                    .log_group_name(group)
                    .log_stream_name(stream)
                    .start_from_head(true)
                    .set_next_token(token.clone())
                    .send(),
            )
            .unwrap();
        for event in page.events() {
            // The writer's health warnings depend on how busy the machine is: left out.
            if !common::is_watch_line(event.message().unwrap()) {
                out.push((event.timestamp().unwrap(), event.message().unwrap().to_owned()));
            }
        }
        let next = page.next_forward_token().map(str::to_owned);
        if next.is_none() || next == token {
            return out;
        }
        token = next;
    }
}

fn retention(client: &Client, runtime: &tokio::runtime::Runtime, group: &str) -> Option<i32> {
    let groups = runtime.block_on(client.describe_log_groups().log_group_name_prefix(group).send()).unwrap();
    groups.log_groups().iter().find(|g| g.log_group_name() == Some(group)).and_then(|g| g.retention_in_days())
}

#[derive(LogEvent)]
#[log(audit)]
struct Executed {
    block_number: u64,
}

#[test]
fn creates_group_and_stream_sets_retention_and_delivers_every_event_once() {
    let (runtime, dir) = (runtime(), tempfile::tempdir().unwrap());
    let client = client(&runtime);
    let group = unique("Chimera");
    let guard = start(dir.path(), cloudwatch(&group, "bot-production").retention_days(7));
    let logger = guard.logger("state_engine");
    for seq in 0..250u64 {
        logger.info("tick", json!({ "seq": seq }));
    }
    emit!(logger, Executed { block_number: 7 });
    assert!(guard.flush(), "flush sends what is waiting");
    let all = guard.stats();
    let stats = all.cloudwatch.unwrap();
    drop(guard);
    // Nothing the SDK, hyper or rustls did while shipping came back in as an event.
    assert_eq!(all.events_by_level.iter().sum::<u64>(), 251, "no feedback from the sink's internals");

    assert_eq!(retention(&client, &runtime, &group), Some(7));
    let events = read_stream(&client, &runtime, &group, "bot-production");
    let lines: Vec<Value> = events.iter().map(|(_, m)| serde_json::from_str(m).unwrap()).collect();
    let seqs: Vec<u64> =
        lines.iter().filter(|l| l["event"] == "tick").map(|l| l["context"]["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..250).collect::<Vec<_>>(), "every event exactly once, in order");
    assert_eq!(lines.last().unwrap()["event"], "executed");
    // The CloudWatch message is the same line as the file's, and its timestamp the line's.
    let file_lines = common::raw_lines(&dir.path().join("chimera.log"));
    assert_eq!(events.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(), file_lines);
    for (timestamp, message) in &events {
        let line: Value = serde_json::from_str(message).unwrap();
        let parsed = chrono::DateTime::parse_from_rfc3339(line["timestamp"].as_str().unwrap()).unwrap();
        assert_eq!(*timestamp, parsed.timestamp_millis());
    }
    assert_eq!(stats.events_sent, 251);
    // 100 events trigger a request, which then carries all that waits: not three 100-event caps.
    assert!((1..=3).contains(&stats.batches_sent), "{stats:?}");
    assert_eq!((stats.batches_failed, stats.events_dropped), (0, 0));
}

#[test]
fn an_existing_groups_retention_is_changed_only_when_retention_days_is_set() {
    let runtime = runtime();
    let client = client(&runtime);
    for (explicit, expected) in [(false, 365), (true, 30)] {
        let dir = tempfile::tempdir().unwrap();
        let group = unique("Existing");
        runtime.block_on(client.create_log_group().log_group_name(&group).send()).unwrap();
        runtime.block_on(client.put_retention_policy().log_group_name(&group).retention_in_days(365).send()).unwrap();
        runtime.block_on(client.create_log_stream().log_group_name(&group).log_stream_name("s").send()).unwrap();
        let config = if explicit { cloudwatch(&group, "s").retention_days(30) } else { cloudwatch(&group, "s") };
        let guard = start(dir.path(), config);
        guard.logger("m").warning("hello", json!({}));
        assert!(guard.flush());
        drop(guard);
        assert_eq!(retention(&client, &runtime, &group), Some(expected), "explicit: {explicit}");
        assert_eq!(read_stream(&client, &runtime, &group, "s").len(), 1);
    }
}

#[test]
fn events_from_four_threads_arrive_once_each_in_chronological_order() {
    let (runtime, dir) = (runtime(), tempfile::tempdir().unwrap());
    let client = client(&runtime);
    let group = unique("Threads");
    let guard = start(dir.path(), cloudwatch(&group, "s").batch_events(50));
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let logger = guard.logger("worker");
            scope.spawn(move || {
                for seq in 0..300u64 {
                    logger.info("tick", json!({ "thread": thread, "seq": seq }));
                }
            });
        }
    });
    assert!(guard.flush(), "flush timed out");
    drop(guard);
    let events = read_stream(&client, &runtime, &group, "s");
    assert_eq!(events.len(), 1_200);
    assert!(events.windows(2).all(|w| w[0].0 <= w[1].0), "chronological");
    let mut next = [0u64; 4];
    for (_, message) in &events {
        let line: Value = serde_json::from_str(message).unwrap();
        let thread = line["context"]["thread"].as_u64().unwrap() as usize;
        assert_eq!(line["context"]["seq"].as_u64().unwrap(), next[thread], "thread {thread}");
        next[thread] += 1;
    }
}

#[test]
fn a_stream_deleted_mid_run_is_recreated_and_nothing_is_lost() {
    let (runtime, dir) = (runtime(), tempfile::tempdir().unwrap());
    let client = client(&runtime);
    let group = unique("Deleted");
    let guard = start(dir.path(), cloudwatch(&group, "s"));
    let logger = guard.logger("m");
    logger.info("before", json!({}));
    assert!(guard.flush(), "flush timed out");
    runtime.block_on(client.delete_log_stream().log_group_name(&group).log_stream_name("s").send()).unwrap();
    logger.info("after", json!({}));
    assert!(guard.flush(), "flush timed out");
    let stats = guard.stats().cloudwatch.unwrap();
    drop(guard);
    let events: Vec<String> = read_stream(&client, &runtime, &group, "s").into_iter().map(|(_, m)| m).collect();
    assert_eq!(events.len(), 1, "the new stream holds the event sent after the deletion");
    assert!(events[0].contains("\"event\":\"after\""));
    assert!(stats.batches_retried >= 1, "{stats:?}");
    assert_eq!(stats.events_sent, 2);
}

#[test]
fn events_outside_the_accepted_window_are_counted_not_sent() {
    let (runtime, dir) = (runtime(), tempfile::tempdir().unwrap());
    let client = client(&runtime);
    let group = unique("Window");
    let clock = Arc::new(ManualClock::at_micros(0));
    let now = SystemTime::now();
    let guard = LogConfig::new(dir.path())
        .console(false)
        .clock(clock.clone())
        .cloudwatch(cloudwatch(&group, "s"))
        .build()
        .unwrap();
    let logger = guard.logger("m");
    clock.set(now - Duration::from_secs(20 * 86_400));
    logger.info("too_old", json!({}));
    clock.set(now + Duration::from_secs(3 * 3_600));
    logger.info("too_new", json!({}));
    clock.set(now);
    logger.info("on_time", json!({}));
    assert!(guard.flush(), "flush timed out");
    let stats = guard.stats().cloudwatch.unwrap();
    drop(guard);
    let events = read_stream(&client, &runtime, &group, "s");
    assert_eq!(events.len(), 1);
    assert!(events[0].1.contains("on_time"));
    assert_eq!(stats.events_rejected, 2);
    assert_eq!(common::events(&dir.path().join("chimera.log")), ["too_old", "too_new", "on_time"]);
}

#[test]
fn an_oversize_event_is_truncated_with_a_marker_and_its_batch_still_goes() {
    let (runtime, dir) = (runtime(), tempfile::tempdir().unwrap());
    let client = client(&runtime);
    let group = unique("Oversize");
    let guard = start(dir.path(), cloudwatch(&group, "s").max_event_bytes(4_096));
    let logger = guard.logger("m");
    logger.info("small", json!({}));
    logger.info("huge", json!({ "blob": "ü".repeat(10_000) }));
    logger.info("small_again", json!({}));
    assert!(guard.flush(), "flush timed out");
    let stats = guard.stats().cloudwatch.unwrap();
    drop(guard);
    let events = read_stream(&client, &runtime, &group, "s");
    assert_eq!(events.len(), 3);
    let huge = &events[1].1;
    assert!(huge.len() + 26 <= 4_096, "{}", huge.len());
    assert!(huge.contains(" [truncated ") && huge.ends_with(" bytes]"), "{}", &huge[huge.len() - 40..]);
    assert_eq!(stats.events_truncated, 1);
    // The file keeps the whole line.
    let file = common::json_lines(&dir.path().join("chimera.log"));
    assert_eq!(file[1]["context"]["blob"].as_str().unwrap().chars().count(), 10_000);
}

/// Flushes until a flush completes, at most 30 times: for a guard whose flush deadline is short
/// (1 s), so that a slow machine costs attempts rather than the verdict.
fn flushed_within_attempts(guard: &LogGuard) -> bool {
    (0..30).any(|_| guard.flush())
}

/// What a batch sets aside or cuts is counted once, when the batch is acknowledged: a batch put
/// back at each flush deadline of an outage is read again, and not counted again.
#[test]
fn truncated_and_out_of_window_events_are_counted_once_however_often_their_batch_is_put_back() {
    let (runtime, dir) = (runtime(), tempfile::tempdir().unwrap());
    let client = client(&runtime);
    let group = unique("CountedOnce");
    let clock = Arc::new(ManualClock::at_micros(0));
    let now = SystemTime::now();
    clock.set(now);
    let proxy = common::proxy::Proxy::start(&endpoint());
    let config = CloudWatchConfig::new(&group)
        .region("us-east-1")
        .log_stream("s")
        .endpoint_url(&proxy.url)
        .max_event_bytes(4_096);
    let guard = LogConfig::new(dir.path())
        .console(false)
        .clock(clock.clone())
        .shutdown_timeout(Duration::from_secs(1))
        .cloudwatch(config)
        .build()
        .unwrap();
    let logger = guard.logger("m");
    logger.info("first", json!({}));
    assert!(flushed_within_attempts(&guard), "the first event delivered");
    proxy.set_mode(common::proxy::Mode::Outage);
    clock.set(now - Duration::from_secs(20 * 86_400));
    logger.info("too_old", json!({}));
    clock.set(now);
    logger.info("huge", json!({ "blob": "x".repeat(10_000) }));
    logger.info("on_time", json!({}));
    for _ in 0..3 {
        assert!(!guard.flush(), "the outage outlasts each flush's 1 s: the batch is put back");
    }
    proxy.set_mode(common::proxy::Mode::Pass);
    // Each flush has the 1 s the outage above needs; on a busy machine a request to moto may
    // take longer, and the batch is then put back once more, which this test allows.
    assert!(flushed_within_attempts(&guard), "delivered once the outage ended");
    let stats = guard.stats().cloudwatch.unwrap();
    drop(guard);
    let events: Vec<String> = read_stream(&client, &runtime, &group, "s").into_iter().map(|(_, m)| m).collect();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!((stats.events_truncated, stats.events_rejected, stats.events_sent), (1, 1, 3), "{stats:?}");
}

#[test]
fn a_dead_endpoint_never_holds_up_the_files_and_shutdown_stays_within_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead = CloudWatchConfig::new("Dead")
        .region("us-east-1")
        .log_stream("s")
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .operation_timeout(Duration::from_millis(500));
    let guard = LogConfig::new(dir.path())
        .console(false)
        .shutdown_timeout(Duration::from_millis(1_500))
        .cloudwatch(dead)
        .build()
        .unwrap();
    let logger = guard.logger("m");
    for seq in 0..1_000u64 {
        logger.info("tick", json!({ "seq": seq }));
    }
    let stats_logger = guard.logger("stats");
    drop(guard); // bounded by the shutdown timeout even though CloudWatch never answers
    let stats = stats_logger.stats().unwrap();
    let cloudwatch = stats.cloudwatch.unwrap();
    assert_eq!(common::json_lines(&dir.path().join("chimera.log")).len(), 1_000, "the files are complete");
    assert_eq!(cloudwatch.events_sent, 0);
    assert!(cloudwatch.batches_retried >= 1, "{cloudwatch:?}");
    assert!(cloudwatch.batches_failed >= 1, "given up at shutdown: {cloudwatch:?}");
    assert_eq!(cloudwatch.events_dropped, 0, "nothing is lost: the lines wait in the file");

    // The next start, with a live endpoint, sends everything the dead one could not take.
    let runtime = runtime();
    let client = client(&runtime);
    let group = unique("DeadThenAlive");
    let guard = start(dir.path(), cloudwatch_config(&group, "s"));
    assert!(guard.flush());
    drop(guard);
    assert_eq!(seqs_in_stream(&client, &runtime, &group), (0..1_000).collect::<Vec<_>>());
}

/// A request in flight when the guard is dropped is cut at the shutdown's deadline, not left to
/// run out its own (longer) timeout: the shipper has ended and freed the directory by the time
/// the drop returns, so a new logger can start on it at once.
#[test]
fn a_request_in_flight_at_shutdown_is_cut_at_the_deadline_and_frees_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let group = unique("SlowAtShutdown");
    let proxy = common::proxy::Proxy::start(&endpoint());
    let config = CloudWatchConfig::new(&group)
        .region("us-east-1")
        .log_stream("s")
        .endpoint_url(&proxy.url)
        .operation_timeout(Duration::from_secs(60));
    let guard = LogConfig::new(dir.path())
        .console(false)
        .shutdown_timeout(Duration::from_secs(1))
        .cloudwatch(config)
        .build()
        .unwrap();
    guard.logger("m").info("tick", json!({ "seq": 0 }));
    assert!(guard.flush());
    proxy.set_delay(Duration::from_secs(60));
    for seq in 1..=100u64 {
        guard.logger("m").info("tick", json!({ "seq": seq }));
    }
    // 100 events are due by count: their request goes, and hangs in the proxy.
    proxy.wait_in_flight(true);
    drop(guard);
    let again = LogConfig::new(dir.path()).console(false).build();
    assert!(again.is_ok(), "the shipper still held the directory: {:?}", again.err());
}

/// Starts a logger shipping through a fault-injecting proxy in front of moto.
fn through_proxy(dir: &std::path::Path, group: &str) -> (LogGuard, common::proxy::Proxy) {
    let proxy = common::proxy::Proxy::start(&endpoint());
    let config = CloudWatchConfig::new(group).region("us-east-1").log_stream("s").endpoint_url(&proxy.url);
    let guard = LogConfig::new(dir)
        .console(false)
        .shutdown_timeout(Duration::from_secs(30))
        .cloudwatch(config)
        .build()
        .unwrap();
    (guard, proxy)
}

/// The `seq` of each `tick` in the stream, in order: the logger's own lines (a `log_write_slow`
/// when the machine is busy) are left out.
fn seqs_in_stream(client: &Client, runtime: &tokio::runtime::Runtime, group: &str) -> Vec<u64> {
    read_stream(client, runtime, group, "s")
        .iter()
        .map(|(_, m)| serde_json::from_str::<Value>(m).unwrap())
        .filter(|line| line["event"] == "tick")
        .map(|line| line["context"]["seq"].as_u64().unwrap())
        .collect()
}

#[test]
fn throttling_and_503s_are_retried_and_every_event_arrives_exactly_once() {
    let (runtime, dir) = (runtime(), tempfile::tempdir().unwrap());
    let client = client(&runtime);
    let group = unique("Throttled");
    let (guard, proxy) = through_proxy(dir.path(), &group);
    let logger = guard.logger("m");
    logger.info("tick", json!({ "seq": 0 }));
    assert!(guard.flush()); // set-up done, first batch sent
    proxy.set_mode(common::proxy::Mode::Throttle(3));
    for seq in 1..150u64 {
        logger.info("tick", json!({ "seq": seq }));
    }
    assert!(guard.flush());
    proxy.set_mode(common::proxy::Mode::Unavailable(2));
    for seq in 150..300u64 {
        logger.info("tick", json!({ "seq": seq }));
    }
    assert!(guard.flush());
    let stats = guard.stats().cloudwatch.unwrap();
    drop(guard);
    assert_eq!(seqs_in_stream(&client, &runtime, &group), (0..300).collect::<Vec<_>>(), "exactly once, in order");
    assert_eq!(proxy.seen().refused, 5);
    assert_eq!(stats.batches_retried, 5, "{stats:?}");
    assert_eq!(stats.batches_failed, 0);
    assert!(proxy.seen().violations.is_empty(), "{:?}", proxy.seen().violations);
}

#[test]
fn an_outage_holds_events_and_delivery_resumes_by_itself_when_it_ends() {
    let (runtime, dir) = (runtime(), tempfile::tempdir().unwrap());
    let client = client(&runtime);
    let group = unique("Outage");
    let (guard, proxy) = through_proxy(dir.path(), &group);
    let logger = guard.logger("m");
    logger.info("tick", json!({ "seq": 0 }));
    assert!(guard.flush());
    proxy.set_mode(common::proxy::Mode::Outage);
    for seq in 1..=250u64 {
        logger.info("tick", json!({ "seq": seq })); // 100 of them make a batch: it is tried, and fails
    }
    proxy.wait_refused(3); // three attempts failed: the sink is in its retry loop
    proxy.set_mode(common::proxy::Mode::Pass);
    assert!(guard.flush(), "delivery resumed");
    assert_eq!(common::json_lines(&dir.path().join("chimera.log")).len(), 251);
    let stats = guard.stats().cloudwatch.unwrap();
    drop(guard);
    assert_eq!(seqs_in_stream(&client, &runtime, &group), (0..=250).collect::<Vec<_>>());
    assert!(stats.batches_retried >= 3 && stats.batches_failed == 0, "{stats:?}");
    assert!(proxy.seen().violations.is_empty(), "{:?}", proxy.seen().violations);
}

#[test]
fn large_events_are_split_into_requests_within_the_byte_limit() {
    let (runtime, dir) = (runtime(), tempfile::tempdir().unwrap());
    let client = client(&runtime);
    let group = unique("Large");
    let (guard, proxy) = through_proxy(dir.path(), &group);
    let logger = guard.logger("m");
    let blob = "x".repeat(200_000);
    for seq in 0..30u64 {
        logger.info("tick", json!({ "seq": seq, "blob": blob }));
    }
    assert!(guard.flush());
    drop(guard);
    let seen = proxy.seen();
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    assert!(seen.put_log_events >= 6, "30 events of 200 KB need at least 6 requests: {seen:?}");
    assert!(seen.max_bytes > 800_000 && seen.max_bytes <= 1_048_576, "{seen:?}");
    assert_eq!(seqs_in_stream(&client, &runtime, &group), (0..30).collect::<Vec<_>>());
}

#[test]
fn a_batch_refused_as_invalid_is_counted_and_not_retried_and_later_batches_still_go() {
    let (runtime, dir) = (runtime(), tempfile::tempdir().unwrap());
    let client = client(&runtime);
    let group = unique("Invalid");
    let (guard, proxy) = through_proxy(dir.path(), &group);
    let logger = guard.logger("m");
    logger.info("tick", json!({ "seq": 0 }));
    assert!(guard.flush());
    proxy.set_mode(common::proxy::Mode::Invalid(1));
    logger.info("tick", json!({ "seq": 1 }));
    assert!(guard.flush(), "a refused batch does not hold up the flush");
    logger.info("tick", json!({ "seq": 2 }));
    assert!(guard.flush());
    let stats = guard.stats().cloudwatch.unwrap();
    drop(guard);
    assert_eq!(seqs_in_stream(&client, &runtime, &group), [0, 2]);
    assert_eq!((stats.batches_failed, stats.events_dropped, stats.batches_retried), (1, 1, 0), "{stats:?}");
    assert_eq!(proxy.seen().refused, 1, "not retried");
}

/// A clock on the system's time whose waits take no real time, and which counts them.
#[derive(Debug, Default)]
struct CountingWaits(AtomicU32);

impl chimera_log_runtime::Clock for CountingWaits {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
    fn begin_wait(&self, _: Duration) -> Duration {
        self.0.fetch_add(1, Relaxed);
        Duration::ZERO
    }
}

#[test]
fn a_stream_missing_again_after_it_was_recreated_backs_off_instead_of_looping_and_nothing_is_lost() {
    let (runtime, dir) = (runtime(), tempfile::tempdir().unwrap());
    let client = client(&runtime);
    let group = unique("Missing");
    let proxy = common::proxy::Proxy::start(&endpoint());
    let clock = Arc::new(CountingWaits::default());
    let config = CloudWatchConfig::new(&group).region("us-east-1").log_stream("s").endpoint_url(&proxy.url);
    let guard = LogConfig::new(dir.path())
        .console(false)
        .clock(clock.clone())
        .shutdown_timeout(Duration::from_secs(30))
        .cloudwatch(config)
        .build()
        .unwrap();
    let logger = guard.logger("m");
    logger.info("tick", json!({ "seq": 0 }));
    assert!(guard.flush());
    proxy.set_mode(common::proxy::Mode::Missing(5));
    logger.info("tick", json!({ "seq": 1 }));
    assert!(guard.flush(), "delivered once the service stops saying the stream is missing");
    drop(guard);
    // The first "missing" is retried at once (after creating the stream); the next four wait.
    assert_eq!(clock.0.load(Relaxed), 4, "each later 'missing' answer is followed by a backoff");
    assert_eq!(proxy.seen().refused, 5);
    assert_eq!(seqs_in_stream(&client, &runtime, &group), [0, 1]);
}

#[test]
fn without_a_region_cloudwatch_says_so_once_and_the_files_keep_working() {
    const CHILD: &str = "CHIMERA_CLOUDWATCH_NO_REGION_CHILD";
    if let Ok(dir) = std::env::var(CHILD) {
        let config = CloudWatchConfig::new("NoRegion").log_stream("s").endpoint_url(endpoint());
        let guard = LogConfig::new(&dir).console(false).cloudwatch(config).build().unwrap();
        for seq in 0..10u64 {
            guard.logger("m").info("tick", json!({ "seq": seq }));
        }
        assert!(guard.flush(), "flush timed out");
        let stats = guard.stats().cloudwatch.unwrap();
        // Nothing sent, nothing lost: the lines wait in the file for a start that has a region.
        assert_eq!((stats.events_sent, stats.events_dropped), (0, 0), "{stats:?}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["without_a_region_cloudwatch_says_so_once_and_the_files_keep_working", "--exact", "--nocapture"])
        .env(CHILD, dir.path())
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env("AWS_CONFIG_FILE", dir.path().join("no-config"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stderr.matches("no AWS region").count(), 1, "{stderr}");
    assert_eq!(common::json_lines(&dir.path().join("chimera.log")).len(), 10);
}

#[test]
fn a_group_deleted_mid_run_is_recreated_with_its_retention_and_nothing_is_lost() {
    let (runtime, dir) = (runtime(), tempfile::tempdir().unwrap());
    let client = client(&runtime);
    let group = unique("GroupDeleted");
    let guard = start(dir.path(), cloudwatch(&group, "s").retention_days(14));
    let logger = guard.logger("m");
    logger.info("before", json!({}));
    assert!(guard.flush());
    runtime.block_on(client.delete_log_group().log_group_name(&group).send()).unwrap();
    logger.info("after", json!({}));
    assert!(guard.flush());
    drop(guard);
    let events: Vec<String> = read_stream(&client, &runtime, &group, "s").into_iter().map(|(_, m)| m).collect();
    assert_eq!(events.len(), 1);
    assert!(events[0].contains("\"event\":\"after\""));
    assert_eq!(retention(&client, &runtime, &group), Some(14));
}

#[test]
fn an_outage_costs_one_stderr_line_when_delivery_stops_and_one_when_it_recovers() {
    const CHILD: &str = "CHIMERA_CLOUDWATCH_OUTAGE_LINES_CHILD";
    if let Ok(dir) = std::env::var(CHILD) {
        let (guard, proxy) = through_proxy(std::path::Path::new(&dir), &unique("Lines"));
        let logger = guard.logger("m");
        logger.info("tick", json!({ "seq": 0 }));
        assert!(guard.flush());
        proxy.set_mode(common::proxy::Mode::Outage);
        for seq in 1..=300u64 {
            logger.info("tick", json!({ "seq": seq }));
        }
        proxy.wait_refused(4);
        proxy.set_mode(common::proxy::Mode::Pass);
        assert!(guard.flush());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "an_outage_costs_one_stderr_line_when_delivery_stops_and_one_when_it_recovers",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let ours: Vec<&str> = stderr.lines().filter(|l| l.starts_with("chimera-log: CloudWatch")).collect();
    assert_eq!(ours.len(), 2, "{stderr}");
    assert!(ours[0].contains("delivery stopped") && ours[1].contains("recovered"), "{ours:?}");
}

#[test]
fn a_batch_goes_when_100_events_wait_or_the_oldest_has_waited_5_seconds_of_the_clock() {
    let (runtime, dir) = (runtime(), tempfile::tempdir().unwrap());
    let client = client(&runtime);
    let group = unique("Triggers");
    let proxy = common::proxy::Proxy::start(&endpoint());
    let clock = Arc::new(ManualClock::at_micros(0));
    let start = SystemTime::now();
    clock.set(start);
    let config = CloudWatchConfig::new(&group).region("us-east-1").log_stream("s").endpoint_url(&proxy.url);
    let guard = LogConfig::new(dir.path()).console(false).clock(clock.clone()).cloudwatch(config).build().unwrap();
    let logger = guard.logger("m");

    // 99 events: neither trigger has fired, whatever the writer thread has seen so far.
    for seq in 0..99u64 {
        logger.info("tick", json!({ "seq": seq }));
    }
    assert!(guard.wait_processed(), "the sink has seen all 99");
    assert_eq!(proxy.seen().put_log_events, 0);
    logger.info("tick", json!({ "seq": 99 })); // the 100th
    proxy.wait_puts(1);
    assert_eq!(seqs_in_stream(&client, &runtime, &group).len(), 100);

    // One event stamped now: not due. The clock moves 5 s and another event comes: the first
    // is now 5 s old, and the sink sends without being asked to flush.
    logger.info("tick", json!({ "seq": 100 }));
    assert!(guard.wait_processed(), "the sink has seen it");
    assert_eq!(proxy.seen().put_log_events, 1, "one waiting event is not due");
    clock.set(start + Duration::from_secs(5));
    logger.info("tick", json!({ "seq": 101 }));
    proxy.wait_puts(2);
    assert!(seqs_in_stream(&client, &runtime, &group).contains(&100));
    assert!(guard.flush());
    assert_eq!(seqs_in_stream(&client, &runtime, &group), (0..102).collect::<Vec<_>>());
    drop(guard);
}

#[test]
fn without_credentials_cloudwatch_says_so_once_and_the_files_keep_working() {
    const CHILD: &str = "CHIMERA_CLOUDWATCH_NO_CREDENTIALS_CHILD";
    if let Ok(dir) = std::env::var(CHILD) {
        let config =
            CloudWatchConfig::new("NoCredentials").region("us-east-1").log_stream("s").endpoint_url(endpoint());
        let guard = LogConfig::new(&dir)
            .console(false)
            .shutdown_timeout(Duration::from_secs(2))
            .cloudwatch(config)
            .build()
            .unwrap();
        for seq in 0..10u64 {
            guard.logger("m").info("tick", json!({ "seq": seq }));
        }
        let stats_logger = guard.logger("stats");
        drop(guard);
        let stats = stats_logger.stats().unwrap().cloudwatch.unwrap();
        assert_eq!(stats.events_sent, 0, "{stats:?}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["without_credentials_cloudwatch_says_so_once_and_the_files_keep_working", "--exact", "--nocapture"])
        .env(CHILD, dir.path())
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("no-credentials"))
        .env("AWS_CONFIG_FILE", dir.path().join("no-config"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let ours: Vec<&str> = stderr.lines().filter(|l| l.starts_with("chimera-log: CloudWatch")).collect();
    assert_eq!(ours.len(), 1, "{stderr}");
    assert!(ours[0].contains("no AWS credentials found"), "{}", ours[0]);
    assert_eq!(common::json_lines(&dir.path().join("chimera.log")).len(), 10);
}

// ---- the file is the buffer: backlogs, restarts, crashes, tokio, least privilege ------------

/// The `seq`s of every event of stream `s`, and how many arrived more than once.
fn seqs_and_duplicates(client: &Client, runtime: &tokio::runtime::Runtime, group: &str) -> (Vec<u64>, usize) {
    let mut seqs = seqs_in_stream(client, runtime, group);
    let total = seqs.len();
    seqs.sort_unstable();
    seqs.dedup();
    let duplicates = total - seqs.len();
    (seqs, duplicates)
}

#[test]
fn a_20000_event_burst_through_throttling_and_503s_arrives_exactly_once_in_a_handful_of_requests() {
    let (runtime, dir) = (runtime(), tempfile::tempdir().unwrap());
    let client = client(&runtime);
    let group = unique("Burst");
    let (guard, proxy) = through_proxy(dir.path(), &group);
    let logger = guard.logger("m");
    logger.info("tick", json!({ "seq": 0 }));
    assert!(guard.flush());
    // Set-up done. 503s until 2.5 s after the burst is written (however long writing it takes on
    // a loaded machine, the backlog is whole when delivery resumes), every 4th request throttled.
    let far = std::time::Instant::now() + Duration::from_secs(3_600);
    proxy.set_mode(common::proxy::Mode::Rough { unavailable_until: far, throttle_every: 4 });
    let blob = "b".repeat(200_000);
    for seq in 1..20_000u64 {
        if seq % 500 == 0 {
            logger.info("tick", json!({ "seq": seq, "blob": blob }));
        } else {
            logger.info("tick", json!({ "seq": seq }));
        }
    }
    assert!(guard.flush_files());
    let unavailable_until = std::time::Instant::now() + Duration::from_millis(2_500);
    proxy.set_mode(common::proxy::Mode::Rough { unavailable_until, throttle_every: 4 });
    assert!(guard.flush(), "everything delivered");
    let stats = guard.stats().cloudwatch.unwrap();
    drop(guard);
    let (seqs, duplicates) = seqs_and_duplicates(&client, &runtime, &group);
    assert_eq!(seqs, (0..20_000).collect::<Vec<_>>());
    assert_eq!(duplicates, 0, "exactly once");
    let requests = proxy.accepted_batches();
    // ~10 MB in all: at least 10 requests by the byte limit; with 100-event caps it took 200.
    assert!(requests.len() <= 30, "a backlog goes in requests as large as the service takes: {requests:?}");
    assert!(proxy.seen().violations.is_empty(), "{:?}", proxy.seen().violations);
    assert_eq!((stats.events_sent, stats.events_dropped, stats.files_skipped), (20_000, 0, 0), "{stats:?}");
}

/// This process's resident memory in KiB (Linux).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).unwrap();
    line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().unwrap()
}

#[test]
fn an_outage_with_200000_events_waiting_holds_memory_bounded_and_delivers_every_one_after() {
    const CHILD: &str = "CHIMERA_CLOUDWATCH_LONG_OUTAGE_CHILD";
    const EVENTS: u64 = 200_000;
    if let Ok(spec) = std::env::var(CHILD) {
        // Alone in its process, so that the memory measured is this logger's.
        let (dir, group) = spec.split_once('|').unwrap();
        let (guard, proxy) = through_proxy(std::path::Path::new(dir), group);
        let logger = guard.logger("m");
        logger.info("tick", json!({ "seq": 0 }));
        assert!(guard.flush());
        let pad = "p".repeat(200);
        let before = rss_kib();
        proxy.set_mode(common::proxy::Mode::Outage);
        for seq in 1..EVENTS {
            logger.info("tick", json!({ "seq": seq, "pad": pad }));
        }
        assert!(guard.flush_files());
        proxy.wait_refused(3);
        let during = rss_kib();
        proxy.set_mode(common::proxy::Mode::Pass);
        assert!(guard.flush());
        println!("rss_kib before={before} during={during}");
        return;
    }
    let (runtime, dir) = (runtime(), tempfile::tempdir().unwrap());
    let client = client(&runtime);
    let group = unique("LongOutage");
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "an_outage_with_200000_events_waiting_holds_memory_bounded_and_delivers_every_one_after",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, format!("{}|{group}", dir.path().display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let figures = stdout.lines().find_map(|line| line.strip_prefix("rss_kib ")).unwrap();
    let (before, during) = figures.split_once(' ').unwrap();
    let before: u64 = before.trim_start_matches("before=").parse().unwrap();
    let during: u64 = during.trim_start_matches("during=").parse().unwrap();
    println!("an outage with {EVENTS} events waiting: resident memory {before} KiB before, {during} KiB at its end");
    // ~50 MB of lines waited during the outage; the shipper holds one request's worth, the
    // file writer's queue its few MiB: memory grows by far less than what waited.
    assert!(during.saturating_sub(before) < 32 * 1024, "RSS grew from {before} KiB to {during} KiB");
    let (seqs, duplicates) = seqs_and_duplicates(&client, &runtime, &group);
    assert_eq!((seqs, duplicates), ((0..EVENTS).collect::<Vec<_>>(), 0));
}

/// Ships seq 0 (the group and stream set up), then seqs 1..10 with the proxy in `mode`, and
/// flushes; returns the shipper's counters, how many requests the proxy refused, and the seqs
/// the stream holds then.
fn ten_ticks_with_the_proxy_in(
    mode: common::proxy::Mode,
    prefix: &str,
) -> (chimera_log_runtime::CloudWatchStats, u32, Vec<u64>) {
    let (runtime, dir) = (runtime(), tempfile::tempdir().unwrap());
    let client = client(&runtime);
    let group = unique(prefix);
    let (guard, proxy) = through_proxy(dir.path(), &group);
    let logger = guard.logger("m");
    logger.info("tick", json!({ "seq": 0 }));
    assert!(guard.flush());
    proxy.set_mode(mode);
    for seq in 1..10u64 {
        logger.info("tick", json!({ "seq": seq }));
    }
    assert!(guard.flush());
    let stats = guard.stats().cloudwatch.unwrap();
    drop(guard);
    (stats, proxy.seen().refused, seqs_in_stream(&client, &runtime, &group))
}

#[test]
fn refused_credentials_are_retried_not_dropped_and_deliver_once_accepted() {
    let (stats, _, seqs) = ten_ticks_with_the_proxy_in(common::proxy::Mode::BadCredentials(3), "Credentials");
    assert_eq!(seqs, (0..10).collect::<Vec<_>>());
    assert_eq!((stats.batches_retried, stats.events_dropped), (3, 0), "{stats:?}");
}

#[test]
fn a_least_privilege_role_denied_group_creation_and_retention_still_delivers() {
    let (runtime, dir) = (runtime(), tempfile::tempdir().unwrap());
    let client = client(&runtime);
    let group = unique("LeastPrivilege");
    runtime.block_on(client.create_log_group().log_group_name(&group).send()).unwrap();
    let proxy = common::proxy::Proxy::start(&endpoint());
    proxy.set_mode(common::proxy::Mode::DenySetup);
    // Retention set explicitly: the logger tries PutRetentionPolicy too, and is denied.
    let config =
        CloudWatchConfig::new(&group).region("us-east-1").log_stream("s").endpoint_url(&proxy.url).retention_days(7);
    let guard = LogConfig::new(dir.path()).console(false).cloudwatch(config).build().unwrap();
    guard.logger("m").info("tick", json!({ "seq": 0 }));
    assert!(guard.flush());
    let stats = guard.stats().cloudwatch.unwrap();
    drop(guard);
    assert_eq!(seqs_in_stream(&client, &runtime, &group), [0]);
    assert_eq!((stats.batches_failed, stats.events_dropped), (0, 0), "{stats:?}");
    assert_eq!(retention(&client, &runtime, &group), None, "the denied retention was not applied");
}

/// A set-up the service refuses for now (a concurrent update of the group, as when a fleet
/// starts at once) is retried: it never costs the batch waiting behind it.
#[test]
fn a_group_creation_aborted_by_a_concurrent_update_is_retried_and_drops_no_event() {
    let (runtime, dir) = (runtime(), tempfile::tempdir().unwrap());
    let client = client(&runtime);
    let group = unique("AbortedSetUp");
    let (guard, proxy) = through_proxy(dir.path(), &group);
    proxy.set_mode(common::proxy::Mode::AbortSetup(2));
    for seq in 0..10u64 {
        guard.logger("m").info("tick", json!({ "seq": seq }));
    }
    assert!(guard.flush());
    let stats = guard.stats().cloudwatch.unwrap();
    drop(guard);
    assert_eq!(proxy.seen().refused, 2);
    assert_eq!(seqs_in_stream(&client, &runtime, &group), (0..10).collect::<Vec<_>>());
    assert_eq!((stats.batches_failed, stats.events_dropped), (0, 0), "{stats:?}");
}

/// A refusal without the service's error code (a proxy's bare 403) does not say the events are
/// wrong: it is retried, not counted as a refused batch.
#[test]
fn a_put_refused_without_an_error_code_is_retried_not_dropped() {
    let (stats, refused, seqs) = ten_ticks_with_the_proxy_in(common::proxy::Mode::BareForbidden(2), "BareForbidden");
    assert_eq!(refused, 2);
    assert_eq!(seqs, (0..10).collect::<Vec<_>>());
    assert_eq!((stats.batches_retried, stats.batches_failed, stats.events_dropped), (2, 0, 0), "{stats:?}");
}

#[test]
fn a_restart_resumes_from_the_cursor_and_sends_nothing_twice() {
    let (runtime, dir) = (runtime(), tempfile::tempdir().unwrap());
    let client = client(&runtime);
    let group = unique("Restart");
    let guard = start(dir.path(), cloudwatch(&group, "s"));
    for seq in 0..300u64 {
        guard.logger("m").info("tick", json!({ "seq": seq }));
    }
    assert!(guard.flush());
    drop(guard);
    // Lines written while CloudWatch was not configured are shipped by the next start.
    let guard = LogConfig::new(dir.path()).console(false).build().unwrap();
    for seq in 300..400u64 {
        guard.logger("m").info("tick", json!({ "seq": seq }));
    }
    drop(guard);
    let guard = start(dir.path(), cloudwatch(&group, "s"));
    for seq in 400..500u64 {
        guard.logger("m").info("tick", json!({ "seq": seq }));
    }
    assert!(guard.flush());
    drop(guard);
    let (seqs, duplicates) = seqs_and_duplicates(&client, &runtime, &group);
    assert_eq!((seqs, duplicates), ((0..500).collect::<Vec<_>>(), 0));
}

/// Three `kill -9`s, each while a request is in flight (the proxy holds it until the process is
/// dead, then delivers it to the service, whose answer nobody reads): every event arrives, and
/// each kill costs exactly the events of the request it interrupted, sent again by the next
/// start. No more: the cursor is saved after every acknowledged request.
#[test]
fn each_kill_9_mid_request_sends_exactly_the_interrupted_requests_events_twice_and_nothing_is_lost() {
    const CHILD: &str = "CHIMERA_CLOUDWATCH_KILL_CHILD";
    const KILLS: usize = 3;
    if let Ok(spec) = std::env::var(CHILD) {
        let mut parts = spec.splitn(4, '|');
        let (dir, group, url, write) = (
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().to_owned(),
            parts.next().unwrap() == "write",
        );
        let config = CloudWatchConfig::new(&group).region("us-east-1").log_stream("s").endpoint_url(url);
        let guard = LogConfig::new(&dir).console(false).cloudwatch(config).build().unwrap();
        if write {
            let logger = guard.logger("m");
            for seq in 0..20_000u64 {
                logger.info("tick", json!({ "seq": seq, "pad": "k".repeat(300) }));
            }
            assert!(guard.flush_files());
        }
        println!("written");
        let _ = std::io::stdin().read_line(&mut String::new()); // killed while waiting here
        return;
    }
    use std::io::BufRead;
    let (runtime, dir) = (runtime(), tempfile::tempdir().unwrap());
    let client = client(&runtime);
    let group = unique("Killed");
    let proxy = common::proxy::Proxy::start(&endpoint());
    let mut interrupted = Vec::new();
    for kill in 0..KILLS {
        // Each process's first request is held until the process is killed: ~8 MB to ship at
        // most 1 MiB a request, so each kill lands long before all is shipped.
        proxy.hold(true);
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "each_kill_9_mid_request_sends_exactly_the_interrupted_requests_events_twice_and_nothing_is_lost",
                "--exact",
                "--nocapture",
            ])
            .env(
                CHILD,
                format!("{}|{group}|{}|{}", dir.path().display(), proxy.url, if kill == 0 { "write" } else { "" }),
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("written") {
            line.clear();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "the child ended early");
        }
        let accepted_before = proxy.accepted_batches().len();
        proxy.wait_in_flight(true);
        child.kill().unwrap();
        child.wait().unwrap();
        proxy.hold(false);
        proxy.wait_in_flight(false);
        let accepted = proxy.accepted_batches();
        assert_eq!(accepted.len(), accepted_before + 1, "the killed process had exactly one request in flight");
        interrupted.push(*accepted.last().unwrap());
    }
    assert!(proxy.accepted_batches().iter().sum::<usize>() < 20_000, "killed before everything was shipped");

    let guard = start(dir.path(), cloudwatch(&group, "s"));
    assert!(guard.flush());
    drop(guard);
    let (seqs, duplicates) = seqs_and_duplicates(&client, &runtime, &group);
    assert_eq!(seqs, (0..20_000).collect::<Vec<_>>(), "every event arrives");
    println!("{KILLS} kill -9s: {duplicates} duplicate event(s); the interrupted requests carried {interrupted:?}");
    assert_eq!(duplicates, interrupted.iter().sum::<usize>(), "each kill sends exactly its interrupted request twice");
}

#[test]
fn init_logging_emit_flush_and_drop_work_inside_multi_thread_and_current_thread_tokio_runtimes() {
    let check_client_runtime = runtime();
    let client = client(&check_client_runtime);
    for multi_thread in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let group = unique("Tokio");
        let mut builder = if multi_thread {
            tokio::runtime::Builder::new_multi_thread()
        } else {
            tokio::runtime::Builder::new_current_thread()
        };
        let app = builder.enable_all().build().unwrap();
        // As under #[tokio::main]: the whole program runs inside the runtime.
        app.block_on(async {
            let guard = chimera_log_runtime::init_logging(
                LogConfig::new(dir.path()).console(false).cloudwatch(cloudwatch(&group, "s")),
            )
            .unwrap();
            let logger = chimera_log_runtime::get_logger("service");
            for seq in 0..20u64 {
                logger.info("tick", json!({ "seq": seq }));
            }
            tokio::task::yield_now().await;
            assert!(guard.flush());
            drop(guard);
        });
        assert_eq!(
            seqs_in_stream(&client, &check_client_runtime, &group),
            (0..20).collect::<Vec<_>>(),
            "multi_thread: {multi_thread}"
        );
    }
}

#[test]
fn a_flush_that_times_out_in_an_outage_does_not_stop_delivery_after_it() {
    let (runtime, dir) = (runtime(), tempfile::tempdir().unwrap());
    let client = client(&runtime);
    let group = unique("FlushTimeout");
    let proxy = common::proxy::Proxy::start(&endpoint());
    let config = CloudWatchConfig::new(&group).region("us-east-1").log_stream("s").endpoint_url(&proxy.url);
    let guard = LogConfig::new(dir.path())
        .console(false)
        .shutdown_timeout(Duration::from_secs(1))
        .cloudwatch(config)
        .build()
        .unwrap();
    let logger = guard.logger("m");
    logger.info("tick", json!({ "seq": 0 }));
    assert!(guard.flush());
    proxy.set_mode(common::proxy::Mode::Outage);
    for seq in 1..150u64 {
        logger.info("tick", json!({ "seq": seq }));
    }
    assert!(!guard.flush(), "the outage outlasts the flush's 1 s");
    proxy.set_mode(common::proxy::Mode::Pass);
    // No flush now: 149 waiting events are due by count, and go by themselves.
    assert!(proxy.wait_accepted(150, Duration::from_secs(60)), "delivery resumed after the failed flush");
    drop(guard);
    let (seqs, duplicates) = seqs_and_duplicates(&client, &runtime, &group);
    assert_eq!((seqs, duplicates), ((0..150).collect::<Vec<_>>(), 0));
}

/// Lines lost to CloudWatch because retention removed their backup before it was shipped are
/// counted once, when the cursor past the gap is saved: not again each time a flush deadline in an
/// outage puts the batch back and the follower reads from the saved cursor (and finds the same
/// file gone) again.
#[test]
fn backups_removed_before_they_were_shipped_are_counted_once_however_often_a_batch_is_put_back() {
    let (runtime, dir) = (runtime(), tempfile::tempdir().unwrap());
    let client = client(&runtime);
    let group = unique("PassedOnce");
    let small = |config: LogConfig| config.console(false).max_bytes(4_096).general_backups(2);
    let guard = small(LogConfig::new(dir.path())).cloudwatch(cloudwatch(&group, "s")).build().unwrap();
    guard.logger("m").info("tick", json!({ "seq": 0 }));
    assert!(guard.flush());
    drop(guard);
    // Without CloudWatch: the file the saved cursor names rotates, and retention removes it.
    let guard = small(LogConfig::new(dir.path())).build().unwrap();
    for seq in 1..600u64 {
        guard.logger("m").info("tick", json!({ "seq": seq }));
    }
    drop(guard);
    let proxy = common::proxy::Proxy::start(&endpoint());
    proxy.set_mode(common::proxy::Mode::Outage);
    let config = CloudWatchConfig::new(&group).region("us-east-1").log_stream("s").endpoint_url(&proxy.url);
    let guard =
        small(LogConfig::new(dir.path())).shutdown_timeout(Duration::from_secs(1)).cloudwatch(config).build().unwrap();
    for _ in 0..3 {
        assert!(!guard.flush(), "the outage outlasts each flush's 1 s: the batch is put back");
    }
    proxy.set_mode(common::proxy::Mode::Pass);
    assert!(guard.flush());
    let stats = guard.stats().cloudwatch.unwrap();
    drop(guard);
    let (seqs, duplicates) = seqs_and_duplicates(&client, &runtime, &group);
    let resumed = seqs[1];
    assert!(resumed > 1, "the removed backups' lines are not in the stream: {seqs:?}");
    let expected: Vec<u64> = std::iter::once(0).chain(resumed..600).collect();
    assert_eq!((seqs, duplicates), (expected, 0), "one gap, then every retained line once");
    assert_eq!(stats.files_skipped, 1, "one gap, counted once: {stats:?}");
}

/// The AWS SDK logs through `tracing` on the shipper's thread; with capture on and every module
/// at DEBUG, none of it comes back as lines (which would be shipped, and log again, forever).
#[test]
fn with_capture_on_the_sdks_own_tracing_events_never_come_back_as_lines() {
    const CHILD: &str = "CHIMERA_CLOUDWATCH_CAPTURE_CHILD";
    if let Ok(dir) = std::env::var(CHILD) {
        let config = LogConfig::new(&dir)
            .console(false)
            .level(chimera_log_runtime::Level::Debug)
            .capture(true)
            .cloudwatch(cloudwatch_config(&std::env::var("CHIMERA_CAPTURE_GROUP").unwrap(), "s"));
        let guard = chimera_log_runtime::init_logging(config).unwrap();
        let logger = guard.logger("m");
        for seq in 0..10u64 {
            logger.info("tick", json!({ "seq": seq }));
        }
        assert!(guard.flush(), "shipped");
        let stats = guard.stats();
        assert_eq!(stats.cloudwatch.unwrap().events_sent, 10, "{stats:?}");
        assert_eq!(stats.events_by_level.iter().sum::<u64>(), 10, "only the application's events: {stats:?}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let group = unique("Capture");
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["with_capture_on_the_sdks_own_tracing_events_never_come_back_as_lines", "--exact", "--nocapture"])
        .env(CHILD, dir.path())
        .env("CHIMERA_CAPTURE_GROUP", &group)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let modules: Vec<String> = common::json_lines(&dir.path().join("chimera.log"))
        .iter()
        .map(|line| line["module"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(modules, vec!["m"; 10]);
}

/// Writes the shipper's cursor by hand (as someone with write access to the log directory
/// could), without the check a saved cursor carries.
fn plant_cloudwatch_cursor(dir: &std::path::Path, cursor: serde_json::Value) {
    std::fs::write(dir.join(".chimera-log.cloudwatch.cursor"), cursor.to_string()).unwrap();
}

/// Ships `0..shipped` with CloudWatch, then writes `shipped..total` (rotating, several backups)
/// without it, and hands the saved cursor to `damage` before the next start with CloudWatch.
fn ship_after_a_damaged_cursor(
    group: &str,
    shipped: u64,
    total: u64,
    damage: impl FnOnce(&std::path::Path, serde_json::Value),
) -> (Vec<u64>, usize, chimera_log_runtime::CloudWatchStats) {
    let (runtime, dir) = (runtime(), tempfile::tempdir().unwrap());
    let client = client(&runtime);
    let small = |config: LogConfig| config.console(false).max_bytes(8_192).general_backups(50);
    let guard = small(LogConfig::new(dir.path())).cloudwatch(cloudwatch(group, "s")).build().unwrap();
    for seq in 0..shipped {
        guard.logger("m").info("tick", json!({ "seq": seq }));
    }
    assert!(guard.flush());
    drop(guard);
    let guard = small(LogConfig::new(dir.path())).build().unwrap();
    for seq in shipped..total {
        guard.logger("m").info("tick", json!({ "seq": seq }));
    }
    drop(guard);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(".chimera-log.cloudwatch.cursor")).unwrap())
            .unwrap();
    damage(dir.path(), saved);
    let guard = small(LogConfig::new(dir.path())).cloudwatch(cloudwatch(group, "s")).build().unwrap();
    assert!(guard.flush());
    let stats = guard.stats().cloudwatch.unwrap();
    drop(guard);
    let (seqs, duplicates) = seqs_and_duplicates(&client, &runtime, group);
    (seqs, duplicates, stats)
}

/// A cursor naming a backup stamped in the future: every backup before it counted as shipped
/// (1,761 of 2,000 lines never shipped, reported as "removed by retention").
#[test]
fn a_cloudwatch_cursor_moved_into_the_future_is_distrusted_and_every_line_is_shipped() {
    let group = unique("FutureCursor");
    let (seqs, duplicates, stats) = ship_after_a_damaged_cursor(&group, 100, 2_000, |dir, _| {
        plant_cloudwatch_cursor(dir, json!({ "after": "29991231T235959.999999Z", "offset": 0, "fingerprint": null }));
    });
    assert_eq!(seqs, (0..2_000).collect::<Vec<_>>(), "every line arrives; {stats:?}");
    assert!(duplicates <= 2_000, "duplicates rather than loss: {duplicates}");
    assert_eq!((stats.cursor_damaged, stats.files_skipped), (1, 0), "{stats:?}");
}

/// A cursor whose offset is past the end of its file: nothing of that file was shipped until it
/// grew past the offset (51 lines never shipped).
#[test]
fn a_cloudwatch_cursor_past_the_end_of_its_file_is_distrusted_and_every_line_is_shipped() {
    let group = unique("PastEndCursor");
    let (seqs, _, stats) = ship_after_a_damaged_cursor(&group, 100, 150, |dir, mut saved| {
        saved["offset"] = json!(saved["offset"].as_u64().unwrap() + 10_000_000);
        saved.as_object_mut().unwrap().remove("check");
        plant_cloudwatch_cursor(dir, saved);
    });
    assert_eq!(seqs, (0..150).collect::<Vec<_>>(), "every line arrives; {stats:?}");
    assert_eq!((stats.cursor_damaged, stats.files_skipped), (1, 0), "{stats:?}");
}

/// A cursor damaged on disk (its check no longer matches): shipping starts from the oldest
/// retained line, not from the end of the file (which lost the unshipped backlog).
#[test]
fn a_cloudwatch_cursor_that_fails_its_check_ships_from_the_oldest_retained_line() {
    let group = unique("BadCheckCursor");
    let (seqs, _, stats) = ship_after_a_damaged_cursor(&group, 100, 400, |dir, mut saved| {
        saved["offset"] = json!(saved["offset"].as_u64().unwrap() + 1);
        plant_cloudwatch_cursor(dir, saved);
    });
    assert_eq!(seqs, (0..400).collect::<Vec<_>>(), "every line arrives; {stats:?}");
    assert_eq!(stats.cursor_damaged, 1, "{stats:?}");
}

/// CloudWatch's own minimum (issue 26): the shipper reads `chimera.log` and leaves out the lines
/// below it; they stay in the file.
#[test]
fn cloudwatch_level_ships_only_lines_at_or_above_it_and_the_file_keeps_them_all() {
    let (runtime, dir) = (runtime(), tempfile::tempdir().unwrap());
    let client = client(&runtime);
    let group = unique("ChimeraLevel");
    let guard = LogConfig::new(dir.path())
        .console(false)
        .level(chimera_log_runtime::Level::Debug)
        .cloudwatch_level(chimera_log_runtime::Level::Warning)
        .cloudwatch(cloudwatch(&group, "levels"))
        .build()
        .unwrap();
    let logger = guard.logger("state_engine");
    for seq in 0..3u64 {
        logger.debug("debug_event", json!({ "seq": seq }));
        logger.info("info_event", json!({ "seq": seq }));
        logger.warning("warning_event", json!({ "seq": seq }));
        logger.error("error_event", json!({ "seq": seq }));
    }
    // Lines below the minimum last: the flush must not wait for them to be shipped.
    logger.info("info_last", json!({}));
    assert!(guard.flush(), "flush returns once every line at or above the minimum is shipped");
    drop(guard);
    let shipped: Vec<String> = read_stream(&client, &runtime, &group, "levels")
        .iter()
        .map(|(_, m)| serde_json::from_str::<Value>(m).unwrap()["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(shipped, ["warning_event", "error_event"].repeat(3));
    let in_file =
        common::json_lines(&dir.path().join("chimera.log")).iter().filter(|l| l["module"] == "state_engine").count();
    assert_eq!(in_file, 13, "the file keeps every line");
}

/// With `health_emf(true)`, the shipper sends a `log_health` line's context, an Embedded Metric
/// Format document with `_aws` at its root (where CloudWatch looks for it), as the event; other
/// lines go as written. And `stats().cloudwatch` counts the lines left out below
/// `cloudwatch_level` and the lag in lines (zero once everything is shipped).
#[test]
fn a_health_line_in_embedded_metric_format_reaches_cloudwatch_as_its_document_and_the_lag_settles_at_zero() {
    let (runtime, dir) = (runtime(), tempfile::tempdir().unwrap());
    let client = client(&runtime);
    let group = unique("ChimeraEmf");
    let guard = LogConfig::new(dir.path())
        .console(false)
        .level(chimera_log_runtime::Level::Debug)
        .cloudwatch_level(chimera_log_runtime::Level::Info)
        .health_interval(Duration::from_millis(1))
        .health_emf(true)
        .cloudwatch(cloudwatch(&group, "emf"))
        .build()
        .unwrap();
    let logger = guard.logger("state_engine");
    logger.debug("below", json!({}));
    logger.info("first", json!({}));
    std::thread::sleep(Duration::from_millis(2));
    logger.info("second", json!({}));
    assert!(guard.flush());
    let stats = guard.stats().cloudwatch.unwrap();
    assert_eq!(stats.events_below_level, 1, "{stats:?}");
    assert_eq!(stats.lag_lines, 0, "everything written is shipped or left out: {stats:?}");
    drop(guard);
    let shipped: Vec<Value> =
        read_stream(&client, &runtime, &group, "emf").iter().map(|(_, m)| serde_json::from_str(m).unwrap()).collect();
    let health = shipped.iter().find(|event| event.get("_aws").is_some()).expect("the EMF document was shipped");
    assert_eq!(health["_aws"]["CloudWatchMetrics"][0]["Namespace"], "chimera-log");
    assert!(health["EventsTotal"].is_number(), "{health}");
    assert!(health.get("timestamp").is_none(), "the document, not the line around it: {health}");
    assert!(shipped.iter().any(|event| event["event"] == "second"), "other lines go as written");
}

/// Issue 29: CloudWatch's errors reach a `metrics` recorder as the stats count them: throttling
/// and 503s through the proxy are retried requests, the accepted ones sent, and the lag gauge
/// settles at zero once everything is shipped.
#[cfg(feature = "metrics")]
#[test]
fn cloudwatch_retries_through_the_proxy_are_published_as_counted() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let dir = tempfile::tempdir().unwrap();
    let group = unique("Metrics");
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let (guard, proxy) = through_proxy(dir.path(), &group);
        let logger = guard.logger("m");
        logger.info("tick", json!({ "seq": 0 }));
        assert!(guard.flush());
        proxy.set_mode(common::proxy::Mode::Throttle(2));
        for seq in 1..150u64 {
            logger.info("tick", json!({ "seq": seq }));
        }
        assert!(guard.flush());
        proxy.set_mode(common::proxy::Mode::Unavailable(1));
        logger.info("tick", json!({ "seq": 150 }));
        // The flush publishes on this thread, after the lines are shipped.
        assert!(guard.flush());
        let stats = guard.stats().cloudwatch.unwrap();
        let snapshot = snapshotter.snapshot().into_vec();
        let find = |name: &str, outcome: Option<&str>| {
            snapshot.iter().find_map(|(key, _, _, value)| {
                let labelled = key.key().labels().any(|l| l.key() == "outcome" && Some(l.value()) == outcome);
                let plain = outcome.is_none() && key.key().labels().next().is_none();
                (key.key().name() == name && (labelled || plain)).then_some(value)
            })
        };
        assert_eq!(stats.batches_retried, 3, "{stats:?}");
        assert_eq!(find("chimera_log_cloudwatch_requests_total", Some("retried")), Some(&DebugValue::Counter(3)));
        assert_eq!(
            find("chimera_log_cloudwatch_requests_total", Some("sent")),
            Some(&DebugValue::Counter(stats.batches_sent))
        );
        assert_eq!(find("chimera_log_cloudwatch_requests_total", Some("failed")), Some(&DebugValue::Counter(0)));
        match find("chimera_log_cloudwatch_lag_lines", None) {
            Some(DebugValue::Gauge(lag)) => assert_eq!(lag.into_inner(), 0.0),
            other => panic!("the lag gauge: {other:?}"),
        }
        drop(guard);
    });
}
