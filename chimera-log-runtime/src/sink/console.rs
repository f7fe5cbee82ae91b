//! The console sink: the JSON line as is, or a readable rendering of it for a terminal.
//!
//! The pretty format is rendered from the already encoded line, so an event is still encoded
//! once; only this sink pays for the second pass, and only when asked for it.

use std::fmt::{self, Write as _};
use std::io::{self, Write};

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::Sink;
use crate::config::{ConsoleFormat, ConsoleTarget};

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
struct Members(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// `2024-01-15T10:30:45.123456Z WARNING  state_engine state_divergence protocol="moonwell" bps=150`;
/// a line that does not parse is shown as it is.
pub(crate) fn render_pretty(out: &mut String, line: &[u8]) {
    let Ok(parsed) = serde_json::from_slice::<Line>(line) else {
        out.push_str(&String::from_utf8_lossy(line));
        return;
    };
    let _ = write!(out, "{} {:<8} {} {}", parsed.timestamp, parsed.level, parsed.module, parsed.event);
    for (key, value) in &parsed.context.0 {
        let _ = write!(out, " {key}={value}");
    }
    if let Some(exception) = parsed.exception {
        let _ = write!(out, " error={}", Value::String(exception.message));
        for cause in exception.causes {
            let _ = write!(out, " caused_by={}", Value::String(cause));
        }
    }
    out.push('\n');
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
}
