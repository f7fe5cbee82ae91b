//! The file sink: one log file in the log directory, opened append-only and created `0640`.
//!
//! General and route files buffer their writes (pushed out on flush and shutdown); the audit
//! file writes through, so an audit line is in the file when `emit!` returns.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use super::Sink;

#[derive(Debug)]
pub(crate) struct FileSink {
    out: Output,
}

#[derive(Debug)]
enum Output {
    Buffered(BufWriter<File>),
    WriteThrough(File),
}

/// Opens `path` for appending, creating it readable by owner and group only.
pub(crate) fn open_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o640);
    }
    options.open(path)
}

impl FileSink {
    pub(crate) fn open(path: &Path, write_through: bool) -> io::Result<Self> {
        let file = open_append(path)?;
        let out = if write_through {
            Output::WriteThrough(file)
        } else {
            Output::Buffered(BufWriter::with_capacity(64 * 1024, file))
        };
        Ok(FileSink { out })
    }
}

impl Sink for FileSink {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        match &mut self.out {
            Output::Buffered(writer) => writer.write_all(line),
            Output::WriteThrough(file) => file.write_all(line),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Output::Buffered(writer) => writer.flush(),
            Output::WriteThrough(file) => file.flush(),
        }
    }
}
