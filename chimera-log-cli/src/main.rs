//! `chimera-log`: tail, query, verify and summarise a chimera-log directory.
//!
//! Reads a file's compressed backups and its current file in chronological order (name order is
//! rotation order). Exit codes: 0 success (for `verify`: the trail is intact), 1 a check failed
//! (`verify` found tampering, `query`/`tail` found unreadable lines), 2 bad usage or a file that
//! cannot be read at all.
//!
//! `verify --store` and `query --store` read the audit store (the database every sealed record
//! of `executions.log` is inserted into) instead of, or beside, the files.

#[cfg(feature = "s3")]
mod archive;
mod files;
mod filter;
mod merge;
mod query;
mod store;
mod verify;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use chimera_log_runtime::read;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "chimera-log", version, about = "Tail, query, verify and summarise a chimera-log directory")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Lines longer than this are skipped and counted, never held in memory: bytes, or with a
    /// unit (64KiB, 16MiB, 1GiB).
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_size, default_value = "16MiB")]
    max_line: usize,
}

/// A size in bytes: a number, optionally followed by B, KiB, MiB or GiB.
fn parse_size(text: &str) -> Result<usize, String> {
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: usize = number.parse().map_err(|_| format!("{text:?}: expected a size such as 16MiB"))?;
    let scale: usize = match unit {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        _ => return Err(format!("{text:?}: the unit must be B, KiB, MiB or GiB")),
    };
    match number.checked_mul(scale) {
        Some(0) => Err(format!("{text:?}: must be at least one byte")),
        Some(bytes) => Ok(bytes),
        None => Err(format!("{text:?}: too large")),
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The last lines of a log, oldest first; with -f, keep following across rotations.
    Tail {
        /// The log directory, or a file (plain or gzip), or `-` for standard input.
        input: PathBuf,
        /// Lines to show.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: usize,
        /// Keep printing lines as they are written, following the file across rotations.
        #[arg(short, long)]
        follow: bool,
        /// `general` (chimera.log), `audit` (executions.log), or a route's file name.
        #[arg(long, default_value = "general")]
        file: String,
        /// Only lines matching this expression (as `query --filter`), shown and followed.
        /// Repeatable: all must hold.
        #[arg(long = "filter", value_name = "EXPR", value_parser = filter::parse)]
        expressions: Vec<filter::Expr>,
    },
    /// Lines matching every filter given, oldest first.
    Query {
        /// Log directories, files (plain or gzip, told by their first bytes) or `-` (standard
        /// input), not with --store. Several are merged by each line's timestamp; a line without
        /// one stays after the line before it in its input.
        #[arg(value_name = "INPUT", required_unless_present = "store", conflicts_with = "store")]
        inputs: Vec<PathBuf>,
        /// Mark each line with the input it is from (the argument as given): a last `"source"`
        /// key in JSON output, a first column in `table` and `pretty`.
        #[arg(long, conflicts_with = "store")]
        source: bool,
        #[command(flatten)]
        filter: query::Filter,
        /// `general`, `audit`, or a route's file name.
        #[arg(long, default_value = "general")]
        file: String,
        /// Query the audit store instead of a directory: `sqlite:PATH`, a path to an SQLite file,
        /// or `postgres://user:password@host/db` (built with the `postgres` feature). Its records
        /// are the audit trail's, stream by stream in name order, each in seq order. `--event`,
        /// `--where block_number=N` and `--since`/`--until` are answered from the store's indexes;
        /// every filter then applies to each record as to the files.
        #[arg(long, value_name = "URL", conflicts_with = "file")]
        store: Option<String>,
        /// With --store: only this stream (a logger's, `<host>/<log dir>` by default).
        #[arg(long, value_name = "NAME", requires = "store")]
        stream: Option<String>,
        /// `json` (the lines as written), `table` or `pretty`.
        #[arg(long, value_enum, default_value_t)]
        output: query::Output,
        /// Same as `--output table`.
        #[arg(long, conflicts_with = "output")]
        table: bool,
        /// Colour levels in `table` and `pretty` output: auto (a terminal, and NO_COLOR unset),
        /// always, never.
        #[arg(long, value_enum, default_value_t)]
        color: query::Color,
    },
    /// Check the audit trail: shape, seq without gaps, chain, checkpoints; or, with --store,
    /// the audit store's copy of it.
    Verify {
        /// The log directory. With --store or --archive (optional): the files compared with.
        #[arg(required_unless_present_any = ["store", "archive"])]
        dir: Option<PathBuf>,
        /// Environment variable holding the audit key (for a keyed chain).
        #[arg(long, value_name = "VAR")]
        key_env: Option<String>,
        /// Accept torn lines at the very end of the trail (a crash the logger has not started
        /// again after), reporting them; torn lines elsewhere always need their audit_restart.
        #[arg(long, conflicts_with = "store")]
        allow_torn: bool,
        /// Verify the audit store instead of the files: `sqlite:PATH`, a path to an SQLite file, or
        /// `postgres://user:password@host/db` (built with the `postgres` feature). Per stream:
        /// each row's seq and chain columns against its record, seq without gaps, every chain
        /// link. With DIR, also that every record held by both the store and the files is the
        /// same (the files themselves are checked by `verify DIR`).
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        /// With --store: only this stream (a logger's, `<host>/<log dir>` by default); with DIR,
        /// the stream compared with the files (needed when the store has several and none is
        /// named after DIR).
        #[arg(long, value_name = "NAME", requires = "store")]
        stream: Option<String>,
        /// Verify the S3 archive (`s3://bucket/prefix`; built with the `s3` feature): every
        /// digest's signature and link to the one before, no digest or period missing, every
        /// listed object's hash, any object no digest lists, seq and the audit chain across the
        /// objects; with DIR, that the archive and the files agree. Endpoint and credentials
        /// through the AWS SDK's chain (`AWS_ENDPOINT_URL`, profiles).
        #[arg(long, value_name = "URL", conflicts_with_all = ["store", "allow_torn"], requires = "public_key")]
        archive: Option<String>,
        /// With --archive: the Ed25519 public key (PEM) the digests must be signed with.
        #[arg(long, value_name = "PEM", requires = "archive")]
        public_key: Option<PathBuf>,
    },
    /// Counts per event, level and module (or the fields of --by), time range, file sizes and
    /// backups, of the lines matching every filter given.
    Stats {
        /// The log directory, or a file (plain or gzip), or `-` for standard input.
        input: PathBuf,
        /// `general`, `audit`, or a route's file name.
        #[arg(long, default_value = "general")]
        file: String,
        #[command(flatten)]
        filter: query::Filter,
        /// Count by this field instead of level, module and event: a top-level key or a context
        /// path, as --where takes it (`event`, `protocol`, `context.span.0.block`). Repeatable.
        #[arg(long, value_name = "FIELD", value_parser = query::parse_by)]
        by: Vec<String>,
        /// One JSON document instead of text (its keys in a fixed order).
        #[arg(long)]
        json: bool,
    },
}

/// `general` and `audit` name the two standard files; anything else is a route's file name.
pub(crate) fn file_name(file: &str) -> &str {
    match file {
        "general" => read::GENERAL_FILE,
        "audit" => read::AUDIT_FILE,
        other => other,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    files::set_max_line(cli.max_line);
    let outcome = match cli.command {
        Command::Tail { input, lines, follow, file, expressions } => {
            query::tail_input(&files::Input::of(&input), file_name(&file), lines, follow, &expressions)
        }
        Command::Query { inputs, source, filter, file, store, stream, output, table, color } => {
            let output = if table { query::Output::Table } else { output };
            match store {
                Some(url) => run_query_store(&url, stream.as_deref(), &filter, output, color),
                None => match inputs_of(&inputs) {
                    Ok(inputs) => query::query(&inputs, file_name(&file), &filter, output, color, source),
                    Err(message) => Err(message),
                },
            }
        }
        Command::Stats { input, file, filter, by, json } => {
            query::stats(&files::Input::of(&input), file_name(&file), &filter, &by, json)
        }
        Command::Verify { dir, key_env, allow_torn, store, stream, archive, public_key } => match (store, archive, dir)
        {
            (_, Some(url), dir) => run_verify_archive(
                &url,
                &public_key.expect("clap requires --public-key with --archive"),
                dir.as_deref(),
                key_env.as_deref(),
            ),
            (Some(url), None, dir) => run_verify_store(&url, stream.as_deref(), dir.as_deref(), key_env.as_deref()),
            (None, None, Some(dir)) => run_verify(&dir, key_env.as_deref(), allow_torn),
            (None, None, None) => unreachable!("clap requires DIR unless --store or --archive is given"),
        },
    };
    match outcome {
        Ok(code) => code,
        Err(message) => {
            eprintln!("chimera-log: {message}");
            ExitCode::from(2)
        }
    }
}

/// What each argument of `query` names; standard input at most once (it can be read only once).
fn inputs_of(args: &[PathBuf]) -> Result<Vec<files::Input>, String> {
    let inputs: Vec<files::Input> = args.iter().map(|arg| files::Input::of(arg)).collect();
    if inputs.iter().filter(|input| **input == files::Input::Stdin).count() > 1 {
        return Err(format!("`{}` (standard input) can be given only once", files::STDIN_ARG));
    }
    Ok(inputs)
}

/// The chain's key: the bytes of the variable `--key-env` names (any bytes, UTF-8 or not, as the
/// logger may be given them), or none.
fn chain_key(key_env: Option<&str>) -> Result<chimera_log_runtime::audit::ChainKey, String> {
    use std::os::unix::ffi::OsStringExt;
    match key_env {
        None => Ok(chimera_log_runtime::audit::ChainKey::unkeyed()),
        Some(var) => match std::env::var_os(var) {
            Some(key) if !key.is_empty() => Ok(chimera_log_runtime::audit::ChainKey::keyed(key.into_vec())),
            _ => Err(format!("--key-env {var}: the variable is not set or empty")),
        },
    }
}

fn run_verify(dir: &std::path::Path, key_env: Option<&str>, allow_torn: bool) -> Result<ExitCode, String> {
    if !dir.is_dir() {
        return Err(format!("{}: not a directory", dir.display()));
    }
    let key = chain_key(key_env)?;
    if files::files_in_order(dir, read::AUDIT_FILE).map_err(|e| e.to_string())?.is_empty() {
        return Err(format!("{}: no audit trail here (no executions.log or its backups)", dir.display()));
    }
    let report = verify::verify(dir, &key, allow_torn).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    for note in &report.notes {
        files::stdout_result(writeln!(out, "note: {note}"))?;
    }
    let range = match (report.first_seq, report.last_seq) {
        (Some(first), Some(last)) => format!("seq {first}..={last}"),
        _ => "no records".to_owned(),
    };
    if report.failures.is_empty() {
        files::stdout_result(writeln!(
            out,
            "intact: {} audit record(s), {range}, {} checkpoint(s) agree",
            report.records, report.checkpoints
        ))?;
        Ok(ExitCode::SUCCESS)
    } else {
        files::stdout_result(writeln!(out, "BROKEN: first broken record: {}", report.failures[0]))?;
        for failure in &report.failures[1..] {
            files::stdout_result(writeln!(out, "also: {failure}"))?;
        }
        files::stdout_result(writeln!(out, "{} audit record(s) read, {range}", report.records))?;
        Ok(ExitCode::from(1))
    }
}

fn run_verify_store(
    url: &str,
    stream: Option<&str>,
    dir: Option<&std::path::Path>,
    key_env: Option<&str>,
) -> Result<ExitCode, String> {
    let key = chain_key(key_env)?;
    if let Some(dir) = dir {
        if !dir.is_dir() {
            return Err(format!("{}: not a directory", dir.display()));
        }
        if files::files_in_order(dir, read::AUDIT_FILE).map_err(|e| e.to_string())?.is_empty() {
            return Err(format!("{}: no audit trail here (no executions.log or its backups)", dir.display()));
        }
    }
    let mut reader = store::open(url)?;
    let streams = store::streams(&mut reader, stream)?;
    if streams.is_empty() {
        return Err("audit store: it holds no audit records".to_owned());
    }
    let compared = match dir {
        Some(dir) => Some((dir, store::stream_of_dir(dir, &streams, stream)?)),
        None => None,
    };
    let report = store::verify(&mut reader, &streams, &key, compared.as_ref().map(|(dir, s)| (*dir, s.as_str())))?;
    let mut out = std::io::stdout().lock();
    for note in &report.notes {
        files::stdout_result(writeln!(out, "note: {note}"))?;
    }
    let describe = |summary: &store::StreamSummary| {
        let range = match (summary.first_seq, summary.last_seq) {
            (Some(first), Some(last)) => format!("seq {first}..={last}"),
            _ => "no records".to_owned(),
        };
        let compared = summary.compared.map(|n| format!(", {n} compared with the files")).unwrap_or_default();
        format!("stream {}: {} audit record(s), {range}{compared}", summary.name, summary.records)
    };
    if report.failures.is_empty() {
        for summary in &report.streams {
            files::stdout_result(writeln!(out, "intact: {}", describe(summary)))?;
        }
        Ok(ExitCode::SUCCESS)
    } else {
        files::stdout_result(writeln!(out, "BROKEN: first broken record: {}", report.failures[0]))?;
        for failure in &report.failures[1..] {
            files::stdout_result(writeln!(out, "also: {failure}"))?;
        }
        for summary in &report.streams {
            files::stdout_result(writeln!(out, "read: {}", describe(summary)))?;
        }
        Ok(ExitCode::from(1))
    }
}

#[cfg(not(feature = "s3"))]
fn run_verify_archive(
    url: &str,
    _: &std::path::Path,
    _: Option<&std::path::Path>,
    _: Option<&str>,
) -> Result<ExitCode, String> {
    Err(format!("--archive {url}: this chimera-log was built without the `s3` feature"))
}

#[cfg(feature = "s3")]
fn run_verify_archive(
    url: &str,
    public_key: &std::path::Path,
    dir: Option<&std::path::Path>,
    key_env: Option<&str>,
) -> Result<ExitCode, String> {
    let key = chain_key(key_env)?;
    let public = archive::public_key(public_key)?;
    if let Some(dir) = dir {
        if !dir.is_dir() {
            return Err(format!("{}: not a directory", dir.display()));
        }
    }
    let report = archive::verify(url, &public, &key, dir)?;
    let mut out = std::io::stdout().lock();
    for note in &report.notes {
        files::stdout_result(writeln!(out, "note: {note}"))?;
    }
    let describe = |summary: &archive::Summary| {
        let range = match (summary.first_seq, summary.last_seq) {
            (Some(first), Some(last)) => format!("seq {first}..={last}"),
            _ => "no records".to_owned(),
        };
        let compared = summary.compared.map(|n| format!(", {n} compared with the files")).unwrap_or_default();
        format!(
            "stream {}: {} audit record(s) in {} object(s), {range}, {} signed digest(s){compared}",
            summary.name, summary.records, summary.objects, summary.digests
        )
    };
    if report.failures.is_empty() {
        for summary in &report.streams {
            files::stdout_result(writeln!(out, "intact: {}", describe(summary)))?;
        }
        Ok(ExitCode::SUCCESS)
    } else {
        files::stdout_result(writeln!(out, "BROKEN: {}", report.failures[0]))?;
        for failure in &report.failures[1..] {
            files::stdout_result(writeln!(out, "also: {failure}"))?;
        }
        for summary in &report.streams {
            files::stdout_result(writeln!(out, "read: {}", describe(summary)))?;
        }
        Ok(ExitCode::from(1))
    }
}

fn run_query_store(
    url: &str,
    stream: Option<&str>,
    filter: &query::Filter,
    output: query::Output,
    color: query::Color,
) -> Result<ExitCode, String> {
    let mut reader = store::open(url)?;
    let streams = store::streams(&mut reader, stream)?;
    query::query_store(&mut reader, &streams, filter, output, color)
}
