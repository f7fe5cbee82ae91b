//! Batching for OTLP, without any I/O: the lines read and not yet sent, when to send, and what
//! one request carries (a count and a byte cap; the receiver has no time-window rules).

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::dir::follow::Cursor;

/// When to send, and how much one request may carry.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) batch_events: usize,
    pub(crate) batch_interval: Duration,
    pub(crate) max_batch_events: usize,
    pub(crate) max_batch_bytes: usize,
}

/// A line waiting: its text, the cursor after it, its own time and when it was read.
#[derive(Debug)]
struct Waiting {
    line: String,
    cursor: Cursor,
    timestamp_ms: i64,
    observed_nanos: u64,
}

/// A request's worth of lines, in file order, each with when it was read.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) lines: Vec<(String, u64)>,
    /// Where the file family is read up to once this batch is acknowledged.
    pub(crate) cursor: Option<Cursor>,
}

/// The lines read from the file and not yet sent, in file order: never more than one request's
/// worth (the reader stops while [`Batcher::full`]).
#[derive(Debug)]
pub(crate) struct Batcher {
    limits: Limits,
    waiting: VecDeque<Waiting>,
    bytes: usize,
    oldest_ms: Option<i64>,
}

impl Batcher {
    pub(crate) fn new(limits: Limits) -> Self {
        Batcher { limits, waiting: VecDeque::new(), bytes: 0, oldest_ms: None }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Forgets what is waiting (it is read again from the file).
    pub(crate) fn clear(&mut self) {
        self.waiting.clear();
        self.bytes = 0;
        self.oldest_ms = None;
    }

    /// Whether a whole request's worth is waiting: read no more until it is sent.
    pub(crate) fn full(&self) -> bool {
        self.waiting.len() >= self.limits.max_batch_events || self.bytes >= self.limits.max_batch_bytes
    }

    /// Takes one line (without its newline) stamped `timestamp_ms`, read at `observed`;
    /// `cursor` is where the file is read up to once it is sent.
    pub(crate) fn push(&mut self, line: &str, timestamp_ms: i64, observed: SystemTime, cursor: Cursor) {
        self.bytes += line.len();
        self.oldest_ms = Some(self.oldest_ms.map_or(timestamp_ms, |oldest| oldest.min(timestamp_ms)));
        let observed_nanos =
            observed.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(0));
        self.waiting.push_back(Waiting { line: line.to_owned(), cursor, timestamp_ms, observed_nanos });
    }

    /// Whether a request should go now: `batch_events` wait, a full request waits, or the
    /// oldest line (by its own time, on the same clock as `now`) is `batch_interval` old.
    pub(crate) fn due(&self, now: SystemTime) -> bool {
        let interval_ms = i64::try_from(self.limits.batch_interval.as_millis()).unwrap_or(i64::MAX);
        self.waiting.len() >= self.limits.batch_events
            || self.full()
            || self.oldest_ms.is_some_and(|oldest| millis(now).saturating_sub(oldest) >= interval_ms)
    }

    /// The next request: the waiting lines in file order, up to `max_batch_events` and
    /// `max_batch_bytes` (a single larger line goes alone).
    pub(crate) fn take_batch(&mut self) -> Batch {
        let mut batch = Batch::default();
        let mut bytes = 0;
        while let Some(next) = self.waiting.front() {
            let fits = batch.lines.is_empty()
                || (batch.lines.len() < self.limits.max_batch_events
                    && bytes + next.line.len() <= self.limits.max_batch_bytes);
            if !fits {
                break;
            }
            let waiting = self.waiting.pop_front().expect("front exists");
            bytes += waiting.line.len();
            self.bytes -= waiting.line.len();
            batch.cursor = Some(waiting.cursor);
            batch.lines.push((waiting.line, waiting.observed_nanos));
        }
        self.oldest_ms = self.waiting.iter().map(|waiting| waiting.timestamp_ms).min();
        batch
    }
}

/// Milliseconds since the epoch.
pub(crate) fn millis(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            batch_events: 100,
            batch_interval: Duration::from_secs(5),
            max_batch_events: 512,
            max_batch_bytes: 4 * 1024 * 1024,
        }
    }

    fn cursor(offset: u64) -> Cursor {
        Cursor { after: None, offset, fingerprint: Some(1) }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn due_after_100_lines_or_when_the_oldest_has_waited_5_seconds() {
        let mut batcher = Batcher::new(limits());
        for i in 0..99 {
            batcher.push("l", millis(at(0)), at(0), cursor(i));
        }
        assert!(!batcher.due(at(4)));
        batcher.push("l", millis(at(0)), at(0), cursor(99));
        assert!(batcher.due(at(0)));
        let mut batcher = Batcher::new(limits());
        batcher.push("one", millis(at(0)), at(0), cursor(1));
        assert!(!batcher.due(at(0) + Duration::from_millis(4_999)));
        assert!(batcher.due(at(5)));
    }

    #[test]
    fn a_backlog_goes_in_requests_of_at_most_max_batch_events_and_bytes_in_file_order() {
        let mut batcher = Batcher::new(Limits { max_batch_events: 3, max_batch_bytes: 10, ..limits() });
        for (i, line) in ["aaaa", "bbbb", "cc", "dddddddddddddd", "e"].into_iter().enumerate() {
            batcher.push(line, 0, at(0), cursor(i as u64));
        }
        let batches: Vec<Vec<String>> = std::iter::from_fn(|| {
            (!batcher.is_empty()).then(|| batcher.take_batch().lines.into_iter().map(|(line, _)| line).collect())
        })
        .collect();
        assert_eq!(batches, [vec!["aaaa", "bbbb", "cc"], vec!["dddddddddddddd"], vec!["e"]]);
    }

    #[test]
    fn a_batch_moves_the_cursor_past_its_last_line_and_the_reader_stops_when_full() {
        let mut batcher = Batcher::new(Limits { max_batch_events: 2, ..limits() });
        batcher.push("a", 0, at(0), cursor(1));
        assert!(!batcher.full());
        batcher.push("b", 0, at(0), cursor(2));
        assert!(batcher.full() && batcher.due(at(0)));
        assert_eq!(batcher.take_batch().cursor, Some(cursor(2)));
    }
}
