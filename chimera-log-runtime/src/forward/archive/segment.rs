//! Objects of records: a run of `executions.log`'s lines, byte for byte, gzip-compressed, named
//! by the stream and the seq range of the records in it. A backup read from its start is one
//! object (cut at its end); the current file's records are cut every `archive_interval`, at a
//! flush and at shutdown. An object always ends with a record, so the lines that are not records
//! (the anchor at the top of each file) travel with the record after them.

use std::io::Write;
use std::time::{Duration, SystemTime};

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::audit::{hex, parse_sealed};
use crate::dir::backup::Stamp;
use crate::dir::follow::Cursor;

/// A segment is cut once it holds this many bytes (uncompressed), whatever the interval: the
/// compressed object is held in memory until the bucket has it. Above the default `max_bytes`
/// (100 MiB), so that a backup of the default size is one object.
pub(crate) const MAX_SEGMENT_BYTES: u64 = 256 * 1024 * 1024;

/// The folder of the record objects under the stream.
pub(crate) const RECORDS: &str = "records";

/// The key of the object holding records `first..=last` of `stream`: numbers zero-padded so
/// that key order is seq order.
pub(crate) fn object_key(prefix: &str, stream: &str, first: u64, last: u64) -> String {
    format!("{}{RECORDS}/{first:020}-{last:020}.log.gz", stream_prefix(prefix, stream))
}

/// `<prefix>/<stream>/`, or `<stream>/` without a prefix.
pub(crate) fn stream_prefix(prefix: &str, stream: &str) -> String {
    if prefix.is_empty() {
        format!("{stream}/")
    } else {
        format!("{prefix}/{stream}/")
    }
}

/// The seq range a record object's key names, if `key` is one.
pub(crate) fn key_range(key: &str) -> Option<(u64, u64)> {
    let name = key.rsplit('/').next()?.strip_suffix(".log.gz")?;
    let (first, last) = name.split_once('-')?;
    if first.len() != 20 || last.len() != 20 {
        return None;
    }
    Some((first.parse().ok()?, last.parse().ok()?))
}

/// A record line's seq, chain (hex) and time; `None` for a line that is not a record.
pub(crate) fn record_of(line: &[u8]) -> Option<(u64, String, Option<SystemTime>)> {
    let sealed = parse_sealed(line)?;
    Some((sealed.seq, hex(&sealed.chain), line_time(line)))
}

/// The line's own timestamp: every line starts `{"timestamp":"<RFC 3339>"`.
fn line_time(line: &[u8]) -> Option<SystemTime> {
    let rest = line.strip_prefix(b"{\"timestamp\":\"")?;
    let end = rest.iter().position(|&b| b == b'"')?;
    let text = std::str::from_utf8(&rest[..end]).ok()?;
    let time = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    let micros = u64::try_from(time.timestamp_micros()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_micros(micros))
}

/// What a digest lists of a record object: its seq range and the chain at its last record, read
/// from its bytes (for an object found in the bucket rather than cut here).
pub(crate) fn listed(key: &str, gz: &[u8]) -> Option<super::digest::Listed> {
    use sha2::Digest;
    let (first_seq, last_seq) = key_range(key)?;
    // Line by line, each held only up to a cap: an object in the bucket is not ours to trust
    // (a gzip bomb planted under the stream's prefix must not take the logger's memory).
    let mut reader = std::io::BufReader::new(flate2::read::GzDecoder::new(gz));
    let (mut line, mut chain) = (Vec::new(), None);
    while let Some(read) =
        crate::dir::read::read_line_capped(&mut reader, &mut line, MAX_SEGMENT_BYTES as usize).ok()?
    {
        if let Some(record) = read.kept(MAX_SEGMENT_BYTES as usize).then(|| parse_sealed(&line)).flatten() {
            chain = Some(record.chain);
        }
    }
    Some(super::digest::Listed {
        key: key.to_owned(),
        sha256: hex(&sha2::Sha256::digest(gz)),
        first_seq,
        last_seq,
        chain: hex(&chain?),
    })
}

/// A segment ready to upload.
#[derive(Debug, Clone)]
pub(crate) struct Sealed {
    pub(crate) key: String,
    pub(crate) body: Vec<u8>,
    pub(crate) first_seq: u64,
    pub(crate) last_seq: u64,
    pub(crate) records: u64,
    /// The chain value of its last record (hex), for the digest.
    pub(crate) last_chain: String,
    /// Its last record's time: the lock runs `audit_retention` from then.
    pub(crate) last_time: Option<SystemTime>,
    /// The follower's cursor just after its last line.
    pub(crate) end: Cursor,
}

/// The records read since the last cut.
#[derive(Debug)]
struct Open {
    gzip: GzEncoder<Vec<u8>>,
    bytes: u64,
    first_seq: u64,
    last_seq: u64,
    records: u64,
    last_chain: String,
    last_time: Option<SystemTime>,
    /// When its first record was read, by the logger's clock.
    opened: SystemTime,
    end: Cursor,
}

/// Builds segments from the lines a follower reads.
#[derive(Debug, Default)]
pub(crate) struct Builder {
    open: Option<Open>,
    /// Lines that are not records, read after the last record: they go with the next record.
    held: Vec<u8>,
    held_end: Option<Cursor>,
    /// The file (by the cursor's `after`) the last line came from.
    file: Option<Option<Stamp>>,
}

impl Builder {
    /// Whether `cursor` (just after a line) is in another file than the lines before it: the
    /// segment must be cut before that line is added ([`cut_file`](Self::cut_file)).
    pub(crate) fn is_new_file(&self, cursor: Cursor) -> bool {
        self.file.is_some_and(|file| file != cursor.after)
    }

    /// Adds a record line read at `now`, ending at `cursor`.
    pub(crate) fn add_record(
        &mut self,
        line: &[u8],
        (seq, chain, time): (u64, String, Option<SystemTime>),
        cursor: Cursor,
        now: SystemTime,
    ) {
        self.file = Some(cursor.after);
        let open = self.open.get_or_insert_with(|| Open {
            gzip: GzEncoder::new(Vec::new(), Compression::default()),
            bytes: 0,
            first_seq: seq,
            last_seq: seq,
            records: 0,
            last_chain: String::new(),
            last_time: None,
            opened: now,
            end: cursor,
        });
        // Writing into a Vec fails only when memory does, which aborts anyway.
        let _ = open.gzip.write_all(&self.held);
        let _ = open.gzip.write_all(line);
        open.bytes += (self.held.len() + line.len()) as u64;
        self.held.clear();
        self.held_end = None;
        open.last_seq = seq;
        open.records += 1;
        open.last_chain = chain;
        open.last_time = time;
        open.end = cursor;
    }

    /// Adds a line that is not a record (held until a record follows it, or its file ends).
    pub(crate) fn add_other(&mut self, line: &[u8], cursor: Cursor) {
        self.file = Some(cursor.after);
        self.held.extend_from_slice(line);
        self.held_end = Some(cursor);
    }

    /// Forgets the lines held (records already in the bucket follow them).
    pub(crate) fn drop_held(&mut self, cursor: Cursor) {
        self.file = Some(cursor.after);
        self.held.clear();
        self.held_end = None;
    }

    /// Whether a record waits to be cut.
    pub(crate) fn has_records(&self) -> bool {
        self.open.is_some()
    }

    /// Whether the open segment is due: its first record was read `interval` ago, or it is full.
    pub(crate) fn due(&self, now: SystemTime, interval: Duration) -> bool {
        self.open.as_ref().is_some_and(|open| {
            open.bytes >= MAX_SEGMENT_BYTES || now.duration_since(open.opened).is_ok_and(|age| age >= interval)
        })
    }

    /// Whether the open segment is full.
    pub(crate) fn full(&self) -> bool {
        self.open.as_ref().is_some_and(|open| open.bytes >= MAX_SEGMENT_BYTES)
    }

    /// Cuts the records read so far (the lines held after them stay for the next segment).
    pub(crate) fn cut(&mut self, prefix: &str, stream: &str) -> Option<Sealed> {
        self.open.take().map(|open| open.seal(prefix, stream))
    }

    /// Cuts at the end of a file: the lines held after its last record go with it (nothing
    /// follows them in that file). With no record read, nothing is cut: the held lines go with
    /// the next record, in the next file.
    pub(crate) fn cut_file(&mut self, prefix: &str, stream: &str) -> Option<Sealed> {
        let mut open = self.open.take()?;
        if let Some(end) = self.held_end.take() {
            let _ = open.gzip.write_all(&self.held);
            open.bytes += self.held.len() as u64;
            open.end = end;
        }
        self.held.clear();
        Some(open.seal(prefix, stream))
    }

    /// Forgets everything read (the follower goes back to the last saved cursor).
    pub(crate) fn clear(&mut self) {
        *self = Builder::default();
    }
}

impl Open {
    fn seal(self, prefix: &str, stream: &str) -> Sealed {
        let body = self.gzip.finish().unwrap_or_default();
        Sealed {
            key: object_key(prefix, stream, self.first_seq, self.last_seq),
            body,
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            records: self.records,
            last_chain: self.last_chain,
            last_time: self.last_time,
            end: self.end,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_the_seq_range_zero_padded_and_is_read_back() {
        let key = object_key("chimera", "host/var/log/bot", 7, 1_234);
        assert_eq!(key, "chimera/host/var/log/bot/records/00000000000000000007-00000000000000001234.log.gz");
        assert_eq!(key_range(&key), Some((7, 1_234)));
        assert_eq!(object_key("", "h/d", 1, 2), "h/d/records/00000000000000000001-00000000000000000002.log.gz");
        assert_eq!(key_range("h/d/digests/x.json"), None);
        assert_eq!(key_range("h/d/records/7-9.log.gz"), None);
    }
}
