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

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::backup::{self, Stamp};
use super::maintenance::Job;
use super::Sink;
use crate::clock::Clock;
use crate::stats::SinkCounters;
use crate::testing::FaultInjector;

/// Lines are written to the file once this much has collected (buffered files).
const WRITE_CHUNK: usize = 64 * 1024;
/// Bytes kept for retry while the file cannot be written; lines beyond are dropped and counted.
const PENDING_CAP: usize = 16 * 1024 * 1024;
/// After a failure, writes are retried no sooner than this (except on flush).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Opens `path` for appending (and reading, to check its last byte), creating it readable by
/// owner and group only.
pub(crate) fn open_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o640);
    }
    options.open(path)
}

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
}

/// The open current file and its identity, to notice when the path names another file.
#[derive(Debug)]
struct Current {
    /// Shared so the audit writer can `fdatasync` it without holding the sink's lock.
    file: Arc<File>,
    identity: Identity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    device: u64,
    inode: u64,
}

impl Identity {
    #[cfg(unix)]
    fn of(metadata: &fs::Metadata) -> Identity {
        use std::os::unix::fs::MetadataExt;
        Identity { device: metadata.dev(), inode: metadata.ino() }
    }

    #[cfg(not(unix))]
    fn of(_: &fs::Metadata) -> Identity {
        Identity { device: 0, inode: 0 }
    }
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
    /// Lines accepted and not yet in the file.
    pending: Vec<u8>,
    last_stamp: Option<Stamp>,
    retry_at: Option<SystemTime>,
    clock: Arc<dyn Clock>,
    jobs: Option<Sender<Job>>,
    counters: Arc<SinkCounters>,
    faults: Option<Arc<FaultInjector>>,
}

impl FileSink {
    /// Opens `dir/name` (repairing a torn last line) and queues the repair and retention of
    /// its backups.
    pub(crate) fn open(
        dir: &Path,
        name: &str,
        policy: FilePolicy,
        clock: Arc<dyn Clock>,
        jobs: Option<Sender<Job>>,
        counters: Arc<SinkCounters>,
        faults: Option<Arc<FaultInjector>>,
    ) -> io::Result<Self> {
        let last_stamp = backup::list_backups(dir, name)?.last().map(|(stamp, _)| *stamp);
        let mut sink = FileSink {
            dir: dir.to_path_buf(),
            name: name.to_owned(),
            path: dir.join(name),
            policy,
            current: None,
            size: 0,
            pending: Vec::with_capacity(WRITE_CHUNK),
            last_stamp,
            retry_at: None,
            clock,
            jobs,
            counters,
            faults,
        };
        sink.open_current()?;
        for work in backup::scan_for_repair(dir, name, sink.policy.compress)? {
            sink.queue(Job::Repair { name: name.to_owned(), work });
        }
        sink.queue(Job::Retain { name: name.to_owned(), keep: sink.policy.backups });
        Ok(sink)
    }

    fn queue(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            // The thread is gone only after shutdown; the next start redoes what is not done.
            let _ = jobs.send(job);
        }
    }

    /// Opens (creating) the file at the path. A file whose last line is torn (a crash mid-write)
    /// is kept as it is, and the next line starts on a fresh line.
    fn open_current(&mut self) -> io::Result<()> {
        self.current = None;
        let file = match open_append(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&self.dir)?;
                open_append(&self.path)?
            }
            other => other?,
        };
        let metadata = file.metadata()?;
        self.size = metadata.len();
        let mut file = file;
        if self.size > 0 && !ends_with_newline(&file, self.size)? {
            eprintln!(
                "chimera-log: {} ends with an incomplete line (a crash mid-write); it is kept, and new lines start on the next line",
                self.path.display()
            );
            file.write_all(b"\n")?;
            self.size += 1;
        }
        self.current = Some(Current { file: Arc::new(file), identity: Identity::of(&metadata) });
        Ok(())
    }

    /// Makes sure `current` is the file at the path, reopening if it was deleted or replaced.
    fn ensure_current(&mut self) -> io::Result<()> {
        let at_path = match fs::metadata(&self.path) {
            Ok(metadata) => Some(Identity::of(&metadata)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        match (&self.current, at_path) {
            (Some(current), Some(identity)) if current.identity == identity => Ok(()),
            _ => self.open_current(),
        }
    }

    /// Writes pending bytes to the file. Unless `force`, does nothing while a recent failure
    /// has not yet come due for a retry. Bytes written stay written even if a later part fails,
    /// so a line is delayed by a fault, never torn by it.
    fn drain(&mut self, force: bool) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if let (false, Some(retry_at)) = (force, self.retry_at) {
            if self.clock.now() < retry_at {
                return Ok(());
            }
        }
        let result = self.write_pending();
        match &result {
            Ok(()) => self.retry_at = None,
            Err(_) => self.retry_at = Some(self.clock.now() + RETRY_AFTER),
        }
        result
    }

    fn write_pending(&mut self) -> io::Result<()> {
        self.ensure_current()?;
        let current = self.current.as_mut().expect("ensure_current opened the file");
        let mut written = 0;
        let result = loop {
            if written == self.pending.len() {
                break Ok(());
            }
            let mut chunk = &self.pending[written..];
            if let Some(faults) = &self.faults {
                match faults.allow(chunk.len()) {
                    Ok(allowed) => chunk = &chunk[..allowed],
                    Err(error) => break Err(error),
                }
            }
            match (&*current.file).write(chunk) {
                Ok(0) => break Err(io::Error::new(io::ErrorKind::WriteZero, "the file accepted no bytes")),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.size += written as u64;
        self.pending.drain(..written);
        result
    }

    /// Renames the current file to a new backup and starts a fresh one.
    fn rotate(&mut self) -> io::Result<()> {
        // Pending lines belong before the rotation; if they cannot be written now they open the
        // next file instead, still after everything in the backup.
        let drained = self.drain(true);
        self.ensure_current()?;
        if self.size == 0 {
            return drained;
        }
        if self.policy.sync_on_rotate {
            if let Some(current) = &self.current {
                current.file.sync_data()?;
            }
        }
        let stamp = Stamp::next(self.clock.now(), self.last_stamp);
        let backup_path = backup::plain_path(&self.dir, &self.name, stamp);
        fs::rename(&self.path, &backup_path)?;
        self.last_stamp = Some(stamp);
        self.counters.rotations.fetch_add(1, Relaxed);
        let read_only = backup::make_read_only(&backup_path);
        self.open_current()?;
        if self.policy.compress {
            self.queue(Job::Compress { name: self.name.clone(), stamp });
        }
        self.queue(Job::Retain { name: self.name.clone(), keep: self.policy.backups });
        drained.and(read_only)
    }

    /// The open file, for a sync outside the sink's lock.
    pub(crate) fn current_file(&self) -> Option<Arc<File>> {
        self.current.as_ref().map(|current| Arc::clone(&current.file))
    }

    /// Whether the next line must go to a new file: it would take this one past `max_bytes`.
    fn needs_rotation(&self, line_len: usize) -> bool {
        let logical = self.size + self.pending.len() as u64;
        logical > 0 && logical + line_len as u64 > self.policy.max_bytes
    }
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

impl FileSink {
    /// Takes one line into `pending`, rotating first if it would take the file past `max_bytes`.
    fn accept_line(&mut self, line: &[u8]) -> io::Result<()> {
        let mut outcome = Ok(());
        if self.needs_rotation(line.len()) {
            outcome = self.rotate();
        }
        if self.pending.len() + line.len() > PENDING_CAP && !self.pending.is_empty() {
            // The failing writes behind this are counted and reported where they happen; the
            // drop is counted once, as a drop.
            self.counters.dropped.fetch_add(1, Relaxed);
            return outcome;
        }
        self.pending.extend_from_slice(line);
        outcome
    }
}

impl Sink for FileSink {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let outcome = self.accept_line(line);
        if self.policy.write_through || self.pending.len() >= WRITE_CHUNK {
            return outcome.and(self.drain(false));
        }
        outcome
    }

    /// A batch that fits in the current file is taken whole; one that crosses `max_bytes` goes
    /// line by line, rotating where needed. Either way it is written out before returning.
    fn write_batch(&mut self, bytes: &[u8], lens: &[u32]) -> io::Result<()> {
        let logical = self.size + self.pending.len() as u64;
        let fits = logical + bytes.len() as u64 <= self.policy.max_bytes;
        let room = self.pending.is_empty() || self.pending.len() + bytes.len() <= PENDING_CAP;
        let outcome = if fits && room {
            self.pending.extend_from_slice(bytes);
            Ok(())
        } else {
            let mut outcome = Ok(());
            let mut at = 0;
            for &len in lens {
                let line = &bytes[at..at + len as usize];
                at += len as usize;
                let written = self.accept_line(line);
                if outcome.is_ok() {
                    outcome = written;
                }
            }
            outcome
        };
        outcome.and(self.drain(false))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain(true)
    }

    /// A retry after a fault, once it is due.
    fn tick(&mut self) -> io::Result<()> {
        self.drain(false)
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        let _ = self.drain(true);
    }
}
