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
