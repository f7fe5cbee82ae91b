//! Reading a log directory, for tools: which files hold a log's lines and in what order, opening
//! them safely, and reading lines of bounded size. The logger's own readers (recovery of the
//! audit chain, the CloudWatch follower) and the `chimera-log` command use these same functions,
//! so a file the logger writes is found and read the same way everywhere.
//!
//! A log `name` (`chimera.log`) is a family of files in its directory: backups named
//! `name.<stamp>` or `name.<stamp>.gz` (`<stamp>` is the UTC rotation time,
//! `yyyymmddThhmmss.ffffffZ`, so name order is rotation order), then the current file `name`.

use std::collections::{BTreeSet, VecDeque};
use std::fs::File;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::dir::backup::{self, Filter, Stamp};
use crate::dir::follow::{CappedLine, Cursor, Followed, Follower};
use crate::dir::safe_fs;

/// The names of the files a logger keeps in its directory (each written once, in `dir::layout`).
pub use crate::dir::layout::{
    AUDIT_FILE, CLOUDWATCH_CURSOR_FILE, GENERAL_FILE, LOCK_FILE, STORE_CURSOR_FILE, STORE_FILE,
};

/// One backup of a log, as found in its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backup {
    /// The file to read: the `.gz` when the backup exists in both forms (it is written under a
    /// temporary name and renamed, so a `.gz` present is complete).
    pub path: PathBuf,
    /// The backup's name without `.gz`: its identity, the same before and after compression.
    pub stamp_name: String,
}

/// A file named like a backup that is not read as one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IgnoredBackup {
    /// Its file name.
    pub name: String,
    /// Why it is not read.
    pub reason: IgnoredReason,
}

/// Why a file named like a backup is not read as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IgnoredReason {
    /// Stamped more than a day after the clock: no logger wrote it (the logger ignores it too).
    StampedAfterTheClock,
    /// A link, a directory, a FIFO...: never followed or read.
    NotARegularFile,
}

impl std::fmt::Display for IgnoredReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IgnoredReason::StampedAfterTheClock => {
                "stamped more than a day after the clock, so no logger wrote it (the logger ignores it too)"
            }
            IgnoredReason::NotARegularFile => "not a regular file",
        })
    }
}

/// What [`backup_listing`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupListing {
    /// The backups, oldest first.
    pub backups: Vec<Backup>,
    /// The names that look like backups but are not read, in no particular order.
    pub ignored: Vec<IgnoredBackup>,
}

/// The backups of `name` in `dir`, oldest first, as of now: see [`backup_listing`].
///
/// Errors: the directory cannot be read.
pub fn backups(dir: &Path, name: &str) -> io::Result<Vec<Backup>> {
    backup_listing(dir, name, SystemTime::now()).map(|listing| listing.backups)
}

/// The backups of `name` in `dir` as of `now`, oldest first, and the names passed over. A
/// backup is a regular file (a link is not followed) of any owner, stamped no more than a day
/// after `now`: the rule of the logger's own listing, less the owner (a reader may be another
/// user), so that a name planted with a far-future stamp is not read as the newest backup here
/// when the logger and its followers pass it over. Compression in progress (`.gz.tmp`) is not a
/// backup yet, nor ignored.
///
/// Errors: the directory cannot be read.
pub fn backup_listing(dir: &Path, name: &str, now: SystemTime) -> io::Result<BackupListing> {
    let filter = Filter::Reader { now };
    let (found, ignored) = backup::list(dir, name, filter)?;
    let backups = found
        .into_iter()
        .filter(|(_, files)| files.plain || files.gz)
        .map(|(stamp, files)| Backup {
            path: if files.gz { backup::gz_path(dir, name, stamp) } else { backup::plain_path(dir, name, stamp) },
            stamp_name: format!("{name}.{}", stamp.format()),
        })
        .collect();
    let ignored = ignored
        .into_iter()
        .map(|file_name| {
            let after_the_clock =
                backup::parse_backup_name(&file_name, name).is_some_and(|(stamp, _)| !filter.plausible(stamp));
            let reason =
                if after_the_clock { IgnoredReason::StampedAfterTheClock } else { IgnoredReason::NotARegularFile };
            IgnoredBackup { name: file_name, reason }
        })
        .collect();
    Ok(BackupListing { backups, ignored })
}

/// Opens a log file for reading without following a link, and without waiting should a FIFO or
/// device be at the path; what is read is checked, through the descriptor, to be a regular file.
///
/// Errors: the open fails (`NotFound` for a missing file), or the path is not a regular file
/// (`InvalidInput`, saying what it is: "a symbolic link, not a regular file").
pub fn open_log_file(path: &Path) -> io::Result<File> {
    let not_regular = |metadata: &std::fs::Metadata| {
        let kind = safe_fs::kind_of(metadata);
        io::Error::new(io::ErrorKind::InvalidInput, format!("{kind}, not a regular file"))
    };
    let file = safe_fs::no_follow(std::fs::OpenOptions::new().read(true)).open(path).map_err(|error| {
        // O_NOFOLLOW on a link fails with ELOOP.
        match std::fs::symlink_metadata(path) {
            Ok(metadata) if error.raw_os_error() == Some(libc::ELOOP) => not_regular(&metadata),
            _ => error,
        }
    })?;
    let metadata = file.metadata()?;
    if metadata.file_type().is_file() {
        Ok(file)
    } else {
        Err(not_regular(&metadata))
    }
}

/// Whether a logger holds the directory `dir` now (so the last line of a current file may be half
/// written). It looks at the lock the logger takes (the directory's, and its lock file's, which
/// loggers of earlier versions take), as the logger itself does before concluding that another
/// one holds it: a lock held for a quarter second is held. The probe takes a shared lock for an
/// instant when one is free; a logger starting in that instant retries for as long. A lock file
/// that cannot be opened counts as held: the cautious reading.
pub fn logger_holds(dir: &Path) -> bool {
    safe_fs::lock_is_held(dir)
}

/// What [`read_line_capped`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LineRead {
    /// The line's whole length in bytes, without its newline.
    pub length: usize,
    /// Whether the line ended with a newline; a last line without one may be half written.
    pub terminated: bool,
}

impl LineRead {
    /// Whether the line's bytes were kept: it was no longer than the cap.
    pub fn kept(&self, cap: usize) -> bool {
        self.length <= cap
    }
}

/// Reads the next line into `line` (without its newline), keeping its bytes only if it is at most
/// `cap` bytes long (a longer line is consumed and `line` left empty): a damaged file or a gzip
/// bomb without newlines cannot make memory grow with it. `None` at the end.
///
/// Errors: the reader's, other than `Interrupted` (which is retried).
pub fn read_line_capped(
    reader: &mut (impl BufRead + ?Sized),
    line: &mut Vec<u8>,
    cap: usize,
) -> io::Result<Option<LineRead>> {
    line.clear();
    let mut length = 0;
    let mut any = false;
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(any.then_some(LineRead { length, terminated: false }));
        }
        any = true;
        let (chunk, used, terminated) = match buf.iter().position(|&b| b == b'\n') {
            Some(at) => (&buf[..at], at + 1, true),
            None => (buf, buf.len(), false),
        };
        length += chunk.len();
        if length <= cap {
            line.extend_from_slice(chunk);
        } else {
            line.clear();
        }
        reader.consume(used);
        if terminated {
            return Ok(Some(LineRead { length, terminated }));
        }
    }
}

/// A JSON object's members in the order they were written, each value read as `V`
/// (`serde_json::Value`, or `Box<RawValue>` to keep its text): `serde_json`'s own map sorts
/// them. A key written twice is kept twice. The one reader of members in order, for the
/// console's pretty rendering, the `chimera-log` command and the tests.
#[derive(Debug, Clone, PartialEq)]
pub struct InOrder<V>(pub Vec<(String, V)>);

impl<'de, V: serde::Deserialize<'de>> serde::Deserialize<'de> for InOrder<V> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members<V>(std::marker::PhantomData<V>);
        impl<'de, V: serde::Deserialize<'de>> serde::de::Visitor<'de> for Members<V> {
            type Value = InOrder<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<InOrder<V>, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, V>()? {
                    members.push(member);
                }
                Ok(InOrder(members))
            }
        }
        deserializer.deserialize_map(Members(std::marker::PhantomData))
    }
}

/// Reads a log's family line by line through the runtime's follower (the one the CloudWatch
/// shipper and the audit store's archiver read with): backups oldest first, plain or gzip, then
/// the current file, each line once across rotation and compression, never more than a cap of a
/// line in memory. Two ways: [`snapshot`](Self::snapshot) reads to the end of the file that is
/// current when it begins, and stops; [`follow_from`](Self::follow_from) reads on as lines are
/// written, for as long as it is asked ([`next_event`](Self::next_event) gives `None` when there is nothing
/// more yet).
///
/// Besides lines it says what a reader must know ([`LogEvent`]): backups removed (by retention)
/// before they were read, a damaged gzip backup passed over, a backup appearing older than where
/// following stands.
#[derive(Debug)]
pub struct LogReader {
    follower: Follower,
    followed: Followed,
    dir: PathBuf,
    name: String,
    cap: usize,
    torn_current: bool,
    /// A snapshot: the newest backup when it began; it ends at the file after it.
    until: Option<Option<Stamp>>,
    /// Backups seen listed and not passed yet: one gone when the follower reaches a file after it
    /// was removed before it was read.
    known: BTreeSet<Stamp>,
    /// The newest backup stamp listed so far: rotation only makes newer ones.
    newest: Option<Stamp>,
    given_any: bool,
    removed_unread: u64,
    /// What of `followed` was turned into events already: skipped files, damaged backups, debris.
    reported: (u64, usize, u64),
    pending: VecDeque<Pending>,
    /// A line read, given once the events before it are.
    held: Option<CappedLine>,
    line: Vec<u8>,
    path: PathBuf,
    number: u64,
    ended: bool,
}

/// An event other than a line, waiting to be given.
#[derive(Debug)]
enum Pending {
    Gap(u64),
    Damaged(String),
    Late(PathBuf),
}

/// What [`LogReader::next_event`] found.
#[derive(Debug)]
#[non_exhaustive]
pub enum LogEvent<'a> {
    /// The next line.
    Line(LogLine<'a>),
    /// Backups were removed (retention) before they were read, or while they were: the next line
    /// does not follow the last one given.
    Gap {
        /// How many files, as far as known.
        files: u64,
    },
    /// A gzipped backup is damaged: the lines before the damage were given; what follows it
    /// cannot be read by anyone, and reading goes on with the next file. The message names the
    /// file.
    Damaged(String),
    /// Following only: a backup appeared stamped before the file being read (put there, or
    /// restored, by hand). Its lines are not new, and are not read.
    LateBackup(PathBuf),
}

/// A line of a log file, as [`LogReader::next_event`] gives it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct LogLine<'a> {
    /// The file it was read from (a backup's path, `.gz` or plain, or the current file's).
    pub path: &'a Path,
    /// Its number in that file, from 1 (counted from where reading began in it).
    pub number: u64,
    /// Its bytes without the newline; `None` when it is longer than the cap (never held).
    pub bytes: Option<&'a [u8]>,
    /// Its length in bytes, without the newline.
    pub length: u64,
    /// Whether a newline ended it: the last line of a complete file (or of a current file no
    /// logger writes, [`LogReader::torn_current`]) may have none.
    pub terminated: bool,
}

impl LogReader {
    /// Reads the family of `name` in `dir` from its oldest backup to the end of the file that is
    /// current now (lines written there meanwhile included; a file made current by a rotation
    /// after this call is not read), keeping at most `cap` bytes of a line. The current file's
    /// last line without a newline is left (a logger may be writing it) unless
    /// [`torn_current`](Self::torn_current).
    ///
    /// Errors: the directory cannot be listed.
    pub fn snapshot(dir: &Path, name: &str, cap: usize) -> io::Result<LogReader> {
        let mut reader = LogReader::new(dir, name, cap, Cursor::default());
        let listed = reader.list(SystemTime::now())?;
        reader.until = Some(listed.last().copied());
        reader.remember(&listed, None);
        Ok(reader)
    }

    /// Follows the family of `name` in `dir` from where a reader has shown it up to: after the
    /// backup at the path `after` (plain or `.gz`: the newest one shown; `None`: none), in `current`, the current file as
    /// the reader opened it, at byte `offset` (just after the last whole line shown); with no
    /// current file, at the start of the next one. The current file may have been rotated since:
    /// it is recognised under its backup name by its first line. Every line written from there on
    /// is given, across rotations and compression, for as long as [`next_event`](Self::next_event) is called.
    ///
    /// Errors: the directory cannot be listed, `current` cannot be read, or `after` is not one of
    /// this family's backups.
    pub fn follow_from(
        dir: &Path,
        name: &str,
        cap: usize,
        after: Option<&Path>,
        current: Option<(&File, u64)>,
    ) -> io::Result<LogReader> {
        let after = match after {
            None => None,
            Some(backup) => Some(
                backup
                    .file_name()
                    .and_then(|file_name| backup::parse_backup_name(&file_name.to_string_lossy(), name))
                    .map(|(stamp, _)| stamp)
                    .ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("{}: not a backup of {name}", backup.display()),
                        )
                    })?,
            ),
        };
        let cursor = match current {
            Some((file, offset)) => Cursor::in_open_file(after, file, offset)?,
            None => Cursor { after, offset: 0, fingerprint: None },
        };
        let mut reader = LogReader::new(dir, name, cap, cursor);
        let listed = reader.list(SystemTime::now())?;
        reader.remember(&listed, None);
        Ok(reader)
    }

    fn new(dir: &Path, name: &str, cap: usize, cursor: Cursor) -> LogReader {
        LogReader {
            follower: Follower::new(dir, name, cursor).of_any_owner(),
            followed: Followed::default(),
            dir: dir.to_owned(),
            name: name.to_owned(),
            cap,
            torn_current: false,
            until: None,
            known: BTreeSet::new(),
            newest: None,
            given_any: false,
            removed_unread: 0,
            reported: (0, 0, 0),
            pending: VecDeque::new(),
            held: None,
            line: Vec::new(),
            path: PathBuf::new(),
            number: 0,
            ended: false,
        }
    }

    /// Gives the current file's last line without a newline too (`true`): for a directory no
    /// logger holds ([`logger_holds`]), where it is a torn write, not one in progress.
    #[must_use]
    pub fn torn_current(mut self, give: bool) -> Self {
        self.torn_current = give;
        self
    }

    /// Backups found removed before they were read (retention) since reading began; those
    /// removed before anything was read were simply the oldest, and come with no
    /// [`LogEvent::Gap`].
    pub fn removed_unread(&self) -> u64 {
        self.removed_unread
    }

    /// The next line or event; `None` at the end of what there is now (a snapshot: the end, for
    /// good; following: nothing more yet, ask again later).
    ///
    /// Errors: a file cannot be read (other than a damaged gzip backup, which is an event), or
    /// the family kept changing while a file was opened (reading goes on from the same place at
    /// the next call).
    pub fn next_event(&mut self) -> io::Result<Option<LogEvent<'_>>> {
        let mut at_end = false;
        loop {
            if let Some(pending) = self.pending.pop_front() {
                return Ok(Some(match pending {
                    Pending::Gap(files) => LogEvent::Gap { files },
                    Pending::Damaged(message) => LogEvent::Damaged(message),
                    Pending::Late(path) => LogEvent::LateBackup(path),
                }));
            }
            if let Some(read) = self.held.take() {
                return Ok(Some(LogEvent::Line(LogLine {
                    path: &self.path,
                    number: self.number,
                    bytes: read.kept.then_some(self.line.as_slice()),
                    length: read.length,
                    terminated: read.terminated,
                })));
            }
            if self.ended || at_end {
                return Ok(None);
            }
            let now = SystemTime::now();
            let read =
                self.follower.next_line_capped(&mut self.line, self.cap, self.torn_current, &mut self.followed, now)?;
            self.take_reports();
            let Some(read) = read else {
                match self.until {
                    Some(_) => self.ended = true,
                    None => self.look_for_late_backups(now)?,
                }
                at_end = true;
                continue;
            };
            if self.until.is_some_and(|last| read.cursor.after > last) {
                // The file after the one that was current when the snapshot began.
                self.ended = true;
                continue;
            }
            if read.start == 0 {
                self.begin_file(read.cursor.after, now)?;
                self.number = 0;
            }
            if let Some(path) = self.follower.reading_path().filter(|path| *path != self.path) {
                // Following from inside a file, or a file read on under the backup name it took.
                self.path = path.to_owned();
            }
            self.number += 1;
            self.given_any = true;
            self.held = Some(read);
        }
    }

    /// The backups of the family as of `now` that hold something to read (plain or `.gz`).
    fn list(&self, now: SystemTime) -> io::Result<Vec<Stamp>> {
        let (backups, _) = backup::list(&self.dir, &self.name, Filter::Reader { now })?;
        Ok(backups.into_iter().filter(|(_, files)| files.plain || files.gz).map(|(stamp, _)| stamp).collect())
    }

    /// `files` backups were found removed before they were read.
    fn gone(&mut self, files: u64) {
        if files == 0 {
            return;
        }
        self.removed_unread += files;
        if self.given_any {
            self.pending.push_back(Pending::Gap(files));
        }
    }

    /// The follower's skipped files and damaged backups since the last look, as events.
    fn take_reports(&mut self) {
        let (skipped, damaged, debris) = self.reported;
        for message in &self.followed.damaged[damaged..] {
            self.pending.push_back(Pending::Damaged(message.clone()));
        }
        // A damaged backup is an event of its own, and a `.gz.tmp` alone had nothing to read.
        let removed = (self.followed.skipped - skipped)
            .saturating_sub((self.followed.damaged.len() - damaged) as u64)
            .saturating_sub(self.followed.debris - debris);
        self.gone(removed);
        self.reported = (self.followed.skipped, self.followed.damaged.len(), self.followed.debris);
    }

    /// The follower has begun a file, the first after the backup `after`: backups listed
    /// before it and after `after` that it passed were removed before they were read.
    fn begin_file(&mut self, after: Option<Stamp>, now: SystemTime) -> io::Result<()> {
        let this = self
            .follower
            .reading_path()
            .and_then(Path::file_name)
            .and_then(|file_name| backup::parse_backup_name(&file_name.to_string_lossy(), &self.name))
            .map(|(stamp, _)| stamp);
        let passed: Vec<Stamp> = self
            .known
            .iter()
            .copied()
            .filter(|&stamp| Some(stamp) > after && this.is_none_or(|this| stamp < this))
            .collect();
        for stamp in &passed {
            self.known.remove(stamp);
        }
        self.gone(passed.len() as u64);
        let listed = self.list(now)?;
        self.remember(&listed, after);
        Ok(())
    }

    /// Adds `listed` to the backups known, and forgets those at or before `after` that are gone
    /// (no longer needed to tell a gap). Following, a backup not listed before and older than the
    /// newest listed before, which the follower is past, was not made by a rotation (rotation only
    /// makes newer ones): said once, and not read.
    fn remember(&mut self, listed: &[Stamp], after: Option<Stamp>) {
        self.known.retain(|stamp| Some(*stamp) > after || listed.binary_search(stamp).is_ok());
        for &stamp in listed {
            let passed = Some(stamp) <= after && self.newest.is_some_and(|newest| stamp < newest);
            if self.known.insert(stamp) && self.until.is_none() && passed {
                let path = backup::plain_path(&self.dir, &self.name, stamp);
                let gz = backup::gz_path(&self.dir, &self.name, stamp);
                self.pending.push_back(Pending::Late(if path.exists() { path } else { gz }));
            }
        }
        self.newest = self.newest.max(listed.last().copied());
    }

    /// Following, at the end of what there is: looks for backups put there late.
    fn look_for_late_backups(&mut self, now: SystemTime) -> io::Result<()> {
        let listed = self.list(now)?;
        self.remember(&listed, self.follower.cursor().after);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line and event of `reader` until it has nothing more, as text.
    fn events(reader: &mut LogReader) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(event) = reader.next_event().unwrap() {
            out.push(match event {
                LogEvent::Line(line) => match line.bytes {
                    Some(bytes) => String::from_utf8(bytes.to_vec()).unwrap(),
                    None => format!("skipped {}", line.length),
                },
                LogEvent::Gap { files } => format!("gap {files}"),
                LogEvent::Damaged(message) => format!("damaged {}", message.contains(".000003Z.gz")),
                LogEvent::LateBackup(path) => format!("late {}", path.file_name().unwrap().to_string_lossy()),
            });
        }
        out
    }

    fn backup_path(dir: &Path, n: u32) -> PathBuf {
        dir.join(format!("chimera.log.20240101T000000.{n:06}Z"))
    }

    #[test]
    fn a_snapshot_says_a_gap_where_backups_were_removed_after_reading_began_and_only_counts_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for n in 0..4 {
            std::fs::write(backup_path(d, n), format!("b{n}\n")).unwrap();
        }
        std::fs::write(d.join(GENERAL_FILE), "current\n").unwrap();
        let mut reader = LogReader::snapshot(d, GENERAL_FILE, 64).unwrap();
        // Retention removes the oldest before anything is read, then another after b1 was.
        std::fs::remove_file(backup_path(d, 0)).unwrap();
        let Some(LogEvent::Line(first)) = reader.next_event().unwrap() else { panic!("a line first") };
        assert_eq!((first.bytes, first.number), (Some(&b"b1"[..]), 1));
        assert_eq!(first.path, backup_path(d, 1));
        std::fs::remove_file(backup_path(d, 2)).unwrap();
        assert_eq!(events(&mut reader), ["gap 1", "b3", "current"]);
        assert_eq!(reader.removed_unread(), 2);
    }

    #[test]
    fn a_snapshot_passes_a_damaged_gz_saying_so_and_ends_with_the_file_current_when_it_began() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(backup_path(d, 1), "b1\n").unwrap();
        std::fs::write(d.join("chimera.log.20240101T000000.000003Z.gz"), b"\x1f\x8b\x08\x00not a deflate stream")
            .unwrap();
        std::fs::write(d.join(GENERAL_FILE), "c1\nc2-torn").unwrap();
        let mut reader = LogReader::snapshot(d, GENERAL_FILE, 64).unwrap().torn_current(true);
        let Some(LogEvent::Line(_)) = reader.next_event().unwrap() else { panic!("b1 first") };
        // Rotated while read: the rest of the file read is read, the file after it is not.
        std::fs::rename(d.join(GENERAL_FILE), backup_path(d, 5)).unwrap();
        std::fs::write(d.join(GENERAL_FILE), "after\n").unwrap();
        assert_eq!(events(&mut reader), ["damaged true", "c1", "c2-torn"]);
        assert_eq!(reader.removed_unread(), 0);
    }

    #[test]
    fn following_reads_on_from_where_a_reader_stopped_and_names_a_backup_appearing_older_than_those_shown() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(backup_path(d, 5), "shown\n").unwrap();
        std::fs::write(d.join(GENERAL_FILE), "shown too\n").unwrap();
        let current = open_log_file(&d.join(GENERAL_FILE)).unwrap();
        let mut reader =
            LogReader::follow_from(d, GENERAL_FILE, 64, Some(&backup_path(d, 5)), Some((&current, 10))).unwrap();
        assert_eq!(events(&mut reader), Vec::<String>::new());
        std::fs::write(backup_path(d, 1), "old\n").unwrap();
        let mut file = std::fs::OpenOptions::new().append(true).open(d.join(GENERAL_FILE)).unwrap();
        std::io::Write::write_all(&mut file, b"new\n").unwrap();
        std::fs::rename(d.join(GENERAL_FILE), backup_path(d, 7)).unwrap();
        std::fs::write(d.join(GENERAL_FILE), "next\n").unwrap();
        assert_eq!(events(&mut reader), ["new", "late chimera.log.20240101T000000.000001Z", "next"]);
        assert_eq!(events(&mut reader), Vec::<String>::new(), "said once");
    }

    #[test]
    fn a_line_past_the_cap_is_consumed_but_not_kept_and_the_last_line_says_it_is_unterminated() {
        let text = b"short\nthis line is far too long\nok\nunterminated";
        let mut reader = io::BufReader::with_capacity(4, &text[..]);
        let mut line = Vec::new();
        let mut seen = Vec::new();
        while let Some(read) = read_line_capped(&mut reader, &mut line, 10).unwrap() {
            seen.push((read.length, read.terminated, read.kept(10), String::from_utf8(line.clone()).unwrap()));
        }
        let expected = [(5, true, true, "short"), (25, true, false, ""), (2, true, true, "ok"), (12, false, false, "")];
        assert_eq!(seen, expected.map(|(l, t, k, s)| (l, t, k, s.to_owned())));
    }

    #[test]
    fn a_link_or_fifo_is_refused_saying_what_it_is_without_being_opened_through() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("elsewhere"), b"secret\n").unwrap();
        let link = dir.path().join("chimera.log");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
        let error = open_log_file(&link).unwrap_err();
        assert_eq!(
            (error.kind(), error.to_string().as_str()),
            (io::ErrorKind::InvalidInput, "a symbolic link, not a regular file")
        );
        let fifo = dir.path().join("executions.log");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        // Would block forever without O_NONBLOCK: no writer ever opens the FIFO.
        let error = open_log_file(&fifo).unwrap_err();
        assert_eq!(error.to_string(), "a FIFO, not a regular file");
        assert_eq!(open_log_file(&dir.path().join("absent")).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn backups_are_listed_oldest_first_taking_the_gz_when_both_forms_exist_and_never_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let older = "chimera.log.20260101T000000.000000Z";
        let newer = "chimera.log.20260102T000000.000000Z";
        for file in [newer.to_owned(), format!("{older}.gz"), older.to_owned(), "chimera.log".to_owned()] {
            std::fs::write(dir.path().join(file), b"x\n").unwrap();
        }
        std::fs::write(dir.path().join("chimera.log.20260103T000000.000000Z.gz.tmp"), b"").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("chimera.log.20260104T000000.000000Z")).unwrap();
        let listed = backups(dir.path(), "chimera.log").unwrap();
        let names: Vec<_> = listed.iter().map(|b| b.path.file_name().unwrap().to_str().unwrap().to_owned()).collect();
        assert_eq!(names, [format!("{older}.gz"), newer.to_owned()]);
        assert_eq!(listed[0].stamp_name, older);
    }

    #[test]
    fn a_backup_stamped_over_a_day_past_now_is_not_listed_but_named_as_ignored_as_the_logger_does() {
        let dir = tempfile::tempdir().unwrap();
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_767_225_600); // 2026-01-01
        let real = "executions.log.20251231T000000.000000Z";
        let within_a_day = "executions.log.20260101T230000.000000Z.gz";
        let planted = "executions.log.29991231T235959.999999Z.gz";
        for file in [real, within_a_day, planted] {
            std::fs::write(dir.path().join(file), b"x\n").unwrap();
        }
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("executions.log.20251230T000000.000000Z")).unwrap();
        let listing = backup_listing(dir.path(), "executions.log", now).unwrap();
        let names: Vec<_> = listing.backups.iter().map(|b| b.path.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, [real, within_a_day]);
        let mut ignored: Vec<_> = listing.ignored.iter().map(|i| (i.name.as_str(), i.reason)).collect();
        ignored.sort_by_key(|(name, _)| *name);
        assert_eq!(
            ignored,
            [
                ("executions.log.20251230T000000.000000Z", IgnoredReason::NotARegularFile),
                (planted, IgnoredReason::StampedAfterTheClock)
            ]
        );
        // The logger's own listing passes over the same stamp.
        let (writer, _) = backup::list_backups_and_ignored(dir.path(), "executions.log", now).unwrap();
        assert_eq!(writer.len(), 2);
    }
}
