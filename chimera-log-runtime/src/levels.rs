//! Levels per module: a default and directives such as `hyper=warning`, the longest matching
//! module prefix winning. `::` and `.` both separate a module's parts, so `hyper` covers
//! `hyper::client` and `hyper.client`, never `hyperion`.
//!
//! The decision for a module is made once and cached by its logger (and, for captured `tracing`
//! events, by the callsite); this module computes it, and keeps a running instance's levels in
//! [`LiveLevels`], whose epoch tells a cached decision from a stale one after a reload.

use std::cell::RefCell;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::{Arc, PoisonError, RwLock};

use crate::error::Error;
use crate::event::Level;

/// A module's minimum: a [`Level`], or off (`hyper=off`: nothing of the module is written).
/// Below every level and `OFF` above them, so `a <= b` reads "`a` lets through at least what `b`
/// does".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Threshold(u8);

impl Threshold {
    /// Nothing passes.
    pub(crate) const OFF: Threshold = Threshold(Level::ALL.len() as u8);

    pub(crate) const fn at(level: Level) -> Threshold {
        Threshold(level.index() as u8)
    }

    /// Whether an event at `level` passes.
    pub(crate) fn allows(self, level: Level) -> bool {
        level.index() as u8 >= self.0
    }

    /// The least severe level that passes; `None` for [`OFF`](Self::OFF).
    #[cfg_attr(not(any(test, feature = "tracing")), allow(dead_code))]
    pub(crate) fn level(self) -> Option<Level> {
        Level::ALL.get(usize::from(self.0)).copied()
    }

    /// The byte a logger caches (see `Logger::module_level`); read back by [`from_bits`](Self::from_bits).
    pub(crate) fn bits(self) -> u8 {
        self.0
    }

    /// The threshold whose [`bits`](Self::bits) are `bits`; anything out of range reads as off.
    pub(crate) fn from_bits(bits: u8) -> Threshold {
        Threshold(bits.min(Self::OFF.0))
    }

    /// A level name, or `off`.
    fn parse(text: &str) -> Result<Threshold, String> {
        if text.trim().eq_ignore_ascii_case("off") {
            return Ok(Threshold::OFF);
        }
        text.parse().map(Threshold::at).map_err(|e| format!("{e}, or off"))
    }
}

/// What a directive string says (`info,hyper=warning,tower=off`): the default if it names one,
/// and each `prefix=level` in order. Kept apart from [`Levels`] because the environment overlays
/// what code set (`Levels::overlay`): an item it does not name is left as code set it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Directives {
    default: Option<Threshold>,
    /// `(prefix with `.` separators, threshold)`, in the order written (a later one for the same
    /// prefix wins).
    items: Vec<(String, Threshold)>,
}

impl Directives {
    /// Parses `info,hyper=warning,state_engine=debug,tower=off` (the form of `CHIMERA_LOG_LEVEL`
    /// and `RUST_LOG`): a bare level is the default, `prefix=level` a directive, `off` a level
    /// that lets nothing through. What `RUST_LOG` users may write but chimera-log does not
    /// filter on is refused, never read as a prefix that matches nothing: span filters
    /// (`tower[request]=debug`, `[{id=1}]=trace`), regular-expression filters (`info/foo`), and
    /// a bare module name (env_logger's "every level of `hyper`", written here `hyper=trace`).
    /// Errors name `setting` and the item.
    pub(crate) fn parse(setting: &'static str, text: &str) -> Result<Directives, Error> {
        if text.contains('/') {
            return Err(Error::invalid(
                setting,
                text,
                "a regular-expression filter (`/pattern`) is not supported: chimera-log filters by module and level only",
            ));
        }
        let mut directives = Directives::default();
        for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            if item.contains(['[', ']', '{', '}']) {
                return Err(Error::invalid(
                    setting,
                    item,
                    "span filters (`target[span]=level`, `target[{field=value}]=level`) are not supported: \
                     chimera-log filters by module and level only",
                ));
            }
            let threshold = |text: &str| Threshold::parse(text).map_err(|reason| Error::invalid(setting, item, reason));
            match item.split_once('=') {
                None => match Threshold::parse(item) {
                    Ok(level) => directives.default = Some(level),
                    Err(reason) => {
                        return Err(Error::invalid(
                            setting,
                            item,
                            format!("{reason}; to name every level of a module, write `{item}=trace`"),
                        ))
                    }
                },
                Some((prefix, _)) if prefix.trim().is_empty() => {
                    return Err(Error::invalid(setting, item, "a directive names a module: `module=level`"))
                }
                Some((prefix, value)) => directives.items.push((normalize(prefix.trim()), threshold(value)?)),
            }
        }
        Ok(directives)
    }
}

/// The minimum level of each module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Levels {
    default: Threshold,
    /// `(prefix with `.` separators, threshold)`, longest prefix first.
    directives: Vec<(String, Threshold)>,
}

impl Levels {
    pub(crate) fn new(default: Level) -> Self {
        Levels { default: Threshold::at(default), directives: Vec::new() }
    }

    /// The levels a directive string gives alone: its default, else INFO.
    pub(crate) fn from_directives(directives: &Directives) -> Self {
        let mut levels = Levels::new(Level::Info);
        levels.overlay(directives);
        levels
    }

    pub(crate) fn set_default(&mut self, level: Level) {
        self.default = Threshold::at(level);
    }

    /// Sets the level of `prefix` and the modules under it (replacing an earlier directive for the
    /// same prefix).
    pub(crate) fn set(&mut self, prefix: &str, level: Level) {
        self.set_threshold(normalize(prefix), Threshold::at(level));
    }

    fn set_threshold(&mut self, prefix: String, threshold: Threshold) {
        self.directives.retain(|(existing, _)| *existing != prefix);
        self.directives.push((prefix, threshold));
        self.directives.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
    }

    /// Applies `directives` over these levels, theirs winning for what they name: their default
    /// (if they name one) replaces this default, and each `prefix=level` replaces the directives
    /// for `prefix` and for every module under it; directives for other modules stay.
    pub(crate) fn overlay(&mut self, directives: &Directives) {
        if let Some(default) = directives.default {
            self.default = default;
        }
        self.directives.retain(|(existing, _)| !directives.items.iter().any(|(prefix, _)| covers(prefix, existing)));
        for (prefix, threshold) in &directives.items {
            self.set_threshold(prefix.clone(), *threshold);
        }
    }

    /// The first prefix set in code that no module can have: empty, or with a character that
    /// only span and regex filters use (`[`, `]`, `{`, `}`, `/`), which would match nothing.
    pub(crate) fn invalid_prefix(&self) -> Option<&str> {
        self.directives
            .iter()
            .map(|(prefix, _)| prefix.as_str())
            .find(|prefix| prefix.is_empty() || prefix.contains(['[', ']', '{', '}', '/']))
    }

    /// The minimum level of `module`: its longest matching directive's, or the default.
    pub(crate) fn level_for(&self, module: &str) -> Threshold {
        if self.directives.is_empty() {
            return self.default;
        }
        self.directives.iter().find(|(prefix, _)| covers(prefix, module)).map_or(self.default, |(_, level)| *level)
    }

    /// The lowest threshold of any module: below it, nothing is written.
    #[cfg_attr(not(any(test, feature = "tracing")), allow(dead_code))]
    pub(crate) fn lowest(&self) -> Threshold {
        self.directives.iter().map(|(_, level)| *level).fold(self.default, Threshold::min)
    }

    /// [`Directives::parse`], then the levels it gives alone (default INFO).
    #[cfg(test)]
    pub(crate) fn parse(setting: &'static str, text: &str) -> Result<Levels, Error> {
        Directives::parse(setting, text).map(|directives| Levels::from_directives(&directives))
    }
}

/// Epochs of [`LiveLevels`] versions: unique in the process, across instances and reloads, so
/// a decision cached under one epoch can never be taken for another instance's or version's.
static NEXT_EPOCH: AtomicU64 = AtomicU64::new(1);

/// The levels of a running instance, replaced whole by `LogGuard::set_levels`.
///
/// Each version has an epoch. A logger caches its module's threshold with the epoch it was
/// computed under and checks it with one `Relaxed` load per event ([`epoch`](Self::epoch)); a
/// replacement stores the new epoch after the new levels (`Release`), and a decision computed
/// from levels read after an `Acquire` load of the epoch is at least as new as that epoch. A
/// decision computed from newer levels than its epoch says is only recomputed once more.
#[derive(Debug)]
pub(crate) struct LiveLevels {
    current: RwLock<Arc<Levels>>,
    epoch: AtomicU64,
}

impl LiveLevels {
    pub(crate) fn new(levels: Levels) -> Self {
        LiveLevels { current: RwLock::new(Arc::new(levels)), epoch: AtomicU64::new(NEXT_EPOCH.fetch_add(1, Relaxed)) }
    }

    /// The epoch of the current version (never 0: a cache holding 0 holds nothing).
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Relaxed)
    }

    /// `module`'s threshold and the epoch to cache it under.
    pub(crate) fn level_for(&self, module: &str) -> (u64, Threshold) {
        let epoch = self.epoch.load(Acquire);
        (epoch, self.with_current(epoch, |levels| levels.level_for(module)))
    }

    /// The lowest threshold of any module, in the current version.
    #[cfg(feature = "tracing")]
    pub(crate) fn lowest(&self) -> Threshold {
        self.with_current(self.epoch.load(Acquire), Levels::lowest)
    }

    /// Makes `levels` the current version, under a new epoch.
    pub(crate) fn replace(&self, levels: Levels) {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        *current = Arc::new(levels);
        // Under the lock: two replacements end with the epoch of the levels that stay.
        self.epoch.store(NEXT_EPOCH.fetch_add(1, Relaxed), Release);
    }

    /// Runs `f` with the levels of `epoch` or newer, through this thread's copy: the capture path
    /// asks on every event, and a shared lock (or reference count) would be written by every
    /// thread on each of them.
    fn with_current<R>(&self, epoch: u64, f: impl FnOnce(&Levels) -> R) -> R {
        thread_local! {
            static SEEN: RefCell<Option<(u64, Arc<Levels>)>> = const { RefCell::new(None) };
        }
        let mut f = Some(f);
        let result = SEEN
            .try_with(|seen| {
                let mut seen = seen.try_borrow_mut().ok()?;
                if seen.as_ref().is_none_or(|(seen_epoch, _)| *seen_epoch != epoch) {
                    *seen = Some((epoch, self.read()));
                }
                let (_, levels) = seen.as_ref()?;
                f.take().map(|f| f(levels))
            })
            .ok()
            .flatten();
        match (result, f) {
            (Some(result), _) => result,
            (None, Some(f)) => f(&self.read()),
            (None, None) => unreachable!("`f` is taken only when the copy's answer is returned"),
        }
    }

    fn read(&self) -> Arc<Levels> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
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

    fn at(level: Level) -> Threshold {
        Threshold::at(level)
    }

    #[test]
    fn the_longest_matching_prefix_wins_at_a_part_boundary_with_either_separator() {
        let levels =
            Levels::parse("CHIMERA_LOG_LEVEL", "info, hyper=warning, hyper::client=debug, state_engine=error").unwrap();
        assert_eq!(levels.level_for("hyper"), at(Level::Warning));
        assert_eq!(levels.level_for("hyper::proto::h1"), at(Level::Warning));
        assert_eq!(levels.level_for("hyper.client.pool"), at(Level::Debug));
        assert_eq!(levels.level_for("hyper::client"), at(Level::Debug));
        assert_eq!(levels.level_for("hyperion"), at(Level::Info), "not a part boundary");
        assert_eq!(levels.level_for("state_engine.ws"), at(Level::Error));
        assert_eq!(levels.level_for("executor"), at(Level::Info));
        assert_eq!(levels.lowest(), at(Level::Debug));
    }

    #[test]
    fn covers_reads_double_colons_as_dots_and_stops_at_part_boundaries() {
        assert!(covers("a.b", "a::b") && covers("a.b", "a.b") && covers("a.b", "a::b::c") && covers("a", "a.b"));
        assert!(!covers("a.b", "a::bc") && !covers("a.b", "a") && !covers("ab", "a") && !covers("a", "ab"));
        assert!(!covers("a", "a:b"), "a single colon is not a separator");
        let mut levels = Levels::new(Level::Info);
        levels.set("hyper::", Level::Error);
        assert_eq!(levels.level_for("hyper::client"), at(Level::Error), "a trailing separator names the prefix");
    }

    #[test]
    fn a_bad_directive_names_the_setting_and_the_item() {
        let error = Levels::parse("CHIMERA_LOG_LEVEL", "info,hyper=loud").unwrap_err().to_string();
        assert!(error.contains("CHIMERA_LOG_LEVEL") && error.contains("hyper=loud"), "{error}");
        assert!(Levels::parse("CHIMERA_LOG_LEVEL", "=debug").is_err());
        assert_eq!(Levels::parse("X", "warning").unwrap(), Levels::new(Level::Warning));
    }

    #[test]
    fn trace_and_off_are_levels_of_a_directive_and_off_lets_nothing_through() {
        let levels = Levels::parse("RUST_LOG", "off,state_engine=trace,hyper=OFF,hyper::client=warn").unwrap();
        assert_eq!(levels.level_for("executor"), Threshold::OFF);
        assert_eq!(levels.level_for("state_engine::ws"), at(Level::Trace));
        assert_eq!(levels.level_for("hyper::proto"), Threshold::OFF);
        assert_eq!(levels.level_for("hyper::client"), at(Level::Warning));
        assert!(Level::ALL.iter().all(|level| !Threshold::OFF.allows(*level)), "not even critical");
        assert!(Level::ALL.iter().all(|level| at(Level::Trace).allows(*level)));
        assert_eq!(levels.lowest(), at(Level::Trace));
        assert_eq!(Levels::parse("X", "off").unwrap().lowest().level(), None);
        for threshold in [Threshold::OFF, at(Level::Trace), at(Level::Critical)] {
            assert_eq!(Threshold::from_bits(threshold.bits()), threshold);
        }
    }

    #[test]
    fn span_and_regex_filters_are_errors_naming_the_setting_and_the_directive_never_a_prefix() {
        for (text, item, says) in [
            ("info,tower[request]=debug", "tower[request]=debug", "span filters"),
            ("tower[{id=1}]=trace", "tower[{id=1}]=trace", "span filters"),
            ("[request]=debug", "[request]=debug", "span filters"),
            ("info,hyper=warn/connect", "info,hyper=warn/connect", "regular-expression"),
            ("/foo", "/foo", "regular-expression"),
        ] {
            let error = Directives::parse("RUST_LOG", text).unwrap_err();
            assert!(
                matches!(&error, Error::InvalidSetting { setting: "RUST_LOG", value, .. } if value == item),
                "{error}"
            );
            assert!(error.to_string().contains(says), "{error}");
        }
        let error = Directives::parse("RUST_LOG", "info,hyper").unwrap_err().to_string();
        assert!(error.contains("hyper=trace"), "a bare module says how to write it: {error}");
        let mut levels = Levels::new(Level::Info);
        levels.set("tower[request]", Level::Debug);
        assert_eq!(levels.invalid_prefix(), Some("tower[request]"), "in code too");
    }

    #[test]
    fn an_overlay_wins_for_the_modules_it_names_and_under_them_and_leaves_the_rest() {
        let mut levels = Levels::new(Level::Warning);
        levels.set("hyper::client", Level::Debug);
        levels.set("noisy", Level::Error);
        levels.overlay(&Directives::parse("RUST_LOG", "hyper=info,state_engine=trace").unwrap());
        assert_eq!(levels.level_for("hyper::client"), at(Level::Info), "the code's hyper::client is under hyper");
        assert_eq!(levels.level_for("state_engine"), at(Level::Trace));
        assert_eq!(levels.level_for("noisy"), at(Level::Error), "not named: the code's");
        assert_eq!(levels.level_for("executor"), at(Level::Warning), "no default named: the code's");
        levels.overlay(&Directives::parse("RUST_LOG", "debug,hyper::client=error,hyper=warn").unwrap());
        assert_eq!(levels.level_for("executor"), at(Level::Debug));
        assert_eq!(levels.level_for("hyper::client"), at(Level::Error), "one string's own items all apply");
        assert_eq!(levels.level_for("hyper::proto"), at(Level::Warning));
    }
}
