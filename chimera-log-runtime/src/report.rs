//! The logger's own lines on stderr: a failure, a count of dropped lines, a shutdown that did not
//! finish; and the rate limit on repeated failures ([`FailureReporter`]).
//!
//! A stderr nobody reads (a pipe whose reader stopped) blocks every write to it, and the console
//! sink may already be stuck in one, holding std's stderr lock. Written with `eprintln!`, such a
//! line would hang the thread that dropped the guard, or a writer thread, for good. So a thread
//! of its own writes them: the caller waits for its line as `eprintln!` would, but at most
//! [`WAIT`]; then stderr counts as stuck, and later lines are queued (up to [`QUEUED`], then
//! counted and dropped) without waiting, until a write completes again.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use std::time::{SystemTime, UNIX_EPOCH};

/// The longest a caller waits for its line to be written.
const WAIT: Duration = Duration::from_millis(100);
/// Lines held while stderr is stuck.
const QUEUED: usize = 64;

/// Writes a line (`format!` arguments, no newline) to stderr, waiting at most [`WAIT`].
macro_rules! diag {
    ($($arg:tt)*) => {
        $crate::report::say(format_args!($($arg)*))
    };
}

struct State {
    lines: VecDeque<String>,
    /// Lines queued and lines written since the start: a caller's ticket is its line's number.
    queued: u64,
    written: u64,
    /// The last wait for a line ran out: do not wait again until a write completes.
    stuck: bool,
    dropped: u64,
}

static STATE: Mutex<State> =
    Mutex::new(State { lines: VecDeque::new(), queued: 0, written: 0, stuck: false, dropped: 0 });
/// The writer thread waits here for lines.
static QUEUED_LINE: Condvar = Condvar::new();
/// Callers wait here for theirs to be written.
static WRITTEN: Condvar = Condvar::new();

fn lock() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the thread that writes the lines, if it is not running yet: called when a logger
/// starts, on the application's thread, so that no line has to start it later (from a writer
/// thread with a priority of its own, or a thread-local destructor).
pub(crate) fn start() {
    started();
}

/// Whether the writer thread runs.
fn started() -> bool {
    static STARTED: OnceLock<bool> = OnceLock::new();
    *STARTED.get_or_init(|| crate::thread::spawn("chimera-log-stderr", write_lines).is_ok())
}

pub(crate) fn say(args: fmt::Arguments<'_>) {
    let line = format!("{args}\n");
    if !started() {
        // No thread to be had: as `eprintln!` would, whatever it costs.
        let _ = std::io::stderr().write_all(line.as_bytes());
        return;
    }
    let mut state = lock();
    if state.lines.len() >= QUEUED {
        state.dropped += 1;
        return;
    }
    state.lines.push_back(line);
    state.queued += 1;
    let ticket = state.queued;
    QUEUED_LINE.notify_one();
    if state.stuck {
        return;
    }
    let deadline = Instant::now() + WAIT;
    while state.written < ticket {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            state.stuck = true;
            return;
        }
        state = WRITTEN.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
    }
}

fn write_lines() {
    let mut state = lock();
    loop {
        let Some(line) = state.lines.pop_front() else {
            state = QUEUED_LINE.wait(state).unwrap_or_else(|e| e.into_inner());
            continue;
        };
        let dropped = std::mem::take(&mut state.dropped);
        drop(state);
        let mut stderr = std::io::stderr().lock();
        if dropped > 0 {
            let _ = writeln!(stderr, "chimera-log: {dropped} of its own line(s) were dropped while stderr was blocked");
        }
        let _ = stderr.write_all(line.as_bytes());
        drop(stderr);
        state = lock();
        state.written += 1;
        state.stuck = false;
        WRITTEN.notify_all();
    }
}

/// An output's outage, as its stderr lines tell it: one line when it starts, one when it ends
/// (with how long it lasted), whatever happens between; and whether it is down now, for stats.
#[derive(Debug, Default)]
pub(crate) struct Outage {
    since: Option<std::time::SystemTime>,
}

impl Outage {
    /// The output failed at `now`: the first failure of an outage prints `line`; later ones
    /// print nothing. `true` if this began an outage.
    pub(crate) fn down(&mut self, now: std::time::SystemTime, line: impl FnOnce() -> String) -> bool {
        if self.since.is_some() {
            return false;
        }
        self.since = Some(now);
        say(format_args!("{}", line()));
        true
    }

    /// The output works at `now`: ends an outage, printing `line` with how long it lasted.
    /// `true` if this ended one.
    pub(crate) fn up(&mut self, now: std::time::SystemTime, line: impl FnOnce(std::time::Duration) -> String) -> bool {
        let Some(since) = self.since.take() else { return false };
        say(format_args!("{}", line(now.duration_since(since).unwrap_or_default())));
        true
    }
}

/// Reports a sink's failures on stderr at most once a minute, saying how many happened since.
#[derive(Debug, Default)]
pub(crate) struct FailureReporter {
    last_report_secs: AtomicU64,
    unreported: AtomicU64,
}

impl FailureReporter {
    const INTERVAL_SECS: u64 = 60;

    /// Counts a failure of `what` ("writing to chimera.log") and prints it unless one was printed
    /// less than a minute ago.
    pub(crate) fn report(&self, what: &dyn std::fmt::Display, error: &io::Error) {
        let unreported = self.unreported.fetch_add(1, Relaxed) + 1;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()).max(1);
        let last = self.last_report_secs.load(Relaxed);
        if last != 0 && now < last + Self::INTERVAL_SECS {
            return;
        }
        if self.last_report_secs.compare_exchange(last, now, Relaxed, Relaxed).is_ok() {
            self.unreported.fetch_sub(unreported, Relaxed);
            diag!(
                "chimera-log: {what} failed ({unreported} failure(s) since the last report): {error}; \
                 logging continues, see stats() for counts"
            );
        }
    }
}

/// An error and its `source()` chain, outermost first, as one line (`a: b: c`).
#[cfg_attr(not(any(feature = "cloudwatch", feature = "otlp")), allow(dead_code))]
pub(crate) fn source_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}
