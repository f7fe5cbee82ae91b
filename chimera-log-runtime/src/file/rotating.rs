//! The file sink: one log file in the log directory, with size rotation, crash-safe reopening and
//! retry after write faults.
//!
//! The file is opened append-only and created `0640`. Lines collect in `pending` and reach the
//! file when 64 KiB have collected, on `flush`, or at once for a write-through (audit) file.
//! Before a write would take the file past `max_bytes` the file is renamed to a stamped backup
//! (`backup.rs` names it; the maintenance thread compresses it and applies retention) and a new
//! file is started. Before each write the sink checks that its file is still the one at its
//! path; a file deleted or moved by someone else, or a removed directory, is recreated. A failed
//! write keeps the unwritten bytes and retries later; only past a cap are lines dropped, counted.
//!
//! The audit file is anchored (`audit.rs`): every file it starts begins with an anchor line
//! carrying the head of the last record written before it, so the sink keeps the head of each
//! pending record and knows which one the file ended with.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::maintenance::Job;
use crate::audit::{ChainHead, ChainKey};
use crate::clock::Clock;
use crate::dir::backup::{self, ArchiveMark, Stamp};
use crate::dir::safe_fs::{self, Identity};
use crate::sink::Sink;
use crate::stats::SinkCounters;
use crate::testing::FaultInjector;

/// Lines are written to the file once this much has collected (buffered files).
const WRITE_CHUNK: usize = 64 * 1024;
/// Bytes kept for retry while the file cannot be written; lines beyond are dropped and counted.
/// While the file can be written, no more than [`WRITE_CHUNK`] (and one line) ever waits, so a
/// healthy disk never meets this cap, whatever the queue's capacity.
const PENDING_CAP: usize = 16 * 1024 * 1024;
/// After a failure, writes are retried no sooner than this (except on flush).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How one file rotates.
#[derive(Debug, Clone)]
pub(crate) struct FilePolicy {
    pub(crate) max_bytes: u64,
    pub(crate) backups: usize,
    pub(crate) compress: bool,
    pub(crate) write_through: bool,
    /// `fdatasync` a file before rotating it away (the audit file), so a line synced by group
    /// commit on the old file descriptor stays synced in the backup.
    pub(crate) sync_on_rotate: bool,
    /// How far the audit store has archived this file's backups (the audit file, with a store):
    /// retention never removes a backup past it.
    pub(crate) archived: Option<Arc<ArchiveMark>>,
}

/// What an anchored (audit) file needs to begin each file with its anchor line.
#[derive(Debug)]
struct Anchoring {
    key: ChainKey,
    /// The head of the last record wholly written to a file.
    written: ChainHead,
    /// One entry per line in `pending`, in order: the head of a record, `None` for an anchor.
    heads: VecDeque<Option<ChainHead>>,
    /// An anchor is in `pending`, not yet wholly written.
    queued: bool,
}

/// The open current file and its identity, to notice when the path names another file.
#[derive(Debug)]
struct Current {
    /// Shared so the audit writer can `fdatasync` it without holding the sink's lock.
    file: Arc<File>,
    identity: Identity,
}

#[derive(Debug)]
pub(crate) struct FileSink {
    dir: PathBuf,
    name: String,
    path: PathBuf,
    policy: FilePolicy,
    current: Option<Current>,
    /// Bytes in the current file on disk.
    size: u64,
    /// Lines accepted and not yet in the file, back to back. All are whole lines, except that
    /// when `torn` the first is the rest of a line whose beginning a failed write left at the
    /// end of the file: that rest must go to the same file before anything else happens to it.
    pending: Vec<u8>,
    torn: bool,
    /// The current file holds a line besides its anchor (rotation before it would start another
    /// file with the same problem).
    has_record: bool,
    anchoring: Option<Anchoring>,
    /// Lines dropped here (the retry buffer was full) and not yet taken by `take_dropped`.
    unreported_drops: u64,
    last_stamp: Option<Stamp>,
    retry_at: Option<SystemTime>,
    clock: Arc<dyn Clock>,
    jobs: Option<Sender<Job>>,
    counters: Arc<SinkCounters>,
    faults: Option<Arc<FaultInjector>>,
}

impl FileSink {
    /// Opens `dir/name` (repairing a torn last line) and queues the repair and retention of
    /// its backups. Anything but a regular file at the path is refused.
    pub(crate) fn open(
        dir: &Path,
        name: &str,
        policy: FilePolicy,
        clock: Arc<dyn Clock>,
        jobs: Option<Sender<Job>>,
        counters: Arc<SinkCounters>,
        faults: Option<Arc<FaultInjector>>,
    ) -> io::Result<Self> {
        let (backups, ignored) = backup::list_backups_and_ignored(dir, name, clock.now())?;
        if !ignored.is_empty() {
            diag!(
                "chimera-log: ignoring {} file(s) in {} named like {name} backups that this logger \
                 cannot have written (stamped more than a day ahead of the clock, or not regular \
                 files); they are never read, compressed or removed: {}",
                ignored.len(),
                dir.display(),
                ignored.join(", ")
            );
        }
        let last_stamp = backups.last().map(|(stamp, _)| *stamp);
        let mut sink = FileSink {
            dir: dir.to_path_buf(),
            name: name.to_owned(),
            path: dir.join(name),
            policy,
            current: None,
            size: 0,
            pending: Vec::with_capacity(WRITE_CHUNK),
            torn: false,
            has_record: false,
            anchoring: None,
            unreported_drops: 0,
            last_stamp,
            retry_at: None,
            clock,
            jobs,
            counters,
            faults,
        };
        sink.open_current()?;
        for work in backup::scan_for_repair(dir, name, sink.policy.compress, sink.clock.now())? {
            sink.queue(Job::Repair { name: name.to_owned(), work });
        }
        sink.queue(Job::Retain {
            name: name.to_owned(),
            keep: sink.policy.backups,
            now: sink.clock.now(),
            archived: sink.policy.archived.clone(),
        });
        Ok(sink)
    }

    /// Makes this an anchored audit file whose chain stands at `head` (recovered at start): every
    /// file it starts from now on begins with an anchor line. Lines go in by
    /// [`take_record`](Self::take_record).
    pub(crate) fn anchor_with(&mut self, key: ChainKey, head: ChainHead) {
        self.anchoring = Some(Anchoring { key, written: head, heads: VecDeque::new(), queued: false });
    }

    /// Writes a sealed audit record whose chain head is `head` (as `write_line`).
    /// Takes a record into `pending` (then [`write_taken`](Self::write_taken)), or drops and
    /// counts it (the retry buffer is full); `false` when dropped.
    pub(crate) fn take_record(&mut self, line: &[u8], head: ChainHead) -> bool {
        let taken = self.accept(line);
        if let (true, Some(anchoring)) = (taken, self.anchoring.as_mut()) {
            anchoring.heads.push_back(Some(head));
        }
        taken
    }

    /// Writes what is pending after [`take_record`](Self::take_record), at once when the sink
    /// writes through.
    pub(crate) fn write_taken(&mut self) -> io::Result<()> {
        if self.policy.write_through || self.pending.len() >= WRITE_CHUNK {
            return self.drain(false);
        }
        Ok(())
    }

    /// Puts the anchor line in front of `pending` when the current file is empty.
    fn queue_anchor(&mut self) {
        let now = self.clock.now();
        let Some(anchoring) = self.anchoring.as_mut() else { return };
        if anchoring.queued || self.size != 0 {
            return;
        }
        let mut line = Vec::with_capacity(256);
        crate::audit::anchor_line(now, &anchoring.written, &anchoring.key, &mut line);
        // Bytes the file holds, though not a record: `lines` counts records only.
        self.counters.bytes.fetch_add(line.len() as u64, Relaxed);
        self.pending.splice(0..0, line);
        anchoring.heads.push_front(None);
        anchoring.queued = true;
    }

    /// Follows the first `lines` pending lines out (written whole, or dropped).
    fn lines_left_pending(&mut self, lines: usize, written: bool) {
        let Some(anchoring) = self.anchoring.as_mut() else { return };
        for _ in 0..lines {
            match anchoring.heads.pop_front() {
                Some(Some(head)) if written => {
                    anchoring.written = head;
                    self.has_record = true;
                }
                Some(None) => anchoring.queued = false,
                Some(Some(_)) | None => {}
            }
        }
    }

    fn queue(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            // The thread is gone only after shutdown, or after a bug panicked it (reported by the
            // panic); the next start redoes what is not done.
            let _ = jobs.send(job);
        }
    }

    /// Opens (creating) the file at the path. A file whose last line is torn (a crash mid-write)
    /// is kept as it is, and the next line starts on a fresh line.
    fn open_current(&mut self) -> io::Result<()> {
        self.current = None;
        let mut file = match safe_fs::open_append(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                safe_fs::create_dir(&self.dir)?;
                safe_fs::open_append(&self.path)?
            }
            other => other?,
        };
        let metadata = file.metadata()?;
        self.size = metadata.len();
        if self.size > 0 && !ends_with_newline(&file, self.size)? {
            diag!(
                "chimera-log: {} ends with an incomplete line (a crash mid-write); it is kept, and new lines start on the next line",
                self.path.display()
            );
            file.write_all(b"\n")?;
            self.size += 1;
        }
        self.has_record = self.size > 0;
        self.current = Some(Current { file: Arc::new(file), identity: Identity::of(&metadata) });
        Ok(())
    }

    /// The identity of whatever is at the path now (not following a link), if anything.
    fn identity_at_path(&self) -> io::Result<Option<Identity>> {
        match fs::symlink_metadata(&self.path) {
            Ok(metadata) => Ok(Some(Identity::of(&metadata))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Makes sure `current` is the file at the path, reopening if it was deleted or replaced.
    /// The rest of a torn line cannot follow its beginning into another file: it is dropped,
    /// counted, rather than start the new file with half a line.
    fn ensure_current(&mut self) -> io::Result<()> {
        let at_path = self.identity_at_path()?;
        if let (Some(current), Some(identity)) = (&self.current, at_path) {
            if current.identity == identity {
                return Ok(());
            }
        }
        if self.torn {
            let rest = line_end(&self.pending);
            self.pending.drain(..rest);
            // Counted when the line was taken; this part never reaches a file.
            self.counters.bytes.fetch_sub(rest as u64, Relaxed);
            self.torn = false;
            let anchor = self.anchoring.as_ref().is_some_and(|a| a.heads.front() == Some(&None));
            self.lines_left_pending(1, false);
            if !anchor {
                self.count_drop();
            }
        }
        self.open_current()
    }

    fn count_drop(&mut self) {
        self.unreported_drops += 1;
        self.counters.dropped.fetch_add(1, Relaxed);
    }

    /// Takes one line into `pending`, or drops and counts it when the retry buffer is full;
    /// `false` when dropped. Its bytes were counted when it was handed over: a dropped line's
    /// are taken back.
    fn accept(&mut self, line: &[u8]) -> bool {
        if !self.pending.is_empty() && self.pending.len() + line.len() > PENDING_CAP {
            self.count_drop();
            self.counters.bytes.fetch_sub(line.len() as u64, Relaxed);
            return false;
        }
        self.pending.extend_from_slice(line);
        true
    }

    /// Writes pending bytes to the file. Unless `force`, does nothing while a recent failure
    /// has not yet come due for a retry.
    fn drain(&mut self, force: bool) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if let (false, Some(retry_at)) = (force, self.retry_at) {
            let now = self.clock.now();
            // Not due yet, unless the clock was stepped back past the failure (then it is).
            if now < retry_at && retry_at.duration_since(now).unwrap_or_default() <= RETRY_AFTER {
                return Ok(());
            }
        }
        let result = self.write_out();
        match &result {
            Ok(()) => self.retry_at = None,
            Err(_) => self.retry_at = self.clock.now().checked_add(RETRY_AFTER),
        }
        result
    }

    /// Writes every pending line, rotating before a line that would take the file past
    /// `max_bytes`. A line is only ever written into one file: the rest of a torn line goes
    /// first, and rotation happens only between whole lines.
    fn write_out(&mut self) -> io::Result<()> {
        self.ensure_current()?;
        if self.torn {
            let rest = line_end(&self.pending);
            self.write_prefix(rest)?;
        }
        while !self.pending.is_empty() {
            self.queue_anchor();
            match self.fitting(&self.pending) {
                0 => self.rotate()?,
                take => self.write_prefix(take)?,
            }
        }
        Ok(())
    }

    /// How many bytes of `bytes` (lines, the first possibly the rest of a torn one), whole lines
    /// only, the current file takes before it must rotate; `0` means rotate first. A line larger
    /// than `max_bytes` gets a file of its own (after the anchor, in the audit file).
    fn fitting(&self, bytes: &[u8]) -> usize {
        let room = self.policy.max_bytes.saturating_sub(self.size);
        if bytes.len() as u64 <= room {
            return bytes.len();
        }
        // `room` < `bytes.len()`, so it fits in a usize.
        match bytes[..room as usize].iter().rposition(|&b| b == b'\n') {
            Some(at) => at + 1,
            None if !self.has_record => line_end(bytes),
            None => 0,
        }
    }

    /// Writes the first `len` pending bytes. Bytes written stay written even if a later part
    /// fails; `torn` records whether the file now ends inside a line.
    fn write_prefix(&mut self, len: usize) -> io::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let size_before = self.size;
        // A panic while writing (a bug) must neither take the pending lines with it (an audit
        // record sealed into them would leave a gap in the chain) nor have what already reached
        // the file written again: they are put back, less what was written (`size` follows
        // each write), and go out with the next write.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.write_bytes(&pending[..len])));
        self.pending = pending;
        let (written, result) = outcome.unwrap_or_else(|panic| {
            self.written_out((self.size - size_before) as usize);
            std::panic::resume_unwind(panic)
        });
        self.written_out(written);
        result
    }

    /// The first `written` pending bytes are in the file: they leave `pending`.
    fn written_out(&mut self, written: usize) {
        // Only an anchored file follows its records' heads; a general file's write-out does
        // not scan its bytes again.
        if written > 0 && self.anchoring.is_some() {
            let lines = self.pending[..written].iter().filter(|&&b| b == b'\n').count();
            self.lines_left_pending(lines, true);
        }
        self.pending.drain(..written);
    }

    /// Writes `bytes` to the current file; returns how many were written (all of them, unless
    /// the error says why not). Where the file now ends is recorded as each write succeeds: its
    /// size, and whether it ends inside a line (`torn`).
    fn write_bytes(&mut self, bytes: &[u8]) -> (usize, io::Result<()>) {
        let current = self.current.as_ref().expect("write_out opened the file");
        let mut written = 0;
        let result = loop {
            if written == bytes.len() {
                break Ok(());
            }
            let mut chunk = &bytes[written..];
            if let Some(faults) = &self.faults {
                match faults.allow(&self.name, chunk.len()) {
                    Ok(allowed) => chunk = &chunk[..allowed],
                    Err(error) => break Err(error),
                }
            }
            match (&*current.file).write(chunk) {
                Ok(0) => break Err(io::Error::new(io::ErrorKind::WriteZero, "the file accepted no bytes")),
                Ok(n) => {
                    written += n;
                    self.size += n as u64;
                    self.torn = bytes[written - 1] != b'\n';
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        if self.anchoring.is_none() {
            self.has_record = self.size > 0;
        }
        (written, result)
    }

    /// Writes a batch of whole lines straight from the writer's chunk, without first copying
    /// them into `pending` (one copy of every line fewer; the writer thread shares the CPU
    /// with the callers). Only for a file with nothing pending and no fault outstanding, where
    /// the result is the same as taking the lines into `pending` and draining it; what cannot
    /// be written goes into `pending` then, and waits for the retry like any other line.
    fn write_whole(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut rest = bytes;
        let mut result = self.ensure_current();
        while result.is_ok() && !rest.is_empty() {
            result = match self.fitting(rest) {
                0 => self.rotate(),
                take => {
                    let (written, outcome) = self.write_bytes(&rest[..take]);
                    rest = &rest[written..];
                    outcome
                }
            };
        }
        if result.is_err() {
            // As `accept` would have taken them: the first may be the rest of a torn line.
            let mut left = rest;
            while !left.is_empty() {
                let end = line_end(left);
                self.accept(&left[..end]);
                left = &left[end..];
            }
            self.retry_at = self.clock.now().checked_add(RETRY_AFTER);
        }
        result
    }

    /// Renames the current file (which ends with a whole line) to a new backup and starts a
    /// fresh one.
    fn rotate(&mut self) -> io::Result<()> {
        let current = self.current.as_ref().expect("write_out opened the file");
        if self.identity_at_path()? != Some(current.identity) {
            // Replaced since `ensure_current`: the next attempt reopens; rename nothing.
            return Err(io::Error::new(io::ErrorKind::Interrupted, "the log file was replaced during rotation"));
        }
        if self.policy.sync_on_rotate {
            current.file.sync_data()?;
        }
        let stamp = Stamp::next(self.clock.now(), self.last_stamp);
        let backup_path = backup::plain_path(&self.dir, &self.name, stamp);
        fs::rename(&self.path, &backup_path)?;
        // Read-only through the descriptor: whatever is at the backup's name now, only our own
        // file's mode changes.
        let read_only = safe_fs::set_mode(&current.file, safe_fs::BACKUP_MODE);
        self.last_stamp = Some(stamp);
        self.counters.rotations.fetch_add(1, Relaxed);
        self.open_current()?;
        if self.policy.compress {
            self.queue(Job::Compress { name: self.name.clone(), stamp });
        }
        self.queue(Job::Retain {
            name: self.name.clone(),
            keep: self.policy.backups,
            now: self.clock.now(),
            archived: self.policy.archived.clone(),
        });
        read_only
    }

    /// The head of the last record wholly written to the file (an audit sink's), for the
    /// checkpoints in the general log: a record still pending may never be written.
    pub(crate) fn written_head(&self) -> Option<ChainHead> {
        self.anchoring.as_ref().map(|anchoring| anchoring.written)
    }

    /// The open file, for a sync outside the sink's lock.
    /// The fault injector of a test, if one was given.
    pub(crate) fn faults(&self) -> Option<Arc<FaultInjector>> {
        self.faults.clone()
    }

    pub(crate) fn current_file(&self) -> Option<Arc<File>> {
        self.current.as_ref().map(|current| Arc::clone(&current.file))
    }
}

/// The length of the first line of `bytes`, its newline included (all of `bytes` if none).
fn line_end(bytes: &[u8]) -> usize {
    bytes.iter().position(|&b| b == b'\n').map_or(bytes.len(), |at| at + 1)
}

fn ends_with_newline(file: &File, size: u64) -> io::Result<bool> {
    let mut last = [0u8; 1];
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(&mut last, size - 1)?;
    }
    #[cfg(not(unix))]
    {
        let _ = (file, size);
        last[0] = b'\n';
    }
    Ok(last[0] == b'\n')
}

impl Sink for FileSink {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        debug_assert!(self.anchoring.is_none(), "an anchored file takes records by take_record");
        self.accept(line);
        if self.policy.write_through || self.pending.len() >= WRITE_CHUNK {
            return self.drain(false);
        }
        Ok(())
    }

    /// Lines go out in chunks of [`WRITE_CHUNK`] as they are taken, so however large the batch,
    /// a healthy file never holds more than a chunk back; the rest is written before returning.
    fn write_batch(&mut self, bytes: &[u8], lens: &[u32]) -> io::Result<()> {
        if self.anchoring.is_none() && self.pending.is_empty() && !self.torn && self.retry_at.is_none() {
            return self.write_whole(bytes);
        }
        let mut outcome = Ok(());
        let mut at = 0;
        for &len in lens {
            self.accept(&bytes[at..at + len as usize]);
            at += len as usize;
            if self.pending.len() >= WRITE_CHUNK {
                if let Err(error) = self.drain(false) {
                    outcome = outcome.and(Err(error));
                }
            }
        }
        outcome.and(self.drain(false))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain(true)
    }

    /// A retry after a fault, once it is due.
    fn tick(&mut self) -> io::Result<()> {
        self.drain(false)
    }

    fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.unreported_drops)
    }

    fn holds_lines(&self) -> bool {
        !self.pending.is_empty()
    }

    fn has_room(&self) -> bool {
        self.pending.len() + WRITE_CHUNK <= PENDING_CAP
    }
}

impl FileSink {
    /// Ends the sink: a last attempt to write what is pending (unless `attempt` is false), then
    /// lines that still cannot be written are counted as dropped and said once, and none is
    /// kept, so nothing of this sink reaches the file later. For a sink whose logger is giving
    /// up the directory (another logger may take it next), and when it is dropped.
    pub(crate) fn close(&mut self, attempt: bool) {
        let outcome = if attempt { self.drain(true) } else { Ok(()) };
        if self.pending.is_empty() {
            return;
        }
        // Lines, not counting an anchor (it is no record, and was never counted as a line). They
        // were counted as written when taken; they are dropped instead, and their bytes (all of
        // what is pending: the anchor's were counted when it was queued) never reach the file.
        let lines = match &self.anchoring {
            Some(anchoring) => anchoring.heads.iter().filter(|head| head.is_some()).count(),
            None => self.pending.iter().filter(|&&b| b == b'\n').count(),
        } as u64;
        self.counters.dropped.fetch_add(lines, Relaxed);
        self.counters.lines.fetch_sub(lines, Relaxed);
        self.counters.bytes.fetch_sub(self.pending.len() as u64, Relaxed);
        let why = outcome.err().map_or_else(|| "the sink was closed while unwinding".to_owned(), |e| e.to_string());
        diag!(
            "chimera-log: {lines} line(s) could not be written to {} before it was closed: {why}",
            self.path.display()
        );
        self.pending.clear();
        self.torn = false;
        if let Some(anchoring) = self.anchoring.as_mut() {
            anchoring.heads.clear();
            anchoring.queued = false;
        }
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        self.close(true);
    }
}
