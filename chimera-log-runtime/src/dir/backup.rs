//! Backups of a log file: their names, finding them, retention, compression and crash repair.
//!
//! A backup of `chimera.log` is `chimera.log.<yyyymmddThhmmss.ffffffZ>` (UTC, microseconds),
//! then `chimera.log.<stamp>.gz` once compressed, written as `….gz.tmp` until complete. Stamps
//! only ever increase, so name order is rotation order and no backup is ever renamed.
//! This module touches only backups; the current file belongs to `file.rs`.
//!
//! A name counts as a backup only when it parses exactly as one (the stamp formats back to the
//! same text) and names a regular file: a link or a directory with a backup's name is never
//! read, compressed or removed. A stamp later than [`FUTURE_TOLERANCE`] past the clock cannot
//! have been written by this logger, nor can a file owned by another user; such a file is
//! reported and otherwise ignored, so a planted name neither hides the real newest backup nor
//! makes retention delete real ones.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use super::safe_fs;

const STAMP_LEN: usize = "yyyymmddThhmmss.ffffffZ".len();

/// How far past the clock a backup's stamp may be and still count (a clock stepped back, a
/// machine moved between time zones of a misconfigured clock).
pub(crate) const FUTURE_TOLERANCE: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// A backup's stamp: microseconds since the Unix epoch, written `yyyymmddThhmmss.ffffffZ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stamp(pub(crate) i64);

impl Stamp {
    pub(crate) fn from_time(time: SystemTime) -> Stamp {
        match time.duration_since(UNIX_EPOCH) {
            Ok(after) => Stamp(after.as_micros().min(i64::MAX as u128) as i64),
            Err(before) => Stamp(-(before.duration().as_micros().min(i64::MAX as u128) as i64)),
        }
    }

    /// The stamp for a rotation at `now` that must sort after `last`.
    pub(crate) fn next(now: SystemTime, last: Option<Stamp>) -> Stamp {
        let now = Stamp::from_time(now);
        match last {
            Some(last) if now <= last => Stamp(last.0 + 1),
            _ => now,
        }
    }

    pub(crate) fn format(self) -> String {
        let secs = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        match chrono::DateTime::from_timestamp(secs, 0) {
            Some(time) => format!("{}.{micros:06}Z", time.format("%Y%m%dT%H%M%S")),
            None => format!("00000000T000000.{micros:06}Z"),
        }
    }

    /// The stamp written exactly as `text`, and only then: every digit in its place, and the
    /// stamp formats back to the same text.
    pub(crate) fn parse(text: &str) -> Option<Stamp> {
        let bytes = text.as_bytes();
        let shape_ok = bytes.len() == STAMP_LEN
            && bytes.iter().enumerate().all(|(i, &b)| match i {
                8 => b == b'T',
                15 => b == b'.',
                22 => b == b'Z',
                _ => b.is_ascii_digit(),
            });
        if !shape_ok {
            return None;
        }
        let seconds = chrono::NaiveDateTime::parse_from_str(&text[..15], "%Y%m%dT%H%M%S").ok()?;
        let micros: i64 = text[16..22].parse().ok()?;
        let stamp = Stamp(seconds.and_utc().timestamp() * 1_000_000 + micros);
        (stamp.format() == text).then_some(stamp)
    }
}

/// The state of one backup on disk.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct BackupFiles {
    pub(crate) plain: bool,
    pub(crate) gz: bool,
    pub(crate) tmp: bool,
}

/// Which file of a backup a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BackupKind {
    Plain,
    Gz,
    Tmp,
}

/// The stamp and kind of `file_name` if it is exactly the name of a backup of `name`.
pub(crate) fn parse_backup_name(file_name: &str, name: &str) -> Option<(Stamp, BackupKind)> {
    let rest = file_name.strip_prefix(name)?.strip_prefix('.')?;
    let (stamp, kind) = rest.split_at_checked(STAMP_LEN)?;
    let kind = match kind {
        "" => BackupKind::Plain,
        ".gz" => BackupKind::Gz,
        ".gz.tmp" => BackupKind::Tmp,
        _ => return None,
    };
    Some((Stamp::parse(stamp)?, kind))
}

/// Whether a file whose metadata is `metadata` belongs to this process's effective user.
fn owned_by_us(metadata: &fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        metadata.uid() == safe_fs::effective_uid()
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        true
    }
}

/// The newest stamp this logger could have written by `now`.
fn latest_plausible(now: SystemTime) -> Stamp {
    Stamp::from_time(now.checked_add(FUTURE_TOLERANCE).unwrap_or(now))
}

/// The backups of the file `name` in `dir`, oldest first, as of `now`.
pub(crate) fn list_backups(dir: &Path, name: &str, now: SystemTime) -> io::Result<Backups> {
    list_backups_and_ignored(dir, name, now).map(|(backups, _)| backups)
}

/// Backups by stamp, oldest first.
pub(crate) type Backups = Vec<(Stamp, BackupFiles)>;

/// The backups of `name` (as [`list_backups`]) and the names that look like backups but are
/// ignored: stamped implausibly far in the future, or not regular files.
pub(crate) fn list_backups_and_ignored(dir: &Path, name: &str, now: SystemTime) -> io::Result<(Backups, Vec<String>)> {
    list(dir, name, Filter::Writer { now })
}

/// Which backup names [`list`] takes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Filter {
    /// The logger, which rotates and deletes: only regular files of its own user stamped no later
    /// than `now` (plus a tolerance). Someone who may only create files in the directory could
    /// otherwise plant names that retention counts, and so delete real backups.
    Writer { now: SystemTime },
    /// A reader (the `chimera-log` command, perhaps another user): every regular file of any
    /// owner stamped no later than `now` (plus the same tolerance). A name stamped later is not
    /// the logger's, whose follower passes it over too: read, it would be taken for the newest
    /// backup, between the real ones and the current file.
    Reader { now: SystemTime },
}

impl Filter {
    /// Whether a backup stamped `stamp` may have been written by the logger as of this filter's
    /// `now`.
    pub(crate) fn plausible(self, stamp: Stamp) -> bool {
        match self {
            Filter::Writer { now } | Filter::Reader { now } => stamp <= latest_plausible(now),
        }
    }
}

/// The backups of `name` in `dir` by stamp, oldest first, and the backup names `filter` left out.
/// A link is a link, whatever it points to: never a backup.
///
/// The names are those of one read of the directory; each is then looked at on its own. A plain
/// backup (or its `.gz.tmp`) can be gone by then because its compression finished, and the `.gz`
/// that replaced it came after the read: that backup is found by its `.gz` name, never left out
/// of the listing (a follower would pass over it unread). A `.gz` gone since the read was
/// removed by retention. (A reader's filter looks at a file only where the directory does not
/// give its kind; where it does, a name gone since is listed, and its open finds the `.gz`.)
pub(crate) fn list(dir: &Path, name: &str, filter: Filter) -> io::Result<(Backups, Vec<String>)> {
    let entries = fs::read_dir(dir)?.collect::<io::Result<Vec<fs::DirEntry>>>()?;
    #[cfg(test)]
    if let Some(mut hook) = AFTER_READ_DIR.with(|hook| hook.borrow_mut().take()) {
        hook();
    }
    let mut found: std::collections::BTreeMap<Stamp, BackupFiles> = Default::default();
    let mut ignored = Vec::new();
    for entry in entries {
        let file_name = entry.file_name();
        let Some((stamp, kind)) = file_name.to_str().and_then(|n| parse_backup_name(n, name)) else {
            continue;
        };
        // Only the writer's filter needs the owner, and so a look at the file itself.
        let looked = entry.file_type().and_then(|file_type| match filter {
            Filter::Writer { .. } if file_type.is_file() => {
                entry.metadata().map(|metadata| takes(filter, stamp, &metadata))
            }
            _ => Ok(file_type.is_file() && filter.plausible(stamp)),
        });
        let (kind, taken) = match looked {
            Ok(taken) => (kind, taken),
            Err(error) if error.kind() == io::ErrorKind::NotFound => match kind {
                BackupKind::Plain | BackupKind::Tmp => match fs::symlink_metadata(gz_path(dir, name, stamp)) {
                    Ok(metadata) if takes(filter, stamp, &metadata) => (BackupKind::Gz, true),
                    // Not one this filter takes: the next listing reads its name, and says so.
                    Ok(_) => continue,
                    Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                    Err(error) => return Err(error),
                },
                BackupKind::Gz => continue,
            },
            Err(error) => return Err(error),
        };
        if !taken {
            ignored.push(file_name.to_string_lossy().into_owned());
            continue;
        }
        let files = found.entry(stamp).or_default();
        match kind {
            BackupKind::Plain => files.plain = true,
            BackupKind::Gz => files.gz = true,
            BackupKind::Tmp => files.tmp = true,
        }
    }
    Ok((found.into_iter().collect(), ignored))
}

/// Whether `filter` takes a backup name stamped `stamp` whose file has `metadata`.
fn takes(filter: Filter, stamp: Stamp, metadata: &fs::Metadata) -> bool {
    match filter {
        Filter::Writer { .. } => metadata.is_file() && filter.plausible(stamp) && owned_by_us(metadata),
        Filter::Reader { .. } => metadata.is_file() && filter.plausible(stamp),
    }
}

#[cfg(test)]
thread_local! {
    /// Runs once, in [`list`] between its read of the directory and its look at each name (then
    /// is cleared).
    pub(crate) static AFTER_READ_DIR: std::cell::RefCell<Option<Box<dyn FnMut()>>> =
        const { std::cell::RefCell::new(None) };
}

pub(crate) fn plain_path(dir: &Path, name: &str, stamp: Stamp) -> PathBuf {
    dir.join(format!("{name}.{}", stamp.format()))
}

pub(crate) fn gz_path(dir: &Path, name: &str, stamp: Stamp) -> PathBuf {
    dir.join(format!("{name}.{}.gz", stamp.format()))
}

fn tmp_path(dir: &Path, name: &str, stamp: Stamp) -> PathBuf {
    dir.join(format!("{name}.{}.gz.tmp", stamp.format()))
}

fn sync_dir(dir: &Path) {
    // Durability of the rename; not every platform can open a directory, and failing here loses
    // nothing that is not already on disk.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

/// Compresses the plain backup `stamp` of `name`: to `.gz.tmp`, fsync, rename to `.gz`, delete
/// the plain file. A plain backup that no longer exists (removed by retention) is not an error.
/// On any failure the plain backup is kept and the temporary file removed.
pub(crate) fn compress(dir: &Path, name: &str, stamp: Stamp) -> io::Result<()> {
    let plain = plain_path(dir, name, stamp);
    let tmp = tmp_path(dir, name, stamp);
    let source = match safe_fs::open_read(&plain) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let source_identity = safe_fs::Identity::of(&source.metadata()?);
    // A leftover temporary file is ours to replace only if it is a regular file.
    safe_fs::remove_regular(&tmp)?;
    let result = (|| {
        let out = safe_fs::create_new(&tmp, safe_fs::BACKUP_MODE, false)?;
        let mut encoder = GzEncoder::new(io::BufWriter::with_capacity(256 * 1024, out), Compression::default());
        io::copy(&mut BufReader::with_capacity(256 * 1024, source), &mut encoder)?;
        let out = encoder.finish()?.into_inner().map_err(io::IntoInnerError::into_error)?;
        out.sync_all()?;
        fs::rename(&tmp, gz_path(dir, name, stamp))?;
        sync_dir(dir);
        // Remove the plain file only if it is still the one that was compressed.
        match fs::symlink_metadata(&plain) {
            Ok(metadata) if safe_fs::Identity::of(&metadata) == source_identity => safe_fs::remove_regular(&plain),
            Ok(metadata) => Err(safe_fs::not_regular(&plain, &metadata)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    })();
    if result.is_err() {
        let _ = safe_fs::remove_regular(&tmp);
    }
    result
}

/// Whether the `.gz` of `stamp` decompresses to exactly the plain backup's bytes.
pub(crate) fn gz_matches_plain(dir: &Path, name: &str, stamp: Stamp) -> io::Result<bool> {
    let mut plain = BufReader::with_capacity(256 * 1024, safe_fs::open_read(&plain_path(dir, name, stamp))?);
    let gz = safe_fs::open_read(&gz_path(dir, name, stamp))?;
    let mut gz = MultiGzDecoder::new(BufReader::with_capacity(256 * 1024, gz));
    let (mut a, mut b) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = read_full(&mut plain, &mut a)?;
        let m = match read_full(&mut gz, &mut b[..n.max(1)]) {
            Ok(m) => m,
            // A truncated or corrupt archive is "does not match", not an I/O failure.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                ) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(m == 0);
        }
        if n != m || a[..n] != b[..m] {
            return Ok(false);
        }
    }
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Keeps the newest `keep` backups of `name` and removes the older ones, except those not yet
/// archived (`archived`: the newest stamp whose records the audit store holds; `None` when no
/// store follows this file). Returns how many were removed and how many past `keep` were kept
/// for the store.
pub(crate) fn apply_retention(
    dir: &Path,
    name: &str,
    keep: usize,
    now: SystemTime,
    archived: Option<&ArchiveMark>,
) -> io::Result<(usize, usize)> {
    let backups = list_backups(dir, name, now)?;
    let excess = backups.len().saturating_sub(keep);
    let mut removed = 0;
    for (stamp, files) in &backups[..excess] {
        if archived.is_some_and(|mark| mark.get().is_none_or(|archived| *stamp > archived)) {
            // Older backups are archived first: every later one is unarchived too.
            break;
        }
        for (present, path) in [
            (files.plain, plain_path(dir, name, *stamp)),
            (files.gz, gz_path(dir, name, *stamp)),
            (files.tmp, tmp_path(dir, name, *stamp)),
        ] {
            if present {
                safe_fs::remove_regular(&path)?;
            }
        }
        removed += 1;
    }
    Ok((removed, excess - removed))
}

/// How far the followers that keep the audit trail elsewhere (the audit store, the S3 archive)
/// have archived a file's backups: every backup stamped at or before the mark has all its
/// records in every one of them. One slot per follower, each advanced by its own; retention, which
/// deletes only what the mark covers, reads the oldest.
#[derive(Debug)]
pub(crate) struct ArchiveMark(Vec<std::sync::atomic::AtomicI64>);

impl ArchiveMark {
    /// A mark with one slot per follower, each at how far that follower's saved cursor says it
    /// has archived (`None`: nothing yet).
    pub(crate) fn new(slots: &[Option<Stamp>]) -> Self {
        ArchiveMark(
            slots
                .iter()
                .map(|slot| std::sync::atomic::AtomicI64::new(slot.map_or(i64::MIN, |stamp| stamp.0)))
                .collect(),
        )
    }

    /// How far every follower has archived.
    pub(crate) fn get(&self) -> Option<Stamp> {
        let value = self.0.iter().map(|slot| slot.load(std::sync::atomic::Ordering::Acquire)).min()?;
        (value != i64::MIN).then_some(Stamp(value))
    }

    /// The slot `slot`, for the follower that advances it.
    pub(crate) fn slot(self: &std::sync::Arc<Self>, slot: usize) -> MarkSlot {
        assert!(slot < self.0.len(), "a mark has one slot per archiving follower (forward::archive_mark)");
        MarkSlot { mark: std::sync::Arc::clone(self), slot }
    }
}

/// One follower's slot of an [`ArchiveMark`].
#[derive(Debug, Clone)]
pub(crate) struct MarkSlot {
    mark: std::sync::Arc<ArchiveMark>,
    slot: usize,
}

impl MarkSlot {
    /// Every backup stamped at or before `to` is archived by this follower.
    pub(crate) fn advance(&self, to: Stamp) {
        self.mark.0[self.slot].fetch_max(to.0, std::sync::atomic::Ordering::AcqRel);
    }

    /// Nothing is archived by this follower (the store was replaced by an empty one).
    pub(crate) fn reset(&self) {
        self.mark.0[self.slot].store(i64::MIN, std::sync::atomic::Ordering::Release);
    }

    /// This follower keeps nothing (an archive that cannot start): retention no longer waits for
    /// it.
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    pub(crate) fn release(&self) {
        self.mark.0[self.slot].store(i64::MAX, std::sync::atomic::Ordering::Release);
    }
}

/// What a start finds to finish after a crash, for one file's backups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Repair {
    /// A half-written `.gz.tmp` to delete.
    RemoveTmp(Stamp),
    /// A plain backup to compress (none, or only a half-written `.gz.tmp`, exists).
    Compress(Stamp),
    /// Both plain and `.gz`: keep the `.gz` if it is complete, then delete the plain file.
    Verify(Stamp),
}

/// The work that finishes what a crash interrupted, for one file's backups. Only looks: the
/// maintenance thread does the work, so a backup that cannot be repaired never stops a start.
pub(crate) fn scan_for_repair(dir: &Path, name: &str, compress: bool, now: SystemTime) -> io::Result<Vec<Repair>> {
    let mut work = Vec::new();
    for (stamp, files) in list_backups(dir, name, now)? {
        if files.tmp {
            work.push(Repair::RemoveTmp(stamp));
        }
        match (files.plain, files.gz) {
            (true, true) => work.push(Repair::Verify(stamp)),
            (true, false) if compress => work.push(Repair::Compress(stamp)),
            _ => {}
        }
    }
    Ok(work)
}

/// Carries out one repair; `true` when it compressed a backup.
pub(crate) fn repair(dir: &Path, name: &str, work: &Repair) -> io::Result<bool> {
    match *work {
        Repair::RemoveTmp(stamp) => safe_fs::remove_regular(&tmp_path(dir, name, stamp)).map(|()| false),
        Repair::Compress(stamp) => compress(dir, name, stamp).map(|()| true),
        Repair::Verify(stamp) => {
            if gz_matches_plain(dir, name, stamp)? {
                safe_fs::remove_regular(&plain_path(dir, name, stamp)).map(|()| false)
            } else {
                safe_fs::remove_regular(&gz_path(dir, name, stamp))?;
                compress(dir, name, stamp).map(|()| true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A backup removed (by retention: no `.gz` takes its place) after the listing read the
    /// directory and before it looked at the name is left out, never an error (the audit
    /// store's follower stopped a pass early on an error here, and answered a flush it had not
    /// finished).
    #[test]
    fn a_backup_removed_between_reading_the_directory_and_looking_at_it_is_skipped_not_an_error() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let plain = dir.path().join(format!("executions.log.20260101T000000.{:06}Z", n % 50));
                    std::fs::write(&plain, b"x").unwrap();
                    std::fs::remove_file(&plain).unwrap();
                    n += 1;
                }
            });
            let mut failure = None;
            for _ in 0..20_000 {
                if let Err(error) = list(dir.path(), "executions.log", Filter::Writer { now: SystemTime::now() }) {
                    failure = Some(error);
                    break;
                }
            }
            stop.store(true, Ordering::Relaxed);
            assert!(failure.is_none(), "a listing failed: {}", failure.unwrap());
        });
    }

    /// Compression writes `X.gz` and then removes `X`: a listing that read the directory before
    /// the `.gz` was there and looks at `X` after its removal still lists the backup, by its
    /// `.gz` (it was left out, and the audit store's follower passed over the backup unread).
    #[test]
    fn a_backup_compressed_between_reading_the_directory_and_looking_at_it_is_listed_by_its_gz() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let now = SystemTime::now();
        let stamps: Vec<Stamp> = (0..3).map(|i| Stamp::from_time(now - Duration::from_secs(10 - i))).collect();
        for stamp in &stamps {
            fs::write(plain_path(&d, "executions.log", *stamp), b"line\n").unwrap();
        }
        fs::write(tmp_path(&d, "executions.log", stamps[2]), b"\x1f\x8b").unwrap();
        let (middle, last) = (stamps[1], stamps[2]);
        AFTER_READ_DIR.with(|hook| {
            *hook.borrow_mut() = Some(Box::new(move || {
                compress(&d, "executions.log", middle).unwrap();
                // The compression of the last one, done since: its `.gz.tmp` became the `.gz`.
                fs::rename(tmp_path(&d, "executions.log", last), gz_path(&d, "executions.log", last)).unwrap();
                fs::remove_file(plain_path(&d, "executions.log", last)).unwrap();
            }))
        });
        // The logger's listing looks at each file (its owner); a reader's needs only the kind,
        // which most file systems give with the name, so it rarely looks.
        let (backups, ignored) = list(dir.path(), "executions.log", Filter::Writer { now }).unwrap();
        let listed: Vec<Stamp> = backups.iter().map(|(stamp, _)| *stamp).collect();
        assert_eq!(listed, stamps);
        assert!(backups[1].1.gz && !backups[1].1.plain, "{:?}", backups[1]);
        assert!(backups[2].1.gz && !backups[2].1.plain, "{:?}", backups[2]);
        assert!(ignored.is_empty());
    }

    #[test]
    fn stamp_formats_and_parses_back() {
        let stamp = Stamp::from_time(UNIX_EPOCH + Duration::from_micros(1_705_314_645_123_456));
        assert_eq!(stamp.format(), "20240115T103045.123456Z");
        assert_eq!(Stamp::parse("20240115T103045.123456Z"), Some(stamp));
        assert_eq!(Stamp::parse("20240115T103045.123456"), None);
        assert_eq!(Stamp::parse("2024011xT103045.123456Z"), None);
        // Text chrono would accept but this logger never writes.
        assert_eq!(Stamp::parse("+2024115T103045.123456Z"), None);
        assert_eq!(Stamp::parse("20240115T103045.12345+Z"), None);
        assert_eq!(Stamp::parse("20240230T103045.123456Z"), None, "no 30 February");
    }

    #[test]
    fn only_exact_backup_names_of_the_file_parse() {
        let stamp = Stamp::parse("20240115T103045.123456Z").unwrap();
        assert_eq!(
            parse_backup_name("chimera.log.20240115T103045.123456Z", "chimera.log"),
            Some((stamp, BackupKind::Plain))
        );
        assert_eq!(
            parse_backup_name("chimera.log.20240115T103045.123456Z.gz", "chimera.log"),
            Some((stamp, BackupKind::Gz))
        );
        for name in [
            "chimera.log.20240115T103045.123456Z.gz.bak",
            "chimera.log.20240115T103045.123456Zx",
            "chimera.log20240115T103045.123456Z",
            "chimera.logx.20240115T103045.123456Z",
            "xchimera.log.20240115T103045.123456Z",
            "chimera.log.",
            "chimera.log",
        ] {
            assert_eq!(parse_backup_name(name, "chimera.log"), None, "{name}");
        }
    }

    #[test]
    fn far_future_and_non_regular_backups_are_ignored_and_never_removed_by_retention() {
        let dir = tempfile::tempdir().unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_705_314_645);
        let real: Vec<Stamp> = (0..3).map(|i| Stamp::from_time(now - Duration::from_secs(100 - i))).collect();
        for stamp in &real {
            fs::write(plain_path(dir.path(), "chimera.log", *stamp), "x\n").unwrap();
        }
        fs::write(dir.path().join("chimera.log.99991231T235959.999999Z"), "planted\n").unwrap();
        let target = dir.path().join("elsewhere");
        fs::write(&target, "not a backup\n").unwrap();
        let link = plain_path(dir.path(), "chimera.log", Stamp(real[0].0 - 1));
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let (backups, ignored) = list_backups_and_ignored(dir.path(), "chimera.log", now).unwrap();
        assert_eq!(backups.iter().map(|(stamp, _)| *stamp).collect::<Vec<_>>(), real);
        assert_eq!(ignored.len(), 2, "{ignored:?}");
        assert_eq!(apply_retention(dir.path(), "chimera.log", 3, now, None).unwrap().0, 0);
        assert_eq!(apply_retention(dir.path(), "chimera.log", 1, now, None).unwrap().0, 2);
        assert!(dir.path().join("chimera.log.99991231T235959.999999Z").exists());
        assert!(fs::symlink_metadata(&link).is_ok() && target.exists());
        assert!(plain_path(dir.path(), "chimera.log", real[2]).exists());
    }

    #[test]
    fn a_backup_name_owned_by_another_user_is_ignored_and_never_counted_by_retention() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_705_314_645);
        let real = Stamp::from_time(now - Duration::from_secs(100));
        fs::write(plain_path(dir.path(), "chimera.log", real), "x\n").unwrap();
        // Near-future names (within the tolerance) planted by another user.
        let planted: Vec<_> = (1..=3)
            .map(|i| plain_path(dir.path(), "chimera.log", Stamp::from_time(now + Duration::from_secs(i))))
            .collect();
        let other = if safe_fs::effective_uid() == 65_534 { 65_533 } else { 65_534 };
        for path in &planted {
            fs::write(path, "planted\n").unwrap();
            if std::os::unix::fs::chown(path, Some(other), None).is_err() {
                // Only root may give a file away; as another user, plant nothing and say so.
                panic!("this test needs to chown files to uid {other}; run the suite as root (CI does)");
            }
            assert_eq!(fs::metadata(path).unwrap().uid(), other);
        }
        let (backups, ignored) = list_backups_and_ignored(dir.path(), "chimera.log", now).unwrap();
        assert_eq!(backups.iter().map(|(stamp, _)| *stamp).collect::<Vec<_>>(), [real]);
        assert_eq!(ignored.len(), 3);
        assert_eq!(apply_retention(dir.path(), "chimera.log", 1, now, None).unwrap().0, 0);
        assert!(plain_path(dir.path(), "chimera.log", real).exists(), "the real backup is kept");
    }

    #[test]
    fn next_stamp_moves_forward_a_microsecond_on_collision_or_clock_going_back() {
        let t = UNIX_EPOCH + Duration::from_secs(1_000);
        let first = Stamp::next(t, None);
        assert_eq!(Stamp::next(t, Some(first)), Stamp(first.0 + 1));
        assert_eq!(Stamp::next(t - Duration::from_secs(5), Some(first)), Stamp(first.0 + 1));
        assert_eq!(Stamp::next(t + Duration::from_micros(7), Some(first)), Stamp(first.0 + 7));
    }

    #[test]
    fn name_order_is_stamp_order() {
        let mut stamps: Vec<Stamp> =
            [5_000_000_000_000_001i64, 999, 1_000_000, 5_000_000_000_000_000].into_iter().map(Stamp).collect();
        let mut names: Vec<String> = stamps.iter().map(|s| s.format()).collect();
        stamps.sort();
        names.sort();
        assert_eq!(names, stamps.iter().map(|s| s.format()).collect::<Vec<_>>());
    }
}
