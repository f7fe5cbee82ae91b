//! Reading a log directory: a file's backups and current file in chronological order (name
//! order is rotation order), gzip or plain, line by line, with errors that name the file.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// A failure to read, naming the file.
#[derive(Debug)]
pub(crate) struct ReadError {
    pub(crate) path: PathBuf,
    pub(crate) error: io::Error,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.error)
    }
}

/// The files of `name` in `dir`, oldest first: its backups (one per stamp, the `.gz` when both
/// forms exist), then the current file if present.
pub(crate) fn files_in_order(dir: &Path, name: &str) -> Result<Vec<PathBuf>, ReadError> {
    let entries = std::fs::read_dir(dir).map_err(|error| ReadError { path: dir.to_owned(), error })?;
    let prefix = format!("{name}.");
    let mut backups: Vec<String> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| ReadError { path: dir.to_owned(), error })?;
        let Ok(file) = entry.file_name().into_string() else { continue };
        let Some(rest) = file.strip_prefix(&prefix) else { continue };
        let stamp = rest.strip_suffix(".gz").unwrap_or(rest);
        // yyyymmddThhmmss.ffffffZ
        let is_stamp = stamp.len() == 23 && stamp.ends_with('Z') && stamp.as_bytes()[8] == b'T';
        if is_stamp && !file.ends_with(".tmp") {
            backups.push(file);
        }
    }
    backups.sort();
    for file in &backups {
        ensure_regular(&dir.join(file))?;
    }
    // Mid-compression, a stamp may exist both plain and gzipped: keep the finished `.gz`.
    backups.dedup_by(|later, earlier| *later == format!("{earlier}.gz") || format!("{later}.gz") == *earlier);
    let mut files: Vec<PathBuf> = backups.into_iter().map(|file| dir.join(file)).collect();
    let current = dir.join(name);
    if std::fs::symlink_metadata(&current).is_ok() {
        ensure_regular(&current)?;
        files.push(current);
    }
    Ok(files)
}

/// A FIFO, a device, a directory or a link where a log file should be is an error, never a read
/// that hangs or wanders outside the directory.
fn ensure_regular(path: &Path) -> Result<(), ReadError> {
    let metadata = std::fs::symlink_metadata(path).map_err(|error| ReadError { path: path.to_owned(), error })?;
    if metadata.file_type().is_file() {
        Ok(())
    } else {
        let error =
            io::Error::new(io::ErrorKind::InvalidInput, "not a regular file (a link, FIFO, device or directory)");
        Err(ReadError { path: path.to_owned(), error })
    }
}

/// The outcome of writing to standard output: a reader that went away (`| head`) ends the
/// command quietly with exit 0, as for any Unix filter; any other failure is an error.
pub(crate) fn stdout_result<T>(result: io::Result<T>) -> Result<T, String> {
    match result {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(error) => Err(format!("writing to standard output: {error}")),
        Ok(value) => Ok(value),
    }
}

/// Opens a log file for reading, decompressing `.gz`. A plain backup compressed (and deleted)
/// since it was listed is read from its `.gz`.
pub(crate) fn open(path: &Path) -> Result<Box<dyn BufRead>, ReadError> {
    let (path, file) = match File::open(path) {
        Ok(file) => (path.to_owned(), file),
        Err(error) if error.kind() == io::ErrorKind::NotFound && path.extension().is_none_or(|e| e != "gz") => {
            let mut gz = path.as_os_str().to_owned();
            gz.push(".gz");
            let gz = PathBuf::from(gz);
            match File::open(&gz) {
                Ok(file) => (gz, file),
                Err(_) => return Err(ReadError { path: path.to_owned(), error }),
            }
        }
        Err(error) => return Err(ReadError { path: path.to_owned(), error }),
    };
    let path = path.as_path();
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok(Box::new(BufReader::with_capacity(256 * 1024, reader)))
}

/// Lines longer than this are not kept in memory: `each` gets a short placeholder instead (not
/// JSON, so every subcommand counts it as unreadable). A damaged file or a gzip bomb cannot make
/// a subcommand's memory grow with it.
pub(crate) const MAX_LINE: usize = 16 * 1024 * 1024;

/// Calls `each(path, line_number, line)` for every line of every file, in order; a file that
/// cannot be read (a corrupt `.gz`) is an error naming it and the line reached. A line longer
/// than [`MAX_LINE`] is given as `[chimera-log: line of N bytes skipped ...]`.
pub(crate) fn for_each_line(files: &[PathBuf], mut each: impl FnMut(&Path, usize, &[u8])) -> Result<(), ReadError> {
    for path in files {
        let mut reader = open(path)?;
        let mut line = Vec::new();
        let mut number = 0;
        loop {
            match read_line_capped(&mut reader, &mut line) {
                Ok(None) => break,
                Ok(Some(length)) => {
                    number += 1;
                    if length > MAX_LINE {
                        let placeholder = format!(
                            "[chimera-log: line of {length} bytes skipped, longer than the {MAX_LINE}-byte limit]"
                        );
                        each(path, number, placeholder.as_bytes());
                    } else {
                        each(path, number, &line);
                    }
                }
                Err(error) => {
                    let error = io::Error::new(error.kind(), format!("after line {number}: {error}"));
                    return Err(ReadError { path: path.clone(), error });
                }
            }
        }
    }
    Ok(())
}

/// Reads the next line into `line` (without its newline), keeping it only up to [`MAX_LINE`];
/// returns the line's whole length, or `None` at the end.
fn read_line_capped(reader: &mut dyn BufRead, line: &mut Vec<u8>) -> io::Result<Option<usize>> {
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
            return Ok(any.then_some(length));
        }
        any = true;
        let (chunk, used, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(at) => (&buf[..at], at + 1, true),
            None => (buf, buf.len(), false),
        };
        length += chunk.len();
        if length <= MAX_LINE {
            line.extend_from_slice(chunk);
        } else {
            line.clear();
        }
        reader.consume(used);
        if done {
            return Ok(Some(length));
        }
    }
}
