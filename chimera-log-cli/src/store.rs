//! `verify --store`: the audit store's copy of the trail checked from the database alone — each
//! row's columns (seq, chain, and every column taken from the record) against its record, `seq`
//! without gaps, every chain link — and, given the log
//! directory, against the files wherever both hold a record. Also opens a store for `query
//! --store`. Nothing here writes to the store.

use std::path::Path;
use std::sync::mpsc;

use chimera_log_runtime::audit::{hex, parse_sealed, ChainKey};
use chimera_log_runtime::store::{ScanFilter, StoreReader};

use crate::files::{directory_is_live, for_each_line_live, Line, ReadError};

/// Opens the store named by `url` (`sqlite:PATH`, a path, `postgres://…`); the message of an
/// error is what `main` prints before exiting with 2.
pub(crate) fn open(url: &str) -> Result<StoreReader, String> {
    StoreReader::open(url).map_err(|error| format!("audit store: {error}"))
}

/// The streams to read: `only` (which must be in the store), or all of them in name order.
pub(crate) fn streams(reader: &mut StoreReader, only: Option<&str>) -> Result<Vec<String>, String> {
    let all = reader.streams().map_err(|error| format!("audit store: {error}"))?;
    match only {
        None => Ok(all),
        Some(name) if all.iter().any(|stream| stream == name) => Ok(vec![name.to_owned()]),
        Some(name) => Err(format!("--stream {name}: not in the audit store (its streams: {})", listed(&all))),
    }
}

fn listed(streams: &[String]) -> String {
    if streams.is_empty() {
        "none".to_owned()
    } else {
        streams.join(", ")
    }
}

/// One finding: the stream and the row's `seq`, then what is wrong there.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    pub(crate) stream: String,
    /// As the column holds it (signed: a hostile row may say -1).
    pub(crate) seq: i64,
    pub(crate) message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stream {}: seq {}: {}", self.stream, self.seq, self.message)
    }
}

/// What was read of one stream.
#[derive(Debug, Default)]
pub(crate) struct StreamSummary {
    pub(crate) name: String,
    pub(crate) records: u64,
    pub(crate) first_seq: Option<u64>,
    pub(crate) last_seq: Option<u64>,
    /// Records compared with the files (the stream compared with the log directory only).
    pub(crate) compared: Option<u64>,
}

#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) streams: Vec<StreamSummary>,
    /// Integrity failures, in the order found; the first is the first broken record.
    pub(crate) failures: Vec<Finding>,
    /// Things an auditor should know that do not break the trail.
    pub(crate) notes: Vec<String>,
}

/// The head of the chain read so far: the last row's `seq` and, when its record could be read,
/// its chain value.
#[derive(Debug, Clone, Copy)]
struct Previous {
    seq: u64,
    chain: Option<[u8; 32]>,
}

/// Checks `streams` of the store; with `dir`, `(directory, stream)`, also compares that stream
/// with the directory's audit trail.
pub(crate) fn verify(
    reader: &mut StoreReader,
    streams: &[String],
    key: &ChainKey,
    dir: Option<(&Path, &str)>,
) -> Result<Report, String> {
    let mut report = Report::default();
    for stream in streams {
        match dir {
            Some((dir, compared)) if compared == stream => {
                // The files are read on their own thread and handed over in seq order, so that
                // neither the trail nor the store is ever held in memory.
                let (sender, receiver) = mpsc::sync_channel::<(u64, Vec<u8>)>(1024);
                let read = std::thread::scope(|scope| {
                    let reading = scope.spawn(move || send_file_records(dir, &sender));
                    let mut files = FileRecords { receiver, last_seq: 0, pending: None };
                    let checked = verify_stream(reader, stream, key, Some(&mut files), &mut report);
                    // Stop the reader if the store ended first.
                    drop(files);
                    checked.and_then(|()| {
                        reading.join().expect("the file reader does not panic").map_err(|error| error.to_string())
                    })
                });
                read?;
            }
            _ => verify_stream(reader, stream, key, None, &mut report)?,
        }
    }
    Ok(report)
}

/// Sends every sealed record of `dir`'s audit trail, `(seq, line)`, until the receiver is gone.
fn send_file_records(dir: &Path, sender: &mpsc::SyncSender<(u64, Vec<u8>)>) -> Result<(), ReadError> {
    let mut open = true;
    for_each_line_live(dir, chimera_log_runtime::read::AUDIT_FILE, directory_is_live(dir), |_, _, line, _| {
        // A line too long to keep is no record to compare (`verify DIR` reports it).
        let (true, Line::Kept(line)) = (open, line) else { return };
        if let Some(record) = parse_sealed(line) {
            open = sender.send((record.seq, line.to_vec())).is_ok();
        }
    })?;
    Ok(())
}

/// The files' records, read ahead one at a time.
struct FileRecords {
    receiver: mpsc::Receiver<(u64, Vec<u8>)>,
    /// The highest `seq` taken so far: a record read again (a file rotated during the read, or
    /// reordered lines, which `verify DIR` reports) is passed over.
    last_seq: u64,
    pending: Option<(u64, Vec<u8>)>,
}

impl FileRecords {
    /// The files' record numbered `seq`, if they hold it; records before it are passed over.
    fn take(&mut self, seq: u64) -> Option<Vec<u8>> {
        loop {
            if let Some((at, _)) = &self.pending {
                if *at > seq {
                    return None;
                }
                let (at, line) = self.pending.take().expect("checked just above");
                if at == seq {
                    return Some(line);
                }
            }
            let (at, line) = self.receiver.recv().ok()?;
            if at > self.last_seq {
                self.last_seq = at;
                self.pending = Some((at, line));
            }
        }
    }
}

fn verify_stream(
    reader: &mut StoreReader,
    stream: &str,
    key: &ChainKey,
    mut files: Option<&mut FileRecords>,
    report: &mut Report,
) -> Result<(), String> {
    let mut summary =
        StreamSummary { name: stream.to_owned(), compared: files.is_some().then_some(0), ..StreamSummary::default() };
    let mut previous: Option<Previous> = None;
    let (failures, notes) = (&mut report.failures, &mut report.notes);
    // A record longer than --max-line is not read, as a line of the files is not.
    let read_at_most = ScanFilter::default().max_record(crate::files::max_line() as u64);
    reader
        .scan(stream, &read_at_most, |row| {
            let at = |message: String| Finding { stream: stream.to_owned(), seq: row.seq as i64, message };
            summary.records += 1;
            // The column is a signed integer, which the reader hands over as u64: a negative seq
            // arrives above i64::MAX. Such a row, or a seq 0, is no record number; it is reported
            // and takes no part in the order, the chain or the comparison with the files (looking
            // the files up for it would pass over every record they hold).
            if row.seq == 0 || row.seq > i64::MAX as u64 {
                failures.push(at("records are numbered from 1 (edited or inserted)".to_owned()));
                return true;
            }
            summary.first_seq.get_or_insert(row.seq);
            summary.last_seq = Some(row.seq);
            // A record not read is not compared (the files' reader passes over such a line too).
            if let Some(files) = files.as_mut().filter(|_| !row.is_skipped()) {
                if let Some(line) = files.take(row.seq) {
                    *summary.compared.get_or_insert(0) += 1;
                    if line != row.record.as_bytes() {
                        failures.push(at(
                            "the store and the file disagree: the record in the database is not the one in \
                             executions.log"
                                .to_owned(),
                        ));
                    }
                }
            }
            if let Some(before) = previous {
                if before.seq.checked_add(1) != Some(row.seq) {
                    let missing = match (before.seq.checked_add(1), row.seq.checked_sub(1)) {
                        (Some(first), Some(last)) if first == last => format!("seq {first} missing (rows deleted)"),
                        (Some(first), Some(last)) if first < last => {
                            format!("seq {first}..={last} missing (rows deleted)")
                        }
                        _ => "out of order".to_owned(),
                    };
                    failures.push(at(format!("seq {} follows seq {} in the store: {missing}", row.seq, before.seq)));
                }
            }
            if row.is_skipped() {
                failures
                    .push(at(format!("record of {} bytes exceeds --max-line: cannot be verified", row.record_length)));
                previous = Some(Previous { seq: row.seq, chain: None });
                return true;
            }
            let Some(record) = parse_sealed(row.record.as_bytes()) else {
                failures.push(at("the record is not a sealed audit record (no seq/chain): edited".to_owned()));
                previous = Some(Previous { seq: row.seq, chain: None });
                return true;
            };
            if record.seq != row.seq {
                failures.push(at(format!("the record says seq {} but its row is seq {}: edited", record.seq, row.seq)));
            }
            if row.chain != hex(&record.chain) {
                failures.push(at("the chain column is not the record's chain: edited".to_owned()));
            }
            // The columns queries select rows by, derived from the record as the archiver does.
            for column in row.altered_columns() {
                failures.push(at(format!(
                    "the {column} column does not match the record: edited (queries by it find the wrong rows)"
                )));
            }
            match previous {
                None if row.seq == 1 => {
                    if key.link(&[0; 32], record.body) != record.chain {
                        failures.push(at("chain of record 1 does not match (edited, or another key)".to_owned()));
                    }
                }
                None => notes.push(format!(
                    "stream {stream}: the retained chain begins at seq {}, so its link to seq {} cannot be checked \
                     (older rows removed by retention)",
                    row.seq,
                    row.seq.saturating_sub(1)
                )),
                Some(Previous { seq, chain: Some(chain) }) if seq.saturating_add(1) == row.seq => {
                    if key.link(&chain, record.body) != record.chain {
                        failures.push(at(format!(
                            "chain broken at seq {}: the record was altered, inserted, or signed with another key",
                            row.seq
                        )));
                    }
                }
                // After a gap or an unreadable record there is nothing to link to; the row before
                // was reported.
                Some(_) => {}
            }
            previous = Some(Previous { seq: row.seq, chain: Some(record.chain) });
            true
        })
        .map_err(|error| format!("audit store: {error}"))?;
    if summary.compared == Some(0) {
        report.notes.push(format!(
            "stream {stream}: the store and the files hold no record in common, so they were not compared"
        ));
    }
    report.streams.push(summary);
    Ok(())
}

/// The stream of the store that `dir`'s logger writes: `--stream` when given, the only stream of
/// the store, or the one named `<host>/<dir>` (the logger's default) for this directory.
pub(crate) fn stream_of_dir(dir: &Path, streams: &[String], only: Option<&str>) -> Result<String, String> {
    if let Some(name) = only {
        return Ok(name.to_owned());
    }
    if let [stream] = streams {
        return Ok(stream.clone());
    }
    let absolute = std::fs::canonicalize(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
    let wanted = absolute.display().to_string();
    let wanted = wanted.trim_start_matches('/');
    let matching: Vec<&String> =
        streams.iter().filter(|stream| stream.split_once('/').is_some_and(|(_, dir)| dir == wanted)).collect();
    match matching[..] {
        [stream] => Ok(stream.clone()),
        _ => Err(format!(
            "{}: {} stream(s) of the audit store are this directory's; name the one to compare with --stream \
             (its streams: {})",
            dir.display(),
            matching.len(),
            listed(streams)
        )),
    }
}
