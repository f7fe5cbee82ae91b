//! [`ChimeraLayer`]: the spans' fields it records, and each captured event written as a line.

use std::sync::Arc;
use std::time::Instant;

use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::line::{with_scratch, FieldEncoder, Scratch};
use crate::event::{Level, Routes};
use crate::json::{encode_line, quoted_into, ContextWriter, Envelope, TraceIds};
use crate::spans::{write_span_stack, SpanFields, SpanRecorder};
use crate::write::dispatch::Dispatcher;

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
        crate::logger::with_global_dispatcher(|dispatcher| self.write_event(event, &ctx, dispatcher));
    }
}

impl ChimeraLayer {
    /// Writes `event` through `dispatcher`, the process-wide logger (read once per event by the
    /// caller: a second read inside the first finds this thread's copy taken, and reads the
    /// shared one).
    pub(super) fn write_event<S>(&self, event: &Event<'_>, ctx: &Context<'_, S>, dispatcher: Option<&Arc<Dispatcher>>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        // The logger's own threads (writers, CloudWatch, the audit store) are marked when they
        // start; a thread of the application is captured whatever its name.
        if crate::thread::is_own() {
            return;
        }
        with_scratch(|scratch| {
            let Scratch { line, module, message, context, callsites } = scratch;
            let callsite = callsites.get(event);
            // A `log` record bridged by tracing-log carries its own target and level.
            let normalized = if callsite.bridged { event.normalized_metadata() } else { None };
            let metadata: &Metadata<'_> = normalized.as_ref().unwrap_or_else(|| event.metadata());
            let level = level_of(metadata.level());
            let Some(dispatcher) = dispatcher else {
                crate::logger::count_without_logger(level);
                return;
            };
            let module_level = match normalized {
                Some(_) => dispatcher.level_for(metadata.target()),
                None => callsite.module_level(dispatcher, metadata.target()),
            };
            let Some(destinations) = dispatcher.destinations(level, Routes::GENERAL, module_level) else {
                return;
            };
            let started = crate::write::dispatch::sample_this_emit().then(Instant::now);
            message.clear();
            context.clear();
            context.push(b'{');
            event.record(&mut FieldEncoder { callsite, context, message });
            // The span the event happened in: before any of its extensions is borrowed for the
            // stack, its OpenTelemetry ids.
            // An event in the current span is in none when no span is entered on this thread as
            // far as this layer knows (`spans::in_span`): the registry need not be asked. That
            // holds behind a per-layer filter too: the filtered lookup looks only among the
            // entered spans the filter enables, and this layer hears of each of those entered.
            let span = if event.is_contextual() && !crate::spans::in_span() { None } else { ctx.event_span(event) };
            let trace = span.as_ref().and_then(|span| self.trace_ids(&span.id()));
            if let Some(span) = span {
                let mut writer = ContextWriter::reopened(context);
                write_span_stack(&mut writer, &callsite.stack_key, span.scope().from_root());
            }
            context.push(b'}');
            let module_json = if normalized.is_some() {
                module.clear();
                quoted_into(module, metadata.target());
                std::str::from_utf8(module).expect("escaped text is UTF-8")
            } else {
                &callsite.module_json
            };
            let name = if message.is_empty() { metadata.name() } else { message.as_str() };
            let time = dispatcher.now();
            let envelope =
                Envelope { time, level, module_json, event: name.into(), exception: None, audit_key: None, trace };
            line.clear();
            encode_line(line, envelope, |buf| buf.extend_from_slice(context));
            dispatcher.dispatch(level, destinations, line);
            // Timed, and followed by `log_health`, as a typed emit is (`log_health` is written
            // through a `Logger`, not captured: these buffers are not needed again).
            crate::logger::after_emit(dispatcher, started, time);
        });
    }
}
