//! Reading a log directory, for tools: which files hold a log's lines and in what order, opening
//! them safely, and reading lines of bounded size. The logger's own readers (recovery of the
//! audit chain, the CloudWatch follower) and the `chimera-log` command use these same functions,
//! so a file the logger writes is found and read the same way everywhere.
//!
//! A log `name` (`chimera.log`) is a family of files in its directory: backups named
//! `name.<stamp>` or `name.<stamp>.gz` (`<stamp>` is the UTC rotation time,
//! `yyyymmddThhmmss.ffffffZ`, so name order is rotation order), then the current file `name`.

use std::fs::File;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::dir::backup::{self, Filter};
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

#[cfg(test)]
mod tests {
    use super::*;

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
