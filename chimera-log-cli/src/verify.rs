//! `verify`: checks the audit trail — every line a sealed record of the contract's shape, `seq`
//! without gaps, every chain link — and cross-checks the `audit_checkpoint` events found in the
//! general log, which catch a rewrite of the unkeyed chain and records cut from the end.

use std::path::{Path, PathBuf};

use chimera_log_runtime::audit::{parse_sealed, ChainKey};
use serde_json::Value;

use crate::files::{for_each_line_live, Part, ReadError};

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

pub(crate) fn verify(dir: &Path, key: &ChainKey, allow_torn: bool) -> Result<Report, ReadError> {
    let mut report = Report::default();
    // Checkpoints written after this cannot be held against the trail read from here on.
    let started = chrono::Utc::now();
    let mut previous: Option<(u64, [u8; 32])> = None;
    let mut chains: Vec<(u64, [u8; 32])> = Vec::new();
    let mut pending_torn: Option<Finding> = None;
    let gone = for_each_line_live(dir, "executions.log", |path, line_number, line, part| {
        let at = |message: String| Finding { path: path.to_owned(), line: line_number, message };
        if part == Part::Gap {
            // Retention removed backups faster than verify read them: the trail read begins
            // again here, as the retained trail begins after removed backups.
            previous = None;
            if let Some(torn) = pending_torn.take() {
                report.failures.push(torn);
            }
            return;
        }
        if part == Part::RotatedCurrent {
            // The file that was current at the listing was rotated during the read: what of it
            // is older than the trail read so far was read from its backup (or that backup was
            // removed by retention); only what goes beyond is new. A file still current is
            // never skipped in this way.
            if let (Some(record), Some((seq, _))) = (parse_sealed(line), previous) {
                if record.seq <= seq {
                    return;
                }
            }
        }
        let Some(record) = parse_sealed(line) else {
            if serde_json::from_slice::<Value>(line).is_ok() {
                // Well-formed JSON cannot be what an interrupted write leaves: a record without a
                // seal was put there, whatever --allow-torn says.
                report.failures.push(at(
                    "a well-formed line that is not a sealed record (no seq/chain): inserted, not torn".to_owned(),
                ));
                return;
            }
            let finding = at("not a sealed audit record (not valid JSON: a torn write, or damage)".to_owned());
            if pending_torn.is_none() {
                pending_torn = Some(finding);
            } else {
                report.failures.push(finding);
            }
            return;
        };
        let keys = keys_in_order(line);
        let shape_ok = keys.as_ref().is_some_and(|keys| {
            keys.len() >= 7
                && keys[..5] == KEYS
                && keys[keys.len() - 2..] == ["seq", "chain"]
                && (keys.len() == 7 || (keys.len() == 8 && keys[5] == "exception"))
        });
        if !shape_ok {
            report.failures.push(at(format!("not the contract's shape: keys {keys:?}")));
        }
        if let Some(torn) = pending_torn.take() {
            // An unreadable line followed by a record that continues the chain is what an
            // interrupted write (a crash) leaves; anything else is tampering.
            let continues = previous
                .is_some_and(|(seq, chain)| record.seq == seq + 1 && key.link(&chain, record.body) == record.chain);
            if continues && allow_torn {
                report.notes.push(format!("{torn} (an interrupted write: the chain continues after it)"));
            } else if continues {
                report.failures.push(Finding {
                    message: format!(
                        "{} — the chain continues after it, as after an interrupted write; pass --allow-torn to accept",
                        torn.message
                    ),
                    ..torn
                });
            } else {
                report.failures.push(torn);
            }
        }
        match previous {
            None => {
                report.first_seq.get_or_insert(record.seq);
                if record.seq == 1 {
                    if key.link(&[0; 32], record.body) != record.chain {
                        report
                            .failures
                            .push(at("chain of record 1 does not match (edited, or another key)".to_owned()));
                    }
                } else {
                    report.notes.push(format!(
                        "the retained chain begins at seq {} ({}:{}): earlier records were removed by retention, \
                         so its link to seq {} cannot be checked",
                        record.seq,
                        path.display(),
                        line_number,
                        record.seq - 1
                    ));
                }
            }
            Some((seq, chain)) => {
                if record.seq != seq + 1 {
                    report
                        .failures
                        .push(at(format!("seq {} follows seq {seq}: records missing or reordered", record.seq)));
                } else if key.link(&chain, record.body) != record.chain {
                    report.failures.push(at(format!(
                        "chain broken at seq {}: the record was altered, inserted, or signed with another key",
                        record.seq
                    )));
                }
            }
        }
        previous = Some((record.seq, record.chain));
        chains.push((record.seq, record.chain));
        report.records += 1;
        report.last_seq = Some(record.seq);
    })?;
    if let Some(torn) = pending_torn {
        report.failures.push(Finding { message: format!("{} (at the end of the trail)", torn.message), ..torn });
    }
    if gone > 0 {
        report
            .notes
            .push(format!("{gone} of the oldest backup(s) were removed by retention while verify read the trail"));
    }
    check_checkpoints(dir, &chains, started, &mut report)?;
    Ok(report)
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
    for_each_line_live(dir, "chimera.log", |path, line_number, line, _| {
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
