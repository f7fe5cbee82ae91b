//! `tail`, `query` and `stats`: reading lines back, filtered and summarised; `query --store`
//! reads the audit store's records through the same filters.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use chimera_log_runtime::store::{ScanFilter, StoreReader};
use chrono::{DateTime, Datelike, DurationRound, TimeDelta, Utc};
use clap::Args;
use serde_json::Value;

use chimera_log_runtime::read;

use crate::files::{
    files_in_order, for_each_line, open_regular, stdout_result, with_placeholder, Input, LineSource, Unterminated,
};
use crate::filter::{self, Expr, FieldSet, Json, Op};
use crate::merge::for_each_merged;

/// The filters of `query` and `stats`; every one given must match.
#[derive(Debug, Args, Default)]
pub(crate) struct Filter {
    /// Event name.
    #[arg(long)]
    event: Option<String>,
    /// Minimum level: trace, debug, info, warning, error, critical.
    #[arg(long)]
    level: Option<chimera_log_runtime::Level>,
    /// Module, with its children: `hyper` is `hyper` and `hyper::client`, not `hyperx`.
    #[arg(long)]
    module: Option<String>,
    /// From this time: RFC 3339, `today`, `yesterday`, `now`, or an age such as 90s, 30m,
    /// 2h, 7d, "1h 30m" (humantime).
    #[arg(long, value_parser = parse_time)]
    since: Option<DateTime<Utc>>,
    /// Up to this time: as --since.
    #[arg(long, value_parser = parse_time)]
    until: Option<DateTime<Utc>>,
    /// A field compared with a value: `key=value`, `key!=value`, `key<value`, `key<=value`,
    /// `key>value`, `key>=value`, `key~regex`, `key!~regex`. Numbers compare as numbers
    /// (exactly, at any size), anything else as text; `=` also takes JSON
    /// (`ok=true`); a regex matches a string's text or any other value's JSON. The key is a context field
    /// (`protocol`), a nested one (`context.metrics.latency_ms` or `metrics.latency_ms`), or a
    /// top-level key (`event`, `level`, `module`, `timestamp`); `span.0.block` goes through an
    /// array by index. A string of digits compares as a number against a number. Repeatable:
    /// all must hold.
    #[arg(long = "where", value_name = "KEY<OP>VALUE", value_parser = parse_where)]
    conditions: Vec<Condition>,
    /// A boolean expression: comparisons as --where takes them (`=`, `!=`, `<`, `<=`, `>`, `>=`,
    /// `~`, `!~`) joined by `and`, `or`, `not` and parentheses, strings quoted:
    /// `protocol = "aave" and (amount > 1000 or not ok = true)`. Repeatable: all must hold.
    #[arg(long = "filter", value_name = "EXPR", value_parser = crate::filter::parse)]
    expressions: Vec<Expr>,
    /// Stop after this many matching lines.
    #[arg(long)]
    limit: Option<u64>,
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let out_of_range = || format!("{text:?}: out of range (further back than the calendar goes)");
    let now = Utc::now();
    let midnight = |days_back: u64| {
        now.date_naive()
            .checked_sub_days(chrono::Days::new(days_back))
            .and_then(|day| day.and_hms_opt(0, 0, 0))
            .map(|time| time.and_utc())
            .ok_or_else(out_of_range)
    };
    match text {
        "now" => return Ok(now),
        "today" => return midnight(0),
        "yesterday" => return midnight(1),
        _ => {}
    }
    let age = humantime::parse_duration(text).map_err(|error| match error {
        humantime::DurationError::NumberOverflow => out_of_range(),
        error => format!(
            "{text:?}: expected RFC 3339 (2024-01-15T10:30:00Z), today, yesterday, now, or an age like 2h or \"1h 30m\" ({error})"
        ),
    })?;
    let age = chrono::TimeDelta::from_std(age).map_err(|_| out_of_range())?;
    now.checked_sub_signed(age).ok_or_else(out_of_range)
}

/// One `--where` condition.
#[derive(Debug, Clone)]
pub(crate) struct Condition {
    /// The path from the line's root (`["context", "protocol"]`).
    path: Vec<String>,
    op: Op,
    value: String,
    /// The compiled pattern of `~` and `!~`.
    pattern: Option<regex_lite::Regex>,
    /// `value` read as JSON, when it is (`ok=true`: `=` also compares JSON values).
    json: Option<Value>,
}

fn parse_where(text: &str) -> Result<Condition, String> {
    // The first operator in the text; two-character ones before their one-character prefixes.
    let at = text
        .find(['=', '!', '<', '>', '~'])
        .ok_or_else(|| format!("{text:?}: expected KEY<OP>VALUE, e.g. bps>=100 or tx~^0xab"))?;
    let rest = &text[at..];
    let (op, len) = [
        ("!=", Op::Ne),
        ("!~", Op::NotMatches),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("=", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
        ("~", Op::Matches),
    ]
    .into_iter()
    .find(|(symbol, _)| rest.starts_with(symbol))
    .map(|(symbol, op)| (op, symbol.len()))
    .ok_or_else(|| format!("{text:?}: unknown operator; use =, !=, <, <=, >, >=, ~, !~"))?;
    let path =
        filter::field_path(&text[..at]).ok_or_else(|| format!("{text:?}: the key is empty or has an empty part"))?;
    let value = text[at + len..].to_owned();
    let pattern = match op {
        Op::Matches | Op::NotMatches => Some(
            regex_lite::Regex::new(&value).map_err(|error| format!("{text:?}: not a regular expression: {error}"))?,
        ),
        _ => None,
    };
    let json = serde_json::from_str(&value).ok();
    Ok(Condition { path, op, value, pattern, json })
}

/// The exact JSON text of the field at `path` in the line `raw` (numbers keep every digit, which
/// a parsed value would round beyond 64 bits).
fn raw_field<'a>(raw: &'a str, path: &[String]) -> Option<&'a str> {
    let mut current = raw;
    for part in path {
        let members: std::collections::HashMap<String, &'a serde_json::value::RawValue> =
            serde_json::from_str(current).ok()?;
        current = members.get(part.as_str())?.get();
    }
    Some(current)
}

/// `a` against `b`: as numbers when `numeric` and both are (exactly, whatever their size: see
/// [`filter::Decimal`]), else as text.
fn compare(a: &str, b: &str, numeric: bool) -> std::cmp::Ordering {
    numeric.then(|| filter::compare_numbers(a, b)).flatten().unwrap_or_else(|| a.cmp(b))
}

impl Condition {
    /// Whether it holds for the field's raw JSON text (`None`: the line has no such field).
    fn holds(&self, field: Option<&str>) -> bool {
        let Some(field) = field else {
            return matches!(self.op, Op::Ne | Op::NotMatches);
        };
        let (text, numeric) = match Json::of(field) {
            Json::Number(_) => (std::borrow::Cow::Borrowed(field), true),
            // A string that spells a number is one against a number (a U256 written as text).
            Json::String(text) => {
                let numeric = filter::Decimal::parse(&text).is_some() && filter::Decimal::parse(&self.value).is_some();
                (text, numeric)
            }
            _ => (std::borrow::Cow::Borrowed(field), false),
        };
        if let Some(pattern) = &self.pattern {
            return pattern.is_match(&text) == (self.op == Op::Matches);
        }
        let ordering = compare(&text, &self.value, numeric);
        let equal = ordering.is_eq()
            || self
                .json
                .as_ref()
                .is_some_and(|wanted| serde_json::from_str::<Value>(field).is_ok_and(|value| *wanted == value));
        match self.op {
            Op::Eq => equal,
            Op::Ne => !equal,
            Op::Lt => ordering.is_lt(),
            Op::Le => ordering.is_le(),
            Op::Gt => ordering.is_gt(),
            Op::Ge => ordering.is_ge(),
            Op::Matches | Op::NotMatches => unreachable!("answered by the pattern above"),
        }
    }
}

impl Condition {
    /// The `block_number` column a row of the audit store must have for this condition to hold,
    /// when its index can answer it: `block_number=V` with `V` written as the column writes a
    /// matching value (a canonical integer, or text that no number or JSON equals). The column
    /// holds every record's `context.block_number`, whatever the record's identity field.
    fn store_block_number(&self) -> Option<String> {
        if self.op != Op::Eq || self.path != ["context", "block_number"] {
            return None;
        }
        let value = &self.value;
        let canonical_integer = value.parse::<i64>().is_ok_and(|n| n.to_string() == *value)
            || value.parse::<u64>().is_ok_and(|n| n.to_string() == *value);
        let only_text = serde_json::from_str::<Value>(value).is_err() && value.parse::<f64>().is_err();
        (canonical_integer || only_text).then(|| value.clone())
    }
}

/// `time` as the audit store writes timestamps (RFC 3339 UTC, microseconds, `Z`: text order is
/// time order), truncated to the microsecond; `None` outside the four-digit years that order so.
fn store_time(time: DateTime<Utc>) -> Option<String> {
    let time = time.duration_trunc(TimeDelta::microseconds(1)).ok()?;
    (0..=9999).contains(&time.year()).then(|| time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

impl Filter {
    /// What of this filter the audit store's indexes answer: every record that matches is in the
    /// rows it selects (some that do not may be too: [`matches`](Self::matches) decides).
    fn scan_filter(&self) -> ScanFilter {
        let mut scan = ScanFilter::default();
        scan.event = self.event.clone();
        scan.block_number = self.conditions.iter().find_map(Condition::store_block_number);
        scan.since = self.since.and_then(store_time);
        // The store's bound is exclusive and --until inclusive: up to the microsecond after it.
        scan.until = self
            .until
            .and_then(|until| until.duration_trunc(TimeDelta::microseconds(1)).ok())
            .and_then(|until| until.checked_add_signed(TimeDelta::microseconds(1)))
            .and_then(store_time);
        scan
    }

    /// Whether any filter is given (`--limit` is none).
    fn selects(&self) -> bool {
        self.event.is_some()
            || self.level.is_some()
            || self.module.is_some()
            || self.since.is_some()
            || self.until.is_some()
            || !self.conditions.is_empty()
            || !self.expressions.is_empty()
    }

    /// The filter ready to decide on lines.
    pub(crate) fn matcher(&self) -> Matcher<'_> {
        let mut fields = FieldSet::default();
        let mut top = |key: &str| fields.slot(&[key.to_owned()]);
        let (event, module, level, timestamp) = (top("event"), top("module"), top("level"), top("timestamp"));
        let conditions = self.conditions.iter().map(|condition| fields.slot(&condition.path)).collect();
        let expressions = self.expressions.iter().map(|expr| expr.bind(&mut fields)).collect();
        // Texts a match holds as written (in a line without escapes): --event, --module (a
        // child's name begins with it), `=` of --where on text no number or JSON equals, and the
        // string equalities every --filter requires.
        let mut required: Vec<&str> = self.event.iter().chain(&self.module).map(String::as_str).collect();
        for condition in &self.conditions {
            if condition.op == Op::Eq && condition.json.is_none() {
                required.push(&condition.value);
            }
        }
        required.extend(self.expressions.iter().flat_map(Expr::required_texts));
        required.retain(|text| filter::needle_is_literal(text));
        Matcher { filter: self, fields, event, module, level, timestamp, conditions, expressions, required }
    }
}

/// A [`Filter`] ready to decide on lines: the fields it reads, each with its slot, taken from a
/// line in one pass ([`FieldSet::extract`]) without building the line's `Value`.
#[derive(Debug)]
pub(crate) struct Matcher<'f> {
    filter: &'f Filter,
    fields: FieldSet,
    event: usize,
    module: usize,
    level: usize,
    timestamp: usize,
    /// The slot of each --where condition's field.
    conditions: Vec<usize>,
    expressions: Vec<filter::Bound<'f>>,
    /// Texts every matching line holds as written when it holds no backslash.
    required: Vec<&'f str>,
}

impl Matcher<'_> {
    /// The slot of another field [`fields`](Self::fields) is to give (`stats --by`).
    pub(crate) fn slot(&mut self, path: &[String]) -> usize {
        self.fields.slot(path)
    }

    /// The line's fields by slot; `None` when it is not JSON.
    pub(crate) fn fields<'a>(&self, raw: &'a [u8]) -> Option<Vec<Option<&'a str>>> {
        let text = std::str::from_utf8(raw).ok()?;
        let mut values = Vec::new();
        self.fields.extract(text, &mut values).ok()?;
        Some(values)
    }

    /// Whether a line whose fields are `values` matches every filter.
    pub(crate) fn matches_fields(&self, values: &[Option<&str>]) -> bool {
        let filter = self.filter;
        let text = |slot: usize| match values[slot].map(Json::of) {
            Some(Json::String(text)) => text,
            _ => std::borrow::Cow::Borrowed(""),
        };
        if filter.event.as_deref().is_some_and(|event| text(self.event) != event) {
            return false;
        }
        // A module's children are its: `hyper` is `hyper::client` too, as in level directives.
        if filter.module.as_deref().is_some_and(|module| {
            let written = text(self.module);
            written != module && written.strip_prefix(module).is_none_or(|rest| !rest.starts_with("::"))
        }) {
            return false;
        }
        if let Some(minimum) = filter.level {
            match text(self.level).parse::<chimera_log_runtime::Level>() {
                Ok(level) if level >= minimum => {}
                _ => return false,
            }
        }
        if filter.since.is_some() || filter.until.is_some() {
            let Ok(time) = DateTime::parse_from_rfc3339(&text(self.timestamp)) else { return false };
            let time = time.with_timezone(&Utc);
            if filter.since.is_some_and(|since| time < since) || filter.until.is_some_and(|until| time > until) {
                return false;
            }
        }
        filter.conditions.iter().zip(&self.conditions).all(|(condition, &slot)| condition.holds(values[slot]))
            && self.expressions.iter().all(|expr| expr.matches(values))
    }

    /// Whether the line matches every filter (a line that is not JSON never does).
    pub(crate) fn matches(&self, raw: &[u8]) -> bool {
        self.fields(raw).is_some_and(|values| self.matches_fields(&values))
    }

    /// Whether `raw` can be passed over without parsing it further: it lacks a text every match
    /// holds (looked for only in a line without backslashes, where every string is as written),
    /// or it is JSON and does not match. A line that is not JSON is never passed over on its own
    /// account, so that it is reported as unreadable.
    pub(crate) fn passes_over(&self, raw: &[u8]) -> bool {
        if !self.required.is_empty() && !raw.contains(&b'\\') {
            if let Ok(text) = std::str::from_utf8(raw) {
                if self.required.iter().any(|required| !text.contains(required)) {
                    return true;
                }
            }
        }
        self.fields(raw).is_some_and(|values| !self.matches_fields(&values))
    }
}

/// Whether `input` holds the audit trail, whose unsealed lines are not records: a directory's
/// when `name` is the audit file, a file's when `name` is or its own name begins with it.
fn is_audit(input: &Input, name: &str) -> bool {
    name == read::AUDIT_FILE
        || matches!(input, Input::File(path) if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with(read::AUDIT_FILE)))
}

/// Runs `each` on every line of `name` that parses (reporting the others on stderr), over
/// several inputs merged by time ([`for_each_merged`]), `each` told which input
/// (its index) a line is from, stopping once `each` returns `false`. A line `rules_out` says
/// cannot match (the byte checks of [`Prefilter`] and of `--filter`) is not given to `each`, and
/// only checked to be JSON (so that damage is still counted and named), without building its
/// value; lines of the audit trail are always parsed, since an unsealed one is reported whatever
/// the filter.
fn scan_while(
    inputs: &[Input],
    name: &str,
    rules_out: impl Fn(&[u8]) -> bool,
    mut each: impl FnMut(usize, &[u8], &Value) -> bool,
) -> Result<u64, String> {
    let sources = inputs
        .iter()
        .map(|input| LineSource::new(input, name).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let audit: Vec<bool> = inputs.iter().map(|input| is_audit(input, name)).collect();
    let mut unreadable = 0;
    // In the audit trail only sealed records are records: the anchor line that begins each file
    // is passed over; any other unsealed line, well-formed or not, was put there (or torn) and is
    // never shown as real.
    for_each_merged(sources, |index, path, number, line| {
        with_placeholder(line, |line| match parse_unless_ruled_out(line, !audit[index] && rules_out(line)) {
            Ok(None) => true,
            Ok(Some(_)) if audit[index] && number == 1 && chimera_log_runtime::audit::parse_anchor(line).is_some() => {
                true
            }
            Ok(Some(_)) if audit[index] && chimera_log_runtime::audit::parse_sealed(line).is_none() => {
                unreadable += 1;
                if unreadable <= NAMED_UNREADABLE {
                    eprintln!(
                        "chimera-log: {}:{number}: not a sealed audit record (no seq/chain); skipped, see `verify`",
                        path.display()
                    );
                }
                true
            }
            Ok(Some(value)) => each(index, line, &value),
            Err(error) => {
                unreadable += 1;
                // The first few are named; a file full of damage must not flood stderr.
                if unreadable <= NAMED_UNREADABLE {
                    if line.starts_with(crate::files::SKIPPED_PREFIX.as_bytes()) {
                        eprintln!("chimera-log: {}:{number}: {}", path.display(), String::from_utf8_lossy(line));
                    } else {
                        eprintln!("chimera-log: {}:{number}: not a JSON line ({error}); skipped", path.display());
                    }
                }
                true
            }
        })
    })
    .map_err(|e| e.to_string())?;
    if unreadable > NAMED_UNREADABLE {
        eprintln!("chimera-log: {} more unreadable line(s) skipped", unreadable - NAMED_UNREADABLE);
    }
    Ok(unreadable)
}

/// Byte strings a line must contain to match, looked for before the line is parsed: the event
/// name (most queries name one, and most lines are other events), and the key of each `--where`
/// field that must be present for its condition to hold (all but `!=` and `!~`, which a missing
/// field satisfies): its last part that is not a number (an array index is not written as a
/// key). A line is ruled out only when its bytes say so for certain: it is UTF-8 and has no
/// backslash (no escape could spell a name another way), and a needle as JSON writes it, quotes
/// included, is not in it.
#[derive(Debug, Default)]
struct Prefilter {
    needles: Vec<String>,
}

impl Prefilter {
    fn of(filter: &Filter) -> Prefilter {
        let keys = filter.conditions.iter().filter(|c| !matches!(c.op, Op::Ne | Op::NotMatches)).filter_map(|c| {
            c.path.iter().rev().find(|part| !part.bytes().all(|b| b.is_ascii_digit())).map(String::as_str)
        });
        let needles = filter.event.iter().map(String::as_str).chain(keys);
        Prefilter { needles: needles.filter_map(|needle| serde_json::to_string(needle).ok()).collect() }
    }

    fn rules_out(&self, line: &[u8]) -> bool {
        if self.needles.is_empty() || line.contains(&b'\\') {
            return false;
        }
        std::str::from_utf8(line).is_ok_and(|text| self.needles.iter().any(|needle| !text.contains(needle.as_str())))
    }
}

/// [`parse_line`], or when the line is `ruled_out` only the check that it is JSON (`None`), which
/// builds nothing.
fn parse_unless_ruled_out(line: &[u8], ruled_out: bool) -> Result<Option<Value>, String> {
    if !ruled_out {
        return parse_line(line).map(Some);
    }
    if line.is_empty() {
        return Err("an empty line".to_owned());
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(line).map(|_| None).map_err(|error| error.to_string())
}

/// A line parsed as JSON; an empty line fails at once (a file of millions of them must not cost
/// an error value each).
fn parse_line(line: &[u8]) -> Result<Value, String> {
    if line.is_empty() {
        return Err("an empty line".to_owned());
    }
    serde_json::from_slice(line).map_err(|error| error.to_string())
}

/// How many unreadable lines are named on stderr before the rest are only counted.
const NAMED_UNREADABLE: u64 = 10;

fn exit_for(unreadable: u64) -> ExitCode {
    if unreadable == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// How `query` prints a matching line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum Output {
    /// The line as written, byte for byte (for jq and other tools).
    #[default]
    Json,
    /// One aligned row per line: time, level, module, event, context.
    Table,
    /// Time, level, module and event, then the context as `key=value` pairs.
    Pretty,
}

/// Whether to colour `table` and `pretty` output by level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum Color {
    /// When standard output is a terminal and `NO_COLOR` is not set.
    #[default]
    Auto,
    Always,
    Never,
}

impl Color {
    fn enabled(self) -> bool {
        use std::io::IsTerminal;
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal(),
        }
    }
}

/// The level as printed by `table` and `pretty`, in its colour when `color`.
fn level_text(level: &str, color: bool) -> String {
    let code = match level {
        "TRACE" | "DEBUG" => "2",
        "INFO" => "32",
        "WARNING" => "33",
        "ERROR" => "31",
        "CRITICAL" => "1;31",
        _ => "0",
    };
    if color {
        format!("\x1b[{code}m{level:<8}\x1b[0m")
    } else {
        format!("{level:<8}")
    }
}

/// `text` with every control character written as `\u001b` (JSON's escape): `table` and `pretty`
/// go to terminals, which would obey an escape sequence in a logged value rather than show it.
fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_control() {
            escaped.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            escaped.push(c);
        }
    }
    std::borrow::Cow::Owned(escaped)
}

/// A context value as `pretty` prints it, from its JSON text: strings bare unless they need
/// quotes, the rest as written (numbers keep every digit).
fn pretty_value(raw: &serde_json::value::RawValue) -> String {
    match serde_json::from_str::<String>(raw.get()) {
        Ok(text) if !text.is_empty() && !text.contains(|c: char| c.is_whitespace() || c == '"' || c.is_control()) => {
            text
        }
        _ => escape_controls(raw.get()).into_owned(),
    }
}

/// A JSON object's members in the order written (serde_json's map sorts them), as written.
type InOrder = chimera_log_runtime::read::InOrder<Box<serde_json::value::RawValue>>;

/// The line `raw` (the JSON object `value`) with `"source":<label>` added as its last member:
/// last, so that a reader keeping the last of two equal keys (jq, serde_json) takes this one.
/// A JSON line that is not an object cannot carry it, and is written as it is.
fn write_with_source(out: &mut impl Write, raw: &[u8], value: &Value, label: &str) -> std::io::Result<()> {
    let close = raw.iter().rposition(|b| !b.is_ascii_whitespace());
    match (value.as_object(), close) {
        (Some(members), Some(close)) if raw[close] == b'}' => {
            out.write_all(&raw[..close])?;
            out.write_all(if members.is_empty() { b"\"source\":" } else { b",\"source\":" })?;
            serde_json::to_writer(&mut *out, label)?;
            out.write_all(b"}\n")
        }
        _ => out.write_all(raw).and_then(|()| out.write_all(b"\n")),
    }
}

/// Where a line is from, for `--source`: the input's label and the width of the longest label
/// (the `table` column).
#[derive(Debug, Clone, Copy)]
struct SourceMark<'a> {
    label: &'a str,
    width: usize,
}

fn write_line(
    out: &mut impl Write,
    raw: &[u8],
    value: &Value,
    output: Output,
    color: bool,
    source: Option<SourceMark<'_>>,
) -> std::io::Result<()> {
    let text = |key: &str| escape_controls(value[key].as_str().unwrap_or("")).into_owned();
    // The JSON text as written: a number beyond 2^53 parsed into `value` would print rounded.
    let raw_text = |key: &str| {
        std::str::from_utf8(raw).ok().and_then(|raw| raw_field(raw, &[key.to_owned()])).map(escape_controls)
    };
    if output != Output::Json {
        if let Some(SourceMark { label, width }) = source {
            write!(out, "{:<width$}  ", escape_controls(label))?;
        }
    }
    match output {
        Output::Json => match source {
            Some(SourceMark { label, .. }) => write_with_source(out, raw, value, label),
            None => out.write_all(raw).and_then(|()| out.write_all(b"\n")),
        },
        Output::Table => writeln!(
            out,
            "{}  {} {:<16} {:<24} {}",
            text("timestamp"),
            level_text(&text("level"), color),
            text("module"),
            text("event"),
            raw_text("context").unwrap_or(std::borrow::Cow::Borrowed("null"))
        ),
        Output::Pretty => {
            write!(
                out,
                "{} {} {} {}",
                text("timestamp"),
                level_text(&text("level"), color).trim_end(),
                text("module"),
                text("event")
            )?;
            let context = std::str::from_utf8(raw)
                .ok()
                .and_then(|raw| raw_field(raw, &["context".to_owned()]))
                .and_then(|context| serde_json::from_str::<InOrder>(context).ok());
            for (key, value) in context.map(|c| c.0).unwrap_or_default() {
                write!(out, " {}={}", escape_controls(&key), pretty_value(&value))?;
            }
            if let Some(exception) = raw_text("exception") {
                write!(out, " exception={exception}")?;
            }
            writeln!(out)
        }
    }
}

/// `query INPUT...`: the lines of `inputs` (merged by time when several) that match `filter`;
/// with `source`, each marked with its input's label.
pub(crate) fn query(
    inputs: &[Input],
    name: &str,
    filter: &Filter,
    output: Output,
    color: Color,
    source: bool,
) -> Result<ExitCode, String> {
    let color = color.enabled();
    let labels: Vec<String> = inputs.iter().map(Input::label).collect();
    let width = labels.iter().map(|label| label.chars().count()).max().unwrap_or(0);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut write_error = None;
    let mut matched = 0u64;
    let matcher = filter.matcher();
    let prefilter = Prefilter::of(filter);
    // A line is read into a `Value` only when it may match (or is not JSON, to be reported).
    let rules_out = |raw: &[u8]| prefilter.rules_out(raw) || matcher.passes_over(raw);
    scan_while(inputs, name, rules_out, |index, raw, value| {
        // Checked before anything is written, so `--limit 0` prints nothing (as with --store).
        if filter.limit.is_some_and(|limit| matched >= limit) {
            return false;
        }
        if !matcher.matches(raw) {
            return true;
        }
        matched += 1;
        let mark = source.then(|| SourceMark { label: &labels[index], width });
        if let Err(error) = stdout_result(write_line(&mut out, raw, value, output, color, mark)) {
            write_error.get_or_insert(error);
            return false;
        }
        filter.limit.is_none_or(|limit| matched < limit)
    })?;
    if let Some(error) = write_error {
        return Err(error);
    }
    stdout_result(out.flush())?;
    // As grep: 0 when something matched, 1 when nothing did (unreadable lines are reported on
    // stderr, and do not change that).
    Ok(if matched > 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `query --store`: the records of `streams` (in that order, each in seq order) that match
/// `filter`; the store's indexes select the rows, `filter` decides on each record as on a line.
pub(crate) fn query_store(
    reader: &mut StoreReader,
    streams: &[String],
    filter: &Filter,
    output: Output,
    color: Color,
) -> Result<ExitCode, String> {
    let color = color.enabled();
    // A record longer than --max-line is not read, as a line of the files is not.
    let selected = filter.scan_filter().max_record(crate::files::max_line() as u64);
    let matcher = filter.matcher();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut write_error = None;
    let mut matched = 0u64;
    let mut unreadable = 0u64;
    for stream in streams {
        if write_error.is_some() || filter.limit.is_some_and(|limit| matched >= limit) {
            break;
        }
        reader
            .scan(stream, &selected, |row| {
                if row.is_skipped() {
                    unreadable += 1;
                    if unreadable <= NAMED_UNREADABLE {
                        eprintln!(
                            "chimera-log: stream {stream}: seq {}: {}",
                            row.seq as i64,
                            crate::files::skipped_line(row.record_length)
                        );
                    }
                    return true;
                }
                let raw = row.record.as_bytes();
                let value = match parse_line(raw) {
                    Ok(_) if chimera_log_runtime::audit::parse_sealed(raw).is_none() => {
                        Err("not a sealed audit record (no seq/chain)".to_owned())
                    }
                    parsed => parsed,
                };
                let value = match value {
                    Ok(value) => value,
                    Err(error) => {
                        unreadable += 1;
                        if unreadable <= NAMED_UNREADABLE {
                            eprintln!(
                                "chimera-log: stream {stream}: seq {}: {error}; skipped, see `verify --store`",
                                // Signed, as the column holds it.
                                row.seq as i64
                            );
                        }
                        return true;
                    }
                };
                if !matcher.matches(raw) {
                    return true;
                }
                matched += 1;
                if let Err(error) = stdout_result(write_line(&mut out, raw, &value, output, color, None)) {
                    write_error.get_or_insert(error);
                    return false;
                }
                filter.limit.is_none_or(|limit| matched < limit)
            })
            .map_err(|error| format!("audit store: {error}"))?;
    }
    if unreadable > NAMED_UNREADABLE {
        eprintln!("chimera-log: {} more unreadable record(s) skipped", unreadable - NAMED_UNREADABLE);
    }
    if let Some(error) = write_error {
        return Err(error);
    }
    stdout_result(out.flush())?;
    Ok(if matched > 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `stats --by`: a field as --where and --filter write it.
pub(crate) fn parse_by(key: &str) -> Result<String, String> {
    filter::field_path(key)
        .map(|_| key.to_owned())
        .ok_or_else(|| format!("{key:?}: the field is empty or has an empty part"))
}

/// The fields `stats` counts by when no --by is given.
const STATS_BY: [&str; 3] = ["level", "module", "event"];

/// The lines of one `stats --by` field: how many hold each value (a string by its text, any other
/// value by its JSON as written), and how many have no such field.
#[derive(Debug, Default)]
struct Counts {
    values: BTreeMap<String, u64>,
    missing: u64,
}

/// `stats`: counts of the lines that match `filter` by each field of `by` (level, module and
/// event when empty), their time range, the file sizes and the backups; as text, or as one JSON
/// document.
pub(crate) fn stats(input: &Input, name: &str, filter: &Filter, by: &[String], json: bool) -> Result<ExitCode, String> {
    let mut matcher = filter.matcher();
    let mut keys: Vec<&str> = if by.is_empty() { STATS_BY.to_vec() } else { by.iter().map(String::as_str).collect() };
    // A field given twice is counted once.
    let mut seen = std::collections::HashSet::new();
    keys.retain(|key| seen.insert(*key));
    let slots: Vec<usize> =
        keys.iter().map(|key| matcher.slot(&filter::field_path(key).expect("checked by parse_by"))).collect();
    let timestamp = matcher.slot(&["timestamp".to_owned()]);
    let mut tables: Vec<Counts> = keys.iter().map(|_| Counts::default()).collect();
    // Each as written, with its instant: text order is not time order across offsets.
    type Seen = Option<(DateTime<Utc>, String)>;
    let (mut first, mut last): (Seen, Seen) = (None, None);
    let (mut total, mut matched) = (0u64, 0u64);
    let unreadable = scan_while(
        std::slice::from_ref(input),
        name,
        |_| false,
        |_, raw, _| {
            total += 1;
            let Some(values) = matcher.fields(raw) else { return true };
            if !matcher.matches_fields(&values) {
                return true;
            }
            if filter.limit.is_some_and(|limit| matched >= limit) {
                return false;
            }
            matched += 1;
            for (counts, &slot) in tables.iter_mut().zip(&slots) {
                match values[slot] {
                    None => counts.missing += 1,
                    Some(raw) => {
                        let key = match Json::of(raw) {
                            Json::String(text) => text.into_owned(),
                            _ => raw.to_owned(),
                        };
                        *counts.values.entry(key).or_default() += 1;
                    }
                }
            }
            // A line without a timestamp that parses has no place in the time range.
            if let Some(Json::String(written)) = values[timestamp].map(Json::of) {
                if let Ok(time) = DateTime::parse_from_rfc3339(&written) {
                    let time = (time.with_timezone(&Utc), written.into_owned());
                    if first.as_ref().is_none_or(|f| time.0 < f.0) {
                        first = Some(time.clone());
                    }
                    if last.as_ref().is_none_or(|l| time.0 > l.0) {
                        last = Some(time);
                    }
                }
            }
            filter.limit.is_none_or(|limit| matched < limit)
        },
    )?;
    // A directory's files, one file's size, or nothing known of standard input.
    let (backups, bytes) = match input {
        Input::Dir(dir) => {
            let files = files_in_order(dir, name).map_err(|e| e.to_string())?;
            let bytes: u64 = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
            (files.iter().filter(|f| f.file_name().is_some_and(|n| n != name)).count(), Some(bytes))
        }
        Input::File(path) => (0, std::fs::metadata(path).ok().map(|m| m.len())),
        Input::Stdin => (0, None),
    };
    let title = match input {
        Input::Dir(_) => name.to_owned(),
        other => other.path().display().to_string(),
    };
    let mut out = std::io::stdout().lock();
    if json {
        let string = |text: &str| serde_json::to_string(text).expect("a string is JSON");
        let written = |seen: &Seen| seen.as_ref().map_or("null".to_owned(), |(_, text)| string(text));
        let tables: Vec<String> = keys
            .iter()
            .zip(&tables)
            .map(|(key, counts)| {
                let values: Vec<String> =
                    counts.values.iter().map(|(value, count)| format!("{}:{count}", string(value))).collect();
                format!("{}:{{\"counts\":{{{}}},\"missing\":{}}}", string(key), values.join(","), counts.missing)
            })
            .collect();
        stdout_result(writeln!(
            out,
            "{{\"file\":{},\"lines\":{total},\"matched\":{matched},\"unreadable\":{unreadable},\"backups\":{backups},\"bytes\":{},\"from\":{},\"to\":{},\"by\":{{{}}}}}",
            string(&title),
            bytes.map_or("null".to_owned(), |bytes| bytes.to_string()),
            written(&first),
            written(&last),
            tables.join(",")
        ))?;
        return Ok(exit_for(unreadable));
    }
    let matching = if filter.selects() { format!(", {matched} matching") } else { String::new() };
    let on_disk = match (input, bytes) {
        (Input::Dir(_), Some(bytes)) => format!("; {backups} backup(s); {bytes} bytes on disk"),
        (_, Some(bytes)) => format!("; {bytes} bytes on disk"),
        (_, None) => String::new(),
    };
    stdout_result(writeln!(out, "{title}: {total} lines{matching}, {unreadable} unreadable{on_disk}"))?;
    let written = |seen: &Seen| seen.as_ref().map_or("-", |(_, text)| text.as_str()).to_owned();
    stdout_result(writeln!(out, "from {} to {}", written(&first), written(&last)))?;
    for (key, counts) in keys.iter().zip(&tables) {
        stdout_result(writeln!(out, "by {key}:"))?;
        for (value, count) in &counts.values {
            stdout_result(writeln!(out, "  {value:<32} {count}"))?;
        }
        if counts.missing > 0 {
            stdout_result(writeln!(out, "  {:<32} {}", "?", counts.missing))?;
        }
    }
    Ok(exit_for(unreadable))
}

/// Whether a line matches every expression of `tail --filter` (a line that is not JSON, a
/// skipped one's placeholder among them, matches none); every line when there are none.
fn line_filter(expressions: &[Expr]) -> impl Fn(&[u8]) -> bool + '_ {
    let mut fields = FieldSet::default();
    let bound: Vec<filter::Bound<'_>> = expressions.iter().map(|expr| expr.bind(&mut fields)).collect();
    move |line| {
        if bound.is_empty() {
            return true;
        }
        let mut values = Vec::new();
        std::str::from_utf8(line).is_ok_and(|line| fields.extract(line, &mut values).is_ok())
            && bound.iter().all(|expr| expr.matches(&values))
    }
}

/// `tail INPUT`: a log directory as [`tail`] reads it; a file or standard input, its last `lines`
/// lines matching every `--filter` expression (a plain file read backwards from its end, a gzip file or a pipe streamed, keeping only
/// those lines). `-f` follows a directory only: a file named on its own has no rotation to follow.
pub(crate) fn tail_input(
    input: &Input,
    name: &str,
    lines: usize,
    follow: bool,
    expressions: &[Expr],
) -> Result<ExitCode, String> {
    let path = match input {
        Input::Dir(dir) => return tail(dir, name, lines, follow, expressions),
        _ if follow => {
            return Err(format!("{}: `tail -f` follows a log directory, not a file", input.path().display()))
        }
        Input::File(path) => Some(path),
        Input::Stdin => None,
    };
    let plain = path.and_then(|path| {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::open(path).ok()?;
        let metadata = file.metadata().ok()?;
        let mut head = [0u8; 2];
        let gzip = metadata.len() >= 2 && file.read_exact_at(&mut head, 0).is_ok() && head == [0x1f, 0x8b];
        (metadata.is_file() && !gzip).then_some((file, metadata.len()))
    });
    let keep = line_filter(expressions);
    let gathered: Vec<Vec<u8>> = if let Some((file, end)) = plain {
        crate::files::last_lines_of(&file, end, lines, Unterminated::Give, &keep)
            .map_err(|e| format!("{}: {e}", input.path().display()))?
            .0
    } else {
        let mut kept = std::collections::VecDeque::with_capacity(lines.min(1 << 16));
        let source = LineSource::new(input, name).map_err(|e| e.to_string())?;
        for_each_merged(vec![source], |_, _, _, line| {
            with_placeholder(line, |line| {
                if line.is_empty() || lines == 0 || !keep(line) {
                    return true;
                }
                if kept.len() == lines {
                    kept.pop_front();
                }
                kept.push_back(line.to_vec());
                true
            })
        })
        .map_err(|e| e.to_string())?;
        kept.into()
    };
    let mut out = std::io::stdout().lock();
    for line in &gathered {
        stdout_result(out.write_all(line).and_then(|()| out.write_all(b"\n")))?;
    }
    stdout_result(out.flush())?;
    Ok(ExitCode::SUCCESS)
}

/// The last `lines` lines of `name` (those matching every `--filter` expression), oldest first;
/// with `follow`, then every line written after them, forever.
pub(crate) fn tail(
    dir: &Path,
    name: &str,
    lines: usize,
    follow: bool,
    expressions: &[Expr],
) -> Result<ExitCode, String> {
    use std::os::unix::fs::MetadataExt;
    let keep = line_filter(expressions);
    if !dir.is_dir() {
        return Err(format!("{}: not a directory", dir.display()));
    }
    // Refuses a FIFO or link at the path before anything opens it (an open would hang).
    files_in_order(dir, name).map_err(|e| e.to_string())?;
    // Following continues in the file read here, just after the lines shown (it is known by its
    // first line, under its backup name too), so no line falls between the two.
    let current = match open_regular(&dir.join(name)) {
        Ok(file) => Some(file),
        Err(error) if error.error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(error.to_string()),
    };
    let current_inode = current.as_ref().and_then(|f| f.metadata().ok()).map(|m| m.ino());
    // The current file is read backwards from its end as it stands now; following continues
    // from just after its last whole line.
    let mut gathered: Vec<Vec<u8>> = Vec::new();
    let mut cut = 0;
    if let Some(file) = current.as_ref() {
        let end = file.metadata().map_err(|e| e.to_string())?.len();
        (gathered, cut) =
            crate::files::last_lines_of(file, end, lines, Unterminated::Leave, &keep).map_err(|e| e.to_string())?;
    }
    let listed: Vec<_> = files_in_order(dir, name)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|f| f.file_name().is_some_and(|n| n != name))
        .collect();
    // A rotation since the handle was opened made its file a backup: it is read already.
    let backups: Vec<_> =
        listed.iter().filter(|f| std::fs::metadata(f).map_or(true, |m| Some(m.ino()) != current_inode)).collect();
    for path in backups.iter().rev() {
        if gathered.len() >= lines {
            break;
        }
        let wanted = lines.saturating_sub(gathered.len());
        if path.extension().is_none_or(|e| e != "gz") {
            // A plain backup is read backwards too; one compressed since it was listed is read
            // from its `.gz` below.
            if let Ok(file) = open_regular(path) {
                let end = file.metadata().map_err(|e| e.to_string())?.len();
                let (mut older, _) = crate::files::last_lines_of(&file, end, wanted, Unterminated::Give, &keep)
                    .map_err(|e| e.to_string())?;
                older.append(&mut gathered);
                gathered = older;
                continue;
            }
        }
        // Only the last lines still wanted are kept: a file of millions of lines costs no memory.
        let mut file_lines = std::collections::VecDeque::with_capacity(wanted.min(1 << 16));
        for_each_line(std::slice::from_ref(path), |_, _, line| {
            if line.is_empty() || wanted == 0 || !keep(line) {
                return;
            }
            if file_lines.len() == wanted {
                file_lines.pop_front();
            }
            file_lines.push_back(line.to_vec());
        })
        .map_err(|e| e.to_string())?;
        let mut file_lines: Vec<Vec<u8>> = file_lines.into();
        let take = lines.saturating_sub(gathered.len()).min(file_lines.len());
        let mut older = file_lines.split_off(file_lines.len() - take);
        older.append(&mut gathered);
        gathered = older;
    }
    // Following starts just after the lines shown: in the current file as read (which a
    // rotation may have made a backup since), after the newest backup that is not it. Set up
    // before they are shown, so that a backup appearing after that is told from those there.
    let start = if follow {
        let start = read::LogReader::follow_from(
            dir,
            name,
            crate::files::max_line(),
            backups.last().map(|backup| backup.as_path()),
            current.as_ref().map(|file| (file, cut)),
        )
        .map_err(|e| format!("{}: {e}", dir.join(name).display()))?;
        Some(start)
    } else {
        None
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in &gathered {
        stdout_result(out.write_all(line).and_then(|()| out.write_all(b"\n")))?;
    }
    stdout_result(out.flush())?;
    drop(out);
    if let Some(start) = start {
        follow_file(dir, name, start, &keep)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints what is appended to `name` in `dir`, forever, with the runtime's follower `reader`
/// (from where `tail` stopped showing), one look every 200 ms: across rotations and compression,
/// backups made between two looks included. The reader is the same from one look to the next, and
/// keeps the file it reads open: lines written, rotated away and deleted by retention between two
/// looks are still shown. What cannot be shown is said on stderr, and following goes on.
fn follow_file(
    dir: &Path,
    name: &str,
    mut reader: read::LogReader,
    keep: &dyn Fn(&[u8]) -> bool,
) -> Result<(), String> {
    let path = dir.join(name);
    let stdout = std::io::stdout();
    // Said once per stretch of time the file is missing (between a rotation's rename and the
    // new file, or before the first line).
    let mut missing_said = false;
    loop {
        show_what_follows(&mut reader, &path, &mut stdout.lock(), &mut std::io::stderr(), keep)?;
        let missing = std::fs::symlink_metadata(&path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
        if missing && !missing_said {
            eprintln!("chimera-log tail: {} is missing; waiting for it", path.display());
        }
        missing_said = missing;
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One look of `tail -f`: prints to `out` every line `reader` has now, and says on `notes` what
/// cannot be shown: each backup removed (retention) before it could be, a damaged `.gz` (the rest
/// of it), a backup appearing older than those shown (not new). Only lines `keep` takes are
/// printed (`tail -f --filter`).
fn show_what_follows(
    reader: &mut read::LogReader,
    path: &Path,
    out: &mut impl Write,
    notes: &mut impl Write,
    keep: &dyn Fn(&[u8]) -> bool,
) -> Result<(), String> {
    let failed = |e: std::io::Error| format!("{}: {e}", path.display());
    while let Some(event) = reader.next_event().map_err(failed)? {
        // A note that cannot be written (stderr closed) is no reason to stop showing lines.
        let _ = match event {
            read::LogEvent::Line(line) => {
                let placeholder;
                let bytes = match line.bytes {
                    Some(bytes) => bytes,
                    None => {
                        placeholder = crate::files::skipped_line(line.length);
                        placeholder.as_bytes()
                    }
                };
                if keep(bytes) {
                    stdout_result(out.write_all(bytes).and_then(|()| out.write_all(b"\n")))?;
                }
                Ok(())
            }
            read::LogEvent::Gap { files, removed } => {
                for backup in removed {
                    let _ =
                        writeln!(notes, "chimera-log tail: {} was removed before it could be shown", backup.display());
                }
                match files.saturating_sub(removed.len() as u64) {
                    0 => Ok(()),
                    // Files the reader had begun, gone when it came back (after a read error).
                    unnamed => writeln!(
                        notes,
                        "chimera-log tail: {unnamed} file(s) of {} were removed before they could be shown whole",
                        path.display()
                    ),
                }
            }
            read::LogEvent::Damaged { path, line, error } => writeln!(
                notes,
                "chimera-log tail: {}; the rest of this backup is not shown",
                crate::files::damaged(path, line, error)
            ),
            read::LogEvent::LateBackup(backup) => writeln!(
                notes,
                "chimera-log tail: {} appeared, but is older than the backups already shown; not shown",
                backup.display()
            ),
            _ => Ok(()),
        };
    }
    stdout_result(out.flush())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_removed_before_tail_reads_it_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let gone = d.join(format!("{}.20240101T000000.000001Z", read::AUDIT_FILE));
        let there = d.join(format!("{}.20240101T000000.000002Z", read::AUDIT_FILE));
        std::fs::write(&gone, b"{\"gone\":1}\n").unwrap();
        std::fs::write(&there, b"{\"a\":1}\n{\"b\":2}\n").unwrap();
        // Both appeared after tail began to follow (it showed nothing: there was nothing).
        let mut reader = read::LogReader::follow_from(d, read::AUDIT_FILE, 1024, None, None).unwrap();
        std::fs::remove_file(&gone).unwrap();
        let (mut out, mut notes) = (Vec::new(), Vec::new());
        assert_eq!(
            show_what_follows(&mut reader, &d.join(read::AUDIT_FILE), &mut out, &mut notes, &|_| true),
            Ok(()),
            "following goes on"
        );
        assert_eq!(
            String::from_utf8(notes).unwrap(),
            format!("chimera-log tail: {} was removed before it could be shown\n", gone.display())
        );
        // A backup that is there is printed whole, each line ending in a newline.
        assert_eq!(out, b"{\"a\":1}\n{\"b\":2}\n");
    }

    /// `tail -f` keeps the file it follows open from one look to the next: lines written to it,
    /// then rotated away and the backup deleted by retention before the next look, are shown.
    #[test]
    fn lines_rotated_and_deleted_between_two_looks_of_tail_f_are_shown() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let current = d.join(read::GENERAL_FILE);
        let backup = d.join(format!("{}.20240101T000000.000001Z", read::GENERAL_FILE));
        std::fs::write(&current, "shown by -n\n").unwrap();
        let file = open_regular(&current).unwrap();
        let mut reader = read::LogReader::follow_from(d, read::GENERAL_FILE, 1024, None, Some((&file, 12))).unwrap();
        let (mut out, mut notes) = (Vec::new(), Vec::new());
        show_what_follows(&mut reader, &current, &mut out, &mut notes, &|_| true).unwrap();
        std::fs::OpenOptions::new().append(true).open(&current).unwrap().write_all(b"a1\na2\n").unwrap();
        std::fs::rename(&current, &backup).unwrap();
        std::fs::write(&current, "b1\n").unwrap();
        std::fs::remove_file(&backup).unwrap();
        show_what_follows(&mut reader, &current, &mut out, &mut notes, &|_| true).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a1\na2\nb1\n");
        assert_eq!(String::from_utf8(notes).unwrap(), "", "nothing was lost");
    }
}
