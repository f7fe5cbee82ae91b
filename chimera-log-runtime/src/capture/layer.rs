//! [`ChimeraLayer`]: the spans' fields it records, and each captured event written as a line.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::event::{Level, Routes};
use crate::json::{encode_line, quoted_into, rename_repeats, ContextWriter, Envelope, TraceIds};
use crate::spans::{write_span_stack, SpanFields, SpanRecorder};

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
/// Levels: TRACE is `TRACE`, DEBUG `DEBUG`, INFO `INFO`, WARN `WARNING`, ERROR `ERROR`; the
/// logger's level for the event's target (`LogConfig::level_for`, `CHIMERA_LOG_LEVEL`,
/// `LogGuard::set_levels`) applies as for any event.
#[derive(Debug, Default, Clone)]
pub struct ChimeraLayer {
    /// The subscriber this layer is part of, once registered: a captured event's span is looked
    /// up in it for its OpenTelemetry ids (inside the event's dispatch, `get_default` answers
    /// with no subscriber when a scoped one is set).
    #[cfg(feature = "opentelemetry")]
    dispatch: std::sync::Arc<std::sync::OnceLock<tracing::dispatcher::WeakDispatch>>,
    _private: (),
}

impl ChimeraLayer {
    /// The layer.
    pub fn new() -> Self {
        ChimeraLayer::default()
    }

    /// The OpenTelemetry ids of span `id` of the subscriber this layer is part of.
    #[cfg(feature = "opentelemetry")]
    fn trace_ids(&self, id: &Id) -> Option<TraceIds> {
        let dispatch = self.dispatch.get()?.upgrade()?;
        crate::spans::otel_ids(id, &dispatch)
    }

    #[cfg(not(feature = "opentelemetry"))]
    fn trace_ids(&self, _id: &Id) -> Option<TraceIds> {
        None
    }
}

pub(super) fn level_of(level: &tracing::Level) -> Level {
    match *level {
        tracing::Level::TRACE => Level::Trace,
        tracing::Level::DEBUG => Level::Debug,
        tracing::Level::INFO => Level::Info,
        tracing::Level::WARN => Level::Warning,
        _ => Level::Error,
    }
}

impl<S> Layer<S> for ChimeraLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = SpanFields::default();
        attrs.record(&mut SpanRecorder(&mut fields));
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(fields) = extensions.get_mut::<SpanFields>() {
            values.record(&mut SpanRecorder(fields));
        }
    }

    #[cfg(feature = "opentelemetry")]
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_enter(&self, _id: &Id, _ctx: Context<'_, S>) {
        crate::spans::entered();
    }

    fn on_exit(&self, _id: &Id, _ctx: Context<'_, S>) {
        crate::spans::exited();
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // The logger's own threads (writers, CloudWatch, the audit store) are marked when they
        // start; a thread of the application is captured whatever its name.
        if crate::thread::is_own() {
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
            let bridged = normalized.is_some();
            with_scratch(|scratch| {
                let Scratch { line, module, message, context, keys } = scratch;
                // The message is the event's name: read it first, the context after it.
                message.clear();
                event.record(&mut MessageReader(message));
                // The context's keys, known before a value is written: the fields', then the
                // span stack's. Renamed where one repeats (`json::rename_repeats`), by field index.
                keys.clear();
                keys.extend(event.fields().filter(|field| is_written(field.name(), bridged)).map(|field| field.name()));
                keys.push("span");
                let mut stack_key = Cow::Borrowed("span");
                let mut renamed = Vec::new();
                for (at, key) in rename_repeats(keys) {
                    let key = String::from_utf8_lossy(&key).into_owned();
                    match event.fields().filter(|field| is_written(field.name(), bridged)).nth(at) {
                        Some(field) => renamed.push((field.index(), key)),
                        None => stack_key = Cow::Owned(key),
                    }
                }
                // Before any of the span's extensions is borrowed below.
                let trace = ctx.event_span(event).and_then(|span| self.trace_ids(&span.id()));
                context.clear();
                let mut writer = ContextWriter::open(context);
                event.record(&mut FieldWriter { writer: &mut writer, bridged, renamed: &renamed });
                if let Some(scope) = ctx.event_scope(event) {
                    write_span_stack(&mut writer, &stack_key, scope.from_root());
                }
                writer.finish();
                module.clear();
                quoted_into(module, metadata.target());
                let name = if message.is_empty() { metadata.name() } else { message.as_str() };
                let envelope = Envelope {
                    time: dispatcher.now(),
                    level,
                    module_json: std::str::from_utf8(module).expect("escaped text is UTF-8"),
                    event: name.into(),
                    exception: None,
                    audit_key: None,
                    trace,
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
    keys: Vec<&'static str>,
}

thread_local! {
    static LINE: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's buffers; a fresh set when they are in use (an event logged from
/// inside a field's `Debug`) or gone (a thread-local's destructor logging at thread exit).
/// Buffers a huge event grew are not kept.
fn with_scratch(f: impl FnOnce(&mut Scratch)) {
    let mut f = Some(f);
    let _ = LINE.try_with(|cell| {
        if let Ok(mut scratch) = cell.try_borrow_mut() {
            (f.take().expect("called once"))(&mut scratch);
            if scratch.line.capacity() > 64 * 1024 {
                *scratch = Scratch::default();
            }
        }
    });
    if let Some(f) = f {
        f(&mut Scratch::default());
    }
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

/// Whether an event's field `name` is a member of the context: `message` is the event's name,
/// not a field, and the `log.*` fields of a `log` record `bridged` by tracing-log (target,
/// module path, file, line) are left out.
fn is_written(name: &str, bridged: bool) -> bool {
    name != "message" && !(bridged && name.starts_with("log."))
}

/// Writes an event's fields as members of the context, typed where `tracing` says the type,
/// each under its name or, when the name repeats, the key it was renamed to.
struct FieldWriter<'w, 'a, 'r> {
    writer: &'w mut ContextWriter<'a>,
    /// The event is a `log` record bridged by tracing-log.
    bridged: bool,
    /// The keys of fields renamed by `json::rename_repeats`, by field index.
    renamed: &'r [(usize, String)],
}

impl<'r> FieldWriter<'_, '_, 'r> {
    /// The key `field` is written under, if it is written.
    fn key(&self, field: &Field) -> Option<&'r str> {
        if !is_written(field.name(), self.bridged) {
            return None;
        }
        let renamed = self.renamed.iter().find(|(index, _)| *index == field.index());
        Some(renamed.map_or(field.name(), |(_, key)| key.as_str()))
    }
}

impl Visit for FieldWriter<'_, '_, '_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if let Some(key) = self.key(field) {
            self.writer.field(key, &value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if let Some(key) = self.key(field) {
            self.writer.field(key, &value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if let Some(key) = self.key(field) {
            self.writer.field(key, &value);
        }
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        if let Some(key) = self.key(field) {
            self.writer.field(key, &value);
        }
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        if let Some(key) = self.key(field) {
            self.writer.field(key, &value);
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if let Some(key) = self.key(field) {
            self.writer.field(key, &value);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if let Some(key) = self.key(field) {
            self.writer.field(key, value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if let Some(key) = self.key(field) {
            self.writer.field_display(key, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if let Some(key) = self.key(field) {
            self.writer.field_display(key, &format_args!("{value:?}"));
        }
    }
}
