//! The console sink: the JSON line as is, or a readable rendering of it for a terminal.
//!
//! The pretty format is rendered from the already encoded line, so an event is still encoded
//! once; only this sink pays for the second pass, and only when asked for it.

use std::fmt::{self, Write as _};
use std::io::{self, Write};

use serde::Deserialize;
use serde_json::Value;

use crate::config::{ConsoleFormat, ConsoleTarget};
use crate::sink::Sink;

#[derive(Debug)]
pub(crate) struct ConsoleSink {
    target: ConsoleTarget,
    format: ConsoleFormat,
    rendered: String,
}

impl ConsoleSink {
    pub(crate) fn new(target: ConsoleTarget, format: ConsoleFormat) -> Self {
        ConsoleSink { target, format, rendered: String::new() }
    }

    fn write_bytes(&self, bytes: &[u8]) -> io::Result<()> {
        match self.target {
            ConsoleTarget::Stdout => io::stdout().lock().write_all(bytes),
            _ => io::stderr().lock().write_all(bytes),
        }
    }
}

impl Sink for ConsoleSink {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        match self.format {
            ConsoleFormat::Pretty => {
                self.rendered.clear();
                render_pretty(&mut self.rendered, line);
                self.write_bytes(self.rendered.as_bytes())
            }
            _ => self.write_bytes(line),
        }
    }

    /// JSON lines go out in one write per batch; pretty lines are rendered one by one.
    fn write_batch(&mut self, bytes: &[u8], lens: &[u32]) -> io::Result<()> {
        if self.format == ConsoleFormat::Json {
            return self.write_bytes(bytes);
        }
        let mut at = 0;
        for &len in lens {
            self.write_line(&bytes[at..at + len as usize])?;
            at += len as usize;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.target {
            ConsoleTarget::Stdout => io::stdout().lock().flush(),
            _ => io::stderr().lock().flush(),
        }
    }
}

#[derive(Deserialize)]
struct Line {
    timestamp: String,
    level: String,
    module: String,
    event: String,
    context: Members,
    #[serde(default)]
    exception: Option<Exception>,
}

#[derive(Deserialize)]
struct Exception {
    message: String,
    #[serde(default)]
    causes: Vec<String>,
}

/// An object's members in the order they were written.
type Members = crate::dir::read::InOrder<Value>;

/// `2024-01-15T10:30:45.123456Z WARNING  state_engine state_divergence protocol="moonwell" bps=150`;
/// a line that does not parse is shown as it is, made safe the same way.
///
/// Every piece goes through [`push_safe`]: the JSON decoding undid the line's escapes, and a
/// module name, event name, key or value holding a newline or a terminal escape sequence must
/// neither start a forged record on the screen nor reach the terminal as a command.
pub(crate) fn render_pretty(out: &mut String, line: &[u8]) {
    let Ok(parsed) = serde_json::from_slice::<Line>(line) else {
        push_safe(out, String::from_utf8_lossy(line).trim_end_matches('\n'));
        out.push('\n');
        return;
    };
    push_safe(out, &parsed.timestamp);
    let _ = write!(out, " {:<8} ", Safe(&parsed.level));
    push_safe(out, &parsed.module);
    out.push(' ');
    push_safe(out, &parsed.event);
    for (key, value) in &parsed.context.0 {
        let _ = write!(out, " {}={}", Safe(key), Safe(&value.to_string()));
    }
    if let Some(exception) = parsed.exception {
        let _ = write!(out, " error={}", Safe(&Value::String(exception.message).to_string()));
        for cause in exception.causes {
            let _ = write!(out, " caused_by={}", Safe(&Value::String(cause).to_string()));
        }
    }
    out.push('\n');
}

/// Appends `text` with every control character escaped as JSON does (`\n`, `\u001b`), and also
/// DEL, the C1 controls (U+0080 to U+009F: U+009B opens an escape sequence on many terminals) and
/// the line separators U+2028 and U+2029.
fn push_safe(out: &mut String, text: &str) {
    let _ = write!(out, "{}", Safe(text));
}

struct Safe<'a>(&'a str);

impl fmt::Display for Safe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        let unsafe_char = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
        while let Some(at) = rest.find(unsafe_char) {
            let c = rest[at..].chars().next().expect("find returned a char boundary");
            f.write_str(&rest[..at])?;
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c => write!(f, "\\u{:04x}", c as u32)?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        // Padding (`{:<8}`) applies to the level only, which never needs escaping.
        f.pad(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_rendering_keeps_context_order_and_quotes_strings() {
        let line = br#"{"timestamp":"2024-01-15T10:30:45.123456Z","level":"INFO","module":"m","event":"e","context":{"z":1,"a":"x\ny"},"exception":{"type":"T","message":"boom","causes":["disk"]}}"#;
        let mut out = String::new();
        render_pretty(&mut out, line);
        assert_eq!(out, "2024-01-15T10:30:45.123456Z INFO     m e z=1 a=\"x\\ny\" error=\"boom\" caused_by=\"disk\"\n");
    }

    #[test]
    fn pretty_rendering_escapes_control_characters_in_every_part() {
        let hostile = "x\ny\u{1b}]0;pwned\u{7}\u{9b}31m\u{7f}\u{2028}z";
        let mut module = Vec::new();
        crate::json::quoted_into(&mut module, hostile);
        let module = String::from_utf8(module).unwrap();
        let envelope = crate::json::Envelope {
            time: std::time::UNIX_EPOCH.into(),
            level: crate::event::Level::Info,
            module_json: &module,
            event: hostile.into(),
            exception: None,
            audit_key: None,
            trace: None,
        };
        let mut line = Vec::new();
        crate::json::encode_line(&mut line, envelope, |buf| {
            let mut context = crate::json::ContextWriter::open(buf);
            context.field(hostile, hostile);
            context.finish();
        });
        let mut out = String::new();
        render_pretty(&mut out, &line);
        assert_eq!(out.matches('\n').count(), 1, "one record, one line: {out:?}");
        assert!(out.ends_with('\n'));
        assert!(!out[..out.len() - 1].contains(|c: char| c.is_control() || c == '\u{2028}'), "{out:?}");
        assert_eq!(out.matches("x\\ny\\u001b]0;pwned\\u0007\\u009b31m\\u007f\\u2028z").count(), 4, "{out:?}");
        let mut unparsed = String::new();
        render_pretty(&mut unparsed, b"not json \x1b[2J\n");
        assert_eq!(unparsed, "not json \\u001b[2J\n");
    }
}
