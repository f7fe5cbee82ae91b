//! Configuration errors seen from outside: each names the setting, the path and the OS reason.

use chimera_log_runtime::{Error, LogConfig};

#[test]
fn log_dir_that_cannot_be_created_names_the_path_and_the_os_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let wanted = file.join("logs");
    let error = LogConfig::new(&wanted).console(false).build().unwrap_err();
    match &error {
        Error::CreateDir { path, source } => {
            assert_eq!(path, &wanted);
            assert!(matches!(source.kind(), std::io::ErrorKind::NotADirectory | std::io::ErrorKind::AlreadyExists));
        }
        other => panic!("expected CreateDir, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains(&wanted.display().to_string()) && message.contains("log_dir"), "{message}");
    assert!(message.to_lowercase().contains("not a directory"), "{message}");
}

#[test]
fn missing_log_dir_is_created_with_parents() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/c");
    let guard = LogConfig::new(&nested).console(false).build().unwrap();
    drop(guard);
    assert!(nested.join("chimera.log").is_file() && nested.join("executions.log").is_file());
}

#[cfg(unix)]
#[test]
fn log_files_are_created_readable_by_owner_and_group_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let guard = LogConfig::new(dir.path()).console(false).route("metrics", "metrics.log").build().unwrap();
    drop(guard);
    for file in ["chimera.log", "executions.log", "metrics.log"] {
        let mode = std::fs::metadata(dir.path().join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "{file} has mode {mode:o}");
    }
}

#[test]
fn bad_route_is_an_error_naming_the_route_setting() {
    let dir = tempfile::tempdir().unwrap();
    let error = LogConfig::new(dir.path()).route("audit", "executions.log").build().unwrap_err();
    assert!(matches!(error, Error::InvalidSetting { setting: "route", .. }), "{error}");
}

#[test]
fn from_vars_builds_a_working_config() {
    let dir = tempfile::tempdir().unwrap();
    let dir_str = dir.path().to_str().unwrap();
    let config = LogConfig::from_vars([("CHIMERA_LOG_DIR", dir_str), ("CHIMERA_LOG_CONSOLE", "false")]).unwrap();
    assert_eq!(config.log_dir(), dir.path());
    let guard = config.build().unwrap();
    guard.logger("m").warning("configured_from_env", serde_json::json!({}));
    drop(guard);
    assert!(std::fs::read_to_string(dir.path().join("chimera.log")).unwrap().contains("configured_from_env"));
}

#[cfg(not(feature = "cloudwatch"))]
#[test]
fn asking_for_cloudwatch_without_the_feature_is_an_error_not_a_silent_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig::new(dir.path()).cloudwatch(chimera_log_runtime::CloudWatchConfig::new("Chimera"));
    let error = chimera_log_runtime::init_logging(config).unwrap_err();
    assert!(matches!(error, Error::CloudWatchUnavailable), "{error}");
    assert!(error.to_string().contains("`cloudwatch` feature"), "{error}");
}

#[test]
fn a_bad_cloudwatch_setting_is_an_error_naming_it_in_any_build() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        LogConfig::new(dir.path()).cloudwatch(chimera_log_runtime::CloudWatchConfig::new("Chimera").retention_days(31));
    let error = config.build().unwrap_err();
    assert!(matches!(error, Error::InvalidSetting { setting: "cloudwatch.retention_days", .. }), "{error}");
}

/// Set in a child of this binary: `from_env` is then called in the child, whose environment the
/// parent chose.
#[cfg(unix)]
const FROM_ENV_CHILD: &str = "CHIMERA_CONFIG_TEST_FROM_ENV";

/// Runs `test` in a child process whose environment holds only `vars` (and the marker); returns
/// whether it succeeded, with its stderr.
#[cfg(unix)]
fn from_env_in_child(test: &str, vars: &[(&[u8], &[u8])]) -> (bool, String) {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command.args([test, "--exact", "--nocapture", "--test-threads=1"]).env_clear().env(FROM_ENV_CHILD, "1");
    for (name, value) in vars {
        command.env(OsStr::from_bytes(name), OsStr::from_bytes(value));
    }
    let output = command.output().unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[cfg(unix)]
#[test]
fn from_env_ignores_another_variable_whose_value_or_name_is_not_utf8() {
    if std::env::var_os(FROM_ENV_CHILD).is_some() {
        let config = LogConfig::from_env().unwrap();
        assert_eq!(config.log_dir(), std::path::Path::new("/var/log/chimera"));
        return;
    }
    let (success, stderr) = from_env_in_child(
        "from_env_ignores_another_variable_whose_value_or_name_is_not_utf8",
        &[(b"SOMETHING_ELSE", b"\xff"), (b"NAME_\xfe", b"x"), (b"CHIMERA_LOG_DIR", b"/var/log/chimera")],
    );
    assert!(success, "from_env failed in the child: {stderr}");
}

#[cfg(unix)]
#[test]
fn from_env_rejects_a_chimera_log_level_that_is_not_utf8_naming_it() {
    if std::env::var_os(FROM_ENV_CHILD).is_some() {
        let error = LogConfig::from_env().unwrap_err();
        assert!(matches!(error, Error::InvalidSetting { setting: "CHIMERA_LOG_LEVEL", .. }), "{error}");
        assert!(error.to_string().contains("CHIMERA_LOG_LEVEL"), "{error}");
        return;
    }
    let (success, stderr) = from_env_in_child(
        "from_env_rejects_a_chimera_log_level_that_is_not_utf8_naming_it",
        &[(b"CHIMERA_LOG_LEVEL", b"inf\xffo")],
    );
    assert!(success, "the child did not get the error it expects: {stderr}");
}

/// `from_env` reads `RUST_LOG` from the real process environment when `CHIMERA_LOG_LEVEL` is
/// not set, and `with_env` applies the environment over a configuration made in code (or read
/// from a file), the environment winning (issue 26). In a child process with those variables.
#[test]
fn from_env_reads_rust_log_and_with_env_lays_the_environment_over_a_configuration() {
    use chimera_log_runtime::Level;
    const CHILD: &str = "CHIMERA_CONFIG_TEST_WITH_ENV";
    if std::env::var_os(CHILD).is_some() {
        let guard = LogConfig::from_env().unwrap().build().unwrap();
        assert!(guard.logger("executor").enabled(Level::Trace), "from_env: RUST_LOG's default");
        assert!(!guard.logger("hyper::client").enabled(Level::Critical), "from_env: RUST_LOG's hyper=off");
        drop(guard);
        let guard = LogConfig::new("not-this-dir")
            .level(Level::Error)
            .console(true)
            .with_env()
            .unwrap()
            .level_for("hyper", Level::Trace)
            .build()
            .unwrap();
        assert_eq!(
            guard.log_dir().file_name(),
            std::path::Path::new(&std::env::var_os("CHIMERA_LOG_DIR").unwrap()).file_name()
        );
        assert!(guard.logger("executor").enabled(Level::Trace), "with_env: RUST_LOG's default over the code's");
        assert!(
            !guard.logger("hyper::client").enabled(Level::Critical),
            "with_env: RUST_LOG's hyper=off, in any order"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["from_env_reads_rust_log_and_with_env_lays_the_environment_over_a_configuration", "--exact"])
        .env(CHILD, "1")
        .env("RUST_LOG", "trace,hyper=off")
        .env("CHIMERA_LOG_DIR", dir.path())
        .env("CHIMERA_LOG_CONSOLE", "false")
        .env("CHIMERA_LOG_AUDIT_STORE", "none")
        .env_remove("CHIMERA_LOG_LEVEL")
        .output()
        .unwrap();
    assert!(output.status.success(), "child failed: {}", String::from_utf8_lossy(&output.stdout));
}
