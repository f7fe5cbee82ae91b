//! Levels per module: a default and directives such as `hyper=warning`, the longest matching
//! module prefix winning. `::` and `.` both separate a module's parts, so `hyper` covers
//! `hyper::client` and `hyper.client`, never `hyperion`.
//!
//! The decision for a module is made once and cached by its logger (and, for captured `tracing`
//! events, by the callsite); this module only computes it.

use crate::error::Error;
use crate::event::Level;

/// The minimum level of each module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Levels {
    default: Level,
    /// `(prefix with `.` separators, level)`, longest prefix first.
    directives: Vec<(String, Level)>,
}

impl Levels {
    pub(crate) fn new(default: Level) -> Self {
        Levels { default, directives: Vec::new() }
    }

    pub(crate) fn set_default(&mut self, level: Level) {
        self.default = level;
    }

    /// Sets the level of `prefix` and the modules under it (replacing an earlier directive for the
    /// same prefix).
    pub(crate) fn set(&mut self, prefix: &str, level: Level) {
        let prefix = normalize(prefix);
        self.directives.retain(|(existing, _)| *existing != prefix);
        self.directives.push((prefix, level));
        self.directives.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
    }

    /// Whether a directive names no module (`level_for("", ..)`): a configuration error.
    pub(crate) fn has_empty_prefix(&self) -> bool {
        self.directives.iter().any(|(prefix, _)| prefix.is_empty())
    }

    /// The minimum level of `module`: its longest matching directive's, or the default.
    pub(crate) fn level_for(&self, module: &str) -> Level {
        if self.directives.is_empty() {
            return self.default;
        }
        self.directives.iter().find(|(prefix, _)| covers(prefix, module)).map_or(self.default, |(_, level)| *level)
    }

    /// The lowest level any module may log at: below it, nothing is written.
    #[cfg_attr(not(any(test, feature = "tracing")), allow(dead_code))]
    pub(crate) fn lowest(&self) -> Level {
        self.directives.iter().map(|(_, level)| *level).fold(self.default, Level::min)
    }

    /// Parses `info,hyper=warning,state_engine=debug` (the form of `CHIMERA_LOG_LEVEL`): a bare
    /// level is the default, `prefix=level` a directive. Errors name `setting`.
    pub(crate) fn parse(setting: &'static str, text: &str) -> Result<Levels, Error> {
        let mut levels = Levels::new(Level::Info);
        for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            let level = |text: &str| -> Result<Level, Error> {
                text.trim().parse().map_err(|e| Error::invalid(setting, item, format!("{e}")))
            };
            match item.split_once('=') {
                None => levels.set_default(level(item)?),
                Some((prefix, _)) if prefix.trim().is_empty() => {
                    return Err(Error::invalid(setting, item, "a directive names a module: `module=level`"))
                }
                Some((prefix, value)) => levels.set(prefix.trim(), level(value)?),
            }
        }
        Ok(levels)
    }
}

/// `a::b` and `a.b` alike: `a.b`; a trailing separator (`hyper::`) names the same prefix.
fn normalize(module: &str) -> String {
    module.replace("::", ".").trim_end_matches('.').to_owned()
}

/// Whether `prefix` (normalized) names `module` or a module under it, reading `::` in `module` as
/// `.`, without allocating (this runs for every captured event).
fn covers(prefix: &str, module: &str) -> bool {
    let (mut p, mut m) = (prefix.as_bytes(), module.as_bytes());
    loop {
        match (p.first(), m.first()) {
            (None, None) => return true,
            (None, Some(b'.')) => return true,
            (None, Some(b':')) => return m.starts_with(b"::"),
            (None, Some(_)) | (Some(_), None) => return false,
            (Some(b'.'), Some(b':')) if m.starts_with(b"::") => (p, m) = (&p[1..], &m[2..]),
            (Some(a), Some(b)) if a == b => (p, m) = (&p[1..], &m[1..]),
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_matching_prefix_wins_at_a_part_boundary_with_either_separator() {
        let levels =
            Levels::parse("CHIMERA_LOG_LEVEL", "info, hyper=warning, hyper::client=debug, state_engine=error").unwrap();
        assert_eq!(levels.level_for("hyper"), Level::Warning);
        assert_eq!(levels.level_for("hyper::proto::h1"), Level::Warning);
        assert_eq!(levels.level_for("hyper.client.pool"), Level::Debug);
        assert_eq!(levels.level_for("hyper::client"), Level::Debug);
        assert_eq!(levels.level_for("hyperion"), Level::Info, "not a part boundary");
        assert_eq!(levels.level_for("state_engine.ws"), Level::Error);
        assert_eq!(levels.level_for("executor"), Level::Info);
        assert_eq!(levels.lowest(), Level::Debug);
    }

    #[test]
    fn covers_reads_double_colons_as_dots_and_stops_at_part_boundaries() {
        assert!(covers("a.b", "a::b") && covers("a.b", "a.b") && covers("a.b", "a::b::c") && covers("a", "a.b"));
        assert!(!covers("a.b", "a::bc") && !covers("a.b", "a") && !covers("ab", "a") && !covers("a", "ab"));
        assert!(!covers("a", "a:b"), "a single colon is not a separator");
        let mut levels = Levels::new(Level::Info);
        levels.set("hyper::", Level::Error);
        assert_eq!(levels.level_for("hyper::client"), Level::Error, "a trailing separator names the prefix");
    }

    #[test]
    fn a_bad_directive_names_the_setting_and_the_item() {
        let error = Levels::parse("CHIMERA_LOG_LEVEL", "info,hyper=loud").unwrap_err().to_string();
        assert!(error.contains("CHIMERA_LOG_LEVEL") && error.contains("hyper=loud"), "{error}");
        assert!(Levels::parse("CHIMERA_LOG_LEVEL", "=debug").is_err());
        assert_eq!(Levels::parse("X", "warning").unwrap(), Levels::new(Level::Warning));
    }
}
