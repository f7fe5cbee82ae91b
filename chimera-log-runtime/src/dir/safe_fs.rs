//! Opening, creating, changing and removing files in the log directory without ever acting on
//! something that is not a regular file this logger made.
//!
//! The log directory may be writable by others (a shared group, a careless deployment), so a
//! name in it proves nothing: a `chimera.log` planted as a symbolic link to another file, a FIFO
//! or a device must never be appended to, chmod'ed, compressed, renamed or deleted. Every open
//! here uses `O_NOFOLLOW` and checks with `fstat` that it got a regular file; every removal first
//! checks with `lstat`. Modes are set with `fchmod` on the open file, so the umask cannot widen
//! them and no path is followed. This module knows nothing of log lines or backups' names.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

/// The mode of every log file this logger creates.
pub(crate) const FILE_MODE: u32 = 0o640;
/// The mode of rotated backups (read-only).
pub(crate) const BACKUP_MODE: u32 = 0o440;
/// The mode of a log directory this logger creates.
pub(crate) const DIR_MODE: u32 = 0o750;

/// What kind of file `metadata` (from `lstat`) describes, for an error message.
pub(crate) fn kind_of(metadata: &fs::Metadata) -> &'static str {
    let kind = metadata.file_type();
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_block_device() || kind.is_char_device() {
            return "a device";
        }
    }
    if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// The error for a path that holds something other than a regular file.
pub(crate) fn not_regular(path: &Path, metadata: &fs::Metadata) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is {}, not a regular file; chimera-log never writes through, changes or removes it \
             (remove it, or point log_dir elsewhere)",
            path.display(),
            kind_of(metadata)
        ),
    )
}

/// `Ok(())` if nothing is at `path` or it is a regular file (not following a link).
pub(crate) fn check_regular_or_absent(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_file() => Ok(()),
        Ok(metadata) => Err(not_regular(path, &metadata)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

pub(crate) fn no_follow(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: should a FIFO or device appear between the check and the open, the open
        // does not hang on it (the fstat check then refuses it). It changes nothing for a
        // regular file.
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    options
}

/// Checks that an opened `file` is a regular file.
fn ensure_regular(path: &Path, file: File) -> io::Result<File> {
    let metadata = file.metadata()?;
    if metadata.file_type().is_file() {
        Ok(file)
    } else {
        Err(not_regular(path, &metadata))
    }
}

/// Sets `file`'s mode through its descriptor.
pub(crate) fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let mut permissions = file.metadata()?.permissions();
        permissions.set_readonly(mode & 0o222 == 0);
        file.set_permissions(permissions)
    }
}

/// The effective user id of this process.
#[cfg(unix)]
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions, touches no memory of ours and cannot fail.
    unsafe { libc::geteuid() }
}

/// Refuses a file that has other names: a hard link planted at a log path would have this
/// logger write into (or truncate) a file elsewhere. Linux's `protected_hardlinks` stops most
/// such links; this also covers systems without it.
fn ensure_single_link(path: &Path, file: &File) -> io::Result<()> {
    check_single_link(path, &file.metadata()?)
}

/// The check of [`ensure_single_link`], on `metadata` of the file at `path`.
fn check_single_link(path: &Path, metadata: &fs::Metadata) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let links = metadata.nlink();
        if links > 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} has {links} names (hard links); chimera-log writes only into files of its own \
                     (remove the other links, or point log_dir elsewhere)",
                    path.display()
                ),
            ));
        }
    }
    let _ = (path, metadata);
    Ok(())
}

/// Whose files [`check_unshared_or_absent`] accepts.
#[cfg(feature = "sqlite")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// Only the effective user's: what a writer made (a file someone else planted could carry
    /// content of theirs, as a journal SQLite would replay into the database).
    Us,
    /// Anyone's: a reader's, who may read files of another user.
    Anyone,
}

/// Checks, without opening it, that nothing is at `path` or a file that is no other file's
/// name: a regular file (not a link), with no other hard link, owned as `owner` says. For files
/// another library opens by name itself (SQLite's database and journals), which cannot be
/// opened here with `O_NOFOLLOW` and checked through the descriptor; call it before that
/// library opens them. Only the SQLite store has such files (feature `sqlite`).
#[cfg(feature = "sqlite")]
pub(crate) fn check_unshared_or_absent(path: &Path, owner: Owner) -> io::Result<()> {
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !metadata.file_type().is_file() {
        return Err(not_regular(path, &metadata));
    }
    check_single_link(path, &metadata)?;
    #[cfg(unix)]
    if owner == Owner::Us {
        use std::os::unix::fs::MetadataExt;
        if metadata.uid() != effective_uid() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} belongs to user {}, not to this process's user {}; chimera-log uses only files of its own \
                     (remove it, or point log_dir elsewhere)",
                    path.display(),
                    metadata.uid(),
                    effective_uid()
                ),
            ));
        }
    }
    let _ = owner;
    Ok(())
}

/// Opens the log file at `path` for appending (and reading, to check its last byte), creating
/// it with `mode` whatever the umask. Refuses a symbolic link, anything not a regular file, and
/// a file with other hard links.
pub(crate) fn open_append(path: &Path) -> io::Result<File> {
    open_append_with_mode(path, FILE_MODE)
}

/// As [`open_append`], creating the file with `mode`.
pub(crate) fn open_append_with_mode(path: &Path, mode: u32) -> io::Result<File> {
    check_regular_or_absent(path)?;
    loop {
        match no_follow(OpenOptions::new().read(true).append(true)).open(path) {
            Ok(file) => {
                let file = ensure_regular(path, file)?;
                ensure_single_link(path, &file)?;
                return Ok(file);
            }
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(link_error(path, e)),
            Err(_) => {}
        }
        match create_new(path, mode, true) {
            Ok(file) => return Ok(file),
            // Created by someone else between the two opens: open that one (checked above).
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Creates a new file at `path` (failing if anything is there, a link included) with `mode`,
/// set through the descriptor so the umask cannot change it.
pub(crate) fn create_new(path: &Path, mode: u32, append: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create_new(true);
    if append {
        options.read(true).append(true);
    } else {
        options.write(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let file = no_follow(&mut options).open(path)?;
    set_mode(&file, mode)?;
    Ok(file)
}

/// Opens an existing regular file for reading, without following a link.
pub(crate) fn open_read(path: &Path) -> io::Result<File> {
    let file = no_follow(OpenOptions::new().read(true)).open(path).map_err(|e| link_error(path, e))?;
    ensure_regular(path, file)
}

/// `O_NOFOLLOW` on a link fails with `ELOOP`; say what it means.
fn link_error(path: &Path, error: io::Error) -> io::Error {
    #[cfg(unix)]
    if error.raw_os_error() == Some(libc::ELOOP) {
        if let Ok(metadata) = fs::symlink_metadata(path) {
            return not_regular(path, &metadata);
        }
    }
    let _ = path;
    error
}

/// Removes the regular file at `path`; a missing file is not an error, and anything else at the
/// path (a link, a directory) is left alone and reported.
pub(crate) fn remove_regular(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_file() => match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
        Ok(metadata) => Err(not_regular(path, &metadata)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates `dir` (and missing parents) if it does not exist. A directory created here is `0750`
/// whatever the umask; an existing one is left as it is.
pub(crate) fn create_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    builder.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The umask may have narrowed or (umask 000 aside) the mode is exact already; set it
        // exactly. Through the path: a directory that was just created is ours.
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// The identity of a file: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    device: u64,
    inode: u64,
}

impl Identity {
    #[cfg(unix)]
    pub(crate) fn of(metadata: &fs::Metadata) -> Identity {
        use std::os::unix::fs::MetadataExt;
        Identity { device: metadata.dev(), inode: metadata.ino() }
    }

    #[cfg(not(unix))]
    pub(crate) fn of(_: &fs::Metadata) -> Identity {
        Identity { device: 0, inode: 0 }
    }
}

pub(crate) use super::layout::LOCK_FILE;

/// How often, and how far apart, a held lock is tried again before it counts as held (about a
/// quarter of a second in all).
const LOCK_ATTEMPTS: u32 = 25;
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(10);

/// Why the log directory could not be locked.
#[derive(Debug)]
pub(crate) enum LockError {
    /// Another logger holds it; its process id, if it wrote one.
    Held(Option<u32>),
    /// The file named could not be opened or locked.
    Io(std::path::PathBuf, io::Error),
}

/// The exclusive hold of a log directory by one logger: an `flock` on the directory itself and
/// one on its [`LOCK_FILE`], both released when this is dropped (also when the process dies).
///
/// The directory's lock is the one that counts: the lock file is a name in a directory others
/// may write to, so it can be deleted or replaced under a running logger, and a second logger
/// would then lock the new file. The directory cannot be taken away from a running logger that
/// way (removing or renaming it needs write access to its parent, and it is not empty).
#[derive(Debug)]
pub(crate) struct DirectoryLock {
    /// `None` where the filesystem cannot lock a directory (NFS emulates `flock` with byte-range
    /// locks, which a read-only descriptor cannot take): the lock file alone keeps it then.
    _directory: Option<File>,
    _file: File,
}

/// Opens `dir` itself, read-only, for its lock.
fn open_directory(dir: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_DIRECTORY);
    }
    options.open(dir)
}

/// Whether a lock could be had on `file` (`exclusive`, else shared): `Ok(false)` when it stays
/// held by someone else for [`LOCK_ATTEMPTS`] tries.
///
/// A lock just released can still be held for a moment by a child process between its fork and
/// its exec (the descriptor is close-on-exec, but shared until then): another thread spawning a
/// process while a logger restarts. So a held lock is looked at again for a short while before
/// it counts as held.
fn lock_for_a_moment(file: &File, exclusive: bool) -> io::Result<bool> {
    let mut attempts = 0;
    loop {
        let attempt = if exclusive { file.try_lock() } else { file.try_lock_shared() };
        match attempt {
            Ok(()) => return Ok(true),
            Err(fs::TryLockError::WouldBlock) if attempts < LOCK_ATTEMPTS => {
                attempts += 1;
                std::thread::sleep(LOCK_RETRY);
            }
            Err(fs::TryLockError::WouldBlock) => return Ok(false),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// Takes the exclusive hold of `dir` (see [`DirectoryLock`]) and writes this process's id into
/// its lock file.
pub(crate) fn lock_dir(dir: &Path) -> Result<DirectoryLock, LockError> {
    use std::io::{Seek, Write};
    let path = dir.join(LOCK_FILE);
    let failed = |error| LockError::Io(path.clone(), error);
    // Owner only: anyone who can open it can hold the lock (flock needs no write access).
    let mut file = open_append_with_mode(&path, 0o600).map_err(failed)?;
    let directory = match open_directory(dir) {
        Ok(directory) => match lock_for_a_moment(&directory, true) {
            Ok(true) => Some(directory),
            Ok(false) => return Err(LockError::Held(holder(&mut file))),
            Err(error) => cannot_lock(dir, &error),
        },
        Err(error) => cannot_lock(dir, &error),
    };
    // Also the file: a logger of an earlier version locks only that.
    if !lock_for_a_moment(&file, true).map_err(failed)? {
        return Err(LockError::Held(holder(&mut file)));
    }
    file.set_len(0).map_err(failed)?;
    file.seek(io::SeekFrom::Start(0)).map_err(failed)?;
    writeln!(file, "{}", std::process::id()).map_err(failed)?;
    Ok(DirectoryLock { _directory: directory, _file: file })
}

/// Says that `dir` itself cannot be locked (see [`DirectoryLock`]): the lock file alone keeps it.
fn cannot_lock(dir: &Path, error: &io::Error) -> Option<File> {
    diag!(
        "chimera-log: the log directory {} cannot be locked ({error}); only its lock file {LOCK_FILE} keeps a \
         second logger out",
        dir.display()
    );
    None
}

/// The process id the holder of a lock wrote into its lock file, if it reads as one.
fn holder(file: &mut File) -> Option<u32> {
    use std::io::{Read, Seek};
    let mut text = String::new();
    file.seek(io::SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// Whether a logger holds `dir` now: its directory or its lock file is locked, and stays locked
/// for [`LOCK_ATTEMPTS`] tries. The probe takes a shared lock for an instant when one is free; a
/// logger starting in that instant retries for as long. A lock file that cannot be opened or
/// locked counts as held: the cautious reading; a directory that cannot be locked (as on NFS)
/// says nothing, and the lock file decides.
pub(crate) fn lock_is_held(dir: &Path) -> bool {
    let held = |file: &File| match lock_for_a_moment(file, false) {
        Ok(true) => {
            let _ = file.unlock();
            Ok(false)
        }
        Ok(false) => Ok(true),
        Err(error) => Err(error),
    };
    if open_directory(dir).and_then(|directory| held(&directory)).unwrap_or(false) {
        return true;
    }
    match open_read(&dir.join(LOCK_FILE)) {
        Ok(file) => held(&file).unwrap_or(true),
        Err(error) => error.kind() != io::ErrorKind::NotFound,
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    #[test]
    fn open_append_refuses_a_symlink_and_leaves_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, "secret\n").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
        symlink(&target, dir.path().join("chimera.log")).unwrap();
        let error = open_append(&dir.path().join("chimera.log")).unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
        assert_eq!(fs::read_to_string(&target).unwrap(), "secret\n");
        assert_eq!(fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn open_append_refuses_a_fifo_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("chimera.log");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let error = open_append(&fifo).unwrap_err();
        assert!(error.to_string().contains("a FIFO"), "{error}");
    }

    #[test]
    fn remove_regular_leaves_a_symlink_and_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, "x").unwrap();
        let link = dir.path().join("link");
        symlink(&target, &link).unwrap();
        assert!(remove_regular(&link).is_err());
        assert!(fs::symlink_metadata(&link).is_ok() && target.exists());
    }

    #[test]
    fn a_hard_link_at_a_log_path_is_refused_and_its_other_name_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("service.db");
        fs::write(&target, "data\n").unwrap();
        fs::hard_link(&target, dir.path().join(LOCK_FILE)).unwrap();
        fs::hard_link(&target, dir.path().join("chimera.log")).unwrap();
        let error = open_append(&dir.path().join("chimera.log")).unwrap_err();
        assert!(error.to_string().contains("hard links"), "{error}");
        assert!(matches!(lock_dir(dir.path()), Err(LockError::Io(..))));
        assert_eq!(fs::read_to_string(&target).unwrap(), "data\n", "neither appended to nor truncated");
    }

    #[test]
    fn files_created_here_belong_to_the_effective_user() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let file = create_new(&dir.path().join("x"), FILE_MODE, false).unwrap();
        assert_eq!(file.metadata().unwrap().uid(), effective_uid());
    }

    #[test]
    fn a_lock_file_deleted_or_replaced_under_the_holder_neither_frees_the_directory_nor_hides_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let _held = lock_dir(dir.path()).unwrap();
        let lock_file = dir.path().join(LOCK_FILE);
        fs::remove_file(&lock_file).unwrap();
        assert!(lock_is_held(dir.path()), "the probe sees the holder without its file");
        assert!(matches!(lock_dir(dir.path()), Err(LockError::Held(None))), "deleted");
        fs::remove_file(&lock_file).unwrap();
        fs::write(&lock_file, "1\n").unwrap();
        assert!(matches!(lock_dir(dir.path()), Err(LockError::Held(_))), "replaced");
        assert!(lock_is_held(dir.path()));
    }

    #[test]
    fn a_directory_is_free_once_its_holder_dropped_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!lock_is_held(dir.path()));
        drop(lock_dir(dir.path()).unwrap());
        assert!(!lock_is_held(dir.path()), "free after the drop, with its lock file still there");
        let _again = lock_dir(dir.path()).unwrap();
        assert!(lock_is_held(dir.path()));
    }

    #[test]
    fn a_second_lock_on_the_directory_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let _held = lock_dir(dir.path()).unwrap();
        match lock_dir(dir.path()) {
            Err(LockError::Held(pid)) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Held, got {other:?}"),
        }
    }
}
