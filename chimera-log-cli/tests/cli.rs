//! The `chimera-log` binary against directories written by the real logger: verify detects every
//! kind of tampering, query returns what was written, tail follows across rotation, bad input
//! gets a clear message and a non-zero exit.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use chimera_log_runtime::audit::{hex, parse_sealed, ChainKey};
use chimera_log_runtime::store::StoreReader;
use chimera_log_runtime::{emit, AuditDurability, AuditStore, LogConfig, LogEvent, LogGuard};
use serde_json::json;

#[derive(LogEvent)]
#[log(audit)]
struct Executed<'a> {
    block_number: u64,
    protocol: &'a str,
}

fn chimera_log(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chimera-log")).args(args).output().unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn config(dir: &Path) -> LogConfig {
    LogConfig::new(dir)
        .console(false)
        .audit_durability(AuditDurability::OsBuffer)
        .max_bytes(1_500)
        .audit_backups(100)
        .general_backups(100)
        .compress(false)
}

/// Writes 30 audit records (rotating about every 5) and a few general events.
fn write_trail(guard: &LogGuard) {
    let logger = guard.logger("executor");
    for block_number in 0..30 {
        emit!(
            logger,
            Executed { block_number, protocol: if block_number.is_multiple_of(2) { "moonwell" } else { "aave" } }
        );
    }
}

fn audit_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("executions.log."))
        .collect();
    files.sort();
    files.push(dir.join("executions.log"));
    files
}

fn verify(dir: &Path) -> Output {
    chimera_log(&["verify", dir.to_str().unwrap()])
}

fn fresh_trail() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).build().unwrap();
    write_trail(&guard);
    drop(guard);
    dir
}

/// Rewrites `path` with its lines passed through `edit`.
fn edit_lines(path: &Path, edit: impl FnOnce(&mut Vec<String>)) {
    let text = fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    edit(&mut lines);
    let mut out = lines.join("\n");
    out.push('\n');
    make_writable(path);
    fs::write(path, out).unwrap();
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o640)).unwrap();
}

#[test]
fn verify_accepts_an_intact_trail_across_rotations_and_restarts() {
    let dir = fresh_trail();
    let guard = config(dir.path()).build().unwrap();
    write_trail(&guard);
    drop(guard);
    assert!(audit_files(dir.path()).len() > 5);
    let output = verify(dir.path());
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("intact: 60 audit record(s), seq 1..=60"), "{}", text(&output));
}

#[derive(LogEvent)]
#[log(audit, key = "tx_hash")]
struct Submitted<'a> {
    tx_hash: &'a str,
    gas: u64,
}

/// Records with the optional keys the line contract allows (`exception`, `audit_key`, and both)
/// are intact, not "not the contract's shape"; in the audit store too, where their identity
/// columns (a declared key, a NUL stored as U+FFFD) are the ones the records give.
#[test]
fn verify_accepts_records_carrying_an_exception_an_audit_key_or_both() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let guard = config(dir.path()).audit_store(AuditStore::sqlite(&db)).build().unwrap();
    let logger = guard.logger("executor");
    let error = std::io::Error::new(std::io::ErrorKind::TimedOut, "rpc timed out");
    for n in 0..12u64 {
        let tx_hash = format!("0x{n:064x}");
        match n % 4 {
            0 => emit!(logger, Submitted { tx_hash: &tx_hash, gas: 21_000 }),
            1 => emit!(logger, Submitted { tx_hash: &tx_hash, gas: 21_000 }, error = &error),
            2 => emit!(logger, Executed { block_number: n, protocol: "aave" }, error = &error),
            _ => emit!(logger, Executed { block_number: n, protocol: "aave" }),
        }
    }
    emit!(logger, Submitted { tx_hash: "0x\0ff", gas: 1 });
    assert!(guard.flush(), "every record stored");
    drop(guard);
    let lines: Vec<String> = audit_files(dir.path())
        .iter()
        .flat_map(|f| fs::read_to_string(f).unwrap().lines().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    assert!(
        lines.iter().any(|l| l.contains(r#"},"exception":{"#) && l.contains(r#"},"audit_key":"tx_hash","seq":"#)),
        "{lines:#?}"
    );
    let output = verify(dir.path());
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("intact: 13 audit record(s), seq 1..=13"), "{}", text(&output));
    let stored = verify_store(&db, &[], 0);
    assert!(
        stored.starts_with("intact: stream ") && stored.ends_with(": 13 audit record(s), seq 1..=13\n"),
        "{stored}"
    );
}

fn assert_broken(dir: &Path, expected: &str) {
    let output = verify(dir);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let report = text(&output);
    assert!(report.contains("BROKEN: first broken record: "), "{report}");
    assert!(report.contains(expected), "expected {expected:?} in:\n{report}");
}

#[test]
fn verify_detects_an_edited_value() {
    let dir = fresh_trail();
    // Line 0 is the file's anchor; line 1 its first record.
    edit_lines(&audit_files(dir.path())[1], |lines| lines[1] = lines[1].replace("\"protocol\":\"", "\"protocol\":\"x"));
    assert_broken(dir.path(), "chain broken at seq");
}

#[test]
fn verify_detects_a_deleted_line() {
    let dir = fresh_trail();
    edit_lines(&audit_files(dir.path())[1], |lines| {
        lines.remove(1);
    });
    assert_broken(dir.path(), "records missing or reordered");
}

#[test]
fn verify_detects_an_inserted_forged_line() {
    let dir = fresh_trail();
    edit_lines(&audit_files(dir.path())[1], |lines| {
        let forged = lines[0].replace("\"block_number\":", "\"block_number\":9");
        lines.insert(1, forged);
    });
    assert_broken(dir.path(), ".log.");
}

#[test]
fn verify_detects_two_swapped_lines() {
    let dir = fresh_trail();
    edit_lines(&audit_files(dir.path())[1], |lines| lines.swap(1, 2));
    assert_broken(dir.path(), "records missing or reordered");
}

#[test]
fn verify_detects_a_deleted_middle_backup() {
    let dir = fresh_trail();
    fs::remove_file(&audit_files(dir.path())[2]).unwrap();
    assert_broken(dir.path(), "records or files missing");
}

#[test]
fn verify_detects_a_truncated_file() {
    let dir = fresh_trail();
    let file = audit_files(dir.path())[1].clone();
    let bytes = fs::read(&file).unwrap();
    make_writable(&file);
    fs::write(&file, &bytes[..bytes.len() - 40]).unwrap();
    let output = verify(dir.path());
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
}

#[test]
fn verify_says_where_the_retained_chain_begins_when_old_backups_were_removed() {
    let dir = fresh_trail();
    // Retention at the next start keeps only the newest two backups.
    let guard = config(dir.path()).audit_backups(2).build().unwrap();
    drop(guard);
    let output = verify(dir.path());
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("the retained chain begins after seq"), "{}", text(&output));
}

/// Recomputes the unkeyed chain and every file's anchor after editing record 3, as a forger would.
fn rewrite_unkeyed_chain(dir: &Path) {
    use chimera_log_runtime::audit::{hex, parse_anchor, parse_sealed, ChainKey};
    let key = ChainKey::unkeyed();
    let mut previous = [0u8; 32];
    let mut tampered = false;
    for file in audit_files(dir) {
        edit_lines(&file, |lines| {
            for line in lines.iter_mut() {
                if !tampered && line.contains("\"seq\":3,") {
                    *line = line.replace("moonwell", "phantom");
                    tampered = true;
                }
                if let Some(anchor) = parse_anchor(line.as_bytes()) {
                    let body = String::from_utf8(anchor.body.to_vec())
                        .unwrap()
                        .replace(&hex(&anchor.previous.chain), &hex(&previous));
                    let seal = key.link(&previous, body.as_bytes());
                    *line = format!("{body},\"anchor\":\"{}\"}}", hex(&seal));
                    continue;
                }
                let record = parse_sealed(line.as_bytes()).unwrap();
                let body = String::from_utf8(record.body.to_vec()).unwrap();
                let chain = key.link(&previous, body.as_bytes());
                *line = format!("{body},\"chain\":\"{}\"}}", hex(&chain));
                previous = chain;
            }
        });
    }
}

#[test]
fn verify_detects_a_rewritten_unkeyed_chain_through_the_checkpoints() {
    let dir = fresh_trail();
    rewrite_unkeyed_chain(dir.path());
    assert_broken(dir.path(), "disagrees with the audit trail");
}

#[test]
fn verify_detects_a_rewritten_keyed_chain_without_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).audit_key(*b"vault-held key").build().unwrap();
    write_trail(&guard);
    drop(guard);
    let output = Command::new(env!("CARGO_BIN_EXE_chimera-log"))
        .args(["verify", dir.path().to_str().unwrap(), "--key-env", "TEST_AUDIT_KEY"])
        .env("TEST_AUDIT_KEY", "vault-held key")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    // Remove the checkpoints: only the key can catch the rewrite now.
    for file in fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()) {
        if file.file_name().unwrap().to_str().unwrap().starts_with("chimera.log") {
            make_writable(&file);
            fs::remove_file(file).unwrap();
        }
    }
    rewrite_unkeyed_chain(dir.path());
    let output = Command::new(env!("CARGO_BIN_EXE_chimera-log"))
        .args(["verify", dir.path().to_str().unwrap(), "--key-env", "TEST_AUDIT_KEY"])
        .env("TEST_AUDIT_KEY", "vault-held key")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("chain broken at seq 1"), "{}", text(&output));
}

/// A key is bytes: `--key-env` takes the variable's bytes as they are, UTF-8 or not.
#[test]
fn verify_key_env_takes_a_key_that_is_not_utf8_as_its_raw_bytes() {
    use std::os::unix::ffi::OsStrExt;
    let key = b"\xffvault\xfe key";
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).audit_key(*key).build().unwrap();
    write_trail(&guard);
    drop(guard);
    let output = Command::new(env!("CARGO_BIN_EXE_chimera-log"))
        .args(["verify", dir.path().to_str().unwrap(), "--key-env", "TEST_AUDIT_KEY"])
        .env("TEST_AUDIT_KEY", std::ffi::OsStr::from_bytes(key))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("intact: 30 audit record(s)"), "{}", text(&output));
}

#[test]
fn verify_detects_every_random_single_byte_mutation() {
    let dir = fresh_trail();
    let files = audit_files(dir.path());
    let originals: Vec<Vec<u8>> = files.iter().map(|f| fs::read(f).unwrap()).collect();
    files.iter().for_each(|f| make_writable(f));
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..60 {
        let which = (next() % files.len() as u64) as usize;
        let mut bytes = originals[which].clone();
        if bytes.is_empty() {
            continue;
        }
        let at = (next() % bytes.len() as u64) as usize;
        let old = bytes[at];
        let mut new = (next() % 256) as u8;
        if new == old {
            new ^= 1;
        }
        bytes[at] = new;
        fs::write(&files[which], &bytes).unwrap();
        let output = verify(dir.path());
        assert_eq!(
            output.status.code(),
            Some(1),
            "byte {at} of {} changed from {old:#04x} to {new:#04x} went unnoticed:\n{}",
            files[which].display(),
            text(&output)
        );
        fs::write(&files[which], &originals[which]).unwrap();
    }
    assert!(verify(dir.path()).status.success(), "restored");
}

/// Appends `bytes` to the current audit file, as a crash mid-write leaves them.
fn append_torn(dir: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = fs::OpenOptions::new().append(true).open(dir.join("executions.log")).unwrap();
    file.write_all(bytes).unwrap();
}

/// The `audit_restart` records of the trail, in order.
fn restarts(dir: &Path) -> Vec<serde_json::Value> {
    audit_files(dir)
        .iter()
        .flat_map(|file| fs::read_to_string(file).unwrap().lines().map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(&line).ok())
        .filter(|value| value["event"] == "audit_restart")
        .collect()
}

const TORN: &[u8] = b"{\"timestamp\":\"2024-01-15T10:30:45.1";

#[test]
fn a_torn_line_fails_verify_until_the_next_start_accounts_for_it_with_a_restart_record() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).max_bytes(1_000_000).build().unwrap();
    write_trail(&guard);
    drop(guard);
    // A crash mid-write, and the logger not started since: verify (no logger holds the
    // directory) reads the unterminated last line as torn.
    append_torn(dir.path(), TORN);
    let strict = verify(dir.path());
    assert_eq!(strict.status.code(), Some(1), "{}", text(&strict));
    assert!(text(&strict).contains("has not started again after"), "{}", text(&strict));
    assert!(text(&strict).contains("--allow-torn"), "{}", text(&strict));
    let lenient = chimera_log(&["verify", dir.path().to_str().unwrap(), "--allow-torn"]);
    assert!(lenient.status.success(), "{}", text(&lenient));
    // The next start accounts for it: verify passes with no flag.
    let guard = config(dir.path()).max_bytes(1_000_000).build().unwrap();
    write_trail(&guard);
    drop(guard);
    let restart = &restarts(dir.path())[..];
    assert_eq!(restart.len(), 1);
    assert_eq!(restart[0]["context"]["torn_lines"], 1);
    assert_eq!(restart[0]["context"]["torn_bytes"], TORN.len());
    assert_eq!(restart[0]["seq"], 31, "numbered and sealed like any record");
    let output = verify(dir.path());
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("accounted for by the audit_restart record"), "{}", text(&output));
}

#[test]
fn two_crashes_in_a_row_and_a_crash_during_the_restart_record_are_all_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let start = || config(dir.path()).max_bytes(1_000_000).build().unwrap();
    drop(start());
    write_trail(&start());
    append_torn(dir.path(), TORN);
    drop(start()); // restart 1
    append_torn(dir.path(), b"{\"timestamp\":\"2024-01-15T10:31");
    // The next start repaired the newline and was killed while writing its restart record.
    append_torn(dir.path(), b"\n{\"timestamp\":\"2024-01-15T10:32:00.000000Z\",\"level\":\"WARN");
    write_trail(&start()); // restart 2 accounts for both torn lines
    let restart = restarts(dir.path());
    assert_eq!(restart.len(), 2, "{restart:?}");
    assert_eq!(
        (restart[0]["context"]["torn_lines"].as_u64(), restart[1]["context"]["torn_lines"].as_u64()),
        (Some(1), Some(2))
    );
    let output = verify(dir.path());
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(text(&output).matches("accounted for by the audit_restart record").count(), 2, "{}", text(&output));
}

#[test]
fn a_torn_line_edited_removed_or_left_without_its_restart_record_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).max_bytes(1_000_000).build().unwrap();
    write_trail(&guard);
    drop(guard);
    append_torn(dir.path(), TORN);
    let guard = config(dir.path()).max_bytes(1_000_000).build().unwrap();
    write_trail(&guard);
    drop(guard);
    let audit = dir.path().join("executions.log");
    let original = fs::read_to_string(&audit).unwrap();
    let torn_at = original.lines().position(|l| l.as_bytes() == TORN).unwrap();
    // The torn bytes changed: the restart record's hash no longer accounts for them.
    edit_lines(&audit, |lines| lines[torn_at] = lines[torn_at].replace("10:30", "10:31"));
    assert_broken(dir.path(), "not accounted for by an audit_restart record");
    // The torn line removed: the restart record accounts for lines that are not there.
    fs::write(&audit, &original).unwrap();
    edit_lines(&audit, |lines| {
        lines.remove(torn_at);
    });
    assert_broken(dir.path(), "that are not before it: removed");
    // A torn line put in the middle of the trail, with no restart record after it.
    fs::write(&audit, &original).unwrap();
    edit_lines(&audit, |lines| lines.insert(5, "{\"timestamp\":\"2024".to_owned()));
    assert_broken(dir.path(), "not accounted for by an audit_restart record");
    // Even --allow-torn accepts a torn line only at the very end of the trail.
    let output = chimera_log(&["verify", dir.path().to_str().unwrap(), "--allow-torn"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
}

#[test]
fn every_audit_file_begins_with_a_sealed_anchor_so_the_first_retained_record_cannot_be_edited() {
    let dir = tempfile::tempdir().unwrap();
    let keyed = || config(dir.path()).audit_key(*b"vault-held key");
    let guard = keyed().build().unwrap();
    write_trail(&guard);
    drop(guard);
    let files = audit_files(dir.path());
    for file in &files {
        let first = fs::read_to_string(file).unwrap().lines().next().map(str::to_owned).unwrap();
        let anchor: serde_json::Value = serde_json::from_str(&first).unwrap();
        assert_eq!(anchor["event"], "audit_anchor", "{}", file.display());
        assert!(anchor["anchor"].as_str().is_some_and(|a| a.len() == 64), "{first}");
    }
    // Retention removes the older files; then the first retained record is edited, its chain
    // value kept. Before anchors, nothing could check its link to the removed predecessor.
    drop(keyed().audit_backups(2).build().unwrap());
    let first_retained = audit_files(dir.path())[0].clone();
    let verify_keyed = || {
        Command::new(env!("CARGO_BIN_EXE_chimera-log"))
            .args(["verify", dir.path().to_str().unwrap(), "--key-env", "TEST_AUDIT_KEY"])
            .env("TEST_AUDIT_KEY", "vault-held key")
            .output()
            .unwrap()
    };
    let output = verify_keyed();
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("the retained chain begins after seq"), "{}", text(&output));
    let original = fs::read_to_string(&first_retained).unwrap();
    edit_lines(&first_retained, |lines| lines[1] = lines[1].replace("\"protocol\":\"", "\"protocol\":\"x"));
    let output = verify_keyed();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("chain broken at seq"), "{}", text(&output));
    // The anchor edited to match the edited record (without the key: its seal breaks).
    fs::write(&first_retained, &original).unwrap();
    edit_lines(&first_retained, |lines| {
        let anchor = chimera_log_runtime::audit::parse_anchor(lines[0].as_bytes()).unwrap();
        let previous = chimera_log_runtime::audit::hex(&anchor.previous.chain);
        lines[0] = lines[0].replace(&previous, &"0".repeat(64));
    });
    let output = verify_keyed();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("does not match its seal"), "{}", text(&output));
    // A file without its anchor.
    fs::write(&first_retained, &original).unwrap();
    edit_lines(&first_retained, |lines| {
        lines.remove(0);
    });
    let output = verify_keyed();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("does not begin with its audit_anchor"), "{}", text(&output));
}

#[test]
fn query_returns_exactly_the_records_that_match() {
    let dir = fresh_trail();
    let guard = config(dir.path()).build().unwrap();
    let logger = guard.logger("gas");
    logger.warning("high_gas_price", json!({"gwei": 150}));
    logger.info("high_gas_price", json!({"gwei": 90}));
    drop(guard);
    let d = dir.path().to_str().unwrap();
    let lines = |args: &[&str]| -> Vec<serde_json::Value> {
        let output = chimera_log(args);
        assert!(output.status.success(), "{}", text(&output));
        String::from_utf8(output.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let aave = lines(&["query", d, "--file", "audit", "--where", "protocol=aave"]);
    assert_eq!(aave.len(), 15);
    assert!(aave.iter().all(|l| l["context"]["protocol"] == "aave"));
    let block = lines(&["query", d, "--event", "executed", "--where", "block_number=7"]);
    assert_eq!(block.len(), 1);
    assert_eq!(block[0]["context"]["block_number"], 7);
    let warnings = lines(&["query", d, "--level", "warning", "--module", "gas"]);
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0]["context"]["gwei"], 150);
    assert!(lines(&["query", d, "--since", "1h", "--event", "high_gas_price"]).len() == 2);
    let none = chimera_log(&["query", d, "--until", "2000-01-01T00:00:00Z"]);
    assert_eq!((none.status.code(), none.stdout.len()), (Some(1), 0), "nothing matched: exit 1, as grep");
}

#[test]
fn stats_counts_per_event_and_level() {
    let dir = fresh_trail();
    let output = chimera_log(&["stats", dir.path().to_str().unwrap(), "--file", "audit"]);
    assert!(output.status.success(), "{}", text(&output));
    let report = text(&output);
    // Records only: the anchor line that begins each file is not a record.
    assert!(report.contains("executions.log: 30 lines, 0 unreadable"), "{report}");
    assert!(report.contains("  executed                         30"), "{report}");
    assert!(!report.contains("audit_anchor"), "{report}");
}

/// The time range `stats` reports is by instant (RFC 3339, offsets honoured), shown as written;
/// a line whose timestamp is missing or does not parse has no place in it.
#[test]
fn stats_orders_timestamps_by_instant_and_skips_those_that_do_not_parse() {
    let dir = tempfile::tempdir().unwrap();
    let line = |timestamp: &str| format!(r#"{{{timestamp}"level":"INFO","module":"m","event":"e","context":{{}}}}"#);
    let lines = [
        line(r#""timestamp":"2024-01-15T10:00:00Z","#),
        line(r#""timestamp":"2024-01-15T10:30:00+01:00","#),
        line(r#""timestamp":"2024-01-15T10:45:00Z","#),
        line(""),
        line(r#""timestamp":"not a time","#),
    ];
    fs::write(dir.path().join("chimera.log"), lines.join("\n") + "\n").unwrap();
    let output = chimera_log(&["stats", dir.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
    let report = stdout_of(&output);
    assert!(report.contains("chimera.log: 5 lines, 0 unreadable"), "{report}");
    assert!(report.contains("\nfrom 2024-01-15T10:30:00+01:00 to 2024-01-15T10:45:00Z\n"), "{report}");
}

#[test]
fn tail_shows_the_last_lines_across_backups() {
    let dir = fresh_trail();
    let output = chimera_log(&["tail", dir.path().to_str().unwrap(), "--file", "audit", "-n", "12"]);
    assert!(output.status.success(), "{}", text(&output));
    // tail shows the files' lines as they are, the anchor that begins each file among them.
    let lines: Vec<serde_json::Value> =
        String::from_utf8(output.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 12);
    let blocks: Vec<u64> = lines.iter().filter_map(|l| l["context"]["block_number"].as_u64()).collect();
    assert!(lines.iter().all(|l| l["event"] == "executed" || l["event"] == "audit_anchor"), "{lines:?}");
    let first = 30 - blocks.len() as u64;
    assert_eq!(blocks, (first..30).collect::<Vec<_>>());
    assert!(blocks.len() < 12, "an anchor is among the last 12 lines at 1,500-byte rotation");
}

/// `chimera-log tail -n 1 -f --file audit DIR`, and its stdout's lines as they come.
fn tail_follow_audit(dir: &Path) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let (child, received, _) = tail_follow_audit_with_stderr(dir);
    (child, received)
}

/// As [`tail_follow_audit`], with its stderr's lines too.
fn tail_follow_audit_with_stderr(
    dir: &Path,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chimera-log"))
        .args(["tail", dir.to_str().unwrap(), "-n", "1", "-f", "--file", "audit"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    (child, lines_as_they_come(stdout), lines_as_they_come(stderr))
}

/// The lines of `output`, sent as they are read, by a thread of their own.
fn lines_as_they_come(output: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            if lines.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    received
}

/// A record with `block`, as `tail` shows it.
fn executed_record(block: u64) -> String {
    format!("{{\"event\":\"executed\",\"context\":{{\"block_number\":{block}}}}}\n")
}

/// A rotation tail did not see happen: a complete backup holding `backup` appears, then the
/// current file is replaced (by rename, so never empty or missing) by one holding `current`.
fn rotated_behind_tails_back(dir: &Path, backup: u64, current: u64) {
    let staged = dir.join("staged");
    fs::write(&staged, executed_record(backup)).unwrap();
    fs::rename(&staged, dir.join("executions.log.20240101T000000.000002Z")).unwrap();
    fs::write(&staged, executed_record(current)).unwrap();
    fs::rename(&staged, dir.join("executions.log")).unwrap();
}

/// The `block_number` of the next record `tail -f` prints (past the anchors that begin files).
fn next_block(received: &std::sync::mpsc::Receiver<String>) -> u64 {
    loop {
        let line = match received.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("tail -f printed nothing for 30 s"),
            // Not a slow tail: its output ended (it exited; its stderr is above).
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("tail -f's output ended"),
        };
        let value = serde_json::from_str::<serde_json::Value>(&line).unwrap();
        if value["event"] != "audit_anchor" {
            return value["context"]["block_number"].as_u64().unwrap();
        }
    }
}

#[test]
fn tail_follow_prints_a_backup_made_and_rotated_away_while_the_file_was_missing() {
    // The follower plays against a rotation it can only see part of: the file renamed away
    // (a backup), then, while nothing is at the path, a whole file created, filled and rotated
    // (a second backup), then the next file. The second backup's lines must not be skipped.
    let dir = tempfile::tempdir().unwrap();
    let current = dir.path().join("executions.log");
    fs::write(&current, executed_record(0)).unwrap();
    let (mut child, received, noted) = tail_follow_audit_with_stderr(dir.path());
    assert_eq!(next_block(&received), 0);
    fs::rename(&current, dir.path().join("executions.log.20240101T000000.000001Z")).unwrap();
    let note = noted.recv_timeout(Duration::from_secs(30)).expect("tail said nothing of the missing file");
    assert!(note.contains("executions.log is missing"), "{note}");
    // A whole file's life while the path was empty: it appears complete (renamed into place).
    rotated_behind_tails_back(dir.path(), 1, 2);
    let seen = [next_block(&received), next_block(&received)];
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(seen, [1, 2], "the backup made while the file was missing, then the new file");
}

#[test]
fn tail_follow_prints_every_new_backup_when_retention_removed_the_file_it_was_reading() {
    // The file tail reads is rotated and its backup removed by retention before tail looks
    // again, while a newer file was rotated too: the only new backup is not the file tail
    // finished through its handle, and must be printed. (The path is never empty: the next file
    // replaces the old one by rename, which unlinks it, as retention would.)
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("executions.log"), executed_record(0)).unwrap();
    let (mut child, received) = tail_follow_audit(dir.path());
    assert_eq!(next_block(&received), 0);
    rotated_behind_tails_back(dir.path(), 1, 2);
    let seen = [next_block(&received), next_block(&received)];
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(seen, [1, 2], "the newer backup, then the new file");
}

#[test]
fn tail_follow_sees_lines_written_after_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).build().unwrap();
    emit!(guard.logger("executor"), Executed { block_number: 0, protocol: "first" });
    let (mut child, received) = tail_follow_audit(dir.path());
    let next = || next_block(&received);
    // The first line shown means tail is now following: everything after is new.
    assert_eq!(next(), 0);
    let logger = guard.logger("executor");
    for block_number in 1..30 {
        emit!(logger, Executed { block_number, protocol: "moonwell" }); // rotates every ~5 records
    }
    let seen: Vec<u64> = (1..30).map(|_| next()).collect();
    child.kill().unwrap();
    let _ = child.wait();
    drop(guard);
    assert_eq!(seen, (1..30).collect::<Vec<_>>());
}

/// The peak resident memory of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `tail -f` reads what is appended in bounded chunks: a 64 MiB line growing without its newline
/// is never held (peak RSS stays far below it), and once ended is shown as the placeholder
/// `tail` prints for a line over --max-line; the lines after it follow as usual.
#[test]
fn tail_follow_holds_no_more_than_max_line_of_a_growing_line_and_shows_its_placeholder() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let current = dir.path().join("chimera.log");
    fs::write(&current, "first\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chimera-log"))
        .args(["tail", dir.path().to_str().unwrap(), "-n", "1", "-f", "--max-line", "64KiB"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let received = lines_as_they_come(child.stdout.take().unwrap());
    let next = || received.recv_timeout(Duration::from_secs(30)).expect("tail -f printed its next line");
    assert_eq!(next(), "first");
    let mut file = fs::OpenOptions::new().append(true).open(&current).unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..64 {
        file.write_all(&chunk).unwrap();
    }
    file.write_all(b"\nafter\n").unwrap();
    let placeholder = next();
    let after = next();
    let peak = peak_rss_kib(child.id());
    child.kill().unwrap();
    let _ = child.wait();
    assert!(placeholder.starts_with("[chimera-log: line of 67108864 bytes skipped"), "{:.100}", placeholder);
    assert_eq!(after, "after");
    assert!(peak < 32 * 1024, "peak RSS {peak} KiB while following a 64 MiB line");
}

/// During `tail -f`, a corrupt `.gz` backup appearing is named on stderr and following goes
/// on; a backup older than the newest already seen appearing is named and not shown as new.
#[test]
fn tail_follow_survives_a_corrupt_gz_and_does_not_show_an_old_backup_appearing_as_new() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let backup = |stamp: &str| dir.path().join(format!("chimera.log.20240101T000000.{stamp}Z"));
    fs::write(backup("000005"), "seen-at-start\n").unwrap();
    let current = dir.path().join("chimera.log");
    fs::write(&current, "first\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chimera-log"))
        .args(["tail", dir.path().to_str().unwrap(), "-n", "1", "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let received = lines_as_they_come(child.stdout.take().unwrap());
    let errors = lines_as_they_come(child.stderr.take().unwrap());
    let next = || received.recv_timeout(Duration::from_secs(30)).expect("tail -f goes on printing");
    assert_eq!(next(), "first");
    fs::write(backup("000001"), "old\n").unwrap();
    fs::write(dir.path().join("chimera.log.20240101T000000.000007Z.gz"), b"\x1f\x8b\x08\x00not gzip").unwrap();
    fs::write(backup("000008"), "new-backup\n").unwrap();
    let staged = dir.path().join("staged");
    fs::write(&staged, "after-rotation\n").unwrap();
    fs::rename(&staged, &current).unwrap();
    assert_eq!(next(), "new-backup", "the old backup is not shown, the corrupt one cannot be");
    assert_eq!(next(), "after-rotation");
    fs::OpenOptions::new().append(true).open(&current).unwrap().write_all(b"more\n").unwrap();
    assert_eq!(next(), "more", "still following");
    child.kill().unwrap();
    let _ = child.wait();
    let stderr: Vec<String> = errors.iter().collect();
    let said = |needle: &str| stderr.iter().any(|l| l.contains(needle));
    assert!(said("000001Z appeared, but is older than the backups already shown"), "{stderr:?}");
    assert!(said("000007Z.gz"), "{stderr:?}");
}

/// A backup is written no more: its last line without a newline is shown by `tail -n`, plain as
/// gzipped; only the current file's unterminated end is a line still being written, left out.
#[test]
fn tail_shows_the_unterminated_last_line_of_a_plain_backup_as_of_a_gzipped_one() {
    use std::io::Write;
    let content = b"a\nb\nc-unterminated";
    for gzipped in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let backup = dir.path().join("chimera.log.20240101T000000.000001Z");
        if gzipped {
            let file = fs::File::create(dir.path().join("chimera.log.20240101T000000.000001Z.gz")).unwrap();
            let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::default());
            encoder.write_all(content).unwrap();
            encoder.finish().unwrap();
        } else {
            fs::write(&backup, content).unwrap();
        }
        fs::write(dir.path().join("chimera.log"), "d\ne-being-written").unwrap();
        let output = chimera_log(&["tail", dir.path().to_str().unwrap(), "-n", "3"]);
        assert!(output.status.success(), "{}", text(&output));
        assert_eq!(stdout_of(&output), "b\nc-unterminated\nd\n", "gzipped: {gzipped}");
    }
}

#[test]
fn bad_input_gets_a_clear_message_and_a_non_zero_exit() {
    let missing = chimera_log(&["verify", "/nonexistent/chimera-logs"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing).contains("/nonexistent/chimera-logs: not a directory"), "{}", text(&missing));

    let dir = fresh_trail();
    fs::write(dir.path().join("chimera.log.20200101T000000.000000Z.gz"), b"\x1f\x8b\x08\x00garbage").unwrap();
    let corrupt = chimera_log(&["query", dir.path().to_str().unwrap()]);
    assert_eq!(corrupt.status.code(), Some(2), "{}", text(&corrupt));
    assert!(text(&corrupt).contains("chimera.log.20200101T000000.000000Z.gz"), "{}", text(&corrupt));

    let dir = fresh_trail();
    let general = dir.path().join("chimera.log");
    let mut bytes = fs::read(&general).unwrap_or_default();
    bytes.extend_from_slice(b"not json at all\n");
    fs::write(&general, bytes).unwrap();
    let skipped = chimera_log(&["query", dir.path().to_str().unwrap()]);
    // Lines matched (exit 0, as grep); the unreadable one is named on stderr.
    assert_eq!(skipped.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&skipped.stderr).contains("chimera.log:"), "{}", text(&skipped));
}

/// A backup stamped far past the clock cannot be the logger's, which ignores such names (the
/// runtime's listing): the command ignores them through the same listing and says so on stderr,
/// so garbage planted under such a name fails neither `verify` nor `query`.
#[test]
fn a_planted_far_future_garbage_backup_is_noted_and_ignored_by_verify_and_query() {
    let dir = fresh_trail();
    let planted = ["executions.log.29991231T235959.999999Z.gz", "executions.log.29991230T000000.000000Z"];
    fs::write(dir.path().join(planted[0]), b"\x1f\x8b\x08\x00garbage").unwrap();
    fs::write(dir.path().join(planted[1]), b"garbage\n").unwrap();
    let verified = verify(dir.path());
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
    assert!(stdout_of(&verified).contains("intact: 30 audit record(s), seq 1..=30"), "{}", text(&verified));
    let queried = chimera_log(&["query", dir.path().to_str().unwrap(), "--file", "audit"]);
    assert_eq!(queried.status.code(), Some(0), "{}", text(&queried));
    let seqs: Vec<u64> = stdout_of(&queried)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=30).collect::<Vec<_>>());
    for output in [&verified, &queried] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        for name in planted {
            assert!(stderr.contains(&format!("{name}: ignored")), "{stderr}");
        }
        assert_eq!(stderr.lines().count(), planted.len(), "each noted once: {stderr}");
    }
}

// ---- forgeries, panics, closed pipes, special files, empty directories (issue 11, part) ------

#[test]
fn an_inserted_well_formed_unsealed_record_is_tampering_even_with_allow_torn() {
    let dir = tempfile::tempdir().unwrap();
    drop({
        let guard = config(dir.path()).build().unwrap();
        write_trail(&guard);
        guard
    });
    let current = dir.path().join("executions.log");
    let mut trail = fs::read_to_string(&current).unwrap();
    let forged = r#"{"timestamp":"2024-01-15T10:30:45.123456Z","level":"INFO","module":"executor","event":"executed","context":{"block_number":999,"protocol":"forged"}}"#;
    trail.insert_str(0, &format!("{forged}\n"));
    fs::write(&current, trail).unwrap();
    for args in [vec!["verify"], vec!["verify", "--allow-torn"]] {
        let mut args = args;
        args.push(dir.path().to_str().unwrap());
        let output = chimera_log(&args);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {}", text(&output));
        assert!(text(&output).contains("inserted, not torn"), "{}", text(&output));
    }
    // And query never shows it as a record.
    let query = chimera_log(&["query", dir.path().to_str().unwrap(), "--file", "audit"]);
    assert_eq!(query.status.code(), Some(0), "the real records matched: {}", text(&query));
    assert!(!String::from_utf8_lossy(&query.stdout).contains("forged"), "{}", text(&query));
    assert!(String::from_utf8_lossy(&query.stderr).contains("not a sealed audit record"), "{}", text(&query));
}

/// A line longer than --max-line is never read, so it cannot be taken for a torn write: verify
/// reports it whatever --allow-torn says, and never calls a trail it could not read intact.
#[test]
fn verify_reports_a_line_over_max_line_as_unverifiable_even_with_allow_torn() {
    let dir = tempfile::tempdir().unwrap();
    drop({
        let guard = config(dir.path()).max_bytes(1 << 20).build().unwrap();
        let logger = guard.logger("executor");
        for block_number in 0..6 {
            let protocol = if block_number == 3 { "p".repeat(600) } else { "aave".to_owned() };
            emit!(logger, Executed { block_number, protocol: &protocol });
        }
        guard
    });
    let path = dir.path().to_str().unwrap();
    for (max_line, args) in [
        ("100", vec!["verify", "--allow-torn"]),
        ("100", vec!["verify"]),
        ("500", vec!["verify", "--allow-torn"]),
        ("500", vec!["verify"]),
    ] {
        let mut args = args;
        args.extend(["--max-line", max_line, path]);
        let output = chimera_log(&args);
        let said = text(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {said}");
        assert!(!said.contains("intact"), "{args:?}: {said}");
        assert!(said.contains("bytes exceeds --max-line: cannot be verified"), "{args:?}: {said}");
        assert!(!said.contains("torn"), "{args:?}: nothing here is torn: {said}");
    }
    // Read whole, the same trail is intact.
    let output = chimera_log(&["verify", "--max-line", "1000", path]);
    assert!(output.status.success(), "{}", text(&output));
}

/// seq 0 is no record's number: where the trail read begins without an anchor (here, its first
/// file's anchor removed), a record numbered 0 is a finding, not a panic on `seq - 1`.
#[test]
fn verify_reports_a_record_numbered_0_as_a_finding_not_a_panic() {
    let dir = fresh_trail();
    let first = audit_files(dir.path())[0].clone();
    edit_lines(&first, |lines| {
        lines.remove(0);
        lines[0] = lines[0].replace(r#","seq":1,"#, r#","seq":0,"#);
    });
    let output = verify(dir.path());
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("seq 0: records are numbered from 1"), "{}", text(&output));
}

#[test]
fn ages_beyond_the_calendar_are_usage_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    drop(config(dir.path()).build().unwrap());
    for flag in ["--since=999999999999d", "--until=9999999999h", "--since=9223372036854775807s"] {
        let output = chimera_log(&["query", dir.path().to_str().unwrap(), flag]);
        assert_eq!(output.status.code(), Some(2), "{flag}: {}", text(&output));
        assert!(text(&output).contains("out of range"), "{flag}: {}", text(&output));
        assert!(!text(&output).contains("panicked"), "{}", text(&output));
    }
}

#[test]
fn a_closed_pipe_ends_every_subcommand_quietly_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    drop({
        let guard = config(dir.path()).build().unwrap();
        write_trail(&guard);
        guard
    });
    let path = dir.path().to_str().unwrap();
    for args in [vec!["stats", path], vec!["verify", path], vec!["query", path], vec!["tail", path, "-n", "5"]] {
        // A pipe whose reading end is closed before the command writes: every write fails with EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = Command::new(env!("CARGO_BIN_EXE_chimera-log"))
            .args(&args)
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

#[test]
fn verify_on_a_directory_without_an_audit_trail_is_exit_2_not_intact() {
    let dir = tempfile::tempdir().unwrap();
    let output = chimera_log(&["verify", dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("no audit trail"), "{}", text(&output));
}

#[test]
fn a_fifo_in_place_of_a_log_file_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    assert!(Command::new("mkfifo").arg(dir.path().join("chimera.log")).status().unwrap().success());
    let mut child = Command::new(env!("CARGO_BIN_EXE_chimera-log"))
        .args(["query", dir.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A guard against the hang this test is about, not a timing claim: a FIFO with no writer
    // blocks an open forever.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("chimera-log hung on a FIFO");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("not a regular file"), "{}", text(&output));
}

#[test]
fn a_line_over_the_limit_is_skipped_and_counted_and_bad_lines_do_not_flood_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"timestamp":"2024-01-15T10:30:45.123456Z","level":"INFO","module":"m","event":"kept","context":{}}"#;
    let mut content = format!("{good}\n");
    content.push_str(&"x".repeat(17 * 1024 * 1024));
    content.push('\n');
    for _ in 0..1_000 {
        content.push_str("garbage\n");
    }
    content.push_str(good);
    content.push('\n');
    fs::write(dir.path().join("chimera.log"), content).unwrap();
    let output = chimera_log(&["query", dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "lines matched; the unreadable ones are reported on stderr");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.lines().count(), 2, "both good lines, nothing else");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.lines().count() <= 11, "{} stderr lines", stderr.lines().count());
    assert!(stderr.contains("991 more unreadable line(s) skipped"), "{stderr}");
    let tail = chimera_log(&["tail", dir.path().to_str().unwrap(), "-n", "1"]);
    assert_eq!(String::from_utf8_lossy(&tail.stdout).trim(), good);
}

#[test]
fn tail_of_a_backup_holding_millions_of_empty_lines_keeps_only_what_it_shows() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let line = r#"{"timestamp":"2024-01-15T10:30:45.123456Z","level":"INFO","module":"m","event":"last","context":{}}"#;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let newlines = vec![b'\n'; 1 << 20];
    for _ in 0..64 {
        encoder.write_all(&newlines).unwrap(); // 64 Mi empty lines
    }
    encoder.write_all(format!("{line}\n").as_bytes()).unwrap();
    fs::write(dir.path().join("chimera.log.20240115T103045.123456Z.gz"), encoder.finish().unwrap()).unwrap();
    let output = chimera_log(&["tail", dir.path().to_str().unwrap(), "-n", "3"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), line);
}

#[test]
fn tail_follow_prints_every_line_once_across_rotations_with_compression_under_load() {
    let dir = tempfile::tempdir().unwrap();
    // Compression on: a backup seen plain becomes `.gz` while tail follows.
    let guard = config(dir.path()).compress(true).build().unwrap();
    emit!(guard.logger("executor"), Executed { block_number: 0, protocol: "first" });
    let (mut child, received) = tail_follow_audit(dir.path());
    let next = || next_block(&received);
    assert_eq!(next(), 0);
    const RECORDS: u64 = 200; // about 40 rotations
    std::thread::scope(|scope| {
        let logger = guard.logger("executor");
        scope.spawn(move || {
            for block_number in 1..=RECORDS {
                emit!(logger, Executed { block_number, protocol: "moonwell" });
            }
        });
        let mut printed = Vec::new();
        while printed.last() != Some(&RECORDS) {
            printed.push(next());
        }
        assert_eq!(printed, (1..=RECORDS).collect::<Vec<_>>(), "each record once, in order");
    });
    child.kill().unwrap();
    let _ = child.wait();
    // Compression runs in the background; the guard's shutdown waits for it before counting.
    let stats_logger = guard.logger("stats");
    drop(guard);
    let stats = stats_logger.stats().unwrap();
    assert!(stats.compressed_backups > 5, "compression was on during the run: {stats:?}");
}

#[test]
fn verify_on_a_live_directory_under_load_never_cries_wolf() {
    let dir = tempfile::tempdir().unwrap();
    // 64 KiB rotation, compression and retention all happen under verify's feet.
    let guard = LogConfig::new(dir.path())
        .console(false)
        .audit_durability(AuditDurability::OsBuffer)
        .max_bytes(64 * 1024)
        .audit_backups(20)
        // Unbounded emission: with an audit store behind, unarchived backups would be kept and
        // the trail would grow without limit; this test is about the files alone.
        .audit_store(AuditStore::none())
        .build()
        .unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut failures = Vec::new();
    std::thread::scope(|scope| {
        for thread in 0..4u64 {
            let logger = guard.logger("executor");
            let stop = &stop;
            scope.spawn(move || {
                let mut block_number = thread << 32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    emit!(logger, Executed { block_number, protocol: "moonwell" });
                    block_number += 1;
                }
            });
        }
        for run in 0..50 {
            let output = chimera_log(&["verify", dir.path().to_str().unwrap()]);
            if !output.status.success() {
                failures.push(format!("run {run}: {}", text(&output)));
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let rotations = guard.stats().sink("executions.log").unwrap().rotations;
    drop(guard);
    assert!(rotations > 50, "the trail rotated under verify: {rotations}");
    assert!(failures.is_empty(), "{} false alarm(s) in 50 runs; first: {}", failures.len(), failures[0]);
}

#[test]
fn query_compares_numbers_exactly_and_text_as_text_follows_nested_keys_and_stops_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let line = |seq: u64, big: &str, nested: u64, name: &str| {
        format!(
            r#"{{"timestamp":"2024-01-15T10:30:45.123456Z","level":"INFO","module":"m","event":"e","context":{{"seq":{seq},"big":{big},"metrics":{{"latency_ms":{nested}}},"name":"{name}"}}}}"#
        )
    };
    let content = [
        line(1, "340282366920938463463374607431768211455", 5, "alpha"),
        line(2, "340282366920938463463374607431768211454", 50, "beta"),
        line(3, "1", 500, "gamma"),
    ]
    .join("\n")
        + "\n";
    fs::write(dir.path().join("chimera.log"), content).unwrap();
    let d = dir.path().to_str().unwrap();
    let seqs = |args: &[&str]| -> Vec<u64> {
        let mut all = vec!["query", d];
        all.extend_from_slice(args);
        let output = chimera_log(&all);
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["context"]["seq"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(seqs(&["--where", "seq>=2"]), [2, 3]);
    assert_eq!(seqs(&["--where", "seq!=2"]), [1, 3]);
    assert_eq!(seqs(&["--where", "seq<2"]), [1]);
    // u128 compared exactly: these two differ only in the last digit.
    assert_eq!(seqs(&["--where", "big>340282366920938463463374607431768211454"]), [1]);
    assert_eq!(seqs(&["--where", "metrics.latency_ms>10"]), [2, 3]);
    assert_eq!(seqs(&["--where", "context.metrics.latency_ms<=50", "--where", "name>alpha"]), [2]);
    assert_eq!(seqs(&["--where", "event=e", "--limit", "2"]), [1, 2]);
    // As grep: exit 1 when nothing matched, 0 when something did, 2 on a bad condition.
    assert_eq!(chimera_log(&["query", d, "--where", "seq>99"]).status.code(), Some(1));
    assert_eq!(chimera_log(&["query", d, "--where", "seq>1"]).status.code(), Some(0));
    assert_eq!(chimera_log(&["query", d, "--where", "=1"]).status.code(), Some(2));
}

/// Writes `chimera.log` in `dir` with one line per `(timestamp, level, context)`.
fn write_general(dir: &Path, lines: &[(&str, &str, &str)]) {
    let text: String = lines
        .iter()
        .map(|(time, level, context)| {
            format!(r#"{{"timestamp":"{time}","level":"{level}","module":"m","event":"e","context":{context}}}"#) + "\n"
        })
        .collect();
    fs::write(dir.join("chimera.log"), text).unwrap();
}

/// Runs `chimera-log` with `args` (a query that must not fail) and returns `context.n` of each
/// line printed.
fn query_ns(args: &[&str]) -> Vec<u64> {
    let output = chimera_log(args);
    assert!(output.status.code().is_some_and(|c| c <= 1), "{args:?}: {}", text(&output));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["context"]["n"].as_u64().unwrap())
        .collect()
}

#[test]
fn query_matches_regular_expressions_on_text_and_on_json_values() {
    let dir = tempfile::tempdir().unwrap();
    write_general(
        dir.path(),
        &[
            ("2024-01-15T10:30:45.000000Z", "INFO", r#"{"n":1,"tx":"0xabc123","ok":true}"#),
            ("2024-01-15T10:30:46.000000Z", "INFO", r#"{"n":2,"tx":"0xdef456","ok":false}"#),
            ("2024-01-15T10:30:47.000000Z", "INFO", r#"{"n":3,"tx":"0xABC789"}"#),
        ],
    );
    let d = dir.path().to_str().unwrap();
    let ns = |condition: &str| query_ns(&["query", d, "--where", condition]);
    assert_eq!(ns("tx~^0xabc"), [1]);
    assert_eq!(ns("tx~(?i)^0xabc"), [1, 3]);
    assert_eq!(ns("tx!~abc"), [2, 3]);
    assert_eq!(ns("ok~^t"), [1], "a non-string value is matched as its JSON text");
    assert_eq!(ns("ok!~^t"), [2, 3], "a missing field does not match, so !~ holds");
    assert_eq!(ns("n~[23]"), [2, 3]);
    let bad = chimera_log(&["query", d, "--where", "tx~(unclosed"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(text(&bad).contains("not a regular expression"), "{}", text(&bad));
}

#[test]
fn query_takes_today_yesterday_now_and_humantime_ages() {
    let dir = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now();
    let minutes_ago =
        |minutes: i64| (now - chrono::TimeDelta::minutes(minutes)).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let (two_days, ninety_minutes, ten_minutes) = (minutes_ago(48 * 60), minutes_ago(90), minutes_ago(10));
    write_general(
        dir.path(),
        &[
            (&two_days, "INFO", r#"{"n":1}"#),
            (&ninety_minutes, "INFO", r#"{"n":2}"#),
            (&ten_minutes, "INFO", r#"{"n":3}"#),
        ],
    );
    let d = dir.path().to_str().unwrap();
    let ns = |args: &[&str]| query_ns(&[&["query", d], args].concat());
    assert_eq!(ns(&["--since", "1h 30m 30s"]), [2, 3]);
    assert_eq!(ns(&["--since", "30min"]), [3]);
    assert_eq!(ns(&["--until", "1h"]), [1, 2]);
    assert_eq!(ns(&["--until", "now"]), [1, 2, 3]);
    assert_eq!(ns(&["--since", "2days 1h"]), [1, 2, 3]);
    // Midnights UTC: 48 hours ago is always before yesterday's, 90 minutes ago always after.
    assert_eq!(ns(&["--since", "yesterday"]), [2, 3]);
    let today = ns(&["--since", "today"]);
    let midnight = now.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let expected: Vec<u64> = [(2, 90), (3, 10)]
        .into_iter()
        .filter(|(_, minutes)| now - chrono::TimeDelta::minutes(*minutes) >= midnight)
        .map(|(n, _)| n)
        .collect();
    assert_eq!(today, expected);
    let bad = chimera_log(&["query", d, "--since", "last tuesday"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(text(&bad).contains("today, yesterday"), "{}", text(&bad));
}

#[test]
fn query_prints_json_table_or_pretty_and_colours_levels_only_when_asked_or_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    write_general(
        dir.path(),
        &[("2024-01-15T10:30:45.123456Z", "WARNING", r#"{"protocol":"moonwell","bps":150,"note":"two words"}"#)],
    );
    let d = dir.path().to_str().unwrap();
    let out = |args: &[&str]| {
        let mut all = vec!["query", d];
        all.extend_from_slice(args);
        let output = chimera_log(&all);
        assert!(output.status.success(), "{}", text(&output));
        String::from_utf8(output.stdout).unwrap()
    };
    let raw = fs::read_to_string(dir.path().join("chimera.log")).unwrap();
    assert_eq!(out(&[]), raw, "json: the line byte for byte");
    assert_eq!(out(&["--output", "json", "--color", "always"]), raw, "json is never coloured");
    assert_eq!(
        out(&["--output", "pretty"]),
        "2024-01-15T10:30:45.123456Z WARNING m e protocol=moonwell bps=150 note=\"two words\"\n"
    );
    let table = out(&["--output", "table"]);
    assert!(table.starts_with("2024-01-15T10:30:45.123456Z  WARNING  m"), "{table:?}");
    assert_eq!(out(&["--table"]), table);
    // Not a terminal (a pipe): auto means no colour.
    assert!(!out(&["--output", "pretty"]).contains('\x1b'));
    let coloured = out(&["--output", "pretty", "--color", "always"]);
    assert!(coloured.contains("\x1b[33mWARNING"), "{coloured:?}");
    assert!(!out(&["--output", "table", "--color", "never"]).contains('\x1b'));
}

/// `table` and `pretty` go to terminals: a control character in any field they print (an ESC
/// sequence, an OSC title, DEL, a C1 CSI) is shown escaped, never sent raw; numbers are printed
/// from their own digits, so a u128 is exact; `json` stays the line byte for byte.
#[test]
fn query_table_and_pretty_escape_control_characters_and_print_large_integers_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let line = "{\"timestamp\":\"2024-01-15T10:30:45.123456Z\\u001b[2J\",\"level\":\"INFO\\u001b[31m\",\
                \"module\":\"m\\u0007\",\"event\":\"e\\u001b]0;pwned\\u0007\",\"context\":{\"big\":\
                340282366920938463463374607431768211455,\"neg\":-170141183460469231731687303715884105728,\
                \"nested\":{\"n\":18446744073709551617,\"s\":\"\u{7f}\u{9b}31m\"},\"title\":\"\\u001b]0;x\\u0007\",\
                \"del\":\"a\u{7f}b\",\"k\\u001bey\":1},\"exception\":{\"kind\":\"\\u001b[5m\",\"n\":123456789012345678901}}\n";
    fs::write(dir.path().join("chimera.log"), line).unwrap();
    let d = dir.path().to_str().unwrap();
    for output in ["table", "pretty"] {
        let printed = chimera_log(&["query", d, "--output", output, "--color", "never"]);
        assert!(printed.status.success(), "{}", text(&printed));
        let shown = String::from_utf8(printed.stdout).unwrap();
        let raw_control = shown.trim_end_matches('\n').chars().find(|c| c.is_control());
        assert_eq!(raw_control, None, "{output}: {shown:?}");
        for expected in [
            "2024-01-15T10:30:45.123456Z\\u001b[2J",
            "e\\u001b]0;pwned\\u0007",
            "340282366920938463463374607431768211455",
            "-170141183460469231731687303715884105728",
            "18446744073709551617",
            "\\u007f\\u009b31m",
        ] {
            assert!(shown.contains(expected), "{output}: {expected:?} in {shown:?}");
        }
        // Only `pretty` shows the exception.
        if output == "pretty" {
            assert!(shown.contains(r#" exception={"kind":"\u001b[5m","n":123456789012345678901}"#), "{shown:?}");
        }
    }
    let json = chimera_log(&["query", d, "--color", "always"]);
    assert_eq!(json.stdout, line.as_bytes(), "json: the line byte for byte");
}

/// Runs the binary with `args` and returns its exit code and peak resident memory in KiB, read
/// for that child alone (`wait4` reaps it, so `Child::wait` is never called).
#[allow(clippy::zombie_processes)]
fn run_measured(args: &[&str]) -> (Option<i32>, i64) {
    let child = Command::new(env!("CARGO_BIN_EXE_chimera-log"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for the child just spawned.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our own unwaited child; both pointers are valid for the call.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t);
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, usage.ru_maxrss)
}

const MEASURE_DIR: &str = "CHIMERA_CLI_TEST_MEASURE_DIR";

#[test]
fn every_subcommand_stays_under_64_mib_on_a_huge_line_and_a_gzip_bomb_of_newlines() {
    use std::io::Write;
    // Measured from a small child process: Linux counts the memory of the process that spawns a
    // program towards its peak (exec keeps it), and this test binary runs other tests at once.
    if let Ok(dir) = std::env::var(MEASURE_DIR) {
        let current = format!("{dir}/chimera.log");
        let cases: [&[&str]; 9] = [
            &["tail", &dir, "-n", "3"],
            &["tail", &dir, "-n", "1000"],
            &["query", &dir, "--where", "event=last"],
            // Merged, each input holds one line at most; a file path read as a directory is.
            &["query", &dir, &dir, "--source"],
            &["query", &current, "--where", "event=last"],
            &["tail", &current, "-n", "3"],
            &["stats", &dir],
            &["verify", &dir],
            &["query", &dir, "--max-line", "1MiB"],
        ];
        for args in cases {
            let (code, peak_kib) = run_measured(args);
            assert!(code.is_some_and(|c| c <= 1), "{args:?} exited {code:?}");
            println!("{args:?}: peak {} KiB", peak_kib);
            assert!(peak_kib < 64 * 1024, "{args:?} peaked at {} MiB", peak_kib / 1024);
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"timestamp":"2024-01-15T10:30:45.123456Z","level":"INFO","module":"m","event":"last","context":{}}"#;
    // A 96 MiB line between two good ones, in the current file of both logs.
    let huge = vec![b'a'; 1 << 20];
    for name in ["chimera.log", "executions.log"] {
        let mut file = fs::File::create(dir.path().join(name)).unwrap();
        file.write_all(format!("{good}\n").as_bytes()).unwrap();
        for _ in 0..96 {
            file.write_all(&huge).unwrap();
        }
        file.write_all(format!("\n{good}\n").as_bytes()).unwrap();
    }
    // A backup of 16 Mi empty lines (kept as lines, 384 MiB of line headers alone), compressed to
    // a few dozen KiB.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for _ in 0..16 {
        encoder.write_all(&[b'\n'; 1 << 20]).unwrap();
    }
    fs::write(dir.path().join("chimera.log.20240115T103045.123456Z.gz"), encoder.finish().unwrap()).unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "every_subcommand_stays_under_64_mib_on_a_huge_line_and_a_gzip_bomb_of_newlines",
            "--exact",
            "--nocapture",
        ])
        .env(MEASURE_DIR, dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(text(&output).matches("peak").count(), 9, "{}", text(&output));
}

#[test]
fn tail_reads_the_current_file_from_its_end_and_max_line_skips_longer_lines() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let line = |n: u64| {
        format!(
            r#"{{"timestamp":"2024-01-15T10:30:45.123456Z","level":"INFO","module":"m","event":"e","context":{{"n":{n}}}}}"#
        )
    };
    let mut file = fs::File::create(dir.path().join("chimera.log")).unwrap();
    for n in 0..200_000 {
        writeln!(file, "{}", line(n)).unwrap();
    }
    // A line still being written: not shown.
    file.write_all(b"{\"timestamp\":\"2024").unwrap();
    drop(file);
    let output = chimera_log(&["tail", dir.path().to_str().unwrap(), "-n", "3"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!("{}\n{}\n{}\n", line(199_997), line(199_998), line(199_999))
    );
    // --max-line: a longer line is skipped and counted (exit 1 for unreadable lines).
    let output = chimera_log(&["query", dir.path().to_str().unwrap(), "--max-line", "50", "--limit", "1"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("longer than the 50-byte limit"), "{}", text(&output));
    let bad = chimera_log(&["query", dir.path().to_str().unwrap(), "--max-line", "0"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
}

const KILL_DIR: &str = "CHIMERA_CLI_TEST_KILL_DIR";

#[test]
fn verify_passes_after_kill_9_mid_stream_and_after_the_restart_that_follows() {
    if let Ok(dir) = std::env::var(KILL_DIR) {
        // The child: writes audit records until it is killed.
        let guard = config(Path::new(&dir)).max_bytes(4_000).build().unwrap();
        let logger = guard.logger("executor");
        for block_number in 0.. {
            emit!(logger, Executed { block_number, protocol: "moonwell" });
            if block_number == 100 {
                println!("writing");
            }
        }
        unreachable!();
    }
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "verify_passes_after_kill_9_mid_stream_and_after_the_restart_that_follows",
                "--exact",
                "--nocapture",
            ])
            .env(KILL_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert!(lines.any(|l| l.unwrap().contains("writing")), "round {round}: the child wrote");
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let output = verify(dir.path());
        assert!(output.status.success(), "round {round}, right after kill -9: {}", text(&output));
        let guard = config(dir.path()).max_bytes(4_000).build().unwrap();
        write_trail(&guard);
        drop(guard);
        let output = verify(dir.path());
        assert!(output.status.success(), "round {round}, after the restart: {}", text(&output));
    }
}

// ---- the audit store: verify --store, query --store (issue 13) ---------------------------------

/// 30 records (rotating about every 5) in `dir`'s files and in an SQLite audit store:
/// `(dir, database, its one stream)`.
fn trail_with_store() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let guard = config(dir.path()).audit_store(AuditStore::sqlite(&db)).build().unwrap();
    write_trail(&guard);
    assert!(guard.flush(), "every record stored");
    drop(guard);
    let streams = StoreReader::open(db.to_str().unwrap()).unwrap().streams().unwrap();
    assert_eq!(streams.len(), 1, "one logger, one stream: {streams:?}");
    (dir, db, streams[0].clone())
}

/// Runs SQL on the store, as whoever can write the database could.
fn sql(db: &Path, statements: &str) {
    rusqlite::Connection::open(db).unwrap().execute_batch(statements).unwrap();
}

fn stdout_of(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// `verify --store DB` with `args` after it; asserts the exit code, returns stdout.
fn verify_store(db: &Path, args: &[&str], code: i32) -> String {
    let mut all = vec!["verify", "--store", db.to_str().unwrap()];
    all.extend_from_slice(args);
    let output = chimera_log(&all);
    assert_eq!(output.status.code(), Some(code), "{}", text(&output));
    stdout_of(&output)
}

#[test]
fn verify_store_accepts_an_intact_store_and_agrees_with_the_files() {
    let (dir, db, stream) = trail_with_store();
    assert!(audit_files(dir.path()).len() > 5, "the files rotated");
    assert_eq!(verify_store(&db, &[], 0), format!("intact: stream {stream}: 30 audit record(s), seq 1..=30\n"));
    let sqlite_url = format!("sqlite:{}", db.display());
    let output = chimera_log(&["verify", dir.path().to_str().unwrap(), "--store", &sqlite_url]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(
        stdout_of(&output),
        format!("intact: stream {stream}: 30 audit record(s), seq 1..=30, 30 compared with the files\n")
    );
    // --stream names the same stream; one not in the store is a usage error.
    assert_eq!(
        verify_store(&db, &["--stream", &stream], 0),
        format!("intact: stream {stream}: 30 audit record(s), seq 1..=30\n")
    );
    let other = verify_store(&db, &["--stream", "elsewhere/logs"], 2);
    assert_eq!(other, "");
}

#[test]
fn verify_store_names_the_seq_of_a_record_edited_in_the_database() {
    let (_dir, db, stream) = trail_with_store();
    sql(&db, r#"UPDATE chimera_audit SET record = replace(record, '"protocol":"', '"protocol":"x') WHERE seq = 7"#);
    assert_eq!(
        verify_store(&db, &[], 1),
        format!(
            "BROKEN: first broken record: stream {stream}: seq 7: chain broken at seq 7: the record was altered, \
             inserted, or signed with another key\nread: stream {stream}: 30 audit record(s), seq 1..=30\n"
        )
    );
}

#[test]
fn verify_store_names_the_seq_of_an_edited_chain_column() {
    let (_dir, db, stream) = trail_with_store();
    sql(&db, &format!("UPDATE chimera_audit SET chain = '{}' WHERE seq = 12", "0".repeat(64)));
    assert_eq!(
        verify_store(&db, &[], 1),
        format!(
            "BROKEN: first broken record: stream {stream}: seq 12: the chain column is not the record's chain: \
             edited\nread: stream {stream}: 30 audit record(s), seq 1..=30\n"
        )
    );
}

#[test]
fn verify_store_names_the_seqs_missing_after_rows_deleted_in_the_middle() {
    let (_dir, db, stream) = trail_with_store();
    sql(&db, "DELETE FROM chimera_audit WHERE seq = 12; DELETE FROM chimera_audit WHERE seq IN (20, 21, 22)");
    assert_eq!(
        verify_store(&db, &[], 1),
        format!(
            "BROKEN: first broken record: stream {stream}: seq 13: seq 13 follows seq 11 in the store: seq 12 \
             missing (rows deleted)\nalso: stream {stream}: seq 23: seq 23 follows seq 19 in the store: seq \
             20..=22 missing (rows deleted)\nread: stream {stream}: 26 audit record(s), seq 1..=30\n"
        )
    );
}

#[test]
fn verify_store_notes_where_the_retained_chain_begins_after_rows_deleted_at_the_start() {
    let (_dir, db, stream) = trail_with_store();
    sql(&db, "DELETE FROM chimera_audit WHERE seq <= 4");
    assert_eq!(
        verify_store(&db, &[], 0),
        format!(
            "note: stream {stream}: the retained chain begins at seq 5, so its link to seq 4 cannot be checked \
             (older rows removed by retention)\nintact: stream {stream}: 26 audit record(s), seq 5..=30\n"
        )
    );
}

/// A crafted row numbered 0 or below is a finding (exit 1), never a panic or a seq shown as
/// 18446744073709551615; it takes no part in the comparison with the files.
#[test]
fn verify_store_reports_rows_with_seq_zero_or_negative_as_findings_not_panics() {
    let (dir, db, stream) = trail_with_store();
    sql(&db, "UPDATE chimera_audit SET seq = 0 WHERE seq = 1; UPDATE chimera_audit SET seq = -1 WHERE seq = 2");
    let expected = format!(
        "BROKEN: first broken record: stream {stream}: seq -1: records are numbered from 1 (edited or inserted)\n\
         also: stream {stream}: seq 0: records are numbered from 1 (edited or inserted)\n"
    );
    let alone = verify_store(&db, &[], 1);
    assert!(alone.contains(&expected), "{alone}");
    assert!(alone.contains(&format!("read: stream {stream}: 30 audit record(s), seq 3..=30\n")), "{alone}");
    assert!(!alone.contains("18446744073709551615"), "{alone}");
    let output = chimera_log(&["verify", dir.path().to_str().unwrap(), "--store", db.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(stdout_of(&output).contains("28 compared with the files"), "{}", text(&output));
    // Each seq next to a bad row: the largest and smallest the column can hold.
    sql(
        &db,
        "UPDATE chimera_audit SET seq = -9223372036854775808 WHERE seq = -1; \
              UPDATE chimera_audit SET seq = 9223372036854775807 WHERE seq = 30",
    );
    let extremes = verify_store(&db, &[], 1);
    assert!(extremes.contains("seq -9223372036854775808: records are numbered from 1"), "{extremes}");
    assert!(
        extremes.contains("seq 9223372036854775807 follows seq 29 in the store: seq 30..=9223372036854775806 missing"),
        "{extremes}"
    );
}

/// `--limit 0` asks for no line: on the files as on the store, nothing is printed and, as
/// nothing matched, the exit is 1; `--limit 1` prints one.
#[test]
fn query_with_limit_0_prints_nothing_on_the_files_as_on_the_store() {
    let (dir, db, _) = trail_with_store();
    let path = dir.path().to_str().unwrap();
    for (source, limit, lines, code) in
        [("--file", "0", 0, 1), ("--store", "0", 0, 1), ("--file", "1", 1, 0), ("--store", "1", 1, 0)]
    {
        let target = if source == "--file" { "audit" } else { db.to_str().unwrap() };
        let mut args = vec!["query"];
        if source == "--file" {
            args.push(path);
        }
        args.extend([source, target, "--limit", limit]);
        let output = chimera_log(&args);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {}", text(&output));
        assert_eq!(stdout_of(&output).lines().count(), lines, "{args:?}: {}", text(&output));
    }
}

#[test]
fn verify_store_with_the_directory_catches_a_rewritten_unkeyed_chain_that_the_store_alone_cannot() {
    let (dir, db, stream) = trail_with_store();
    // Edit seq 7 and recompute every chain from there, as whoever can write an unkeyed store can.
    let connection = rusqlite::Connection::open(&db).unwrap();
    let rows: Vec<(i64, String)> = connection
        .prepare("SELECT seq, record FROM chimera_audit ORDER BY seq")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = ChainKey::unkeyed();
    let mut chain = [0u8; 32];
    for (seq, record) in rows {
        let sealed = parse_sealed(record.as_bytes()).unwrap();
        if seq < 7 {
            chain = sealed.chain;
            continue;
        }
        let mut body = String::from_utf8(sealed.body.to_vec()).unwrap();
        if seq == 7 {
            body = body.replace("\"protocol\":\"", "\"protocol\":\"x");
        }
        chain = key.link(&chain, body.as_bytes());
        let forged = format!("{body},\"chain\":\"{}\"}}", hex(&chain));
        connection
            .execute(
                "UPDATE chimera_audit SET record = ?1, chain = ?2 WHERE seq = ?3",
                rusqlite::params![forged, hex(&chain), seq],
            )
            .unwrap();
    }
    drop(connection);
    assert_eq!(verify_store(&db, &[], 0), format!("intact: stream {stream}: 30 audit record(s), seq 1..=30\n"));
    let report = verify_store(&db, &[dir.path().to_str().unwrap()], 1);
    let disagree = |seq: u64| {
        format!("stream {stream}: seq {seq}: the store and the file disagree: the record in the database is not the one in executions.log")
    };
    let mut expected = format!("BROKEN: first broken record: {}\n", disagree(7));
    for seq in 8..=30 {
        expected.push_str(&format!("also: {}\n", disagree(seq)));
    }
    expected.push_str(&format!("read: stream {stream}: 30 audit record(s), seq 1..=30, 30 compared with the files\n"));
    assert_eq!(report, expected);
}

#[test]
fn verify_store_with_the_directory_names_a_record_edited_in_the_file() {
    let (dir, db, stream) = trail_with_store();
    // The second file's first record (line 0 is its anchor).
    let file = &audit_files(dir.path())[1];
    let mut seq = 0;
    edit_lines(file, |lines| {
        seq = parse_sealed(lines[1].as_bytes()).unwrap().seq;
        lines[1] = lines[1].replace("\"protocol\":\"", "\"protocol\":\"x");
    });
    assert_eq!(
        verify_store(&db, &[dir.path().to_str().unwrap()], 1),
        format!(
            "BROKEN: first broken record: stream {stream}: seq {seq}: the store and the file disagree: the record \
             in the database is not the one in executions.log\nread: stream {stream}: 30 audit record(s), seq \
             1..=30, 30 compared with the files\n"
        )
    );
}

#[test]
fn verify_store_of_a_keyed_chain_needs_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let guard =
        config(dir.path()).audit_key(b"store-key".to_vec()).audit_store(AuditStore::sqlite(&db)).build().unwrap();
    write_trail(&guard);
    assert!(guard.flush());
    drop(guard);
    let keyed = Command::new(env!("CARGO_BIN_EXE_chimera-log"))
        .args(["verify", "--store", db.to_str().unwrap(), "--key-env", "CHIMERA_TEST_STORE_KEY"])
        .env("CHIMERA_TEST_STORE_KEY", "store-key")
        .output()
        .unwrap();
    assert_eq!(keyed.status.code(), Some(0), "{}", text(&keyed));
    assert!(stdout_of(&keyed).ends_with(": 30 audit record(s), seq 1..=30\n"), "{}", text(&keyed));
    let unkeyed = verify_store(&db, &[], 1);
    assert!(unkeyed.contains(": seq 1: chain of record 1 does not match (edited, or another key)"), "{unkeyed}");
}

/// The columns a query selects rows by are taken from the record; one edited hides the record
/// from a query by its value (or shows it for another), so each is checked against the record as
/// the archiver derives it, and a mismatch names the seq and the column.
#[test]
fn verify_store_names_the_seq_and_column_of_every_derived_column_edited() {
    let (_dir, db, stream) = trail_with_store();
    let edits = [
        (3, "timestamp", "'2000-01-01T00:00:00.000000Z'"),
        (5, "level", "'DEBUG'"),
        (7, "module", "'elsewhere'"),
        (9, "event", "'renamed'"),
        (11, "key_name", "'tx_hash'"),
        (13, "key_value", "'999'"),
        (15, "block_number", "'999'"),
        (17, "key_value", "NULL"),
        (19, "block_number", "NULL"),
        // Written as an integer: SQLite keeps the text '12' in a TEXT column; the record's is '17'.
        (18, "block_number", "12"),
        // A blob where the archiver writes text: a finding, not a scan that fails.
        (21, "event", "zeroblob(10)"),
    ];
    let statements: String = edits
        .iter()
        .map(|(seq, column, value)| format!("UPDATE chimera_audit SET {column} = {value} WHERE seq = {seq};"))
        .collect();
    sql(&db, &statements);
    let report = verify_store(&db, &[], 1);
    let mut findings: Vec<(u64, String)> = edits.iter().map(|(seq, column, _)| (*seq, (*column).to_owned())).collect();
    findings.sort();
    let expected: Vec<String> = findings
        .iter()
        .enumerate()
        .map(|(i, (seq, column))| {
            format!(
                "{}stream {stream}: seq {seq}: the {column} column does not match the record: edited (queries by it \
                 find the wrong rows)",
                if i == 0 { "BROKEN: first broken record: " } else { "also: " }
            )
        })
        .chain([format!("read: stream {stream}: 30 audit record(s), seq 1..=30")])
        .collect();
    assert_eq!(report.lines().collect::<Vec<_>>(), expected);
}

/// A row whose record is longer than `--max-line` is not fetched from the database (the cap is
/// part of the query): `verify --store` reports it as unverifiable, never intact, and `query
/// --store` names it on stderr with the placeholder, as the file readers treat such a line.
#[test]
fn a_store_row_over_max_line_is_reported_unverifiable_and_shown_as_the_placeholder() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let guard = config(dir.path()).audit_store(AuditStore::sqlite(&db)).build().unwrap();
    let logger = guard.logger("executor");
    let long = "p".repeat(8 * 1024);
    for block_number in 0..6u64 {
        emit!(logger, Executed { block_number, protocol: if block_number == 3 { &long } else { "aave" } });
    }
    assert!(guard.flush(), "every record stored");
    drop(guard);
    let stream = StoreReader::open(db.to_str().unwrap()).unwrap().streams().unwrap().remove(0);
    let length: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT length(CAST(record AS BLOB)) FROM chimera_audit WHERE seq = 4", [], |row| row.get(0))
        .unwrap();
    assert!(length > 8 * 1024, "{length}");
    assert_eq!(verify_store(&db, &[], 0), format!("intact: stream {stream}: 6 audit record(s), seq 1..=6\n"));
    assert_eq!(
        verify_store(&db, &["--max-line", "4KiB"], 1),
        format!(
            "BROKEN: first broken record: stream {stream}: seq 4: record of {length} bytes exceeds --max-line: \
             cannot be verified\nread: stream {stream}: 6 audit record(s), seq 1..=6\n"
        )
    );
    let with_files = verify_store(&db, &[dir.path().to_str().unwrap(), "--max-line", "4KiB"], 1);
    assert!(with_files.ends_with(", 5 compared with the files\n"), "{with_files}");
    let queried = chimera_log(&["query", "--store", db.to_str().unwrap(), "--max-line", "4KiB"]);
    assert_eq!(queried.status.code(), Some(0), "{}", text(&queried));
    let seqs: Vec<u64> = stdout_of(&queried)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 5, 6]);
    assert_eq!(
        String::from_utf8_lossy(&queried.stderr),
        format!(
            "chimera-log: stream {stream}: seq 4: [chimera-log: line of {length} bytes skipped, longer than the \
             4096-byte limit (--max-line)]\n"
        )
    );
}

/// On PostgreSQL (the CLI built with `postgres`, against `CHIMERA_TEST_POSTGRES_URL`): every
/// derived column, `record_json` included, is checked against the record, and a record over
/// `--max-line` is not fetched.
#[cfg(feature = "postgres")]
#[test]
fn verify_store_on_postgres_names_edited_columns_and_record_json_and_skips_records_over_max_line() {
    let server = std::env::var("CHIMERA_TEST_POSTGRES_URL")
        .expect("CHIMERA_TEST_POSTGRES_URL is not set: `source scripts/start-postgres.sh` first");
    let psql = |url: &str, statements: &str| {
        let output = Command::new("psql").args([url, "-v", "ON_ERROR_STOP=1", "-qc", statements]).output().unwrap();
        assert!(output.status.success(), "{}", text(&output));
    };
    let schema = "chimera_cli_columns";
    psql(&server, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"));
    let separator = if server.contains('?') { '&' } else { '?' };
    let url = format!("{server}{separator}options=-csearch_path%3D{schema}");
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).audit_store(AuditStore::postgres(&url)).build().unwrap();
    let logger = guard.logger("executor");
    let long = "p".repeat(8 * 1024);
    for block_number in 0..30u64 {
        emit!(logger, Executed { block_number, protocol: if block_number == 27 { &long } else { "aave" } });
    }
    assert!(guard.flush(), "every record stored");
    drop(guard);
    let stream = StoreReader::open(&url).unwrap().streams().unwrap().remove(0);
    assert_eq!(verify_store_at(&url, &[], 0), format!("intact: stream {stream}: 30 audit record(s), seq 1..=30\n"));
    let edits = [
        (3, "timestamp = '2000-01-01T00:00:00.000000Z'", "timestamp"),
        (5, "level = 'DEBUG'", "level"),
        (7, "module = 'elsewhere'", "module"),
        (9, "event = 'renamed'", "event"),
        (11, "key_name = 'tx_hash'", "key_name"),
        (13, "key_value = '999'", "key_value"),
        (15, "block_number = NULL", "block_number"),
        (17, r#"record_json = jsonb_set(record_json, '{context,block_number}', '999')"#, "record_json"),
        (19, "record_json = NULL", "record_json"),
    ];
    let statements: String =
        edits.iter().map(|(seq, set, _)| format!("UPDATE chimera_audit SET {set} WHERE seq = {seq};")).collect();
    psql(&url, &statements);
    let report = verify_store_at(&url, &["--max-line", "4KiB"], 1);
    let mut expected: Vec<String> = edits
        .iter()
        .map(|(seq, _, column)| {
            format!(
                "stream {stream}: seq {seq}: the {column} column does not match the record: edited (queries by it \
                 find the wrong rows)"
            )
        })
        .collect();
    let long_record = report.lines().find(|line| line.contains("seq 28: record of ")).unwrap_or_default().to_owned();
    assert!(long_record.ends_with(" bytes exceeds --max-line: cannot be verified"), "{report}");
    expected.push(long_record.trim_start_matches("also: ").to_owned());
    let found: Vec<&str> = report
        .lines()
        .filter(|line| !line.starts_with("read: "))
        .map(|line| line.trim_start_matches("BROKEN: first broken record: ").trim_start_matches("also: "))
        .collect();
    assert_eq!(found, expected, "{report}");
    let queried = chimera_log(&["query", "--store", &url, "--max-line", "4KiB", "--event", "executed"]);
    assert_eq!(queried.status.code(), Some(0), "{}", text(&queried));
    assert!(
        String::from_utf8_lossy(&queried.stderr).contains(": seq 28: [chimera-log: line of "),
        "{}",
        text(&queried)
    );
}

/// `verify --store URL` with `args`; asserts the exit code, returns stdout.
#[cfg(feature = "postgres")]
fn verify_store_at(url: &str, args: &[&str], code: i32) -> String {
    let mut all = vec!["verify", "--store", url];
    all.extend_from_slice(args);
    let output = chimera_log(&all);
    assert_eq!(output.status.code(), Some(code), "{}", text(&output));
    stdout_of(&output)
}

#[test]
fn query_store_returns_what_query_on_the_files_returns_for_each_filter() {
    let (dir, db, stream) = trail_with_store();
    let d = dir.path().to_str().unwrap();
    let db = db.to_str().unwrap();
    let run = |args: &[&str]| -> (Option<i32>, String) {
        let output = chimera_log(args);
        (output.status.code(), stdout_of(&output))
    };
    // Every record, with the timestamps the time filters below are cut at.
    let all: Vec<serde_json::Value> =
        run(&["query", d, "--file", "audit"]).1.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(all.len(), 30);
    let time = |seq: usize| all[seq - 1]["timestamp"].as_str().unwrap().to_owned();
    let at_or_after = all.iter().filter(|r| r["timestamp"].as_str().unwrap() >= time(10).as_str()).count();
    let at_or_before = all.iter().filter(|r| r["timestamp"].as_str().unwrap() <= time(5).as_str()).count();
    let (since, until) = (time(10), time(5));
    let cases: Vec<(Vec<&str>, usize)> = vec![
        (vec!["--event", "executed"], 30),
        (vec!["--event", "audit_anchor"], 0),
        (vec!["--where", "block_number=7"], 1),
        // Not the column's spelling: answered by the filter, not the index.
        (vec!["--where", "block_number=07"], 1),
        (vec!["--event", "executed", "--where", "block_number=29", "--where", "protocol=aave"], 1),
        (vec!["--where", "block_number=29", "--where", "protocol=moonwell"], 0),
        (vec!["--since", &since], at_or_after),
        (vec!["--until", &until], at_or_before),
        (vec!["--since", &until, "--until", &since, "--where", "protocol=aave"], usize::MAX),
        (vec!["--where", "block_number>=20", "--limit", "4"], 4),
    ];
    for (filter, count) in cases {
        let mut on_files = vec!["query", d, "--file", "audit"];
        on_files.extend_from_slice(&filter);
        let mut on_store = vec!["query", "--store", db];
        on_store.extend_from_slice(&filter);
        let (files, store) = (run(&on_files), run(&on_store));
        assert_eq!(store, files, "{filter:?}");
        if count != usize::MAX {
            assert_eq!(store.1.lines().count(), count, "{filter:?}");
        }
        assert_eq!(store.0, Some(if store.1.is_empty() { 1 } else { 0 }), "{filter:?}");
    }
    // The records are the files' lines, byte for byte; other outputs and --stream work too.
    let block_7 = run(&["query", "--store", db, "--where", "block_number=7"]).1;
    assert!(block_7.contains("\"block_number\":7,") && block_7.contains("\"seq\":8,"), "{block_7}");
    for output in ["table", "pretty"] {
        let args = ["--event", "executed", "--output", output, "--color", "never", "--since", &since];
        let files = run(&[&["query", d, "--file", "audit"][..], &args[..]].concat());
        let store = run(&[&["query", "--store", db, "--stream", &stream][..], &args[..]].concat());
        assert_eq!(store, files, "{output}");
        assert_eq!(store.1.lines().count(), at_or_after, "{output}");
    }
}

#[test]
fn a_store_that_cannot_be_read_is_exit_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = |args: &[&str]| {
        let output = chimera_log(args);
        assert_eq!((output.status.code(), output.stdout.len()), (Some(2), 0), "{args:?}: {}", text(&output));
        String::from_utf8(output.stderr).unwrap()
    };
    assert_eq!(
        stderr(&["verify", "--store", "/nonexistent/audit.db"]),
        "chimera-log: audit store: /nonexistent/audit.db: no such SQLite file\n"
    );
    assert_eq!(
        stderr(&["query", "--store", "sqlite:/nonexistent/audit.db", "--event", "executed"]),
        "chimera-log: audit store: /nonexistent/audit.db: no such SQLite file\n"
    );
    let garbage = dir.path().join("garbage.db");
    fs::write(&garbage, vec![b'x'; 4096]).unwrap();
    let message = stderr(&["verify", "--store", garbage.to_str().unwrap()]);
    assert!(
        message.starts_with("chimera-log: audit store: SQLite: ") && message.contains("not a database"),
        "{message}"
    );
    // Without the feature, PostgreSQL is refused; with it, nothing listens on port 1.
    let message = stderr(&["query", "--store", "postgres://bot:hunter2@127.0.0.1:1/audit"]);
    assert!(message.starts_with("chimera-log: audit store: PostgreSQL"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    // A store without records, a stream it does not hold, and the shapes clap refuses.
    let (_trail, db, stream) = trail_with_store();
    let empty = dir.path().join("empty.db");
    fs::copy(&db, &empty).unwrap();
    sql(&empty, "DELETE FROM chimera_audit");
    assert_eq!(
        stderr(&["verify", "--store", empty.to_str().unwrap()]),
        "chimera-log: audit store: it holds no audit records\n"
    );
    assert_eq!(
        stderr(&["verify", "--store", db.to_str().unwrap(), "--stream", "elsewhere/logs"]),
        format!("chimera-log: --stream elsewhere/logs: not in the audit store (its streams: {stream})\n")
    );
    assert!(stderr(&["verify"]).contains("<DIR>"));
    assert!(
        stderr(&["query", dir.path().to_str().unwrap(), "--store", db.to_str().unwrap()]).contains("cannot be used")
    );
    assert!(stderr(&["verify", dir.path().to_str().unwrap(), "--stream", "x"]).contains("--store"));
}

/// A rotation whose new file's anchor and record a full disk held back, then a shutdown that
/// dropped them and a restart: the checkpoint recorded at that rotation names the last record
/// in the file, not the dropped one, so the trail verifies.
#[test]
fn verify_accepts_a_trail_whose_shutdown_dropped_a_record_held_back_after_a_rotation() {
    use chimera_log_runtime::testing::FaultInjector;
    let dir = tempfile::tempdir().unwrap();
    let faults = std::sync::Arc::new(FaultInjector::new());
    let guard = config(dir.path()).fault_injector(std::sync::Arc::clone(&faults)).build().unwrap();
    let logger = guard.logger("executor");
    // Records of ~500 bytes in files of at most 1,500: the third one rotates first.
    let protocol = "p".repeat(300);
    for block_number in 0..2 {
        emit!(logger, Executed { block_number, protocol: &protocol });
    }
    faults.fail_writes_to(chimera_log_runtime::AUDIT_FILE, std::io::ErrorKind::StorageFull, 0);
    emit!(logger, Executed { block_number: 2, protocol: &protocol });
    let rotations = logger.stats().unwrap().sink(chimera_log_runtime::AUDIT_FILE).unwrap().rotations;
    assert_eq!(rotations, 1, "the held-back record came after a rotation");
    drop(guard);
    drop(logger);
    faults.clear();
    let again = config(dir.path()).build().unwrap();
    emit!(again.logger("executor"), Executed { block_number: 100, protocol: "aave" });
    drop(again);
    let output = verify(dir.path());
    assert!(output.status.success(), "{}", text(&output));
}

/// Issue 28: audit records written inside `tracing` spans carry the span stack in the sealed
/// line; the chain covers it, and `verify` accepts the trail (and catches an edit of the stack).
#[test]
fn a_trail_written_inside_spans_verifies_and_an_edited_span_field_is_caught() {
    use tracing_subscriber::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).build().unwrap();
    let subscriber = tracing_subscriber::registry().with(chimera_log_runtime::ChimeraLayer::new());
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("liquidation", borrower = "0x5a6b");
        let _entered = span.enter();
        write_trail(&guard);
    });
    drop(guard);
    let current = dir.path().join("executions.log");
    let trail = fs::read_to_string(&current).unwrap();
    assert!(trail.contains(r#""span":[{"name":"liquidation","borrower":"0x5a6b"}]"#), "{trail}");
    let output = verify(dir.path());
    assert!(output.status.success(), "{}", text(&output));
    edit_lines(&current, |lines| {
        let at = lines.iter().position(|line| line.contains("\"borrower\":\"0x5a6b\"")).unwrap();
        lines[at] = lines[at].replace("0x5a6b", "0x0000");
    });
    assert!(!verify(dir.path()).status.success(), "an edited span field breaks the chain");
}

/// Writes `chimera.log`'s family in `dir`, one line per `(module, event, context)`, a second
/// apart from 2024-01-15T10:00:00Z: the first two lines in a gzip backup, the third in a plain
/// backup, the rest in the current file.
fn write_family(dir: &Path, lines: &[(&str, &str, &str)]) {
    use std::io::Write;
    let line = |i: usize| {
        let (module, event, context) = lines[i];
        format!(
            "{{\"timestamp\":\"2024-01-15T10:00:{i:02}Z\",\"level\":\"{}\",\"module\":\"{module}\",\"event\":\"{event}\",\"context\":{context}}}\n",
            if i.is_multiple_of(2) { "INFO" } else { "WARNING" }
        )
    };
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all((0..2.min(lines.len())).map(line).collect::<String>().as_bytes()).unwrap();
    fs::write(dir.join("chimera.log.20240101T000000.000001Z.gz"), encoder.finish().unwrap()).unwrap();
    fs::write(dir.join("chimera.log.20240101T000000.000002Z"), (2..3.min(lines.len())).map(line).collect::<String>())
        .unwrap();
    fs::write(dir.join("chimera.log"), (3..lines.len()).map(line).collect::<String>()).unwrap();
}

const FAMILY: [(&str, &str, &str); 5] = [
    ("hyper", "sent", r#"{"n":1,"protocol":"aave","bps":150,"span":[{"block":7},{"block":9}]}"#),
    ("hyper::client", "sent", r#"{"n":2,"protocol":"moonwell","bps":50,"span":[{"block":8}]}"#),
    ("hyperx", "recv", r#"{"n":3,"protocol":"aave","bps":20}"#),
    ("db", "recv", r#"{"n":4,"protocol":"compound","bps":300,"ok":true}"#),
    ("db", "sent", r#"{"n":5,"tags":["urgent","x"]}"#),
];

#[test]
fn filter_combines_comparisons_with_and_or_not_and_parentheses_on_query_tail_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    write_family(dir.path(), &FAMILY);
    let d = dir.path().to_str().unwrap();
    let ns = |filter: &str| query_ns(&["query", d, "--filter", filter]);
    assert_eq!(ns(r#"protocol = "aave" and bps > 100"#), [1]);
    assert_eq!(ns(r#"protocol = "aave" or bps >= 300"#), [1, 3, 4]);
    assert_eq!(ns(r#"not (protocol = "aave" or protocol = "moonwell")"#), [4, 5], "a missing field is null");
    assert_eq!(ns(r#"(bps < 100 and event = 'recv') or ok = true"#), [3, 4]);
    assert_eq!(ns(r#"event = "sent" and not module ~ "^hyper""#), [5]);
    assert_eq!(ns("span.0.block = 8 or span.1.block = 9"), [1, 2], "array elements by index");
    assert_eq!(ns(r#"tags.0 = "urgent" and context.tags.1 != "y""#), [5]);
    assert_eq!(ns(r#"level = "WARNING" and timestamp >= "2024-01-15T10:00:02Z""#), [4]);
    // Repeated, and beside the other filters: all must hold.
    assert_eq!(query_ns(&["query", d, "--filter", r#"event = "sent""#, "--filter", "bps > 100"]), [1]);
    assert_eq!(query_ns(&["query", d, "--event", "recv", "--filter", "bps > 100 or n = 3", "--limit", "1"]), [3]);
    // tail: the last lines that match, across the gzip and the plain backup.
    assert_eq!(query_ns(&["tail", d, "-n", "2", "--filter", r#"event = "sent""#]), [2, 5]);
    assert_eq!(query_ns(&["tail", d, "-n", "9", "--filter", r#"protocol = "aave""#]), [1, 3]);
    assert_eq!(query_ns(&["tail", d, "-n", "9", "--filter", "n > 99"]), Vec::<u64>::new());
    let stats = chimera_log(&["stats", d, "--filter", r#"event = "sent" and bps < 100"#]);
    assert!(stdout_of(&stats).starts_with("chimera.log: 5 lines, 1 matching, 0 unreadable;"), "{}", text(&stats));
    assert!(
        stdout_of(&stats).contains("by module:\n  hyper::client                    1\nby event:"),
        "{}",
        text(&stats)
    );
}

#[test]
fn filter_and_where_compare_integers_written_as_decimal_strings_exactly_at_u256_size() {
    const MAX: &str = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
    const BELOW: &str = "115792089237316195423570985008687907853269984665640564039457584007913129639934";
    let dir = tempfile::tempdir().unwrap();
    let contexts = [
        format!(r#"{{"n":1,"amount":"{MAX}"}}"#),
        format!(r#"{{"n":2,"amount":"{BELOW}"}}"#),
        r#"{"n":3,"amount":"5"}"#.to_owned(),
        r#"{"n":4,"amount":340282366920938463463374607431768211455}"#.to_owned(),
        r#"{"n":5,"amount":"five"}"#.to_owned(),
    ];
    write_family(dir.path(), &contexts.iter().map(|c| ("m", "e", c.as_str())).collect::<Vec<_>>());
    let d = dir.path().to_str().unwrap();
    let filter = |expr: &str| query_ns(&["query", d, "--filter", expr]);
    assert_eq!(filter(&format!("amount > {BELOW}")), [1]);
    assert_eq!(filter(&format!("amount = {MAX}")), [1]);
    assert_eq!(filter(&format!("amount < {BELOW} and amount >= 5")), [3, 4]);
    assert_eq!(filter("amount < 10"), [3], "\"5\" is 5, not text after \"10\"");
    assert_eq!(filter(r#"amount = "5" and amount != "05""#), [3], "two strings compare as text");
    assert_eq!(filter(r#"amount = "340282366920938463463374607431768211455""#), [4], "a number equals a string of it");
    assert_eq!(filter(r#"amount = "five" or amount ~ "^11""#), [1, 2, 5]);
    // --where too: a string of digits is a number against a number.
    let condition = |condition: &str| query_ns(&["query", d, "--where", condition]);
    // (`five` is no number: --where compares it as text, after "115…", as it always did.)
    assert_eq!(condition(&format!("amount>{BELOW}")), [1, 5]);
    assert_eq!(condition("amount<10"), [3]);
    assert_eq!(condition("amount>=340282366920938463463374607431768211455"), [1, 2, 4, 5]);
    assert_eq!(condition("amount=five"), [5]);
}

#[test]
fn where_and_stats_by_reach_array_elements_by_index() {
    let dir = tempfile::tempdir().unwrap();
    write_family(dir.path(), &FAMILY);
    let d = dir.path().to_str().unwrap();
    assert_eq!(query_ns(&["query", d, "--where", "span.0.block=8"]), [2]);
    assert_eq!(query_ns(&["query", d, "--where", "context.span.1.block>=9", "--where", "tags.1!=x"]), [1]);
    assert_eq!(query_ns(&["query", d, "--where", "tags.0~^urg"]), [5]);
    let stats = chimera_log(&["stats", d, "--by", "span.0.block", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&stdout_of(&stats)).unwrap();
    assert_eq!(report["by"]["span.0.block"], json!({"counts": {"7": 1, "8": 1}, "missing": 3}));
}

#[test]
fn a_filter_that_does_not_parse_is_exit_2_naming_the_column_under_a_caret() {
    let dir = tempfile::tempdir().unwrap();
    write_family(dir.path(), &FAMILY);
    let d = dir.path().to_str().unwrap();
    for subcommand in ["query", "tail", "stats"] {
        let output = chimera_log(&[subcommand, d, "--filter", "protocol = 1 and (n ="]);
        assert_eq!(output.status.code(), Some(2), "{subcommand}: {}", text(&output));
        let message = text(&output);
        assert!(
            message.contains("--filter: expected a value (a quoted string, a number, true, false or null) at column 22\n  protocol = 1 and (n =\n                       ^"),
            "{subcommand}: {message}"
        );
        assert!(output.stdout.is_empty());
    }
    for (expr, wanted) in [
        ("(a = 1", "expected `)` to close the `(` of column 1 at column 7"),
        ("a = \"open", "unterminated string at column 5"),
        ("a => 1", "unknown operator `=>` (use =, !=, <, <=, >, >=, ~, !~) at column 3"),
        ("", "the expression is empty at column 1"),
    ] {
        let output = chimera_log(&["query", d, "--filter", expr]);
        assert_eq!(output.status.code(), Some(2), "{expr}: {}", text(&output));
        assert!(text(&output).contains(wanted), "{expr}: {}", text(&output));
    }
    let deep = format!("{}a = 1{}", "(".repeat(10_000), ")".repeat(10_000));
    let output = chimera_log(&["query", d, "--filter", &deep]);
    assert_eq!(output.status.code(), Some(2), "an error, not a stack overflow");
    assert!(text(&output).contains("nested deeper than 100 levels at column 101"));
}

#[test]
fn stats_json_is_one_document_in_a_fixed_key_order_counting_by_any_field_under_filters() {
    let dir = tempfile::tempdir().unwrap();
    write_family(dir.path(), &FAMILY);
    let d = dir.path().to_str().unwrap();
    let bytes: u64 = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    let output = chimera_log(&["stats", d, "--json", "--by", "event", "--by", "context.protocol", "--by", "event"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        stdout_of(&output),
        format!(
            concat!(
                r#"{{"file":"chimera.log","lines":5,"matched":5,"unreadable":0,"backups":2,"bytes":{},"#,
                r#""from":"2024-01-15T10:00:00Z","to":"2024-01-15T10:00:04Z","by":{{"#,
                r#""event":{{"counts":{{"recv":2,"sent":3}},"missing":0}},"#,
                r#""context.protocol":{{"counts":{{"aave":2,"compound":1,"moonwell":1}},"missing":1}}}}}}"#,
                "\n"
            ),
            bytes
        )
    );
    // The filters of query, and level, module and event when no --by is given.
    let output = chimera_log(&["stats", d, "--json", "--module", "hyper", "--filter", "bps < 100"]);
    let report: serde_json::Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    assert_eq!((report["lines"].as_u64(), report["matched"].as_u64()), (Some(5), Some(1)));
    assert_eq!(
        (report["from"].as_str(), report["to"].as_str()),
        (Some("2024-01-15T10:00:01Z"), Some("2024-01-15T10:00:01Z"))
    );
    assert_eq!(
        report["by"],
        json!({
            "level": {"counts": {"WARNING": 1}, "missing": 0},
            "module": {"counts": {"hyper::client": 1}, "missing": 0},
            "event": {"counts": {"sent": 1}, "missing": 0},
        })
    );
    let keys: Vec<&String> = report["by"].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 3);
    // Nothing matched: the range is null, the counts empty.
    let output = chimera_log(&["stats", d, "--json", "--where", "n>99", "--by", "event"]);
    let report: serde_json::Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    assert_eq!(report["from"], serde_json::Value::Null);
    assert_eq!(report["by"], json!({"event": {"counts": {}, "missing": 0}}));
}

#[test]
fn module_matches_the_module_and_its_children_not_a_longer_name() {
    let dir = tempfile::tempdir().unwrap();
    write_family(dir.path(), &FAMILY);
    let d = dir.path().to_str().unwrap();
    assert_eq!(query_ns(&["query", d, "--module", "hyper"]), [1, 2], "hyper and hyper::client, not hyperx");
    assert_eq!(query_ns(&["query", d, "--module", "hyper::client"]), [2]);
    assert_eq!(query_ns(&["query", d, "--module", "hyperx"]), [3]);
    assert_eq!(query_ns(&["query", d, "--module", "hyp"]), Vec::<u64>::new());
    let stats = chimera_log(&["stats", d, "--module", "hyper", "--by", "module"]);
    assert!(stdout_of(&stats).contains("2 matching"), "{}", text(&stats));
    assert!(stdout_of(&stats)
        .ends_with("by module:\n  hyper                            1\n  hyper::client                    1\n"));
}

/// The pre-check that passes over lines lacking a text the filter requires looks only in lines
/// without backslashes: a line that writes the text with escapes still matches.
#[test]
fn a_match_written_with_escapes_is_found_by_every_filter_that_requires_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        r#"{"timestamp":"2024-01-15T10:00:00Z","level":"INFO","module":"hyp\u0065r::client","event":"se\u006et","context":{"n":1,"protocol":"a\u0061ve"}}"#,
        r#"{"timestamp":"2024-01-15T10:00:01Z","level":"INFO","module":"db","event":"recv","context":{"n":2,"protocol":"compound"}}"#,
    ];
    fs::write(dir.path().join("chimera.log"), lines.join("\n") + "\n").unwrap();
    let d = dir.path().to_str().unwrap();
    assert_eq!(query_ns(&["query", d, "--filter", r#"event = "sent" and protocol = "aave""#]), [1]);
    assert_eq!(query_ns(&["query", d, "--event", "sent"]), [1]);
    assert_eq!(query_ns(&["query", d, "--module", "hyper"]), [1]);
    assert_eq!(query_ns(&["query", d, "--where", "protocol=aave"]), [1]);
}

#[test]
fn tail_follow_with_a_filter_prints_only_the_lines_that_match_as_they_are_written() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let current = dir.path().join("chimera.log");
    let line = |n: u64, event: &str| format!("{{\"event\":\"{event}\",\"context\":{{\"n\":{n}}}}}\n");
    fs::write(&current, line(1, "keep") + &line(2, "drop")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chimera-log"))
        .args(["tail", dir.path().to_str().unwrap(), "-n", "1", "-f", "--filter", r#"event = "keep""#])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let received = lines_as_they_come(child.stdout.take().unwrap());
    let next_n = || {
        let line = received.recv_timeout(Duration::from_secs(30)).expect("tail -f printed nothing for 30 s");
        serde_json::from_str::<serde_json::Value>(&line).unwrap()["context"]["n"].as_u64().unwrap()
    };
    // The last matching line, though a line that does not match follows it.
    assert_eq!(next_n(), 1);
    let mut file = fs::OpenOptions::new().append(true).open(&current).unwrap();
    file.write_all((line(3, "drop") + &line(4, "keep") + "not json\n" + &line(5, "keep")).as_bytes()).unwrap();
    let seen = [next_n(), next_n()];
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(seen, [4, 5]);
}

/// A chimera line at second `second` of 2024-01-15T10:00, with `event` and `host` in its context.
fn line_at(second: u32, event: &str, host: &str) -> String {
    format!(
        r#"{{"timestamp":"2024-01-15T10:00:{second:02}.000000Z","level":"INFO","module":"m","event":"{event}","context":{{"host":"{host}"}}}}"#
    )
}

fn gzipped(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

/// `chimera-log` with `args`, `input` on its standard input.
fn chimera_log_with_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_chimera-log"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // Written from a thread: a child that prints before it has read everything must not block us.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    output
}

/// The `context.host` and `source` of each JSON line of `output`, in order.
fn hosts_and_sources(output: &Output) -> Vec<(String, String)> {
    stdout_of(output)
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
            (text(&value["context"]["host"]), text(&value["source"]))
        })
        .collect()
}

/// Two hosts' directories, each with a backup (plain on one, gzip on the other) and a current
/// file, their times interleaved: `query a/ b/` gives every line once in time order, each marked
/// with the argument it came from when asked (`--source`); a line that is not JSON stays in its
/// place after the line before it in its own directory, and is reported, not shown.
#[test]
fn query_merges_several_directories_by_time_and_marks_each_line_with_its_source() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("host-a"), root.path().join("host-b"));
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    let backup = "chimera.log.20240115T100010.000000Z";
    let lines =
        |seconds: &[u32], host: &str| seconds.iter().map(|s| line_at(*s, "tick", host) + "\n").collect::<String>();
    fs::write(a.join(backup), lines(&[1, 4, 5], "a")).unwrap();
    fs::write(a.join("chimera.log"), lines(&[7], "a") + "not json\n" + &lines(&[12], "a")).unwrap();
    fs::write(b.join(format!("{backup}.gz")), gzipped(&lines(&[2, 3, 6], "b"))).unwrap();
    fs::write(b.join("chimera.log"), lines(&[8, 9, 11], "b")).unwrap();
    let (a_arg, b_arg) = (format!("{}/", a.display()), b.display().to_string());
    let output = chimera_log(&["query", &a_arg, &b_arg, "--source"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let merged = hosts_and_sources(&output);
    let hosts: String = merged.iter().map(|(host, _)| host.as_str()).collect();
    assert_eq!(hosts, "abbaababbba", "{}", stdout_of(&output));
    for (host, source) in &merged {
        let expected = if host == "a" { a.display().to_string() } else { b_arg.clone() };
        assert_eq!(source, &expected, "the label is the argument without its trailing slash");
    }
    assert!(String::from_utf8_lossy(&output.stderr).contains("chimera.log:2: not a JSON line"), "{}", text(&output));
    // Without --source the lines are as written, byte for byte.
    let plain = chimera_log(&["query", &a_arg, &b_arg, "--event", "tick"]);
    assert!(stdout_of(&plain).lines().all(|line| !line.contains("\"source\"")), "{}", text(&plain));
    assert_eq!(stdout_of(&plain).lines().next(), Some(line_at(1, "tick", "a").as_str()));
    // A table has the source as its first column.
    let table = chimera_log(&["query", &a_arg, &b_arg, "--source", "--table", "--limit", "2"]);
    let rows: Vec<String> = stdout_of(&table).lines().map(str::to_owned).collect();
    assert_eq!(rows.len(), 2, "{}", text(&table));
    assert!(rows[1].starts_with(&format!("{b_arg}  2024-01-15T10:00:02.000000Z")), "{rows:?}");
    // Where a line's time goes back (the clock was set back), its input's order is kept: c's line
    // of second 0 follows its line of second 10, before a's of second 12.
    let c = root.path().join("host-c");
    fs::create_dir_all(&c).unwrap();
    fs::write(c.join("chimera.log"), lines(&[10, 0], "c")).unwrap();
    let output = chimera_log(&["query", &a_arg, c.to_str().unwrap()]);
    let hosts: String = hosts_and_sources(&output).iter().map(|(host, _)| host.as_str()).collect();
    assert_eq!(hosts, "aaaacca", "{}", stdout_of(&output));
}

/// `-` reads JSON lines from standard input, plain or gzipped (told by the magic bytes), alone or
/// merged with a directory; it can be named only once.
#[test]
fn query_reads_json_lines_from_stdin_plain_or_gzipped() {
    let input: String = [line_at(1, "tick", "in"), line_at(3, "tock", "in"), line_at(5, "tick", "in")]
        .iter()
        .map(|l| l.clone() + "\n")
        .collect();
    for bytes in [input.as_bytes().to_vec(), gzipped(&input)] {
        let output = chimera_log_with_stdin(&["query", "-", "--event", "tick"], &bytes);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
        assert_eq!(stdout_of(&output), format!("{}\n{}\n", line_at(1, "tick", "in"), line_at(5, "tick", "in")));
    }
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("chimera.log"), line_at(2, "tick", "dir") + "\n").unwrap();
    let d = dir.path().to_str().unwrap();
    let output = chimera_log_with_stdin(&["query", d, "-", "--source", "--event", "tick"], input.as_bytes());
    assert_eq!(
        hosts_and_sources(&output),
        [("in", "-"), ("dir", d), ("in", "-")].map(|(h, s)| (h.to_owned(), s.to_owned())),
        "{}",
        text(&output)
    );
    let twice = chimera_log_with_stdin(&["query", "-", "-"], b"");
    assert_eq!(twice.status.code(), Some(2), "{}", text(&twice));
    assert!(text(&twice).contains("can be given only once"), "{}", text(&twice));
}

/// A file path works where a directory does, for `query`, `tail` and `stats`: plain or gzip, told
/// by its first bytes and not its name (a mailed `.txt` that is gzip, a `.gz` that is plain).
#[test]
fn query_tail_and_stats_read_a_plain_or_gzip_file_path_told_by_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let content: String = (1..=5).map(|s| line_at(s, if s % 2 == 0 { "even" } else { "odd" }, "f") + "\n").collect();
    let gzip_named_txt = dir.path().join("mailed.txt");
    let plain_named_gz = dir.path().join("plain.log.gz");
    let plain = dir.path().join("chimera.log.copy");
    fs::write(&gzip_named_txt, gzipped(&content)).unwrap();
    fs::write(&plain_named_gz, &content).unwrap();
    fs::write(&plain, &content).unwrap();
    for file in [&gzip_named_txt, &plain_named_gz, &plain] {
        let f = file.to_str().unwrap();
        let output = chimera_log(&["query", f, "--event", "even"]);
        assert_eq!(output.status.code(), Some(0), "{f}: {}", text(&output));
        assert_eq!(stdout_of(&output), format!("{}\n{}\n", line_at(2, "even", "f"), line_at(4, "even", "f")), "{f}");
        let tail = chimera_log(&["tail", f, "-n", "2"]);
        assert_eq!(tail.status.code(), Some(0), "{f}: {}", text(&tail));
        assert_eq!(stdout_of(&tail), format!("{}\n{}\n", line_at(4, "even", "f"), line_at(5, "odd", "f")), "{f}");
        let stats = chimera_log(&["stats", f]);
        assert_eq!(stats.status.code(), Some(0), "{f}: {}", text(&stats));
        assert!(stdout_of(&stats).starts_with(&format!("{f}: 5 lines, 0 unreadable")), "{}", text(&stats));
        assert!(stdout_of(&stats).contains("  odd                              3"), "{}", text(&stats));
    }
    let follow = chimera_log(&["tail", plain.to_str().unwrap(), "-f"]);
    assert_eq!(follow.status.code(), Some(2), "{}", text(&follow));
    assert!(text(&follow).contains("follows a log directory"), "{}", text(&follow));
    let stats = chimera_log_with_stdin(&["stats", "-"], &gzipped(&content));
    assert!(stdout_of(&stats).starts_with("<stdin>: 5 lines, 0 unreadable\n"), "{}", text(&stats));
    let tail = chimera_log_with_stdin(&["tail", "-", "-n", "1"], content.as_bytes());
    assert_eq!(stdout_of(&tail), format!("{}\n", line_at(5, "odd", "f")), "{}", text(&tail));
}

/// Hostile files named on their own: a torn gzip stops with an error naming it and the line
/// reached (exit 2), binary garbage is unreadable lines (exit 1 when nothing matched), a missing
/// file is named; none panics.
#[test]
fn query_on_a_torn_gzip_garbage_or_missing_file_gives_a_clear_error_and_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let content: String = (0..20_000).map(|n| line_at(n % 60, "tick", &n.to_string()) + "\n").collect();
    let whole = gzipped(&content);
    let torn = dir.path().join("torn");
    fs::write(&torn, &whole[..whole.len() / 2]).unwrap();
    let output = chimera_log(&["query", torn.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("{}: after line ", torn.display())), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let garbage = dir.path().join("garbage");
    let bytes: Vec<u8> = (0..200_000u32).map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fs::write(&garbage, &bytes).unwrap();
    let output = chimera_log(&["query", garbage.to_str().unwrap(), dir.path().join("torn").to_str().unwrap()]);
    assert!(!text(&output).contains("panicked"), "{}", text(&output));
    let output = chimera_log(&["query", garbage.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("not a JSON line"), "{}", text(&output));
    let missing = chimera_log(&["query", dir.path().join("missing.log").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(text(&missing).contains("missing.log: No such file"), "{}", text(&missing));
}

/// `--event` looks for the name in a line's bytes before parsing it; that never changes what is
/// found or reported: a name spelled with escapes still matches, an unreadable line of another
/// event is still counted and named, a name inside another field does not match.
#[test]
fn query_event_finds_escaped_names_and_still_reports_unreadable_lines_it_does_not_parse() {
    let dir = tempfile::tempdir().unwrap();
    let escaped =
        r#"{"timestamp":"2024-01-15T10:00:02.000000Z","level":"INFO","module":"m","event":"ti\u0063k","context":{}}"#;
    let lines = [
        line_at(1, "tick", "plain"),
        escaped.to_owned(),
        line_at(3, "tock", "tick"),
        r#"{"timestamp":"2024-01-15T10:00:04.000000Z","event":"tock","#.to_owned(),
        "\u{1}binary\u{2}".to_owned(),
    ];
    fs::write(dir.path().join("chimera.log"), lines.join("\n") + "\n").unwrap();
    let output = chimera_log(&["query", dir.path().to_str().unwrap(), "--event", "tick"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(stdout_of(&output), format!("{}\n{escaped}\n", line_at(1, "tick", "plain")));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("chimera.log:4: not a JSON line"), "{stderr}");
    assert!(stderr.contains("chimera.log:5: not a JSON line"), "{stderr}");
}

/// `--where` looks for its field's key in a line's bytes before parsing it; that never changes
/// what matches: a key spelled with escapes is found, `!=` and `!~` still match a line without
/// the field, and a key inside an array path is looked for by its name, not its index.
#[test]
fn query_where_finds_escaped_keys_and_lines_without_the_field_for_not_equal() {
    let dir = tempfile::tempdir().unwrap();
    let with = |second: u32, context: &str| {
        format!(
            r#"{{"timestamp":"2024-01-15T10:00:{second:02}.000000Z","level":"INFO","module":"m","event":"e","context":{context}}}"#
        )
    };
    let lines = [
        with(1, r#"{"bps":300}"#),
        with(2, r#"{"b\u0070s":400}"#),
        with(3, r#"{"other":1}"#),
        with(4, r#"{"bps":100,"spans":{"0":{"block":7}}}"#),
    ];
    fs::write(dir.path().join("chimera.log"), lines.join("\n") + "\n").unwrap();
    let d = dir.path().to_str().unwrap();
    let seconds = |args: &[&str]| -> Vec<u64> {
        let output = chimera_log(&[&["query", d][..], args].concat());
        assert!(output.status.code().is_some_and(|c| c <= 1), "{}", text(&output));
        stdout_of(&output)
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["timestamp"].as_str().unwrap()[17..19]
                    .parse()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(seconds(&["--where", "bps>=200"]), [1, 2]);
    assert_eq!(seconds(&["--where", "bps!=300"]), [2, 3, 4]);
    assert_eq!(seconds(&["--where", "bps!~^3"]), [2, 3, 4]);
    assert_eq!(seconds(&["--where", "spans.0.block=7"]), [4]);
}
