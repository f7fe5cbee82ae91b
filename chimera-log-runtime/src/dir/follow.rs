//! Following a file family: a log file's backups in stamp order (plain or gzip), then the
//! current file, read line by line from a [`Cursor`] that survives rotation, compression and a
//! restart (DESIGN §10). Whatever ships lines elsewhere (the CloudWatch sink) follows the files
//! with one of these and persists the cursor only once the destination has acknowledged the lines
//! before it, so the files are the buffer.
//!
//! A cursor names a file by the stamp of the backup *before* it (`after`; none for the first) and
//! a fingerprint of its first line, so the same cursor keeps naming the same lines when the
//! current file becomes a backup, and when that backup is compressed. The fingerprint tells when
//! the file was deleted (retention) before it was read: the reader then starts at the beginning
//! of the next file and says so ([`Followed::skipped`]).
//!
//! Only whole lines are given out: a line still being written at the end of the current file is
//! left for the next read. This module never writes into the log directory except for the cursor
//! file, through [`Cursor::save`].

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::dir::backup::{self, Stamp};
use crate::dir::safe_fs::{self, Identity};

/// How far into a file family a follower has read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Cursor {
    /// The file being read is the first of the family whose stamp is after this one (the current
    /// file counts as after every backup); `None`: the first file.
    pub(crate) after: Option<Stamp>,
    /// Bytes of that file (uncompressed) already read.
    pub(crate) offset: u64,
    /// A hash of the file's first line, once known: tells whether the file at `after` is still the
    /// one the offset belongs to.
    pub(crate) fingerprint: Option<u64>,
}

impl Cursor {
    /// The cursor saved at `path`; `None` when there is none.
    pub(crate) fn load(path: &Path) -> io::Result<Option<Cursor>> {
        let text = match safe_fs::open_read(path) {
            Ok(mut file) => {
                let mut text = String::new();
                file.read_to_string(&mut text)?;
                text
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))?;
        let invalid =
            || io::Error::new(io::ErrorKind::InvalidData, format!("{}: not a cursor: {text}", path.display()));
        let after = match &value["after"] {
            serde_json::Value::Null => None,
            serde_json::Value::String(stamp) => Some(Stamp::parse(stamp).ok_or_else(invalid)?),
            _ => return Err(invalid()),
        };
        let offset = value["offset"].as_u64().ok_or_else(invalid)?;
        let fingerprint = match &value["fingerprint"] {
            serde_json::Value::Null => None,
            serde_json::Value::String(hex) => Some(u64::from_str_radix(hex, 16).map_err(|_| invalid())?),
            _ => return Err(invalid()),
        };
        let cursor = Cursor { after, offset, fingerprint };
        // A cursor saved before cursors carried a check has none: still checked against the
        // family it names (`check_against`), as every cursor is.
        match &value["check"] {
            serde_json::Value::Null => {}
            serde_json::Value::String(check) if *check == cursor.check() => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: its check does not match its contents (damaged or edited): {text}", path.display()),
                ))
            }
        }
        Ok(Some(cursor))
    }

    /// The check a saved cursor carries: a hash of its three fields, so that a cursor damaged on
    /// disk (or edited without care) is known for what it is.
    fn check(&self) -> String {
        let text = format!(
            "{}|{}|{}",
            self.after.map_or_else(|| "-".to_owned(), Stamp::format),
            self.offset,
            self.fingerprint.map_or_else(|| "-".to_owned(), |f| format!("{f:016x}"))
        );
        format!("{:016x}", fingerprint(text.as_bytes()))
    }

    /// Checks a cursor loaded from a file against the family it names, as of `now`: its stamp
    /// must name a backup there is, or one older than the newest (retention removes the oldest
    /// first, so a follower's stamp can have been removed under it, never the newest one while
    /// any is left), or, when no backup is left at all, one before `now`. A cursor that fails names
    /// backups as read that nobody read: followed, it would pass over every file before its
    /// stamp, silently. `Err` says what is wrong. (An offset past the end of the file it names
    /// is found when that file is opened: [`Followed::cursor_damage`].)
    pub(crate) fn check_against(&self, dir: &Path, name: &str, now: SystemTime) -> io::Result<Result<(), String>> {
        let Some(after) = self.after else { return Ok(Ok(())) };
        let backups = backup::list_backups(dir, name, now)?;
        if backups.iter().any(|(stamp, _)| *stamp == after) {
            return Ok(Ok(()));
        }
        Ok(match newest(&backups) {
            Some(newest) if after < newest => Ok(()),
            Some(newest) => Err(format!(
                "it names the backup {}, which is not there and is newer than the newest one ({})",
                after.format(),
                newest.format()
            )),
            // No backups at all: with none kept (`general_backups(0)`, `audit_backups(0)` once
            // archived), retention removes even the newest, the one the cursor names, and there
            // is nothing left to pass over. Unless the stamp is later than the clock: rotations
            // from now on are stamped from the clock (no backup is left to follow), before it, and
            // a follower behind would pass over them.
            None if after < Stamp::from_time(now) => Ok(()),
            None => Err(format!(
                "it names the backup {}, there are no backups, and that stamp is not before the clock ({})",
                after.format(),
                Stamp::from_time(now).format()
            )),
        })
    }

    /// Saves the cursor at `path` atomically (a temporary file, fsync, rename), `0640`. The
    /// temporary file has a name of its own for each save, created exclusively: nothing planted
    /// in the directory beforehand can stand in its way or be written through.
    pub(crate) fn save(&self, path: &Path) -> io::Result<()> {
        let text = serde_json::json!({
            "after": self.after.map(Stamp::format),
            "offset": self.offset,
            "fingerprint": self.fingerprint.map(|f| format!("{f:016x}")),
            "check": self.check(),
        })
        .to_string();
        save_atomically(path, text.as_bytes())
    }
}

/// Writes `text` to `path` atomically (a temporary file of its own, created exclusively, fsync,
/// rename, then the directory synced), `0640`: what a follower keeps beside the logs.
pub(crate) fn save_atomically(path: &Path, text: &[u8]) -> io::Result<()> {
    let (tmp, mut file) = create_temporary(path)?;
    let written = file.write_all(text).and_then(|()| file.sync_data()).and_then(|()| fs::rename(&tmp, path));
    if let Err(error) = written {
        let _ = safe_fs::remove_regular(&tmp);
        return Err(error);
    }
    // The rename itself must survive a power loss, or the cursor moves back.
    if let Some(dir) = path.parent() {
        if let Ok(dir) = fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// A follower's saved cursor, as loaded and checked at its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Saved {
    /// No cursor was saved yet.
    None,
    /// A cursor that names a place the family can hold.
    Trusted(Cursor),
    /// A cursor that cannot be trusted (unreadable, damaged, edited, or naming backups that are
    /// not there), and why: the follower goes back to what it can prove was delivered.
    Damaged(String),
}

impl Saved {
    /// Loads the cursor saved at `path` for the family of `name` in `dir`, and checks it against
    /// the family as of `now` ([`Cursor::check_against`]).
    pub(crate) fn load(path: &Path, dir: &Path, name: &str, now: SystemTime) -> Saved {
        match Cursor::load(path) {
            Ok(None) => Saved::None,
            Ok(Some(cursor)) => match cursor.check_against(dir, name, now) {
                Ok(Ok(())) => Saved::Trusted(cursor),
                Ok(Err(why)) => Saved::Damaged(format!("{}: {why}", path.display())),
                Err(error) => Saved::Damaged(format!(
                    "{}: the backups of {name} cannot be listed to check it ({error})",
                    path.display()
                )),
            },
            Err(error) => Saved::Damaged(error.to_string()),
        }
    }
}

/// The prefix of the temporary files [`Cursor::save`] makes beside `path`: `<name>.tmp.`, then a
/// number of the process and one of the save.
fn temporary_prefix(path: &Path) -> String {
    format!("{}.tmp.", path.file_name().map_or_else(String::new, |name| name.to_string_lossy().into_owned()))
}

/// Creates, exclusively, a temporary file beside `path` with a name no earlier save used.
fn create_temporary(path: &Path) -> io::Result<(PathBuf, fs::File)> {
    static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let prefix = temporary_prefix(path);
    let mut last_error = None;
    for _ in 0..16 {
        let save = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let tmp = path.with_file_name(format!("{prefix}{}.{save}.{nanos:09}", std::process::id()));
        match safe_fs::create_new(&tmp, safe_fs::FILE_MODE, false) {
            Ok(file) => return Ok((tmp, file)),
            // Planted (or left by a crash of a process with the same id): another name.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => last_error = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no temporary name was free")))
}

/// Removes the temporary files of saves of the cursor at `path` that a crash left behind (only
/// regular files; anything else planted there is left alone, and is in no save's way).
pub(crate) fn remove_stale_temporaries(path: &Path) {
    let (Some(dir), prefix) = (path.parent(), temporary_prefix(path)) else { return };
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_str().is_some_and(|name| name.starts_with(&prefix)) {
            let _ = safe_fs::remove_regular(&entry.path());
        }
    }
}

/// The FNV-1a hash of a file's first line: cheap, stable across versions, and enough to tell two
/// log files apart (their first lines differ at least in their microsecond timestamps).
fn fingerprint(first_line: &[u8]) -> u64 {
    first_line.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// What a read found besides lines.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Followed {
    /// Times the file a cursor named was gone (deleted by retention) before it was read to its
    /// end, or was damaged (below): the lines after the cursor in it are lost to the follower.
    pub(crate) skipped: u64,
    /// Backups whose gzip stream turned out damaged (truncated, corrupt), with what was wrong:
    /// what follows the damage cannot be read, and reading went on with the next file. Each is
    /// also counted in `skipped`.
    pub(crate) damaged: Vec<String>,
    /// The same backups as `damaged`, each as its path and what was wrong with it.
    pub(crate) damaged_at: Vec<(PathBuf, String)>,
    /// The cursor named a place past the end of its file (a cursor moved forward, by damage or
    /// by hand), with what was found: that file is read again from its start, since no line of
    /// it is known to have been read (duplicates rather than loss).
    pub(crate) cursor_damage: Vec<String>,
    /// Of `skipped`, the backups of which only a `.gz.tmp` was left (a compression cut short
    /// whose plain file was removed since): nothing of them was there to read.
    pub(crate) debris: u64,
}

/// Which file is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// A backup, complete: at its end, the next file follows.
    Backup(Stamp),
    /// The current file, which may still grow or be rotated away.
    Current(Identity),
    /// What was the current file until a rotation (the identity it had): complete now, read to
    /// its end.
    Rotated(Identity),
}

/// A plain file as the follower reads it (in tests, one that can fail a read on demand).
#[cfg(not(test))]
type PlainFile = fs::File;
#[cfg(test)]
type PlainFile = tests::FailingRead;

/// An open file's reader: a plain file can go back to a line's start, a gzip stream cannot.
enum Source {
    Plain(BufReader<PlainFile>),
    Gz(BufReader<flate2::read::MultiGzDecoder<fs::File>>),
}

impl Source {
    fn reader(&mut self) -> &mut (dyn BufRead + Send) {
        match self {
            Source::Plain(reader) => reader,
            Source::Gz(reader) => reader,
        }
    }
}

/// The file being read, open at the cursor.
struct Open {
    reader: Source,
    reading: Reading,
    /// The file's path as opened (a backup's name, or the current file's).
    path: PathBuf,
    /// A gzipped backup: a decoding error there is damage, not a failure to read.
    gz: bool,
}

impl std::fmt::Debug for Open {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Open").field("reading", &self.reading).finish_non_exhaustive()
    }
}

/// A reader of the family of `name` in `dir` (see the module doc).
#[derive(Debug)]
pub(crate) struct Follower {
    dir: PathBuf,
    name: String,
    cursor: Cursor,
    open: Option<Open>,
    /// The fingerprint of the file just read to its end, in case it still looks like the next one.
    finished: Option<u64>,
    /// A backup whose `.gz` turned out damaged while its plain file is still there (a crash
    /// between the two, which the start's repair redoes): read from the plain file.
    damaged_gz: Option<Stamp>,
    /// Lists the backups as a reader does (any owner; [`Filter::Reader`](backup::Filter)), not as
    /// the logger does: a tool run by another user than the logger's.
    any_owner: bool,
    /// For a tool's follower: the next open takes the current file, which the cursor names still,
    /// rather than a backup that appeared beside it (see `try_open`).
    hold_current: bool,
    /// A tool's follower keeps the current file open between reads, at the end of its whole
    /// lines, as `tail -f` always did: lines written to it, then rotated and deleted by retention
    /// before the next read, are still read through the open descriptor.
    keep_open: bool,
}

impl Follower {
    /// A follower of `dir/name` starting at `cursor`.
    pub(crate) fn new(dir: &Path, name: &str, cursor: Cursor) -> Self {
        Follower {
            dir: dir.to_path_buf(),
            name: name.to_owned(),
            cursor,
            open: None,
            finished: None,
            damaged_gz: None,
            any_owner: false,
            hold_current: false,
            keep_open: false,
        }
    }

    /// A tool's follower (see [`of_any_owner`](Self::of_any_owner)) that begins in `file`, open
    /// already (the current file of `dir/name` as the tool read it, whatever its path names by
    /// now), at byte `offset`, the file after the backup `after`: it reads on through that
    /// descriptor, so nothing written to the file after the tool read it is lost to a rotation
    /// and a deletion before the follower's first read.
    pub(crate) fn in_open_file(
        dir: &Path,
        name: &str,
        after: Option<Stamp>,
        mut file: fs::File,
        offset: u64,
    ) -> io::Result<Self> {
        let identity = Identity::of(&file.metadata()?);
        file.seek(SeekFrom::Start(0))?;
        let fingerprint = first_line_hash_of(&mut file, false)?;
        file.seek(SeekFrom::Start(offset))?;
        #[cfg(test)]
        let file = tests::FailingRead::wrap(file);
        let mut follower = Follower::new(dir, name, Cursor { after, offset, fingerprint }).of_any_owner();
        follower.open = Some(Open {
            reader: Source::Plain(BufReader::with_capacity(256 * 1024, file)),
            reading: Reading::Current(identity),
            path: dir.join(name),
            gz: false,
        });
        Ok(follower)
    }

    /// A follower for a tool (the `chimera-log` command, through [`crate::read`]), which may run
    /// as another user than the logger: it takes backups of any owner, as
    /// [`read::backup_listing`](crate::read::backup_listing) lists them.
    pub(crate) fn of_any_owner(mut self) -> Self {
        self.any_owner = true;
        self.keep_open = true;
        self
    }

    /// Whether the backup `stamp` of the family is the file the cursor names: the file this
    /// follower has open as the current file (or had, until a rotation made it that backup), or,
    /// with none open, the file its cursor is in the middle of. `None` when that cannot be told
    /// any more (the backup is gone, or the file has no whole first line to know it by). A
    /// backup is never the file of a follower reading a backup, or at the start of a file.
    pub(crate) fn is_the_cursors_file(&self, stamp: Stamp) -> Option<bool> {
        let identity = match self.open.as_ref().map(|open| open.reading) {
            Some(Reading::Current(identity) | Reading::Rotated(identity)) => Some(identity),
            Some(Reading::Backup(_)) => return Some(false),
            None if self.cursor.fingerprint.is_none() => return Some(false),
            None => None,
        };
        match fs::symlink_metadata(backup::plain_path(&self.dir, &self.name, stamp)) {
            Ok(metadata) => match identity {
                Some(identity) => return Some(Identity::of(&metadata) == identity),
                None => {
                    let hash = first_line_hash(&backup::plain_path(&self.dir, &self.name, stamp), false);
                    match hash {
                        Ok(hash) => return Some(hash.is_some() && hash == self.cursor.fingerprint),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(_) => return None,
                    }
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => return None,
        }
        // Compressed since: a new file, known by its first line.
        let fingerprint = self.cursor.fingerprint?;
        match first_line_hash(&backup::gz_path(&self.dir, &self.name, stamp), true) {
            Ok(hash) => Some(hash == Some(fingerprint)),
            Err(_) => None,
        }
    }

    /// The backups of the family as of `now`, by this follower's listing.
    fn list(&self, now: SystemTime) -> io::Result<backup::Backups> {
        if self.any_owner {
            backup::list(&self.dir, &self.name, backup::Filter::Reader { now }).map(|(backups, _)| backups)
        } else {
            backup::list_backups(&self.dir, &self.name, now)
        }
    }

    /// Where the follower is: just after the last line it gave.
    pub(crate) fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// The file the last line given was read from (a backup's path, `.gz` or plain, or the
    /// current file's); `None` before the first line and between files.
    pub(crate) fn reading_path(&self) -> Option<&Path> {
        self.open.as_ref().map(|open| open.path.as_path())
    }

    /// A cursor at the end of the whole lines the family holds now (for a follower that starts
    /// without a saved cursor and ships only what comes from now on).
    #[cfg_attr(not(feature = "cloudwatch"), allow(dead_code))]
    pub(crate) fn cursor_at_end(dir: &Path, name: &str, now: SystemTime) -> io::Result<Cursor> {
        let path = dir.join(name);
        for _ in 0..OPEN_ATTEMPTS {
            let listed = backup::list_backups(dir, name, now)?;
            let after = newest(&listed);
            let fingerprint = match first_line_hash(&path, false) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                other => other?,
            };
            let offset = match fingerprint.map(|_| last_line_end(&path)) {
                Some(Ok(offset)) => offset,
                // Renamed away since its first line was read: a rotation, measured again below.
                Some(Err(e)) if e.kind() == io::ErrorKind::NotFound => 0,
                Some(Err(e)) => return Err(e),
                None => 0,
            };
            // A rotation since the listing: the fingerprint or the offset may be the next
            // file's, with the stamp before the last one (a cursor that would read a whole file
            // again, or name a spot in one file by another's offset).
            if newest(&backup::list_backups(dir, name, now)?) == after {
                return Ok(Cursor { after, offset, fingerprint });
            }
        }
        Err(io::Error::other(format!(
            "the files of {name} in {} kept rotating while their end was looked for ({OPEN_ATTEMPTS} attempts)",
            dir.display()
        )))
    }

    /// Reads the next whole line into `line` (its newline included) and returns the cursor just
    /// after it; `None` at the end of what the current file holds now.
    pub(crate) fn next_line(
        &mut self,
        line: &mut Vec<u8>,
        followed: &mut Followed,
        now: SystemTime,
    ) -> io::Result<Option<Cursor>> {
        Ok(self.next(line, Mode::Whole, followed, now)?.map(|got| got.cursor))
    }

    /// Reads the next line as [`next_line`](Self::next_line) does, but never holds more than
    /// `cap` bytes of it: a longer line is read through to its newline, counted, and given with
    /// its length only (`line` left empty), so a damaged file, a gzip bomb or a line growing
    /// without its newline cannot make memory grow with it. `line` gets the line without its
    /// newline. Unlike [`next_line`](Self::next_line), the last line of a complete file (a backup,
    /// or the current file rotated away) without a newline is given (`terminated: false`): no one
    /// writes to that file any more, so it is a torn line to show, not one being written. The
    /// current file's is left for the next read unless `torn_current` (a directory no logger
    /// holds, where it is a torn line too).
    pub(crate) fn next_line_capped(
        &mut self,
        line: &mut Vec<u8>,
        cap: usize,
        torn_current: bool,
        followed: &mut Followed,
        now: SystemTime,
    ) -> io::Result<Option<CappedLine>> {
        self.next(line, Mode::Capped { cap, torn_current }, followed, now)
    }

    fn next(
        &mut self,
        line: &mut Vec<u8>,
        mode: Mode,
        followed: &mut Followed,
        now: SystemTime,
    ) -> io::Result<Option<CappedLine>> {
        #[cfg(test)]
        if reads_fail_here(&self.dir) {
            return Err(io::Error::other("a read failure injected by a test"));
        }
        let read = self.read_line(line, mode, followed, now);
        if read.is_err() {
            // The failed read may have taken the start of a line: the next one opens the file
            // again at the cursor, which is still before it.
            self.open = None;
        }
        read
    }

    fn read_line(
        &mut self,
        line: &mut Vec<u8>,
        mode: Mode,
        followed: &mut Followed,
        now: SystemTime,
    ) -> io::Result<Option<CappedLine>> {
        let mut head = Vec::new();
        loop {
            if self.open.is_none() && !self.open_file(followed, now)? {
                return Ok(None);
            }
            let open = self.open.as_mut().expect("opened above");
            let at_start = self.cursor.offset == 0;
            let read = match mode {
                Mode::Whole => {
                    line.clear();
                    open.reader.reader().read_until(b'\n', line).map(|read| {
                        let terminated = line.ends_with(b"\n");
                        (read as u64, terminated, (read - usize::from(terminated)) as u64)
                    })
                }
                Mode::Capped { cap, .. } => read_capped(open.reader.reader(), line, cap, at_start.then_some(&mut head)),
            };
            let (read, terminated, length) = match read {
                Ok(read) => read,
                Err(error) => match open.reading {
                    Reading::Backup(stamp) if open.gz && is_damage(&error) => {
                        self.pass_damaged(stamp, &error, followed);
                        continue;
                    }
                    _ => return Err(error),
                },
            };
            let capped = match mode {
                Mode::Whole => None,
                Mode::Capped { cap, torn_current } => Some((cap, torn_current)),
            };
            // A first line's fingerprint, once it is whole (or as long as the prefix hashed).
            let first = match capped {
                None => terminated.then(|| line_fingerprint(line)),
                Some(_) => (terminated || head.len() == FINGERPRINT_PREFIX).then(|| fingerprint(&head)),
            };
            let give = |follower: &mut Follower| {
                let start = follower.cursor.offset;
                if start == 0 && first.is_some() {
                    follower.cursor.fingerprint = first;
                }
                follower.cursor.offset += read;
                let kept = capped.is_none_or(|(cap, _)| length <= cap as u64);
                Some(CappedLine { cursor: follower.cursor, start, length, kept, terminated })
            };
            if read > 0 && terminated {
                return Ok(give(self));
            }
            let reading = open.reading;
            match reading {
                Reading::Current(identity) if self.still_current(identity)? => {
                    if read > 0 && capped.is_some_and(|(_, torn_current)| torn_current) {
                        return Ok(give(self));
                    }
                    // A line being written, or nothing yet: read again from the cursor next time,
                    // through the same descriptor if this follower keeps it.
                    if !(self.keep_open && self.back_to_cursor(read)?) {
                        self.open = None;
                    }
                    return Ok(None);
                }
                Reading::Current(identity) if read > 0 => {
                    // Rotated, with the start of a line read: the writer finished it before the
                    // rename; read it again whole, through the same descriptor if this follower
                    // keeps it (the backup may be deleted by now), else from the backup the file
                    // has become.
                    if self.keep_open && self.back_to_cursor(read)? {
                        if let Some(open) = self.open.as_mut() {
                            open.reading = Reading::Rotated(identity);
                        }
                    } else {
                        self.open = None;
                    }
                }
                Reading::Current(identity) => {
                    // Rotated since: lines written just before the rename may follow; read on to
                    // the end of the file now that nothing more is written into it.
                    if let Some(open) = self.open.as_mut() {
                        open.reading = Reading::Rotated(identity);
                    }
                }
                // A complete file's torn last line: given by a capped read (a tool shows it).
                Reading::Rotated(_) | Reading::Backup(_) if read > 0 && capped.is_some() => return Ok(give(self)),
                Reading::Rotated(_) => self.next_file(None, now)?,
                Reading::Backup(stamp) => self.next_file(Some(stamp), now)?,
            }
        }
    }

    /// Puts the open plain file back at the cursor, before the `read` bytes of a line not finished
    /// yet; `false` when it cannot be (a gzip stream), and the file must be opened again.
    fn back_to_cursor(&mut self, read: u64) -> io::Result<bool> {
        match self.open.as_mut().map(|open| &mut open.reader) {
            Some(Source::Plain(reader)) => {
                if read > 0 {
                    reader.seek(SeekFrom::Start(self.cursor.offset))?;
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Whether the current file at the path is still the one with `identity`.
    fn still_current(&self, identity: Identity) -> io::Result<bool> {
        match fs::symlink_metadata(self.dir.join(&self.name)) {
            Ok(metadata) => Ok(Identity::of(&metadata) == identity),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The file the cursor names has been read to its end: moves the cursor to the start of the
    /// file after it. `stamp` is the file's backup stamp if known; a file that was current when
    /// opened is found among the backups by its fingerprint (if retention already deleted it,
    /// the next file is after the same stamp as before).
    fn next_file(&mut self, stamp: Option<Stamp>, now: SystemTime) -> io::Result<()> {
        self.open = None;
        let stamp = match stamp {
            Some(stamp) => Some(stamp),
            None => {
                let mut found = None;
                for (candidate, files) in self.list(now)? {
                    if self.cursor.after.is_some_and(|after| candidate <= after) {
                        continue;
                    }
                    if backup_first_line_hash(&self.dir, &self.name, candidate, &files).ok().flatten()
                        == self.cursor.fingerprint
                    {
                        found = Some(candidate);
                        break;
                    }
                }
                found
            }
        };
        self.finished = self.cursor.fingerprint;
        self.cursor = Cursor { after: stamp.or(self.cursor.after), offset: 0, fingerprint: None };
        Ok(())
    }

    /// Opens the file the cursor names at the cursor's offset; `false` when there is nothing to
    /// open yet.
    fn open_file(&mut self, followed: &mut Followed, now: SystemTime) -> io::Result<bool> {
        // The family can change between the listing and the open (a rotation, a compression):
        // then look again rather than conclude that a file is gone. Each change is one the
        // writer made, and a listing takes far less time than a rotation, so this ends at once
        // in practice; giving up is an error, not "nothing more to read" (a flush would be
        // answered with lines still unread).
        let mut attempts = 0;
        while attempts < OPEN_ATTEMPTS {
            let before = self.cursor;
            match self.try_open(followed, now)? {
                Opened::Yes => return Ok(true),
                Opened::NotYet => return Ok(false),
                // Past a file (one just finished, or debris): progress, bounded by the backups.
                Opened::LookAgain if self.cursor != before => {}
                Opened::LookAgain => attempts += 1,
            }
        }
        Err(io::Error::other(format!(
            "the files of {} in {} kept changing while being opened ({OPEN_ATTEMPTS} attempts); reading goes on \
             from the same place at the next attempt",
            self.name,
            self.dir.display()
        )))
    }

    fn try_open(&mut self, followed: &mut Followed, now: SystemTime) -> io::Result<Opened> {
        let backups = self.list(now)?;
        #[cfg(test)]
        if let Some(mut hook) = tests::AFTER_LISTING.with(|hook| hook.borrow_mut().take()) {
            hook();
        }
        let newer = |after: Option<Stamp>| backups.iter().filter(move |(stamp, _)| after.is_none_or(|a| *stamp > a));
        let (path, gz, backup_stamp) = match newer(self.cursor.after).next() {
            _ if std::mem::take(&mut self.hold_current) => (self.dir.join(&self.name), false, None),
            Some((stamp, files)) if files.gz && !(files.plain && self.damaged_gz == Some(*stamp)) => {
                (backup::gz_path(&self.dir, &self.name, *stamp), true, Some(*stamp))
            }
            Some((stamp, files)) if files.plain => {
                (backup::plain_path(&self.dir, &self.name, *stamp), false, Some(*stamp))
            }
            // Only a `.gz.tmp` left of it (compression renames the `.gz` into place before it
            // removes the plain file, so this is the debris of a crash, not a step in progress):
            // nothing readable is left of that backup; count it and go past it.
            Some((stamp, _)) => {
                followed.skipped += 1;
                followed.debris += 1;
                self.cursor = Cursor { after: Some(*stamp), offset: 0, fingerprint: None };
                return Ok(Opened::LookAgain);
            }
            None => (self.dir.join(&self.name), false, None),
        };
        let mut file = match safe_fs::open_read(&path) {
            Ok(file) => file,
            // Renamed or compressed since the listing.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if backup_stamp.is_some() {
                    return Ok(Opened::LookAgain);
                }
                // No current file: none yet, or a rotation between its rename and the next file's
                // creation. Then the file the cursor names is a backup now, with lines to read.
                return Ok(if self.rotated_since(&backups, now)? { Opened::LookAgain } else { Opened::NotYet });
            }
            // Something planted at the current file's name (a link, a FIFO) is not the file the
            // logger writes: the sink refuses it and holds its lines until it is gone, so there is
            // nothing to read yet.
            Err(e) if e.kind() == io::ErrorKind::InvalidInput && backup_stamp.is_none() => return Ok(Opened::NotYet),
            Err(e) => return Err(e),
        };
        // Identity and first line from this one descriptor, whatever the path names by now.
        let identity = Identity::of(&file.metadata()?);
        let hash = match (first_line_hash_of(&mut file, gz), backup_stamp) {
            (Ok(hash), _) => hash,
            (Err(error), Some(stamp)) if gz && is_damage(&error) => {
                return Ok(self.pass_damaged(stamp, &error, followed))
            }
            (Err(error), _) => return Err(error),
        };
        file.seek(SeekFrom::Start(0))?;
        if let (Some(finished), Some(hash), Some(stamp)) = (self.finished, hash, backup_stamp) {
            if finished == hash && self.cursor.offset == 0 {
                // The file just finished, found under its backup name: go past it.
                self.finished = None;
                self.cursor.after = Some(stamp);
                return Ok(Opened::LookAgain);
            }
        }
        let same_file = match self.cursor.fingerprint {
            None => self.cursor.offset == 0,
            Some(expected) => hash == Some(expected),
        };
        // A cursor without a fingerprint (at the start of a file not read yet) takes whatever file
        // is at the current path, so it cannot tell that the one it names was rotated away before
        // the open and this is the file after it: check for a rotation then too, or that file is
        // passed over unread, and uncounted.
        // The current file rotated between the listing and the open: the file the cursor names
        // is a backup now.
        if backup_stamp.is_none()
            && (!same_file || self.cursor.fingerprint.is_none())
            && self.rotated_since(&backups, now)?
        {
            return Ok(Opened::LookAgain);
        }
        if !same_file
            && self.any_owner
            && backup_stamp.is_some()
            && self.cursor.fingerprint.is_some()
            && first_line_hash(&self.dir.join(&self.name), false).ok().flatten() == self.cursor.fingerprint
        {
            // A tool's follower: the file the cursor names is still the current file, so this
            // backup was not made by its rotation (it was put there, or a rename is half done):
            // read on in the current file; the backup comes after it.
            self.hold_current = true;
            return Ok(Opened::LookAgain);
        }
        if !same_file {
            followed.skipped += 1;
            self.cursor.offset = 0;
            self.cursor.fingerprint = None;
        }
        let reader = if gz {
            let mut decoder = flate2::read::MultiGzDecoder::new(file);
            match (io::copy(&mut (&mut decoder).take(self.cursor.offset), &mut io::sink()), backup_stamp) {
                (Ok(skipped), _) if skipped < self.cursor.offset => {
                    self.past_the_end(&path, skipped, followed);
                    return Ok(Opened::LookAgain);
                }
                (Ok(_), _) => {}
                (Err(error), Some(stamp)) if is_damage(&error) => return Ok(self.pass_damaged(stamp, &error, followed)),
                (Err(error), _) => return Err(error),
            }
            Source::Gz(BufReader::with_capacity(256 * 1024, decoder))
        } else {
            let length = file.metadata()?.len();
            if self.cursor.offset > length {
                self.past_the_end(&path, length, followed);
                return Ok(Opened::LookAgain);
            }
            file.seek(SeekFrom::Start(self.cursor.offset))?;
            #[cfg(test)]
            let file = tests::FailingRead::wrap(file);
            Source::Plain(BufReader::with_capacity(256 * 1024, file))
        };
        let reading = match backup_stamp {
            Some(stamp) => Reading::Backup(stamp),
            None => Reading::Current(identity),
        };
        self.open = Some(Open { reader, reading, gz, path });
        Ok(Opened::Yes)
    }

    /// The cursor's offset is past the end (`length`) of the file it names, `path`: nothing in
    /// the file is known to be read, so it is read again from its start (the next attempt opens
    /// it there); noted in `followed`.
    fn past_the_end(&mut self, path: &Path, length: u64, followed: &mut Followed) {
        followed.cursor_damage.push(format!(
            "the cursor is at byte {} of {}, which holds {length} bytes",
            self.cursor.offset,
            path.display()
        ));
        self.cursor.offset = 0;
        self.cursor.fingerprint = None;
    }

    /// Whether the current file was rotated since `listed` was listed. A rotation always adds
    /// the newest stamp; the count alone can stay the same when retention removed the oldest
    /// meanwhile.
    fn rotated_since(&self, listed: &backup::Backups, now: SystemTime) -> io::Result<bool> {
        Ok(newest(&self.list(now)?) != newest(listed))
    }

    /// The gzipped backup `stamp` is damaged. With its plain file still beside it, that is read
    /// instead. Otherwise what follows the damage cannot be read, by this follower or anyone,
    /// and stopping here for good would stop every line after it: counted and noted
    /// (`followed`), and reading goes on with the next file.
    fn pass_damaged(&mut self, stamp: Stamp, error: &io::Error, followed: &mut Followed) -> Opened {
        self.open = None;
        if self.damaged_gz != Some(stamp)
            && fs::symlink_metadata(backup::plain_path(&self.dir, &self.name, stamp)).is_ok_and(|m| m.is_file())
        {
            // The plain file is still there: the same lines, from the same cursor.
            self.damaged_gz = Some(stamp);
            return Opened::LookAgain;
        }
        followed.skipped += 1;
        let path = backup::gz_path(&self.dir, &self.name, stamp);
        followed.damaged.push(format!("{}: {error}", path.display()));
        followed.damaged_at.push((path, error.to_string()));
        self.cursor = Cursor { after: Some(stamp), offset: 0, fingerprint: None };
        Opened::LookAgain
    }
}

/// The newest backup's stamp.
fn newest(backups: &backup::Backups) -> Option<Stamp> {
    backups.last().map(|(stamp, _)| *stamp)
}

/// How many times [`Follower::open_file`] looks again at a family that changed under it.
const OPEN_ATTEMPTS: usize = 100;

/// What one attempt to open the cursor's file found.
#[derive(Debug)]
enum Opened {
    Yes,
    /// Nothing to read yet (no current file).
    NotYet,
    /// The family changed under the attempt, or the cursor moved past a file: try again.
    LookAgain,
}

/// How [`Follower::read_line`] reads a line.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Whole, however long ([`Follower::next_line`]).
    Whole,
    /// At most `cap` bytes kept ([`Follower::next_line_capped`]).
    Capped { cap: usize, torn_current: bool },
}

/// What [`Follower::next_line_capped`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CappedLine {
    /// The cursor just after the line.
    pub(crate) cursor: Cursor,
    /// Where in its file (uncompressed) the line begins.
    pub(crate) start: u64,
    /// The line's length in bytes, without its newline.
    pub(crate) length: u64,
    /// Whether its bytes were kept: no longer than the cap.
    pub(crate) kept: bool,
    /// Whether it ended with a newline (otherwise: the torn end of a complete file).
    pub(crate) terminated: bool,
}

/// Reads one line from `reader` into `line` (without its newline), keeping its bytes only while
/// it is at most `cap` bytes long; with `head`, its first [`FINGERPRINT_PREFIX`] bytes (newline
/// included) go there too, for the fingerprint. Returns the bytes consumed, whether a newline
/// ended the line, and its length without the newline (0 bytes consumed: the end). The one
/// capped line reader: `read::read_line_capped` is this without the head.
pub(crate) fn read_capped(
    reader: &mut (impl BufRead + ?Sized),
    line: &mut Vec<u8>,
    cap: usize,
    mut head: Option<&mut Vec<u8>>,
) -> io::Result<(u64, bool, u64)> {
    line.clear();
    if let Some(head) = head.as_mut() {
        head.clear();
    }
    let (mut consumed, mut length) = (0u64, 0u64);
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok((consumed, false, length));
        }
        let (text, used, terminated) = match buf.iter().position(|&b| b == b'\n') {
            Some(at) => (at, at + 1, true),
            None => (buf.len(), buf.len(), false),
        };
        if let Some(head) = head.as_mut() {
            let room = FINGERPRINT_PREFIX - head.len();
            head.extend_from_slice(&buf[..used.min(room)]);
        }
        length += text as u64;
        if length <= cap as u64 {
            line.extend_from_slice(&buf[..text]);
        } else {
            line.clear();
        }
        reader.consume(used);
        consumed += used as u64;
        if terminated {
            return Ok((consumed, true, length));
        }
    }
}

/// Whether an error reading a gzip stream says the stream is damaged (flate2's words for a
/// corrupt deflate stream, a bad header or checksum, and a truncated file).
fn is_damage(error: &io::Error) -> bool {
    // An error of the file system itself (flate2 passes them through) is not about the stream.
    error.raw_os_error().is_none()
        && matches!(
            error.kind(),
            io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
        )
}

/// The fingerprint covers at most this much of a first line, so that it is the same whether
/// taken from a whole line read by the follower or from a file's start.
const FINGERPRINT_PREFIX: usize = 4096;

/// The fingerprint of a first line (its newline included), or of its first
/// [`FINGERPRINT_PREFIX`] bytes when it is longer.
fn line_fingerprint(line: &[u8]) -> u64 {
    fingerprint(&line[..line.len().min(FINGERPRINT_PREFIX)])
}

/// The fingerprint of the first line read from `file` (gunzipped if `gz`), if it has a whole
/// one (or at least [`FINGERPRINT_PREFIX`] bytes of one).
fn first_line_hash_of(file: &mut fs::File, gz: bool) -> io::Result<Option<u64>> {
    let reader: Box<dyn Read + '_> =
        if gz { Box::new(flate2::read::MultiGzDecoder::new(&*file)) } else { Box::new(&*file) };
    let mut first = Vec::new();
    BufReader::new(reader.take(FINGERPRINT_PREFIX as u64)).read_until(b'\n', &mut first)?;
    Ok((first.ends_with(b"\n") || first.len() == FINGERPRINT_PREFIX).then(|| fingerprint(&first)))
}

/// The fingerprint of the first line of the file at `path` (gunzipped if `gz`).
fn first_line_hash(path: &Path, gz: bool) -> io::Result<Option<u64>> {
    first_line_hash_of(&mut safe_fs::open_read(path)?, gz)
}

fn backup_first_line_hash(
    dir: &Path,
    name: &str,
    stamp: Stamp,
    files: &backup::BackupFiles,
) -> io::Result<Option<u64>> {
    if files.gz {
        first_line_hash(&backup::gz_path(dir, name, stamp), true)
    } else {
        first_line_hash(&backup::plain_path(dir, name, stamp), false)
    }
}

/// The offset just after the last newline of the file at `path`.
#[cfg_attr(not(feature = "cloudwatch"), allow(dead_code))]
fn last_line_end(path: &Path) -> io::Result<u64> {
    let mut file = safe_fs::open_read(path)?;
    let mut at = file.metadata()?.len();
    let mut block = vec![0u8; 64 * 1024];
    while at > 0 {
        let start = at.saturating_sub(block.len() as u64);
        let size = (at - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block[..size])?;
        if let Some(newline) = block[..size].iter().rposition(|&b| b == b'\n') {
            return Ok(start + newline as u64 + 1);
        }
        at = start;
    }
    Ok(0)
}

/// Test hook: every read of a follower of a family in this directory fails (no file system here
/// fails a read on demand).
#[cfg(test)]
pub(crate) static READS_FAIL_IN: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

#[cfg(test)]
fn reads_fail_here(dir: &Path) -> bool {
    let failing = READS_FAIL_IN.lock().unwrap_or_else(|e| e.into_inner());
    failing.as_ref().is_some_and(|failing| fs::canonicalize(dir).is_ok_and(|dir| dir == *failing))
}

#[cfg(test)]
pub(crate) use tests::after_next_listing;

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    const NAME: &str = "chimera.log";

    thread_local! {
        /// Runs once, in `try_open` between its listing and its open (then is cleared).
        pub(super) static AFTER_LISTING: std::cell::RefCell<Option<Box<dyn FnMut()>>> =
            const { std::cell::RefCell::new(None) };
        /// The next plain file opened gives this many bytes, then fails its next read once.
        static FAIL_READ_AFTER: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
    }

    /// A file that fails one read after giving `left` bytes (a disk error mid-line).
    pub(super) struct FailingRead {
        file: fs::File,
        left: Option<usize>,
    }

    impl FailingRead {
        pub(super) fn wrap(file: fs::File) -> Self {
            FailingRead { file, left: FAIL_READ_AFTER.with(std::cell::Cell::take) }
        }
    }

    impl Seek for FailingRead {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            self.file.seek(to)
        }
    }

    impl Read for FailingRead {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.left {
                Some(0) => {
                    self.left = None;
                    Err(io::Error::other("an injected read error"))
                }
                Some(left) => {
                    let take = left.min(buf.len());
                    let read = self.file.read(&mut buf[..take])?;
                    self.left = Some(left - read);
                    Ok(read)
                }
                None => self.file.read(buf),
            }
        }
    }

    #[test]
    fn a_read_error_in_the_middle_of_a_line_reads_the_whole_line_again_not_its_rest() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        append(&d, "first line\nsecond line\n");
        let mut followed = Followed::default();
        let mut follower = Follower::new(&d, NAME, Cursor::default());
        let mut line = Vec::new();
        FAIL_READ_AFTER.with(|after| after.set(Some(5)));
        assert!(follower.next_line(&mut line, &mut followed, SystemTime::now()).is_err());
        let cursor = follower.next_line(&mut line, &mut followed, SystemTime::now()).unwrap().unwrap();
        assert_eq!(String::from_utf8_lossy(&line), "first line\n");
        assert_eq!(cursor.offset, 11);
        assert_eq!(read_all(&mut follower, &mut followed), ["second line"]);
        assert_eq!(followed, Followed::default());
    }

    #[test]
    fn a_rotation_and_a_retention_between_the_listing_and_the_open_do_not_skip_the_rotated_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        append(&d, "a1\n");
        rotate(&d, 1);
        append(&d, "b1\n");
        let mut followed = Followed::default();
        let mut follower = Follower::new(&d, NAME, Cursor::default());
        assert_eq!(read_all(&mut follower, &mut followed), ["a1", "b1"]);
        append(&d, "b2\n");
        // Between the follower's listing and its open of the current file: the writer rotates,
        // and retention removes the oldest backup (read already), so the count stays the same.
        let hook_dir = d.clone();
        after_next_listing(move || {
            rotate(&hook_dir, 2);
            fs::remove_file(backup::plain_path(&hook_dir, NAME, stamp(1))).unwrap();
            append(&hook_dir, "c1\n");
        });
        assert_eq!(read_all(&mut follower, &mut followed), ["b2", "c1"]);
        assert_eq!(followed, Followed::default());
    }

    #[test]
    fn a_rotation_between_the_listing_and_the_open_of_a_file_not_read_yet_does_not_skip_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        append(&d, "a1\n");
        rotate(&d, 1);
        let mut followed = Followed::default();
        let mut follower = Follower::new(&d, NAME, Cursor::default());
        // The cursor is now at the start of the current file (none yet): no fingerprint.
        assert_eq!(read_all(&mut follower, &mut followed), ["a1"]);
        append(&d, "b1\n");
        // Between the follower's listing and its open of the current file: the writer rotates
        // the file the cursor names and starts the next one.
        let hook_dir = d.clone();
        after_next_listing(move || {
            rotate(&hook_dir, 2);
            append(&hook_dir, "c1\n");
        });
        assert_eq!(read_all(&mut follower, &mut followed), ["b1", "c1"]);
        assert_eq!(followed, Followed::default());
    }

    /// The second round's failure in CI: the compression of the backup after the cursor's ended
    /// between the listing's read of the directory and its look at that backup's name, so the
    /// listing had neither of its names and the follower went on to the backup after it.
    #[test]
    fn a_backup_compressed_while_the_family_is_listed_is_read_not_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        append(&d, "a1\n");
        rotate(&d, 1);
        let mut followed = Followed::default();
        let mut follower = Follower::new(&d, NAME, Cursor::default());
        assert_eq!(read_all(&mut follower, &mut followed), ["a1"]);
        append(&d, "b1\nb2\n");
        rotate(&d, 2);
        append(&d, "c1\n");
        rotate(&d, 3);
        append(&d, "d1\n");
        let hook_dir = d.clone();
        after_next_read_dir(move || compress(&hook_dir, 2));
        assert_eq!(read_all(&mut follower, &mut followed), ["b1", "b2", "c1", "d1"]);
        assert_eq!(followed, Followed::default());
    }

    /// Every listing is followed by a change that makes the open miss (here a backup flipping
    /// between its two names): the follower gives up with an error, never with "no more lines"
    /// (that answered a flush early), and reads on once the family holds still.
    #[test]
    fn a_family_that_keeps_changing_under_the_open_is_an_error_not_the_end_of_the_lines() {
        fn flip_after_each_listing(dir: PathBuf, flips: std::rc::Rc<std::cell::Cell<usize>>) {
            after_next_listing(move || {
                let (plain, gz) = (backup::plain_path(&dir, NAME, stamp(1)), backup::gz_path(&dir, NAME, stamp(1)));
                if plain.exists() {
                    fs::rename(&plain, &gz).unwrap();
                } else {
                    fs::rename(&gz, &plain).unwrap();
                }
                flips.set(flips.get() + 1);
                if flips.get() < 1_000 {
                    flip_after_each_listing(dir.clone(), flips.clone());
                }
            });
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        append(&d, "a1\n");
        rotate(&d, 1);
        append(&d, "b1\n");
        let mut followed = Followed::default();
        let mut follower = Follower::new(&d, NAME, Cursor::default());
        let flips = std::rc::Rc::new(std::cell::Cell::new(0));
        flip_after_each_listing(d.clone(), flips.clone());
        let mut line = Vec::new();
        let error = follower.next_line(&mut line, &mut followed, now()).unwrap_err();
        assert!(error.to_string().contains("kept changing"), "{error}");
        assert_eq!(flips.get(), OPEN_ATTEMPTS);
        AFTER_LISTING.with(|hook| hook.borrow_mut().take());
        assert_eq!(read_all(&mut follower, &mut followed), ["a1", "b1"]);
        assert_eq!(followed, Followed::default());
    }

    /// Between a rotation's rename and the creation of the next file there is no current file:
    /// the lines written to the renamed one since the last read are read from the backup, not
    /// taken for "nothing more yet" (a flush was answered with them unread).
    #[test]
    fn no_current_file_just_after_a_rotation_renamed_it_is_not_the_end_of_the_lines() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        append(&d, "a1\n");
        let mut followed = Followed::default();
        let mut follower = Follower::new(&d, NAME, Cursor::default());
        assert_eq!(read_all(&mut follower, &mut followed), ["a1"]);
        append(&d, "a2\n");
        let hook_dir = d.clone();
        after_next_listing(move || rotate(&hook_dir, 1));
        assert_eq!(read_all(&mut follower, &mut followed), ["a2"]);
        append(&d, "b1\n");
        assert_eq!(read_all(&mut follower, &mut followed), ["b1"]);
        assert_eq!(followed, Followed::default());
    }

    /// A rotation while the end is looked for: the cursor names the file it measured, after the
    /// backup before that file (it named the new file by the old one's stamp, and reading from
    /// it read the whole rotated file again).
    #[test]
    fn cursor_at_end_during_a_rotation_names_the_new_file_after_the_new_backup() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        append(&d, "old1\nold2\n");
        let hook_dir = d.clone();
        after_next_read_dir(move || {
            rotate(&hook_dir, 1);
            append(&hook_dir, "new1\n");
        });
        let cursor = Follower::cursor_at_end(&d, NAME, now()).unwrap();
        assert_eq!((cursor.after, cursor.offset), (Some(stamp(1)), "new1\n".len() as u64));
        append(&d, "new2\n");
        let mut followed = Followed::default();
        let mut follower = Follower::new(&d, NAME, cursor);
        assert_eq!(read_all(&mut follower, &mut followed), ["new2"]);
        assert_eq!(followed, Followed::default());
    }

    /// A damaged gzipped backup (cut short, or garbage from its start) is read up to the damage,
    /// counted and noted, and reading goes on with the next file: an error there stopped the
    /// follower for good (the audit store's archiver went back to it at every attempt).
    #[test]
    fn a_damaged_gzipped_backup_is_read_to_the_damage_counted_and_passed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let b: Vec<String> = (0..20_000).map(|n| format!("b{n}")).collect();
        append(d, "a1\n");
        rotate(d, 1);
        append(d, &(b.join("\n") + "\n"));
        rotate(d, 2);
        compress(d, 2);
        append(d, "c1\n");
        rotate(d, 3);
        compress(d, 3);
        append(d, "d1\n");
        // The second cut short; the third garbage after the gzip magic.
        let cut = backup::gz_path(d, NAME, stamp(2));
        let len = fs::metadata(&cut).unwrap().len();
        fs::OpenOptions::new().write(true).open(&cut).unwrap().set_len(len / 2).unwrap();
        fs::write(backup::gz_path(d, NAME, stamp(3)), b"\x1f\x8b\x08\x00garbage, not a deflate stream").unwrap();
        let mut followed = Followed::default();
        let mut follower = Follower::new(d, NAME, Cursor::default());
        let lines = read_all(&mut follower, &mut followed);
        assert_eq!((lines[0].as_str(), lines.last().unwrap().as_str()), ("a1", "d1"));
        let read_of_b = &lines[1..lines.len() - 1];
        assert!(!read_of_b.is_empty() && read_of_b.len() < b.len(), "{}", read_of_b.len());
        assert_eq!(read_of_b, &b[..read_of_b.len()], "the lines before the damage, in order");
        assert_eq!(followed.skipped, 2);
        assert_eq!(followed.damaged.len(), 2, "{:?}", followed.damaged);
        for (damaged, n) in followed.damaged.iter().zip([2, 3]) {
            assert!(damaged.contains(&format!("{NAME}.{}.gz", stamp(n).format())), "{damaged}");
        }
    }

    /// A damaged `.gz` beside its intact plain file (a crash between the two, which the start's
    /// repair redoes; or the read racing that repair): the plain file is read, nothing is passed.
    #[test]
    fn a_damaged_gz_beside_its_plain_backup_is_read_from_the_plain_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let b: Vec<String> = (0..20_000).map(|n| format!("b{n}")).collect();
        append(d, &(b.join("\n") + "\n"));
        rotate(d, 1);
        append(d, "c1\n");
        let plain = fs::read(backup::plain_path(d, NAME, stamp(1))).unwrap();
        compress(d, 1);
        fs::write(backup::plain_path(d, NAME, stamp(1)), &plain).unwrap();
        let gz = backup::gz_path(d, NAME, stamp(1));
        let len = fs::metadata(&gz).unwrap().len();
        fs::OpenOptions::new().write(true).open(&gz).unwrap().set_len(len / 2).unwrap();
        // Read partly before the damage, then from a saved cursor past it (the skip to the
        // cursor's offset meets the damage).
        let mut followed = Followed::default();
        let mut follower = Follower::new(d, NAME, Cursor::default());
        let mut line = Vec::new();
        let first = follower.next_line(&mut line, &mut followed, now()).unwrap().unwrap();
        assert_eq!(line, b"b0\n");
        let mut rest = read_all(&mut follower, &mut followed);
        assert_eq!((rest.len(), rest.pop().unwrap().as_str()), (b.len(), "c1"));
        assert_eq!(rest, b[1..]);
        let mut follower = Follower::new(d, NAME, Cursor { offset: (plain.len() - 7) as u64, ..first });
        assert_eq!(read_all(&mut follower, &mut followed), ["b19999", "c1"]);
        assert_eq!(followed, Followed::default());
    }

    /// Runs `f` once, in the next listing's `try_open`, between its listing and its open.
    pub(crate) fn after_next_listing(f: impl FnMut() + 'static) {
        AFTER_LISTING.with(|hook| *hook.borrow_mut() = Some(Box::new(f)));
    }

    /// Runs `f` once, in the next listing of backups, between its read of the directory and its
    /// look at each name.
    fn after_next_read_dir(f: impl FnMut() + 'static) {
        backup::AFTER_READ_DIR.with(|hook| *hook.borrow_mut() = Some(Box::new(f)));
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn stamp(n: i64) -> Stamp {
        Stamp(1_800_000_000_000_000 - 1_000_000 + n)
    }

    fn append(dir: &Path, text: &str) {
        let mut file = fs::OpenOptions::new().create(true).append(true).open(dir.join(NAME)).unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    fn rotate(dir: &Path, n: i64) {
        fs::rename(dir.join(NAME), backup::plain_path(dir, NAME, stamp(n))).unwrap();
    }

    fn compress(dir: &Path, n: i64) {
        backup::compress(dir, NAME, stamp(n)).unwrap();
    }

    fn read_all(follower: &mut Follower, followed: &mut Followed) -> Vec<String> {
        let mut line = Vec::new();
        let mut out = Vec::new();
        while follower.next_line(&mut line, followed, now()).unwrap().is_some() {
            out.push(String::from_utf8(line.clone()).unwrap().trim_end().to_owned());
        }
        out
    }

    /// The capped read (`chimera-log`'s, through `read::LogReader`): a line over the cap is read
    /// through and given with its length only, never held; the lines after it, in a gzipped
    /// backup and in the current file, are read whole; a first line over the cap still names
    /// its file (the fingerprint), so the file is found again after its rotation.
    #[test]
    fn a_capped_read_skips_a_line_over_the_cap_with_its_length_and_reads_on_across_a_gz_backup_and_the_current_file() {
        fn read_capped_all(follower: &mut Follower, followed: &mut Followed) -> Vec<(u64, bool, String)> {
            let mut line = Vec::new();
            let mut out = Vec::new();
            while let Some(read) = follower.next_line_capped(&mut line, 10, false, followed, now()).unwrap() {
                assert!(line.len() <= 10, "held {} bytes", line.len());
                out.push((read.length, read.kept, String::from_utf8(line.clone()).unwrap()));
            }
            out
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let long = "x".repeat(100_000);
        append(d, &format!("a1\n{long}\na2\n"));
        rotate(d, 1);
        compress(d, 1);
        append(d, &format!("{long}{long}\nb1\nb2-partial"));
        let mut followed = Followed::default();
        let mut follower = Follower::new(d, NAME, Cursor::default());
        let expected = |text: &str| (text.len() as u64, true, text.to_owned());
        let skipped = |length: usize| (length as u64, false, String::new());
        assert_eq!(
            read_capped_all(&mut follower, &mut followed),
            [expected("a1"), skipped(100_000), expected("a2"), skipped(200_000), expected("b1")]
        );
        // The current file's first line was over the cap: its fingerprint was still taken, so the
        // cursor goes on in that file once it is a backup, and the partial line is read whole.
        append(d, "\n");
        rotate(d, 2);
        append(d, "c1\n");
        assert_eq!(read_capped_all(&mut follower, &mut followed), [expected("b2-partial"), expected("c1")]);
        assert_eq!(followed, Followed::default());
    }

    /// A complete file's last line without a newline (a torn write) is given by a capped read,
    /// marked unterminated; the current file's is left unless asked for.
    #[test]
    fn a_capped_read_gives_a_backups_torn_last_line_and_the_current_files_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        append(d, "a1\na2-torn");
        rotate(d, 1);
        append(d, "b1\nb2-torn");
        let mut followed = Followed::default();
        let mut line = Vec::new();
        for torn_current in [false, true] {
            let mut follower = Follower::new(d, NAME, Cursor::default());
            let mut out = Vec::new();
            while let Some(read) = follower.next_line_capped(&mut line, 64, torn_current, &mut followed, now()).unwrap()
            {
                out.push((String::from_utf8(line.clone()).unwrap(), read.terminated));
            }
            let mut expected = vec![("a1", true), ("a2-torn", false), ("b1", true)];
            if torn_current {
                expected.push(("b2-torn", false));
            }
            assert_eq!(out, expected.into_iter().map(|(l, t)| (l.to_owned(), t)).collect::<Vec<_>>());
        }
        // The runtime's own followers still leave a torn line of a backup.
        let mut follower = Follower::new(d, NAME, Cursor::default());
        assert_eq!(read_all(&mut follower, &mut followed), ["a1", "b1"]);
    }

    #[test]
    fn lines_are_read_once_each_across_rotation_and_compression_and_a_partial_line_waits() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut follower = Follower::new(d, NAME, Cursor::default());
        let mut followed = Followed::default();
        append(d, "a1\na2\na3-part");
        assert_eq!(read_all(&mut follower, &mut followed), ["a1", "a2"]);
        append(d, "ial\na4\n");
        rotate(d, 1);
        append(d, "b1\n");
        rotate(d, 2);
        compress(d, 1);
        append(d, "c1\nc2\n");
        assert_eq!(read_all(&mut follower, &mut followed), ["a3-partial", "a4", "b1", "c1", "c2"]);
        compress(d, 2);
        append(d, "c3\n");
        assert_eq!(read_all(&mut follower, &mut followed), ["c3"]);
        assert_eq!(followed, Followed::default());
    }

    #[test]
    fn a_saved_cursor_resumes_inside_a_file_that_was_since_rotated_and_compressed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        append(d, "a1\na2\na3\n");
        let mut follower = Follower::new(d, NAME, Cursor::default());
        let mut followed = Followed::default();
        let mut line = Vec::new();
        follower.next_line(&mut line, &mut followed, now()).unwrap();
        let cursor = follower.next_line(&mut line, &mut followed, now()).unwrap().unwrap();
        let path = d.join("cursor");
        cursor.save(&path).unwrap();
        drop(follower);
        rotate(d, 1);
        compress(d, 1);
        append(d, "b1\n");
        let mut follower = Follower::new(d, NAME, Cursor::load(&path).unwrap().unwrap());
        assert_eq!(read_all(&mut follower, &mut followed), ["a3", "b1"]);
        assert_eq!(followed, Followed::default());
    }

    #[test]
    fn a_file_deleted_before_it_was_read_is_counted_as_skipped_and_reading_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        append(d, "a1\na2\n");
        let mut follower = Follower::new(d, NAME, Cursor::default());
        let mut followed = Followed::default();
        let mut line = Vec::new();
        let cursor = follower.next_line(&mut line, &mut followed, now()).unwrap().unwrap();
        rotate(d, 1);
        append(d, "b1\n");
        rotate(d, 2);
        append(d, "c1\n");
        // Retention removes the backup the cursor is in.
        fs::remove_file(backup::plain_path(d, NAME, stamp(1))).unwrap();
        let mut follower = Follower::new(d, NAME, cursor);
        assert_eq!(read_all(&mut follower, &mut followed), ["b1", "c1"]);
        assert_eq!(followed.skipped, 1);
    }

    #[test]
    fn a_file_rotated_and_deleted_before_the_follower_looked_again_counts_as_skipped_and_the_new_one_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        append(d, "a1\n");
        let mut follower = Follower::new(d, NAME, Cursor::default());
        let mut followed = Followed::default();
        assert_eq!(read_all(&mut follower, &mut followed), ["a1"]);
        // No backups kept: the file is rotated and deleted before the follower looks again.
        rotate(d, 1);
        fs::remove_file(backup::plain_path(d, NAME, stamp(1))).unwrap();
        append(d, "b1\n");
        assert_eq!(read_all(&mut follower, &mut followed), ["b1"]);
        // Lines appended to the old file after the follower's last look would be lost with it;
        // the follower cannot know there were none, so it says a file was skipped.
        assert_eq!(followed.skipped, 1);
    }

    /// Any number in a row: going past a file is progress, not a family changing under the open
    /// (more than the open's attempts in a row made it give up).
    #[test]
    fn backups_of_which_only_a_half_written_gz_tmp_is_left_are_counted_and_passed() {
        for count in [1, 150] {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            for n in 1..=count {
                fs::write(d.join(format!("{NAME}.{}.gz.tmp", stamp(n).format())), b"\x1f\x8b half").unwrap();
            }
            append(d, "c1\n");
            let mut followed = Followed::default();
            let mut follower = Follower::new(d, NAME, Cursor::default());
            assert_eq!(read_all(&mut follower, &mut followed), ["c1"]);
            assert_eq!(followed.skipped, count as u64);
        }
    }

    #[test]
    fn a_first_line_longer_than_the_fingerprint_prefix_is_recognised_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let long = "L".repeat(3 * FINGERPRINT_PREFIX);
        append(d, &format!("{long}\nb\n"));
        let mut followed = Followed::default();
        let mut follower = Follower::new(d, NAME, Cursor::default());
        assert_eq!(read_all(&mut follower, &mut followed).len(), 2);
        append(d, "c\n");
        // Each read at the end reopens the file: it must be known as the same file.
        assert_eq!(read_all(&mut follower, &mut followed), ["c"]);
        rotate(d, 1);
        compress(d, 1);
        append(d, "d\n");
        assert_eq!(read_all(&mut follower, &mut followed), ["d"]);
        assert_eq!(followed.skipped, 0);
    }

    #[test]
    fn cursor_at_end_skips_what_is_there_and_a_torn_last_line_is_read_whole_later() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        append(d, "old1\nold2\npart");
        let cursor = Follower::cursor_at_end(d, NAME, now()).unwrap();
        assert_eq!(cursor.offset, "old1\nold2\n".len() as u64);
        append(d, "ial\nnew\n");
        let mut follower = Follower::new(d, NAME, cursor);
        assert_eq!(read_all(&mut follower, &mut Followed::default()), ["partial", "new"]);
    }

    #[test]
    fn a_cursor_saves_and_loads_back_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cursor");
        let cursor = Cursor { after: Some(stamp(3)), offset: 42, fingerprint: Some(0xdead_beef) };
        cursor.save(&path).unwrap();
        assert_eq!(Cursor::load(&path).unwrap(), Some(cursor));
        assert_eq!(Cursor::load(&dir.path().join("none")).unwrap(), None);
        fs::write(&path, "{\"after\":7}").unwrap();
        assert!(Cursor::load(&path).is_err());
    }

    #[test]
    fn hostile_cursor_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cursor");
        let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        for text in [
            "",
            "null",
            "[]",
            "7",
            "\"text\"",
            "{\"after\":null,\"offset\":-1,\"fingerprint\":null}",
            "{\"after\":null,\"offset\":18446744073709551616,\"fingerprint\":null}",
            "{\"after\":null,\"offset\":1e300,\"fingerprint\":null}",
            "{\"after\":null,\"offset\":1.5,\"fingerprint\":null}",
            "{\"after\":null,\"offset\":\"1\",\"fingerprint\":null}",
            "{\"after\":null,\"offset\":1,\"fingerprint\":\"zz\"}",
            "{\"after\":null,\"offset\":1,\"fingerprint\":\"-1\"}",
            "{\"after\":null,\"offset\":1,\"fingerprint\":\"10000000000000000\"}",
            "{\"after\":null,\"offset\":1,\"fingerprint\":7}",
            "{\"after\":7,\"offset\":1,\"fingerprint\":null}",
            "{\"after\":\"99999999T999999.999999Z\",\"offset\":1,\"fingerprint\":null}",
            "{\"after\":\"\u{e9}\",\"offset\":1,\"fingerprint\":null}",
            "{\"after\":null,\"offset\":1,\"fingerprint\":null,\"check\":\"not hex\"}",
            "{\"after\":null,\"offset\":1,\"fingerprint\":null,\"check\":12}",
            "{\"after\":null,\"offset\":1,\"fingerprint\":null,\"check\":[]}",
            &nested,
        ] {
            fs::write(&path, text).unwrap();
            assert!(Cursor::load(&path).is_err(), "{text:.80}");
            assert!(matches!(Saved::load(&path, dir.path(), NAME, now()), Saved::Damaged(_)), "{text:.80}");
        }
        // Not UTF-8.
        fs::write(&path, b"{\"after\":\"\xff\"}").unwrap();
        assert!(Cursor::load(&path).is_err());
        // The largest offset and the earliest and latest stamps, checked: loaded, then distrusted
        // (no backups, a stamp not before the clock) or found past the end of the file.
        append(dir.path(), "a\n");
        for after in [None, Some(Stamp(i64::MIN + 1)), Some(Stamp(i64::MAX))] {
            let cursor = Cursor { after, offset: u64::MAX, fingerprint: Some(u64::MAX) };
            cursor.save(&path).unwrap();
            if let Saved::Trusted(cursor) = Saved::load(&path, dir.path(), NAME, now()) {
                let mut followed = Followed::default();
                let mut follower = Follower::new(dir.path(), NAME, cursor);
                let _ = read_all(&mut follower, &mut followed);
            }
        }
    }

    #[test]
    fn a_cursor_whose_check_does_not_match_is_an_error_and_one_saved_without_a_check_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cursor");
        Cursor { after: None, offset: 42, fingerprint: Some(7) }.save(&path).unwrap();
        let saved = fs::read_to_string(&path).unwrap();
        // The offset moved forward by hand, the check left as it was.
        fs::write(&path, saved.replace("42", "4200")).unwrap();
        let error = Cursor::load(&path).unwrap_err();
        assert!(error.to_string().contains("check does not match"), "{error}");
        fs::write(&path, "{\"after\":null,\"offset\":42,\"fingerprint\":\"0000000000000007\"}").unwrap();
        assert_eq!(Cursor::load(&path).unwrap(), Some(Cursor { after: None, offset: 42, fingerprint: Some(7) }));
    }

    #[test]
    fn a_cursor_naming_a_backup_after_the_newest_is_damaged_an_older_missing_one_is_not_nor_one_before_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        append(d, "a\n");
        // No backups left: retention with none kept removes the one a cursor names. Only a
        // stamp not before the clock names what the logger cannot have written.
        let no_backups = |at: Stamp| Cursor { after: Some(at), offset: 0, fingerprint: None };
        assert_eq!(no_backups(stamp(1)).check_against(d, NAME, now()).unwrap(), Ok(()), "removed by retention");
        let ahead = no_backups(Stamp::from_time(now())).check_against(d, NAME, now()).unwrap().unwrap_err();
        assert!(ahead.contains("not before the clock"), "{ahead}");
        rotate(d, 2);
        append(d, "b\n");
        rotate(d, 4);
        append(d, "c\n");
        let check =
            |n: i64| Cursor { after: Some(stamp(n)), offset: 0, fingerprint: None }.check_against(d, NAME, now());
        assert_eq!(check(2).unwrap(), Ok(()), "a backup there is");
        assert_eq!(check(4).unwrap(), Ok(()), "the newest");
        assert_eq!(check(1).unwrap(), Ok(()), "gone before the oldest: retention");
        assert_eq!(check(3).unwrap(), Ok(()), "gone between two: deleted by hand, the follower counts it");
        let future = check(5).unwrap().unwrap_err();
        assert!(future.contains("newer than the newest"), "{future}");
        assert_eq!(Cursor::default().check_against(d, NAME, now()).unwrap(), Ok(()));
        let path = d.join("cursor");
        Cursor { after: Some(stamp(5)), offset: 0, fingerprint: None }.save(&path).unwrap();
        assert!(matches!(Saved::load(&path, d, NAME, now()), Saved::Damaged(why) if why.contains("newer than")));
        Cursor { after: Some(stamp(4)), offset: 0, fingerprint: None }.save(&path).unwrap();
        assert_eq!(
            Saved::load(&path, d, NAME, now()),
            Saved::Trusted(Cursor { after: Some(stamp(4)), offset: 0, fingerprint: None })
        );
        assert_eq!(Saved::load(&d.join("none"), d, NAME, now()), Saved::None);
    }

    #[test]
    fn a_cursor_past_the_end_of_its_file_reads_the_file_again_from_its_start_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        append(d, "a1\na2\n");
        let mut followed = Followed::default();
        let mut follower = Follower::new(d, NAME, Cursor::default());
        assert_eq!(read_all(&mut follower, &mut followed), ["a1", "a2"]);
        let at_end = follower.cursor;
        // Plain: the current file, then the same file as a plain backup.
        let mut moved = Follower::new(d, NAME, Cursor { offset: at_end.offset + 1_000, ..at_end });
        assert_eq!(read_all(&mut moved, &mut followed), ["a1", "a2"]);
        assert_eq!(followed.cursor_damage.len(), 1, "{followed:?}");
        assert!(followed.cursor_damage[0].contains("holds 6 bytes"), "{followed:?}");
        rotate(d, 1);
        append(d, "b1\n");
        let mut followed = Followed::default();
        let mut moved = Follower::new(d, NAME, Cursor { offset: at_end.offset + 1_000, ..at_end });
        assert_eq!(read_all(&mut moved, &mut followed), ["a1", "a2", "b1"]);
        assert_eq!((followed.cursor_damage.len(), followed.skipped), (1, 0), "{followed:?}");
        // Gzip: the offset is past the end of what the stream holds.
        compress(d, 1);
        let mut followed = Followed::default();
        let mut moved = Follower::new(d, NAME, Cursor { offset: at_end.offset + 1, ..at_end });
        assert_eq!(read_all(&mut moved, &mut followed), ["a1", "a2", "b1"]);
        assert_eq!((followed.cursor_damage.len(), followed.skipped), (1, 0), "{followed:?}");
        // At the very end is not past it.
        let mut followed = Followed::default();
        let mut exact = Follower::new(d, NAME, at_end);
        assert_eq!(read_all(&mut exact, &mut followed), ["b1"]);
        assert_eq!(followed, Followed::default());
    }

    #[test]
    fn a_save_is_not_stopped_by_anything_planted_at_a_temporary_name_and_leaves_none_behind() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let path = d.join(".cursor");
        // The names earlier versions used, and this version's prefix, taken by a directory, a
        // link and a FIFO-like non-file.
        fs::create_dir(d.join(".tmp")).unwrap();
        fs::create_dir(d.join(".cursor.tmp")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/nonexistent", d.join(format!(".cursor.tmp.{}.0.000000000", std::process::id())))
            .unwrap();
        let cursor = Cursor { after: Some(stamp(1)), offset: 9, fingerprint: Some(3) };
        for _ in 0..3 {
            cursor.save(&path).unwrap();
        }
        assert_eq!(Cursor::load(&path).unwrap(), Some(cursor));
        let mut names: Vec<String> =
            fs::read_dir(d).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names.len(), 4, "the cursor and the three planted names, no temporary left: {names:?}");
        // A crash between a temporary's creation and its rename leaves a regular file: the next
        // start removes it, and leaves what it did not make.
        fs::write(d.join(".cursor.tmp.1.2.3"), "half").unwrap();
        remove_stale_temporaries(&path);
        assert!(!d.join(".cursor.tmp.1.2.3").exists());
        assert!(d.join(".cursor.tmp").is_dir());
    }
}
