//! Reading a log directory, for tools: which files hold a log's lines and in what order, opening
//! them safely, and reading lines of bounded size. The logger's own readers (recovery of the
//! audit chain, the CloudWatch follower) and the `chimera-log` command use these same functions,
//! so a file the logger writes is found and read the same way everywhere.
//!
//! A log `name` (`chimera.log`) is a family of files in its directory: backups named
//! `name.<stamp>` or `name.<stamp>.gz` (`<stamp>` is the UTC rotation time,
//! `yyyymmddThhmmss.ffffffZ`, so name order is rotation order), then the current file `name`.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::dir::backup::{self, Filter, Stamp};
use crate::dir::follow::{CappedLine, Cursor, Followed, Follower};
use crate::dir::safe_fs;

/// The names of the files a logger keeps in its directory (each written once, in `dir::layout`).
pub use crate::dir::layout::{
    ARCHIVE_CURSOR_FILE, ARCHIVE_STATE_FILE, AUDIT_FILE, CLOUDWATCH_CURSOR_FILE, GENERAL_FILE, LOCK_FILE,
    STORE_CURSOR_FILE, STORE_FILE,
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
    let (consumed, terminated, length) = super::follow::read_capped(reader, line, cap, None)?;
    // A line of more than `usize::MAX` bytes cannot have been kept, whatever the cap.
    Ok((consumed > 0).then(|| LineRead { length: usize::try_from(length).unwrap_or(usize::MAX), terminated }))
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
/// written, for as long as it is asked ([`next_event`](Self::next_event) gives `None` when there
/// is nothing more yet). One reader keeps the file it reads open from one call to the next, so a
/// file rotated and deleted by retention between two calls is still read to its end.
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
    /// Backups seen listed and not passed yet, with what is known of each: one that was not the
    /// follower's file is gone unread when the follower reaches a file after it.
    known: BTreeMap<Stamp, Known>,
    /// The newest backup stamp listed so far: rotation only makes newer ones.
    newest: Option<Stamp>,
    given_any: bool,
    removed_unread: u64,
    /// What of `followed` was turned into events already: skipped files, damaged backups, debris.
    reported: (u64, usize, u64),
    pending: VecDeque<Pending>,
    /// The event given last, kept for the reference given out.
    given: Option<Pending>,
    /// A line read, given once the events before it are.
    held: Option<CappedLine>,
    line: Vec<u8>,
    path: PathBuf,
    number: u64,
    ended: bool,
}

/// What a reader knows of a backup it listed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Known {
    /// Its path as listed (the `.gz` when both forms were there).
    path: PathBuf,
    /// Whether it is the file the follower had open as the current file when it was listed
    /// (rotated since): read through that descriptor, never a gap. `None`: it was gone before
    /// that could be told.
    reading: Option<bool>,
}

/// An event other than a line, waiting to be given.
#[derive(Debug)]
enum Pending {
    Gap { files: u64, removed: Vec<PathBuf> },
    Damaged { path: PathBuf, line: u64, error: String },
    Late(PathBuf),
}

/// What [`LogReader::next_event`] found.
#[derive(Debug)]
#[non_exhaustive]
pub enum LogEvent<'a> {
    /// The next line.
    Line(LogLine<'a>),
    /// Files were removed (retention) before they were read, or while they were: the next line
    /// does not follow the last one given.
    Gap {
        /// How many files.
        files: u64,
        /// Those of them known by name (each backup listed before it was removed, as listed);
        /// the others were files the reader had begun and that were gone when it came back.
        removed: &'a [PathBuf],
    },
    /// A gzipped backup is damaged: the lines before the damage were given; what follows it
    /// cannot be read by anyone, and reading goes on with the next file.
    Damaged {
        /// The backup.
        path: &'a Path,
        /// The lines of it given before the damage.
        line: u64,
        /// What is wrong.
        error: &'a str,
    },
    /// Following only: a backup appeared stamped before the file being read (put there, or
    /// restored, by hand). Its lines are not new, and are not read.
    LateBackup(&'a Path),
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
        let follower = Follower::new(dir, name, Cursor::default()).of_any_owner();
        let mut reader = LogReader::new(dir, name, cap, follower);
        let listed = reader.list(SystemTime::now())?;
        reader.until = Some(listed.last().map(|(stamp, _)| *stamp));
        reader.remember(&listed, None);
        Ok(reader)
    }

    /// Follows the family of `name` in `dir` from where a reader has shown it up to: after the
    /// backup at the path `after` (plain or `.gz`: the newest one shown; `None`: none), in
    /// `current`, the current file as the reader opened it, at byte `offset` (just after the last
    /// whole line shown); with no current file, at the start of the next one. Reading goes on
    /// through `current`'s descriptor (a duplicate of it; its position moves), whatever its path
    /// names by now: the file may have been rotated since, and deleted. Every line written from
    /// there on is given, across rotations and compression, for as long as
    /// [`next_event`](Self::next_event) is called.
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
        let follower = match current {
            Some((file, offset)) => Follower::in_open_file(dir, name, after, file.try_clone()?, offset)?,
            None => Follower::new(dir, name, Cursor { after, offset: 0, fingerprint: None }).of_any_owner(),
        };
        let mut reader = LogReader::new(dir, name, cap, follower);
        // The reader has shown the family up to here: a file after it removed unread is a gap,
        // before the first line given too.
        reader.given_any = true;
        let listed = reader.list(SystemTime::now())?;
        reader.remember(&listed, None);
        Ok(reader)
    }

    fn new(dir: &Path, name: &str, cap: usize, follower: Follower) -> LogReader {
        LogReader {
            follower,
            followed: Followed::default(),
            dir: dir.to_owned(),
            name: name.to_owned(),
            cap,
            torn_current: false,
            until: None,
            known: BTreeMap::new(),
            newest: None,
            given_any: false,
            removed_unread: 0,
            reported: (0, 0, 0),
            pending: VecDeque::new(),
            given: None,
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

    /// Files found removed before they were read (retention) since reading began. In a
    /// [`snapshot`](Self::snapshot), those removed before anything was read were simply the
    /// oldest, and come with no [`LogEvent::Gap`]; following, every one comes with one.
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
                // Given by reference: kept until the next call.
                self.given = Some(pending);
                return Ok(Some(match self.given.as_ref().expect("set above") {
                    Pending::Gap { files, removed } => LogEvent::Gap { files: *files, removed },
                    Pending::Damaged { path, line, error } => LogEvent::Damaged { path, line: *line, error },
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

    /// The backups of the family as of `now` that hold something to read (plain or `.gz`), with
    /// the path of each (the `.gz` when both are there).
    fn list(&self, now: SystemTime) -> io::Result<Vec<(Stamp, PathBuf)>> {
        let (backups, _) = backup::list(&self.dir, &self.name, Filter::Reader { now })?;
        Ok(backups
            .into_iter()
            .filter(|(_, files)| files.plain || files.gz)
            .map(|(stamp, files)| {
                let path = match files.gz {
                    true => backup::gz_path(&self.dir, &self.name, stamp),
                    false => backup::plain_path(&self.dir, &self.name, stamp),
                };
                (stamp, path)
            })
            .collect())
    }

    /// `files` files were found removed before they were read, `removed` of them by name.
    fn gone(&mut self, files: u64, removed: Vec<PathBuf>) {
        if files == 0 {
            return;
        }
        self.removed_unread += files;
        if self.given_any {
            self.pending.push_back(Pending::Gap { files, removed });
        }
    }

    /// The follower's skipped files and damaged backups since the last look, as events.
    fn take_reports(&mut self) {
        let (skipped, damaged, debris) = self.reported;
        for (path, error) in &self.followed.damaged_at[damaged..] {
            // The lines of it given before the damage, if it is the file lines came from last.
            let line = if *path == self.path { self.number } else { 0 };
            self.pending.push_back(Pending::Damaged { path: path.clone(), line, error: error.clone() });
        }
        // A damaged backup is an event of its own, and a `.gz.tmp` alone had nothing to read.
        let removed = (self.followed.skipped - skipped)
            .saturating_sub((self.followed.damaged_at.len() - damaged) as u64)
            .saturating_sub(self.followed.debris - debris);
        self.gone(removed, Vec::new());
        self.reported = (self.followed.skipped, self.followed.damaged_at.len(), self.followed.debris);
    }

    /// The follower has begun a file, the first after the backup `after`: backups listed
    /// before it and after `after` that it passed were removed before they were read, unless one
    /// was the file it had open as the current file, rotated since and read through its
    /// descriptor. One that was gone before that could be told is that file if it may be: the
    /// first listed after `after` (the rotation of the file after `after` made the first backup
    /// after it).
    fn begin_file(&mut self, after: Option<Stamp>, now: SystemTime) -> io::Result<()> {
        let this = self
            .follower
            .reading_path()
            .and_then(Path::file_name)
            .and_then(|file_name| backup::parse_backup_name(&file_name.to_string_lossy(), &self.name))
            .map(|(stamp, _)| stamp);
        let passed: Vec<Stamp> = self
            .known
            .range(..)
            .map(|(&stamp, _)| stamp)
            .filter(|&stamp| Some(stamp) > after && this.is_none_or(|this| stamp < this))
            .collect();
        let mut removed = Vec::new();
        for (index, stamp) in passed.iter().enumerate() {
            let known = self.known.remove(stamp).expect("listed above");
            let unread = match known.reading {
                Some(reading) => !reading,
                None => index > 0,
            };
            if unread {
                removed.push(known.path);
            }
        }
        self.gone(removed.len() as u64, removed);
        let listed = self.list(now)?;
        self.remember(&listed, after);
        Ok(())
    }

    /// Adds `listed` to the backups known, and forgets those at or before `after` that are gone
    /// (no longer needed to tell a gap). A backup newly listed is looked at at once: is it the
    /// file the follower has open as the current file (rotated since)? Following, a backup not
    /// listed before and older than the newest listed before, which the follower is past, was not
    /// made by a rotation (rotation only makes newer ones): said once, and not read.
    fn remember(&mut self, listed: &[(Stamp, PathBuf)], after: Option<Stamp>) {
        self.known.retain(|stamp, _| Some(*stamp) > after || listed.iter().any(|(listed, _)| listed == stamp));
        for (stamp, path) in listed {
            let stamp = *stamp;
            if self.known.contains_key(&stamp) {
                continue;
            }
            let passed = Some(stamp) <= after && self.newest.is_some_and(|newest| stamp < newest);
            if self.until.is_none() && passed {
                self.pending.push_back(Pending::Late(path.clone()));
            }
            let reading = self.follower.is_the_cursors_file(stamp);
            self.known.insert(stamp, Known { path: path.clone(), reading });
        }
        self.newest = self.newest.max(listed.last().map(|(stamp, _)| *stamp));
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
                LogEvent::Gap { files, removed } => {
                    let names: Vec<String> =
                        removed.iter().map(|path| path.file_name().unwrap().to_string_lossy().into_owned()).collect();
                    format!("gap {files} {}", names.join(" "))
                }
                LogEvent::Damaged { path, line, .. } => {
                    format!("damaged {} after line {line}", path.file_name().unwrap().to_string_lossy())
                }
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
        assert_eq!(events(&mut reader), ["gap 1 chimera.log.20240101T000000.000002Z", "b3", "current"]);
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
        assert_eq!(
            events(&mut reader),
            ["damaged chimera.log.20240101T000000.000003Z.gz after line 0", "c1", "c2-torn"]
        );
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

    fn append(dir: &Path, text: &str) {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(GENERAL_FILE)).unwrap();
        std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
    }

    /// `tail -f` kept the file it followed open between two looks: lines written to it, then
    /// rotated away and the backup deleted by retention before the next look, were still shown.
    /// The reader does the same, from the file `tail` read (a line half written at a look
    /// included), and no gap is said: nothing was lost.
    #[test]
    fn lines_written_then_rotated_and_deleted_between_two_reads_are_read_through_the_open_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        append(d, "a1\n");
        let current = open_log_file(&d.join(GENERAL_FILE)).unwrap();
        // Between tail's read of the file and the reader's first look: rotated and deleted.
        append(d, "a2\n");
        std::fs::rename(d.join(GENERAL_FILE), backup_path(d, 1)).unwrap();
        append(d, "b1\n");
        std::fs::remove_file(backup_path(d, 1)).unwrap();
        let mut reader = LogReader::follow_from(d, GENERAL_FILE, 64, None, Some((&current, 3))).unwrap();
        assert_eq!(events(&mut reader), ["a2", "b1"]);
        // Between two looks, a line half written at the first.
        append(d, "b2\nb3-half");
        assert_eq!(events(&mut reader), ["b2"]);
        append(d, "-done\nb4\n");
        std::fs::rename(d.join(GENERAL_FILE), backup_path(d, 2)).unwrap();
        append(d, "c1\n");
        std::fs::remove_file(backup_path(d, 2)).unwrap();
        assert_eq!(events(&mut reader), ["b3-half-done", "b4", "c1"]);
        assert_eq!(reader.removed_unread(), 0);
    }

    /// The reader's own listing can meet the file the follower reads as current just after its
    /// rotation, and retention delete that backup before the follower comes back to it: the
    /// follower reads it to its end through its descriptor, so no gap is said (one was, for a
    /// backup "listed and gone"). A backup after it removed unread is a gap, named.
    #[test]
    fn a_rotation_seen_by_the_readers_listing_then_deleted_is_no_gap_but_a_backup_after_it_removed_unread_is() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(backup_path(d, 1), "a1\n").unwrap();
        append(d, "b1\n");
        let mut reader = LogReader::follow_from(d, GENERAL_FILE, 64, None, None).unwrap();
        assert_eq!(events(&mut reader), ["a1", "b1"]);
        append(d, "b2\n");
        std::fs::rename(d.join(GENERAL_FILE), backup_path(d, 2)).unwrap();
        append(d, "c1\n");
        // The rotation lands between the follower's look at the current file and the reader's
        // listing (at the end of what there is): the reader knows the backup, the follower not yet.
        reader.look_for_late_backups(SystemTime::now()).unwrap();
        std::fs::remove_file(backup_path(d, 1)).unwrap();
        std::fs::remove_file(backup_path(d, 2)).unwrap();
        assert_eq!(events(&mut reader), ["b2", "c1"]);
        assert_eq!(reader.removed_unread(), 0);
        // Now a backup listed, never read, and removed: a gap, named.
        append(d, "c2\n");
        std::fs::rename(d.join(GENERAL_FILE), backup_path(d, 3)).unwrap();
        append(d, "d1\n");
        std::fs::rename(d.join(GENERAL_FILE), backup_path(d, 4)).unwrap();
        append(d, "e1\n");
        reader.look_for_late_backups(SystemTime::now()).unwrap();
        std::fs::remove_file(backup_path(d, 3)).unwrap();
        std::fs::remove_file(backup_path(d, 4)).unwrap();
        assert_eq!(events(&mut reader), ["c2", "gap 1 chimera.log.20240101T000000.000004Z", "e1"]);
        assert_eq!(reader.removed_unread(), 1);
    }

    /// A rotation (and retention of the oldest backup, read already) between the follower's
    /// listing and its open of the next file: the file rotated is read from its backup, and no
    /// gap is said.
    #[test]
    fn a_rotation_between_the_listing_and_the_open_is_no_gap() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        std::fs::write(backup_path(&d, 1), "a1\n").unwrap();
        append(&d, "b1\n");
        let mut reader = LogReader::follow_from(&d, GENERAL_FILE, 64, None, None).unwrap();
        let Some(LogEvent::Line(_)) = reader.next_event().unwrap() else { panic!("a1 first") };
        // Between the listing and the open of the file after a1's backup.
        let hook_dir = d.clone();
        crate::dir::follow::after_next_listing(move || {
            std::fs::rename(hook_dir.join(GENERAL_FILE), backup_path(&hook_dir, 2)).unwrap();
            std::fs::remove_file(backup_path(&hook_dir, 1)).unwrap();
            append(&hook_dir, "c1\n");
        });
        assert_eq!(events(&mut reader), ["b1", "c1"]);
        assert_eq!(reader.removed_unread(), 0);
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
