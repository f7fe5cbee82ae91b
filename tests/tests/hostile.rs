//! The logger where attackers and accidents go: links and special files planted at log paths,
//! hostile umasks, damaged and planted backups, a second process on the directory, faults in the
//! middle of a line, and configuration at its limits. Each test tries to break one promise.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chimera_log_runtime::testing::FaultInjector;
use chimera_log_runtime::{emit, Error, LogConfig, LogEvent, Overflow};
use common::{all_lines, json_lines};
use serde_json::json;

#[derive(LogEvent)]
#[log(audit)]
struct Executed<'a> {
    block_number: u64,
    pad: &'a str,
}

fn config(dir: &Path) -> LogConfig {
    LogConfig::new(dir).console(false)
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// A file outside the log directory that an attacker wants the logger to write, chmod or copy.
fn victim(dir: &Path) -> std::path::PathBuf {
    let victim = dir.join("victim");
    fs::write(&victim, "precious\n").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
    victim
}

fn assert_untouched(victim: &Path) {
    assert_eq!(fs::read_to_string(victim).unwrap(), "precious\n", "the link's target was written");
    assert_eq!(mode(victim), 0o600, "the link's target was chmod'ed");
}

fn audit_seqs(dir: &Path) -> Vec<u64> {
    all_lines(dir, "executions.log").iter().map(|line| line["seq"].as_u64().unwrap()).collect()
}

// ---- 3. links and special files -------------------------------------------------------------

#[test]
fn a_symlink_at_any_log_path_is_an_init_error_naming_it_and_its_target_is_untouched() {
    for name in ["chimera.log", "executions.log", "metrics.log", ".chimera-log.lock"] {
        let outside = tempfile::tempdir().unwrap();
        let victim = victim(outside.path());
        let dir = tempfile::tempdir().unwrap();
        symlink(&victim, dir.path().join(name)).unwrap();
        let error = config(dir.path()).route("metrics", "metrics.log").build().unwrap_err();
        let message = error.to_string();
        assert!(message.contains(&dir.path().join(name).display().to_string()), "{name}: {message}");
        assert!(message.contains("symbolic link"), "{name}: {message}");
        assert_untouched(&victim);
        // Nothing was left holding the directory.
        fs::remove_file(dir.path().join(name)).unwrap();
        drop(config(dir.path()).route("metrics", "metrics.log").build().unwrap());
    }
}

#[test]
fn a_fifo_or_a_directory_at_a_log_path_is_an_init_error_and_nothing_hangs() {
    let dir = tempfile::tempdir().unwrap();
    assert!(Command::new("mkfifo").arg(dir.path().join("chimera.log")).status().unwrap().success());
    let error = config(dir.path()).build().unwrap_err();
    assert!(error.to_string().contains("a FIFO"), "{error}");
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("executions.log")).unwrap();
    let error = config(dir.path()).build().unwrap_err();
    assert!(error.to_string().contains("a directory"), "{error}");
}

#[test]
fn a_symlink_planted_while_running_is_never_written_through_and_the_held_lines_follow_once_it_is_gone() {
    let outside = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let guard =
        config(dir.path()).overflow(Overflow::Block).shutdown_timeout(Duration::from_millis(300)).build().unwrap();
    let logger = guard.logger("m");
    logger.info("before", json!({}));
    emit!(logger, Executed { block_number: 1, pad: "" });
    assert!(guard.flush());
    let victims: Vec<_> = ["chimera.log", "executions.log"]
        .iter()
        .map(|name| {
            let victim = victim(victim_dir(&outside.path().join(format!("{name}.d"))));
            fs::remove_file(dir.path().join(name)).unwrap();
            symlink(&victim, dir.path().join(name)).unwrap();
            victim
        })
        .collect();
    logger.info("while_linked", json!({}));
    emit!(logger, Executed { block_number: 2, pad: "" });
    assert!(!guard.flush(), "the lines held while the links are there are not written");
    let stats = guard.stats();
    for victim in &victims {
        assert_untouched(victim);
    }
    assert!(stats.sink("chimera.log").unwrap().write_errors >= 1, "{stats:?}");
    assert!(stats.sink("executions.log").unwrap().write_errors >= 1, "{stats:?}");
    for name in ["chimera.log", "executions.log"] {
        fs::remove_file(dir.path().join(name)).unwrap();
    }
    assert!(guard.flush());
    drop(guard);
    for victim in &victims {
        assert_untouched(victim);
    }
    assert_eq!(common::events(&dir.path().join("chimera.log")), ["while_linked", "executed"], "held, then written");
    assert_eq!(audit_seqs(dir.path()), [2], "the current audit file was recreated with the held record");
}

fn victim_dir(path: &Path) -> &Path {
    fs::create_dir_all(path).unwrap();
    path
}

#[test]
fn links_named_like_backups_are_never_read_compressed_or_removed() {
    let outside = tempfile::tempdir().unwrap();
    let victim = victim(outside.path());
    let dir = tempfile::tempdir().unwrap();
    let planted = ["chimera.log.20200101T000000.000000Z", "chimera.log.20200101T000000.000001Z.gz"];
    for name in planted {
        symlink(&victim, dir.path().join(name)).unwrap();
    }
    // Retention keeps none, compression is on, and a rotation happens.
    let guard = config(dir.path()).general_backups(0).max_bytes(300).build().unwrap();
    for seq in 0..5 {
        guard.logger("m").info("tick", json!({ "seq": seq, "pad": "x".repeat(200) }));
    }
    drop(guard);
    for name in planted {
        assert!(fs::symlink_metadata(dir.path().join(name)).unwrap().file_type().is_symlink(), "{name} was removed");
    }
    assert_untouched(&victim);
}

#[test]
fn under_umask_000_the_directory_is_0750_files_0640_the_lock_0600_and_backups_0440() {
    const CHILD: &str = "CHIMERA_UMASK_TEST_DIR";
    if let Ok(dir) = std::env::var(CHILD) {
        let guard = LogConfig::new(dir).console(false).max_bytes(400).compress(true).build().unwrap();
        let logger = guard.logger("m");
        for block_number in 0..6 {
            emit!(logger, Executed { block_number, pad: &"x".repeat(150) });
        }
        return;
    }
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("logs");
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("sh")
        .args(["-c", "umask 000 && exec \"$0\" \"$@\""])
        .arg(&exe)
        .args([
            "under_umask_000_the_directory_is_0750_files_0640_the_lock_0600_and_backups_0440",
            "--exact",
            "--test-threads=1",
        ])
        .env(CHILD, &dir)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(mode(&dir), 0o750, "log directory");
    for name in ["chimera.log", "executions.log"] {
        assert_eq!(mode(&dir.join(name)), 0o640, "{name}");
    }
    assert_eq!(mode(&dir.join(".chimera-log.lock")), 0o600, "the lock: owner only");
    let backups = common::backups(&dir, "executions.log");
    assert!(!backups.is_empty());
    for backup in backups {
        assert_eq!(mode(&backup), 0o440, "{}", backup.display());
    }
}

// ---- 4. a line is written whole into one file -----------------------------------------------

#[test]
fn a_partial_write_followed_by_a_rotation_never_splits_a_line_between_two_files() {
    for partial in [1, 57, 150, 299] {
        let dir = tempfile::tempdir().unwrap();
        let faults = Arc::new(FaultInjector::new());
        let guard = config(dir.path())
            .max_bytes(1_000)
            .general_backups(1_000)
            .audit_backups(1_000)
            .compress(false)
            .overflow(Overflow::Block)
            .fault_injector(Arc::clone(&faults))
            .shutdown_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let logger = guard.logger("m");
        let pad = "y".repeat(200);
        let mut block_number = 0;
        let mut emit_some = |n: u64, written: bool| {
            for _ in 0..n {
                logger.info("tick", json!({ "seq": block_number, "pad": pad }));
                emit!(logger, Executed { block_number, pad: &pad });
                block_number += 1;
            }
            assert_eq!(guard.flush(), written, "partial {partial}");
        };
        emit_some(3, true);
        // A disk that takes `partial` more bytes, then fails: a line is cut mid-way...
        faults.fail_writes(std::io::ErrorKind::StorageFull, partial);
        // ...and more lines come, each needing a rotation; the flush says they are not written.
        emit_some(8, false);
        faults.clear();
        emit_some(3, true);
        drop(guard);
        // `all_lines` parses every line of every file and fails on a torn one.
        let ticks: Vec<u64> = all_lines(dir.path(), "chimera.log")
            .iter()
            .filter(|line| line["event"] == "tick")
            .map(|line| line["context"]["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(ticks, (0..14).collect::<Vec<_>>(), "partial {partial}");
        assert_eq!(audit_seqs(dir.path()), (1..=14).collect::<Vec<_>>(), "partial {partial}");
    }
}

// ---- 5. damage in old files never stops logging ---------------------------------------------

/// Writes `count` audit records rotating every few records, then closes the logger.
fn audit_history(dir: &Path, count: u64) {
    let guard = config(dir).max_bytes(2_000).audit_backups(1_000).build().unwrap();
    let logger = guard.logger("m");
    for block_number in 0..count {
        emit!(logger, Executed { block_number, pad: "z" });
    }
}

fn newest_gz(dir: &Path) -> std::path::PathBuf {
    common::backups(dir, "executions.log").into_iter().rev().find(|p| p.extension().is_some_and(|e| e == "gz")).unwrap()
}

#[test]
fn a_corrupt_newest_audit_backup_with_no_current_file_does_not_stop_logging_nor_reuse_a_seq() {
    let dir = tempfile::tempdir().unwrap();
    audit_history(dir.path(), 60);
    let newest = newest_gz(dir.path());
    // Garbage where the newest backup's gzip header should be, and no current file.
    fs::set_permissions(&newest, fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(&newest, b"this is not gzip at all").unwrap();
    fs::remove_file(dir.path().join("executions.log")).unwrap();
    let readable_max = {
        let mut max = 0;
        for backup in common::backups(dir.path(), "executions.log") {
            if backup != newest {
                let text = String::from_utf8(common::read_maybe_gz(&backup)).unwrap();
                // Past the file's anchor line, which has no seq.
                for line in text.lines().skip(1) {
                    max = max.max(serde_json::from_str::<serde_json::Value>(line).unwrap()["seq"].as_u64().unwrap());
                }
            }
        }
        max
    };
    let guard = config(dir.path()).build().expect("damage in an old file must not stop logging");
    emit!(guard.logger("m"), Executed { block_number: 1_000, pad: "" });
    drop(guard);
    let records = json_lines(&dir.path().join("executions.log"));
    // The audit store holds all 60: the chain continues after them, never reusing a seq, and
    // says which records the files no longer give back.
    assert_eq!(records[0]["event"], "audit_restart");
    assert_eq!(
        (&records[0]["seq"], &records[0]["context"]["last_readable_seq"], &records[0]["context"]["resumed_after_seq"]),
        (&serde_json::json!(61), &serde_json::json!(readable_max), &serde_json::json!(60)),
        "{}",
        records[0]
    );
    assert_eq!(records[1]["seq"], 62);
}

#[test]
fn a_truncated_newest_audit_backup_continues_after_its_last_readable_record() {
    let dir = tempfile::tempdir().unwrap();
    audit_history(dir.path(), 60);
    let newest = newest_gz(dir.path());
    let whole = common::read_maybe_gz(&newest);
    let first_seq_in_newest: u64 =
        serde_json::from_slice::<serde_json::Value>(whole.split(|&b| b == b'\n').nth(1).unwrap()).unwrap()["seq"]
            .as_u64()
            .unwrap();
    // Keep the first half of the compressed bytes (a crash while copying, say).
    let bytes = fs::read(&newest).unwrap();
    fs::set_permissions(&newest, fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
    fs::remove_file(dir.path().join("executions.log")).unwrap();
    let guard = config(dir.path()).build().unwrap();
    emit!(guard.logger("m"), Executed { block_number: 1_000, pad: "" });
    drop(guard);
    let next = json_lines(&dir.path().join("executions.log"))[0]["seq"].as_u64().unwrap();
    assert!(next >= first_seq_in_newest, "seq {next} reuses one from before the damaged file");
}

#[test]
fn a_planted_far_future_backup_neither_hides_real_backups_nor_makes_a_restart_reuse_a_seq() {
    let dir = tempfile::tempdir().unwrap();
    audit_history(dir.path(), 250);
    // A copy of record 29 under a name stamped at the end of time.
    let first_backup = common::backups(dir.path(), "executions.log")[0].clone();
    let old_line = String::from_utf8(common::read_maybe_gz(&first_backup)).unwrap().lines().nth(1).unwrap().to_owned();
    let planted = dir.path().join("executions.log.99991231T235959.999999Z");
    fs::write(&planted, format!("{old_line}\n")).unwrap();
    for restart in 0..3u64 {
        let guard = config(dir.path()).max_bytes(2_000).audit_backups(1_000).build().unwrap();
        let logger = guard.logger("m");
        for i in 0..20 {
            emit!(logger, Executed { block_number: 10_000 + restart * 100 + i, pad: "z" });
        }
    }
    assert_eq!(fs::read_to_string(&planted).unwrap(), format!("{old_line}\n"), "the planted file is left alone");
    let seqs: Vec<u64> = common::backups(dir.path(), "executions.log")
        .into_iter()
        .filter(|path| path != &planted)
        .chain([dir.path().join("executions.log")])
        .flat_map(|path| {
            String::from_utf8(common::read_maybe_gz(&path))
                .unwrap()
                .lines()
                .skip(1) // the file's anchor
                .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["seq"].as_u64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(seqs, (1..=310).collect::<Vec<_>>(), "one chain, no seq reused, no backup hidden");
}

// ---- 6. backup names are trusted only when they are ours ------------------------------------

#[test]
fn far_future_names_never_make_retention_delete_real_backups() {
    let dir = tempfile::tempdir().unwrap();
    for year in 3000..3005 {
        fs::write(dir.path().join(format!("chimera.log.{year}0101T000000.000000Z.gz")), b"planted").unwrap();
    }
    let guard = config(dir.path()).max_bytes(300).general_backups(3).compress(false).build().unwrap();
    for seq in 0..10 {
        guard.logger("m").info("tick", json!({ "seq": seq, "pad": "x".repeat(200) }));
    }
    drop(guard);
    let real: Vec<_> = common::backups(dir.path(), "chimera.log")
        .into_iter()
        .filter(|path| !path.file_name().unwrap().to_str().unwrap().starts_with("chimera.log.3"))
        .collect();
    assert_eq!(real.len(), 3, "retention kept the three newest real backups: {real:?}");
    assert_eq!(common::backups(dir.path(), "chimera.log").len(), 8, "and left the planted ones alone");
}

#[test]
fn a_route_file_named_like_another_files_backup_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let error = config(dir.path()).route("x", "chimera.log.20240101T000000.000000Z").build().unwrap_err();
    assert!(matches!(&error, Error::InvalidSetting { setting: "route", .. }), "{error}");
    assert!(error.to_string().contains("backup of chimera.log"), "{error}");
}

// ---- 7. one logger per directory ------------------------------------------------------------

/// Set in a child process started by [`holder_process`]: the directory it holds.
const HOLDER_DIR: &str = "CHIMERA_LOCK_TEST_DIR";

/// In a child started by [`holder_process`] (`true`): starts the process-wide logger on its
/// directory, writes one audit record, says so, and holds the directory until the parent closes
/// its stdin.
fn hold_directory_if_child() -> bool {
    let Ok(dir) = std::env::var(HOLDER_DIR) else { return false };
    let guard = chimera_log_runtime::init_logging(LogConfig::new(dir).console(false)).unwrap();
    emit!(chimera_log_runtime::get_logger("m"), Executed { block_number: 1, pad: "" });
    println!("ready");
    std::io::stdout().flush().unwrap();
    let _ = std::io::stdin().read_line(&mut String::new());
    drop(guard);
    true
}

/// Runs `test` of this binary as a child holding `dir` (see [`hold_directory_if_child`]); returns
/// once it holds it.
fn holder_process(test: &str, dir: &Path) -> std::process::Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(HOLDER_DIR, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("ready") {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "the child ended before it was ready");
    }
    // Kept open: the child's test harness writes its result there when it ends.
    child.stdout = Some(stdout.into_inner());
    child
}

/// Lets the holder end, then checks that the directory is free and that one audit chain was
/// written: the holder's record, then one of this process.
fn release_and_check_one_chain(mut child: std::process::Child, dir: &Path) {
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let guard = config(dir).build().unwrap();
    emit!(guard.logger("m"), Executed { block_number: 2, pad: "" });
    drop(guard);
    assert_eq!(audit_seqs(dir), [1, 2]);
}

#[test]
fn a_second_process_on_the_same_directory_gets_directory_in_use_with_the_holders_pid() {
    if hold_directory_if_child() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let child =
        holder_process("a_second_process_on_the_same_directory_gets_directory_in_use_with_the_holders_pid", dir.path());
    let error = config(dir.path()).build().unwrap_err();
    match &error {
        Error::DirectoryInUse { path, pid } => {
            assert_eq!(path, dir.path());
            assert_eq!(*pid, Some(child.id()));
        }
        other => panic!("expected DirectoryInUse, got {other}"),
    }
    assert!(error.to_string().contains(&dir.path().display().to_string()), "{error}");
    // Once the holder is gone the directory is free, and the chain goes on where it left off.
    release_and_check_one_chain(child, dir.path());
}

#[test]
fn a_lock_file_deleted_or_replaced_under_a_running_logger_still_keeps_a_second_process_out() {
    if hold_directory_if_child() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let child = holder_process(
        "a_lock_file_deleted_or_replaced_under_a_running_logger_still_keeps_a_second_process_out",
        dir.path(),
    );
    let lock_file = dir.path().join(".chimera-log.lock");
    fs::remove_file(&lock_file).unwrap();
    let deleted = config(dir.path()).build().err();
    assert!(matches!(deleted, Some(Error::DirectoryInUse { .. })), "lock file deleted: {deleted:?}");
    let _ = fs::remove_file(&lock_file);
    fs::write(&lock_file, "4242\n").unwrap();
    let replaced = config(dir.path()).build().err();
    assert!(matches!(replaced, Some(Error::DirectoryInUse { .. })), "lock file replaced: {replaced:?}");
    release_and_check_one_chain(child, dir.path());
}

#[test]
fn a_log_directory_link_retargeted_while_a_logger_runs_leaves_it_writing_in_the_directory_it_locked() {
    let root = tempfile::tempdir().unwrap();
    let (first, second) = (root.path().join("first"), root.path().join("second"));
    fs::create_dir(&first).unwrap();
    fs::create_dir(&second).unwrap();
    let link = root.path().join("logs");
    symlink(&first, &link).unwrap();
    let running = config(&link).build().unwrap();
    running.logger("m").info("before", json!({}));
    assert!(running.flush());
    // A deployment moves the link to a new volume, and starts a logger there.
    fs::remove_file(&link).unwrap();
    symlink(&second, &link).unwrap();
    let started = config(&link).build().unwrap();
    running.logger("m").info("running_after", json!({}));
    emit!(running.logger("m"), Executed { block_number: 2, pad: "" });
    started.logger("m").info("started", json!({}));
    drop(running);
    drop(started);
    assert_eq!(common::events(&first.join("chimera.log")), ["before", "running_after", "executed"]);
    assert_eq!(common::events(&second.join("chimera.log")), ["started"], "one logger per directory");
    assert_eq!(audit_seqs(&first), [1]);
}

// ---- 9. configuration at its limits ---------------------------------------------------------

#[test]
fn a_shutdown_timeout_of_duration_max_saturates_instead_of_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).shutdown_timeout(Duration::MAX).build().unwrap();
    guard.logger("m").info("e", json!({}));
    assert!(guard.flush());
    drop(guard);
    assert_eq!(common::events(&dir.path().join("chimera.log")), ["e"]);
}

#[test]
fn debug_of_a_config_never_shows_the_audit_key() {
    let config = LogConfig::new("logs").audit_key(*b"hunter2-the-audit-key");
    let debug = format!("{config:?} {config:#?}");
    assert!(!debug.contains("hunter2") && !debug.contains("104, 117, 110"), "{debug}");
    assert!(debug.contains("REDACTED"), "{debug}");
}

#[test]
fn a_nan_context_is_a_null_value_and_line_separators_never_split_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).build().unwrap();
    let logger = guard.logger("m\u{2028}odule");
    logger.info("nan", f64::NAN);
    logger.info("sep\u{2029}arated", json!({ "k\u{85}": "v\u{2028}w" }));
    drop(guard);
    let text = fs::read_to_string(dir.path().join("chimera.log")).unwrap();
    // What Python's str.splitlines() and JavaScript split on.
    assert!(!text.contains(['\u{85}', '\u{2028}', '\u{2029}', '\r']), "{text:?}");
    let lines = json_lines(&dir.path().join("chimera.log"));
    assert_eq!(lines[0]["context"], json!({ "value": null }));
    assert_eq!(lines[1]["event"], "sep\u{2029}arated");
    assert_eq!(lines[1]["module"], "m\u{2028}odule");
    assert_eq!(lines[1]["context"], json!({ "k\u{85}": "v\u{2028}w" }));
}

#[test]
fn a_logger_restarted_while_another_thread_spawns_processes_gets_its_directory_back() {
    // A child between fork and exec shares the lock's descriptor for a moment: a restart at that
    // moment must not take its own released lock for another logger's.
    let dir = tempfile::tempdir().unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                Command::new("true").status().unwrap();
            }
        });
        let mut refused = None;
        for restart in 0..200u64 {
            match config(dir.path()).build() {
                Ok(guard) => emit!(guard.logger("m"), Executed { block_number: restart, pad: "" }),
                Err(error) => {
                    refused = Some(format!("restart {restart}: {error}"));
                    break;
                }
            }
        }
        // Stop the spawning thread before asserting, so that a failure fails rather than hangs.
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(refused, None);
    });
    assert_eq!(audit_seqs(dir.path()), (1..=200).collect::<Vec<_>>());
}

/// A field whose `Display` impl does something while its event is being encoded: logs, panics,
/// or waits for the test's signal.
enum WhenShown {
    Logs(chimera_log_runtime::Logger),
    Panics,
    Waits { entered: std::sync::mpsc::Sender<()>, lock: Arc<std::sync::Mutex<()>> },
}

impl std::fmt::Display for WhenShown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WhenShown::Logs(logger) => logger.info("inner", json!({"from": "display"})),
            WhenShown::Panics => panic!("a Display impl with a bug (expected by this test)"),
            WhenShown::Waits { entered, lock } => {
                let _ = entered.send(());
                drop(lock.lock().unwrap_or_else(|e| e.into_inner()));
            }
        }
        f.write_str("shown")
    }
}

#[derive(LogEvent)]
struct Outer {
    #[log(display)]
    value: WhenShown,
    seq: u64,
}

#[test]
fn a_display_impl_that_logs_or_panics_while_its_event_is_encoded_costs_that_emit_only() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).build().unwrap();
    let logger = guard.logger("m");
    emit!(logger, Outer { value: WhenShown::Logs(logger.clone()), seq: 1 });
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        emit!(logger, Outer { value: WhenShown::Panics, seq: 2 })
    }));
    assert!(panicked.is_err(), "the impl's panic reaches its caller, as any panic in its code would");
    emit!(logger, Outer { value: WhenShown::Logs(logger.clone()), seq: 3 });
    assert!(guard.flush(), "the logger goes on");
    drop(guard);
    let lines = json_lines(&dir.path().join("chimera.log"));
    let events: Vec<(String, Option<u64>)> = lines
        .iter()
        .map(|line| (line["event"].as_str().unwrap().to_owned(), line["context"]["seq"].as_u64()))
        .collect();
    assert_eq!(
        events,
        [
            ("inner".to_owned(), None),
            ("outer".to_owned(), Some(1)),
            ("inner".to_owned(), None),
            ("outer".to_owned(), Some(3))
        ],
        "every line whole, the panicked event not at all, in the order each was finished"
    );
}

#[test]
fn a_flush_is_not_held_up_by_a_display_impl_waiting_for_a_lock_the_flushing_thread_holds() {
    let dir = tempfile::tempdir().unwrap();
    let guard = config(dir.path()).build().unwrap();
    let logger = guard.logger("m");
    logger.info("before", json!({}));
    let lock = Arc::new(std::sync::Mutex::new(()));
    let held = lock.lock().unwrap();
    let (entered, inside) = std::sync::mpsc::channel();
    let emitter = std::thread::spawn({
        let (logger, lock) = (logger.clone(), Arc::clone(&lock));
        move || emit!(logger, Outer { value: WhenShown::Waits { entered, lock }, seq: 1 })
    });
    inside.recv().unwrap(); // the emitter is encoding its event, and waits for `held`
    let (sent, flushed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sent.send(logger.flush());
    });
    let flushed = flushed
        .recv_timeout(Duration::from_secs(60))
        .expect("the flush returned within a minute: it does not wait for an event being encoded");
    assert!(flushed, "the flush covers the lines before it, and the one being encoded is not one of them");
    drop(held);
    emitter.join().unwrap();
    drop(guard);
    let events: Vec<String> = json_lines(&dir.path().join("chimera.log"))
        .iter()
        .map(|line| line["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(events, ["before", "outer"]);
}
