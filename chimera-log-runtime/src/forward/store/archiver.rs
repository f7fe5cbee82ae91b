//! The archiver thread: follows `executions.log` and inserts its records into the audit store.
//!
//! It reads from a cursor saved beside the logs (`.audit-store.cursor`) that moves only after the
//! database committed the rows before it; a crash between the commit and the save repeats at
//! most one batch, which the database recognises as duplicates (same `(stream, seq)`, same chain).
//! Backups the cursor has passed are archived; retention may delete them from then on
//! ([`ArchiveMark`](crate::dir::backup::ArchiveMark)). Everything here runs off the logging path: `emit!` never waits for it.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::{open, Database, Row, StoreError, Target, CURSOR_FILE};
use crate::clock::Clock;
use crate::dir::backup::MarkSlot;
use crate::dir::follow::{Cursor, Followed, Follower, Saved};
use crate::dir::layout::AUDIT_FILE;
use crate::error::Error;
use crate::report::{FailureReporter, Outage};
use crate::stats::AuditStoreCounters;
use crate::thread::{ForwarderThread, Lifecycle, Requests as ForwarderRequests};

/// Rows per transaction.
const BATCH: usize = 2_000;
/// How often an idle archiver looks for new records.
const POLL: Duration = Duration::from_millis(250);
/// Retries after a failure wait from this, doubling, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often rows past the retention are deleted (and once at start).
const EXPIRY_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// How a pass over the available records ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Everything available was stored (or the shutdown deadline came).
    Complete,
    /// Reading the files failed (reported); the next pass reads on from the cursor.
    Interrupted,
}

/// Where a batch's reading stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// A whole batch: more may follow.
    Full,
    /// The end of what the family holds now.
    End,
    /// An error reading the files (reported).
    Failed,
}

/// What the archiver is configured with.
#[derive(Debug, Clone)]
pub(crate) struct ArchiverConfig {
    pub(crate) target: Target,
    pub(crate) stream: String,
    pub(crate) retention: Duration,
}

/// Requests from the application's threads.
#[derive(Debug, Default)]
struct Requests {
    /// Flush tickets: store everything `executions.log` holds now.
    flush_asked: u64,
    flush_done: u64,
    /// Shut down by a given instant, after storing what can be stored; the thread's end.
    lifecycle: Lifecycle,
}

impl ForwarderRequests for Requests {
    fn flushes_asked(&self) -> u64 {
        self.flush_asked
    }
    fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }
    fn lifecycle_mut(&mut self) -> &mut Lifecycle {
        &mut self.lifecycle
    }
}

type Control = crate::thread::Control<Requests>;

/// The running archiver.
#[derive(Debug)]
pub(crate) struct Archiver {
    thread: ForwarderThread<Requests>,
    pub(crate) counters: Arc<AuditStoreCounters>,
}

impl Archiver {
    /// Starts following `dir/executions.log` from the saved cursor (from the start of the
    /// family when there is none: every retained record is archived).
    pub(crate) fn start(
        config: ArchiverConfig,
        dir: &Path,
        clock: Arc<dyn Clock>,
        mark: MarkSlot,
        dir_lock: crate::thread::DirLock,
    ) -> Result<Archiver, Error> {
        let cursor_path = dir.join(CURSOR_FILE);
        crate::dir::follow::remove_stale_temporaries(&cursor_path);
        let counters = Arc::new(AuditStoreCounters::default());
        let (cursor, check_resume) = load_cursor(&cursor_path, dir, clock.now(), &counters);
        let control = Arc::new(Control::default());
        let worker = Worker {
            dir: dir.to_path_buf(),
            follower: Follower::new(dir, AUDIT_FILE, cursor),
            acked: cursor,
            cursor_path,
            config,
            clock,
            mark,
            counters: Arc::clone(&counters),
            control: Arc::clone(&control),
            database: None,
            outage: Outage::default(),
            next_expiry: None,
            failures: FailureReporter::default(),
            line: Vec::new(),
            followed: Followed::default(),
            unsaved_skipped: Followed::default(),
            check_resume,
            high_water: 0,
            cursor_damage_reported: None,
        };
        let thread = ForwarderThread::start("chimera-log-audit-store", move || worker.run(), control, Some(dir_lock))?;
        Ok(Archiver { thread, counters })
    }

    /// Stores everything `executions.log` holds now; `false` if not all of it was committed by
    /// `deadline` (a database down: the records wait in the file).
    pub(crate) fn flush(&self, deadline: Instant) -> bool {
        self.thread.control.ticket(
            deadline,
            |requests| {
                requests.flush_asked += 1;
                requests.flush_asked
            },
            |requests, asked| requests.flush_done >= *asked,
        )
    }

    /// Stores what it can by `deadline`, then stops.
    pub(crate) fn shutdown(&self, deadline: Instant) -> bool {
        self.thread.shutdown(deadline)
    }
}

/// The saved cursor, and whether it still has to be checked against the database (see
/// `Worker::check_resume`); the start of the family when there is none or it cannot be trusted
/// (then records are inserted again, and recognised as present).
fn load_cursor(path: &Path, dir: &Path, now: SystemTime, counters: &AuditStoreCounters) -> (Cursor, bool) {
    match Saved::load(path, dir, AUDIT_FILE, now) {
        Saved::None => (Cursor::default(), false),
        Saved::Trusted(cursor) => (cursor, cursor != Cursor::default()),
        Saved::Damaged(why) => {
            counters.cursor_damaged.fetch_add(1, Relaxed);
            diag!(
                "chimera-log: audit store: the cursor cannot be trusted ({why}); archiving starts again from the \
                 oldest retained audit record (records already stored are recognised and skipped; counted in \
                 stats().audit_store.cursor_damaged)"
            );
            (Cursor::default(), false)
        }
    }
}

/// The archiver thread's state.
struct Worker {
    dir: PathBuf,
    follower: Follower,
    /// The cursor after the last committed row.
    acked: Cursor,
    cursor_path: PathBuf,
    config: ArchiverConfig,
    clock: Arc<dyn Clock>,
    mark: MarkSlot,
    counters: Arc<AuditStoreCounters>,
    control: Arc<Control>,
    database: Option<Box<dyn Database>>,
    /// While the database fails: one stderr line when it starts, one when it ends.
    outage: Outage,
    next_expiry: Option<SystemTime>,
    failures: FailureReporter,
    line: Vec<u8>,
    followed: Followed,
    /// Files found gone or damaged before lines whose rows are committed, while no cursor past
    /// them is saved yet: counted once one is (a restart before that finds them again).
    unsaved_skipped: Followed,
    /// The cursor was loaded from its file and no record after it was read yet: the first one
    /// must follow what the database holds (`seq` at most `high_water + 1`), or the cursor was
    /// moved past records never stored.
    check_resume: bool,
    /// The highest seq of the stream in the database when it was opened.
    high_water: u64,
    /// The last cursor damage reported (a rewind finds it again).
    cursor_damage_reported: Option<String>,
}

impl Worker {
    fn run(mut self) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let (flush, stop) = {
                let requests = self.control.lock();
                (requests.flush_asked, requests.stop())
            };
            let pass = self.archive_available();
            // A shutdown asked during the pass counts from now, not from the next pass.
            let stop = self.control.lock().stop().or(stop);
            match pass {
                Ok(Pass::Interrupted) => {
                    self.rewind();
                    if stop.is_some_and(|at| Instant::now() >= at) {
                        return;
                    }
                    self.back_off(POLL, stop);
                }
                Ok(Pass::Complete) => {
                    backoff = FIRST_BACKOFF;
                    self.report_up();
                    let mut requests = self.control.lock();
                    requests.flush_done = requests.flush_done.max(flush);
                    self.control.changed.notify_all();
                    if requests.stop().is_some() {
                        return;
                    }
                    if requests.flush_asked == flush {
                        let _ = self.control.changed.wait_timeout(requests, POLL);
                    }
                }
                Err(error) => {
                    self.counters.errors.fetch_add(1, Relaxed);
                    self.database = None;
                    // The rows of the failed batch were read past: read them again.
                    self.rewind();
                    self.report_down(&error);
                    if stop.is_some_and(|at| Instant::now() >= at) {
                        return;
                    }
                    self.back_off(backoff, stop);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Inserts every whole record the family holds now, batch by batch, moving the cursor after
    /// each commit; at a shutdown deadline, stops between batches.
    fn archive_available(&mut self) -> Result<Pass, StoreError> {
        if self.database.is_none() {
            let mut database = open(&self.config.target)?;
            // What earlier runs stored counts as stored, for the lag.
            let high_water = database.high_water(&self.config.stream)?;
            self.high_water = high_water;
            self.counters.stored_seq.fetch_max(high_water, Relaxed);
            if high_water == 0 && self.acked != Cursor::default() {
                // The cursor beside the logs was saved for another database (the store's URL
                // changed, or the database was deleted or replaced): this one holds nothing of
                // the stream, so read the retained family again from its start.
                diag!(
                    "chimera-log: audit store {:?} holds no record of stream {} although {} says records were \
                     stored: archiving starts again from the oldest retained audit record",
                    self.config.target,
                    self.config.stream,
                    self.cursor_path.display()
                );
                self.acked = Cursor::default();
                // Nothing is archived into this database: retention keeps every backup again
                // until it is (it deleted them while this read them again), also after a restart
                // (the mark is read from the saved cursor).
                self.mark.reset();
                // Reading again from the start finds them again.
                self.unsaved_skipped = Followed::default();
                if let Err(error) = self.acked.save(&self.cursor_path) {
                    self.failures
                        .report(&format_args!("saving the audit store cursor {}", self.cursor_path.display()), &error);
                }
                self.rewind();
            }
            self.database = Some(database);
        }
        self.expire_if_due()?;
        let mut rows = Vec::with_capacity(BATCH);
        loop {
            let (end, reading, mut skipped) = self.read_batch(&mut rows);
            if self.check_resume && !rows.is_empty() {
                self.check_resume = false;
                // A gone or damaged file before the first record explains a jump in seq.
                if skipped.skipped == 0 && rows[0].seq > self.high_water.saturating_add(1) {
                    self.distrust_cursor(rows[0].seq);
                    rows.clear();
                    continue;
                }
            }
            if !rows.is_empty() {
                let database = self.database.as_mut().expect("opened above");
                let inserted = database.insert(&self.config.stream, &rows)?;
                self.counters.rows_stored.fetch_add(inserted.stored, Relaxed);
                self.counters.stored_seq.fetch_max(rows.last().map_or(0, |row| row.seq), Relaxed);
                if !inserted.conflicts.is_empty() {
                    self.report_conflicts(&inserted.conflicts);
                }
                rows.clear();
            }
            // Past a failed insert (returned above), a rewind finds these files again.
            self.unsaved_skipped.skipped += skipped.skipped;
            self.unsaved_skipped.damaged.append(&mut skipped.damaged);
            if let Some(end) = end {
                if self.acknowledge(end) {
                    self.report_skipped();
                }
            }
            match reading {
                Reading::End => return Ok(Pass::Complete),
                // Not the end of the records: no flush is answered by this pass.
                Reading::Failed => return Ok(Pass::Interrupted),
                // Read at each batch: a shutdown may be asked during a long catch-up.
                Reading::Full if self.control.lock().stop().is_some_and(|at| Instant::now() >= at) => {
                    return Ok(Pass::Complete)
                }
                Reading::Full => {}
            }
        }
    }

    /// Reads up to a batch of rows; returns the cursor after the last line read (if any), where
    /// reading stopped, and how many files were found gone before that line (a file found gone
    /// after it stays in `followed`: the saved cursor, before it, would find it again).
    fn read_batch(&mut self, rows: &mut Vec<Row>) -> (Option<Cursor>, Reading, Followed) {
        let mut end = None;
        let mut skipped = Followed::default();
        let reading = loop {
            if rows.len() >= BATCH {
                break Reading::Full;
            }
            match self.follower.next_line(&mut self.line, &mut self.followed, self.clock.now()) {
                Ok(Some(cursor)) => {
                    end = Some(cursor);
                    self.report_cursor_damage();
                    skipped.skipped += std::mem::take(&mut self.followed.skipped);
                    skipped.damaged.append(&mut self.followed.damaged);
                    // Anchors and torn lines are not records (verify accounts for them).
                    if let Some(row) = Row::from_line(&self.line) {
                        rows.push(row);
                    }
                }
                Ok(None) => break Reading::End,
                Err(error) => {
                    self.failures.report(&format_args!("reading {AUDIT_FILE} for the audit store"), &error);
                    break Reading::Failed;
                }
            }
        };
        (end, reading, skipped)
    }

    /// The first record after the saved cursor is `seq`, past what the database holds: the
    /// cursor was moved forward (by damage or by hand) over records never stored. Archiving
    /// goes back to the oldest retained record, and retention keeps every backup until it is
    /// stored again.
    fn distrust_cursor(&mut self, seq: u64) {
        self.counters.cursor_damaged.fetch_add(1, Relaxed);
        diag!(
            "chimera-log: audit store: the cursor {} is ahead of the database (the first record after it is seq \
             {seq}; the database holds seq {} at most); archiving starts again from the oldest retained audit \
             record (counted in stats().audit_store.cursor_damaged)",
            self.cursor_path.display(),
            self.high_water
        );
        self.acked = Cursor::default();
        self.mark.reset();
        self.unsaved_skipped = Followed::default();
        if let Err(error) = self.acked.save(&self.cursor_path) {
            self.failures.report(&format_args!("saving the audit store cursor {}", self.cursor_path.display()), &error);
        }
        self.rewind();
    }

    /// Goes back to the cursor after the last committed row: what was read since is read again.
    fn rewind(&mut self) {
        self.follower = Follower::new(&self.dir, AUDIT_FILE, self.acked);
        self.followed = Followed::default();
    }

    /// Saves the cursor after committed rows, and lets retention delete the backups before it;
    /// `false` when the save failed.
    fn acknowledge(&mut self, cursor: Cursor) -> bool {
        self.acked = cursor;
        if let Err(error) = cursor.save(&self.cursor_path) {
            self.failures.report(&format_args!("saving the audit store cursor {}", self.cursor_path.display()), &error);
            return false;
        }
        if let Some(after) = cursor.after {
            self.mark.advance(after);
        }
        true
    }

    /// Counts and reports a cursor found past the end of its file (the follower reads that file
    /// again from its start).
    fn report_cursor_damage(&mut self) {
        for damage in std::mem::take(&mut self.followed.cursor_damage) {
            // A rewind after a failed insert finds it again.
            if self.cursor_damage_reported.as_ref() == Some(&damage) {
                continue;
            }
            self.counters.cursor_damaged.fetch_add(1, Relaxed);
            diag!(
                "chimera-log: audit store: {damage}: the cursor was moved (by damage or by hand); that file is \
                 archived again from its start (records already stored are recognised; counted in \
                 stats().audit_store.cursor_damaged)"
            );
            self.cursor_damage_reported = Some(damage);
        }
    }

    /// Counts and reports the files passed over, once a saved cursor is past them (until then a
    /// restart would find them again). Retention keeps unarchived backups, so these are files
    /// deleted by hand, or damaged.
    fn report_skipped(&mut self) {
        let skipped = std::mem::take(&mut self.unsaved_skipped);
        self.counters.files_skipped.fetch_add(skipped.skipped, Relaxed);
        for damaged in &skipped.damaged {
            diag!(
                "chimera-log: audit store: a backup of {AUDIT_FILE} is damaged ({damaged}); its records after the \
                 damage cannot be read and are not stored (counted in stats().audit_store.files_skipped)"
            );
        }
    }

    /// Deletes rows older than the retention, at start and then daily, by the injected clock.
    fn expire_if_due(&mut self) -> Result<(), StoreError> {
        let now = self.clock.now();
        if self.next_expiry.is_some_and(|next| now < next) {
            return Ok(());
        }
        let cutoff = now.checked_sub(self.config.retention).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut text = Vec::with_capacity(32);
        crate::json::write_timestamp(&mut text, cutoff);
        let cutoff = String::from_utf8(text).expect("a timestamp is ASCII");
        let database = self.database.as_mut().expect("opened before");
        let expired = database.expire(&cutoff)?;
        self.counters.rows_expired.fetch_add(expired, Relaxed);
        self.next_expiry = Some(now + EXPIRY_INTERVAL);
        Ok(())
    }

    fn report_conflicts(&self, seqs: &[u64]) {
        self.counters.conflicts.fetch_add(seqs.len() as u64, Relaxed);
        let shown: Vec<String> = seqs.iter().take(5).map(u64::to_string).collect();
        diag!(
            "chimera-log: audit store: {} record(s) of stream {} are in the database with a different chain \
             (seq {}{}); the stored rows are kept, not overwritten: compare with `chimera-log verify`",
            seqs.len(),
            self.config.stream,
            shown.join(", "),
            if seqs.len() > shown.len() { ", ..." } else { "" }
        );
    }

    fn report_down(&mut self, error: &StoreError) {
        let target = &self.config.target;
        if self.outage.down(self.clock.now(), || {
            format!(
                "chimera-log: audit store {target:?} is unavailable ({error}); audit records wait in {AUDIT_FILE} and \
                 its backups (kept until stored), retrying with backoff"
            )
        }) {
            self.counters.down.store(true, Relaxed);
        }
    }

    fn report_up(&mut self) {
        let target = &self.config.target;
        if self.outage.up(self.clock.now(), |outage| {
            format!(
                "chimera-log: audit store {target:?} is available again after {:.1} s; archiving caught up",
                outage.as_secs_f64()
            )
        }) {
            self.counters.down.store(false, Relaxed);
        }
    }

    /// Waits `wait` (through the clock) before a retry; a flush or shutdown cuts it short.
    fn back_off(&self, wait: Duration, stop: Option<Instant>) {
        self.control.back_off(&*self.clock, wait, stop);
    }
}
