//! The audit chain: what makes `executions.log` tamper-evident, after CloudTrail's log-file
//! integrity validation.
//!
//! Each audit line carries, after `context`, `"seq"` and `"chain"`:
//!
//! ```text
//! {"timestamp":…,"level":…,"module":…,"event":…,"context":{…},"seq":42,"chain":"<64 hex digits>"}
//! ```
//!
//! - `seq` numbers audit records from 1, across rotations and restarts.
//! - `chain` is `H(previous chain ‖ body)`, hex, where `body` is the line's bytes from its `{` up
//!   to (not including) `,"chain":` — the whole record with its `seq`, without its own chain —
//!   and the previous chain is its 32 raw bytes (32 zero bytes before record 1). `H` is SHA-256,
//!   or HMAC-SHA-256 keyed with the audit key when one is configured (`LogConfig::audit_key`),
//!   so that without the key nobody can recompute a valid chain after editing a record.
//!
//! Every audit file begins with an **anchor** line, outside the numbering:
//!
//! ```text
//! {"timestamp":…,"level":"INFO","module":"chimera_log","event":"audit_anchor","context":{"previous_seq":41,"previous_chain":"<hex>"},"anchor":"<hex>"}
//! ```
//!
//! `previous_seq` and `previous_chain` are the head of the chain before the file's first record
//! (0 and 64 zeros for the first file), and `anchor` is `H(previous chain ‖ body)` with `body`
//! the bytes up to `,"anchor":`. The file's first record links to `previous_chain`, so each file
//! verifies on its own: after retention removed older files, the first retained record is still
//! checked, and with a key nobody can forge the anchor that would let it be edited.
//!
//! After an unclean end (a crash mid-write leaves a **torn** line: one that is not valid JSON),
//! the next start writes an `audit_restart` record, sealed and numbered like any other, whose
//! context accounts for the torn lines just before it: `torn_lines`, `torn_bytes` (without
//! newlines) and `torn_sha256` (SHA-256 of the torn lines, each followed by a newline); see
//! [`TornRun`].
//!
//! This module owns the chain's definition (sealing a line, anchoring a file, checking both) and
//! recovering the chain head at start; it does no writing of its own.

use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

const SEAL_KEY: &[u8] = b",\"chain\":\"";

/// The head of the chain: the last record's number and chain value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainHead {
    /// The last record's `seq` (0: no record yet).
    pub seq: u64,
    /// The last record's chain value (all zeros before the first record).
    pub chain: [u8; 32],
}

/// How the chain is hashed.
#[derive(Clone, Default)]
pub struct ChainKey(Option<Vec<u8>>);

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "ChainKey(HMAC-SHA-256, key hidden)" } else { "ChainKey(SHA-256)" })
    }
}

impl ChainKey {
    /// Plain SHA-256: detects accidents and edits by whoever does not also recompute the chain.
    pub fn unkeyed() -> Self {
        ChainKey(None)
    }

    /// HMAC-SHA-256 with `key`: a forger without the key cannot produce a valid chain.
    pub fn keyed(key: impl Into<Vec<u8>>) -> Self {
        ChainKey(Some(key.into()))
    }

    /// The chain value of a record whose body is `body`, following `previous`.
    pub fn link(&self, previous: &[u8; 32], body: &[u8]) -> [u8; 32] {
        match &self.0 {
            None => {
                let mut hasher = Sha256::new();
                hasher.update(previous);
                hasher.update(body);
                hasher.finalize().into()
            }
            Some(key) => {
                let mut mac =
                    <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
                mac.update(previous);
                mac.update(body);
                mac.finalize().into_bytes().into()
            }
        }
    }
}

/// Turns an encoded line (`{…}\n`) into the next audit record: appends `"seq"` and `"chain"` and
/// advances `head`. `out` receives the sealed line.
pub(crate) fn seal(line: &[u8], head: &mut ChainHead, key: &ChainKey, out: &mut Vec<u8>) {
    let open = line.strip_suffix(b"}\n").unwrap_or(line);
    // Saturating: a head read from a damaged or planted file must not make sealing panic.
    let seq = head.seq.saturating_add(1);
    out.clear();
    out.extend_from_slice(open);
    out.extend_from_slice(b",\"seq\":");
    out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
    let chain = key.link(&head.chain, out);
    out.extend_from_slice(SEAL_KEY);
    push_hex(out, &chain);
    out.extend_from_slice(b"\"}\n");
    *head = ChainHead { seq, chain };
}

const ANCHOR_KEY: &[u8] = b",\"anchor\":\"";

/// The event name of the line that begins every audit file.
pub const ANCHOR_EVENT: &str = "audit_anchor";
/// The event name of the record written at start after an unclean end.
pub const RESTART_EVENT: &str = "audit_restart";

/// Writes into `out` the anchor line that begins an audit file whose first record follows
/// `previous`.
pub(crate) fn anchor_line(time: SystemTime, previous: &ChainHead, key: &ChainKey, out: &mut Vec<u8>) {
    let envelope = crate::json::Envelope {
        time: time.into(),
        level: crate::Level::Info,
        module_json: "\"chimera_log\"",
        event: ANCHOR_EVENT.into(),
        exception: None,
        audit_key: None,
        trace: None,
    };
    out.clear();
    crate::json::encode_line(out, envelope, |buf| {
        let mut context = crate::json::ContextWriter::open(buf);
        context.field("previous_seq", &previous.seq);
        context.field("previous_chain", &hex(&previous.chain));
        context.finish();
    });
    let open = out.len() - b"}\n".len();
    out.truncate(open);
    let seal = key.link(&previous.chain, out);
    out.extend_from_slice(ANCHOR_KEY);
    push_hex(out, &seal);
    out.extend_from_slice(b"\"}\n");
}

/// An anchor line's parts, as read back (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor<'a> {
    /// The bytes the seal covers.
    pub body: &'a [u8],
    /// The chain head before the file's first record.
    pub previous: ChainHead,
    /// The seal the line claims.
    pub seal: [u8; 32],
}

impl Anchor<'_> {
    /// Whether the seal is `H(previous chain ‖ body)` under `key`.
    pub fn is_sealed_by(&self, key: &ChainKey) -> bool {
        key.link(&self.previous.chain, self.body) == self.seal
    }
}

/// Reads an anchor line; `None` when `line` is not one.
pub fn parse_anchor(line: &[u8]) -> Option<Anchor<'_>> {
    #[derive(serde::Deserialize)]
    struct Body {
        module: String,
        event: String,
        context: Context,
    }
    #[derive(serde::Deserialize)]
    struct Context {
        previous_seq: u64,
        previous_chain: String,
    }
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let at = line.windows(ANCHOR_KEY.len()).rposition(|w| w == ANCHOR_KEY)?;
    let (body, rest) = line.split_at(at);
    let seal = std::str::from_utf8(rest.strip_prefix(ANCHOR_KEY)?.strip_suffix(b"\"}")?).ok()?;
    let mut object = body.to_vec();
    object.push(b'}');
    let parsed: Body = serde_json::from_slice(&object).ok()?;
    if parsed.module != "chimera_log" || parsed.event != ANCHOR_EVENT {
        return None;
    }
    let previous = ChainHead { seq: parsed.context.previous_seq, chain: unhex(&parsed.context.previous_chain)? };
    Some(Anchor { body, previous, seal: unhex(seal)? })
}

/// Consecutive torn lines (not valid JSON: what a crash mid-write leaves), as an `audit_restart`
/// record accounts for them: how many, their bytes without newlines, and the SHA-256 of the
/// lines each followed by a newline.
#[derive(Debug, Clone, Default)]
pub struct TornRun {
    /// Torn lines in the run.
    pub lines: u64,
    /// Their bytes, newlines not counted.
    pub bytes: u64,
    hasher: Sha256,
}

impl TornRun {
    /// Adds the next torn line (without its newline).
    pub fn push(&mut self, line: &[u8]) {
        self.lines += 1;
        self.bytes += line.len() as u64;
        self.hasher.update(line);
        self.hasher.update(b"\n");
    }

    /// The SHA-256 of the lines so far, each followed by a newline.
    pub fn sha256(&self) -> [u8; 32] {
        self.hasher.clone().finalize().into()
    }

    /// Whether `context` (an `audit_restart` record's) accounts for exactly this run.
    pub fn is_accounted_for_by(&self, context: &serde_json::Value) -> bool {
        context["torn_lines"].as_u64() == Some(self.lines)
            && context["torn_bytes"].as_u64() == Some(self.bytes)
            && context["torn_sha256"].as_str() == Some(hex(&self.sha256()).as_str())
    }
}

/// Whether `line` is torn: not a sealed record, not an anchor, not even valid JSON. A well-formed
/// line that is not a record was put there; only a line that is not JSON can be a torn write.
pub fn is_torn(line: &[u8]) -> bool {
    parse_sealed(line).is_none() && serde_json::from_slice::<serde::de::IgnoredAny>(line).is_err()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    String::from_utf8(out).expect("hex digits are ASCII")
}

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize]);
        out.push(DIGITS[(byte & 0xf) as usize]);
    }
}

/// A chain value from its hex form (as `audit_checkpoint` events and the store write it).
pub(crate) fn parse_chain(text: &str) -> Option<[u8; 32]> {
    unhex(text)
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        // Lower case only: the writer never writes upper case, so "A" for "a" is a change.
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(u32::from(c - b'0')),
            b'a'..=b'f' => Some(u32::from(c - b'a' + 10)),
            _ => None,
        };
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

/// A record's parts, as read back from a line (without its newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRecord<'a> {
    /// The bytes the chain value covers.
    pub body: &'a [u8],
    /// The record's number.
    pub seq: u64,
    /// The chain value the record claims.
    pub chain: [u8; 32],
}

/// Splits an audit line into body, `seq` and claimed chain; `None` when it is not a sealed
/// record of this shape (which `verify` reports).
pub fn parse_sealed(line: &[u8]) -> Option<SealedRecord<'_>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let at = line.windows(SEAL_KEY.len()).rposition(|w| w == SEAL_KEY)?;
    let (body, rest) = line.split_at(at);
    let chain = std::str::from_utf8(rest.strip_prefix(SEAL_KEY)?.strip_suffix(b"\"}")?).ok()?;
    let seq_at = body.windows(7).rposition(|w| w == b",\"seq\":")?;
    let seq = std::str::from_utf8(&body[seq_at + 7..]).ok()?.parse().ok()?;
    Some(SealedRecord { body, seq, chain: unhex(chain)? })
}

/// The chain head found at start, and the files that could not be read for it.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    pub(crate) head: ChainHead,
    /// Files (newest first) that were damaged or unreadable, with the reason: reported, never a
    /// reason not to start.
    pub(crate) skipped: Vec<(PathBuf, io::Error)>,
    /// The torn lines at the end of the current file (a crash mid-write), not yet accounted for
    /// by an `audit_restart` record.
    pub(crate) torn_tail: Option<TornRun>,
}

/// The chain head left by the newest readable record of `name` in `dir`: its current file, else
/// its backups (plain or gzip), newest first, as [`list_backups`](crate::dir::backup::list_backups)
/// sees them at `now`. A torn line (a crash mid-write) is skipped; a damaged or unreadable file is
/// skipped and reported, and the records read from it before the damage still count, so the
/// chain continues after the highest `seq` that can be read.
pub(crate) fn recover_head(dir: &Path, name: &str, now: SystemTime) -> io::Result<Recovered> {
    use crate::dir::backup::{gz_path, list_backups, plain_path};
    let backups = list_backups(dir, name, now)?;
    let newest_first = std::iter::once(dir.join(name)).chain(backups.iter().rev().map(|(stamp, files)| {
        if files.gz {
            gz_path(dir, name, *stamp)
        } else {
            plain_path(dir, name, *stamp)
        }
    }));
    let mut recovered = Recovered::default();
    let current = dir.join(name);
    for path in newest_first {
        let mut last = None;
        // Only the current file can end in torn lines: a backup is a file rotated away after a
        // whole line.
        let mut torn = (path == current).then(TornRun::default);
        let outcome = for_each_line(&path, |line| match parse_sealed(line) {
            Some(record) => {
                last = Some(ChainHead { seq: record.seq, chain: record.chain });
                if let Some(torn) = torn.as_mut() {
                    *torn = TornRun::default();
                }
            }
            None => {
                if let Some(torn) = torn.as_mut() {
                    if is_torn(line) {
                        torn.push(line);
                    } else {
                        *torn = TornRun::default();
                    }
                }
            }
        });
        if let Some(torn) = torn.filter(|torn| torn.lines > 0) {
            recovered.torn_tail = Some(torn);
        }
        if let Some(head) = last {
            if head.seq > recovered.head.seq {
                recovered.head = head;
            }
        }
        if let Err(error) = outcome {
            recovered.skipped.push((path, error));
        }
        if last.is_some() {
            break;
        }
    }
    Ok(recovered)
}

/// The chain head recorded by the newest `audit_checkpoint` event for the audit file
/// `audit_name` in the general file `general_name` of `dir`: its current file, read from the
/// end, else its newest backup. `None` when neither holds one. Checkpoints are written at each
/// rotation of the audit file and every `checkpoint_interval`, outside the audit file: when the
/// newest audit records cannot be read, they still say how far the chain went.
pub(crate) fn last_checkpoint(dir: &Path, general_name: &str, audit_name: &str, now: SystemTime) -> Option<ChainHead> {
    use crate::dir::backup::{gz_path, list_backups, plain_path};
    let checkpoint = |line: &[u8]| -> Option<ChainHead> {
        const MARK: &[u8] = b"\"event\":\"audit_checkpoint\"";
        line.windows(MARK.len()).any(|w| w == MARK).then_some(())?;
        let value: serde_json::Value = serde_json::from_slice(line).ok()?;
        let context = &value["context"];
        (value["module"] == "chimera_log" && context["file"] == audit_name).then_some(())?;
        Some(ChainHead { seq: context["seq"].as_u64()?, chain: unhex(context["chain"].as_str()?)? })
    };
    if let Some(head) = last_line_where(&dir.join(general_name), checkpoint) {
        return Some(head);
    }
    let (stamp, files) = list_backups(dir, general_name, now).ok()?.pop()?;
    let path = if files.gz { gz_path(dir, general_name, stamp) } else { plain_path(dir, general_name, stamp) };
    let mut found = None;
    let _ = for_each_line(&path, |line| {
        if let Some(head) = checkpoint(line) {
            found = Some(head);
        }
    });
    found
}

/// The last line of the plain file at `path` for which `pick` gives a value, read backwards in
/// blocks (lines longer than a block's worth of carry are passed over: not what is looked for).
fn last_line_where<T>(path: &Path, mut pick: impl FnMut(&[u8]) -> Option<T>) -> Option<T> {
    use std::io::{Seek, SeekFrom};
    const BLOCK: u64 = 1 << 20;
    let mut file = crate::dir::read::open_log_file(path).ok()?;
    let mut end = file.metadata().ok()?.len();
    // The bytes after the last newline found so far (the start of a line not yet whole).
    let mut carry: Vec<u8> = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let mut block = vec![0u8; (end - start) as usize];
        file.seek(SeekFrom::Start(start)).ok()?;
        file.read_exact(&mut block).ok()?;
        block.extend_from_slice(&carry);
        let mut tail = block.len();
        while let Some(newline) = block[..tail].iter().rposition(|&b| b == b'\n') {
            if let Some(found) = pick(&block[newline + 1..tail]) {
                return Some(found);
            }
            tail = newline;
        }
        carry = if tail as u64 > BLOCK { Vec::new() } else { block[..tail].to_vec() };
        end = start;
    }
    pick(&carry)
}

/// Lines longer than this are not records this logger wrote (they are skipped, unbuffered): a
/// damaged or hostile file, a gzip bomb without newlines, cannot exhaust memory at start.
const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// Calls `each` with every line (without its newline) of the file at `path`, in order, the last
/// one even without its newline; a missing file has none. Lines longer than
/// [`MAX_RECORD_BYTES`] are left out. An error says where reading stopped (the lines before it
/// were given).
fn for_each_line(path: &Path, mut each: impl FnMut(&[u8])) -> io::Result<()> {
    let file = match crate::dir::read::open_log_file(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    while let Some(read) = crate::dir::read::read_line_capped(&mut reader, &mut line, MAX_RECORD_BYTES)? {
        if read.kept(MAX_RECORD_BYTES) {
            each(&line);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_checkpoint_is_found_however_far_back_and_wherever_it_falls_across_read_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = |seq: u64| {
            format!(
                "{{\"timestamp\":\"t\",\"level\":\"INFO\",\"module\":\"chimera_log\",\"event\":\"audit_checkpoint\",\
                 \"context\":{{\"file\":\"executions.log\",\"seq\":{seq},\"chain\":\"{}\",\"reason\":\"rotation\"}}}}\n",
                hex(&[seq as u8; 32])
            )
        };
        let filler = format!("{{\"event\":\"tick\",\"context\":{{\"pad\":\"{}\"}}}}\n", "x".repeat(1000));
        // For each offset of the newest checkpoint around the 1 MiB block boundary from the end:
        // found, and it is the newest, not an older one or one for another file.
        for shift in [0usize, 1, 40, 200, 1001] {
            let mut text = checkpoint(1);
            text.push_str(&checkpoint(7));
            text.push_str(&checkpoint(99).replace("executions.log", "other.log"));
            while text.len() < (1 << 20) - shift - 100 {
                text.push_str(&filler);
            }
            text.push_str(&"y".repeat(((1 << 20) - shift).saturating_sub(text.len())));
            text.push('\n');
            text.push_str(&checkpoint(8));
            for _ in 0..1100 {
                text.push_str(&filler);
            }
            std::fs::write(dir.path().join("chimera.log"), &text).unwrap();
            let head = last_checkpoint(dir.path(), "chimera.log", "executions.log", SystemTime::now()).unwrap();
            assert_eq!((head.seq, head.chain), (8, [8; 32]), "shift {shift}");
        }
        std::fs::write(dir.path().join("chimera.log"), filler.repeat(3)).unwrap();
        assert_eq!(last_checkpoint(dir.path(), "chimera.log", "executions.log", SystemTime::now()), None);
    }

    #[test]
    fn sealed_lines_parse_back_and_chain_from_zero() {
        let key = ChainKey::unkeyed();
        let mut head = ChainHead::default();
        let mut first = Vec::new();
        seal(b"{\"event\":\"a\",\"context\":{}}\n", &mut head, &key, &mut first);
        let mut second = Vec::new();
        seal(b"{\"event\":\"b\",\"context\":{\"x\":1}}\n", &mut head, &key, &mut second);
        assert!(
            first.ends_with(b"\"}\n") && first.starts_with(b"{\"event\":\"a\",\"context\":{},\"seq\":1,\"chain\":\"")
        );
        let a = parse_sealed(&first).unwrap();
        let b = parse_sealed(&second).unwrap();
        assert_eq!((a.seq, b.seq), (1, 2));
        assert_eq!(a.chain, key.link(&[0; 32], a.body));
        assert_eq!(b.chain, key.link(&a.chain, b.body));
        assert_eq!(head, ChainHead { seq: 2, chain: b.chain });
        let value: serde_json::Value = serde_json::from_slice(&second).unwrap();
        assert_eq!(value["seq"], 2);
    }

    #[test]
    fn sealing_after_the_largest_seq_saturates_instead_of_panicking() {
        let mut head = ChainHead { seq: u64::MAX, chain: [0; 32] };
        let mut out = Vec::new();
        seal(b"{\"context\":{}}\n", &mut head, &ChainKey::unkeyed(), &mut out);
        assert_eq!(head.seq, u64::MAX);
    }

    #[test]
    fn a_keyed_chain_differs_from_the_unkeyed_one_and_from_another_key() {
        let body = b"{\"seq\":1";
        let unkeyed = ChainKey::unkeyed().link(&[0; 32], body);
        let keyed = ChainKey::keyed(*b"secret").link(&[0; 32], body);
        let other = ChainKey::keyed(*b"other").link(&[0; 32], body);
        assert!(unkeyed != keyed && keyed != other);
    }
}
