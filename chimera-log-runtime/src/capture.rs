//! Capture of what the rest of the program logs (feature `tracing`): [`ChimeraLayer`], a
//! `tracing_subscriber::Layer` that writes each `tracing` event (and each `log` record, through
//! `tracing-log`'s bridge) as a chimera line, and [`install`], which `LogConfig::capture` uses to
//! set it up globally.
//!
//! A captured event becomes one line of the contract's shape in the general sinks (console,
//! `chimera.log`, CloudWatch): `module` is the event's target, `event` its message (else the
//! callsite's name), `context` its fields, typed where `tracing` gives a type (numbers stay
//! numbers, `Debug` and `Display` values become strings), and `"span"` the fields of the spans it
//! happened in, outermost first. Never the audit file or a route: those are reached by type only.
//! Events from the logger's own threads (the CloudWatch SDK logs through `tracing`) are not
//! captured, so logging never feeds on itself.

use std::cell::RefCell;
use std::fmt;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::event::{Level, Routes};
use crate::json::{encode_line, quoted_into, ContextWriter, Envelope};

/// A `tracing_subscriber::Layer` writing `tracing` events as chimera lines through the
/// process-wide logger ([`init_logging`](crate::init_logging)); with no logger running, events
/// are dropped (and counted in [`events_without_logger`](crate::events_without_logger) when
/// WARNING or above).
///
/// Compose it with your own registry, filters and layers:
///
/// ```
/// use tracing_subscriber::prelude::*;
///
/// let subscriber = tracing_subscriber::registry()
///     .with(chimera_log_runtime::ChimeraLayer::new());
/// let _default = tracing::subscriber::set_default(subscriber);
/// tracing::info!(block = 42, "block_seen"); // one line in chimera.log, once logging is started
/// ```
///
/// Levels: TRACE and DEBUG are `DEBUG`, INFO `INFO`, WARN `WARNING`, ERROR `ERROR`; the logger's
/// level for the event's target (`LogConfig::level_for`) applies as for any event.
#[derive(Debug, Default, Clone, Copy)]
pub struct ChimeraLayer {
    _private: (),
}

impl ChimeraLayer {
    /// The layer.
    pub fn new() -> Self {
        ChimeraLayer { _private: () }
    }
}

/// A span's fields, encoded once as a JSON object `{"name":…,fields…}`, kept in the span's
/// extensions until it closes.
struct SpanFields(Vec<u8>);

fn level_of(level: &tracing::Level) -> Level {
    match *level {
        tracing::Level::TRACE | tracing::Level::DEBUG => Level::Debug,
        tracing::Level::INFO => Level::Info,
        tracing::Level::WARN => Level::Warning,
        _ => Level::Error,
    }
}

/// Whether the current thread is one of the logger's own (writers, CloudWatch, the audit store):
/// what they log through `tracing` is not captured.
fn on_own_thread() -> bool {
    std::thread::current().name().is_some_and(|name| name.starts_with("chimera-log-"))
}

impl<S> Layer<S> for ChimeraLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut buf = Vec::with_capacity(64);
        let mut writer = ContextWriter::open(&mut buf);
        writer.field("name", attrs.metadata().name());
        attrs.record(&mut FieldWriter { writer: &mut writer, message: None });
        writer.finish();
        span.extensions_mut().insert(SpanFields(buf));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(buf)) = extensions.get_mut::<SpanFields>() {
            let mut writer = ContextWriter::reopen(buf);
            values.record(&mut FieldWriter { writer: &mut writer, message: None });
            writer.finish();
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if on_own_thread() {
            return;
        }
        // A `log` record bridged by tracing-log carries its own target and level.
        let normalized = event.normalized_metadata();
        let metadata: &Metadata<'_> = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let level = level_of(metadata.level());
        crate::logger::with_global_dispatcher(|dispatcher| {
            let Some(dispatcher) = dispatcher else {
                crate::logger::count_without_logger(level);
                return;
            };
            let module_level = dispatcher.level_for(metadata.target());
            let Some(destinations) = dispatcher.destinations(level, Routes::GENERAL, module_level) else {
                return;
            };
            LINE.with(|cell| {
                let Ok(mut scratch) = cell.try_borrow_mut() else { return };
                let Scratch { line, module, message, context } = &mut *scratch;
                // The message is the event's name: read it first, the context after it.
                message.clear();
                event.record(&mut MessageReader(message));
                context.clear();
                let mut writer = ContextWriter::open(context);
                event.record(&mut FieldWriter { writer: &mut writer, message: Some(()) });
                if let Some(scope) = ctx.event_scope(event) {
                    let mut spans = Vec::with_capacity(128);
                    spans.push(b'[');
                    for span in scope.from_root() {
                        if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                            if spans.len() > 1 {
                                spans.push(b',');
                            }
                            spans.extend_from_slice(fields);
                        }
                    }
                    spans.push(b']');
                    if spans.len() > 2 {
                        writer.field_raw("span", &spans);
                    }
                }
                writer.finish();
                module.clear();
                quoted_into(module, metadata.target());
                let name = if message.is_empty() { metadata.name() } else { message.as_str() };
                let envelope = Envelope {
                    time: dispatcher.now(),
                    level,
                    module_json: std::str::from_utf8(module).expect("escaped text is UTF-8"),
                    event: name,
                    exception: None,
                    audit_key: None,
                };
                line.clear();
                encode_line(line, envelope, |buf| buf.extend_from_slice(context));
                dispatcher.dispatch(level, destinations, line);
            });
        });
    }
}

/// Per-thread buffers of the capture path.
#[derive(Default)]
struct Scratch {
    line: Vec<u8>,
    module: Vec<u8>,
    message: String,
    context: Vec<u8>,
}

thread_local! {
    static LINE: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Reads the `message` field alone.
struct MessageReader<'a>(&'a mut String);

impl Visit for MessageReader<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            use fmt::Write;
            let _ = write!(self.0, "{value:?}");
        }
    }
}

/// Writes fields as members of an object, typed where `tracing` says the type; `message` is left
/// out when it is the event's name (`message: Some(())`).
struct FieldWriter<'w, 'a> {
    writer: &'w mut ContextWriter<'a>,
    message: Option<()>,
}

impl FieldWriter<'_, '_> {
    /// The event's name (`message`), and the `log.*` fields the `log` bridge adds (its target
    /// is the line's module already; file and line are not part of the contract).
    fn skip(&self, field: &Field) -> bool {
        self.message.is_some() && (field.name() == "message" || field.name().starts_with("log."))
    }
}

impl Visit for FieldWriter<'_, '_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.writer.field(field.name(), &value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if !self.skip(field) {
            self.writer.field(field.name(), &value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if !self.skip(field) {
            self.writer.field(field.name(), &value);
        }
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.writer.field(field.name(), &value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.writer.field(field.name(), &value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.writer.field(field.name(), &value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.skip(field) {
            self.writer.field(field.name(), value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.writer.field_display(field.name(), value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if !self.skip(field) {
            self.writer.field_display(field.name(), &format_args!("{value:?}"));
        }
    }
}

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
            Some(dispatcher) if metadata.is_span() || level >= dispatcher.level_for(metadata.target()) => {
                Interest::always()
            }
            Some(_) => Interest::never(),
            // No logger: only what would be counted matters; asked again once one starts.
            None => Interest::sometimes(),
        })
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        self.0.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.0.on_record(id, values, ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        self.0.on_event(event, ctx);
    }
}

/// Asks every callsite again whether it is enabled: after a logger starts or stops, its levels
/// decide ([`Captured::register_callsite`]).
pub(crate) fn levels_changed() {
    tracing::callsite::rebuild_interest_cache();
}

/// Installs, as the process's global `tracing` subscriber, a registry with [`ChimeraLayer`], and
/// the bridge from the `log` crate. `false` when the application has one already (left alone).
pub(crate) fn install() -> bool {
    use tracing_subscriber::prelude::*;
    let subscriber = tracing_subscriber::registry().with(Captured(ChimeraLayer::new()));
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        return false;
    }
    // `log` records become `tracing` events; a `log` logger set by the application stays.
    if tracing_log::LogTracer::init().is_err() {
        eprintln!(
            "chimera-log: a `log` logger is set already: records logged through `log` go to it, not to \
             chimera-log (tracing events are captured)"
        );
    }
    true
}
