//! `LogConfig::writer_priority`: the writer threads' nice value. These tests look at every
//! thread of the process named like a writer, so they have their own binary and take turns.

use std::sync::Mutex;

use chimera_log_runtime::{Error, LogConfig};

static SERIAL: Mutex<()> = Mutex::new(());

/// The nice value of each thread of this process whose name is `name` (as `/proc` shows it,
/// cut to 15 bytes).
fn nice_of_threads_named(name: &str) -> Vec<i64> {
    let mut nice = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(task.join("comm")) else { continue };
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.join("stat")).unwrap();
        // Fields after the name in parentheses: state is field 3, nice field 19.
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        nice.push(after_name.split(' ').nth(16).unwrap().parse().unwrap());
    }
    nice
}

fn config(dir: &tempfile::TempDir) -> LogConfig {
    LogConfig::new(dir.path()).audit_store(chimera_log_runtime::AuditStore::none())
}

#[test]
fn a_lower_writer_priority_is_applied_to_both_writer_threads() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    // A higher nice value (a lower priority) takes no privilege.
    let guard = config(&dir).writer_priority(7).build().unwrap();
    assert_eq!(nice_of_threads_named("chimera-log-fil"), [7], "the files writer");
    assert_eq!(nice_of_threads_named("chimera-log-con"), [7], "the console writer");
    let mine = nice_of_threads_named(std::fs::read_to_string("/proc/thread-self/comm").unwrap().trim_end());
    assert!(mine.iter().all(|&nice| nice != 7), "the caller's own priority is untouched: {mine:?}");
    drop(guard);
    let guard = config(&dir).build().unwrap();
    assert_eq!(nice_of_threads_named("chimera-log-fil"), [0], "unset, the writer runs at the process's priority");
    drop(guard);
}

#[test]
fn a_higher_writer_priority_is_applied_when_the_process_may_raise_one_and_refused_by_name_when_not() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Whether this process may raise a thread's priority (root, CAP_SYS_NICE or RLIMIT_NICE):
    // asked of a scratch thread, whose priority then goes with it.
    let may = may_raise_priority();
    let dir = tempfile::tempdir().unwrap();
    match config(&dir).writer_priority(-5).build() {
        Ok(guard) => {
            assert!(may, "init_logging claimed a priority the process may not set");
            assert_eq!(nice_of_threads_named("chimera-log-fil"), [-5]);
            drop(guard);
        }
        Err(Error::InvalidSetting { setting, value, reason }) => {
            assert!(!may, "refused although the process may raise a priority: {reason}");
            assert_eq!((setting, value.as_str()), ("writer_priority", "-5"));
            assert!(reason.contains("CAP_SYS_NICE"), "{reason}");
            assert!(nice_of_threads_named("chimera-log-fil").is_empty(), "no writer left running");
        }
        Err(other) => panic!("unexpected error: {other}"),
    }
}

#[test]
fn as_an_unprivileged_user_a_higher_writer_priority_is_refused_by_name() {
    // SAFETY: plain integer out.
    if unsafe { libc::geteuid() } != 0 {
        // Already unprivileged: the test above took the refusal branch.
        assert!(std::env::var_os("CHIMERA_TEST_UNPRIVILEGED").is_none() || !may_raise_priority());
        return;
    }
    // As root, run the test above again in a child process as `nobody`, where it must take
    // the refusal branch (it asserts that the process may not raise a priority there).
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // A copy of this test binary that `nobody` can reach (the build directory may not be).
    let scratch = tempfile::tempdir().unwrap();
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = scratch.path().join("writer_priority");
    std::fs::copy(std::env::current_exe().unwrap(), &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = std::process::Command::new(&binary)
        .args([
            "--exact",
            "a_higher_writer_priority_is_applied_when_the_process_may_raise_one_and_refused_by_name_when_not",
            "--nocapture",
        ])
        .env("CHIMERA_TEST_UNPRIVILEGED", "1")
        .env("TMPDIR", "/tmp")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the child as nobody: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("1 passed"), "the child ran the test: {stdout}");
    assert!(
        !may_raise_priority_as(65534),
        "nobody may not raise a priority here, so the child took the refusal branch"
    );
}

/// Whether this process may raise a thread's priority.
fn may_raise_priority() -> bool {
    std::thread::spawn(|| {
        // SAFETY: plain integers in, nothing of ours touched.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, -5) == 0 }
    })
    .join()
    .unwrap()
}

/// Whether a process of user `uid` may raise a thread's priority (asked of `nice -n -5 true`).
fn may_raise_priority_as(uid: u32) -> bool {
    use std::os::unix::process::CommandExt;
    std::process::Command::new("nice")
        .args(["-n", "-5", "true"])
        .uid(uid)
        .gid(uid)
        .stderr(std::process::Stdio::piped())
        .output()
        .is_ok_and(|output| output.status.success() && output.stderr.is_empty())
}

#[test]
fn a_writer_priority_out_of_range_is_an_error_naming_the_setting() {
    for nice in [-21, 20, i32::MIN, i32::MAX] {
        let dir = tempfile::tempdir().unwrap();
        match config(&dir).writer_priority(nice).build() {
            Err(Error::InvalidSetting { setting, value, .. }) => {
                assert_eq!(setting, "writer_priority");
                assert_eq!(value, nice.to_string());
            }
            other => panic!("{nice}: expected an error naming writer_priority, got {other:?}"),
        }
    }
}
