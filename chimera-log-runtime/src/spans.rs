//! The spans a line was written in (feature `tracing`): each span's fields as
//! [`ChimeraLayer`](crate::ChimeraLayer) records them, the span stack a line carries
//! (`"span": [{"name": …, fields…}, …]`, outermost first), and, with the feature
//! `opentelemetry`, the span's OpenTelemetry ids. The capture writes the stack of the events it
//! captures; the logger adds it to typed and ad-hoc lines written inside a span.

use std::cell::Cell;
use std::fmt;

use tracing::field::{Field, Visit};
use tracing::span::Id;
use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;

use crate::json::{rename_repeats, ContextWriter, TraceIds};

/// A span's fields, each value encoded once as JSON, kept in the span's extensions until it
/// closes; a field recorded again later (`span.record`) replaces its value.
#[derive(Default)]
pub(crate) struct SpanFields {
    /// Each field's index in the span's field set, name and value: two fields of one name
    /// (`info_span!("s", a = 1, a = 2)`) are two members.
    fields: Vec<(usize, &'static str, Vec<u8>)>,
    /// The keys the fields are written under where not their names (`json::rename_repeats`,
    /// after the span's own `name`), by position in `fields`.
    renamed: Vec<(usize, String)>,
}

impl SpanFields {
    fn set(&mut self, field: &Field, value: Vec<u8>) {
        match self.fields.iter_mut().find(|(index, ..)| *index == field.index()) {
            Some((.., old)) => *old = value,
            None => {
                self.fields.push((field.index(), field.name(), value));
                let keys: Vec<&str> =
                    std::iter::once("name").chain(self.fields.iter().map(|(_, name, _)| *name)).collect();
                self.renamed = rename_repeats(&keys)
                    .into_iter()
                    .map(|(at, key)| (at - 1, String::from_utf8_lossy(&key).into_owned()))
                    .collect();
            }
        }
    }

    /// Writes `{"name": span_name, fields…}`; a field called `name` is written as `name_2`.
    fn write(&self, span_name: &str, buf: &mut Vec<u8>) {
        let mut writer = ContextWriter::open(buf);
        writer.field("name", span_name);
        for (at, (_, name, value)) in self.fields.iter().enumerate() {
            let key = self.renamed.iter().find(|(renamed, _)| *renamed == at).map_or(*name, |(_, key)| key.as_str());
            writer.field_raw(key, value);
        }
        writer.finish();
    }
}

/// Records a span's fields into [`SpanFields`].
pub(crate) struct SpanRecorder<'a>(pub(crate) &'a mut SpanFields);

impl SpanRecorder<'_> {
    /// Encodes one value as JSON, through the context writer (as `{"v":…}`, then cut out).
    fn encode(&mut self, field: &Field, write: impl FnOnce(&mut ContextWriter<'_>)) {
        let mut buf = Vec::with_capacity(16);
        let mut writer = ContextWriter::open(&mut buf);
        write(&mut writer);
        writer.finish();
        let value = buf[b"{\"v\":".len()..buf.len() - 1].to_vec();
        self.0.set(field, value);
    }
}

impl Visit for SpanRecorder<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.encode(field, |w| w.field("v", &value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.encode(field, |w| w.field("v", &value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.encode(field, |w| w.field("v", &value));
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        self.encode(field, |w| w.field("v", &value));
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        self.encode(field, |w| w.field("v", &value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.encode(field, |w| w.field("v", &value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.encode(field, |w| w.field("v", value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.encode(field, |w| w.field_display("v", value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.encode(field, |w| w.field_display("v", &format_args!("{value:?}")));
    }
}

/// Writes `key: [{span}, …]`, outermost span first, into the context being written; nothing when
/// no span has fields recorded by a [`ChimeraLayer`](crate::ChimeraLayer).
pub(crate) fn write_span_stack<'a, R: LookupSpan<'a> + 'a>(
    writer: &mut ContextWriter<'_>,
    key: &str,
    spans: impl Iterator<Item = tracing_subscriber::registry::SpanRef<'a, R>>,
) {
    let mut first = true;
    for span in spans {
        if let Some(fields) = span.extensions().get::<SpanFields>() {
            writer.raw_list_item(key, first);
            first = false;
            fields.write(span.name(), writer.buf_mut());
        }
    }
    if !first {
        writer.raw(b"]");
    }
}

thread_local! {
    /// How many spans this thread is in (entered, not yet exited), as a [`ChimeraLayer`](crate::ChimeraLayer) saw
    /// them: a typed or ad-hoc event looks for the span stack only when this is not zero, so
    /// outside any span it costs one thread-local read.
    static ENTERED: Cell<u32> = const { Cell::new(0) };
}

/// This thread entered a span (`ChimeraLayer::on_enter`).
pub(crate) fn entered() {
    let _ = ENTERED.try_with(|entered| entered.set(entered.get().saturating_add(1)));
}

/// This thread left a span (`ChimeraLayer::on_exit`).
pub(crate) fn exited() {
    let _ = ENTERED.try_with(|entered| entered.set(entered.get().saturating_sub(1)));
}

/// Whether this thread is inside a span a [`ChimeraLayer`](crate::ChimeraLayer) saw entered.
#[inline]
pub(crate) fn in_span() -> bool {
    ENTERED.try_with(|entered| entered.get() > 0).unwrap_or(false)
}

/// What a typed or ad-hoc line written inside spans adds: the span stack, as a captured event
/// carries it (`"span": [{"name": …, fields…}, …]`, outermost first), and the OpenTelemetry ids
/// of the current span when it has them.
pub(crate) struct SpanContext {
    /// `{"span":[…]}`, or empty when no span has recorded fields.
    stack: Vec<u8>,
    pub(crate) trace: Option<TraceIds>,
}

impl SpanContext {
    /// Adds the stack to the context object just written at `buf[at..]`, as its last member:
    /// under `span`, or `span_2` (…) when the event has a field of that name.
    pub(crate) fn add_stack(&self, buf: &mut Vec<u8>, at: usize) {
        if self.stack.len() <= 2 || buf.len() < at + 2 || buf.last() != Some(&b'}') {
            return;
        }
        buf.pop();
        // `{"span":[…]}` → `,"span":[…]}` (or `"span":[…]}` into an empty object).
        if buf.len() > at + 1 {
            buf.push(b',');
        }
        buf.extend_from_slice(&self.stack[1..]);
        crate::json::make_keys_unique(buf, at);
    }
}

/// The span context of a line written now on this thread: `None` when the current subscriber
/// is not a `tracing_subscriber::Registry` (only its spans have fields recorded by a
/// [`ChimeraLayer`](crate::ChimeraLayer)) or there is no current span.
pub(crate) fn current_span_context() -> Option<SpanContext> {
    tracing::dispatcher::get_default(|dispatch| {
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let current = Subscriber::current_span(registry);
        let id = current.id()?;
        let mut stack = Vec::new();
        {
            let span = registry.span(id)?;
            let mut writer = ContextWriter::open(&mut stack);
            write_span_stack(&mut writer, "span", span.scope().from_root());
            writer.finish();
        }
        // No extension of the span is borrowed any more: the OpenTelemetry layer may take them.
        Some(SpanContext { stack, trace: otel_ids(id, dispatch) })
    })
}

/// The OpenTelemetry trace and span ids of span `id`, when `tracing-opentelemetry`'s layer in
/// `dispatch` gave it a valid span context.
#[cfg(feature = "opentelemetry")]
pub(crate) fn otel_ids(id: &Id, dispatch: &tracing::Dispatch) -> Option<TraceIds> {
    use opentelemetry::trace::TraceContextExt;
    let context = tracing_opentelemetry::get_otel_context(id, dispatch)?;
    let span = context.span();
    let ids = span.span_context();
    ids.is_valid().then(|| TraceIds { trace_id: ids.trace_id().to_bytes(), span_id: ids.span_id().to_bytes() })
}

#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn otel_ids(_id: &Id, _dispatch: &tracing::Dispatch) -> Option<TraceIds> {
    None
}
