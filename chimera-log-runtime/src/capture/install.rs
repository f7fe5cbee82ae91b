//! The subscriber [`install`] sets up for `init_logging` (a registry with [`ChimeraLayer`] and
//! the bridge from `log`), the callsite interest it decides from the logger's levels, and what
//! the process's global subscriber is.

use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::layer::{level_of, ChimeraLayer};
use crate::event::Level;

/// [`ChimeraLayer`] as the only layer of the subscriber [`install`] sets up: there it may also
/// decide which callsites are enabled at all, from the logger's levels, so that a disabled event
/// costs tracing's cached callsite check and nothing more. (A user's `ChimeraLayer` never does
/// this: it would silence the user's other layers too.)
struct Captured(ChimeraLayer);

impl<S> Layer<S> for Captured
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        use tracing::subscriber::Interest;
        let level = level_of(metadata.level());
        // A `log` record's callsite is shared by every target: decided per event.
        if metadata.fields().field("log.target").is_some() {
            return Interest::sometimes();
        }
        crate::logger::with_global_dispatcher(|dispatcher| match dispatcher {
            // Spans too: a span below its target's level is not recorded (as EnvFilter does).
            Some(dispatcher) if dispatcher.captures() && dispatcher.level_for(metadata.target()).allows(level) => {
                Interest::always()
            }
            Some(_) => Interest::never(),
            // No logger: only what would be counted (WARNING and above).
            None if level >= Level::Warning && metadata.is_event() => Interest::always(),
            None => Interest::never(),
        })
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(max_level())
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        self.0.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.0.on_record(id, values, ctx);
    }

    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        Layer::<S>::on_register_dispatch(&self.0, subscriber);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        self.0.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        self.0.on_exit(id, ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        crate::logger::with_global_dispatcher(|dispatcher| {
            // The current logger may have been started with `capture(false)`.
            if dispatcher.is_none_or(|d| d.captures()) {
                self.0.write_event(event, &ctx, dispatcher);
            }
        });
    }
}

/// The most verbose level the current logger writes, as a filter (WARN with no logger: what is
/// counted; OFF for a logger started with `capture(false)`).
fn max_level() -> tracing::level_filters::LevelFilter {
    use tracing::level_filters::LevelFilter;
    crate::logger::with_global_dispatcher(|dispatcher| match dispatcher {
        Some(dispatcher) if !dispatcher.captures() => LevelFilter::OFF,
        Some(dispatcher) => match dispatcher.lowest_level().level() {
            None => LevelFilter::OFF,
            Some(Level::Trace) => LevelFilter::TRACE,
            Some(Level::Debug) => LevelFilter::DEBUG,
            Some(Level::Info) => LevelFilter::INFO,
            Some(Level::Warning) => LevelFilter::WARN,
            Some(Level::Error | Level::Critical) => LevelFilter::ERROR,
        },
        None => LevelFilter::WARN,
    })
}

/// Asks every callsite again whether it is enabled: after a logger starts or stops, its levels
/// decide ([`Captured::register_callsite`]).
pub(crate) fn levels_changed() {
    if !INSTALLED.load(std::sync::atomic::Ordering::Acquire) {
        return;
    }
    tracing::callsite::rebuild_interest_cache();
    // `log` records below every module's level are not even formatted by the `log` macros.
    let max = max_level();
    log::set_max_level(match max.into_level() {
        None => log::LevelFilter::Off,
        Some(tracing::Level::ERROR) => log::LevelFilter::Error,
        Some(tracing::Level::WARN) => log::LevelFilter::Warn,
        Some(tracing::Level::INFO) => log::LevelFilter::Info,
        Some(tracing::Level::DEBUG) => log::LevelFilter::Debug,
        Some(_) => log::LevelFilter::Trace,
    });
}

/// The process's global `tracing` subscriber, as far as capture is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GlobalSubscriber {
    /// None yet: [`install`] may set up its own.
    Absent,
    /// The one [`install`] set up.
    Ours,
    /// The application's, holding a [`ChimeraLayer`]: its layer is the capture.
    Composed,
    /// The application's, without a [`ChimeraLayer`].
    Foreign,
}

/// Which global subscriber the process has. Read on a thread of its own: the caller's thread may
/// have a scoped default (`tracing::subscriber::set_default`) that hides the global one.
pub(crate) fn global_subscriber() -> std::io::Result<GlobalSubscriber> {
    if INSTALLED.load(std::sync::atomic::Ordering::Acquire) {
        return Ok(GlobalSubscriber::Ours);
    }
    std::thread::scope(|scope| {
        let reader = std::thread::Builder::new().name("chimera-log-probe".into()).spawn_scoped(scope, || {
            tracing::dispatcher::get_default(|dispatch| {
                if dispatch.is::<tracing::subscriber::NoSubscriber>() {
                    GlobalSubscriber::Absent
                } else if dispatch.is::<ChimeraLayer>() {
                    GlobalSubscriber::Composed
                } else {
                    GlobalSubscriber::Foreign
                }
            })
        })?;
        Ok(reader.join().unwrap_or(GlobalSubscriber::Foreign))
    })
}

/// Whether [`install`] set up the global subscriber.
static INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Installs, as the process's global `tracing` subscriber, a registry with [`ChimeraLayer`], and
/// the bridge from the `log` crate. `false` when the application has one already (left alone).
pub(crate) fn install() -> bool {
    use tracing_subscriber::prelude::*;
    let subscriber = tracing_subscriber::registry().with(Captured(ChimeraLayer::new()));
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        return false;
    }
    INSTALLED.store(true, std::sync::atomic::Ordering::Release);
    // `log` records become `tracing` events; a `log` logger set by the application stays.
    if tracing_log::LogTracer::init().is_err() {
        diag!(
            "chimera-log: a `log` logger is set already: records logged through `log` go to it, not to \
             chimera-log (tracing events are captured)"
        );
    }
    true
}
