//! `contrib/lnav/chimera_log.json`, the lnav format for chimera lines, against lnav itself: a log
//! directory written by the real logger (gzip backups and the current file) is read headless, and
//! SQL over the `chimera_log` table sees every level, the timestamps, the module, the event as
//! the body and the context through `jget`. Needs lnav (Debian's `lnav`, which
//! scripts/test-all.sh installs); without it the test fails saying so, never skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chimera_log_runtime::{Level, LogConfig};
use serde_json::json;

fn format_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/lnav/chimera_log.json")
}

/// lnav with its configuration (and the installed format) under `home` alone.
fn lnav(home: &Path, args: &[&str]) -> Output {
    let output = Command::new("lnav")
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env_remove("LNAV_HOME")
        .output();
    match output {
        Ok(output) => output,
        Err(error) => panic!(
            "lnav could not be run ({error}): this test needs it; scripts/test-all.sh installs it \
             (apt-get install -y lnav)"
        ),
    }
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// The CSV rows lnav prints for `sql` over `target`, header first.
fn sql(home: &Path, sql: &str, target: &Path) -> Vec<String> {
    let output = lnav(home, &["-n", "-c", &format!(";{sql}"), "-c", ":write-csv-to -", target.to_str().unwrap()]);
    assert!(output.status.success(), "{sql}: {}", text(&output));
    assert!(output.stderr.is_empty(), "{sql}: lnav complained: {}", text(&output));
    String::from_utf8(output.stdout).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn lnav_reads_a_log_directory_through_the_contrib_format_levels_times_and_context_included() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Each level a different number of times, so a level mapped to another shows in the counts;
    // small files, so most lines are in gzip backups.
    let guard = LogConfig::new(dir.path())
        .console(false)
        .level(Level::Trace)
        .max_bytes(2_000)
        .general_backups(100)
        .compress(true)
        .build()
        .unwrap();
    let logger = guard.logger("state_engine");
    let mut written = 0;
    for (times, level) in
        [Level::Trace, Level::Debug, Level::Info, Level::Warning, Level::Error, Level::Critical].into_iter().enumerate()
    {
        for n in 0..=times {
            let protocol = if written % 3 == 0 { "moonwell" } else { "aave" };
            let context = json!({ "protocol": protocol, "n": n, "amount": "340282366920938463463374607431768211455" });
            match level {
                Level::Trace => logger.trace("tick", context),
                Level::Debug => logger.debug("tick", context),
                Level::Info => logger.info("websocket_connected", context),
                Level::Warning => logger.warning("state_divergence", context),
                Level::Error => logger.error("rpc_failed", context),
                _ => logger.critical("safety_violation", context),
            }
            written += 1;
        }
    }
    drop(guard); // waits for the last compressions
    let files: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(files.iter().filter(|f| f.ends_with(".gz")).count() >= 2, "gzip backups were written: {files:?}");

    let installed = lnav(home.path(), &["-i", format_file().to_str().unwrap()]);
    assert!(installed.status.success(), "lnav -i: {}", text(&installed));
    assert!(home.path().join(".lnav/formats/installed/chimera_log.json").is_file(), "{}", text(&installed));

    // Every level recognised as itself: a line lnav could not read would not be in the table.
    let levels =
        sql(home.path(), "SELECT log_level, count(*) AS n FROM chimera_log GROUP BY log_level ORDER BY n", dir.path());
    assert_eq!(
        levels,
        ["log_level,n", "trace,1", "debug,2", "info,3", "warning,4", "error,5", "critical,6"],
        "files: {files:?}"
    );
    // The context, searchable with jget.
    let protocols = sql(
        home.path(),
        "SELECT jget(context, '/protocol') AS protocol, count(*) AS n FROM chimera_log GROUP BY protocol ORDER BY protocol",
        dir.path(),
    );
    assert_eq!(protocols, ["protocol,n", "aave,14", "moonwell,7"]);
    let divergences = sql(
        home.path(),
        "SELECT count(*) AS n FROM chimera_log WHERE log_body = 'state_divergence' AND module = 'state_engine' \
         AND jget(context, '/amount') = '340282366920938463463374607431768211455'",
        dir.path(),
    );
    assert_eq!(divergences, ["n", "4"]);
    // The timestamps parsed (to lnav's millisecond): the first and last as the files have them.
    let mut stamps: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("chimera.log"))
        .flat_map(|p| {
            use std::io::BufRead;
            let file = std::fs::File::open(&p).unwrap();
            let reader: Box<dyn std::io::Read> = if p.extension().is_some_and(|e| e == "gz") {
                Box::new(flate2::read::GzDecoder::new(file))
            } else {
                Box::new(file)
            };
            std::io::BufReader::new(reader).lines().map(|line| line.unwrap()).collect::<Vec<_>>()
        })
        .map(|line| serde_json::from_str::<serde_json::Value>(&line).unwrap()["timestamp"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stamps.len(), written);
    stamps.sort();
    let as_lnav = |stamp: &str| stamp[..23].replace('T', " ");
    let range = sql(home.path(), "SELECT min(log_time) AS first, max(log_time) AS last FROM chimera_log", dir.path());
    assert_eq!(range, ["first,last".to_owned(), format!("{},{}", as_lnav(&stamps[0]), as_lnav(&stamps[written - 1]))]);
}
