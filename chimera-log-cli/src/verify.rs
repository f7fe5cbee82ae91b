//! `verify`: checks the audit trail — every file begun by its sealed anchor, every line a sealed
//! record of the contract's shape, `seq` without gaps, every chain link, every torn line accounted
//! for by the `audit_restart` record after it — and cross-checks the `audit_checkpoint` events found in the
//! general log, which catch a rewrite of the unkeyed chain and records cut from the end.

use std::path::{Path, PathBuf};

use chimera_log_runtime::audit::{
    is_torn, parse_anchor, parse_sealed, Anchor, ChainHead, ChainKey, TornRun, RESTART_EVENT,
};
use chimera_log_runtime::read;
use serde_json::Value;

use crate::files::{for_each_line_live, Line, Part, ReadError};

/// One finding, with where it is.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    pub(crate) path: PathBuf,
    pub(crate) line: usize,
    pub(crate) message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) records: u64,
    pub(crate) first_seq: Option<u64>,
    pub(crate) last_seq: Option<u64>,
    pub(crate) checkpoints: u64,
    /// Integrity failures, in the order found; the first is the first broken record.
    pub(crate) failures: Vec<Finding>,
    /// Things an auditor should know that do not break the trail.
    pub(crate) notes: Vec<String>,
}

const KEYS: [&str; 5] = ["timestamp", "level", "module", "event", "context"];

/// The keys of a sealed record, in order: the envelope, then `exception` (an error attached) and
/// `audit_key` (an identity field other than `block_number`) when present, then `seq`, `chain`.
fn record_shape(keys: &[String]) -> bool {
    let n = keys.len();
    if n < 7 || keys[..5] != KEYS || keys[n - 2..] != ["seq", "chain"] {
        return false;
    }
    // Each at most once, in this order.
    let mut optional = ["exception", "audit_key"].iter();
    keys[5..n - 2].iter().all(|key| optional.any(|o| o == key))
}

/// The keys of a JSON object line, in order; `None` if it is not one.
fn keys_in_order(line: &[u8]) -> Option<Vec<String>> {
    let value: Value = serde_json::from_slice(line).ok()?;
    value.as_object()?;
    // serde_json's map may not keep order: read the keys from the text, at the top level.
    let mut keys = Vec::new();
    let mut depth = 0i32;
    let mut in_string = false;
    let mut escaped = false;
    let mut start = None;
    for (i, &b) in line.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
                if let (1, Some(from)) = (depth, start.take()) {
                    let rest = &line[i + 1..];
                    if rest.first() == Some(&b':') {
                        keys.push(String::from_utf8_lossy(&line[from..i]).into_owned());
                    }
                }
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                start = (depth == 1).then_some(i + 1);
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth -= 1,
            _ => {}
        }
    }
    Some(keys)
}

/// Torn lines read and not yet accounted for, with where the first one is.
struct PendingTorn {
    run: TornRun,
    first: Finding,
}

pub(crate) fn verify(dir: &Path, key: &ChainKey, allow_torn: bool) -> Result<Report, ReadError> {
    let mut report = Report::default();
    // Checkpoints written after this cannot be held against the trail read from here on.
    let started = chrono::Utc::now();
    let mut previous: Option<ChainHead> = None;
    let mut chains: Vec<(u64, [u8; 32])> = Vec::new();
    let mut torn: Option<PendingTorn> = None;
    // The line before was too long to read: the chain cannot be followed across it.
    let mut after_skipped = false;
    // A logger writing now may be in the middle of the last line; at rest, a last line without
    // its newline is a torn write like any other.
    let live = crate::files::directory_is_live(dir);
    let gone = for_each_line_live(dir, read::AUDIT_FILE, live, |path, line_number, line, part| {
        let at = |message: String| Finding { path: path.to_owned(), line: line_number, message };
        if part == Part::Gap {
            // Retention removed backups faster than verify read them: the trail read begins
            // again here, as the retained trail begins after removed backups.
            previous = None;
            if let Some(pending) = torn.take() {
                report.failures.push(unaccounted(pending));
            }
            return;
        }
        let line = match line {
            Line::Kept(line) => line,
            Line::TooLong(length) => {
                // Never read, so never a torn line --allow-torn may excuse: it may be a record.
                report.failures.push(at(format!("line of {length} bytes exceeds --max-line: cannot be verified")));
                if let Some(pending) = torn.take() {
                    report.notes.push(format!(
                        "{}: {} torn line(s) before a line that could not be read, so whether an {RESTART_EVENT} \
                         record accounts for them is unknown",
                        pending.first, pending.run.lines
                    ));
                }
                previous = None;
                after_skipped = true;
                return;
            }
        };
        let record = parse_sealed(line);
        if let Some(anchor) = parse_anchor(line) {
            check_anchor(&anchor, (path, line_number), previous, key, &mut report);
            previous = Some(anchor.previous);
            return;
        }
        // A file whose first line is torn is a crash during its first write, the anchor's; the
        // restart record after the torn lines accounts for them, and the chain is checked from
        // the file before.
        if line_number == 1 && !is_torn(line) {
            report.failures.push(at(
                "the file does not begin with its audit_anchor line (lines removed from its start, or a file put there)"
                    .to_owned(),
            ));
        }
        let Some(record) = record else {
            if !is_torn(line) {
                // Well-formed JSON cannot be what an interrupted write leaves: a record without a
                // seal was put there, whatever --allow-torn says.
                report.failures.push(at(
                    "a well-formed line that is not a sealed record (no seq/chain): inserted, not torn".to_owned(),
                ));
                return;
            }
            let pending = torn.get_or_insert_with(|| PendingTorn {
                run: TornRun::default(),
                first: at("a torn line (not valid JSON: a write cut short, or damage)".to_owned()),
            });
            pending.run.push(line);
            return;
        };
        let value = serde_json::from_slice::<Value>(line).ok();
        let keys = keys_in_order(line);
        let shape_ok = keys.as_ref().is_some_and(|keys| record_shape(keys));
        if !shape_ok {
            report.failures.push(at(format!("not the contract's shape: keys {keys:?}")));
        }
        let restart = value.as_ref().filter(|v| v["event"] == RESTART_EVENT && v["module"] == "chimera_log");
        match (torn.take(), restart) {
            (Some(pending), Some(restart)) if pending.run.is_accounted_for_by(&restart["context"]) => {
                report.notes.push(format!(
                    "{}: {} torn line(s) from an unclean end, accounted for by the {RESTART_EVENT} record at {}:{} (seq {})",
                    pending.first,
                    pending.run.lines,
                    path.display(),
                    line_number,
                    record.seq
                ));
            }
            (Some(pending), _) => report.failures.push(unaccounted(pending)),
            (None, Some(restart)) if restart["context"]["torn_lines"].as_u64().is_some_and(|n| n > 0) => {
                report.failures.push(at(format!(
                    "this {RESTART_EVENT} record accounts for {} torn line(s) that are not before it: removed",
                    restart["context"]["torn_lines"]
                )));
            }
            (None, _) => {}
        }
        match previous {
            // Records are numbered from 1 (the anchors' 0 is the chain before the first).
            _ if record.seq == 0 => {
                report.failures.push(at("seq 0: records are numbered from 1 (edited or inserted)".to_owned()));
            }
            None => {
                if record.seq == 1 {
                    if key.link(&[0; 32], record.body) != record.chain {
                        report
                            .failures
                            .push(at("chain of record 1 does not match (edited, or another key)".to_owned()));
                    }
                } else if let (false, Some(before)) = (after_skipped, record.seq.checked_sub(1)) {
                    report.notes.push(format!(
                        "the retained chain begins at seq {} ({}:{}) without an anchor, so its link to seq {} \
                         cannot be checked",
                        record.seq,
                        path.display(),
                        line_number,
                        before
                    ));
                }
            }
            Some(head) => {
                if head.seq.checked_add(1) != Some(record.seq) {
                    report
                        .failures
                        .push(at(format!("seq {} follows seq {}: records missing or reordered", record.seq, head.seq)));
                } else if key.link(&head.chain, record.body) != record.chain {
                    report.failures.push(at(format!(
                        "chain broken at seq {}: the record was altered, inserted, or signed with another key",
                        record.seq
                    )));
                }
            }
        }
        after_skipped = false;
        report.first_seq.get_or_insert(record.seq);
        previous = Some(ChainHead { seq: record.seq, chain: record.chain });
        chains.push((record.seq, record.chain));
        report.records += 1;
        report.last_seq = Some(record.seq);
    })?;
    if let Some(pending) = torn {
        let lines = pending.run.lines;
        if allow_torn {
            report.notes.push(format!(
                "{}: {lines} torn line(s) at the end of the trail: an unclean end the logger has not \
                 started again after (accepted by --allow-torn; its next start accounts for them)",
                pending.first
            ));
        } else {
            report.failures.push(Finding {
                message: format!(
                    "{} — {lines} torn line(s) at the end of the trail: an unclean end the logger has not started \
                     again after; its next start records an {RESTART_EVENT} for them, or pass --allow-torn to accept",
                    pending.first.message
                ),
                ..pending.first
            });
        }
    }
    if gone > 0 {
        report
            .notes
            .push(format!("{gone} of the oldest backup(s) were removed by retention while verify read the trail"));
    }
    check_checkpoints(dir, &chains, started, &mut report)?;
    Ok(report)
}

/// Torn lines not followed by the `audit_restart` record that accounts for them.
fn unaccounted(pending: PendingTorn) -> Finding {
    Finding {
        message: format!(
            "{} — {} torn line(s) not accounted for by an {RESTART_EVENT} record after them (damage, or tampering)",
            pending.first.message, pending.run.lines
        ),
        ..pending.first
    }
}

/// An anchor must be its file's first line, sealed, and carry the head the trail read so far ends
/// at; where nothing was read before it (the oldest retained file), the chain starts from it.
fn check_anchor(
    anchor: &Anchor<'_>,
    (path, line_number): (&Path, usize),
    previous: Option<ChainHead>,
    key: &ChainKey,
    report: &mut Report,
) {
    let at = |message: String| Finding { path: path.to_owned(), line: line_number, message };
    if line_number != 1 {
        report.failures.push(at("an audit_anchor line inside a file, not at its start: inserted".to_owned()));
    }
    if !anchor.is_sealed_by(key) {
        report.failures.push(at("the file's audit_anchor does not match its seal (edited, or another key)".to_owned()));
    }
    match previous {
        Some(head) if head != anchor.previous => report.failures.push(at(format!(
            "the file's audit_anchor says it follows seq {}, but the trail before it ends at seq {} \
             (with another chain value): records or files missing, or replaced",
            anchor.previous.seq, head.seq
        ))),
        Some(_) => {}
        None if anchor.previous.seq > 0 => report.notes.push(format!(
            "the retained chain begins after seq {}, anchored at {}:{line_number}: earlier records were removed by \
             retention",
            anchor.previous.seq,
            path.display()
        )),
        None => {}
    }
}

/// Every `audit_checkpoint` in the general log must agree with the audit file.
fn check_checkpoints(
    dir: &Path,
    chains: &[(u64, [u8; 32])],
    started: chrono::DateTime<chrono::Utc>,
    report: &mut Report,
) -> Result<(), ReadError> {
    let first = chains.first().map(|(seq, _)| *seq);
    let last = chains.last().map(|(seq, _)| *seq).unwrap_or(0);
    let mut findings = Vec::new();
    let mut checked = 0;
    // The general log rotates under a live verify too; a checkpoint read twice is checked twice.
    for_each_line_live(dir, read::GENERAL_FILE, true, |path, line_number, line, _| {
        // A line too long to keep is not a checkpoint the logger wrote.
        let Line::Kept(line) = line else { return };
        if !line.windows(26).any(|w| w == b"\"event\":\"audit_checkpoint\"") {
            return;
        }
        let Ok(value) = serde_json::from_slice::<Value>(line) else { return };
        if value["event"] != "audit_checkpoint" || value["module"] != "chimera_log" {
            return;
        }
        let (Some(seq), Some(chain)) = (value["context"]["seq"].as_u64(), value["context"]["chain"].as_str()) else {
            return;
        };
        let at = |message: String| Finding { path: path.to_owned(), line: line_number, message };
        let written = value["timestamp"].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        if seq > last && written.is_none_or(|written| written >= started) {
            // Written while verify was reading: the trail read ends before it, legitimately.
            return;
        }
        checked += 1;
        if seq > last {
            findings.push(at(format!(
                "a checkpoint records seq {seq}, but the audit trail ends at seq {last}: records were removed from the end"
            )));
        } else if first.is_some_and(|first| seq >= first) {
            // A seq that was not read (in a backup retention removed under a live read; a missing
            // seq is reported by the continuity check) cannot be compared.
            let recorded = chains.iter().find(|(s, _)| *s == seq).map(|(_, c)| chimera_log_runtime::audit::hex(c));
            if recorded.as_deref().is_some_and(|recorded| recorded != chain) {
                findings.push(at(format!(
                    "the checkpoint for seq {seq} disagrees with the audit trail: records up to seq {seq} were rewritten"
                )));
            }
        }
    })?;
    report.checkpoints = checked;
    report.failures.extend(findings);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(keys: &[&str]) -> bool {
        record_shape(&keys.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn a_record_may_carry_exception_then_audit_key_each_once_and_nothing_else() {
        let envelope = ["timestamp", "level", "module", "event", "context"];
        let with =
            |middle: &[&'static str]| -> Vec<&'static str> { [&envelope[..], middle, &["seq", "chain"]].concat() };
        assert!(shape(&with(&[])));
        assert!(shape(&with(&["exception"])));
        assert!(shape(&with(&["audit_key"])));
        assert!(shape(&with(&["exception", "audit_key"])));
        assert!(!shape(&with(&["audit_key", "exception"])));
        assert!(!shape(&with(&["exception", "exception"])));
        assert!(!shape(&with(&["extra"])));
        assert!(!shape(&["level", "timestamp", "module", "event", "context", "seq", "chain"]));
        assert!(!shape(&with(&[])[..6]));
    }
}
