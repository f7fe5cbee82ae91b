//! Batching for CloudWatch Logs, without any I/O: what is waiting, when to send, and what one
//! `PutLogEvents` request may carry under the service's limits.
//!
//! Limits of one request: at most 10,000 events and 1,048,576 bytes counting 26 bytes per event,
//! events in chronological order, spanning at most 24 hours. Events older than the accepted
//! window (14 days, or the retention if shorter) or more than 2 hours ahead are set aside and
//! counted rather than sent to be rejected.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::cloudwatch::{MAX_BATCH_BYTES, MAX_BATCH_EVENTS};
use crate::dir::follow::Cursor;

/// Bytes the service counts for each event on top of its message.
pub(crate) const EVENT_OVERHEAD: usize = 26;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;
const AHEAD_LIMIT_MS: i64 = 2 * 60 * 60 * 1000;

/// One event waiting to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) timestamp_ms: i64,
    pub(crate) message: String,
}

impl Event {
    fn cost(&self) -> usize {
        self.message.len() + EVENT_OVERHEAD
    }
}

/// When to send.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) batch_events: usize,
    pub(crate) batch_interval: Duration,
    pub(crate) max_event_bytes: usize,
    pub(crate) retention_days: u32,
}

/// What became of a pushed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Whole,
    /// Longer than `max_event_bytes`: cut on a UTF-8 boundary, with a marker.
    Truncated,
}

/// A request's worth of events, and what was set aside while choosing them.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// In chronological order (ties in file order).
    pub(crate) events: Vec<Event>,
    pub(crate) too_old: u64,
    pub(crate) too_new: u64,
    /// Events of the run that were cut to the per-event limit.
    pub(crate) truncated: u64,
    /// Where the file family is read up to once this batch is acknowledged.
    pub(crate) cursor: Option<Cursor>,
}

/// The events read from the file and not yet sent, in file order. Never more than one full
/// request's worth is held: the reader stops while [`Batcher::full`].
#[derive(Debug)]
pub(crate) struct Batcher {
    limits: Limits,
    /// Each with the cursor after its line, and whether it was cut to the per-event limit.
    waiting: VecDeque<(Event, Cursor, Pushed)>,
    bytes: usize,
    /// The earliest timestamp waiting: the interval is measured from the event's own time (read
    /// from the same clock as `now`), not from when the sink happened to read it.
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
        self.waiting.len() >= MAX_BATCH_EVENTS || self.bytes >= MAX_BATCH_BYTES
    }

    /// Takes one line (its trailing newline removed) stamped `timestamp_ms`; `cursor` is where
    /// the file is read up to once it is sent.
    pub(crate) fn push(&mut self, timestamp_ms: i64, line: &str, cursor: Cursor) -> Pushed {
        let (message, outcome) = truncate(line, self.limits.max_event_bytes);
        self.bytes += message.len() + EVENT_OVERHEAD;
        self.oldest_ms = Some(self.oldest_ms.map_or(timestamp_ms, |oldest| oldest.min(timestamp_ms)));
        self.waiting.push_back((Event { timestamp_ms, message }, cursor, outcome));
        outcome
    }

    /// Whether a request should go now: `batch_events` are waiting, the oldest is
    /// `batch_interval` old, or a full request is waiting.
    pub(crate) fn due(&self, now: SystemTime) -> bool {
        let interval_ms = i64::try_from(self.limits.batch_interval.as_millis()).unwrap_or(i64::MAX);
        self.waiting.len() >= self.limits.batch_events
            || self.full()
            || self.oldest_ms.is_some_and(|oldest| millis(now).saturating_sub(oldest) >= interval_ms)
    }

    /// The next request: the longest run of waiting events, in file order, that the service
    /// takes in one request (10,000 events, 1,048,576 bytes, a 24 h span), sorted by time (ties
    /// in file order). `batch_events` is when to send, not a cap. Events outside the accepted
    /// window are taken out of the run and counted instead.
    pub(crate) fn take_batch(&mut self, now: SystemTime) -> Batch {
        let now_ms = millis(now);
        let window_days = i64::from(self.limits.retention_days.min(14));
        let oldest_accepted = now_ms - window_days * DAY_MS;
        let newest_accepted = now_ms + AHEAD_LIMIT_MS;
        let mut batch = Batch::default();
        let (mut bytes, mut earliest, mut latest) = (0, i64::MAX, i64::MIN);
        while let Some((event, cursor, _)) = self.waiting.front() {
            let outside = event.timestamp_ms < oldest_accepted || event.timestamp_ms > newest_accepted;
            let fits = outside
                || (batch.events.len() < MAX_BATCH_EVENTS
                    && bytes + event.cost() <= MAX_BATCH_BYTES
                    && latest.max(event.timestamp_ms) - earliest.min(event.timestamp_ms) < DAY_MS);
            if !fits {
                break;
            }
            let cursor = *cursor;
            let (event, _, pushed) = self.waiting.pop_front().expect("front exists");
            batch.truncated += u64::from(pushed == Pushed::Truncated);
            self.bytes -= event.cost();
            batch.cursor = Some(cursor);
            if event.timestamp_ms < oldest_accepted {
                batch.too_old += 1;
            } else if event.timestamp_ms > newest_accepted {
                batch.too_new += 1;
            } else {
                bytes += event.cost();
                earliest = earliest.min(event.timestamp_ms);
                latest = latest.max(event.timestamp_ms);
                batch.events.push(event);
            }
        }
        // A stable sort: ties keep file order.
        batch.events.sort_by_key(|event| event.timestamp_ms);
        self.oldest_ms = self.waiting.iter().map(|(event, _, _)| event.timestamp_ms).min();
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

/// `line` cut so that, with the service's 26 bytes, it fits `max_event_bytes`: on a UTF-8
/// boundary, followed by a marker saying how many bytes were cut.
fn truncate(line: &str, max_event_bytes: usize) -> (String, Pushed) {
    let limit = max_event_bytes - EVENT_OVERHEAD;
    if line.len() <= limit {
        return (line.to_owned(), Pushed::Whole);
    }
    // The marker's length depends on the number it carries; the original length bounds it.
    let marker_len = format!(" [truncated {} bytes]", line.len()).len();
    let mut cut = limit.saturating_sub(marker_len);
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut message = String::with_capacity(limit);
    message.push_str(&line[..cut]);
    message.push_str(&format!(" [truncated {} bytes]", line.len() - cut));
    (message, Pushed::Truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            batch_events: 100,
            batch_interval: Duration::from_secs(5),
            max_event_bytes: 1024 * 1024,
            retention_days: 30,
        }
    }

    fn cursor(offset: u64) -> Cursor {
        Cursor { after: None, offset, fingerprint: Some(1) }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn due_after_100_events_or_when_the_oldest_has_waited_5_seconds() {
        let mut batcher = Batcher::new(limits());
        for i in 0..99 {
            batcher.push(millis(at(0)), &format!("e{i}"), cursor(i));
        }
        assert!(!batcher.due(at(4)));
        batcher.push(millis(at(0)), "e99", cursor(99));
        assert!(batcher.due(at(0)), "100 events");

        let mut batcher = Batcher::new(limits());
        batcher.push(millis(at(0)), "one", cursor(1));
        assert!(!batcher.due(at(0) + Duration::from_millis(4_999)));
        assert!(batcher.due(at(5)), "5 seconds");
    }

    #[test]
    fn a_batch_is_chronological_with_ties_in_arrival_order() {
        let mut batcher = Batcher::new(limits());
        for (i, (ts, text)) in [(3, "c"), (1, "a1"), (2, "b"), (1, "a2")].into_iter().enumerate() {
            batcher.push(millis(at(ts)), text, cursor(i as u64));
        }
        let batch = batcher.take_batch(at(10));
        assert_eq!(batch.cursor, Some(cursor(3)), "acknowledged, the batch moves the cursor past its last line");
        let order: Vec<&str> = batch.events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(order, ["a1", "a2", "b", "c"]);
        assert!(batcher.is_empty());
    }

    #[test]
    fn a_batch_stays_within_the_byte_and_count_limits() {
        let mut batcher = Batcher::new(limits());
        let big = "x".repeat(100_000);
        for i in 0..25 {
            batcher.push(millis(at(0)), &big, cursor(i));
        }
        let mut sizes = Vec::new();
        while !batcher.is_empty() {
            let batch = batcher.take_batch(at(1));
            let bytes: usize = batch.events.iter().map(Event::cost).sum();
            assert!(bytes <= MAX_BATCH_BYTES, "{bytes}");
            sizes.push(batch.events.len());
        }
        assert_eq!(sizes, [10, 10, 5]);

        // 100 events trigger a send, but a backlog goes in requests as large as the service takes.
        let mut batcher = Batcher::new(limits());
        for i in 0..25_000 {
            batcher.push(millis(at(0)), &format!("{i}"), cursor(i));
        }
        let counts: Vec<usize> =
            std::iter::from_fn(|| (!batcher.is_empty()).then(|| batcher.take_batch(at(1)).events.len())).collect();
        assert_eq!(counts, [10_000, 10_000, 5_000]);
    }

    #[test]
    fn a_batch_never_spans_more_than_24_hours() {
        let mut batcher = Batcher::new(limits());
        let now = at(3 * 86_400);
        for hours in [0u64, 10, 23, 24, 30, 47, 48] {
            batcher.push(millis(at(hours * 3_600)), &format!("h{hours}"), cursor(hours));
        }
        let first = batcher.take_batch(now);
        let second = batcher.take_batch(now);
        let third = batcher.take_batch(now);
        let names = |b: &Batch| b.events.iter().map(|e| e.message.clone()).collect::<Vec<_>>();
        assert_eq!(names(&first), ["h0", "h10", "h23"]);
        assert_eq!(names(&second), ["h24", "h30", "h47"]);
        assert_eq!(names(&third), ["h48"]);
    }

    #[test]
    fn events_outside_the_accepted_window_are_set_aside_and_counted() {
        let mut batcher = Batcher::new(limits());
        let now = at(100 * 86_400);
        batcher.push(millis(now) - 15 * DAY_MS, "too old", cursor(1));
        batcher.push(millis(now) - 13 * DAY_MS, "old but fine", cursor(2));
        batcher.push(millis(now) + 3 * 60 * 60 * 1000, "too new", cursor(3));
        batcher.push(millis(now), "now", cursor(4));
        let first = batcher.take_batch(now);
        assert_eq!((first.too_old, first.too_new), (1, 1));
        // The two accepted events are 13 days apart: more than one request may span.
        let second = batcher.take_batch(now);
        assert_eq!((first.events.len(), second.events.len()), (1, 1));
        assert!(batcher.is_empty());
    }

    #[test]
    fn an_oversize_multibyte_event_is_cut_on_a_char_boundary_with_a_marker() {
        let mut limits = limits();
        limits.max_event_bytes = 200;
        let mut batcher = Batcher::new(limits);
        let line = "é".repeat(300); // 600 bytes, two per char
        assert_eq!(batcher.push(0, &line, cursor(1)), Pushed::Truncated);
        let batch = batcher.take_batch(UNIX_EPOCH);
        let message = &batch.events[0].message;
        assert!(message.len() + EVENT_OVERHEAD <= 200, "{}", message.len());
        let (kept, marker) = message.split_once(" [truncated ").unwrap();
        assert!(kept.chars().all(|c| c == 'é'));
        assert_eq!(marker, format!("{} bytes]", 600 - kept.len()));
    }

    #[test]
    fn a_full_request_is_due_at_once_and_the_reader_holds_no_more() {
        let mut batcher = Batcher::new(Limits { batch_events: MAX_BATCH_EVENTS, ..limits() });
        let line = "y".repeat(1_000);
        let mut pushed = 0;
        while !batcher.full() {
            batcher.push(millis(at(0)), &line, cursor(pushed));
            pushed += 1;
        }
        assert!(batcher.due(at(0)), "a full request goes whatever the triggers say");
        assert_eq!(pushed, MAX_BATCH_BYTES.div_ceil(1_000 + EVENT_OVERHEAD) as u64);
    }
}
