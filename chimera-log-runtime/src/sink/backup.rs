//! Backups of a log file: their names, finding them, retention, compression and crash repair.
//!
//! A backup of `chimera.log` is `chimera.log.<yyyymmddThhmmss.ffffffZ>` (UTC, microseconds),
//! then `chimera.log.<stamp>.gz` once compressed, written as `….gz.tmp` until complete. Stamps
//! only ever increase, so name order is rotation order and no backup is ever renamed.
//! This module touches only backups; the current file belongs to `file.rs`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

const STAMP_LEN: usize = "yyyymmddThhmmss.ffffffZ".len();

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

    pub(crate) fn parse(text: &str) -> Option<Stamp> {
        if text.len() != STAMP_LEN || !text.ends_with('Z') || text.as_bytes()[15] != b'.' {
            return None;
        }
        let seconds = chrono::NaiveDateTime::parse_from_str(&text[..15], "%Y%m%dT%H%M%S").ok()?;
        let micros: i64 = text[16..22].parse().ok()?;
        Some(Stamp(seconds.and_utc().timestamp() * 1_000_000 + micros))
    }
}

/// The state of one backup on disk.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct BackupFiles {
    pub(crate) plain: bool,
    pub(crate) gz: bool,
    pub(crate) tmp: bool,
}

/// The backups of the file `name` in `dir`, oldest first.
pub(crate) fn list_backups(dir: &Path, name: &str) -> io::Result<Vec<(Stamp, BackupFiles)>> {
    let mut found: std::collections::BTreeMap<Stamp, BackupFiles> = Default::default();
    let prefix = format!("{name}.");
    for entry in fs::read_dir(dir)? {
        let file_name = entry?.file_name();
        let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let (stamp, kind) = match rest.len().checked_sub(STAMP_LEN) {
            Some(0) => (rest, ""),
            Some(_) => rest.split_at(STAMP_LEN),
            None => continue,
        };
        let Some(stamp) = Stamp::parse(stamp) else {
            continue;
        };
        let files = found.entry(stamp).or_default();
        match kind {
            "" => files.plain = true,
            ".gz" => files.gz = true,
            ".gz.tmp" => files.tmp = true,
            _ => {}
        }
    }
    Ok(found.into_iter().collect())
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

/// Makes a backup read-only (`0440`).
pub(crate) fn make_read_only(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o440))
    }
    #[cfg(not(unix))]
    {
        let mut permissions = fs::metadata(path)?.permissions();
        permissions.set_readonly(true);
        fs::set_permissions(path, permissions)
    }
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
    let source = match File::open(&plain) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let result = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o440);
        }
        let out = options.open(&tmp)?;
        let mut encoder = GzEncoder::new(io::BufWriter::with_capacity(256 * 1024, out), Compression::default());
        io::copy(&mut BufReader::with_capacity(256 * 1024, source), &mut encoder)?;
        let out = encoder.finish()?.into_inner().map_err(io::IntoInnerError::into_error)?;
        out.sync_all()?;
        fs::rename(&tmp, gz_path(dir, name, stamp))?;
        sync_dir(dir);
        fs::remove_file(&plain)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Whether the `.gz` of `stamp` decompresses to exactly the plain backup's bytes.
pub(crate) fn gz_matches_plain(dir: &Path, name: &str, stamp: Stamp) -> io::Result<bool> {
    let mut plain = BufReader::with_capacity(256 * 1024, File::open(plain_path(dir, name, stamp))?);
    let mut gz = MultiGzDecoder::new(BufReader::with_capacity(256 * 1024, File::open(gz_path(dir, name, stamp))?));
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

/// Deletes all but the newest `keep` backups of `name` (every file of each deleted backup).
pub(crate) fn apply_retention(dir: &Path, name: &str, keep: usize) -> io::Result<usize> {
    let backups = list_backups(dir, name)?;
    let excess = backups.len().saturating_sub(keep);
    for (stamp, files) in &backups[..excess] {
        for (present, path) in [
            (files.plain, plain_path(dir, name, *stamp)),
            (files.gz, gz_path(dir, name, *stamp)),
            (files.tmp, tmp_path(dir, name, *stamp)),
        ] {
            if present {
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
    }
    Ok(excess)
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
pub(crate) fn scan_for_repair(dir: &Path, name: &str, compress: bool) -> io::Result<Vec<Repair>> {
    let mut work = Vec::new();
    for (stamp, files) in list_backups(dir, name)? {
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
        Repair::RemoveTmp(stamp) => match fs::remove_file(tmp_path(dir, name, stamp)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(false),
        },
        Repair::Compress(stamp) => compress(dir, name, stamp).map(|()| true),
        Repair::Verify(stamp) => {
            if gz_matches_plain(dir, name, stamp)? {
                fs::remove_file(plain_path(dir, name, stamp)).map(|()| false)
            } else {
                fs::remove_file(gz_path(dir, name, stamp))?;
                compress(dir, name, stamp).map(|()| true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn stamp_formats_and_parses_back() {
        let stamp = Stamp::from_time(UNIX_EPOCH + Duration::from_micros(1_705_314_645_123_456));
        assert_eq!(stamp.format(), "20240115T103045.123456Z");
        assert_eq!(Stamp::parse("20240115T103045.123456Z"), Some(stamp));
        assert_eq!(Stamp::parse("20240115T103045.123456"), None);
        assert_eq!(Stamp::parse("2024011xT103045.123456Z"), None);
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
