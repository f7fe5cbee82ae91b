//! Helpers shared by the integration tests: a temporary log directory, a fixed clock, and
//! reading lines back with their key order.
#![allow(dead_code, unreachable_pub)]

pub mod audit_load;
pub mod proxy;
#[cfg(feature = "s3")]
pub mod s3;

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chimera_log_runtime::Clock;
use serde::de::Deserializer;
use serde::Deserialize;
use serde_json::Value;

/// A clock that says what the test tells it to.
#[derive(Debug)]
pub struct ManualClock(Mutex<SystemTime>);

impl ManualClock {
    pub fn at_micros(micros: u64) -> Self {
        ManualClock(Mutex::new(UNIX_EPOCH + Duration::from_micros(micros)))
    }
    pub fn set(&self, time: SystemTime) {
        *self.0.lock().unwrap() = time;
    }
    #[allow(dead_code)] // not every test moves the clock
    pub fn advance_micros(&self, micros: u64) {
        *self.0.lock().unwrap() += Duration::from_micros(micros);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

/// An object's members in the order they appear in the text.
#[derive(Debug, Clone, PartialEq)]
pub struct Ordered(pub Vec<(String, Value)>);

impl Ordered {
    pub fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(key, _)| key.as_str()).collect()
    }
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        chimera_log_runtime::read::InOrder::deserialize(deserializer).map(|members| Ordered(members.0))
    }
}

/// Whether `line` is one of the warnings the files' writer writes about its own health
/// (`log_write_slow`, `log_disk_low`): whether one appears depends on how busy the machine is,
/// so the readers below leave them out (tests/tests/watch.rs reads them on purpose).
#[allow(dead_code)]
pub fn is_watch_line(line: &str) -> bool {
    line.contains(r#""module":"chimera_log","event":"log_write_slow""#)
        || line.contains(r#""module":"chimera_log","event":"log_disk_low""#)
}

/// The lines of a log file (missing file: no lines); every line must end in `\n`. The writer's
/// health warnings are left out ([`is_watch_line`]).
pub fn raw_lines(path: &Path) -> Vec<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("reading {}: {e}", path.display()),
    };
    assert!(text.is_empty() || text.ends_with('\n'), "{} does not end with a newline", path.display());
    text.lines().filter(|line| !is_watch_line(line)).map(str::to_owned).collect()
}

/// Every line of a log file parsed as JSON, without the anchor that begins each audit file
/// (checked to be there, and only there, in `executions.log`).
pub fn json_lines(path: &Path) -> Vec<Value> {
    let lines = raw_lines(path)
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("invalid JSON line {line:?}: {e}")))
        .collect();
    without_anchor(path, lines)
}

/// `lines` of the file at `path` without its anchor line: an audit file's first line must be
/// its `audit_anchor`, and no other line may be one.
fn without_anchor(path: &Path, mut lines: Vec<Value>) -> Vec<Value> {
    let audit = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("executions.log"));
    let is_anchor = |line: &Value| line["event"] == "audit_anchor" && line["module"] == "chimera_log";
    if audit && !lines.is_empty() {
        assert!(is_anchor(&lines[0]), "{} does not begin with its anchor: {}", path.display(), lines[0]);
        lines.remove(0);
    }
    assert!(!lines.iter().any(is_anchor), "{}: an anchor line past the first", path.display());
    lines
}

/// The `event` of every line of a log file.
pub fn events(path: &Path) -> Vec<String> {
    json_lines(path).iter().map(|line| line["event"].as_str().unwrap().to_owned()).collect()
}

/// The `context` object of a line, members in the order written.
pub fn context_in_order(line: &str) -> Ordered {
    #[derive(Deserialize)]
    struct Line {
        context: Ordered,
    }
    serde_json::from_str::<Line>(line).unwrap_or_else(|e| panic!("{line:?}: {e}")).context
}

/// The backups of `name` in `dir`, in name order (which is rotation order).
pub fn backups(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let file = p.file_name().unwrap().to_str().unwrap();
            file.starts_with(&format!("{name}.")) && !file.ends_with(".tmp")
        })
        .collect();
    found.sort();
    found
}

/// A file's bytes, gunzipped when it ends in `.gz`.
pub fn read_maybe_gz(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut out).unwrap();
        out
    } else {
        bytes
    }
}

/// Every line of `name` across its backups and current file, oldest first, each parsed as JSON.
pub fn all_lines(dir: &Path, name: &str) -> Vec<Value> {
    let mut files = backups(dir, name);
    files.push(dir.join(name));
    let mut out = Vec::new();
    for file in files {
        if !file.exists() {
            continue;
        }
        let text = String::from_utf8(read_maybe_gz(&file)).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "{} ends with a torn line", file.display());
        let lines = text
            .lines()
            .filter(|line| !is_watch_line(line))
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: {line:?}: {e}", file.display())))
            .collect();
        out.extend(without_anchor(&file, lines));
    }
    out
}

/// Every sealed record of the audit family in `dir`, `(seq, line)`, oldest first.
pub fn audit_records(dir: &Path) -> Vec<(u64, String)> {
    let mut files = backups(dir, "executions.log");
    files.push(dir.join("executions.log"));
    files
        .iter()
        .flat_map(|file| {
            read_maybe_gz(file)
                .split(|&b| b == b'\n')
                .filter_map(|line| {
                    chimera_log_runtime::audit::parse_sealed(line)
                        .map(|r| (r.seq, String::from_utf8(line.to_vec()).unwrap()))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}
