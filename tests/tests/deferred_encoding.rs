//! Deferred encoding (issue 30): a typed general event's line, encoded by the writer thread
//! from the record the caller left, is byte for byte the line the caller would have encoded.
//! Random events of every field kind go through both paths: the derive's (deferred) and a
//! wrapper whose hand-written `LogEvent` impl has no record, so it is encoded on the caller.

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chimera_log_runtime::{emit, ContextWriter, Level, LogConfig, LogEvent, Routes};
use common::{raw_lines, ManualClock};

/// The same event, encoded on the caller's thread: a hand-written impl has no record.
struct OnCaller<E>(E);

impl<E: LogEvent> LogEvent for OnCaller<E> {
    const NAME: &'static str = E::NAME;
    const LEVEL: Level = E::LEVEL;
    const ROUTES: Routes = E::ROUTES;
    fn write_context(&self, writer: &mut ContextWriter<'_>) {
        self.0.write_context(writer);
    }
}

/// A `Display` whose text needs escaping.
struct Shown(String);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.0)
    }
}

type Amount = u64;

#[derive(LogEvent)]
#[log(level = "debug")]
struct EveryKind<'a> {
    text: &'a str,
    owned: String,
    big: u128,
    negative: i64,
    small: u8,
    price: f64,
    ratio: f32,
    flag: bool,
    letter: char,
    maybe_count: Option<u64>,
    maybe_text: Option<&'a str>,
    maybe_owned: Option<String>,
    maybe_price: Option<f64>,
    alias: Amount,
    list: Vec<u32>,
    map: BTreeMap<String, i32>,
    #[log(display)]
    shown: Shown,
    #[log(redact)]
    secret: &'a str,
    #[log(skip)]
    #[allow(dead_code)]
    skipped: u64,
    #[log(rename = "a\"b")]
    renamed: i8,
}

/// Every field one the capture copies with its own code: written straight into the queue.
#[derive(LogEvent)]
#[log(level = "warning")]
struct FastOnly<'a> {
    text: &'a str,
    big: u128,
    negative: i64,
    small: u8,
    size: usize,
    #[log(redact)]
    secret: &'a str,
    #[log(skip)]
    #[allow(dead_code)]
    skipped: u64,
    #[log(rename = "a\"b")]
    renamed: i8,
    last: &'a str,
}

/// Every field one the capture copies through `Value` (no `Serialize` runs): in place too.
#[derive(LogEvent)]
#[log(level = "error")]
struct Copied<'a> {
    owned: String,
    price: f64,
    ratio: f32,
    flag: bool,
    letter: char,
    maybe_count: Option<u64>,
    maybe_text: Option<&'a str>,
    maybe_owned: Option<String>,
    maybe_price: Option<f64>,
    alias: Amount,
    text: &'a str,
}

#[derive(LogEvent)]
#[log(name = "generic_event")]
struct Generic<T: serde::Serialize> {
    value: T,
    seq: u32,
}

/// xorshift64*: random enough, and the same every run.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn text(&mut self) -> String {
        const PIECES: &[&str] = &[
            "a",
            "Z",
            "0",
            " ",
            "\"",
            "\\",
            "/",
            "\n",
            "\r",
            "\t",
            "\u{0}",
            "\u{1f}",
            "\u{7f}",
            "é",
            "中",
            "😀",
            "\u{2028}",
            "}",
            "{\"x\":1}",
            "\u{b}",
        ];
        let len = self.below(12);
        (0..len).map(|_| PIECES[self.below(PIECES.len() as u64) as usize]).collect()
    }

    fn maybe<T>(&mut self, value: impl FnOnce(&mut Self) -> T) -> Option<T> {
        (self.below(3) != 0).then(|| value(self))
    }
}

#[test]
fn the_writers_line_from_a_record_is_byte_identical_to_the_callers_over_random_events() {
    assert!(<EveryKind<'_> as LogEvent>::__REPLAY.is_some(), "the derive gives the event a record");
    assert!(<OnCaller<EveryKind<'_>> as LogEvent>::__REPLAY.is_none());
    let fast =
        FastOnly { text: "", big: 0, negative: 0, small: 0, size: 0, secret: "", skipped: 0, renamed: 0, last: "" };
    assert!(fast.__capture_len().is_some(), "a capture of the user's code-free fields is written in place");
    assert!(OnCaller(fast).__capture_len().is_none());
    let copied = Copied {
        owned: String::new(),
        price: 0.0,
        ratio: 0.0,
        flag: false,
        letter: 'a',
        maybe_count: None,
        maybe_text: None,
        maybe_owned: None,
        maybe_price: None,
        alias: 0,
        text: "",
    };
    assert!(copied.__capture_len().is_some(), "values the record copies are written in place");
    let every = EveryKind {
        text: "",
        owned: String::new(),
        big: 0,
        negative: 0,
        small: 0,
        price: 0.0,
        ratio: 0.0,
        flag: false,
        letter: 'a',
        maybe_count: None,
        maybe_text: None,
        maybe_owned: None,
        maybe_price: None,
        alias: 0,
        list: Vec::new(),
        map: BTreeMap::new(),
        shown: Shown(String::new()),
        secret: "",
        skipped: 0,
        renamed: 0,
    };
    assert!(every.__capture_len().is_none(), "a Vec's Serialize and a display field run user code");
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_micros(1_705_314_645_123_456));
    let guard = LogConfig::new(dir.path()).console(false).level(Level::Trace).clock(clock.clone()).build().unwrap();
    let logger = guard.logger("deferred::test \"module\"");
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    const EVENTS: usize = 3_000;
    for _ in 0..EVENTS {
        let text = random.text();
        let maybe_text = random.maybe(Random::text);
        let secret = random.text();
        let event = EveryKind {
            text: &text,
            owned: random.text(),
            big: u128::from(random.next()) << random.below(65),
            negative: random.next() as i64,
            small: random.next() as u8,
            price: f64::from_bits(random.next()),
            ratio: f32::from_bits(random.next() as u32),
            flag: random.below(2) == 1,
            letter: char::from_u32(random.below(0x11_0000) as u32).unwrap_or('\u{0}'),
            maybe_count: random.maybe(Random::next),
            maybe_text: maybe_text.as_deref(),
            maybe_owned: random.maybe(Random::text),
            maybe_price: random.maybe(|random| f64::from_bits(random.next())),
            alias: random.next(),
            list: (0..random.below(4)).map(|_| random.next() as u32).collect(),
            map: (0..random.below(3)).map(|_| (random.text(), random.next() as i32)).collect(),
            shown: Shown(random.text()),
            secret: &secret,
            skipped: random.next(),
            renamed: random.next() as i8,
        };
        // The same time for both, moved on between pairs: each line carries its emit's time.
        clock.advance_micros(random.below(5_000_000));
        emit!(logger, event);
        emit!(logger, OnCaller(event));
        let generic = Generic { value: random.maybe(Random::text), seq: random.next() as u32 };
        emit!(logger, generic);
        emit!(logger, OnCaller(generic));
        // Now and then a string larger than a chunk (64 KiB): a chunk of its own.
        let long = if random.below(500) == 0 { "é".repeat(40_000) } else { random.text() };
        let (text, secret) = (random.text(), random.text());
        let fast = FastOnly {
            text: &text,
            big: u128::from(random.next()) << random.below(65),
            negative: random.next() as i64,
            small: random.next() as u8,
            size: random.next() as usize,
            secret: &secret,
            skipped: random.next(),
            renamed: random.next() as i8,
            last: &long,
        };
        emit!(logger, fast);
        emit!(logger, OnCaller(fast));
        let maybe_text = random.maybe(Random::text);
        let text = random.text();
        let copied = Copied {
            owned: random.text(),
            price: f64::from_bits(random.next()),
            ratio: f32::from_bits(random.next() as u32),
            flag: random.below(2) == 1,
            letter: char::from_u32(random.below(0x11_0000) as u32).unwrap_or('\u{0}'),
            maybe_count: random.maybe(Random::next),
            maybe_text: maybe_text.as_deref(),
            maybe_owned: random.maybe(Random::text),
            maybe_price: random.maybe(|random| f64::from_bits(random.next())),
            alias: random.next(),
            text: &text,
        };
        emit!(logger, copied);
        emit!(logger, OnCaller(copied));
    }
    drop(guard);
    let lines = raw_lines(&dir.path().join("chimera.log"));
    assert_eq!(lines.len(), 8 * EVENTS);
    for pair in lines.chunks(2) {
        assert_eq!(pair[0], pair[1], "the deferred line (first) against the caller's (second)");
        serde_json::from_str::<serde_json::Value>(&pair[0]).expect("a line is JSON");
    }
}

#[test]
fn a_deferred_line_carries_the_time_of_its_emit_not_of_its_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_micros(1_705_314_645_123_456));
    let guard = LogConfig::new(dir.path()).console(false).clock(clock.clone()).build().unwrap();
    let logger = guard.logger("m");
    emit!(logger, Generic { value: 1u8, seq: 1 });
    // The writer encodes the record after this (at the latest when the guard is dropped).
    clock.advance_micros(60_000_000);
    drop(guard);
    let lines = raw_lines(&dir.path().join("chimera.log"));
    assert!(lines[0].starts_with(r#"{"timestamp":"2024-01-15T10:30:45.123456Z""#), "{}", lines[0]);
}

/// Records the thread its `Serialize` and `Display` run on.
struct Witness;

static SERIALIZED_ON: std::sync::Mutex<Vec<std::thread::ThreadId>> = std::sync::Mutex::new(Vec::new());

impl serde::Serialize for Witness {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SERIALIZED_ON.lock().unwrap().push(std::thread::current().id());
        serializer.serialize_str("witness")
    }
}

impl fmt::Display for Witness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        SERIALIZED_ON.lock().unwrap().push(std::thread::current().id());
        f.write_str("shown")
    }
}

#[derive(LogEvent)]
struct WithUserTypes {
    seq: u64,
    value: Witness,
    #[log(display)]
    shown: Witness,
}

#[test]
fn a_fields_own_serialize_and_display_run_on_the_callers_thread_never_the_writers() {
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path()).console(false).build().unwrap();
    let logger = guard.logger("m");
    for seq in 0..100 {
        emit!(logger, WithUserTypes { seq, value: Witness, shown: Witness });
    }
    drop(guard);
    let caller = std::thread::current().id();
    let threads = SERIALIZED_ON.lock().unwrap().clone();
    assert_eq!(threads.len(), 200, "each user impl ran once per event");
    assert!(threads.iter().all(|thread| *thread == caller), "user code ran on another thread");
    let lines = raw_lines(&dir.path().join("chimera.log"));
    assert_eq!(lines.len(), 100);
    assert!(lines[99].ends_with(r#""context":{"seq":99,"value":"witness","shown":"shown"}}"#), "{}", lines[99]);
}

#[test]
fn records_written_in_place_are_counted_once_each_even_from_threads_that_have_exited() {
    const THREADS: u64 = 6;
    const EACH: u64 = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path()).console(false).build().unwrap();
    let event = |seq: u64| FastOnly {
        text: "t",
        big: 1,
        negative: -1,
        small: 1,
        size: seq as usize,
        secret: "s",
        skipped: 0,
        renamed: 0,
        last: "l",
    };
    for round in 0..2 {
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let logger = guard.logger("counted");
                std::thread::spawn(move || {
                    for seq in 0..EACH {
                        emit!(logger, event(seq));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        // The writer's pass drops the exited threads' shards; their counts stay.
        assert!(guard.flush());
        let counted = guard.stats().events_by_level[Level::Warning as usize];
        assert_eq!(counted, (round + 1) * THREADS * EACH, "round {round}");
    }
    // And from this thread, whose shard lives on.
    let logger = guard.logger("counted");
    emit!(logger, event(0));
    assert_eq!(guard.stats().events_by_level[Level::Warning as usize], 2 * THREADS * EACH + 1);
    drop(guard);
    assert_eq!(raw_lines(&dir.path().join("chimera.log")).len() as u64, 2 * THREADS * EACH + 1);
}

#[test]
fn a_record_written_in_place_larger_than_the_whole_queue_arrives_whole() {
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path()).console(false).queue_capacity(64 * 1024).build().unwrap();
    let logger = guard.logger("big");
    let long = "x".repeat(300_000);
    for seq in 0..3 {
        emit!(
            logger,
            FastOnly {
                text: "a",
                big: seq,
                negative: 0,
                small: 0,
                size: 0,
                secret: "",
                skipped: 0,
                renamed: 0,
                last: &long
            }
        );
    }
    assert!(guard.flush());
    assert_eq!(guard.stats().events_by_level[Level::Warning as usize], 3);
    drop(guard);
    let lines = raw_lines(&dir.path().join("chimera.log"));
    assert_eq!(lines.len(), 3);
    for (seq, line) in lines.iter().enumerate() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(value["context"]["big"], seq as u64);
        assert_eq!(value["context"]["last"].as_str().map(str::len), Some(300_000));
    }
}

/// A type of the application's spelt `String`, whose `Serialize` logs: not the record's
/// `String`, so its event is captured into a buffer, never under the queue's lock.
mod named_like_std {
    use chimera_log_runtime::{emit, LogEvent, Logger};

    #[derive(LogEvent)]
    #[log(name = "inner")]
    pub(crate) struct Inner<'a> {
        pub(crate) from: &'a str,
    }

    pub(crate) struct String(pub(crate) Logger);

    impl serde::Serialize for String {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            emit!(self.0, Inner { from: "serialize" });
            serializer.serialize_str("own")
        }
    }

    #[derive(LogEvent)]
    #[log(name = "outer")]
    pub(crate) struct Outer {
        pub(crate) value: String,
        pub(crate) seq: u64,
    }
}

#[test]
fn a_type_spelt_like_one_the_record_copies_runs_its_serialize_outside_the_queues_lock() {
    use named_like_std::{Inner, Outer};
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path()).console(false).build().unwrap();
    let logger = guard.logger("m");
    assert!(Inner { from: "" }.__capture_len().is_some());
    assert!(Outer { value: named_like_std::String(logger.clone()), seq: 0 }.__capture_len().is_none());
    let (done, finished) = std::sync::mpsc::channel();
    let emitter = std::thread::spawn(move || {
        for seq in 0..100 {
            emit!(logger, Outer { value: named_like_std::String(logger.clone()), seq });
        }
        let _ = done.send(());
    });
    finished
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the emits returned: a Serialize that logs does not wait for a lock its own thread holds");
    emitter.join().unwrap();
    drop(guard);
    let lines = raw_lines(&dir.path().join("chimera.log"));
    assert_eq!(lines.len(), 200);
    assert!(lines[1].contains(r#""event":"outer""#) && lines[1].contains(r#""value":"own""#), "{}", lines[1]);
}

/// An event written in place, at a level nothing else in these tests uses (the writer's own
/// drop reports are warnings).
#[derive(LogEvent)]
#[log(name = "tick", level = "error")]
struct Tick<'a> {
    thread: u64,
    seq: u64,
    text: &'a str,
}

/// (ticks written, drops reported) in the general file.
fn ticks_and_reported_drops(dir: &std::path::Path) -> (u64, u64) {
    let (mut ticks, mut dropped) = (0, 0);
    for line in raw_lines(&dir.join("chimera.log")) {
        let line: serde_json::Value = serde_json::from_str(&line).unwrap();
        match line["event"].as_str().unwrap() {
            "tick" => ticks += 1,
            "log_events_dropped" => dropped += line["context"]["dropped"].as_u64().unwrap(),
            other => panic!("unexpected event {other}"),
        }
    }
    (ticks, dropped)
}

/// Threads emit in-place events into a tiny queue, each from a run of short-lived threads (whose
/// shards the writer retires mid-run), while another thread reads `stats()` throughout, and the
/// guard is dropped while they are at it. Every event is counted once: written or dropped (and
/// reported), or refused after shutdown; the count never goes back.
#[test]
fn in_place_events_are_counted_once_each_across_drops_exiting_threads_concurrent_stats_and_shutdown() {
    use chimera_log_runtime::Overflow;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    use std::time::Duration;
    // Mostly dropped, mostly waited for, mostly taken.
    let queues =
        [(Overflow::Drop, 1024), (Overflow::WaitUpTo(Duration::from_millis(1)), 1024), (Overflow::Drop, 64 * 1024)];
    for (round, (overflow, capacity)) in (0..15).flat_map(|round| queues.map(|queue| (round, queue))) {
        let dir = tempfile::tempdir().unwrap();
        let guard = LogConfig::new(dir.path())
            .console(false)
            .audit_store(chimera_log_runtime::AuditStore::none())
            .queue_capacity(capacity)
            .overflow(overflow)
            .build()
            .unwrap();
        let stats_logger = guard.logger("stats");
        let (emitted, shut, done) = (AtomicU64::new(0), AtomicBool::new(false), AtomicBool::new(false));
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4u64)
                .map(|thread| {
                    let logger = guard.logger("worker");
                    let (emitted, shut) = (&emitted, &shut);
                    scope.spawn(move || {
                        let mut after = 0;
                        let mut seq = 0u64;
                        while after < 100 {
                            // A fresh thread for each burst: the last one's shard is retired.
                            std::thread::scope(|burst| {
                                burst.spawn(|| {
                                    for _ in 0..50 {
                                        if shut.load(Relaxed) {
                                            after += 1;
                                        }
                                        emit!(logger, Tick { thread, seq, text: "some text to fill the queue" });
                                        emitted.fetch_add(1, Relaxed);
                                        seq += 1;
                                    }
                                });
                            });
                        }
                    })
                })
                .collect();
            let reader = scope.spawn(|| {
                let mut last = 0;
                while !done.load(Relaxed) {
                    let counted = stats_logger.stats().unwrap().events_by_level[Level::Error as usize];
                    assert!(counted >= last, "round {round}: the count went back from {last} to {counted}");
                    last = counted;
                }
            });
            while emitted.load(Relaxed) < 2_000 {
                std::hint::spin_loop();
            }
            drop(guard);
            shut.store(true, Relaxed);
            for worker in workers {
                worker.join().unwrap();
            }
            done.store(true, Relaxed);
            reader.join().unwrap();
        });
        let stats = stats_logger.stats().unwrap();
        let (ticks, reported) = ticks_and_reported_drops(dir.path());
        let dropped = stats.sink("chimera.log").unwrap().dropped;
        assert_eq!(reported, dropped, "round {round}, {overflow:?}: every counted drop is reported");
        assert_eq!(
            ticks + dropped + stats.emitted_after_shutdown,
            emitted.load(Relaxed),
            "round {round}, {overflow:?}: emitted = written + dropped + refused after shutdown"
        );
        assert_eq!(
            stats.events_by_level[Level::Error as usize],
            ticks + dropped,
            "round {round}, {overflow:?}: counted = written + dropped"
        );
    }
}

/// Emits in-place events when its thread exits, after the queue's thread-local is gone.
struct EmitsOnExit(std::cell::RefCell<Option<chimera_log_runtime::Logger>>);

impl Drop for EmitsOnExit {
    fn drop(&mut self) {
        if let Some(logger) = self.0.borrow_mut().take() {
            for seq in 0..10 {
                emit!(logger, Tick { thread: 1, seq, text: "from a destructor" });
            }
        }
    }
}

thread_local! {
    static EMITS_ON_EXIT: EmitsOnExit = const { EmitsOnExit(std::cell::RefCell::new(None)) };
}

#[test]
fn in_place_events_from_a_thread_local_destructor_are_written_and_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path()).console(false).build().unwrap();
    for thread in 0..3 {
        let logger = guard.logger("m");
        std::thread::spawn(move || {
            // Touched before the queue's thread-local, so destroyed after it.
            EMITS_ON_EXIT.with(|on_exit| *on_exit.0.borrow_mut() = Some(logger.clone()));
            for seq in 0..100 {
                emit!(logger, Tick { thread, seq, text: "t" });
            }
        })
        .join()
        .unwrap();
        assert!(guard.flush());
        assert_eq!(guard.stats().events_by_level[Level::Error as usize], (thread + 1) * 110);
    }
    drop(guard);
    let (ticks, reported) = ticks_and_reported_drops(dir.path());
    assert_eq!((ticks, reported), (330, 0));
}

/// An in-place event to a route only (the general file's level refuses it) is written in
/// place into the route's lane; one to both files, or to the console too, is captured into a
/// buffer and copied to each. Every such line is the caller's, byte for byte.
#[derive(LogEvent)]
#[log(route = "metrics", level = "debug")]
struct RoutedOnly<'a> {
    text: &'a str,
    seq: u64,
}

#[derive(LogEvent)]
#[log(route = "metrics", level = "warning")]
struct RoutedEverywhere<'a> {
    text: &'a str,
    seq: u64,
}

#[derive(LogEvent)]
#[log(level = "critical")]
struct OnConsoleToo<'a> {
    text: &'a str,
    seq: u64,
}

#[test]
fn in_place_events_to_a_route_or_the_console_write_the_callers_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_micros(1_705_314_645_123_456));
    let guard = LogConfig::new(dir.path())
        .console_level(Level::Critical)
        .level(Level::Info)
        .route("metrics", "metrics.log")
        .clock(clock)
        .build()
        .unwrap();
    let logger = guard.logger("routed");
    let mut random = Random(7);
    for seq in 0..200 {
        let text = random.text();
        emit!(logger, RoutedOnly { text: &text, seq });
        emit!(logger, OnCaller(RoutedOnly { text: &text, seq }));
        emit!(logger, RoutedEverywhere { text: &text, seq });
        emit!(logger, OnCaller(RoutedEverywhere { text: &text, seq }));
        if seq % 50 == 0 {
            emit!(logger, OnConsoleToo { text: &text, seq });
            emit!(logger, OnCaller(OnConsoleToo { text: &text, seq }));
        }
    }
    let stats = guard.stats();
    assert_eq!(stats.events_by_level[Level::Debug as usize], 400);
    assert_eq!(stats.events_by_level[Level::Warning as usize], 400);
    assert_eq!(stats.events_by_level[Level::Critical as usize], 8);
    drop(guard);
    let general = raw_lines(&dir.path().join("chimera.log"));
    let routed = raw_lines(&dir.path().join("metrics.log"));
    assert_eq!((general.len(), routed.len()), (408, 800));
    for pair in general.chunks(2).chain(routed.chunks(2)) {
        assert_eq!(pair[0], pair[1], "the deferred line (first) against the caller's (second)");
    }
}

/// A type of the user's named `str`: a field spelt `&str` is then not core's `str`, and taking
/// it as one runs the type's `Deref`, the user's code.
mod shadows_str {
    use std::cell::Cell;

    /// Derefs to a longer text each time, as user code may.
    #[allow(non_camel_case_types)]
    pub(crate) struct str(pub(crate) Cell<usize>);

    impl std::ops::Deref for str {
        type Target = core::primitive::str;

        fn deref(&self) -> &Self::Target {
            self.0.set(self.0.get() + 1);
            &"growing"[..self.0.get().min(7)]
        }
    }

    #[derive(chimera_log_runtime::LogEvent)]
    pub(crate) struct NotCoreStr<'a> {
        pub(crate) text: &'a str,
        pub(crate) seq: u64,
    }
}

#[test]
fn a_field_spelt_str_that_is_not_cores_str_is_never_written_in_place() {
    use shadows_str::{str as Shadow, NotCoreStr};
    let text = Shadow(std::cell::Cell::new(0));
    assert!(NotCoreStr { text: &text, seq: 0 }.__capture_len().is_none(), "its deref is the user's code");
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path()).console(false).build().unwrap();
    let logger = guard.logger("shadow");
    for seq in 0..3 {
        emit!(logger, NotCoreStr { text: &text, seq });
    }
    assert_eq!(guard.stats().events_by_level[Level::Info as usize], 3);
    drop(guard);
    let lines = raw_lines(&dir.path().join("chimera.log"));
    assert_eq!(lines.len(), 3);
    for (seq, line) in lines.iter().enumerate() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(value["context"]["seq"], seq as u64);
    }
}

/// Every spelling of the fast paths: each integer keyword, a raw one, a `'static` string, and
/// integer names that are the user's (an alias, an import under a keyword's name).
mod spellings {
    #[derive(chimera_log_runtime::LogEvent)]
    pub(crate) struct Keywords<'a> {
        pub(crate) a: u8,
        pub(crate) b: u16,
        pub(crate) c: u32,
        pub(crate) d: u64,
        pub(crate) e: u128,
        pub(crate) f: usize,
        pub(crate) g: i8,
        pub(crate) h: i16,
        pub(crate) i: i32,
        pub(crate) j: i64,
        pub(crate) k: i128,
        pub(crate) l: isize,
        pub(crate) fixed: &'static str,
        pub(crate) text: &'a str,
    }

    /// A raw identifier is not taken for the keyword: captured tagged, through `Value`.
    #[derive(chimera_log_runtime::LogEvent)]
    pub(crate) struct Raw {
        pub(crate) raw: r#u16,
    }

    pub(crate) mod renamed {
        #[allow(non_camel_case_types)]
        type u32 = u8;
        use core::primitive::i8 as u64;

        #[derive(chimera_log_runtime::LogEvent)]
        pub(crate) struct NamedLikeIntegers {
            pub(crate) narrow: u32,
            pub(crate) signed: u64,
        }

        pub(crate) fn event(seq: u8) -> NamedLikeIntegers {
            NamedLikeIntegers { narrow: seq, signed: -(seq as i8 % 100) }
        }
    }
}

#[test]
fn every_fast_path_spelling_is_written_in_place_with_the_length_its_capture_writes() {
    use spellings::{renamed, Keywords};
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_micros(1_705_314_645_123_456));
    let guard = LogConfig::new(dir.path()).console(false).clock(clock).build().unwrap();
    let logger = guard.logger("spelt");
    let mut random = Random(11);
    for seq in 0..100u8 {
        let text = random.text();
        let n = random.next();
        let keywords = Keywords {
            a: n as u8,
            b: n as u16,
            c: n as u32,
            d: n,
            e: u128::from(n) << 60,
            f: n as usize,
            g: n as i8,
            h: n as i16,
            i: n as i32,
            j: n as i64,
            k: -(i128::from(n) << 60),
            l: n as isize,
            fixed: "\"fixed\"",
            text: &text,
        };
        assert!(keywords.__capture_len().is_some());
        assert!(renamed::event(seq).__capture_len().is_some());
        // Off the fast path (the derive reads `r#u16` as another name), through `Value`: a
        // scalar the record copies, still in place, tagged.
        assert!(spellings::Raw { raw: seq.into() }.__capture_len().is_some());
        // Debug builds check the length said against the bytes written (`Chunk::append_record_with`).
        emit!(logger, keywords);
        emit!(logger, OnCaller(keywords));
        emit!(logger, renamed::event(seq));
        emit!(logger, OnCaller(renamed::event(seq)));
        emit!(logger, spellings::Raw { raw: seq.into() });
        emit!(logger, OnCaller(spellings::Raw { raw: seq.into() }));
    }
    drop(guard);
    let lines = raw_lines(&dir.path().join("chimera.log"));
    assert_eq!(lines.len(), 600);
    for pair in lines.chunks(2) {
        assert_eq!(pair[0], pair[1], "the deferred line (first) against the caller's (second)");
    }
}
